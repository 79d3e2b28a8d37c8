/*
 * gguf-export.c - a SwiGLU checkpoint as a GGUF `llama` model that llama.cpp runs as we do
 * (formats.md §3): hyper-parameters as UINT32/FLOAT32, the byte-level BPE vocabulary and merges,
 * and the tensors under llama.cpp's names with GGUF dims (the PyTorch shape reversed).
 *
 * RoPE: we rotate the pairs (x[i], x[i + hd/2]) of each head; llama.cpp's `llama` rotates
 * (x[2i], x[2i+1]) with the same frequencies. Permuting the output rows of Q and K (and their
 * biases) per head, GGUF row h*hd + 2i + s <- our row h*hd + s*hd/2 + i, makes the two compute the
 * same attention scores. Nothing else changes.
 *
 * Streaming: each row is read from the mapped checkpoint, converted and written; the only buffers
 * are one row in f32 and one in the output type.
 */
#include "export-impl.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>

enum { TOKEN_NORMAL = 1, TOKEN_CONTROL = 3, TOKEN_UNUSED = 5 };

static uint32_t file_type(enum hm_export_dtype dt)
{
    static const uint32_t llama_ftype[] = {
        [HM_EXPORT_F32] = 0, [HM_EXPORT_F16] = 1, [HM_EXPORT_BF16] = 32, [HM_EXPORT_Q8_0] = 7};
    return llama_ftype[dt];
}

static enum hm_ggml_type ggml_type(enum hm_export_dtype dt)
{
    static const enum hm_ggml_type types[] = {[HM_EXPORT_F32] = HM_GGML_F32,
                                              [HM_EXPORT_F16] = HM_GGML_F16,
                                              [HM_EXPORT_BF16] = HM_GGML_BF16,
                                              [HM_EXPORT_Q8_0] = HM_GGML_Q8_0};
    return types[dt];
}

/* Merges in rank order, read back from the tokenizer's own tokenizer.json text so the order and
 * spelling are exactly what HF and we use. */
static enum hm_status put_merges(struct hm_gguf *g, const struct hm_tokenizer *tok,
                                 const char *path)
{
    char *text;
    enum hm_status st = hm_tokenizer_to_json(tok, &text);
    if (st != HM_OK)
        return st;
    json_t *root = json_loads(text, 0, NULL);
    hm_free(text);
    json_t *merges = json_object_get(json_object_get(root, "model"), "merges");
    if (!json_is_array(merges)) {
        json_decref(root);
        return hm_fail(HM_ERR_NOMEM, "%s: out of memory reading the tokenizer's merges", path);
    }
    hm_gguf_kv_array(g, "tokenizer.ggml.merges", HM_GGUF_STRING, json_array_size(merges));
    for (size_t i = 0; i < json_array_size(merges); i++) {
        json_t *m = json_array_get(merges, i);
        if (!json_is_string(m)) { /* the pair form: a token holds a space */
            json_decref(root);
            return hm_fail(HM_ERR_UNSUPPORTED,
                           "%s: merge %zu joins a token containing a space, which "
                           "GGUF's \"left right\" merges cannot hold",
                           path, i);
        }
        hm_gguf_arr_str(g, json_string_value(m), json_string_length(m));
    }
    json_decref(root);
    return HM_OK;
}

