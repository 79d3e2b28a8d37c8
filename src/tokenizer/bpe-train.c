/*
 * bpe-train.c - byte-level BPE training that reproduces HF `tokenizers` BpeTrainer exactly
 * (formats.md §1.7), including the §1.7.1 case where a merge's result string already exists.
 *
 * Phase 1 (count): fed sequences are buffered into batches; each batch is pre-tokenized and its
 * words counted in parallel (OpenMP), one open-addressing word map per thread, merged at the end.
 * Memory is the distinct words plus one batch, whatever the corpus size.
 * Phase 2 (merge): ids are specials, then the 256 byte chars by code point, then merges. Pair
 * counts live in arrays indexed through a pair hash map. As in HF, a max-heap holds entries
 * (count, pair, position list); the top is the highest count, ties to the smallest (left, right).
 * A popped entry whose count is stale is refreshed and pushed back. Merging rewrites only the
 * words on the entry's position list and updates counts by -1/+1 around each replacement; every
 * pair that gained occurrences is pushed with the words that changed. Nothing is ever recounted.
 * Each entry owning its own list is what makes the §1.7.1 case come out as in HF.
 */
#include "tokenizer-impl.h"

#include <omp.h>
#include <stdlib.h>

#define BATCH_BYTES (8u << 20)

/* ---- word counting ------------------------------------------------------------------------ */

struct wslot {
    uint64_t hash; /* 0 = empty */
    uint64_t count;
    uint64_t off;  /* key offset in the arena */
    uint32_t len;
};

struct wmap {
    struct wslot *slots;
    size_t cap, n;
    char *arena;
    size_t arena_len, arena_cap;
    bool oom;
};

static bool wmap_init(struct wmap *m)
{
    memset(m, 0, sizeof *m);
    m->cap = 1 << 14;
    m->slots = hm_calloc(m->cap, sizeof *m->slots);
    return m->slots != NULL;
}

static void wmap_free(struct wmap *m)
{
    hm_free(m->slots);
    hm_free(m->arena);
    memset(m, 0, sizeof *m);
}

static bool wmap_grow(struct wmap *m)
{
    size_t cap = m->cap * 2;
    struct wslot *s = hm_calloc(cap, sizeof *s);
    if (!s)
        return false;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].hash)
            continue;
        size_t j = m->slots[i].hash & (cap - 1);
        while (s[j].hash)
            j = (j + 1) & (cap - 1);
        s[j] = m->slots[i];
    }
    hm_free(m->slots);
    m->slots = s;
    m->cap = cap;
    return true;
}

static void wmap_add(struct wmap *m, const char *key, size_t len, uint64_t h, uint64_t count)
{
    size_t mask = m->cap - 1;
    size_t i = h & mask;
    for (;; i = (i + 1) & mask) {
        struct wslot *s = &m->slots[i];
        if (!s->hash)
            break;
        if (s->hash == h && s->len == len && memcmp(m->arena + s->off, key, len) == 0) {
            s->count += count;
            return;
        }
    }
    if (m->arena_len + len > m->arena_cap) {
        size_t cap = m->arena_cap ? m->arena_cap * 2 : (1 << 16);
        while (cap < m->arena_len + len)
            cap *= 2;
        char *a = hm_realloc(m->arena, cap);
        if (!a) {
            m->oom = true;
            return;
        }
        m->arena = a;
        m->arena_cap = cap;
    }
    memcpy(m->arena + m->arena_len, key, len);
    m->slots[i] = (struct wslot){h, count, m->arena_len, (uint32_t)len};
    m->arena_len += len;
    if (++m->n * 2 > m->cap && !wmap_grow(m))
        m->oom = true;
}

/* ---- the trainer object ------------------------------------------------------------------- */

struct hm_tokenizer_trainer {
    uint32_t vocab_size;
    uint64_t min_frequency;
    char **specials;
    size_t n_specials;
    hm_tokenizer_progress_fn progress;
    void *progress_user;
    int nt;
    struct wmap *maps; /* [nt] */
    char *batch;
    size_t batch_len, batch_cap;
    size_t *seq_end; /* end offset of each buffered sequence */
    size_t n_seq, seq_cap;
    uint64_t bytes_fed;
    bool failed;
};

