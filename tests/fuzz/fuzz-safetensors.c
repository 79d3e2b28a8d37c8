/* fuzz-safetensors - safetensors header validation on arbitrary bytes: every tensor handed out
 * must lie inside the buffer, and reading it as f32 must stay inside it too. */
#include "hermes/safetensors.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so ASan catches any read past the end. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    struct hm_st_file *f;
    if (hm_st_open_buffer(buf, size, "fuzz.safetensors", &f) == HM_OK) {
        for (size_t i = 0; i < hm_st_count(f); i++) {
            const struct hm_st_tensor *t = hm_st_at(f, i);
            if ((const uint8_t *)t->data < buf || (const uint8_t *)t->data + t->nbytes > buf + size)
                abort();
            if (hm_st_find(f, t->name) == NULL)
                abort();
            if (t->numel <= 4096) {
                float out[4096];
                (void)hm_st_read_f32(f, t->name, t->ndim, t->shape, out);
                int32_t iout[4096];
                (void)hm_st_read_i32(f, t->name, t->ndim, t->shape, iout);
            }
        }
        for (size_t i = 0; i < hm_st_meta_count(f); i++) {
            const char *k, *v;
            hm_st_meta_at(f, i, &k, &v);
            if (hm_st_meta(f, k) == NULL)
                abort();
        }
        hm_st_close(f);
    }
    free(buf);
    return 0;
}
