/*
 * token-cache.h - the binary token cache a training run keeps in its output folder, so a second
 * run skips tokenization. Tokens are uint16 when the vocabulary fits, uint32 otherwise, after a
 * 64-byte header (magic "HMTOKENS", version, width, key, count, vocab). The file is memory-mapped.
 * The key hashes the tokenizer's and the data's identity; a different key means a stale cache.
 */
#ifndef HERMES_TOKEN_CACHE_H
#define HERMES_TOKEN_CACHE_H

#include "hermes/hermes.h"

#ifdef __cplusplus
extern "C" {
#endif

struct hm_token_cache {
    const void *map;      /* whole file mapping */
    size_t map_size;
    const void *tokens;   /* n_tokens tokens of `width` bytes */
    uint64_t n_tokens;
    int width;            /* 2 or 4 */
    uint32_t vocab_size;
    uint64_t key;
    /* Chat data: per-token flags (HM_TOKEN_* of chat.h), a cache of the same length opened and
     * closed by its owner; NULL for plain text. Set by hm_chat_dataset_open. */
    const struct hm_token_cache *flags;
};

/* Write atomically. Every id must be < vocab_size (checked). */
HM_API enum hm_status hm_token_cache_write(const char *path, uint64_t key, uint32_t vocab_size,
                                           const hm_token *ids, uint64_t n);

/* Open and validate. *hit is false (and HM_OK returned) when the file is missing or its key
 * differs; a damaged file is HM_ERR_FORMAT. */
HM_API enum hm_status hm_token_cache_open(const char *path, uint64_t key, struct hm_token_cache *c,
                                          bool *hit);
HM_API void hm_token_cache_close(struct hm_token_cache *c);

static inline hm_token hm_token_at(const struct hm_token_cache *c, uint64_t i)
{
    return (hm_token)(c->width == 2 ? ((const uint16_t *)c->tokens)[i] : ((const uint32_t *)c->tokens)[i]);
}

#ifdef __cplusplus
}
#endif
#endif
