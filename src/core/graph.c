/*
 * graph.c - graph construction (forward nodes in topological order) and the executor: it walks
 * the planned nodes and calls the backend's kernel for each, optionally timing every op type.
 * Leaves (op NONE) and views (op VIEW) have no kernel. The executor never allocates, so a planned
 * graph can be replayed every step with no host allocation. An optional hook runs on the host after
 * each backward node is issued: the data-parallel trainer starts gradient reductions there.
 * Without a hook or profiling, a backend with run_sequence gets each direction as one unit, which
 * the CUDA backend can record as a CUDA graph and replay (HM_CUDA_GRAPH=1).
 */
#include "core-impl.h"
#include "backend/backend-impl.h"

enum hm_status hm_graph_new(struct hm_ctx *ctx, struct hm_graph **out)
{
    struct hm_graph *g = hm_calloc(1, sizeof(*g));
    if (!g)
        return hm_fail(HM_ERR_NOMEM, "out of memory creating a graph");
    g->ctx = ctx;
    g->rt.training = true;
    g->rt.loss_scale = 1.0f;
    *out = g;
    return HM_OK;
}

void hm_graph_free(struct hm_graph *g)
{
    if (!g)
        return;
    hm_buffer_free(g->work);
    hm_free(g->fwd);
    hm_free(g->bwd);
    hm_free(g);
}

void hm_graph_push(struct hm_graph *g, bool backward, struct hm_tensor *t)
{
    struct hm_tensor ***list = backward ? &g->bwd : &g->fwd;
    int *n = backward ? &g->n_bwd : &g->n_fwd, *cap = backward ? &g->cap_bwd : &g->cap_fwd;
    if (*n == *cap) {
        int c = *cap ? 2 * *cap : 256;
        struct hm_tensor **p = hm_realloc(*list, (size_t)c * sizeof(*p));
        HM_ASSERT(p != NULL);
        *list = p;
        *cap = c;
    }
    (*list)[(*n)++] = t;
}

static bool in_forward(const struct hm_graph *g, const struct hm_tensor *t)
{
    for (int i = g->n_fwd - 1; i >= 0; i--)
        if (g->fwd[i] == t)
            return true;
    return false;
}

static void visit(struct hm_graph *g, struct hm_tensor *t)
{
    if (t->op == HM_OP_NONE || in_forward(g, t))
        return;
    for (int i = 0; i < HM_MAX_SRC; i++)
        if (t->src[i])
            visit(g, t->src[i]);
    hm_graph_push(g, false, t);
}

void hm_graph_build_forward(struct hm_graph *g, struct hm_tensor *out)
{
    HM_ASSERT(!g->work); /* build everything before hm_graph_plan */
    out->flags |= HM_FLAG_OUTPUT;
    visit(g, out);
}

struct hm_runtime *hm_graph_runtime(struct hm_graph *g)
{
    return &g->rt;
}

size_t hm_graph_planned_bytes(const struct hm_graph *g)
{
    return g->planned_bytes;
}

int hm_graph_n_nodes(const struct hm_graph *g, bool backward)
{
    return backward ? g->n_bwd : g->n_fwd;
}

struct hm_tensor *hm_graph_node(const struct hm_graph *g, bool backward, int i)
{
    HM_ASSERT(i >= 0 && i < (backward ? g->n_bwd : g->n_fwd));
    return backward ? g->bwd[i] : g->fwd[i];
}

void hm_graph_set_profiling(struct hm_graph *g, bool on)
{
    g->profiling = on;
}

void hm_graph_set_backward_hook(struct hm_graph *g, hm_graph_hook_fn fn, void *user)
{
    g->bwd_hook = fn;
    g->bwd_hook_user = user;
}

void hm_graph_profile_reset(struct hm_graph *g)
{
    memset(g->prof, 0, sizeof g->prof);
}

const struct hm_op_profile *hm_graph_profile(const struct hm_graph *g, bool backward)
{
    return g->prof[backward ? 1 : 0];
}

static enum hm_status run_node(struct hm_graph *g, const struct hm_exec *ex, struct hm_tensor *t,
                               struct hm_op_profile *prof)
{
    struct hm_backend *be = g->be;
    if (t->op == HM_OP_NONE || t->op == HM_OP_VIEW)
        return HM_OK;
    double t0 = 0;
    if (g->profiling) {
        be->iface->synchronize(be);
        t0 = hm_time_s();
    }
    enum hm_status st = be->iface->kernels[t->op](ex, t);
    if (st != HM_OK)
        return st;
    if (g->profiling) {
        be->iface->synchronize(be);
        prof[t->op].seconds += hm_time_s() - t0;
        prof[t->op].calls++;
    }
    return HM_OK;
}

struct node_seq {
    struct hm_graph *g;
    const struct hm_exec *ex;
    struct hm_tensor **nodes;
    int n;
    struct hm_op_profile *prof;
};

static enum hm_status run_seq(void *user)
{
    struct node_seq *s = user;
    for (int i = 0; i < s->n; i++) {
        enum hm_status st = run_node(s->g, s->ex, s->nodes[i], s->prof);
        if (st != HM_OK)
            return st;
    }
    return HM_OK;
}

static enum hm_status run_nodes(struct hm_graph *g, bool backward)
{
    if (!g->work)
        return hm_fail(HM_ERR_USAGE, "graph is not planned: call hm_graph_plan first");
    struct hm_exec ex = {
        .be = g->be,
        .rt = &g->rt,
        .ws = g->scratch_bytes ? (char *)g->work->base + g->scratch_offset : NULL,
        .ws_bytes = g->scratch_bytes,
    };
    struct hm_tensor **nodes = backward ? g->bwd : g->fwd;
    int n = backward ? g->n_bwd : g->n_fwd;
    struct hm_op_profile *prof = g->prof[backward ? 1 : 0];
    hm_graph_hook_fn hook = backward ? g->bwd_hook : NULL;
    if (!hook && !g->profiling && g->be->iface->run_sequence) {
        struct node_seq seq = {g, &ex, nodes, n, prof};
        return g->be->iface->run_sequence(g->be, g->plan_id * 2 + backward, nodes, n, &g->rt, run_seq, &seq);
    }
    for (int i = 0; i < n; i++) {
        enum hm_status st = run_node(g, &ex, nodes[i], prof);
        if (st == HM_OK && hook)
            st = hook(g->bwd_hook_user, i);
        if (st != HM_OK)
            return st;
    }
    return HM_OK;
}

enum hm_status hm_graph_forward(struct hm_graph *g)
{
    return run_nodes(g, false);
}

enum hm_status hm_graph_backward(struct hm_graph *g)
{
    if (!g->has_backward)
        return hm_fail(HM_ERR_USAGE, "graph has no backward: call hm_graph_build_backward");
    return run_nodes(g, true);
}
