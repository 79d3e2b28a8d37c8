/*
 * tokenizer.c - the tokenizer object: id table, spelling and pair hash maps, added-token tables,
 * and the vocabulary getters. Load (tokenizer-json.c) and train (bpe-train.c) both fill it
 * through hm_tok_new / hm_tok_set / hm_tok_finalize; after that it is read-only apart from the
 * encode cache.
 */
#include "tokenizer-impl.h"

#include <stdlib.h>

/* ---- byte-string map ---------------------------------------------------------------------- */

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n)
        c <<= 1;
    return c;
}

enum hm_status hm_smap_init(struct hm_smap *m, size_t expected)
{
    m->cap = pow2_at_least(expected * 2 + 1);
    m->n = 0;
    m->slots = hm_calloc(m->cap, sizeof *m->slots);
    if (!m->slots)
        return hm_fail(HM_ERR_NOMEM, "out of memory (%zu map slots)", m->cap);
    return HM_OK;
}

void hm_smap_free(struct hm_smap *m)
{
    hm_free(m->slots);
    m->slots = NULL;
    m->cap = m->n = 0;
}

int64_t hm_smap_get(const struct hm_smap *m, const char *key, size_t len)
{
    if (!m->slots)
        return -1;
    size_t mask = m->cap - 1;
    for (size_t i = hm_hash_bytes(key, len) & mask;; i = (i + 1) & mask) {
        const struct hm_smap_slot *s = &m->slots[i];
        if (!s->key)
            return -1;
        if (s->len == len && memcmp(s->key, key, len) == 0)
            return s->val;
    }
}

static void smap_insert(struct hm_smap_slot *slots, size_t cap, const char *key, uint32_t len,
                        uint32_t val, bool *added)
{
    size_t mask = cap - 1;
    for (size_t i = hm_hash_bytes(key, len) & mask;; i = (i + 1) & mask) {
        struct hm_smap_slot *s = &slots[i];
        if (!s->key) {
            s->key = key;
            s->len = len;
            s->val = val;
            *added = true;
            return;
        }
        if (s->len == len && memcmp(s->key, key, len) == 0) {
            s->val = val;
            *added = false;
            return;
        }
    }
}

enum hm_status hm_smap_put(struct hm_smap *m, const char *key, size_t len, uint32_t val)
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap * 2;
        struct hm_smap_slot *slots = hm_calloc(cap, sizeof *slots);
        if (!slots)
            return hm_fail(HM_ERR_NOMEM, "out of memory (%zu map slots)", cap);
        for (size_t i = 0; i < m->cap; i++) {
            bool added;
            if (m->slots[i].key)
                smap_insert(slots, cap, m->slots[i].key, m->slots[i].len, m->slots[i].val, &added);
        }
        hm_free(m->slots);
        m->slots = slots;
        m->cap = cap;
    }
    bool added;
    smap_insert(m->slots, m->cap, key, (uint32_t)len, val, &added);
    m->n += added;
    return HM_OK;
}

/* ---- pair map ----------------------------------------------------------------------------- */

enum hm_status hm_pmap_init(struct hm_pmap *m, size_t expected)
{
    m->cap = pow2_at_least(expected * 2 + 1);
    m->n = 0;
    m->slots = hm_calloc(m->cap, sizeof *m->slots);
    if (!m->slots)
        return hm_fail(HM_ERR_NOMEM, "out of memory (%zu merge slots)", m->cap);
    return HM_OK;
}

void hm_pmap_free(struct hm_pmap *m)
{
    hm_free(m->slots);
    m->slots = NULL;
    m->cap = m->n = 0;
}

enum hm_status hm_pmap_put(struct hm_pmap *m, uint32_t a, uint32_t b, uint32_t rank, uint32_t id)
{
    if ((m->n + 1) * 2 > m->cap) {
        struct hm_pmap old = *m;
        if (hm_pmap_init(m, old.cap) != HM_OK) {
            *m = old;
            return HM_ERR_NOMEM;
        }
        for (size_t i = 0; i < old.cap; i++)
            if (old.slots[i].key) {
                uint64_t k = old.slots[i].key - 1;
                hm_pmap_put(m, (uint32_t)(k >> 32), (uint32_t)k, old.slots[i].rank, old.slots[i].id);
            }
        hm_free(old.slots);
    }
    uint64_t key = (((uint64_t)a << 32) | b) + 1;
    size_t mask = m->cap - 1;
    for (size_t i = hm_hash_u64(key) & mask;; i = (i + 1) & mask) {
        struct hm_pair_slot *s = &m->slots[i];
        if (s->key == 0) {
            s->key = key;
            m->n++;
        } else if (s->key != key) {
            continue;
        }
        s->rank = rank;
        s->id = id;
        return HM_OK;
    }
}

/* ---- the object --------------------------------------------------------------------------- */

enum hm_status hm_tok_new(uint32_t n_ids, struct hm_tokenizer **out)
{
    struct hm_tokenizer *t = hm_calloc(1, sizeof *t);
    if (!t)
        return hm_fail(HM_ERR_NOMEM, "out of memory (tokenizer)");
    t->n_ids = n_ids;
    t->tokens = hm_calloc(n_ids ? n_ids : 1, sizeof *t->tokens);
    if (!t->tokens) {
        hm_free(t);
        return hm_fail(HM_ERR_NOMEM, "out of memory (%u tokens)", n_ids);
    }
    t->unk_id = -1;
    t->use_regex = true;
    *out = t;
    return HM_OK;
}

