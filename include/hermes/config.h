/*
 * config.h - model configurations: presets, config.json reading and writing, and the exact size,
 * memory and FLOP figures that `hermes-llm info` prints.
 *
 * Presets live in configs/NAME.json and are embedded in the library, so a preset and a checkpoint's
 * config.json go through the same parser. The original tool's 10-key config.json files load too:
 * the keys it lacks take the defaults below (activation follows use_bias, as it did there).
 *
 *     struct hm_model_config cfg;
 *     hm_config_preset("tiny", &cfg);         // or hm_config_load("run/config.json", &cfg)
 *     uint64_t n = hm_config_param_count(&cfg);
 */
#ifndef HERMES_CONFIG_H
#define HERMES_CONFIG_H

#include "hermes/hermes.h"

#ifdef __cplusplus
extern "C" {
#endif

enum hm_activation { HM_ACT_GELU = 0, HM_ACT_SWIGLU = 1 };

#define HM_CONFIG_MAX_DIM (1 << 30) /* the largest value of any integer key */

struct hm_model_config {
    char name[64];          /* preset name or file stem, for display only */
    int vocab_size;
    int max_seq_len;
    int hidden_size;        /* C */
    int num_layers;         /* L */
    int num_heads;          /* NH; head_dim = hidden_size / num_heads */
    int num_kv_heads;       /* divides num_heads; < num_heads means grouped-query attention */
    int intermediate_size;  /* FFN width */
    float dropout;          /* on the embedding output and each residual branch, training only */
    float layer_norm_eps;   /* RMSNorm: x / sqrt(mean(x^2) + eps) * w */
    float rope_theta;
    bool use_bias;
    bool tie_embeddings;    /* lm_head shares embedding.weight */
    enum hm_activation activation;
};

/* Names of the embedded presets, NULL-terminated. */
HM_API const char *const *hm_config_preset_names(void);

/* Preset by name. HM_ERR_USAGE naming the presets when the name is unknown. */
HM_API enum hm_status hm_config_preset(const char *name, struct hm_model_config *out);

/* A preset name, or else a path to a JSON config file. */
HM_API enum hm_status hm_config_resolve(const char *name_or_path, struct hm_model_config *out);

HM_API enum hm_status hm_config_load(const char *path, struct hm_model_config *out);
HM_API enum hm_status hm_config_parse(const char *json, const char *origin, struct hm_model_config *out);

/* Checks every invariant (positive sizes, heads divide hidden, kv heads divide heads, even
 * head_dim) and that the parameter count, training bytes and KV cache stay far below 2^64, so
 * every size computed from the config is exact. */
HM_API enum hm_status hm_config_validate(const struct hm_model_config *cfg);

/* config.json text (original 10 keys first, then ours). Caller frees with hm_free(). */
HM_API char *hm_config_to_json(const struct hm_model_config *cfg);
HM_API enum hm_status hm_config_save(const struct hm_model_config *cfg, const char *path);

HM_API const char *hm_activation_name(enum hm_activation a);

static inline int hm_config_head_dim(const struct hm_model_config *c)
{
    return c->hidden_size / c->num_heads;
}

/* Exact number of parameters the model allocates. */
HM_API uint64_t hm_config_param_count(const struct hm_model_config *cfg);
/* Parameters excluding the token embedding (and the untied head): the "non-embedding" count. */
HM_API uint64_t hm_config_param_count_nonembed(const struct hm_model_config *cfg);

/* FLOPs per token for one forward pass at context length T (matmuls + attention). Training is 3x. */
HM_API double hm_config_flops_per_token(const struct hm_model_config *cfg, int T);

/* Bytes of one K+V cache (batch 1) holding `ctx` positions, with `elem_bytes` per element. */
HM_API uint64_t hm_config_kv_cache_bytes(const struct hm_model_config *cfg, int ctx, int elem_bytes);

#ifdef __cplusplus
}
#endif
#endif
