/* fuzz-hf-index - model.safetensors.index.json as `import` reads it (hm_hf_index_parse). Any bytes
 * fail with a status or give the shard files to open: each a non-empty name inside the folder
 * (no '/'), each once, and none that the weight_map does not name. */
#include "export/export-impl.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* True when some weight_map value of the parsed JSON is exactly `file`. */
static bool named_by_map(const uint8_t *data, size_t size, const char *file)
{
    json_t *root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    const char *key;
    json_t *v;
    bool found = false;
    json_object_foreach(json_object_get(root, "weight_map"), key, v)
        found |= json_is_string(v) && strcmp(json_string_value(v), file) == 0;
    json_decref(root);
    return found;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hm_hf_shard_names s;
    if (hm_hf_index_parse((const char *)data, size, "model.safetensors.index.json", &s) != HM_OK) {
        if (s.n || s.names)
            abort(); /* a refusal leaves nothing to free */
        return 0;
    }
    for (size_t i = 0; i < s.n; i++) {
        if (!s.names[i][0] || strchr(s.names[i], '/') || !named_by_map(data, size, s.names[i]))
            abort();
        for (size_t j = 0; j < i; j++)
            if (strcmp(s.names[i], s.names[j]) == 0)
                abort();
    }
    hm_hf_shard_names_free(&s);
    return 0;
}
