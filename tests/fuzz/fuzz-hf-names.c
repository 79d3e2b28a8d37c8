/* fuzz-hf-names - tensor names read from a Hugging Face safetensors header (import's
 * hm_name_from_hf) on arbitrary strings. A name that maps to one of ours maps back to exactly
 * itself, so no second spelling of a tensor ("model.layers.07...") passes as part of the model;
 * and each of our names maps to HF and GGUF names and back. */
#include "export/export-impl.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *name = malloc(size + 1);
    if (!name)
        return 0;
    memcpy(name, data, size);
    name[size] = 0;
    char ours[128], hf[128], gguf[128];
    if (hm_name_from_hf(name, ours, sizeof ours) &&
        (!hm_name_to_hf(ours, hf, sizeof hf) || strcmp(hf, name) != 0 ||
         !hm_name_to_gguf(ours, gguf, sizeof gguf)))
        abort();
    if (hm_name_to_hf(name, hf, sizeof hf) &&
        (!hm_name_from_hf(hf, ours, sizeof ours) || strcmp(ours, name) != 0))
        abort();
    free(name);
    return 0;
}
