/*
 * hf-import.c - a Hugging Face LlamaForCausalLM folder (or one of our ArceeForCausalLM "gelu"
 * exports) becomes a run folder that `generate` runs and `train --checkpoint` fine-tunes.
 *
 * Only what we compute exactly is accepted; any other setting is refused naming its config key
 * (rope scaling, sliding windows, quantization, a head_dim other than hidden/heads, separate
 * attention and MLP bias flags, ...). Tensors are renamed, never converted: weights.safetensors
 * points at the mapped shards and keeps each tensor's dtype and bytes, so exporting the import
 * in that dtype gives the same tensors back bit for bit.
 */
#include "export-impl.h"

#include <float.h>
#include <jansson.h>
#include <string.h>

struct hf_config {
    const char *path;
    json_t *root;
};

static enum hm_status key_error(const struct hf_config *hc, const char *key, const char *what)
{
    return hm_fail(HM_ERR_FORMAT, "%s: key '%s' must be %s", hc->path, key, what);
}

static enum hm_status unsupported(const struct hf_config *hc, const char *key, const char *why)
{
    return hm_fail(HM_ERR_UNSUPPORTED, "%s: '%s' %s is not supported", hc->path, key, why);
}

static enum hm_status get_int(const struct hf_config *hc, const char *key, int def, int *out)
{
    json_t *v = json_object_get(hc->root, key);
    if (!v || (json_is_null(v) && def >= 0)) {
        if (def < 0)
            return hm_fail(HM_ERR_FORMAT, "%s: missing key '%s'", hc->path, key);
        *out = def;
        return HM_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > (1 << 30))
        return key_error(hc, key, "a positive integer");
    *out = (int)json_integer_value(v);
    return HM_OK;
}

static enum hm_status get_number(const struct hf_config *hc, json_t *obj, const char *key,
                                 float def, float *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return HM_OK;
    }
    /* Beyond FLT_MAX the float would be inf (and the conversion undefined). */
    if (!json_is_number(v) || !(json_number_value(v) > 0) || json_number_value(v) > FLT_MAX)
        return key_error(hc, key, "a positive number within the range of a float");
    *out = (float)json_number_value(v);
    return HM_OK;
}

static enum hm_status get_bool(const struct hf_config *hc, const char *key, bool def, bool *out)
{
    json_t *v = json_object_get(hc->root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return HM_OK;
    }
    if (!json_is_boolean(v))
        return key_error(hc, key, "true or false");
    *out = json_is_true(v);
    return HM_OK;
}

static enum hm_status get_str(const struct hf_config *hc, json_t *obj, const char *key,
                              const char **out)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return HM_OK;
    if (!json_is_string(v))
        return key_error(hc, key, "a string");
    *out = json_string_value(v);
    return HM_OK;
}

/* rope_scaling (v4) or rope_parameters (v5): only plain RoPE, with its theta. */
static enum hm_status get_rope(const struct hf_config *hc, float *theta)
{
    enum hm_status st = get_number(hc, hc->root, "rope_theta", 10000.0f, theta);
    if (st != HM_OK)
        return st;
    static const char *const keys[] = {"rope_scaling", "rope_parameters"};
    for (size_t i = 0; i < HM_ARRAY_LEN(keys); i++) {
        json_t *r = json_object_get(hc->root, keys[i]);
        if (!r || json_is_null(r))
            continue;
        if (!json_is_object(r))
            return key_error(hc, keys[i], "an object or null");
        const char *type = NULL;
        if ((st = get_str(hc, r, "rope_type", &type)) != HM_OK)
            return st;
        if (!type && (st = get_str(hc, r, "type", &type)) != HM_OK)
            return st;
        if (type && strcmp(type, "default") != 0) {
            char what[96];
            snprintf(what, sizeof what, "type \"%s\"", type);
            return unsupported(hc, keys[i], what);
        }
        if (json_object_get(r, "rope_theta") &&
            (st = get_number(hc, r, "rope_theta", *theta, theta)) != HM_OK)
            return st;
        json_t *prf = json_object_get(r, "partial_rotary_factor");
        if (prf && !(json_is_number(prf) && json_number_value(prf) == 1.0))
            return unsupported(hc, "partial_rotary_factor", "other than 1");
    }
    return HM_OK;
}

