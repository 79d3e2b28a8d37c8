/*
 * bpe-encode.c - encoding and decoding, as HF `tokenizers` does for a byte-level BPE:
 *   1. added tokens are cut out first (leftmost-longest; non-normalized ones, then normalized
 *      ones in the gaps, as HF's two tries do);
 *   2. the GPT-2 regex splits the rest into pre-tokens (pretok.c);
 *   3. each pre-token's bytes become byte-char ids, and the adjacent pair with the lowest merge
 *      rank is merged, leftmost first on ties, until none is left (a scan for short words, a
 *      heap for long ones; both give the same result);
 *   4. results are cached per pre-token (per thread in batch mode).
 * Decoding concatenates each token's bytes, so decode(encode(x)) == x for any byte string.
 */
#include "tokenizer-impl.h"

#include <omp.h>
#include <stdlib.h>

/* ---- the per-thread pre-token cache ------------------------------------------------------- */

#define CACHE_SLOTS (1u << 15)
#define CACHE_KEY_MAX 256
#define CACHE_BYTES (1u << 21)
#define CACHE_IDS (1u << 19)

struct cache_slot {
    uint64_t hash; /* 0 = empty */
    uint32_t key_off, key_len;
    uint32_t ids_off, n_ids;
};

struct hm_enc_cache {
    struct cache_slot *slots;
    uint32_t n;
    uint8_t *keys;
    uint32_t keys_len;
    uint32_t *ids;
    uint32_t ids_len;
    /* scratch for the BPE of one pre-token */
    uint32_t *sym;
    uint32_t *rank;
    uint32_t *nid;
    int32_t *prev, *next;
    uint64_t *heap;
    uint32_t *heap_id;
    size_t scratch_cap;
};

struct hm_enc_cache *hm_enc_cache_new(void)
{
    struct hm_enc_cache *c = hm_calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->slots = hm_calloc(CACHE_SLOTS, sizeof *c->slots);
    c->keys = hm_malloc(CACHE_BYTES);
    c->ids = hm_malloc(CACHE_IDS * sizeof *c->ids);
    if (!c->slots || !c->keys || !c->ids) {
        hm_enc_cache_free(c);
        return NULL;
    }
    return c;
}

void hm_enc_cache_free(struct hm_enc_cache *c)
{
    if (!c)
        return;
    hm_free(c->slots);
    hm_free(c->keys);
    hm_free(c->ids);
    hm_free(c->sym);
    hm_free(c->rank);
    hm_free(c->nid);
    hm_free(c->prev);
    hm_free(c->next);
    hm_free(c->heap);
    hm_free(c->heap_id);
    hm_free(c);
}

static bool scratch_reserve(struct hm_enc_cache *c, size_t n)
{
    if (n <= c->scratch_cap)
        return true;
    size_t cap = c->scratch_cap ? c->scratch_cap : 256;
    while (cap < n)
        cap *= 2;
    bool ok = hm_grow((void **)&c->sym, cap, sizeof *c->sym);
    ok &= hm_grow((void **)&c->rank, cap, sizeof *c->rank);
    ok &= hm_grow((void **)&c->nid, cap, sizeof *c->nid);
    ok &= hm_grow((void **)&c->prev, cap, sizeof *c->prev);
    ok &= hm_grow((void **)&c->next, cap, sizeof *c->next);
    /* A heap holds at most one entry per merge plus the initial pairs: 2n. */
    ok &= hm_grow((void **)&c->heap, 2 * cap, sizeof *c->heap);
    ok &= hm_grow((void **)&c->heap_id, 2 * cap, sizeof *c->heap_id);
    if (!ok)
        return false;
    c->scratch_cap = cap;
    return true;
}

/* ---- BPE of one pre-token ----------------------------------------------------------------- */

/* Lowest rank first, then leftmost: a scan over the m-1 adjacent pairs, O(m) per merge. */
static size_t merge_scan(const struct hm_tokenizer *t, uint32_t *sym, size_t m, uint32_t *rank,
                         uint32_t *nid)
{
    if (m < 2)
        return m;
    for (size_t i = 0; i + 1 < m; i++) {
        const struct hm_pair_slot *p = hm_pmap_get(&t->merges, sym[i], sym[i + 1]);
        rank[i] = p ? p->rank : UINT32_MAX;
        nid[i] = p ? p->id : 0;
    }
    for (;;) {
        size_t best = 0;
        uint32_t br = UINT32_MAX;
        for (size_t i = 0; i + 1 < m; i++)
            if (rank[i] < br) {
                br = rank[i];
                best = i;
            }
        if (br == UINT32_MAX)
            return m;
        sym[best] = nid[best];
        memmove(sym + best + 1, sym + best + 2, (m - best - 2) * sizeof *sym);
        memmove(rank + best, rank + best + 1, (m - best - 2) * sizeof *rank);
        memmove(nid + best, nid + best + 1, (m - best - 2) * sizeof *nid);
        m--;
        for (size_t i = best ? best - 1 : 0; i <= best && i + 1 < m; i++) {
            const struct hm_pair_slot *p = hm_pmap_get(&t->merges, sym[i], sym[i + 1]);
            rank[i] = p ? p->rank : UINT32_MAX;
            nid[i] = p ? p->id : 0;
        }
    }
}

