/*
 * test-ops.c - every op on the CPU, from the shared table of op-cases.c: the forward result
 * against a plain reference loop (in double), and every input gradient against central finite
 * differences of L = sum(op(x) * r) with a random cotangent r. Also: every op of ops.def with a
 * kernel runs in some case's graph (coverage), and the fused residual add + RMSNorm gives the same
 * bits as the add and the norm it replaces.
 */
#include "op-cases.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double loss_of(struct op_run *R)
{
    assert_int_equal(hm_graph_forward(R->g), HM_OK);
    int64_t n = hm_nelements(R->z);
    float *z = malloc(sizeof(float) * (size_t)n);
    assert_int_equal(hm_tensor_get(R->z, z, hm_nbytes(R->z)), HM_OK);
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += z[i];
    free(z);
    return s;
}

static void run_case(const struct op_case *c, struct hm_backend *be)
{
    struct op_run R;
    op_setup(c, be, HM_DTYPE_F32, 42, OP_DROP_SEED, OP_DROP_STEP, &R);

    /* forward vs reference */
    int64_t no = hm_nelements(R.out);
    float *ho = malloc(sizeof(float) * (size_t)no);
    double *ref = malloc(sizeof(double) * (size_t)no);
    assert_int_equal(hm_graph_forward(R.g), HM_OK);
    assert_int_equal(hm_tensor_get(R.out, ho, hm_nbytes(R.out)), HM_OK);
    c->ref(c, R.hx, R.hids, R.x, R.ids, R.out, ref);
    double max_err = 0, max_ref = 0;
    for (int64_t j = 0; j < no; j++) {
        max_err = fmax(max_err, fabs(ho[j] - ref[j]));
        max_ref = fmax(max_ref, fabs(ref[j]));
    }
    if (max_err > 1e-5 * fmax(1.0, max_ref))
        fail_msg("%s: forward differs from reference by %g (max |ref| %g)", c->name, max_err, max_ref);
    free(ref);
    free(ho);
    if (c->fwd_only) {
        op_run_free(&R);
        return;
    }

    /* backward vs central differences */
    assert_int_equal(hm_buffer_zero(hm_block_grads(R.blk)), HM_OK);
    assert_int_equal(hm_graph_forward(R.g), HM_OK);
    assert_int_equal(hm_graph_backward(R.g), HM_OK);
    double eps = c->fd_eps ? c->fd_eps : 1e-2;
    for (int i = 0; i < c->n_f; i++) {
        int64_t n = hm_nelements(R.x[i]);
        float *gr = malloc(sizeof(float) * (size_t)n);
        assert_int_equal(hm_tensor_get(R.x[i]->grad, gr, hm_nbytes(R.x[i])), HM_OK);
        int64_t step = n > 40 ? n / 40 : 1; /* about 40 elements per input */
        for (int64_t j = (int64_t)(i * 7) % step; j < n; j += step) {
            float orig = R.hx[i][j];
            size_t off = hm_block_elem_offset(R.x[i]) * 4 + (size_t)j * 4;
            float v = orig + (float)eps;
            hm_buffer_set(hm_block_data(R.blk), off, &v, 4);
            double fp = loss_of(&R);
            v = orig - (float)eps;
            hm_buffer_set(hm_block_data(R.blk), off, &v, 4);
            double fm = loss_of(&R);
            hm_buffer_set(hm_block_data(R.blk), off, &orig, 4);
            double num = (fp - fm) / (2 * eps), ana = gr[j];
            if (fabs(num - ana) > 5e-4 + 5e-3 * fmax(fabs(num), fabs(ana)))
                fail_msg("%s: d/dx%d[%lld]: backward %.6g, finite difference %.6g", c->name, i,
                         (long long)j, ana, num);
        }
        free(gr);
    }
    op_run_free(&R);
}

static void test_case(void **state)
{
    struct hm_backend *be;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    run_case(*state, be);
    hm_backend_free(be);
}

/* -inf logits (a masked or padded vocabulary): probability 0 and gradient 0, never NaN. Row 0 masks
 * columns 3..5, row 1 is entirely -inf and ignored, row 2 is plain; then a target on a -inf logit
 * has loss +inf. The loss is checked against the reference over the finite logits. */
