/*
 * plan.c - the memory planner. Every tensor the graph touches that does not already own storage
 * (blocks do) gets an offset in ONE workspace buffer. Liveness is by position in the node
 * sequence (forward then backward): a root is live from the first node that references it to the
 * last. Offsets come from a greedy best-fit free list walked in node order; a few elementwise ops
 * may write their output over a source that dies at that node (in place). Inputs and outputs are
 * never reused. Kernel scratch (the max any node asks for) sits at the end. Runs once per graph.
 */
#include "core-impl.h"

#define ALIGN 64

struct root_info {
    struct hm_tensor *t;
    int first, last;
    size_t size, offset;
    bool placed;
    bool done; /* storage handed to an in-place successor or released */
};

struct planner {
    struct root_info *roots;
    int n_roots, cap_roots;
    int *map; /* open addressing over roots by pointer */
    int map_cap;
    struct { size_t off, size; } *free; /* free blocks sorted by offset */
    int n_free, cap_free;
    size_t top;
};

static size_t align_up(size_t x)
{
    return (x + ALIGN - 1) & ~(size_t)(ALIGN - 1);
}

static size_t hash_ptr(const void *p, int cap)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    return (size_t)(hm_mix64(x) & (uint64_t)(cap - 1));
}

static int find_root(struct planner *pl, struct hm_tensor *t)
{
    for (size_t h = hash_ptr(t, pl->map_cap);; h = (h + 1) & (size_t)(pl->map_cap - 1)) {
        int i = pl->map[h];
        if (i < 0) {
            if (pl->n_roots == pl->cap_roots)
                return -1;
            i = pl->n_roots++;
            pl->map[h] = i;
            pl->roots[i] = (struct root_info){.t = t, .first = -1, .size = align_up(hm_nbytes(t))};
            return i;
        }
        if (pl->roots[i].t == t)
            return i;
    }
}

static void touch(struct planner *pl, struct hm_tensor *t, int pos)
{
    struct hm_tensor *r = hm_root(t);
    if (r->data || (r->flags & HM_FLAG_BLOCK)) /* block storage */
        return;
    int i = find_root(pl, r);
    HM_ASSERT(i >= 0);
    struct root_info *ri = &pl->roots[i];
    if (ri->first < 0)
        ri->first = pos;
    ri->last = pos;
}

static bool free_push(struct planner *pl, int at, size_t off, size_t size)
{
    if (pl->n_free == pl->cap_free) {
        int c = pl->cap_free ? 2 * pl->cap_free : 64;
        void *p = hm_realloc(pl->free, (size_t)c * sizeof(*pl->free));
        if (!p)
            return false;
        pl->free = p;
        pl->cap_free = c;
    }
    memmove(&pl->free[at + 1], &pl->free[at], (size_t)(pl->n_free - at) * sizeof(*pl->free));
    pl->free[at].off = off;
    pl->free[at].size = size;
    pl->n_free++;
    return true;
}

static void free_remove(struct planner *pl, int at)
{
    memmove(&pl->free[at], &pl->free[at + 1], (size_t)(pl->n_free - at - 1) * sizeof(*pl->free));
    pl->n_free--;
}

static size_t take(struct planner *pl, size_t size)
{
    int best = -1;
    for (int i = 0; i < pl->n_free; i++)
        if (pl->free[i].size >= size && (best < 0 || pl->free[i].size < pl->free[best].size))
            best = i;
    if (best >= 0) {
        size_t off = pl->free[best].off;
        pl->free[best].off += size;
        pl->free[best].size -= size;
        if (pl->free[best].size == 0)
            free_remove(pl, best);
        return off;
    }
    /* No hole fits: grow the top, starting inside a free block that ends there. */
    if (pl->n_free > 0) {
        int last = pl->n_free - 1;
        if (pl->free[last].off + pl->free[last].size == pl->top) {
            size_t off = pl->free[last].off;
            free_remove(pl, last);
            pl->top = off + size;
            return off;
        }
    }
    size_t off = pl->top;
    pl->top += size;
    return off;
}