struct hm_tokenizer_train_opts hm_tokenizer_train_opts_default(void)
{
    /* the four of the original, then ChatML's (chat.h), so every new tokenizer can hold chats */
    static const char *const specials[] = {"<pad>", "<bos>", "<eos>", "<unk>", "<|im_start|>", "<|im_end|>"};
    return (struct hm_tokenizer_train_opts){.vocab_size = 32000, .min_frequency = 2, .special_tokens = specials,
                                            .n_special_tokens = HM_ARRAY_LEN(specials)};
}

enum hm_status hm_tokenizer_trainer_new(const struct hm_tokenizer_train_opts *opts,
                                        struct hm_tokenizer_trainer **out)
{
    for (size_t i = 0; i < opts->n_special_tokens; i++) {
        const char *s = opts->special_tokens[i];
        if (!s || !*s)
            return hm_fail(HM_ERR_USAGE, "special token %zu is empty", i + 1);
        if (!hm_utf8_valid(s, strlen(s)))
            return hm_fail(HM_ERR_USAGE, "special token %zu is not valid UTF-8", i + 1);
        for (size_t j = 0; j < i; j++)
            if (strcmp(opts->special_tokens[j], s) == 0)
                return hm_fail(HM_ERR_USAGE, "special token '%s' is given twice", s);
    }
    if ((uint64_t)opts->vocab_size < 256 + (uint64_t)opts->n_special_tokens)
        return hm_fail(HM_ERR_USAGE,
                       "vocab size %u is below 256 byte tokens + %zu special tokens = %zu",
                       opts->vocab_size, opts->n_special_tokens, 256 + opts->n_special_tokens);
    if (opts->vocab_size > (1u << 24))
        return hm_fail(HM_ERR_USAGE, "vocab size %u is above the limit of %u", opts->vocab_size,
                       1u << 24);
    struct hm_tokenizer_trainer *tr = hm_calloc(1, sizeof *tr);
    if (!tr)
        return hm_fail(HM_ERR_NOMEM, "out of memory (trainer)");
    tr->vocab_size = opts->vocab_size;
    tr->min_frequency = opts->min_frequency;
    tr->progress = opts->progress;
    tr->progress_user = opts->progress_user;
    tr->nt = opts->n_threads > 0 ? opts->n_threads : omp_get_max_threads();
    tr->specials = hm_calloc(opts->n_special_tokens + 1, sizeof *tr->specials);
    tr->maps = hm_calloc((size_t)tr->nt, sizeof *tr->maps);
    bool ok = tr->specials && tr->maps;
    for (size_t i = 0; ok && i < opts->n_special_tokens; i++, tr->n_specials++)
        ok = (tr->specials[i] = hm_strdup(opts->special_tokens[i])) != NULL;
    for (int i = 0; ok && i < tr->nt; i++)
        ok = wmap_init(&tr->maps[i]);
    if (!ok) {
        hm_tokenizer_trainer_free(tr);
        return hm_fail(HM_ERR_NOMEM, "out of memory (trainer)");
    }
    *out = tr;
    return HM_OK;
}

void hm_tokenizer_trainer_free(struct hm_tokenizer_trainer *tr)
{
    if (!tr)
        return;
    for (size_t i = 0; tr->specials && i < tr->n_specials; i++)
        hm_free(tr->specials[i]);
    hm_free(tr->specials);
    for (int i = 0; tr->maps && i < tr->nt; i++)
        wmap_free(&tr->maps[i]);
    hm_free(tr->maps);
    hm_free(tr->batch);
    hm_free(tr->seq_end);
    hm_free(tr);
}

static void count_sequence(struct wmap *m, const char *s, size_t n)
{
    for (size_t pos = 0; pos < n;) {
        size_t end = hm_pretok_next(s, n, pos);
        wmap_add(m, s + pos, end - pos, hm_hash_bytes(s + pos, end - pos) | 1, 1);
        pos = end;
    }
}