static void test_cross_entropy_neg_inf(void **state)
{
    enum { N = 3, V = 6 };
    struct hm_backend *be;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    struct hm_block *blk;
    assert_int_equal(hm_block_new(true, &blk), HM_OK);
    struct hm_tensor *x = hm_block_add(blk, "x", HM_DTYPE_F32, 2, (int64_t[]){N, V});
    assert_int_equal(hm_block_alloc(blk, be), HM_OK);
    const float ninf = -INFINITY;
    float hx[N * V] = {0.5f, -1.0f, 2.0f, ninf, ninf, ninf, ninf, ninf, ninf, ninf, ninf, ninf,
                       0.1f, 0.2f, -0.3f, 1.5f, -2.0f, 0.7f};
    assert_int_equal(hm_tensor_set(x, hx, sizeof hx), HM_OK);
    struct hm_ctx *ctx;
    assert_int_equal(hm_ctx_new(&ctx), HM_OK);
    struct hm_tensor *tg = hm_new_input(ctx, HM_DTYPE_I32, 1, (int64_t[]){N});
    struct hm_tensor *loss = hm_cross_entropy(ctx, x, tg, HM_IGNORE_INDEX);
    struct hm_graph *g;
    assert_int_equal(hm_graph_new(ctx, &g), HM_OK);
    hm_graph_build_forward(g, loss);
    assert_int_equal(hm_graph_build_backward(g, loss), HM_OK);
    assert_int_equal(hm_graph_plan(g, be), HM_OK);
    int32_t targets[N] = {1, HM_IGNORE_INDEX, 5};
    assert_int_equal(hm_tensor_set(tg, targets, sizeof targets), HM_OK);
    assert_int_equal(hm_buffer_zero(hm_block_grads(blk)), HM_OK);
    assert_int_equal(hm_graph_forward(g), HM_OK);
    assert_int_equal(hm_graph_backward(g), HM_OK);
    float l, dx[N * V];
    assert_int_equal(hm_tensor_get(loss, &l, sizeof l), HM_OK);
    assert_int_equal(hm_tensor_get(x->grad, dx, sizeof dx), HM_OK);
    double ref = 0;
    for (int r = 0; r < N; r += 2) {
        double s = 0;
        for (int j = 0; j < V; j++)
            s += isfinite(hx[r * V + j]) ? exp(hx[r * V + j]) : 0.0;
        ref += log(s) - hx[r * V + targets[r]];
    }
    assert_true(fabs(l - ref / 2) < 1e-5);
    for (int i = 0; i < N * V; i++) {
        assert_true(isfinite(dx[i]));
        if (!isfinite(hx[i]))
            assert_true(dx[i] == 0.0f);
    }
    targets[0] = 4; /* a -inf logit */
    assert_int_equal(hm_tensor_set(tg, targets, sizeof targets), HM_OK);
    assert_int_equal(hm_graph_forward(g), HM_OK);
    assert_int_equal(hm_tensor_get(loss, &l, sizeof l), HM_OK);
    assert_true(isinf(l) && l > 0);
    hm_graph_free(g);
    hm_ctx_free(ctx);
    hm_block_free(blk);
    hm_backend_free(be);
}

/* Every op of ops.def with a kernel has a CPU kernel and runs in the forward or backward graph of
 * some CPU case: a new op without a row in op-cases.c fails here. */
static void test_coverage(void **state)
{
    struct hm_backend *be;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    bool seen[HM_OP_COUNT] = {false};
    for (int k = 0; k < hm_n_op_cases; k++) {
        const struct op_case *c = &hm_op_cases[k];
        if (c->gpu)
            continue;
        struct op_run R;
        op_setup(c, be, HM_DTYPE_F32, 42, OP_DROP_SEED, OP_DROP_STEP, &R);
        for (int b = 0; b < 2; b++)
            for (int i = 0; i < hm_graph_n_nodes(R.g, b); i++)
                seen[hm_graph_node(R.g, b, i)->op] = true;
        op_run_free(&R);
    }
    for (int op = 0; op < HM_OP_COUNT; op++) {
        if (!hm_op_info(op)->kernel)
            continue;
        if (!hm_backend_supports_op(be, op))
            fail_msg("op '%s' has no CPU kernel", hm_op_name(op));
        if (!seen[op])
            fail_msg("op '%s' runs in no case of tests/unit/op-cases.c: add a row", hm_op_name(op));
    }
    hm_backend_free(be);
}

/*
 * Three residual steps x += branch(rms_norm(x)) with the norm after each add, built with
 * hm_add + hm_rms_norm or with hm_add_rms_norm: the same output and gradients, bit for bit. The
 * stream starts from a computed tensor, so the fused backward takes the aliased-gradient path the
 * model takes.
 */
