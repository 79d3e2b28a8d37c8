/*
 * test-graph-sequence.c - the executor's run_sequence path (hm_backend_run_sequence, then the
 * vtable's run_sequence of backend-impl.h), which the CUDA backend uses to record and replay CUDA
 * graphs, checked on the CPU through a wrapped CPU backend: forward and backward each arrive as
 * one sequence with every node, under a key that is stable across steps, distinct per direction
 * and per planned graph (so a recording is never replayed for other pointers); the results equal
 * the plain executor's; a backward hook or profiling bypasses it (they must run between nodes);
 * nodes planned on another backend are refused before the vtable is reached.
 */
#include "testutil.h"

#include "backend/backend-impl.h"
#include "core/core-impl.h"
#include "hermes/backend.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

struct seen {
    int calls;
    uint64_t key[8];
    int n[8];
};
static struct seen g_seen;

static enum hm_status record_sequence(struct hm_backend *be, uint64_t key, struct hm_tensor *const *nodes, int n,
                                      const struct hm_runtime *rt, enum hm_status (*run)(void *user), void *user)
{
    if (g_seen.calls < 8) {
        g_seen.key[g_seen.calls] = key;
        g_seen.n[g_seen.calls] = n;
    }
    g_seen.calls++;
    return run(user);
}

static enum hm_status never_run(void *user)
{
    fail_msg("run_sequence ran a sequence it should have refused");
    return HM_OK;
}

static enum hm_status count_hook(void *user, int node)
{
    (*(int *)user)++;
    return HM_OK;
}

struct setup {
    struct hm_block *blk;
    struct hm_tensor *w, *ids, *loss;
    struct hm_ctx *ctx;
    struct hm_graph *g;
};

/* loss = cross_entropy(gelu(x W^T)) over fixed inputs; W is the only parameter. */
static void build(struct setup *s, struct hm_backend *be)
{
    assert_int_equal(hm_block_new(true, &s->blk), HM_OK);
    s->w = hm_block_add(s->blk, "w", HM_DTYPE_F32, 2, (int64_t[]){5, 4});
    assert_int_equal(hm_block_alloc(s->blk, be), HM_OK);
    float hw[20];
    for (int i = 0; i < 20; i++)
        hw[i] = 0.1f * (float)((i * 7) % 11) - 0.5f;
    assert_int_equal(hm_tensor_set(s->w, hw, sizeof hw), HM_OK);
    assert_int_equal(hm_ctx_new(&s->ctx), HM_OK);
    struct hm_tensor *x = hm_new_input(s->ctx, HM_DTYPE_F32, 2, (int64_t[]){3, 4});
    s->ids = hm_new_input(s->ctx, HM_DTYPE_I32, 1, (int64_t[]){3});
    s->loss = hm_cross_entropy(s->ctx, hm_gelu(s->ctx, hm_linear(s->ctx, x, s->w, NULL)), s->ids, HM_IGNORE_INDEX);
    assert_int_equal(hm_graph_new(s->ctx, &s->g), HM_OK);
    hm_graph_build_forward(s->g, s->loss);
    assert_int_equal(hm_graph_build_backward(s->g, s->loss), HM_OK);
    assert_int_equal(hm_graph_plan(s->g, be), HM_OK);
    float hx[12] = {0.3f, -1.0f, 0.5f, 2.0f, -0.7f, 0.1f, 0.0f, 1.5f, 0.9f, -0.2f, 0.4f, -1.1f};
    int32_t t[3] = {1, 4, 2};
    assert_int_equal(hm_tensor_set(x, hx, sizeof hx), HM_OK);
    assert_int_equal(hm_tensor_set(s->ids, t, sizeof t), HM_OK);
}

static void teardown(struct setup *s)
{
    hm_graph_free(s->g);
    hm_ctx_free(s->ctx);
    hm_block_free(s->blk);
}

static void step(struct setup *s, float *loss, float *grad)
{
    assert_int_equal(hm_buffer_zero(hm_block_grads(s->blk)), HM_OK);
    assert_int_equal(hm_graph_forward(s->g), HM_OK);
    assert_int_equal(hm_graph_backward(s->g), HM_OK);
    assert_int_equal(hm_tensor_get(s->loss, loss, sizeof *loss), HM_OK);
    assert_int_equal(hm_tensor_get(s->w->grad, grad, 20 * sizeof(float)), HM_OK);
}

static void test_sequences(void **state)
{
    struct hm_backend *plain, *be;
    assert_int_equal(hm_backend_cpu_new(&plain), HM_OK);
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    struct hm_backend_i wrapped = *be->iface;
    assert_null(wrapped.run_sequence); /* the CPU runs nodes one by one */
    wrapped.run_sequence = record_sequence;
    be->iface = &wrapped;

    struct setup ref, s;
    float l0, g0[20], l1, g1[20];
    build(&ref, plain);
    step(&ref, &l0, g0);
    memset(&g_seen, 0, sizeof g_seen);
    build(&s, be);
    step(&s, &l1, g1);
    assert_true(l0 == l1);
    assert_memory_equal(g0, g1, sizeof g0);
    assert_int_equal(g_seen.calls, 2);
    assert_int_equal(g_seen.n[0], s.g->n_fwd);
    assert_int_equal(g_seen.n[1], s.g->n_bwd);
    assert_true(g_seen.key[1] == g_seen.key[0] + 1 && g_seen.key[0] % 2 == 0);

    step(&s, &l1, g1); /* the next step: same keys */
    assert_int_equal(g_seen.calls, 4);
    assert_true(g_seen.key[2] == g_seen.key[0] && g_seen.key[3] == g_seen.key[1]);

    struct setup s2; /* another planned graph (other pointers): other keys */
    build(&s2, be);
    step(&s2, &l1, g1);
    assert_true(l0 == l1);
    assert_int_equal(g_seen.calls, 6);
    assert_true(g_seen.key[4] != g_seen.key[0] && g_seen.key[5] != g_seen.key[1]);
    teardown(&s2);

    int hooked = 0; /* a hook runs between backward nodes: no sequence for the backward */
    hm_graph_set_backward_hook(s.g, count_hook, &hooked);
    step(&s, &l1, g1);
    assert_int_equal(g_seen.calls, 7);
    assert_int_equal(hooked, s.g->n_bwd);
    hm_graph_set_backward_hook(s.g, NULL, NULL);
    hm_graph_set_profiling(s.g, true); /* profiling times each node: no sequences */
    step(&s, &l1, g1);
    assert_int_equal(g_seen.calls, 7);
    assert_true(l0 == l1);

    /* the checked entry point: ref's nodes live on `plain`, not on `be` */
    assert_int_equal(hm_backend_run_sequence(be, 1, ref.g->fwd, ref.g->n_fwd, hm_graph_runtime(ref.g), never_run,
                                             NULL),
                     HM_ERR_USAGE);
    assert_int_equal(g_seen.calls, 7);

    teardown(&s);
    teardown(&ref);
    hm_backend_free(plain);
    hm_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_sequences)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