static bool give_back(struct planner *pl, size_t off, size_t size)
{
    int i = 0;
    while (i < pl->n_free && pl->free[i].off < off)
        i++;
    if (!free_push(pl, i, off, size))
        return false;
    if (i + 1 < pl->n_free && pl->free[i].off + pl->free[i].size == pl->free[i + 1].off) {
        pl->free[i].size += pl->free[i + 1].size;
        free_remove(pl, i + 1);
    }
    if (i > 0 && pl->free[i - 1].off + pl->free[i - 1].size == pl->free[i].off) {
        pl->free[i - 1].size += pl->free[i].size;
        free_remove(pl, i);
    }
    return true;
}

/* Whether dst may take over src[i]'s storage: an in-place slot of ops.def holding exactly dst's
 * bytes, and dst overwritten rather than accumulated. */
static bool can_inplace(const struct hm_tensor *n, int i)
{
    return ((hm_op_info(n->op)->inplace >> i) & 1) && !(n->acc & 1) &&
           hm_nbytes(n->src[i]) == hm_nbytes(n);
}

static enum hm_status check_support(struct hm_graph *g, struct hm_backend *be)
{
    if (!be) /* a dry plan of the tensors alone */
        return HM_OK;
    for (int k = 0; k < 2; k++) {
        int n = k ? g->n_bwd : g->n_fwd;
        struct hm_tensor **nodes = k ? g->bwd : g->fwd;
        for (int i = 0; i < n; i++) {
            enum hm_status st = hm_backend_check_node(be, nodes[i]);
            if (st != HM_OK)
                return st;
        }
    }
    return HM_OK;
}

static void resolve(struct hm_tensor *t, struct hm_buffer *buf, struct planner *pl)
{
    struct hm_tensor *r = hm_root(t);
    if (r->data && r->buffer != buf) /* block storage */
        return;
    if (!r->data) {
        int i = find_root(pl, r);
        HM_ASSERT(i >= 0 && pl->roots[i].placed);
        r->buffer = buf;
        r->offset = pl->roots[i].offset;
        r->data = (char *)hm_buffer_ptr(buf) + r->offset;
    }
    if (t != r) {
        t->buffer = buf;
        t->offset = r->offset + t->view_offs;
        t->data = (char *)r->data + t->view_offs;
    }
}

static enum hm_status plan(struct hm_graph *g, struct hm_backend *be, bool allocate);

enum hm_status hm_graph_plan(struct hm_graph *g, struct hm_backend *be)
{
    return plan(g, be, true);
}

enum hm_status hm_graph_plan_dry(struct hm_graph *g, struct hm_backend *be, size_t *bytes)
{
    enum hm_status st = plan(g, be, false);
    if (st == HM_OK)
        *bytes = g->planned_bytes;
    return st;
}

static enum hm_status plan(struct hm_graph *g, struct hm_backend *be, bool allocate)
{
    HM_ASSERT(!g->work); /* plan once; one graph per ctx */
    enum hm_status st = check_support(g, be);
    if (st != HM_OK)
        return st;
    int n = g->n_fwd + g->n_bwd;
    struct hm_tensor **seq = hm_malloc((size_t)(n ? n : 1) * sizeof(*seq));
    struct planner pl = {0};
    pl.cap_roots = n * (HM_MAX_SRC + 1) + 1;
    for (pl.map_cap = 64; pl.map_cap < 2 * pl.cap_roots; pl.map_cap *= 2) {
    }
    pl.roots = hm_malloc((size_t)pl.cap_roots * sizeof(*pl.roots));
    pl.map = hm_malloc((size_t)pl.map_cap * sizeof(int));
    if (!seq || !pl.roots || !pl.map) {
        st = hm_fail(HM_ERR_NOMEM, "out of memory planning the graph");
        goto out;
    }
    for (int i = 0; i < pl.map_cap; i++)
        pl.map[i] = -1;
    for (int i = 0; i < n; i++)
        seq[i] = i < g->n_fwd ? g->fwd[i] : g->bwd[i - g->n_fwd];

