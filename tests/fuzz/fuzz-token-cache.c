/* fuzz-token-cache - a token cache file (tokens-train.bin) as a second run maps it
 * (hm_token_cache_open). The key the run expects is taken from the input's key field, so the
 * size checks behind a key match are reached. Any bytes are a miss, a status, or a hit whose
 * tokens lie exactly inside the mapping (which ASan does not watch, hence the explicit check). */
#include "hermes/token-cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[512];
    snprintf(path, sizeof path, "%s/hm-fuzz-token-cache-%ld.bin", dir, (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
    uint64_t key = 0;
    if (size >= 24)
        memcpy(&key, data + 16, sizeof key); /* after magic, version and width */
    struct hm_token_cache c;
    bool hit;
    if (hm_token_cache_open(path, key, &c, &hit) == HM_OK && hit) {
        const char *map = c.map, *tokens = c.tokens;
        if (c.map_size != size || (c.width != 2 && c.width != 4) || tokens < map ||
            (uint64_t)(map + c.map_size - tokens) / (uint64_t)c.width != c.n_tokens ||
            (uint64_t)(map + c.map_size - tokens) % (uint64_t)c.width != 0)
            abort();
        uint64_t sum = 0;
        for (uint64_t i = 0; i < c.n_tokens; i++)
            sum += (uint32_t)hm_token_at(&c, i);
        (void)sum;
        hm_token_cache_close(&c);
    }
    unlink(path);
    return 0;
}