/* Keys whose presence (with a value that changes the model) we cannot honour. */
static enum hm_status refuse_unsupported(const struct hf_config *hc)
{
    static const char *const must_be_null_or_false[] = {
        "sliding_window", "use_sliding_window",     "quantization_config",
        "num_experts",    "num_local_experts",      "layer_types",
        "no_rope_layers", "attn_logit_softcapping", "final_logit_softcapping"};
    for (size_t i = 0; i < HM_ARRAY_LEN(must_be_null_or_false); i++) {
        json_t *v = json_object_get(hc->root, must_be_null_or_false[i]);
        if (v && !json_is_null(v) && !json_is_false(v) &&
            !(json_is_integer(v) && json_integer_value(v) == 0))
            return unsupported(hc, must_be_null_or_false[i], "(set here)");
    }
    json_t *prf = json_object_get(hc->root, "partial_rotary_factor");
    if (prf && !(json_is_number(prf) && json_number_value(prf) == 1.0))
        return unsupported(hc, "partial_rotary_factor", "other than 1");
    return HM_OK;
}

static enum hm_status parse_config(const struct hf_config *hc, struct hm_model_config *c)
{
    memset(c, 0, sizeof *c);
    if (!json_is_object(hc->root))
        return hm_fail(HM_ERR_FORMAT, "%s: expected a JSON object", hc->path);
    const char *model_type = NULL, *act = NULL;
    enum hm_status st;
    if ((st = get_str(hc, hc->root, "model_type", &model_type)) != HM_OK)
        return st;
    json_t *archs = json_object_get(hc->root, "architectures");
    if (archs && !json_is_null(archs)) {
        if (!json_is_array(archs) || json_array_size(archs) != 1 ||
            !json_is_string(json_array_get(archs, 0)))
            return key_error(hc, "architectures", "a list of one class name");
        const char *a = json_string_value(json_array_get(archs, 0));
        if (strcmp(a, "LlamaForCausalLM") != 0 && strcmp(a, "ArceeForCausalLM") != 0) {
            char what[160];
            snprintf(what, sizeof what, "\"%s\" (only LlamaForCausalLM)", a);
            return unsupported(hc, "architectures", what);
        }
        if (!model_type)
            model_type = strcmp(a, "LlamaForCausalLM") == 0 ? "llama" : "arcee";
    }
    if (!model_type || (strcmp(model_type, "llama") != 0 && strcmp(model_type, "arcee") != 0)) {
        char what[160];
        snprintf(what, sizeof what, "\"%s\" (only llama)", model_type ? model_type : "(missing)");
        return unsupported(hc, "model_type", what);
    }
    bool arcee = strcmp(model_type, "arcee") == 0;
    if ((st = get_str(hc, hc->root, "hidden_act", &act)) != HM_OK)
        return st;
    if (!act)
        act = arcee ? "relu2" : "silu";
    /* "gelu" in transformers is exact erf GELU, ours; gelu_new / gelu_pytorch_tanh are not. */
    if (strcmp(act, arcee ? "gelu" : "silu") != 0) {
        char what[96];
        snprintf(what, sizeof what, "\"%s\" for %s", act, model_type);
        return unsupported(hc, "hidden_act", what);
    }
    c->activation = arcee ? HM_ACT_GELU : HM_ACT_SWIGLU;
    int head_dim = 0;
    bool attention_bias, mlp_bias;
    if ((st = get_int(hc, "vocab_size", -1, &c->vocab_size)) != HM_OK ||
        (st = get_int(hc, "hidden_size", -1, &c->hidden_size)) != HM_OK ||
        (st = get_int(hc, "intermediate_size", -1, &c->intermediate_size)) != HM_OK ||
        (st = get_int(hc, "num_hidden_layers", -1, &c->num_layers)) != HM_OK ||
        (st = get_int(hc, "num_attention_heads", -1, &c->num_heads)) != HM_OK ||
        (st = get_int(hc, "num_key_value_heads", c->num_heads, &c->num_kv_heads)) != HM_OK ||
        (st = get_int(hc, "max_position_embeddings", -1, &c->max_seq_len)) != HM_OK ||
        (st = get_int(hc, "head_dim", c->hidden_size / c->num_heads, &head_dim)) != HM_OK ||
        (st = get_number(hc, hc->root, "rms_norm_eps", 1e-6f, &c->layer_norm_eps)) != HM_OK ||
        (st = get_rope(hc, &c->rope_theta)) != HM_OK ||
        (st = get_bool(hc, "attention_bias", false, &attention_bias)) != HM_OK ||
        (st = get_bool(hc, "mlp_bias", false, &mlp_bias)) != HM_OK ||
        (st = get_bool(hc, "tie_word_embeddings", false, &c->tie_embeddings)) != HM_OK ||
        (st = refuse_unsupported(hc)) != HM_OK)
        return st;
    if (c->hidden_size % c->num_heads || head_dim != c->hidden_size / c->num_heads)
        return unsupported(hc, "head_dim", "other than hidden_size / num_attention_heads");
    if (attention_bias != mlp_bias)
        return unsupported(hc, "mlp_bias", "different from attention_bias");
    c->use_bias = attention_bias;
    c->dropout = 0.0f;
    snprintf(c->name, sizeof c->name, "%s", model_type);
    if ((st = hm_config_validate(c)) != HM_OK)
        return hm_fail(st, "%s: %s", hc->path, hm_last_error());
    return HM_OK;
}

