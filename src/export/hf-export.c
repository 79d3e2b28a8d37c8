/*
 * hf-export.c - a checkpoint as a Hugging Face folder that transformers loads with our logits:
 *   SwiGLU -> LlamaForCausalLM (same half-split RoPE, same RMSNorm, weights only renamed);
 *   GELU   -> ArceeForCausalLM with hidden_act "gelu": Llama's attention and norms with a
 *             non-gated up/down MLP, whose "gelu" is exact erf GELU, i.e. our block exactly.
 * Biases map to attention_bias and mlp_bias (we have one use_bias flag for both).
 * model.safetensors is streamed through hm_st_write_fill: a tensor already in the output dtype
 * is copied byte for byte (so an imported model comes back bit-identical), others converted.
 */
#include "export-impl.h"

#include <jansson.h>
#include <string.h>

static const enum hm_st_dtype st_dtype[] = {
    [HM_EXPORT_F32] = HM_ST_F32, [HM_EXPORT_F16] = HM_ST_F16, [HM_EXPORT_BF16] = HM_ST_BF16};
static const char *const torch_dtype[] = {
    [HM_EXPORT_F32] = "float32", [HM_EXPORT_F16] = "float16", [HM_EXPORT_BF16] = "bfloat16"};

static void set_id(json_t *o, const char *key, int64_t id)
{
    json_object_set_new(o, key, id >= 0 ? json_integer(id) : json_null());
}

static json_t *model_config(const struct hm_export_source *src, enum hm_export_dtype dt)
{
    const struct hm_model_config *c = &src->cfg;
    bool swiglu = c->activation == HM_ACT_SWIGLU;
    json_t *o = json_object();
    json_t *arch = json_array();
    json_array_append_new(arch, json_string(swiglu ? "LlamaForCausalLM" : "ArceeForCausalLM"));
    json_object_set_new(o, "architectures", arch);
    json_object_set_new(o, "model_type", json_string(swiglu ? "llama" : "arcee"));
    json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(o, "hidden_size", json_integer(c->hidden_size));
    json_object_set_new(o, "intermediate_size", json_integer(c->intermediate_size));
    json_object_set_new(o, "num_hidden_layers", json_integer(c->num_layers));
    json_object_set_new(o, "num_attention_heads", json_integer(c->num_heads));
    json_object_set_new(o, "num_key_value_heads", json_integer(c->num_kv_heads));
    json_object_set_new(o, "head_dim", json_integer(hm_config_head_dim(c)));
    json_object_set_new(o, "hidden_act", json_string(swiglu ? "silu" : "gelu"));
    json_object_set_new(o, "max_position_embeddings", json_integer(c->max_seq_len));
    json_object_set_new(o, "rms_norm_eps", json_real(hm_float_shortest(c->layer_norm_eps)));
    json_object_set_new(o, "rope_theta", json_real(hm_float_shortest(c->rope_theta)));
    json_object_set_new(o, "attention_bias", json_boolean(c->use_bias));
    json_object_set_new(o, "mlp_bias", json_boolean(c->use_bias));
    json_object_set_new(o, "attention_dropout", json_real(0.0));
    json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tie_embeddings));
    set_id(o, "bos_token_id", hm_tokenizer_find(src->tok, hm_bos_names));
    set_id(o, "eos_token_id", hm_tokenizer_find(src->tok, hm_eos_names));
    set_id(o, "pad_token_id", hm_tokenizer_find(src->tok, hm_pad_names));
    json_object_set_new(o, "torch_dtype", json_string(torch_dtype[dt]));
    json_object_set_new(o, "use_cache", json_true());
    return o;
}

static json_t *generation_config(const struct hm_export_source *src)
{
    json_t *o = json_object();
    set_id(o, "bos_token_id", hm_tokenizer_find(src->tok, hm_bos_names));
    int64_t eos = hm_tokenizer_find(src->tok, hm_eos_names);
    int64_t im_end = hm_tokenizer_token_to_id(src->tok, "<|im_end|>");
    if (eos >= 0 && im_end >= 0) { /* a chat turn ends at <|im_end|>, a document at <eos> */
        json_t *ids = json_array();
        json_array_append_new(ids, json_integer(eos));
        json_array_append_new(ids, json_integer(im_end));
        json_object_set_new(o, "eos_token_id", ids);
    } else {
        set_id(o, "eos_token_id", eos);
    }
    set_id(o, "pad_token_id", hm_tokenizer_find(src->tok, hm_pad_names));
    return o;
}

static void set_token(json_t *o, const char *key, const struct hm_tokenizer *tok,
                      const char *const *names)
{
    int64_t id = hm_tokenizer_find(tok, names);
    json_object_set_new(
        o, key, id >= 0 ? json_string(hm_tokenizer_id_to_token(tok, (uint32_t)id)) : json_null());
}

/* formats.md §1.9: PreTrainedTokenizerFast (not a Llama tokenizer class, which would add a BOS
 * or replace our ByteLevel pipeline) and no clean-up of spaces, so decoding stays lossless. */