static enum hm_status process_batch(struct hm_tokenizer_trainer *tr)
{
    if (tr->n_seq == 0)
        return HM_OK;
    const char *batch = tr->batch;
    const size_t *ends = tr->seq_end;
    long n_seq = (long)tr->n_seq;
#pragma omp parallel num_threads(tr->nt)
    {
        struct wmap *m = &tr->maps[omp_get_thread_num()];
#pragma omp for schedule(dynamic, 256)
        for (long i = 0; i < n_seq; i++) {
            size_t start = i ? ends[i - 1] : 0;
            count_sequence(m, batch + start, ends[i] - start);
        }
    }
    tr->batch_len = 0;
    tr->n_seq = 0;
    uint64_t words = 0;
    for (int i = 0; i < tr->nt; i++) {
        if (tr->maps[i].oom)
            return hm_fail(HM_ERR_NOMEM, "out of memory counting words (%zu distinct so far)",
                           tr->maps[i].n);
        words += tr->maps[i].n;
    }
    if (tr->progress)
        tr->progress(tr->progress_user, HM_TOKENIZER_PHASE_COUNT, tr->bytes_fed, words);
    return HM_OK;
}

enum hm_status hm_tokenizer_trainer_feed(struct hm_tokenizer_trainer *tr, const char *text,
                                         size_t len)
{
    if (tr->failed)
        return hm_fail(HM_ERR_USAGE, "trainer: feed after a failure");
    if (len == 0)
        return HM_OK;
    if (tr->batch_len + len > tr->batch_cap) {
        size_t cap = HM_MAX((size_t)BATCH_BYTES + (1u << 16), 2 * (tr->batch_len + len));
        char *b = hm_realloc(tr->batch, cap);
        if (!b) {
            tr->failed = true;
            return hm_fail(HM_ERR_NOMEM, "out of memory (text batch of %zu bytes)", cap);
        }
        tr->batch = b;
        tr->batch_cap = cap;
    }
    if (tr->n_seq == tr->seq_cap) {
        size_t cap = tr->seq_cap ? 2 * tr->seq_cap : 4096;
        size_t *e = hm_realloc(tr->seq_end, cap * sizeof *e);
        if (!e) {
            tr->failed = true;
            return hm_fail(HM_ERR_NOMEM, "out of memory (text batch)");
        }
        tr->seq_end = e;
        tr->seq_cap = cap;
    }
    memcpy(tr->batch + tr->batch_len, text, len);
    tr->batch_len += len;
    tr->seq_end[tr->n_seq++] = tr->batch_len;
    tr->bytes_fed += len;
    if (tr->batch_len >= BATCH_BYTES) {
        enum hm_status st = process_batch(tr);
        if (st != HM_OK)
            tr->failed = true;
        return st;
    }
    return HM_OK;
}

/* ---- merge phase -------------------------------------------------------------------------- */

struct posvec {
    uint32_t *w;
    uint32_t n, cap; /* cap == 0: w points into the initial block (not owned) */
};

struct entry {
    uint64_t count;
    uint32_t a, b;
    uint32_t pair; /* index into the pair arrays */
    uint32_t pos;  /* index into the posvec table */
};

/* Max-heap order: higher count first; equal counts, smaller (a, b) first. */
static inline bool entry_before(const struct entry *x, const struct entry *y)
{
    if (x->count != y->count)
        return x->count > y->count;
    if (x->a != y->a)
        return x->a < y->a;
    return x->b < y->b;
}

struct heap {
    struct entry *e;
    size_t n, cap;
};

static void sift_down(struct heap *h, size_t i)
{
    struct entry x = h->e[i];
    for (;;) {
        size_t l = 2 * i + 1, best = i;
        const struct entry *be = &x;
        if (l < h->n && entry_before(&h->e[l], be)) {
            best = l;
            be = &h->e[l];
        }
        if (l + 1 < h->n && entry_before(&h->e[l + 1], be))
            best = l + 1;
        if (best == i)
            break;
        h->e[i] = h->e[best];
        i = best;
    }
    h->e[i] = x;
}

static bool heap_push(struct heap *h, struct entry x)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 1024;
        struct entry *e = hm_realloc(h->e, cap * sizeof *e);
        if (!e)
            return false;
        h->e = e;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!entry_before(&x, &h->e[p]))
            break;
        h->e[i] = h->e[p];
        i = p;
    }
    h->e[i] = x;
    return true;
}

static struct entry heap_pop(struct heap *h)
{
    struct entry top = h->e[0];
    h->e[0] = h->e[--h->n];
    if (h->n)
        sift_down(h, 0);
    return top;
}

struct vocab {
    char **sp; /* spelling of each id (owned) */
    uint32_t *len;
    size_t n, cap;
    struct hm_smap map; /* spelling -> id (keys borrowed from sp) */
};

