/*
 * test-cuda-ops.c - every op of ops.def, forward and backward, on the CUDA backend against the
 * CPU backend (the reference semantics), on random inputs. Each case builds the same graph on both
 * backends: out = op(inputs), loss z = out * r with a random cotangent r, then backward; it compares
 * the output and the gradient of every input. Also: gradients are bit-identical across two CUDA
 * runs (determinism), bad token ids / targets are reported as HM_ERR_USAGE, and the optimizer and
 * reduction primitives (AdamW, sum of squares, scale, is_finite) match the CPU.
 *
 * The cases are the shared table of op-cases.c, including its `gpu` rows (shapes that exercise the
 * GPU's tiling and chunking, composite graphs). Tolerance: f32, max |cuda - cpu| <= 1e-4 *
 * max(max |cpu|, 1e-3) per tensor unless the case says otherwise. Every case also runs in bf16
 * ("NAME_bf16"): f32 master inputs read through bf16 copies, bf16 activations, f32 input
 * gradients, against the CPU's bf16 path (the same roundings; only the order of f32 sums differs,
 * which can move a result across a bf16 rounding boundary: one bf16 step is 2^-8 = 3.9e-3
 * relative). Tolerance 1.6e-2 (4 steps) of max |cpu|; the composite cases (several rounded stages
 * in a row) set 3.2e-2 in their row.
 *
 * Without a GPU (or in a CPU-only build) it prints "SKIPPED: no CUDA device (...)" and exits 77,
 * which ctest reports as skipped. HM_CUDA_DEVICE=N picks the GPU; HM_TEST_OP=substr filters cases.
 */
#include "op-cases.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_device;

static void compare(const struct op_case *c, enum hm_dtype dt)
{
    struct hm_backend *cpu, *gpu;
    assert_int_equal(hm_backend_cpu_new(&cpu), HM_OK);
    assert_int_equal(hm_backend_cuda_new(g_device, &gpu), HM_OK);
    struct op_result rc = {0}, rg = {0}, rg2 = {0};
    op_run_case(c, cpu, dt, 1, &rc);
    op_run_case(c, gpu, dt, 1, &rg);
    double tol = dt == HM_DTYPE_F32 ? (c->tol ? c->tol : 1e-4) : (c->tol16 ? c->tol16 : 1.6e-2);
    int64_t w;
    double e = op_rel_err(rg.out, rc.out, rc.n_out, &w);
    printf("%-22s %-4s forward rel err %.2e", c->name, hm_dtype_name(dt), e);
    if (!(e <= tol))
        fail_msg("%s: forward differs: rel %.3g at %lld (cuda %.7g, cpu %.7g)", c->name, e, (long long)w,
                 rg.out[w], rc.out[w]);
    for (int i = 0; i < c->n_f && !c->fwd_only; i++) {
        e = op_rel_err(rg.grad[i], rc.grad[i], rc.n[i], &w);
        printf("  d/dx%d %.2e", i, e);
        if (!(e <= tol))
            fail_msg("%s: gradient of input %d differs: rel %.3g at %lld (cuda %.7g, cpu %.7g)", c->name, i, e,
                     (long long)w, rg.grad[i][w], rc.grad[i][w]);
    }
    printf("\n");
    /* determinism: a second run (two forward+backward passes) gives the same bits */
    op_run_case(c, gpu, dt, 2, &rg2);
    assert_memory_equal(rg.out, rg2.out, (size_t)rg.n_out * sizeof(float));
    for (int i = 0; i < c->n_f && !c->fwd_only; i++)
        if (memcmp(rg.grad[i], rg2.grad[i], (size_t)rg.n[i] * sizeof(float)) != 0)
            fail_msg("%s: gradient of input %d is not bit-identical across runs", c->name, i);
    op_result_free(&rc), op_result_free(&rg), op_result_free(&rg2);
    hm_backend_free(cpu);
    hm_backend_free(gpu);
}

static void test_case(void **state)
{
    compare(*state, HM_DTYPE_F32);
}

static void test_case_bf16(void **state)
{
    compare(*state, HM_DTYPE_BF16);
}

/* A `flash` row of the table: the tensor-core attention (bf16, head dim 64 / 128) against the
 * scalar kernels it replaces, on the same GPU. The two must agree within the bf16 tolerance and
 * must differ somewhere, which shows the tensor-core path ran. */
