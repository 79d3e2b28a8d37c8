/*
 * tokenizer-impl.h - private to src/tokenizer/: the tokenizer object, the GPT-2 byte table, UTF-8
 * helpers, the GPT-2 pre-tokenizer and a byte-string hash map.
 *
 * Invariants of struct hm_tokenizer: tokens[id].present for every id in vocab or added tokens;
 * tokens[id].bytes is the byte string the id decodes to; byte_id[b] is the id of the token that
 * is the single byte-char of b (or -1); merges maps (left, right) to (rank, new id) and both
 * sides and the result are valid ids. Everything is built once by load/train, then read-only,
 * except `cache`, which only hm_tokenizer_encode touches.
 */
#ifndef HERMES_TOKENIZER_IMPL_H
#define HERMES_TOKENIZER_IMPL_H

#include "hermes/tokenizer.h"
#include "util/util.h"

#include <string.h>

/* ---- hashing and a byte-string -> u32 map (keys borrowed) -------------------------------- */

static inline uint64_t hm_hash_bytes(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xC2B2AE3D27D4EB4Full);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)s[i] << (8 * i);
    h = (h ^ v) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
    return h;
}

static inline uint64_t hm_hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53ull;
    x ^= x >> 33;
    return x;
}

struct hm_smap_slot {
    const char *key; /* NULL = empty */
    uint32_t len;
    uint32_t val;
};
struct hm_smap {
    struct hm_smap_slot *slots;
    size_t cap; /* power of two */
    size_t n;
};
enum hm_status hm_smap_init(struct hm_smap *m, size_t expected);
void hm_smap_free(struct hm_smap *m);
/* Returns the value or -1. */
int64_t hm_smap_get(const struct hm_smap *m, const char *key, size_t len);
/* Insert or overwrite. The key must outlive the map. */
enum hm_status hm_smap_put(struct hm_smap *m, const char *key, size_t len, uint32_t val);

/* ---- pair map: (left, right) -> (rank, new id) ------------------------------------------- */

struct hm_pair_slot {
    uint64_t key; /* (left << 32 | right) + 1; 0 = empty */
    uint32_t rank;
    uint32_t id;
};
struct hm_pmap {
    struct hm_pair_slot *slots;
    size_t cap;
    size_t n;
};
enum hm_status hm_pmap_init(struct hm_pmap *m, size_t expected);
void hm_pmap_free(struct hm_pmap *m);
enum hm_status hm_pmap_put(struct hm_pmap *m, uint32_t a, uint32_t b, uint32_t rank, uint32_t id);
static inline const struct hm_pair_slot *hm_pmap_get(const struct hm_pmap *m, uint32_t a,
                                                     uint32_t b)
{
    uint64_t key = (((uint64_t)a << 32) | b) + 1;
    size_t mask = m->cap - 1;
    for (size_t i = hm_hash_u64(key) & mask;; i = (i + 1) & mask) {
        if (m->slots[i].key == key)
            return &m->slots[i];
        if (m->slots[i].key == 0)
            return NULL;
    }
}

/* ---- bytes and UTF-8 ----------------------------------------------------------------------- */

extern const uint16_t hm_byte_to_cp[256]; /* GPT-2 bytes_to_unicode */
/* Byte of a byte-level char, or -1 when cp is not one of the 256 chars. */
int hm_cp_to_byte(uint32_t cp);
/* Strict UTF-8 decode at s[0..n): returns the length (1..4) and *cp, or 0 if invalid there. */
int hm_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);
/* Can s[0..k) (k >= 1, shorter than the char its lead byte announces) still become a char? */
bool hm_utf8_prefix_ok(const uint8_t *s, size_t k);
int hm_utf8_encode(uint32_t cp, char out[4]);
bool hm_utf8_valid(const char *s, size_t n);
/* Append the byte-level spelling of bytes (each byte -> its char, UTF-8) to out (cap >= 2n+1). */
size_t hm_bytes_to_spelling(const uint8_t *bytes, size_t n, char *out);
/* Inverse: spelling -> bytes when every char is a byte char; returns false otherwise. */
bool hm_spelling_to_bytes(const char *s, size_t n, uint8_t *out, size_t *n_out);

/* ---- GPT-2 pre-tokenizer ------------------------------------------------------------------- */

extern const char hm_unicode_version[];
extern const uint8_t hm_uc_stage1[0x110000 >> 8];
extern const uint8_t hm_uc_stage2[][256];
enum { HM_UC_OTHER = 0, HM_UC_LETTER = 1, HM_UC_NUMBER = 2, HM_UC_SPACE = 3 };
static inline int hm_uc_class(uint32_t cp)
{
    return hm_uc_stage2[hm_uc_stage1[cp >> 8]][cp & 255];
}
/* End of the pre-token that starts at pos (pos < n): one match of the GPT-2 regex
 * 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * Invalid UTF-8 bytes count as single 'other' characters. */
size_t hm_pretok_next(const char *s, size_t n, size_t pos);

/* ---- the tokenizer ------------------------------------------------------------------------- */

struct hm_tok_entry {
    char *spelling;  /* tokenizer.json string, NUL-terminated (owned) */
    uint8_t *bytes;  /* decoded bytes (owned) */
    uint32_t n_spelling;
    uint32_t n_bytes;
    bool present;
    bool special;
    bool in_vocab; /* listed in model.vocab (added tokens may be appended after it) */
};

struct hm_added_token {
    uint32_t id;
    const char *content; /* = tokens[id].spelling */
    uint32_t len;
    bool lstrip, rstrip, normalized;
};

struct hm_enc_cache; /* per-thread pre-token -> ids cache (bpe-encode.c) */

struct hm_tokenizer {
    uint32_t n_ids;              /* max id + 1 */
    struct hm_tok_entry *tokens; /* [n_ids] */
    struct hm_smap spelling_to_id;
    struct hm_smap bytes_to_id;  /* for ignore_merges: byte string -> id */
    int64_t byte_id[256];        /* id of the single byte-char token of each byte, -1 if none */
    struct hm_pmap merges;
    uint32_t n_merges;           /* ranks are 0..n_merges-1 (duplicated pairs keep the later) */
    uint32_t n_model_vocab;      /* entries of model.vocab */
    struct hm_added_token *added;
    size_t n_added;
    bool added_first_byte[256];
    bool add_prefix_space;
    bool use_regex;
    bool ignore_merges;
    bool fuse_unk;
    int64_t unk_id;              /* -1 if none */
    struct hm_enc_cache *cache;  /* used by hm_tokenizer_encode only */
};

/* Empty tokenizer with n_ids id slots (all absent) and GPT-2 settings. */
enum hm_status hm_tok_new(uint32_t n_ids, struct hm_tokenizer **out);
/* Set token `id` from its spelling (bytes derived from it). */
enum hm_status hm_tok_set(struct hm_tokenizer *t, uint32_t id, const char *spelling, size_t n,
                          bool special);
/* After all tokens are set: build the spelling map, byte ids and added-token tables.
 * added[] must already be filled (ids set). */
enum hm_status hm_tok_finalize(struct hm_tokenizer *t);

struct hm_enc_cache *hm_enc_cache_new(void);
void hm_enc_cache_free(struct hm_enc_cache *c);

#endif