static enum hm_status vocab_add(struct vocab *v, const char *s, size_t n, uint32_t *id)
{
    int64_t old = hm_smap_get(&v->map, s, n);
    if (old >= 0) {
        *id = (uint32_t)old;
        return HM_OK;
    }
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 1024;
        char **sp = hm_realloc(v->sp, cap * sizeof *sp);
        if (sp)
            v->sp = sp;
        uint32_t *len = hm_realloc(v->len, cap * sizeof *len);
        if (len)
            v->len = len;
        if (!sp || !len)
            return hm_fail(HM_ERR_NOMEM, "out of memory (vocab)");
        v->cap = cap;
    }
    char *c = hm_malloc(n + 1);
    if (!c)
        return hm_fail(HM_ERR_NOMEM, "out of memory (vocab)");
    memcpy(c, s, n);
    c[n] = 0;
    v->sp[v->n] = c;
    v->len[v->n] = (uint32_t)n;
    *id = (uint32_t)v->n++;
    return hm_smap_put(&v->map, c, n, *id);
}

struct merge_rec {
    uint32_t a, b, id;
};

/* All state of the merge phase (freed in one place). */
struct mstate {
    /* words */
    size_t n_words;
    uint64_t *wcount;
    uint64_t *woff;
    uint32_t *wlen;
    uint32_t *sym;
    uint64_t *wstamp;
    /* pairs */
    struct hm_pmap pidx; /* (a, b) -> index (in .id) */
    int64_t *pcount;
    uint32_t *pa, *pb;
    uint64_t *pstamp;  /* merge step that last gave the pair a temp list */
    uint32_t *ptmp;    /* its temp posvec */
    size_t n_pairs, pair_cap;
    /* position lists */
    struct posvec *pv;
    size_t n_pv, pv_cap;
    uint32_t *pv_free;
    size_t n_pv_free;
    uint32_t *initial; /* the block the initial lists point into */
    uint32_t *touched;
    size_t n_touched, touched_cap;
    struct heap heap;
    struct merge_rec *merges;
    size_t n_merges, merges_cap;
};

static void mstate_free(struct mstate *s)
{
    hm_free(s->wcount);
    hm_free(s->woff);
    hm_free(s->wlen);
    hm_free(s->sym);
    hm_free(s->wstamp);
    hm_pmap_free(&s->pidx);
    hm_free(s->pcount);
    hm_free(s->pa);
    hm_free(s->pb);
    hm_free(s->pstamp);
    hm_free(s->ptmp);
    for (size_t i = 0; s->pv && i < s->n_pv; i++)
        if (s->pv[i].cap)
            hm_free(s->pv[i].w);
    hm_free(s->pv);
    hm_free(s->pv_free);
    hm_free(s->initial);
    hm_free(s->touched);
    hm_free(s->heap.e);
    hm_free(s->merges);
}

/* Index of pair (a, b), created with count 0 if new; UINT32_MAX on out of memory. */
static uint32_t pair_index(struct mstate *s, uint32_t a, uint32_t b)
{
    const struct hm_pair_slot *p = hm_pmap_get(&s->pidx, a, b);
    if (p)
        return p->id;
    if (s->n_pairs == s->pair_cap) {
        size_t cap = s->pair_cap ? 2 * s->pair_cap : 1 << 16;
        bool ok = hm_grow((void **)&s->pcount, cap, sizeof *s->pcount);
        ok &= hm_grow((void **)&s->pa, cap, sizeof *s->pa);
        ok &= hm_grow((void **)&s->pb, cap, sizeof *s->pb);
        ok &= hm_grow((void **)&s->pstamp, cap, sizeof *s->pstamp);
        ok &= hm_grow((void **)&s->ptmp, cap, sizeof *s->ptmp);
        if (!ok)
            return UINT32_MAX;
        s->pair_cap = cap;
    }
    uint32_t i = (uint32_t)s->n_pairs++;
    s->pcount[i] = 0;
    s->pa[i] = a;
    s->pb[i] = b;
    s->pstamp[i] = 0;
    if (hm_pmap_put(&s->pidx, a, b, 0, i) != HM_OK)
        return UINT32_MAX;
    return i;
}