enum hm_status hm_tok_set(struct hm_tokenizer *t, uint32_t id, const char *spelling, size_t n,
                          bool special)
{
    HM_ASSERT(id < t->n_ids);
    struct hm_tok_entry *e = &t->tokens[id];
    hm_free(e->spelling);
    hm_free(e->bytes);
    e->spelling = hm_malloc(n + 1);
    e->bytes = hm_malloc(n ? n : 1);
    if (!e->spelling || !e->bytes)
        return hm_fail(HM_ERR_NOMEM, "out of memory (token %u)", id);
    memcpy(e->spelling, spelling, n);
    e->spelling[n] = 0;
    e->n_spelling = (uint32_t)n;
    size_t nb;
    /* The ByteLevel decoder maps each char back to its byte; a token with a char outside the
     * table (e.g. an added token containing a plain space) decodes to its raw UTF-8. */
    if (hm_spelling_to_bytes(spelling, n, e->bytes, &nb)) {
        e->n_bytes = (uint32_t)nb;
    } else {
        memcpy(e->bytes, spelling, n);
        e->n_bytes = (uint32_t)n;
    }
    e->present = true;
    e->special = special;
    return HM_OK;
}

enum hm_status hm_tok_finalize(struct hm_tokenizer *t)
{
    enum hm_status st;
    hm_smap_free(&t->spelling_to_id);
    if ((st = hm_smap_init(&t->spelling_to_id, t->n_ids)) != HM_OK)
        return st;
    for (uint32_t id = 0; id < t->n_ids; id++) {
        const struct hm_tok_entry *e = &t->tokens[id];
        if (e->present && (st = hm_smap_put(&t->spelling_to_id, e->spelling, e->n_spelling, id)))
            return st;
    }
    /* Added tokens own their spelling: re-point the map entries at the added ids. */
    for (size_t i = 0; i < t->n_added; i++) {
        struct hm_added_token *a = &t->added[i];
        a->content = t->tokens[a->id].spelling;
        a->len = t->tokens[a->id].n_spelling;
        if ((st = hm_smap_put(&t->spelling_to_id, a->content, a->len, a->id)) != HM_OK)
            return st;
        if (a->len)
            t->added_first_byte[(uint8_t)a->content[0]] = true;
    }
    for (int b = 0; b < 256; b++) {
        char sp[4];
        int l = hm_utf8_encode(hm_byte_to_cp[b], sp);
        t->byte_id[b] = hm_smap_get(&t->spelling_to_id, sp, (size_t)l);
    }
    if (t->ignore_merges) {
        hm_smap_free(&t->bytes_to_id);
        if ((st = hm_smap_init(&t->bytes_to_id, t->n_ids)) != HM_OK)
            return st;
        for (uint32_t id = 0; id < t->n_ids; id++) {
            const struct hm_tok_entry *e = &t->tokens[id];
            if (e->present && (st = hm_smap_put(&t->bytes_to_id, (const char *)e->bytes,
                                                e->n_bytes, id)) != HM_OK)
                return st;
        }
    }
    if (!t->cache && !(t->cache = hm_enc_cache_new()))
        return hm_fail(HM_ERR_NOMEM, "out of memory (encode cache)");
    return HM_OK;
}

void hm_tokenizer_free(struct hm_tokenizer *t)
{
    if (!t)
        return;
    for (uint32_t i = 0; i < t->n_ids; i++) {
        hm_free(t->tokens[i].spelling);
        hm_free(t->tokens[i].bytes);
    }
    hm_free(t->tokens);
    hm_smap_free(&t->spelling_to_id);
    hm_smap_free(&t->bytes_to_id);
    hm_pmap_free(&t->merges);
    hm_free(t->added);
    hm_enc_cache_free(t->cache);
    hm_free(t);
}

uint32_t hm_tokenizer_vocab_size(const struct hm_tokenizer *tok)
{
    return tok->n_ids;
}

hm_token hm_tokenizer_token_to_id(const struct hm_tokenizer *tok, const char *token)
{
    return (hm_token)hm_smap_get(&tok->spelling_to_id, token, strlen(token)); /* ids < 2^26 */
}

hm_token hm_tokenizer_eos_id(const struct hm_tokenizer *tok)
{
    hm_token id = hm_tokenizer_token_to_id(tok, "<eos>");
    return id >= 0 ? id : hm_tokenizer_token_to_id(tok, "<|endoftext|>");
}

const char *hm_tokenizer_id_to_token(const struct hm_tokenizer *tok, hm_token id)
{
    if (id < 0 || (uint32_t)id >= tok->n_ids || !tok->tokens[id].present)
        return NULL;
    return tok->tokens[id].spelling;
}

bool hm_tokenizer_is_special(const struct hm_tokenizer *tok, hm_token id)
{
    return id >= 0 && (uint32_t)id < tok->n_ids && tok->tokens[id].present && tok->tokens[id].special;
}
