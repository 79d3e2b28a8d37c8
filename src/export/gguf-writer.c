/*
 * gguf-writer.c - GGUF v3 container: metadata key/values, tensor infos and aligned tensor data,
 * written as ggml's reader (gguf.cpp) demands: little-endian, string lengths as u64, tensor
 * offsets the running sum of the padded sizes in info order, and padding after every tensor,
 * the last included. Knows nothing about models; gguf-export.c decides what goes in.
 */
#include "export-impl.h"

#include <errno.h>
#include <string.h>

void hm_bytes_put(struct hm_bytes *b, const void *p, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *d = hm_realloc(b->data, cap);
        if (!d) {
            b->oom = true;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void hm_bytes_free(struct hm_bytes *b)
{
    hm_free(b->data);
    memset(b, 0, sizeof *b);
}

/* Little-endian host (safetensors.c refuses to build otherwise), so values go out as they are. */
static void put_u32(struct hm_bytes *b, uint32_t v)
{
    hm_bytes_put(b, &v, 4);
}

static void put_u64(struct hm_bytes *b, uint64_t v)
{
    hm_bytes_put(b, &v, 8);
}

static void put_str(struct hm_bytes *b, const char *s, size_t len)
{
    put_u64(b, len);
    hm_bytes_put(b, s, len);
}

static void put_key(struct hm_gguf *g, const char *key, enum hm_gguf_type type)
{
    put_str(&g->kv, key, strlen(key));
    put_u32(&g->kv, type);
    g->n_kv++;
}

void hm_gguf_kv_str(struct hm_gguf *g, const char *key, const char *value)
{
    put_key(g, key, HM_GGUF_STRING);
    put_str(&g->kv, value, strlen(value));
}

void hm_gguf_kv_u32(struct hm_gguf *g, const char *key, uint32_t value)
{
    put_key(g, key, HM_GGUF_UINT32);
    put_u32(&g->kv, value);
}

void hm_gguf_kv_f32(struct hm_gguf *g, const char *key, float value)
{
    put_key(g, key, HM_GGUF_FLOAT32);
    hm_bytes_put(&g->kv, &value, 4);
}

void hm_gguf_kv_bool(struct hm_gguf *g, const char *key, bool value)
{
    put_key(g, key, HM_GGUF_BOOL);
    uint8_t v = value;
    hm_bytes_put(&g->kv, &v, 1);
}

void hm_gguf_kv_array(struct hm_gguf *g, const char *key, enum hm_gguf_type elem, uint64_t n)
{
    put_key(g, key, HM_GGUF_ARRAY);
    put_u32(&g->kv, elem);
    put_u64(&g->kv, n);
}

void hm_gguf_arr_str(struct hm_gguf *g, const char *s, size_t len)
{
    put_str(&g->kv, s, len);
}

void hm_gguf_arr_i32(struct hm_gguf *g, int32_t v)
{
    hm_bytes_put(&g->kv, &v, 4);
}

static uint64_t padded(uint64_t n)
{
    return (n + HM_GGUF_ALIGNMENT - 1) / HM_GGUF_ALIGNMENT * HM_GGUF_ALIGNMENT;
}

static uint64_t type_bytes(enum hm_ggml_type type, uint64_t n)
{
    switch (type) {
    case HM_GGML_F32:
        return 4 * n;
    case HM_GGML_F16:
    case HM_GGML_BF16:
        return 2 * n;
    case HM_GGML_Q8_0:
        return n / HM_Q8_0_BLOCK * HM_Q8_0_BYTES;
    }
    return 0;
}

uint64_t hm_gguf_add_tensor(struct hm_gguf *g, const char *name, int n_dims, const uint64_t *ne,
                            enum hm_ggml_type type)
{
    put_str(&g->info, name, strlen(name));
    put_u32(&g->info, (uint32_t)n_dims);
    uint64_t n = 1;
    for (int d = 0; d < n_dims; d++) {
        put_u64(&g->info, ne[d]);
        n *= ne[d];
    }
    put_u32(&g->info, type);
    put_u64(&g->info, g->data_size);
    uint64_t bytes = type_bytes(type, n);
    g->data_size += padded(bytes);
    g->n_tensors++;
    return bytes;
}

static bool write_zeros(FILE *f, uint64_t n)
{
    static const uint8_t zeros[HM_GGUF_ALIGNMENT];
    return n == 0 || fwrite(zeros, 1, n, f) == n;
}

enum hm_status hm_gguf_write_header(struct hm_gguf *g, FILE *f, const char *path)
{
    if (g->kv.oom || g->info.oom)
        return hm_fail(HM_ERR_NOMEM, "%s: out of memory building the GGUF header", path);
    struct hm_bytes head = {0};
    hm_bytes_put(&head, "GGUF", 4);
    put_u32(&head, 3);
    put_u64(&head, g->n_tensors);
    put_u64(&head, g->n_kv);
    if (head.oom)
        return hm_fail(HM_ERR_NOMEM, "%s: out of memory building the GGUF header", path);
    uint64_t total = head.len + g->kv.len + g->info.len;
    bool ok = fwrite(head.data, 1, head.len, f) == head.len &&
              fwrite(g->kv.data, 1, g->kv.len, f) == g->kv.len &&
              fwrite(g->info.data, 1, g->info.len, f) == g->info.len &&
              write_zeros(f, padded(total) - total);
    hm_bytes_free(&head);
    return ok ? HM_OK : hm_fail(HM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
}

bool hm_gguf_write_pad(FILE *f, uint64_t nbytes)
{
    return write_zeros(f, padded(nbytes) - nbytes);
}

void hm_gguf_free(struct hm_gguf *g)
{
    hm_bytes_free(&g->kv);
    hm_bytes_free(&g->info);
    memset(g, 0, sizeof *g);
}