static uint32_t pv_new(struct mstate *s)
{
    if (s->n_pv_free)
        return s->pv_free[--s->n_pv_free];
    if (s->n_pv == s->pv_cap) {
        size_t cap = s->pv_cap ? 2 * s->pv_cap : 1 << 16;
        struct posvec *pv = hm_realloc(s->pv, cap * sizeof *pv);
        if (!pv)
            return UINT32_MAX;
        s->pv = pv;
        uint32_t *fr = hm_realloc(s->pv_free, cap * sizeof *fr);
        if (!fr)
            return UINT32_MAX;
        s->pv_free = fr;
        s->pv_cap = cap;
    }
    s->pv[s->n_pv] = (struct posvec){0};
    return (uint32_t)s->n_pv++;
}

static void pv_release(struct mstate *s, uint32_t i)
{
    if (s->pv[i].cap)
        hm_free(s->pv[i].w);
    s->pv[i] = (struct posvec){0};
    s->pv_free[s->n_pv_free++] = i;
}

static bool pv_push(struct posvec *v, uint32_t w)
{
    if (v->n && v->w[v->n - 1] == w)
        return true;
    if (v->n == v->cap) {
        uint32_t cap = v->cap ? 2 * v->cap : 4;
        uint32_t *p = hm_realloc(v->w, cap * sizeof *p);
        if (!p)
            return false;
        v->w = p;
        v->cap = cap;
    }
    v->w[v->n++] = w;
    return true;
}

/* Build the words from the merged word map, count the pairs and fill the heap. */
static enum hm_status setup(struct mstate *s, struct wmap *wm, const uint32_t byte_sym[256])
{
    s->n_words = wm->n;
    size_t n_sym = wm->arena_len;
    s->wcount = hm_malloc((s->n_words + 1) * sizeof *s->wcount);
    s->woff = hm_malloc((s->n_words + 1) * sizeof *s->woff);
    s->wlen = hm_malloc((s->n_words + 1) * sizeof *s->wlen);
    s->wstamp = hm_calloc(s->n_words + 1, sizeof *s->wstamp);
    s->sym = hm_malloc((n_sym + 1) * sizeof *s->sym);
    if (!s->wcount || !s->woff || !s->wlen || !s->wstamp || !s->sym)
        return hm_fail(HM_ERR_NOMEM, "out of memory (%zu words, %zu symbols)", s->n_words, n_sym);
    size_t w = 0, o = 0;
    for (size_t i = 0; i < wm->cap; i++) {
        const struct wslot *e = &wm->slots[i];
        if (!e->hash)
            continue;
        s->wcount[w] = e->count;
        s->woff[w] = o;
        s->wlen[w] = e->len;
        for (uint32_t j = 0; j < e->len; j++)
            s->sym[o++] = byte_sym[(uint8_t)wm->arena[e->off + j]];
        w++;
    }
    if (hm_pmap_init(&s->pidx, 1 << 16) != HM_OK)
        return HM_ERR_NOMEM;
    /* Pass 1: counts, and how many distinct words hold each pair. */
    uint32_t *nwords = NULL;
    size_t nwords_cap = 0;
    for (w = 0; w < s->n_words; w++) {
        const uint32_t *x = s->sym + s->woff[w];
        for (uint32_t j = 0; j + 1 < s->wlen[w]; j++) {
            uint32_t p = pair_index(s, x[j], x[j + 1]);
            if (p == UINT32_MAX) {
                hm_free(nwords);
                return hm_fail(HM_ERR_NOMEM, "out of memory (pairs)");
            }
            if (p >= nwords_cap) {
                size_t cap = HM_MAX(s->pair_cap, (size_t)p + 1);
                uint32_t *nw = hm_realloc(nwords, cap * sizeof *nw);
                if (!nw) {
                    hm_free(nwords);
                    return hm_fail(HM_ERR_NOMEM, "out of memory (pairs)");
                }
                memset(nw + nwords_cap, 0, (cap - nwords_cap) * sizeof *nw);
                nwords = nw;
                nwords_cap = cap;
            }
            s->pcount[p] += (int64_t)s->wcount[w];
            if (s->pstamp[p] != w + 1) {
                s->pstamp[p] = w + 1;
                nwords[p]++;
            }
        }
    }
    /* Pass 2: one list per pair, carved out of a single block. */
    size_t total = 0;
    for (size_t p = 0; p < s->n_pairs; p++)
        total += nwords[p];
    s->initial = hm_malloc((total + 1) * sizeof *s->initial);
    if (!s->initial) {
        hm_free(nwords);
        return hm_fail(HM_ERR_NOMEM, "out of memory (%zu pair positions)", total);
    }
    for (size_t p = 0; p < s->n_pairs; p++) {
        uint32_t v = pv_new(s);
        if (v == UINT32_MAX) {
            hm_free(nwords);
            return hm_fail(HM_ERR_NOMEM, "out of memory (pair positions)");
        }
        s->ptmp[p] = v; /* pv index of pair p's initial list */
        s->pstamp[p] = 0;
    }
    size_t off = 0;
    for (size_t p = 0; p < s->n_pairs; p++) {
        s->pv[s->ptmp[p]].w = s->initial + off;
        off += nwords[p];
    }
    hm_free(nwords);
    for (w = 0; w < s->n_words; w++) {
        const uint32_t *x = s->sym + s->woff[w];
        for (uint32_t j = 0; j + 1 < s->wlen[w]; j++) {
            uint32_t p = hm_pmap_get(&s->pidx, x[j], x[j + 1])->id;
            struct posvec *v = &s->pv[s->ptmp[p]];
            if (!v->n || v->w[v->n - 1] != w)
                v->w[v->n++] = (uint32_t)w;
        }
    }
    /* The heap: every pair with a positive count, with its list. */
    s->heap.cap = s->n_pairs + 1024;
    s->heap.e = hm_malloc(s->heap.cap * sizeof *s->heap.e);
    if (!s->heap.e)
        return hm_fail(HM_ERR_NOMEM, "out of memory (heap of %zu pairs)", s->n_pairs);
    for (size_t p = 0; p < s->n_pairs; p++) {
        if (s->pcount[p] > 0)
            s->heap.e[s->heap.n++] = (struct entry){(uint64_t)s->pcount[p], s->pa[p], s->pb[p],
                                                    (uint32_t)p, s->ptmp[p]};
        else
            pv_release(s, s->ptmp[p]);
    }
    for (size_t i = s->heap.n / 2; i-- > 0;)
        sift_down(&s->heap, i);
    return HM_OK;
}

