/*
 * names.c - one tensor, three names: our checkpoint's (the original hermes-llm layout), Hugging
 * Face Llama's and GGUF llama's. One table, read in either direction, so the writers and the
 * importer cannot disagree about what a tensor is.
 */
#include "export-impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { OURS, HF, GGUF, N_KINDS };

static const char *const top_names[][N_KINDS] = {
    {"embedding.weight", "model.embed_tokens.weight", "token_embd.weight"},
    {"norm.weight", "model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "lm_head.weight", "output.weight"},
};

/* Inside a layer: "<prefix><i>.<part>.<weight|bias>". */
static const char *const layer_prefix[N_KINDS] = {"layers.", "model.layers.", "blk."};
static const char *const layer_parts[][N_KINDS] = {
    {"attention.q_proj", "self_attn.q_proj", "attn_q"},
    {"attention.k_proj", "self_attn.k_proj", "attn_k"},
    {"attention.v_proj", "self_attn.v_proj", "attn_v"},
    {"attention.o_proj", "self_attn.o_proj", "attn_output"},
    {"feed_forward.gate_proj", "mlp.gate_proj", "ffn_gate"},
    {"feed_forward.up_proj", "mlp.up_proj", "ffn_up"},
    {"feed_forward.down_proj", "mlp.down_proj", "ffn_down"},
    {"input_layernorm", "input_layernorm", "attn_norm"},
    {"post_attention_layernorm", "post_attention_layernorm", "ffn_norm"},
};

static bool rename_tensor(const char *name, int from, int to, char *out, size_t cap)
{
    for (size_t i = 0; i < HM_ARRAY_LEN(top_names); i++)
        if (strcmp(name, top_names[i][from]) == 0)
            return (size_t)snprintf(out, cap, "%s", top_names[i][to]) < cap;
    size_t plen = strlen(layer_prefix[from]);
    if (strncmp(name, layer_prefix[from], plen) != 0 || name[plen] < '0' || name[plen] > '9')
        return false;
    char *end;
    errno = 0;
    long layer = strtol(name + plen, &end, 10);
    /* "07" is no layer number: it would map to a name that maps back to "7". */
    if (errno || *end != '.' || layer > 1000000 || (name[plen] == '0' && end != name + plen + 1))
        return false;
    for (size_t i = 0; i < HM_ARRAY_LEN(layer_parts); i++) {
        size_t n = strlen(layer_parts[i][from]);
        const char *rest = end + 1 + n;
        if (strncmp(end + 1, layer_parts[i][from], n) != 0 || *rest != '.')
            continue;
        if (strcmp(rest + 1, "weight") != 0 && strcmp(rest + 1, "bias") != 0)
            return false;
        return (size_t)snprintf(out, cap, "%s%ld.%s.%s", layer_prefix[to], layer,
                                layer_parts[i][to], rest + 1) < cap;
    }
    return false;
}

bool hm_name_to_gguf(const char *ours, char *out, size_t cap)
{
    return rename_tensor(ours, OURS, GGUF, out, cap);
}

bool hm_name_to_hf(const char *ours, char *out, size_t cap)
{
    return rename_tensor(ours, OURS, HF, out, cap);
}

bool hm_name_from_hf(const char *hf, char *out, size_t cap)
{
    return rename_tensor(hf, HF, OURS, out, cap);
}
