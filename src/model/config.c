/*
 * config.c - model configuration: embedded presets, JSON parsing (jansson) with strict key and
 * type checks, validation, config.json writing, and the exact parameter/FLOP/cache arithmetic.
 */
#include "hermes/config.h"
#include "util/util.h"

#include <jansson.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct embedded_preset {
    const char *name;
    const char *json;
};
extern const struct embedded_preset hm_embedded_presets[];
extern const char *const hm_embedded_preset_names[]; /* the same names, NULL-terminated */

const char *const *hm_config_preset_names(void)
{
    return hm_embedded_preset_names;
}

static void preset_list(char *buf, size_t cap)
{
    buf[0] = 0;
    /* Display in the original's order (smallest first), not alphabetical. */
    static const char *const order[] = {"nano", "tiny", "gpt2-small", "gpt2-medium", "gpt2-large",
                                        "llama-nano", "llama-tiny", "llama-small"};
    for (size_t i = 0; i < HM_ARRAY_LEN(order); i++) {
        if (i)
            strncat(buf, ", ", cap - strlen(buf) - 1);
        strncat(buf, order[i], cap - strlen(buf) - 1);
    }
}

const char *hm_activation_name(enum hm_activation a)
{
    return a == HM_ACT_SWIGLU ? "swiglu" : "gelu";
}

static enum hm_status get_int(json_t *root, const char *origin, const char *key, int *out,
                              bool required)
{
    json_t *v = json_object_get(root, key);
    if (!v) {
        if (required)
            return hm_fail(HM_ERR_FORMAT, "%s: missing key '%s'", origin, key);
        return HM_OK;
    }
    if (!json_is_integer(v))
        return hm_fail(HM_ERR_FORMAT, "%s: key '%s' must be an integer", origin, key);
    if (json_integer_value(v) < 0 || json_integer_value(v) > HM_CONFIG_MAX_DIM)
        return hm_fail(HM_ERR_FORMAT, "%s: key '%s' is %lld, outside [0, %d]", origin, key,
                       (long long)json_integer_value(v), HM_CONFIG_MAX_DIM);
    *out = (int)json_integer_value(v);
    return HM_OK;
}

static enum hm_status get_float(json_t *root, const char *origin, const char *key, float *out)
{
    json_t *v = json_object_get(root, key);
    if (!v)
        return HM_OK;
    if (!json_is_number(v))
        return hm_fail(HM_ERR_FORMAT, "%s: key '%s' must be a number", origin, key);
    if (!(fabs(json_number_value(v)) <= FLT_MAX))
        return hm_fail(HM_ERR_FORMAT, "%s: key '%s' is %g, beyond the range of a float", origin,
                       key, json_number_value(v));
    *out = (float)json_number_value(v);
    return HM_OK;
}

static enum hm_status get_bool(json_t *root, const char *origin, const char *key, bool *out,
                               bool *present)
{
    json_t *v = json_object_get(root, key);
    if (present)
        *present = v != NULL;
    if (!v)
        return HM_OK;
    if (!json_is_boolean(v))
        return hm_fail(HM_ERR_FORMAT, "%s: key '%s' must be true or false", origin, key);
    *out = json_is_true(v);
    return HM_OK;
}

static const char *const known_keys[] = {
    "vocab_size", "max_seq_len", "hidden_size", "num_layers", "num_heads", "intermediate_size",
    "dropout", "layer_norm_eps", "use_bias", "rope_theta", "num_kv_heads", "activation",
    "tie_embeddings", "name",
};