/* ---- weights: one file or an index of shards ---------------------------------------------- */

struct shards {
    struct hm_st_file **files;
    size_t n;
};

static void shards_close(struct shards *s)
{
    for (size_t i = 0; i < s->n; i++)
        hm_st_close(s->files[i]);
    hm_free(s->files);
    memset(s, 0, sizeof *s);
}

/* Opens <dir>/<file>; file is a name hm_hf_index_parse checked (or "model.safetensors"). */
static enum hm_status shard_add(struct shards *s, const char *dir, const char *file)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (!hm_grow((void **)&s->files, s->n + 1, sizeof *s->files))
        return hm_fail(HM_ERR_NOMEM, "out of memory");
    enum hm_status st = hm_st_open(path, &s->files[s->n]);
    if (st == HM_OK)
        s->n++;
    return st;
}

static enum hm_status parse_json(const char *text, size_t len, const char *name, json_t **out)
{
    json_error_t err;
    *out = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (!*out)
        return hm_fail(HM_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", name, err.line,
                       err.column, err.text);
    return HM_OK;
}

enum hm_status hm_hf_config_parse(const char *json, size_t len, const char *name,
                                  struct hm_model_config *out)
{
    struct hf_config hc = {name, NULL};
    enum hm_status st = parse_json(json, len, name, &hc.root);
    if (st != HM_OK)
        return st;
    st = parse_config(&hc, out);
    json_decref(hc.root);
    return st;
}

void hm_hf_shard_names_free(struct hm_hf_shard_names *s)
{
    for (size_t i = 0; i < s->n; i++)
        hm_free(s->names[i]);
    hm_free(s->names);
    memset(s, 0, sizeof *s);
}

static enum hm_status shard_name_add(struct hm_hf_shard_names *s, const char *name,
                                     const char *file)
{
    if (!*file || strchr(file, '/'))
        return hm_fail(HM_ERR_FORMAT, "%s: shard name \"%s\" is not a file in the folder", name,
                       file);
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->names[i], file) == 0)
            return HM_OK;
    char *copy = hm_strdup(file);
    if (!copy || !hm_grow((void **)&s->names, s->n + 1, sizeof *s->names)) {
        hm_free(copy);
        return hm_fail(HM_ERR_NOMEM, "out of memory");
    }
    s->names[s->n++] = copy;
    return HM_OK;
}