static void heap_push(uint64_t *h, uint32_t *hid, size_t *n, uint64_t key, uint32_t id)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= key)
            break;
        h[i] = h[p];
        hid[i] = hid[p];
        i = p;
    }
    h[i] = key;
    hid[i] = id;
}

static void heap_pop(uint64_t *h, uint32_t *hid, size_t *n)
{
    uint64_t key = h[--*n];
    uint32_t id = hid[*n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        uint64_t mk = key;
        if (l < *n && h[l] < mk) {
            m = l;
            mk = h[l];
        }
        if (r < *n && h[r] < mk)
            m = r;
        if (m == i)
            break;
        h[i] = h[m];
        hid[i] = hid[m];
        i = m;
    }
    h[i] = key;
    hid[i] = id;
}

static void push_pair(const struct hm_tokenizer *t, struct hm_enc_cache *c, size_t *hn,
                      const uint32_t *sym, const int32_t *next, int32_t i)
{
    if (i < 0 || next[i] < 0)
        return;
    const struct hm_pair_slot *p = hm_pmap_get(&t->merges, sym[i], sym[next[i]]);
    if (p)
        heap_push(c->heap, c->heap_id, hn, ((uint64_t)p->rank << 32) | (uint32_t)i, p->id);
}

/* The same rule with a heap of (rank, position), as HF's Word::merge_all: O(m log m). */
static size_t merge_heap(const struct hm_tokenizer *t, struct hm_enc_cache *c, uint32_t *sym,
                         size_t m)
{
    int32_t *prev = c->prev, *next = c->next;
    for (size_t i = 0; i < m; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < m ? (int32_t)i + 1 : -1;
    }
    size_t hn = 0;
    for (size_t i = 0; i + 1 < m; i++)
        push_pair(t, c, &hn, sym, next, (int32_t)i);
    uint8_t *alive = (uint8_t *)c->rank; /* rank[] is unused here: reuse as m flags */
    memset(alive, 1, m);
    while (hn) {
        uint64_t key = c->heap[0];
        uint32_t new_id = c->heap_id[0];
        heap_pop(c->heap, c->heap_id, &hn);
        int32_t i = (int32_t)(uint32_t)key;
        if (!alive[i] || next[i] < 0)
            continue;
        const struct hm_pair_slot *p = hm_pmap_get(&t->merges, sym[i], sym[next[i]]);
        if (!p || p->id != new_id)
            continue;
        int32_t j = next[i];
        sym[i] = new_id;
        alive[j] = 0;
        next[i] = next[j];
        if (next[j] >= 0)
            prev[next[j]] = i;
        push_pair(t, c, &hn, sym, next, prev[i]);
        push_pair(t, c, &hn, sym, next, i);
    }
    size_t o = 0;
    for (int32_t i = 0; i >= 0; i = next[i])
        sym[o++] = sym[i];
    return o;
}

/* Ids of one pre-token into c->sym; returns their count. */
static size_t bpe_word(const struct hm_tokenizer *t, struct hm_enc_cache *c, const uint8_t *s,
                       size_t n)
{
    if (t->ignore_merges) {
        int64_t id = hm_smap_get(&t->bytes_to_id, (const char *)s, n);
        if (id >= 0) {
            c->sym[0] = (uint32_t)id;
            return 1;
        }
    }
    size_t m = 0;
    bool last_unk = false;
    for (size_t i = 0; i < n; i++) {
        int64_t id = t->byte_id[s[i]];
        if (id < 0) {
            /* A byte char missing from the vocab: unk if set (fused if asked), else dropped. */
            if (t->unk_id < 0 || (t->fuse_unk && last_unk))
                continue;
            id = t->unk_id;
            last_unk = true;
        } else {
            last_unk = false;
        }
        c->sym[m++] = (uint32_t)id;
    }
    if (m <= 64)
        return merge_scan(t, c->sym, m, c->rank, c->nid);
    return merge_heap(t, c, c->sym, m);
}