static json_t *tokenizer_config(const struct hm_export_source *src)
{
    json_t *o = json_object();
    json_object_set_new(o, "tokenizer_class", json_string("PreTrainedTokenizerFast"));
    set_token(o, "bos_token", src->tok, hm_bos_names);
    set_token(o, "eos_token", src->tok, hm_eos_names);
    set_token(o, "pad_token", src->tok, hm_pad_names);
    json_object_set_new(o, "add_bos_token", json_false());
    json_object_set_new(o, "add_eos_token", json_false());
    json_object_set_new(o, "model_max_length", json_integer(src->cfg.max_seq_len));
    json_object_set_new(o, "clean_up_tokenization_spaces", json_false());
    if (hm_tokenizer_has_chatml(src->tok))
        json_object_set_new(o, "chat_template", json_string(hm_chatml_template));
    return o;
}

static enum hm_status write_json(const struct hm_out_dir *d, const char *name, json_t *o)
{
    char path[4300];
    hm_out_dir_file(d, name, path, sizeof path);
    char *s =
        o ? json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(o);
    if (!s)
        return hm_fail(HM_ERR_NOMEM, "%s: out of memory", path);
    size_t n = strlen(s);
    char *t = hm_malloc(n + 1);
    enum hm_status st = HM_ERR_NOMEM;
    if (t) {
        memcpy(t, s, n);
        t[n] = '\n';
        st = hm_write_file_atomic(path, t, n + 1);
    } else {
        hm_fail(st, "%s: out of memory", path);
    }
    free(s);
    hm_free(t);
    return st;
}

struct fill_ctx {
    const struct hm_st_tensor **from; /* per entry */
    size_t out_size;                  /* bytes per output element */
    enum hm_export_dtype dt;
    float *tmp;
};

static enum hm_status fill(void *user, size_t entry, uint64_t offset, void *buf, size_t nbytes)
{
    struct fill_ctx *c = user;
    const struct hm_st_tensor *t = c->from[entry];
    size_t first = (size_t)(offset / c->out_size), n = nbytes / c->out_size;
    if (t->dtype == st_dtype[c->dt]) {
        memcpy(buf, (const uint8_t *)t->data + offset, nbytes);
        return HM_OK;
    }
    hm_export_read_f32(t, first, n, c->tmp);
    hm_export_encode(c->dt, c->tmp, n, buf);
    return HM_OK;
}

static enum hm_status write_weights(const struct hm_export_source *src, enum hm_export_dtype dt,
                                    const char *path)
{
    struct hm_param_list pl;
    enum hm_status st = hm_param_list_new(&src->cfg, &pl);
    if (st != HM_OK)
        return st;
    struct hm_st_entry *e = hm_calloc((size_t)pl.n, sizeof *e);
    char(*names)[96] = hm_calloc((size_t)pl.n, sizeof *names);
    struct fill_ctx fc = {hm_calloc((size_t)pl.n, sizeof *fc.from), hm_st_dtype_size(st_dtype[dt]),
                          dt, hm_malloc(65536 / 2 * sizeof(float))};
    if (!e || !names || !fc.from || !fc.tmp) {
        st = hm_fail(HM_ERR_NOMEM, "%s: out of memory", path);
        goto out;
    }
    for (int i = 0; i < pl.n; i++) {
        const struct hm_tensor *p = hm_param_at(&pl, i);
        HM_ASSERT(hm_name_to_hf(p->name, names[i], sizeof names[i]));
        HM_ASSERT(hm_st_get(src->weights, p->name, &fc.from[i]) == HM_OK); /* checked at open */
        e[i].name = names[i];
        e[i].dtype = st_dtype[dt];
        e[i].ndim = p->n_dims;
        memcpy(e[i].shape, p->shape, (size_t)p->n_dims * sizeof *p->shape);
    }
    st = hm_st_write_fill(path, e, (size_t)pl.n, NULL, 0, fill, &fc);
out:
    hm_free(e);
    hm_free(names);
    hm_free(fc.from);
    hm_free(fc.tmp);
    hm_param_list_free(&pl);
    return st;
}

enum hm_status hm_export_hf(const struct hm_export_source *src, enum hm_export_dtype dt,
                            const char *dir, bool replace)
{
    if (dt == HM_EXPORT_Q8_0)
        return hm_fail(HM_ERR_UNSUPPORTED,
                       "%s: a Hugging Face folder holds f32, f16 or bf16, not q8_0", dir);
    struct hm_out_dir d;
    enum hm_status st = hm_out_dir_open(&d, dir, replace);
    if (st != HM_OK)
        return st;
    char path[4300];
    if ((st = write_json(&d, "config.json", model_config(src, dt))) != HM_OK ||
        (st = write_json(&d, "generation_config.json", generation_config(src))) != HM_OK ||
        (st = write_json(&d, "tokenizer_config.json", tokenizer_config(src))) != HM_OK ||
        (st = hm_tokenizer_save(src->tok,
                                hm_out_dir_file(&d, "tokenizer.json", path, sizeof path))) ||
        (st = write_weights(src, dt, hm_out_dir_file(&d, "model.safetensors", path, sizeof path))))
        hm_out_dir_abort(&d);
    else
        st = hm_out_dir_commit(&d);
    return st;
}