enum hm_status hm_hf_index_parse(const char *json, size_t len, const char *name,
                                 struct hm_hf_shard_names *out)
{
    memset(out, 0, sizeof *out);
    json_t *root;
    enum hm_status st = parse_json(json, len, name, &root);
    if (st != HM_OK)
        return st;
    json_t *map = json_object_get(root, "weight_map");
    if (!json_is_object(map))
        st = hm_fail(HM_ERR_FORMAT, "%s: key 'weight_map' must be an object", name);
    const char *tensor;
    json_t *file;
    json_object_foreach(map, tensor, file)
    {
        if (st != HM_OK)
            break;
        if (!json_is_string(file))
            st = hm_fail(HM_ERR_FORMAT, "%s: weight_map['%s'] must be a file name", name, tensor);
        else
            st = shard_name_add(out, name, json_string_value(file));
    }
    json_decref(root);
    if (st != HM_OK)
        hm_hf_shard_names_free(out);
    return st;
}

static enum hm_status shards_open(struct shards *s, const char *dir)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (hm_file_exists(path))
        return shard_add(s, dir, "model.safetensors");
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (!hm_file_exists(path))
        return hm_fail(HM_ERR_IO, "%s: no model.safetensors or model.safetensors.index.json", dir);
    char *text;
    size_t len;
    /* hm_read_file refuses anything but a regular file, so a FIFO never blocks. */
    enum hm_status st = hm_read_file(path, &text, &len);
    if (st != HM_OK)
        return st;
    struct hm_hf_shard_names names;
    st = hm_hf_index_parse(text, len, path, &names);
    hm_free(text);
    for (size_t i = 0; st == HM_OK && i < names.n; i++)
        st = shard_add(s, dir, names.names[i]);
    hm_hf_shard_names_free(&names);
    return st;
}

static const struct hm_st_tensor *shards_find(const struct shards *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++) {
        const struct hm_st_tensor *t = hm_st_find(s->files[i], name);
        if (t)
            return t;
    }
    return NULL;
}

/* Every tensor of the shards must be one of the model's (a tied head may be saved anyway). */
static enum hm_status check_extra(const struct shards *s, const struct hm_param_list *pl)
{
    for (size_t f = 0; f < s->n; f++)
        for (size_t i = 0; i < hm_st_count(s->files[f]); i++) {
            const char *hf = hm_st_at(s->files[f], i)->name;
            char ours[128];
            static const char inv_freq[] = "rotary_emb.inv_freq";
            size_t len = strlen(hf), n = sizeof inv_freq - 1;
            if (len > n && strcmp(hf + len - n, inv_freq) == 0)
                continue; /* a buffer older transformers saved; recomputed from rope_theta */
            if (hm_name_from_hf(hf, ours, sizeof ours) &&
                (hm_model_param(pl->decl, ours) || strcmp(ours, "lm_head.weight") == 0))
                continue;
            return hm_fail(HM_ERR_UNSUPPORTED,
                           "%s: tensor '%s' is not part of the model config.json "
                           "describes (biases, layers or tensors we do not implement)",
                           hm_st_path(s->files[f]), hf);
        }
    return HM_OK;
}