/* ---- output sinks ------------------------------------------------------------------------- */

struct sink {
    hm_token *ids;
    size_t cap;
    size_t n;
    bool grow; /* realloc as needed (batch) instead of counting past cap (caller buffer) */
    bool oom;
};

static void sink_put(struct sink *k, const uint32_t *ids, size_t n)
{
    if (k->grow && k->n + n > k->cap) {
        size_t cap = k->cap ? k->cap : 4096;
        while (cap < k->n + n)
            cap *= 2;
        hm_token *p = hm_realloc(k->ids, cap * sizeof *p);
        if (!p) {
            k->oom = true;
            return;
        }
        k->ids = p;
        k->cap = cap;
    }
    for (size_t i = 0; i < n; i++, k->n++)
        if (k->n < k->cap)
            k->ids[k->n] = (hm_token)ids[i]; /* ids < 2^26 (tokenizer-json.c) */
}

static void cache_reset(struct hm_enc_cache *c)
{
    memset(c->slots, 0, CACHE_SLOTS * sizeof *c->slots);
    c->n = 0;
    c->keys_len = 0;
    c->ids_len = 0;
}

static bool encode_pretoken(const struct hm_tokenizer *t, struct hm_enc_cache *c, const uint8_t *s,
                            size_t n, struct sink *k)
{
    uint64_t h = 0;
    size_t slot = 0;
    if (n <= CACHE_KEY_MAX) {
        h = hm_hash_bytes(s, n) | 1;
        for (slot = h & (CACHE_SLOTS - 1);; slot = (slot + 1) & (CACHE_SLOTS - 1)) {
            struct cache_slot *e = &c->slots[slot];
            if (!e->hash)
                break;
            if (e->hash == h && e->key_len == n && memcmp(c->keys + e->key_off, s, n) == 0) {
                sink_put(k, c->ids + e->ids_off, e->n_ids);
                return true;
            }
        }
    }
    if (!scratch_reserve(c, n + 1))
        return false;
    size_t m = bpe_word(t, c, s, n);
    sink_put(k, c->sym, m);
    if (n <= CACHE_KEY_MAX) {
        if (c->n >= CACHE_SLOTS / 2 || c->keys_len + n > CACHE_BYTES || c->ids_len + m > CACHE_IDS) {
            cache_reset(c);
            for (slot = h & (CACHE_SLOTS - 1); c->slots[slot].hash;)
                slot = (slot + 1) & (CACHE_SLOTS - 1);
        }
        struct cache_slot *e = &c->slots[slot];
        e->hash = h;
        e->key_off = c->keys_len;
        e->key_len = (uint32_t)n;
        e->ids_off = c->ids_len;
        e->n_ids = (uint32_t)m;
        memcpy(c->keys + c->keys_len, s, n);
        memcpy(c->ids + c->ids_len, c->sym, m * sizeof *c->sym);
        c->keys_len += (uint32_t)n;
        c->ids_len += (uint32_t)m;
        c->n++;
    }
    return true;
}

/* Text without added tokens: (prefix space), regex split, BPE per pre-token. */
static bool encode_plain(const struct hm_tokenizer *t, struct hm_enc_cache *c, const char *s,
                         size_t n, struct sink *k)
{
    if (n == 0)
        return true;
    char *tmp = NULL;
    if (t->add_prefix_space && s[0] != ' ') {
        tmp = hm_malloc(n + 1);
        if (!tmp)
            return false;
        tmp[0] = ' ';
        memcpy(tmp + 1, s, n);
        s = tmp;
        n++;
    }
    bool ok = true;
    if (!t->use_regex) {
        ok = encode_pretoken(t, c, (const uint8_t *)s, n, k);
    } else {
        for (size_t pos = 0; pos < n && ok;) {
            size_t end = hm_pretok_next(s, n, pos);
            ok = encode_pretoken(t, c, (const uint8_t *)s + pos, end - pos, k);
            pos = end;
        }
    }
    hm_free(tmp);
    return ok;
}

static bool is_space_before(const char *s, size_t lo, size_t i, size_t *start)
{
    /* Is the char that ends at i (after lo) White_Space? *start = its first byte. */
    if (i <= lo)
        return false;
    size_t j = i - 1;
    while (j > lo && i - j < 4 && ((uint8_t)s[j] & 0xC0) == 0x80)
        j--;
    uint32_t cp;
    int l = hm_utf8_decode((const uint8_t *)s + j, i - j, &cp);
    if (l != (int)(i - j) || hm_uc_class(cp) != HM_UC_SPACE)
        return false;
    *start = j;
    return true;
}

