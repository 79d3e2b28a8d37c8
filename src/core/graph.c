/*
 * graph.c - graph construction (forward nodes in topological order, each node's source slots
 * checked against ops.def) and the executor: it walks the planned nodes and runs each through
 * hm_backend_compute, optionally timing every op type. The pseudo-ops (leaves, views, side
 * outputs) have no kernel. The executor never allocates, so a planned graph can be replayed every
 * step with no host allocation. An optional hook runs on the host after each backward node is
 * issued: the data-parallel trainer starts gradient reductions there. Without a hook or profiling,
 * each direction goes to hm_backend_run_sequence as one unit, which the CUDA backend can record
 * as a CUDA graph and replay (HM_CUDA_GRAPH=1).
 */
#include "core-impl.h"

#include <stdio.h>

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

void hm_node_check(const struct hm_tensor *t)
{
    const struct hm_op_info *info = hm_op_info(t->op);
    HM_ASSERT(info != NULL);
    for (int i = 0; i < HM_MAX_SRC; i++) {
        bool used = i < info->n_src, may_be_null = (info->opt >> i) & 1;
        if (t->src[i] ? used : (!used || may_be_null))
            continue;
        fprintf(stderr, "hermes-llm: internal error: node '%s' (op %s) has %s src[%d]; ops.def says %d "
                        "slots (please report)\n", t->name, info->name, t->src[i] ? "a" : "no", i, info->n_src);
        fflush(stderr);
        abort();
    }
}

static bool in_forward(const struct hm_graph *g, const struct hm_tensor *t)
{
    for (int i = g->n_fwd - 1; i >= 0; i--)
        if (g->fwd[i] == t)
            return true;
    return false;
}

/* Depth first over the inputs; the extra outputs a node writes are not its dependencies (a side
 * output points back at its writer, which visiting the side output reaches). */
static void visit(struct hm_graph *g, struct hm_tensor *t)
{
    if (t->op == HM_OP_NONE || in_forward(g, t))
        return;
    hm_node_check(t);
    for (int i = 0; i < hm_op_info(t->op)->n_in; i++)
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

static enum hm_status run_node(struct hm_graph *g, struct hm_tensor *t, void *ws, size_t ws_bytes,
                               struct hm_op_profile *prof)
{
    struct hm_backend *be = g->be;
    if (!hm_op_info(t->op)->kernel)
        return HM_OK;
    double t0 = 0;
    if (g->profiling) {
        hm_backend_synchronize(be);
        t0 = hm_time_s();
    }
    enum hm_status st = hm_backend_compute(be, t, &g->rt, ws, ws_bytes);
    if (st != HM_OK)
        return st;
    if (g->profiling) {
        hm_backend_synchronize(be);
        prof[t->op].seconds += hm_time_s() - t0;
        prof[t->op].calls++;
    }
    return HM_OK;
}

struct node_seq {
    struct hm_graph *g;
    void *ws;
    struct hm_tensor **nodes;
    int n;
    struct hm_op_profile *prof;
};

static enum hm_status run_seq(void *user)
{
    struct node_seq *s = user;
    for (int i = 0; i < s->n; i++) {
        enum hm_status st = run_node(s->g, s->nodes[i], s->ws, s->g->scratch_bytes, s->prof);
        if (st != HM_OK)
            return st;
    }
    return HM_OK;
}

static enum hm_status run_nodes(struct hm_graph *g, bool backward)
{
    if (!g->work)
        return hm_fail(HM_ERR_USAGE, "graph is not planned: call hm_graph_plan first");
    void *ws = g->scratch_bytes ? (char *)hm_buffer_ptr(g->work) + g->scratch_offset : NULL;
    struct hm_tensor **nodes = backward ? g->bwd : g->fwd;
    int n = backward ? g->n_bwd : g->n_fwd;
    struct hm_op_profile *prof = g->prof[backward ? 1 : 0];
    hm_graph_hook_fn hook = backward ? g->bwd_hook : NULL;
    if (!hook && !g->profiling) {
        struct node_seq seq = {g, ws, nodes, n, prof};
        return hm_backend_run_sequence(g->be, g->plan_id * 2 + backward, nodes, n, &g->rt, run_seq, &seq);
    }
    for (int i = 0; i < n; i++) {
        enum hm_status st = run_node(g, nodes[i], ws, g->scratch_bytes, prof);
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