static enum hm_status map_weights(const struct shards *s, const struct hm_param_list *pl,
                                  struct hm_st_entry *e, char (*names)[96])
{
    for (int i = 0; i < pl->n; i++) {
        const struct hm_tensor *p = hm_param_at(pl, i);
        char hf[128];
        HM_ASSERT(hm_name_to_hf(p->name, hf, sizeof hf));
        const struct hm_st_tensor *t = shards_find(s, hf);
        if (!t)
            return hm_fail(HM_ERR_FORMAT, "%s: no tensor '%s'", hm_st_path(s->files[0]), hf);
        bool same = t->ndim == p->n_dims;
        for (int d = 0; same && d < p->n_dims; d++)
            same = t->shape[d] == p->shape[d];
        if (!same)
            return hm_fail(HM_ERR_FORMAT, "tensor '%s' does not have the shape config.json gives",
                           hf);
        if (t->dtype != HM_ST_F32 && t->dtype != HM_ST_BF16 && t->dtype != HM_ST_F16)
            return hm_fail(HM_ERR_UNSUPPORTED,
                           "tensor '%s' has dtype %s (F32, BF16 or F16 expected)", hf,
                           hm_st_dtype_name(t->dtype));
        snprintf(names[i], sizeof names[i], "%s", p->name);
        e[i] = (struct hm_st_entry){
            .name = names[i], .dtype = t->dtype, .ndim = t->ndim, .data = t->data};
        memcpy(e[i].shape, t->shape, (size_t)t->ndim * sizeof *t->shape);
    }
    return HM_OK;
}

enum hm_status hm_import_hf(const char *hf_dir, const char *run_dir, bool replace)
{
    char cfg_path[4400], tok_path[4400], path[4400];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", hf_dir);
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", hf_dir);
    if (!replace && hm_file_exists(run_dir))
        return hm_fail(HM_ERR_USAGE, "%s already exists (use --force to replace it)", run_dir);
    char *cfg_text;
    size_t cfg_len;
    enum hm_status cst = hm_read_file(cfg_path, &cfg_text, &cfg_len);
    if (cst != HM_OK)
        return cst;
    struct hm_model_config cfg;
    struct hm_tokenizer *tok = NULL;
    struct shards s = {0};
    struct hm_param_list pl = {0};
    struct hm_st_entry *e = NULL;
    char(*names)[96] = NULL;
    struct hm_out_dir d;
    enum hm_status st = hm_hf_config_parse(cfg_text, cfg_len, cfg_path, &cfg);
    hm_free(cfg_text);
    if (st != HM_OK || (st = hm_tokenizer_load(tok_path, &tok)) != HM_OK)
        goto out;
    if (hm_tokenizer_vocab_size(tok) != (uint32_t)cfg.vocab_size) {
        st = hm_fail(HM_ERR_UNSUPPORTED,
                     "%s: 'vocab_size' %d differs from the %u tokens of %s (a "
                     "padded vocabulary is not supported)",
                     cfg_path, cfg.vocab_size, hm_tokenizer_vocab_size(tok), tok_path);
        goto out;
    }
    if ((st = shards_open(&s, hf_dir)) != HM_OK || (st = hm_param_list_new(&cfg, &pl)) != HM_OK ||
        (st = check_extra(&s, &pl)) != HM_OK)
        goto out;
    e = hm_calloc((size_t)pl.n, sizeof *e);
    names = hm_calloc((size_t)pl.n, sizeof *names);
    if (!e || !names) {
        st = hm_fail(HM_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((st = map_weights(&s, &pl, e, names)) != HM_OK ||
        (st = hm_out_dir_open(&d, run_dir, replace)) != HM_OK)
        goto out;
    if ((st = hm_config_save(&cfg, hm_out_dir_file(&d, "config.json", path, sizeof path))) !=
            HM_OK ||
        (st = hm_tokenizer_save(tok, hm_out_dir_file(&d, "tokenizer.json", path, sizeof path))) !=
            HM_OK ||
        (st = hm_st_write(hm_out_dir_file(&d, "weights.safetensors", path, sizeof path), e,
                          (size_t)pl.n, NULL, 0)) != HM_OK)
        hm_out_dir_abort(&d);
    else
        st = hm_out_dir_commit(&d);
out:
    hm_free(e);
    hm_free(names);
    hm_param_list_free(&pl);
    shards_close(&s);
    hm_tokenizer_free(tok);
    return st;
}
