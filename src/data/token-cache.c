/* token-cache.c - write and map the binary token cache (token-cache.h); little-endian hosts only. */
#include "hermes/token-cache.h"
#include "util/util.h"

#include <errno.h>
#include <string.h>

#define CACHE_MAGIC "HMTOKENS"
#define CACHE_VERSION 1u
#define HEADER_BYTES 64

struct cache_header {
    char magic[8];
    uint32_t version;
    uint32_t width;
    uint64_t key;
    uint64_t n_tokens;
    uint32_t vocab_size;
    uint8_t pad[HEADER_BYTES - 36];
};
_Static_assert(sizeof(struct cache_header) == HEADER_BYTES, "cache header is 64 bytes");

enum hm_status hm_token_cache_write(const char *path, uint64_t key, uint32_t vocab_size,
                                    const hm_token *ids, uint64_t n)
{
    struct cache_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, CACHE_MAGIC, 8);
    h.version = CACHE_VERSION;
    h.width = vocab_size <= 65536 ? 2 : 4;
    h.key = key;
    h.n_tokens = n;
    h.vocab_size = vocab_size;
    struct hm_atomic_file af;
    enum hm_status st = hm_atomic_open(&af, path);
    if (st != HM_OK)
        return st;
    bool ok = fwrite(&h, sizeof h, 1, af.f) == 1;
    enum { CHUNK = 1 << 16 };
    uint16_t buf16[CHUNK];
    for (uint64_t i = 0; ok && i < n; i += CHUNK) {
        uint64_t m = HM_MIN((uint64_t)CHUNK, n - i);
        for (uint64_t j = 0; j < m; j++) {
            if (ids[i + j] < 0 || (uint32_t)ids[i + j] >= vocab_size) {
                hm_atomic_abort(&af);
                return hm_fail(HM_ERR_MISMATCH, "%s: token id %d at %llu is outside the vocabulary (%u)",
                               path, ids[i + j], (unsigned long long)(i + j), vocab_size);
            }
            if (h.width == 2)
                buf16[j] = (uint16_t)ids[i + j];
        }
        ok = h.width == 2 ? fwrite(buf16, 2, m, af.f) == m : fwrite(ids + i, 4, m, af.f) == m;
    }
    if (!ok) {
        st = hm_fail(HM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        hm_atomic_abort(&af);
        return st;
    }
    return hm_atomic_commit(&af);
}

enum hm_status hm_token_cache_open(const char *path, uint64_t key, struct hm_token_cache *c,
                                   bool *hit)
{
    memset(c, 0, sizeof *c);
    *hit = false;
    if (!hm_file_exists(path))
        return HM_OK;
    struct hm_mmap m;
    enum hm_status st = hm_mmap_open(path, &m);
    if (st != HM_OK)
        return st;
    struct cache_header h;
    if (m.size < HEADER_BYTES) {
        hm_mmap_close(&m);
        return hm_fail(HM_ERR_FORMAT, "%s: token cache truncated (%zu bytes)", path, m.size);
    }
    memcpy(&h, m.data, sizeof h);
    if (memcmp(h.magic, CACHE_MAGIC, 8) != 0 || h.version != CACHE_VERSION ||
        (h.width != 2 && h.width != 4)) {
        hm_mmap_close(&m);
        return hm_fail(HM_ERR_FORMAT, "%s: not a hermes token cache (bad magic, version or width)", path);
    }
    if (h.key != key) {
        hm_mmap_close(&m);
        return HM_OK; /* stale: the caller rebuilds it */
    }
    size_t body;
    if (!hm_mul_size(h.n_tokens, h.width, &body) || body != m.size - HEADER_BYTES) {
        hm_mmap_close(&m);
        return hm_fail(HM_ERR_FORMAT, "%s: token cache size does not match its %llu tokens", path,
                       (unsigned long long)h.n_tokens);
    }
    c->map = m.data;
    c->map_size = m.size;
    c->tokens = (const char *)m.data + HEADER_BYTES;
    c->n_tokens = h.n_tokens;
    c->width = (int)h.width;
    c->vocab_size = h.vocab_size;
    c->key = h.key;
    *hit = true;
    return HM_OK;
}

void hm_token_cache_close(struct hm_token_cache *c)
{
    struct hm_mmap m = {c->map, c->map_size};
    hm_mmap_close(&m);
    memset(c, 0, sizeof *c);
}