static void residual_chain(struct hm_backend *be, enum hm_dtype dt, bool fused, float *out, float *grads)
{
    enum { N = 37, C = 24, L = 3 };
    struct hm_block *blk, *copies = NULL;
    assert_int_equal(hm_block_new(true, &blk), HM_OK);
    /* p: x0, then the norm weight and matrix of each step, then the last norm weight */
    hm_block_add(blk, "x", HM_DTYPE_F32, 2, (int64_t[]){N, C});
    for (int i = 0; i < L; i++) {
        hm_block_add(blk, "w", HM_DTYPE_F32, 1, (int64_t[]){C});
        hm_block_add(blk, "m", HM_DTYPE_F32, 2, (int64_t[]){C, C});
    }
    hm_block_add(blk, "w", HM_DTYPE_F32, 1, (int64_t[]){C});
    assert_int_equal(hm_block_alloc(blk, be), HM_OK);
    size_t n = hm_block_nbytes(blk) / 4;
    float *h = malloc(n * 4);
    struct hm_rng rng;
    hm_rng_seed(&rng, 5);
    for (size_t i = 0; i < n; i++)
        h[i] = (float)(2.0 * hm_rng_uniform(&rng) - 1.0);
    assert_int_equal(hm_buffer_set(hm_block_data(blk), 0, h, n * 4), HM_OK);
    free(h);
    struct hm_tensor *p[2 * L + 2];
    for (int i = 0; i < hm_block_n_tensors(blk); i++)
        p[i] = hm_block_tensor(blk, i);
    if (dt == HM_DTYPE_BF16) {
        assert_int_equal(hm_block_new_copy(blk, dt, be, &copies), HM_OK);
        assert_int_equal(hm_block_copy_refresh(copies, blk), HM_OK);
        for (int i = 0; i < hm_block_n_tensors(blk); i++)
            p[i] = hm_block_tensor(copies, i);
    }
    struct hm_ctx *ctx;
    assert_int_equal(hm_ctx_new(&ctx), HM_OK);
    struct hm_tensor *x = hm_scale(ctx, p[0], 0.5f);
    struct hm_tensor *y = hm_rms_norm(ctx, x, p[1], 1e-5f);
    for (int i = 0; i < L; i++) {
        struct hm_tensor *o = hm_gelu(ctx, hm_matmul(ctx, y, p[2 + 2 * i], false, false));
        struct hm_tensor *wn = p[i + 1 < L ? 1 + 2 * (i + 1) : 2 * L + 1];
        if (fused) {
            y = hm_add_rms_norm(ctx, x, o, wn, 1e-5f, &x);
        } else {
            x = hm_add(ctx, x, o);
            y = hm_rms_norm(ctx, x, wn, 1e-5f);
        }
    }
    struct hm_tensor *loss = hm_cross_entropy(ctx, y, hm_new_input(ctx, HM_DTYPE_I32, 1, (int64_t[]){N}), -100);
    struct hm_graph *g;
    assert_int_equal(hm_graph_new(ctx, &g), HM_OK);
    hm_set_output(y);
    assert_int_equal(hm_graph_build_backward(g, loss), HM_OK);
    assert_int_equal(hm_graph_plan(g, be), HM_OK);
    int32_t t[N];
    for (int i = 0; i < N; i++)
        t[i] = (i * 7) % C;
    assert_int_equal(hm_tensor_set(loss->src[1], t, sizeof t), HM_OK);
    assert_int_equal(hm_graph_forward(g), HM_OK);
    assert_int_equal(hm_graph_backward(g), HM_OK);
    assert_int_equal(hm_tensor_get_f32(y, out, (size_t)(N * C)), HM_OK);
    assert_int_equal(hm_buffer_get(hm_block_grads(blk), 0, grads, n * 4), HM_OK);
    hm_graph_free(g);
    hm_ctx_free(ctx);
    hm_block_free(copies);
    hm_block_free(blk);
}

static void test_add_rms_norm_bits(void **state)
{
    struct hm_backend *be;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    enum { NOUT = 37 * 24, NG = 37 * 24 + 3 * (24 + 24 * 24) + 24 };
    for (int d = 0; d < 2; d++) {
        enum hm_dtype dt = d ? HM_DTYPE_BF16 : HM_DTYPE_F32;
        static float out[2][NOUT], grads[2][NG];
        residual_chain(be, dt, false, out[0], grads[0]);
        residual_chain(be, dt, true, out[1], grads[1]);
        if (memcmp(out[0], out[1], sizeof out[0]) != 0 || memcmp(grads[0], grads[1], sizeof grads[0]) != 0)
            fail_msg("%s: add_rms_norm differs from add + rms_norm", hm_dtype_name(dt));
    }
    hm_backend_free(be);
}

int main(void)
{
    struct CMUnitTest tests[hm_n_op_cases + 3];
    const char *filter = getenv("HM_TEST_OP");
    int n = 0;
    for (int i = 0; i < hm_n_op_cases; i++) {
        if (hm_op_cases[i].gpu || (filter && !strstr(hm_op_cases[i].name, filter)))
            continue;
        tests[n++] = (struct CMUnitTest){hm_op_cases[i].name, test_case, NULL, NULL, (void *)&hm_op_cases[i]};
    }
    tests[n++] = (struct CMUnitTest){"coverage", test_coverage, NULL, NULL, NULL};
    tests[n++] = (struct CMUnitTest){"add_rms_norm_bits", test_add_rms_norm_bits, NULL, NULL, NULL};
    tests[n++] = (struct CMUnitTest){"cross_entropy_neg_inf", test_cross_entropy_neg_inf, NULL, NULL, NULL};
    return _cmocka_run_group_tests("ops", tests, (size_t)n, NULL, NULL);
}