enum hm_status hm_config_parse(const char *text, const char *origin, struct hm_model_config *out)
{
    json_error_t err;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return hm_fail(HM_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", origin, err.line,
                       err.column, err.text);
    enum hm_status st = HM_OK;
    struct hm_model_config c;
    memset(&c, 0, sizeof c);
    if (!json_is_object(root)) {
        st = hm_fail(HM_ERR_FORMAT, "%s: expected a JSON object", origin);
        goto out;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        bool known = false;
        for (size_t i = 0; i < HM_ARRAY_LEN(known_keys); i++)
            known |= strcmp(key, known_keys[i]) == 0;
        if (!known) {
            st = hm_fail(HM_ERR_FORMAT, "%s: unknown key '%s'", origin, key);
            goto out;
        }
    }
    c.num_kv_heads = -1;
    c.dropout = 0.0f;
    c.layer_norm_eps = 1e-5f;
    c.rope_theta = 10000.0f;
    c.use_bias = true;
    c.tie_embeddings = true;
    if ((st = get_int(root, origin, "vocab_size", &c.vocab_size, true)) ||
        (st = get_int(root, origin, "max_seq_len", &c.max_seq_len, true)) ||
        (st = get_int(root, origin, "hidden_size", &c.hidden_size, true)) ||
        (st = get_int(root, origin, "num_layers", &c.num_layers, true)) ||
        (st = get_int(root, origin, "num_heads", &c.num_heads, true)) ||
        (st = get_int(root, origin, "intermediate_size", &c.intermediate_size, true)) ||
        (st = get_int(root, origin, "num_kv_heads", &c.num_kv_heads, false)) ||
        (st = get_float(root, origin, "dropout", &c.dropout)) ||
        (st = get_float(root, origin, "layer_norm_eps", &c.layer_norm_eps)) ||
        (st = get_float(root, origin, "rope_theta", &c.rope_theta)) ||
        (st = get_bool(root, origin, "use_bias", &c.use_bias, NULL)) ||
        (st = get_bool(root, origin, "tie_embeddings", &c.tie_embeddings, NULL)))
        goto out;
    if (c.num_kv_heads < 0)
        c.num_kv_heads = c.num_heads;
    /* The original derived the activation from use_bias: bias => GELU, no bias => SwiGLU. */
    c.activation = c.use_bias ? HM_ACT_GELU : HM_ACT_SWIGLU;
    json_t *act = json_object_get(root, "activation");
    if (act) {
        const char *s = json_string_value(act);
        if (s && strcmp(s, "gelu") == 0)
            c.activation = HM_ACT_GELU;
        else if (s && strcmp(s, "swiglu") == 0)
            c.activation = HM_ACT_SWIGLU;
        else {
            st = hm_fail(HM_ERR_FORMAT, "%s: key 'activation' must be \"gelu\" or \"swiglu\"", origin);
            goto out;
        }
    }
    json_t *name = json_object_get(root, "name");
    if (name && json_is_string(name))
        snprintf(c.name, sizeof c.name, "%s", json_string_value(name));
    if ((st = hm_config_validate(&c)) != HM_OK) {
        hm_fail(st, "%s: %s", origin, hm_last_error());
        goto out;
    }
    *out = c;
out:
    json_decref(root);
    return st;
}

/* Every size the model derives from its config must be far from overflowing 64 bits, so the
 * exact integer arithmetic everywhere else (parameter blocks, KV caches, info's figures) cannot
 * wrap. Doubles estimate first; the limit leaves 2 bits of headroom for their rounding. */
static enum hm_status check_sizes(const struct hm_model_config *c)
{
    const double limit = 0x1p62;
    double C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size, L = c->num_layers;
    double KV = (double)c->num_kv_heads * (c->hidden_size / c->num_heads);
    double per_layer = 2 * C * C + 2 * KV * C + 3 * I * C + 4 * C + 2 * KV + 2 * I;
    double params = L * per_layer + 2 * V * C + C;
    if (16 * params > limit) /* parameters, gradients and two AdamW moments, f32 */
        return hm_fail(HM_ERR_FORMAT, "the model would have %.3g parameters and need %.3g bytes "
                       "to train, more than can be addressed (hidden_size %d, num_layers %d, "
                       "intermediate_size %d, vocab_size %d)", params, 16 * params,
                       c->hidden_size, c->num_layers, c->intermediate_size, c->vocab_size);
    double kv = 2 * L * c->max_seq_len * KV * 4;
    if (kv > limit)
        return hm_fail(HM_ERR_FORMAT, "a KV cache of max_seq_len %d positions would need %.3g "
                       "bytes, more than can be addressed", c->max_seq_len, kv);
    return HM_OK;
}