static void test_flash_vs_reference(void **state)
{
    const struct op_case *c = *state;
    struct hm_backend *ref, *fast;
    setenv("HM_CUDA_ATTN", "reference", 1); /* read when the backend is created */
    assert_int_equal(hm_backend_cuda_new(g_device, &ref), HM_OK);
    unsetenv("HM_CUDA_ATTN");
    assert_int_equal(hm_backend_cuda_new(g_device, &fast), HM_OK);
    struct op_result rr = {0}, rf = {0};
    op_run_case(c, ref, HM_DTYPE_BF16, 1, &rr);
    op_run_case(c, fast, HM_DTYPE_BF16, 1, &rf);
    double tol = c->tol16 ? c->tol16 : 1.6e-2;
    int64_t w;
    double e = op_rel_err(rf.out, rr.out, rr.n_out, &w);
    bool differs = memcmp(rf.out, rr.out, (size_t)rr.n_out * sizeof(float)) != 0;
    printf("%-22s forward rel err %.2e", c->name, e);
    if (!(e <= tol))
        fail_msg("%s: forward differs: rel %.3g at %lld (flash %.7g, reference %.7g)", c->name, e, (long long)w,
                 rf.out[w], rr.out[w]);
    for (int i = 0; i < c->n_f; i++) {
        e = op_rel_err(rf.grad[i], rr.grad[i], rr.n[i], &w);
        differs |= memcmp(rf.grad[i], rr.grad[i], (size_t)rr.n[i] * sizeof(float)) != 0;
        printf("  d/dx%d %.2e", i, e);
        if (!(e <= tol))
            fail_msg("%s: gradient of input %d differs: rel %.3g at %lld (flash %.7g, reference %.7g)", c->name,
                     i, e, (long long)w, rf.grad[i][w], rr.grad[i][w]);
    }
    printf("\n");
    if (!differs)
        fail_msg("%s: bit-identical to the reference kernels: the tensor-core path did not run", c->name);
    op_result_free(&rr), op_result_free(&rf);
    hm_backend_free(ref);
    hm_backend_free(fast);
}

/* Every op has a CUDA kernel. */
static void test_coverage(void **state)
{
    struct hm_backend *gpu;
    assert_int_equal(hm_backend_cuda_new(g_device, &gpu), HM_OK);
    for (int op = 0; op < HM_OP_COUNT; op++)
        if (!hm_backend_supports_op(gpu, op))
            fail_msg("op '%s' has no CUDA kernel", hm_op_name(op));
    hm_backend_free(gpu);
}

/* KV_WRITE (inference only, no backward): write k, v at rt.pos into caches kept in a block without
 * gradients, attend over them; compare the output and both caches. */
static void kv_run(struct hm_backend *be, float *out, float *kc_out)
{
    enum { B = 2, S = 12, NKV = 2, NH = 4, HD = 8, T = 3, POS = 5 };
    struct hm_block *cache;
    assert_int_equal(hm_block_new(false, &cache), HM_OK);
    struct hm_tensor *kc = hm_block_add(cache, "k", HM_DTYPE_F32, 4, (int64_t[]){B, S, NKV, HD});
    struct hm_tensor *vc = hm_block_add(cache, "v", HM_DTYPE_F32, 4, (int64_t[]){B, S, NKV, HD});
    assert_int_equal(hm_block_alloc(cache, be), HM_OK);
    struct hm_rng rng;
    hm_rng_seed(&rng, 77);
    float hk[B * S * NKV * HD];
    for (size_t i = 0; i < sizeof hk / 4; i++)
        hk[i] = (float)(2.0 * hm_rng_uniform(&rng) - 1.0);
    assert_int_equal(hm_tensor_set(kc, hk, sizeof hk), HM_OK);
    assert_int_equal(hm_tensor_set(vc, hk, sizeof hk), HM_OK);
    struct hm_ctx *ctx;
    assert_int_equal(hm_ctx_new(&ctx), HM_OK);
    struct hm_tensor *q = hm_new_input(ctx, HM_DTYPE_F32, 4, (int64_t[]){B, T, NH, HD});
    struct hm_tensor *xk = hm_new_input(ctx, HM_DTYPE_F32, 4, (int64_t[]){B, T, NKV, HD});
    struct hm_tensor *xv = hm_new_input(ctx, HM_DTYPE_F32, 4, (int64_t[]){B, T, NKV, HD});
    struct hm_tensor *o = hm_attention(ctx, q, hm_kv_write(ctx, kc, xk), hm_kv_write(ctx, vc, xv));
    struct hm_graph *g;
    assert_int_equal(hm_graph_new(ctx, &g), HM_OK);
    hm_graph_build_forward(g, o);
    assert_int_equal(hm_graph_plan(g, be), HM_OK);
    hm_graph_runtime(g)->pos = POS;
    hm_graph_runtime(g)->training = false;
    float hq[B * T * NH * HD], hx[B * T * NKV * HD];
    for (size_t i = 0; i < sizeof hq / 4; i++)
        hq[i] = (float)(2.0 * hm_rng_uniform(&rng) - 1.0);
    for (size_t i = 0; i < sizeof hx / 4; i++)
        hx[i] = (float)(2.0 * hm_rng_uniform(&rng) - 1.0);
    assert_int_equal(hm_tensor_set(q, hq, sizeof hq), HM_OK);
    assert_int_equal(hm_tensor_set(xk, hx, sizeof hx), HM_OK);
    assert_int_equal(hm_tensor_set(xv, hx, sizeof hx), HM_OK);
    assert_int_equal(hm_graph_forward(g), HM_OK);
    assert_int_equal(hm_tensor_get(o, out, sizeof hq), HM_OK);
    assert_int_equal(hm_tensor_get(kc, kc_out, sizeof hk), HM_OK);
    hm_graph_runtime(g)->pos = S - T + 1; /* past the end of the cache */
    assert_int_equal(hm_graph_forward(g), HM_ERR_USAGE);
    hm_graph_free(g);
    hm_ctx_free(ctx);
    hm_block_free(cache);
}