    /* liveness */
    for (int i = 0; i < n; i++) {
        touch(&pl, seq[i], i);
        for (int j = 0; j < HM_MAX_SRC; j++)
            if (seq[i]->src[j])
                touch(&pl, seq[i]->src[j], i);
    }
    /* inputs first, never reused; outputs live to the end */
    for (int i = 0; i < pl.n_roots; i++) {
        struct root_info *ri = &pl.roots[i];
        if (ri->t->flags & HM_FLAG_INPUT) {
            ri->offset = take(&pl, ri->size);
            ri->placed = true;
            ri->last = n;
        }
        if (ri->t->flags & HM_FLAG_OUTPUT)
            ri->last = n;
    }
    /* walk the sequence: place roots born at i (in place when allowed), then free those dying */
    int *born = hm_malloc((size_t)(pl.n_roots ? pl.n_roots : 1) * sizeof(int));
    if (!born) {
        st = hm_fail(HM_ERR_NOMEM, "out of memory planning the graph");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        struct hm_tensor *node = seq[i];
        int nb = 0;
        for (int r = 0; r < pl.n_roots; r++)
            if (pl.roots[r].first == i && !pl.roots[r].placed)
                born[nb++] = r;
        for (int k = 0; k < nb; k++) {
            struct root_info *ri = &pl.roots[born[k]];
            bool done = false;
            if (ri->t == hm_root(node) && hm_nbytes(node) == hm_nbytes(ri->t)) {
                for (int j = 0; j < HM_MAX_SRC && !done; j++) {
                    struct hm_tensor *s = node->src[j];
                    if (!s || s->data || hm_root(s)->data || (hm_root(s)->flags & HM_FLAG_BLOCK) ||
                        !can_inplace(node, j))
                        continue;
                    int si = find_root(&pl, hm_root(s));
                    struct root_info *sr = &pl.roots[si];
                    if (sr->last == i && !sr->done && sr->placed && sr->size == ri->size &&
                        !(sr->t->flags & (HM_FLAG_INPUT | HM_FLAG_OUTPUT))) {
                        ri->offset = sr->offset;
                        sr->done = true;
                        done = true;
                    }
                }
            }
            if (!done)
                ri->offset = take(&pl, ri->size);
            ri->placed = true;
        }
        for (int r = 0; r < pl.n_roots; r++) {
            struct root_info *ri = &pl.roots[r];
            if (ri->last == i && ri->placed && !ri->done) {
                ri->done = true;
                if (!give_back(&pl, ri->offset, ri->size)) {
                    hm_free(born);
                    st = hm_fail(HM_ERR_NOMEM, "out of memory planning the graph");
                    goto out;
                }
            }
        }
    }
    hm_free(born);

    /* kernel scratch */
    size_t scratch = 0;
    for (int i = 0; i < n; i++)
        if (be) {
            size_t s = hm_backend_workspace_size(be, seq[i]);
            scratch = s > scratch ? s : scratch;
        }
    g->scratch_offset = align_up(pl.top);
    g->scratch_bytes = align_up(scratch);
    g->planned_bytes = g->scratch_offset + g->scratch_bytes;
    if (!allocate)
        goto out;

    hm_buffer_free(g->work);
    g->work = NULL;
    st = hm_buffer_new(be, g->planned_bytes, &g->work);
    if (st != HM_OK)
        goto out;
    g->be = be;
    static uint64_t plans; /* ids are never reused, so a backend never replays a stale recording */
    g->plan_id = __atomic_add_fetch(&plans, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < n; i++) {
        resolve(seq[i], g->work, &pl);
        for (int j = 0; j < HM_MAX_SRC; j++)
            if (seq[i]->src[j])
                resolve(seq[i]->src[j], g->work, &pl);
    }
out:
    hm_free(seq);
    hm_free(pl.roots);
    hm_free(pl.map);
    hm_free(pl.free);
    return st;
}