/* Record a count change of pair (a, b) in word w; positive changes list w for the push. */
static bool change(struct mstate *s, uint32_t a, uint32_t b, int delta, uint32_t w, uint64_t step)
{
    uint32_t p = pair_index(s, a, b);
    if (p == UINT32_MAX)
        return false;
    s->pcount[p] += delta * (int64_t)s->wcount[w];
    if (delta <= 0)
        return true;
    if (s->pstamp[p] != step) {
        uint32_t v = pv_new(s);
        if (v == UINT32_MAX)
            return false;
        s->pstamp[p] = step;
        s->ptmp[p] = v;
        if (s->n_touched == s->touched_cap) {
            size_t cap = s->touched_cap ? 2 * s->touched_cap : 1024;
            uint32_t *t = hm_realloc(s->touched, cap * sizeof *t);
            if (!t)
                return false;
            s->touched = t;
            s->touched_cap = cap;
        }
        s->touched[s->n_touched++] = p;
    }
    return pv_push(&s->pv[s->ptmp[p]], w);
}

/* Replace (a, b) by id left to right without overlap, as HF's Word::merge. */
static bool merge_word(struct mstate *s, uint32_t w, uint32_t a, uint32_t b, uint32_t id,
                       uint64_t step)
{
    uint32_t *x = s->sym + s->woff[w];
    uint32_t n = s->wlen[w], o = 0, r = 0;
    while (r < n) {
        if (x[r] == a && r + 1 < n && x[r + 1] == b) {
            if (o > 0 && (!change(s, x[o - 1], a, -1, w, step) ||
                          !change(s, x[o - 1], id, +1, w, step)))
                return false;
            if (r + 2 < n && (!change(s, b, x[r + 2], -1, w, step) ||
                              !change(s, id, x[r + 2], +1, w, step)))
                return false;
            x[o++] = id;
            r += 2;
        } else {
            x[o++] = x[r++];
        }
    }
    s->wlen[w] = o;
    return true;
}