static void test_kv_write(void **state)
{
    struct hm_backend *cpu, *gpu;
    assert_int_equal(hm_backend_cpu_new(&cpu), HM_OK);
    assert_int_equal(hm_backend_cuda_new(g_device, &gpu), HM_OK);
    float oc[2 * 3 * 4 * 8], og[2 * 3 * 4 * 8], kcc[2 * 12 * 2 * 8], kcg[2 * 12 * 2 * 8];
    kv_run(cpu, oc, kcc);
    kv_run(gpu, og, kcg);
    assert_memory_equal(kcc, kcg, sizeof kcc); /* a copy: bit-exact */
    int64_t w;
    double e = op_rel_err(og, oc, (int64_t)(sizeof oc / 4), &w);
    printf("kv_write + attention rel err %.2e\n", e);
    assert_true(e <= 1e-4);
    hm_backend_free(cpu);
    hm_backend_free(gpu);
}

/* A bad token id / target is a data error: HM_ERR_USAGE with the CPU's message, at the next sync. */
static void bad_input(bool embedding)
{
    struct hm_backend *gpu;
    assert_int_equal(hm_backend_cuda_new(g_device, &gpu), HM_OK);
    struct hm_block *blk;
    assert_int_equal(hm_block_new(true, &blk), HM_OK);
    struct hm_tensor *w = hm_block_add(blk, "w", HM_DTYPE_F32, 2, (int64_t[]){11, 4});
    assert_int_equal(hm_block_alloc(blk, gpu), HM_OK);
    struct hm_ctx *ctx;
    assert_int_equal(hm_ctx_new(&ctx), HM_OK);
    struct hm_tensor *ids = hm_new_input(ctx, HM_DTYPE_I32, 1, (int64_t[]){6});
    struct hm_tensor *y = embedding ? hm_embedding(ctx, w, ids) : hm_cross_entropy(ctx, w, hm_new_input(ctx, HM_DTYPE_I32, 1, (int64_t[]){11}), -100);
    struct hm_tensor *tg = embedding ? ids : y->src[1];
    struct hm_graph *g;
    assert_int_equal(hm_graph_new(ctx, &g), HM_OK);
    hm_graph_build_forward(g, y);
    assert_int_equal(hm_graph_plan(g, gpu), HM_OK);
    int32_t good[11] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, bad[11] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    bad[2] = embedding ? 11 : 4; /* the CE target limit is 4 */
    bad[4] = -7;
    if (!embedding)
        good[4] = good[5] = good[6] = good[7] = good[8] = good[9] = good[10] = 3, good[2] = 1;
    size_t nb = hm_nbytes(tg);
    assert_int_equal(hm_tensor_set(tg, bad, nb), HM_OK);
    assert_int_equal(hm_graph_forward(g), HM_OK); /* asynchronous: reported at the sync */
    /* Overwritten before the sync: the message must still name the value the kernel saw. */
    assert_int_equal(hm_tensor_set(tg, good, nb), HM_OK);
    assert_int_equal(hm_backend_synchronize(gpu), HM_ERR_USAGE);
    printf("%s\n", hm_last_error());
    assert_non_null(strstr(hm_last_error(), embedding ? "embedding: token id 11 at index 2" : "cross_entropy: target 4 at index 2"));
    assert_int_equal(hm_graph_forward(g), HM_OK); /* the error is cleared once reported */
    assert_int_equal(hm_backend_synchronize(gpu), HM_OK);
    hm_graph_free(g);
    hm_ctx_free(ctx);
    hm_block_free(blk);
    hm_backend_free(gpu);
}

static void test_bad_token_id(void **state)
{
    bad_input(true);
}

static void test_bad_target(void **state)
{
    bad_input(false);
}

