/* fuzz-config - config.json parsing: any bytes either fail with a status or give a config whose
 * every size figure is computable without overflow (hm_config_validate proves the products fit). */
#include "hermes/config.h"
#include "hermes/model.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    struct hm_model_config cfg;
    if (hm_config_parse(text, "fuzz.json", &cfg) == HM_OK) {
        (void)hm_config_param_count(&cfg);
        (void)hm_config_flops_per_token(&cfg, cfg.max_seq_len);
        (void)hm_config_kv_cache_bytes(&cfg, cfg.max_seq_len, 4);
        struct hm_model_memory mem;
        (void)hm_model_memory_estimate(&cfg, 1, cfg.max_seq_len, &mem);
        char *json = hm_config_to_json(&cfg);
        struct hm_model_config again;
        if (!json || hm_config_parse(json, "fuzz-again.json", &again) != HM_OK)
            abort(); /* what we write must read back */
        hm_free(json);
    }
    free(text);
    return 0;
}