enum hm_status hm_config_validate(const struct hm_model_config *c)
{
    if (c->vocab_size < 1 || c->max_seq_len < 1 || c->hidden_size < 1 || c->num_layers < 1 ||
        c->num_heads < 1 || c->intermediate_size < 1 || c->num_kv_heads < 1)
        return hm_fail(HM_ERR_FORMAT, "sizes must be positive (vocab_size, max_seq_len, hidden_size, "
                                      "num_layers, num_heads, num_kv_heads, intermediate_size)");
    if (c->hidden_size % c->num_heads)
        return hm_fail(HM_ERR_FORMAT, "hidden_size %d is not divisible by num_heads %d",
                       c->hidden_size, c->num_heads);
    if (c->num_heads % c->num_kv_heads)
        return hm_fail(HM_ERR_FORMAT, "num_heads %d is not divisible by num_kv_heads %d",
                       c->num_heads, c->num_kv_heads);
    if ((c->hidden_size / c->num_heads) % 2)
        return hm_fail(HM_ERR_FORMAT, "head_dim %d must be even for RoPE",
                       c->hidden_size / c->num_heads);
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        return hm_fail(HM_ERR_FORMAT, "dropout %g must be in [0, 1)", c->dropout);
    if (!(c->layer_norm_eps > 0.0f) || !(c->rope_theta > 0.0f) || !isfinite(c->layer_norm_eps) ||
        !isfinite(c->rope_theta))
        return hm_fail(HM_ERR_FORMAT, "layer_norm_eps and rope_theta must be positive and finite");
    return check_sizes(c);
}

enum hm_status hm_config_preset(const char *name, struct hm_model_config *out)
{
    for (int i = 0; hm_embedded_presets[i].name; i++) {
        if (strcmp(hm_embedded_presets[i].name, name) == 0) {
            char origin[96];
            snprintf(origin, sizeof origin, "preset %s", name);
            enum hm_status st = hm_config_parse(hm_embedded_presets[i].json, origin, out);
            if (st == HM_OK)
                snprintf(out->name, sizeof out->name, "%s", name);
            return st;
        }
    }
    char list[256];
    preset_list(list, sizeof list);
    return hm_fail(HM_ERR_USAGE, "unknown model '%s' (presets: %s; or a path to a config .json)",
                   name, list);
}

enum hm_status hm_config_load(const char *path, struct hm_model_config *out)
{
    char *text;
    enum hm_status st = hm_read_file(path, &text, NULL);
    if (st != HM_OK)
        return st;
    st = hm_config_parse(text, path, out);
    hm_free(text);
    if (st == HM_OK && !out->name[0]) {
        const char *base = strrchr(path, '/');
        snprintf(out->name, sizeof out->name, "%s", base ? base + 1 : path);
    }
    return st;
}

enum hm_status hm_config_resolve(const char *name_or_path, struct hm_model_config *out)
{
    if (strchr(name_or_path, '/') || strstr(name_or_path, ".json") || hm_file_exists(name_or_path)) {
        if (!hm_file_exists(name_or_path) && !strchr(name_or_path, '/')) {
            /* fall through to the preset error, which lists the presets */
        } else {
            return hm_config_load(name_or_path, out);
        }
    }
    return hm_config_preset(name_or_path, out);
}

/* A float as the shortest decimal that reads back to it, so 0.1f is written as 0.1. */
static json_t *json_float(float f)
{
    return json_real(hm_float_shortest(f));
}

