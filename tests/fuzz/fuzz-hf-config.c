/* fuzz-hf-config - a Hugging Face config.json as `import` reads it (hm_hf_config_parse). Any bytes
 * fail with a status or give a config that validates, whose size figures are computable, and that
 * `import` writes as our config.json and reads back unchanged (every field, floats bit for bit). */
#include "export/export-impl.h"
#include "hermes/config.h"

#include <stdlib.h>
#include <string.h>

static bool same_config(const struct hm_model_config *a, const struct hm_model_config *b)
{
    return a->vocab_size == b->vocab_size && a->max_seq_len == b->max_seq_len &&
           a->hidden_size == b->hidden_size && a->num_layers == b->num_layers &&
           a->num_heads == b->num_heads && a->num_kv_heads == b->num_kv_heads &&
           a->intermediate_size == b->intermediate_size && a->dropout == b->dropout &&
           a->layer_norm_eps == b->layer_norm_eps && a->rope_theta == b->rope_theta &&
           a->use_bias == b->use_bias && a->tie_embeddings == b->tie_embeddings &&
           a->activation == b->activation;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hm_model_config cfg;
    if (hm_hf_config_parse((const char *)data, size, "config.json", &cfg) != HM_OK)
        return 0;
    if (hm_config_validate(&cfg) != HM_OK)
        abort(); /* what import accepts must be a model we can build */
    (void)hm_config_param_count(&cfg);
    (void)hm_config_kv_cache_bytes(&cfg, cfg.max_seq_len, 4);
    char *json = hm_config_to_json(&cfg);
    struct hm_model_config again;
    if (!json || hm_config_parse(json, "config-again.json", &again) != HM_OK ||
        !same_config(&cfg, &again))
        abort(); /* the run folder's config.json reads back as what was imported */
    hm_free(json);
    return 0;
}