/* AdamW, sum of squares, scale and is_finite over ranges, against the CPU. */
static void test_optim(void **state)
{
    struct hm_backend *be[2];
    assert_int_equal(hm_backend_cpu_new(&be[0]), HM_OK);
    assert_int_equal(hm_backend_cuda_new(g_device, &be[1]), HM_OK);
    size_t n = 1000003, off = 17, len = n - 40;
    struct hm_rng rng;
    hm_rng_seed(&rng, 5);
    float *h[4], *res[2][4];
    for (int k = 0; k < 4; k++) {
        h[k] = malloc(n * 4);
        for (size_t i = 0; i < n; i++)
            h[k][i] = k == 3 ? 0.01f * (float)hm_rng_uniform(&rng) : (float)(2.0 * hm_rng_uniform(&rng) - 1.0);
    }
    double ss[2];
    bool fin[2], fin2[2];
    for (int b = 0; b < 2; b++) {
        struct hm_buffer *buf[4];
        for (int k = 0; k < 4; k++) {
            assert_int_equal(hm_buffer_new(be[b], n * 4, &buf[k]), HM_OK);
            assert_int_equal(hm_buffer_set(buf[k], 0, h[k], n * 4), HM_OK);
        }
        struct hm_adamw_params hp = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1};
        for (int t = 1; t <= 3; t++) {
            hp.t = t;
            assert_int_equal(hm_backend_adamw(buf[0], buf[1], buf[2], buf[3], off, len, &hp), HM_OK);
        }
        assert_int_equal(hm_buffer_sumsq(buf[1], off, len, &ss[b]), HM_OK);
        assert_int_equal(hm_buffer_scale(buf[1], 3, n - 3, 0.37f), HM_OK);
        assert_int_equal(hm_buffer_is_finite(buf[1], 0, n, &fin[b]), HM_OK);
        float inf = INFINITY;
        assert_int_equal(hm_buffer_set(buf[1], 4 * 777, &inf, 4), HM_OK);
        assert_int_equal(hm_buffer_is_finite(buf[1], 0, n, &fin2[b]), HM_OK);
        for (int k = 0; k < 4; k++) {
            res[b][k] = malloc(n * 4);
            assert_int_equal(hm_buffer_get(buf[k], 0, res[b][k], n * 4), HM_OK);
            hm_buffer_free(buf[k]);
        }
    }
    printf("sumsq cpu %.17g cuda %.17g\n", ss[0], ss[1]);
    assert_true(fabs(ss[0] - ss[1]) <= 1e-12 * ss[0]);
    assert_true(fin[0] && fin[1] && !fin2[0] && !fin2[1]);
    int64_t w;
    for (int k = 0; k < 4; k++) {
        double e = op_rel_err(res[1][k], res[0][k], (int64_t)n, &w);
        printf("buffer %d rel err %.2e\n", k, e);
        assert_true(e <= 1e-5);
        free(res[0][k]), free(res[1][k]), free(h[k]);
    }
    hm_backend_free(be[0]);
    hm_backend_free(be[1]);
}

int main(void)
{
    g_device = tu_cuda_device();
    if (g_device < 0)
        return 77;
    struct CMUnitTest *tests = calloc((size_t)(2 * hm_n_op_cases + 5), sizeof *tests);
    char(*names16)[48] = calloc((size_t)hm_n_op_cases, sizeof *names16);
    const char *filter = getenv("HM_TEST_OP");
    int n = 0;
    for (int i = 0; i < hm_n_op_cases; i++) {
        const struct op_case *c = &hm_op_cases[i];
        if (c->flash) { /* "attention" selects them too */
            if (!filter || strstr(c->name, filter) || strstr("attention", filter))
                tests[n++] = (struct CMUnitTest){c->name, test_flash_vs_reference, NULL, NULL, (void *)c};
        } else if (!filter || strstr(c->name, filter)) {
            tests[n++] = (struct CMUnitTest){c->name, test_case, NULL, NULL, (void *)c};
            snprintf(names16[i], sizeof names16[i], "%s_bf16", c->name);
            tests[n++] = (struct CMUnitTest){names16[i], test_case_bf16, NULL, NULL, (void *)c};
        }
    }
    tests[n++] = (struct CMUnitTest){"coverage", test_coverage, NULL, NULL, NULL};
    tests[n++] = (struct CMUnitTest){"kv_write", test_kv_write, NULL, NULL, NULL};
    tests[n++] = (struct CMUnitTest){"bad_token_id", test_bad_token_id, NULL, NULL, NULL};
    tests[n++] = (struct CMUnitTest){"bad_target", test_bad_target, NULL, NULL, NULL};
    tests[n++] = (struct CMUnitTest){"optim", test_optim, NULL, NULL, NULL};
    int rc = _cmocka_run_group_tests("cuda-ops", tests, (size_t)n, NULL, NULL);
    free(tests);
    free(names16);
    return rc;
}