char *hm_config_to_json(const struct hm_model_config *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(o, "max_seq_len", json_integer(c->max_seq_len));
    json_object_set_new(o, "hidden_size", json_integer(c->hidden_size));
    json_object_set_new(o, "num_layers", json_integer(c->num_layers));
    json_object_set_new(o, "num_heads", json_integer(c->num_heads));
    json_object_set_new(o, "intermediate_size", json_integer(c->intermediate_size));
    json_object_set_new(o, "dropout", json_float(c->dropout));
    json_object_set_new(o, "layer_norm_eps", json_float(c->layer_norm_eps));
    json_object_set_new(o, "use_bias", json_boolean(c->use_bias));
    json_object_set_new(o, "rope_theta", json_float(c->rope_theta));
    json_object_set_new(o, "num_kv_heads", json_integer(c->num_kv_heads));
    json_object_set_new(o, "activation", json_string(hm_activation_name(c->activation)));
    json_object_set_new(o, "tie_embeddings", json_boolean(c->tie_embeddings));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    json_decref(o);
    return s;
}

enum hm_status hm_config_save(const struct hm_model_config *c, const char *path)
{
    char *s = hm_config_to_json(c);
    if (!s)
        return hm_fail(HM_ERR_NOMEM, "%s: cannot serialise config", path);
    size_t n = strlen(s);
    char *t = hm_malloc(n + 2);
    if (!t) {
        free(s);
        return hm_fail(HM_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(t, s, n);
    t[n] = '\n';
    free(s);
    enum hm_status st = hm_write_file_atomic(path, t, n + 1);
    hm_free(t);
    return st;
}

/* ---- exact arithmetic -------------------------------------------------------------------- */

uint64_t hm_config_param_count_nonembed(const struct hm_model_config *c)
{
    uint64_t C = c->hidden_size, I = c->intermediate_size;
    uint64_t KV = (uint64_t)c->num_kv_heads * (uint64_t)hm_config_head_dim(c);
    uint64_t b = c->use_bias ? 1 : 0;
    uint64_t attn = C * C + b * C      /* q */
                    + 2 * (KV * C + b * KV) /* k, v */
                    + C * C + b * C;   /* o */
    uint64_t n_in = c->activation == HM_ACT_SWIGLU ? 2 : 1; /* gate+up, or up */
    uint64_t ffn = n_in * (I * C + b * I) + C * I + b * C;
    uint64_t norms = 2 * C;
    return (uint64_t)c->num_layers * (attn + ffn + norms) + C /* final norm */;
}

uint64_t hm_config_param_count(const struct hm_model_config *c)
{
    uint64_t VC = (uint64_t)c->vocab_size * (uint64_t)c->hidden_size;
    return VC + hm_config_param_count_nonembed(c) + (c->tie_embeddings ? 0 : VC);
}

double hm_config_flops_per_token(const struct hm_model_config *c, int T)
{
    /* 2 FLOPs per multiply-add for every matmul weight (the LM head included, once), plus the
     * attention scores and the weighted sum: 2 * 2 * T * C per layer with the full context T
     * (the PaLM convention, which counts masked positions too). */
    double C = c->hidden_size, I = c->intermediate_size;
    double KV = (double)c->num_kv_heads * hm_config_head_dim(c);
    double n_in = c->activation == HM_ACT_SWIGLU ? 2 : 1;
    double per_layer = 2.0 * (2 * C * C + 2 * KV * C + n_in * I * C + C * I) + 4.0 * T * C;
    return c->num_layers * per_layer + 2.0 * C * c->vocab_size;
}

uint64_t hm_config_kv_cache_bytes(const struct hm_model_config *c, int ctx, int elem_bytes)
{
    return 2ull * (uint64_t)c->num_layers * (uint64_t)ctx * (uint64_t)c->num_kv_heads *
           (uint64_t)hm_config_head_dim(c) * (uint64_t)elem_bytes;
}