static enum hm_status merge_loop(struct mstate *s, struct vocab *v, uint32_t vocab_size,
                                 uint64_t min_frequency, hm_tokenizer_progress_fn progress,
                                 void *user)
{
    uint64_t want = vocab_size > v->n ? vocab_size - v->n : 0;
    uint64_t step = 0;
    char *cat = NULL;
    size_t cat_cap = 0;
    enum hm_status st = HM_OK;
    double last = hm_time_s();
    while (v->n < vocab_size && s->heap.n) {
        struct entry top = heap_pop(&s->heap);
        uint64_t cur = (uint64_t)s->pcount[top.pair];
        if (top.count != cur) {
            top.count = cur;
            heap_push(&s->heap, top); /* cannot fail: the slot was just freed */
            continue;
        }
        if (top.count < 1 || min_frequency > top.count) {
            pv_release(s, top.pos);
            break;
        }
        size_t la = v->len[top.a], lb = v->len[top.b];
        if (la + lb + 1 > cat_cap) {
            cat_cap = 2 * (la + lb + 1);
            char *c = hm_realloc(cat, cat_cap);
            if (!c) {
                st = hm_fail(HM_ERR_NOMEM, "out of memory (merge)");
                break;
            }
            cat = c;
        }
        memcpy(cat, v->sp[top.a], la);
        memcpy(cat + la, v->sp[top.b], lb);
        uint32_t id;
        if ((st = vocab_add(v, cat, la + lb, &id)) != HM_OK)
            break;
        if (s->n_merges == s->merges_cap) {
            size_t cap = s->merges_cap ? 2 * s->merges_cap : 1024;
            struct merge_rec *m = hm_realloc(s->merges, cap * sizeof *m);
            if (!m) {
                st = hm_fail(HM_ERR_NOMEM, "out of memory (merges)");
                break;
            }
            s->merges = m;
            s->merges_cap = cap;
        }
        s->merges[s->n_merges++] = (struct merge_rec){top.a, top.b, id};
        step++;
        s->n_touched = 0;
        struct posvec pos = s->pv[top.pos];
        for (uint32_t i = 0; i < pos.n; i++) {
            uint32_t w = pos.w[i];
            if (s->wstamp[w] == step)
                continue; /* a list is a set */
            s->wstamp[w] = step;
            if (!merge_word(s, w, top.a, top.b, id, step)) {
                st = hm_fail(HM_ERR_NOMEM, "out of memory (merge)");
                break;
            }
        }
        pv_release(s, top.pos);
        if (st != HM_OK)
            break;
        for (size_t i = 0; i < s->n_touched; i++) {
            uint32_t p = s->touched[i];
            if (s->pcount[p] > 0) {
                struct entry e = {(uint64_t)s->pcount[p], s->pa[p], s->pb[p], p, s->ptmp[p]};
                if (!heap_push(&s->heap, e)) {
                    st = hm_fail(HM_ERR_NOMEM, "out of memory (heap)");
                    break;
                }
            } else {
                pv_release(s, s->ptmp[p]);
            }
        }
        if (st != HM_OK)
            break;
        if (progress && (s->n_merges % 64) == 0 && hm_time_s() - last > 0.1) {
            last = hm_time_s();
            progress(user, HM_TOKENIZER_PHASE_MERGE, s->n_merges, want);
        }
    }
    if (progress && st == HM_OK)
        progress(user, HM_TOKENIZER_PHASE_MERGE, s->n_merges, want);
    hm_free(cat);
    return st;
}

static int cmp_cp(const void *x, const void *y)
{
    int a = *(const int *)x, b = *(const int *)y;
    return (int)hm_byte_to_cp[a] - (int)hm_byte_to_cp[b];
}