static size_t space_after(const char *s, size_t n, size_t i)
{
    uint32_t cp;
    int l = hm_utf8_decode((const uint8_t *)s + i, n - i, &cp);
    return l && hm_uc_class(cp) == HM_UC_SPACE ? (size_t)l : 0;
}

/* Phase 0 matches non-normalized added tokens, phase 1 normalized ones in the gaps. */
static bool encode_added(const struct hm_tokenizer *t, struct hm_enc_cache *c, const char *s,
                         size_t n, int phase, struct sink *k)
{
    if (phase == 2 || t->n_added == 0)
        return encode_plain(t, c, s, n, k);
    size_t done = 0; /* text before `done` is handled */
    for (size_t p = 0; p < n; p++) {
        if (!t->added_first_byte[(uint8_t)s[p]])
            continue;
        const struct hm_added_token *best = NULL;
        for (size_t i = 0; i < t->n_added; i++) {
            const struct hm_added_token *a = &t->added[i];
            if (a->normalized != (phase == 1))
                continue;
            if (a->len && a->len <= n - p && (!best || a->len > best->len) &&
                memcmp(s + p, a->content, a->len) == 0)
                best = a;
        }
        if (!best)
            continue;
        size_t start = p, end = p + best->len, j;
        if (best->lstrip)
            while (is_space_before(s, done, start, &j))
                start = j;
        if (best->rstrip)
            for (size_t l; end < n && (l = space_after(s, n, end)) > 0;)
                end += l;
        if (!encode_added(t, c, s + done, start - done, phase + 1, k))
            return false;
        sink_put(k, &best->id, 1);
        done = end;
        p = end - 1;
    }
    return encode_added(t, c, s + done, n - done, phase + 1, k);
}

static bool encode_into(const struct hm_tokenizer *t, struct hm_enc_cache *c, const char *s,
                        size_t n, struct sink *k)
{
    return encode_added(t, c, s, n, 0, k) && !k->oom;
}

enum hm_status hm_tokenizer_encode(struct hm_tokenizer *tok, const char *text, size_t len,
                                   hm_token *ids, size_t cap, size_t *n_out)
{
    struct sink k = {.ids = ids, .cap = ids ? cap : 0};
    if (!encode_into(tok, tok->cache, text, len, &k))
        return hm_fail(HM_ERR_NOMEM, "encode: out of memory");
    *n_out = k.n;
    return HM_OK;
}

enum hm_status hm_tokenizer_encode_batch(const struct hm_tokenizer *tok, const char *const *texts,
                                         const size_t *lens, size_t n_docs, int n_threads,
                                         struct hm_token_batch *out)
{
    memset(out, 0, sizeof *out);
    int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
    if ((size_t)nt > n_docs)
        nt = n_docs ? (int)n_docs : 1;
    struct sink *sinks = hm_calloc((size_t)nt, sizeof *sinks);
    size_t *start = hm_malloc((n_docs + 1) * sizeof *start);
    size_t *count = hm_malloc((n_docs + 1) * sizeof *count);
    int *owner = hm_malloc((n_docs + 1) * sizeof *owner);
    out->offsets = hm_malloc((n_docs + 1) * sizeof *out->offsets);
    bool failed = !sinks || !start || !count || !owner || !out->offsets;
    if (!failed) {
#pragma omp parallel num_threads(nt)
        {
            int me = omp_get_thread_num();
            struct sink *k = &sinks[me];
            k->grow = true;
            struct hm_enc_cache *c = hm_enc_cache_new();
            if (!c) {
#pragma omp atomic write
                failed = true;
            }
#pragma omp for schedule(dynamic, 8)
            for (size_t i = 0; i < n_docs; i++) {
                if (!c)
                    continue;
                start[i] = k->n;
                owner[i] = me;
                if (!encode_into(tok, c, texts[i], lens[i], k)) {
#pragma omp atomic write
                    failed = true;
                }
                count[i] = k->n - start[i];
            }
            hm_enc_cache_free(c);
        }
    }
    size_t total = 0;
    if (!failed) {
        for (size_t i = 0; i < n_docs; i++) {
            out->offsets[i] = total;
            total += count[i];
        }
        out->offsets[n_docs] = total;
        out->ids = hm_malloc((total ? total : 1) * sizeof *out->ids);
        failed = !out->ids;
    }
    if (!failed) {
#pragma omp parallel for num_threads(nt) schedule(static)
        for (size_t i = 0; i < n_docs; i++)
            memcpy(out->ids + out->offsets[i], sinks[owner[i]].ids + start[i],
                   count[i] * sizeof *out->ids);
        out->n_docs = n_docs;
        out->n_ids = total;
    }
    for (int i = 0; sinks && i < nt; i++)
        hm_free(sinks[i].ids);
    hm_free(sinks);
    hm_free(start);
    hm_free(count);
    hm_free(owner);
    if (failed) {
        hm_token_batch_free(out);
        return hm_fail(HM_ERR_NOMEM, "encode_batch: out of memory (%zu documents)", n_docs);
    }
    return HM_OK;
}