static enum hm_status put_tokenizer(struct hm_gguf *g, const struct hm_tokenizer *tok,
                                    const char *path)
{
    int64_t eos = hm_tokenizer_find(tok, hm_eos_names), bos = hm_tokenizer_find(tok, hm_bos_names);
    int64_t pad = hm_tokenizer_find(tok, hm_pad_names);
    if (eos < 0)
        return hm_fail(HM_ERR_UNSUPPORTED,
                       "%s: the tokenizer has no <eos> or <|endoftext|> token, "
                       "which llama.cpp needs",
                       path);
    uint32_t n = hm_tokenizer_vocab_size(tok);
    hm_gguf_kv_str(g, "tokenizer.ggml.model", "gpt2");
    hm_gguf_kv_str(g, "tokenizer.ggml.pre", "gpt-2");
    hm_gguf_kv_array(g, "tokenizer.ggml.tokens", HM_GGUF_STRING, n);
    for (uint32_t id = 0; id < n; id++) {
        const char *s = hm_tokenizer_id_to_token(tok, id);
        char unused[32];
        if (!s) { /* an id no token uses: named as llama.cpp's converter names padding */
            snprintf(unused, sizeof unused, "[PAD%u]", id);
            s = unused;
        }
        hm_gguf_arr_str(g, s, strlen(s));
    }
    hm_gguf_kv_array(g, "tokenizer.ggml.token_type", HM_GGUF_INT32, n);
    for (uint32_t id = 0; id < n; id++)
        hm_gguf_arr_i32(g, !hm_tokenizer_id_to_token(tok, id) ? TOKEN_UNUSED
                           : hm_tokenizer_is_special(tok, id) ? TOKEN_CONTROL
                                                              : TOKEN_NORMAL);
    enum hm_status st = put_merges(g, tok, path);
    if (st != HM_OK)
        return st;
    hm_gguf_kv_u32(g, "tokenizer.ggml.bos_token_id", (uint32_t)(bos >= 0 ? bos : eos));
    hm_gguf_kv_u32(g, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
    if (pad >= 0)
        hm_gguf_kv_u32(g, "tokenizer.ggml.padding_token_id", (uint32_t)pad);
    hm_gguf_kv_bool(g, "tokenizer.ggml.add_bos_token", false); /* we never train with a BOS */
    hm_gguf_kv_bool(g, "tokenizer.ggml.add_eos_token", false);
    if (hm_tokenizer_has_chatml(tok))
        hm_gguf_kv_str(g, "tokenizer.chat_template", hm_chatml_template);
    return HM_OK;
}

static void put_hparams(struct hm_gguf *g, const struct hm_model_config *c, enum hm_export_dtype dt)
{
    hm_gguf_kv_str(g, "general.architecture", "llama");
    hm_gguf_kv_str(g, "general.name", "hermes-llm");
    hm_gguf_kv_u32(g, "general.file_type", file_type(dt));
    hm_gguf_kv_u32(g, "general.alignment", HM_GGUF_ALIGNMENT);
    if (dt == HM_EXPORT_Q8_0)
        hm_gguf_kv_u32(g, "general.quantization_version", 2);
    hm_gguf_kv_u32(g, "llama.vocab_size", (uint32_t)c->vocab_size);
    hm_gguf_kv_u32(g, "llama.context_length", (uint32_t)c->max_seq_len);
    hm_gguf_kv_u32(g, "llama.embedding_length", (uint32_t)c->hidden_size);
    hm_gguf_kv_u32(g, "llama.block_count", (uint32_t)c->num_layers);
    hm_gguf_kv_u32(g, "llama.feed_forward_length", (uint32_t)c->intermediate_size);
    hm_gguf_kv_u32(g, "llama.attention.head_count", (uint32_t)c->num_heads);
    hm_gguf_kv_u32(g, "llama.attention.head_count_kv", (uint32_t)c->num_kv_heads);
    hm_gguf_kv_u32(g, "llama.rope.dimension_count", (uint32_t)hm_config_head_dim(c));
    hm_gguf_kv_f32(g, "llama.rope.freq_base", c->rope_theta);
    hm_gguf_kv_f32(g, "llama.attention.layer_norm_rms_epsilon", c->layer_norm_eps);
}

/* Heads whose rows are permuted for llama.cpp's RoPE: NH for q, NKV for k, 0 for the rest. */
static int rope_heads(const struct hm_model_config *c, const char *name)
{
    if (strstr(name, ".attention.q_proj."))
        return c->num_heads;
    if (strstr(name, ".attention.k_proj."))
        return c->num_kv_heads;
    return 0;
}

static int64_t source_row(int64_t r, int hd)
{
    int64_t h = r / hd, j = r % hd;
    return h * hd + (j % 2) * (hd / 2) + j / 2;
}

struct plan_entry {
    const struct hm_st_tensor *t;
    enum hm_export_dtype dt;
    int64_t rows, cols; /* a 1-D tensor is one row, or one element per row when permuted */
    int heads;
};

static enum hm_status write_tensor(FILE *f, const struct plan_entry *e, int hd, float *row,
                                   uint8_t *enc)
{
    for (int64_t r = 0; r < e->rows; r++) {
        int64_t from = e->heads ? source_row(r, hd) : r;
        hm_export_read_f32(e->t, (size_t)(from * e->cols), (size_t)e->cols, row);
        size_t nb = hm_export_row_bytes(e->dt, (size_t)e->cols);
        hm_export_encode(e->dt, row, (size_t)e->cols, enc);
        if (fwrite(enc, 1, nb, f) != nb)
            return HM_ERR_IO;
    }
    return hm_gguf_write_pad(f, hm_export_row_bytes(e->dt, (size_t)(e->rows * e->cols)))
               ? HM_OK
               : HM_ERR_IO;
}

enum hm_status hm_export_gguf(const struct hm_export_source *src, enum hm_export_dtype dt,
                              const char *path)
{
    const struct hm_model_config *c = &src->cfg;
    if (c->activation != HM_ACT_SWIGLU)
        return hm_fail(
            HM_ERR_UNSUPPORTED,
            "%s: GGUF export needs a SwiGLU model: llama.cpp has no "
            "architecture with RMSNorm, RoPE and a non-gated GELU FFN (train a llama-style "
            "preset: llama-nano, llama-tiny or llama-small)",
            src->ckpt_path);
    struct hm_param_list pl;
    enum hm_status st = hm_param_list_new(c, &pl);
    if (st != HM_OK)
        return st;
    struct hm_gguf g = {0};
    struct plan_entry *plan = hm_calloc((size_t)pl.n, sizeof *plan);
    float *row = NULL;
    uint8_t *enc = NULL;
    int64_t max_cols = 1;
    if (!plan) {
        st = hm_fail(HM_ERR_NOMEM, "%s: out of memory", path);
        goto out;
    }
    put_hparams(&g, c, dt);
    if ((st = put_tokenizer(&g, src->tok, path)) != HM_OK)
        goto out;
    for (int i = 0; i < pl.n; i++) {
        const struct hm_tensor *p = hm_param_at(&pl, i);
        struct plan_entry *e = &plan[i];
        char name[96];
        HM_ASSERT(hm_name_to_gguf(p->name, name, sizeof name));
        HM_ASSERT(hm_st_get(src->weights, p->name, &e->t) == HM_OK); /* checked at open */
        e->heads = rope_heads(c, p->name);
        e->dt = p->n_dims == 1 ? HM_EXPORT_F32 : dt; /* norms and biases stay f32, as ggml wants */
        e->cols = p->n_dims == 1 ? (e->heads ? 1 : p->shape[0]) : p->shape[1];
        e->rows = p->n_dims == 1 ? (e->heads ? p->shape[0] : 1) : p->shape[0];
        if (e->dt == HM_EXPORT_Q8_0 && e->cols % HM_Q8_0_BLOCK) {
            st = hm_fail(HM_ERR_UNSUPPORTED,
                         "%s: q8_0 needs rows a multiple of %d wide, but '%s' has "
                         "%lld columns (use f16, bf16 or f32)",
                         path, HM_Q8_0_BLOCK, p->name, (long long)e->cols);
            goto out;
        }
        uint64_t ne[2] = {(uint64_t)p->shape[p->n_dims - 1], (uint64_t)p->shape[0]};
        hm_gguf_add_tensor(&g, name, p->n_dims, ne, ggml_type(e->dt));
        max_cols = HM_MAX(max_cols, e->cols);
    }
    row = hm_malloc((size_t)max_cols * sizeof *row);
    enc = hm_malloc((size_t)max_cols * sizeof *row);
    if (!row || !enc) {
        st = hm_fail(HM_ERR_NOMEM, "%s: out of memory", path);
        goto out;
    }
    struct hm_atomic_file af;
    if ((st = hm_atomic_open(&af, path)) != HM_OK)
        goto out;
    st = hm_gguf_write_header(&g, af.f, path);
    for (int i = 0; i < pl.n && st == HM_OK; i++)
        if (write_tensor(af.f, &plan[i], hm_config_head_dim(c), row, enc) != HM_OK)
            st = hm_fail(HM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    if (st == HM_OK)
        st = hm_atomic_commit(&af);
    else
        hm_atomic_abort(&af);
out:
    hm_free(row);
    hm_free(enc);
    hm_free(plan);
    hm_gguf_free(&g);
    hm_param_list_free(&pl);
    return st;
}