static enum hm_status build_tokenizer(struct hm_tokenizer_trainer *tr, struct vocab *v,
                                      const struct mstate *s, struct hm_tokenizer **out)
{
    struct hm_tokenizer *t;
    enum hm_status st = hm_tok_new((uint32_t)v->n, &t);
    if (st != HM_OK)
        return st;
    t->n_model_vocab = (uint32_t)v->n;
    for (size_t id = 0; id < v->n && st == HM_OK; id++) {
        st = hm_tok_set(t, (uint32_t)id, v->sp[id], v->len[id], id < tr->n_specials);
        t->tokens[id].in_vocab = true;
    }
    t->added = hm_calloc(tr->n_specials + 1, sizeof *t->added);
    if (st == HM_OK && !t->added)
        st = hm_fail(HM_ERR_NOMEM, "out of memory (added tokens)");
    for (size_t i = 0; st == HM_OK && i < tr->n_specials; i++)
        t->added[t->n_added++] = (struct hm_added_token){.id = (uint32_t)i};
    if (st == HM_OK)
        st = hm_pmap_init(&t->merges, s->n_merges);
    /* A pair merged twice (§1.7.1) keeps its later rank, as HF's merges HashMap does. */
    for (size_t i = 0; st == HM_OK && i < s->n_merges; i++)
        st = hm_pmap_put(&t->merges, s->merges[i].a, s->merges[i].b, (uint32_t)i, s->merges[i].id);
    t->n_merges = (uint32_t)s->n_merges;
    if (st == HM_OK)
        st = hm_tok_finalize(t);
    if (st != HM_OK) {
        hm_tokenizer_free(t);
        return st;
    }
    *out = t;
    return HM_OK;
}

enum hm_status hm_tokenizer_trainer_finish(struct hm_tokenizer_trainer *tr,
                                           struct hm_tokenizer **out)
{
    if (tr->failed)
        return hm_fail(HM_ERR_USAGE, "trainer: finish after a failure");
    enum hm_status st = process_batch(tr);
    if (st != HM_OK)
        return st;
    struct wmap *wm = &tr->maps[0];
    for (int i = 1; i < tr->nt; i++) {
        struct wmap *o = &tr->maps[i];
        for (size_t j = 0; j < o->cap; j++)
            if (o->slots[j].hash)
                wmap_add(wm, o->arena + o->slots[j].off, o->slots[j].len, o->slots[j].hash,
                         o->slots[j].count);
        wmap_free(o);
        if (wm->oom || !wmap_init(o))
            return hm_fail(HM_ERR_NOMEM, "out of memory merging word counts");
    }
    if (wm->n == 0)
        return hm_fail(HM_ERR_FORMAT, "no text to train on: the corpus is empty");

    struct vocab v = {0};
    struct mstate s = {0};
    if ((st = hm_smap_init(&v.map, tr->vocab_size)) != HM_OK)
        goto out;
    uint32_t id;
    for (size_t i = 0; i < tr->n_specials; i++)
        if ((st = vocab_add(&v, tr->specials[i], strlen(tr->specials[i]), &id)) != HM_OK)
            goto out;
    /* The alphabet: all 256 byte chars, by code point; a char already present keeps its id. */
    int order[256];
    for (int b = 0; b < 256; b++)
        order[b] = b;
    qsort(order, 256, sizeof order[0], cmp_cp);
    uint32_t byte_sym[256];
    for (int i = 0; i < 256; i++) {
        char sp[4];
        int l = hm_utf8_encode(hm_byte_to_cp[order[i]], sp);
        if ((st = vocab_add(&v, sp, (size_t)l, &byte_sym[order[i]])) != HM_OK)
            goto out;
    }
    if ((st = setup(&s, wm, byte_sym)) != HM_OK)
        goto out;
    wmap_free(wm);
    wmap_init(wm);
    if ((st = merge_loop(&s, &v, tr->vocab_size, tr->min_frequency, tr->progress,
                         tr->progress_user)) != HM_OK)
        goto out;
    st = build_tokenizer(tr, &v, &s, out);
out:
    mstate_free(&s);
    for (size_t i = 0; i < v.n; i++)
        hm_free(v.sp[i]);
    hm_free(v.sp);
    hm_free(v.len);
    hm_smap_free(&v.map);
    tr->failed = true; /* one finish per trainer */
    return st;
}

enum hm_status hm_tokenizer_train(const struct hm_tokenizer_train_opts *opts,
                                  const char *const *texts, const size_t *lens, size_t n,
                                  struct hm_tokenizer **out)
{
    struct hm_tokenizer_trainer *tr;
    enum hm_status st = hm_tokenizer_trainer_new(opts, &tr);
    if (st != HM_OK)
        return st;
    for (size_t i = 0; i < n && st == HM_OK; i++)
        st = hm_tokenizer_trainer_feed(tr, texts[i], lens[i]);
    if (st == HM_OK)
        st = hm_tokenizer_trainer_finish(tr, out);
    hm_tokenizer_trainer_free(tr);
    return st;
}