void hm_token_batch_free(struct hm_token_batch *b)
{
    if (!b)
        return;
    hm_free(b->ids);
    hm_free(b->offsets);
    memset(b, 0, sizeof *b);
}

/* ---- decoding ----------------------------------------------------------------------------- */

enum hm_status hm_tokenizer_decode(const struct hm_tokenizer *tok, const hm_token *ids, size_t n,
                                   bool skip_special, char *buf, size_t cap, size_t *n_out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (uint32_t)ids[i] >= tok->n_ids || !tok->tokens[ids[i]].present)
            return hm_fail(HM_ERR_USAGE, "decode: token id %d is not in the vocabulary (size %u)",
                           ids[i], tok->n_ids);
        const struct hm_tok_entry *e = &tok->tokens[ids[i]];
        if (skip_special && e->special)
            continue;
        if (o < cap) {
            size_t l = HM_MIN((size_t)e->n_bytes, cap - o);
            memcpy(buf + o, e->bytes, l);
        }
        o += e->n_bytes;
    }
    if (cap)
        buf[o < cap ? o : cap - 1] = 0;
    *n_out = o;
    return HM_OK;
}

struct hm_decode_stream {
    const struct hm_tokenizer *tok;
    bool skip_special;
    uint8_t *buf;
    size_t n;    /* bytes held (an incomplete char at the front after each push) */
    size_t cap;
    size_t out;  /* bytes handed out by the last call, dropped at the next */
};

enum hm_status hm_decode_stream_new(const struct hm_tokenizer *tok, bool skip_special,
                                    struct hm_decode_stream **out)
{
    struct hm_decode_stream *s = hm_calloc(1, sizeof *s);
    if (!s)
        return hm_fail(HM_ERR_NOMEM, "out of memory (decode stream)");
    s->tok = tok;
    s->skip_special = skip_special;
    s->cap = 64;
    s->buf = hm_malloc(s->cap);
    if (!s->buf) {
        hm_free(s);
        return hm_fail(HM_ERR_NOMEM, "out of memory (decode stream)");
    }
    *out = s;
    return HM_OK;
}

/* Length of the prefix of s[0..n) that ends at a character boundary (invalid bytes pass). */
static size_t utf8_ready(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int l = hm_utf8_decode(s + i, n - i, &cp);
        if (l) {
            i += (size_t)l;
            continue;
        }
        if (hm_utf8_prefix_ok(s + i, n - i))
            return i;
        i++;
    }
    return n;
}

enum hm_status hm_decode_stream_push(struct hm_decode_stream *s, hm_token id, const char **text,
                                     size_t *len)
{
    const struct hm_tokenizer *t = s->tok;
    if (id < 0 || (uint32_t)id >= t->n_ids || !t->tokens[id].present)
        return hm_fail(HM_ERR_USAGE, "decode: token id %d is not in the vocabulary (size %u)", id,
                       t->n_ids);
    memmove(s->buf, s->buf + s->out, s->n - s->out);
    s->n -= s->out;
    s->out = 0;
    const struct hm_tok_entry *e = &t->tokens[id];
    if (!(s->skip_special && e->special)) {
        if (s->n + e->n_bytes > s->cap) {
            size_t cap = HM_MAX((size_t)64, 2 * (s->n + e->n_bytes));
            uint8_t *b = hm_realloc(s->buf, cap);
            if (!b)
                return hm_fail(HM_ERR_NOMEM, "out of memory (decode stream)");
            s->buf = b;
            s->cap = cap;
        }
        memcpy(s->buf + s->n, e->bytes, e->n_bytes);
        s->n += e->n_bytes;
    }
    s->out = utf8_ready(s->buf, s->n);
    *text = (const char *)s->buf;
    *len = s->out;
    return HM_OK;
}

void hm_decode_stream_flush(struct hm_decode_stream *s, const char **text, size_t *len)
{
    memmove(s->buf, s->buf + s->out, s->n - s->out);
    s->n -= s->out;
    s->out = s->n;
    *text = (const char *)s->buf;
    *len = s->n;
}

void hm_decode_stream_free(struct hm_decode_stream *s)
{
    if (!s)
        return;
    hm_free(s->buf);
    hm_free(s);
}
