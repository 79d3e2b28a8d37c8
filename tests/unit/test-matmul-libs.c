/*
 * test-matmul-libs.c - f32 matmuls through oneDNN against the same products through OpenBLAS's
 * sgemm (the path every f32 matmul took before, and takes where oneDNN's rule says so). Every
 * case of the shared op table that runs a matmul runs twice on the CPU backend in f32, every
 * matmul forced to OpenBLAS and then to oneDNN (hm_cpu_set_f32_matmul), and the outputs and input
 * gradients must agree within 1e-5 of max |ref|: both sum the same f32 products, only in another
 * order. Then training-sized shapes (every transpose, bias, accumulation, alpha) straight through
 * the backend, and the auto rule on the presets' training shapes, which must pick oneDNN where the
 * rule measured it faster and OpenBLAS elsewhere. Skips without oneDNN.
 */
#include "op-cases.h"

#include "backend/cpu/cpu-impl.h"
#include "hermes/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(const char *name, const char *what, const float *got, const float *ref, int64_t n)
{
    int64_t w;
    double e = op_rel_err(got, ref, n, &w);
    if (!(e <= 1e-5))
        fail_msg("%s: %s: rel err %.3g > 1e-5 at %lld (oneDNN %.9g, OpenBLAS %.9g)", name, what, e,
                 (long long)w, got[w], ref[w]);
}

static void test_case(void **state)
{
    const struct op_case *c = *state;
    struct hm_backend *be;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    if (!op_case_runs_matmul(c, be, HM_DTYPE_F32)) {
        hm_backend_free(be);
        skip();
    }
    struct op_result ref = {0}, got = {0};
    hm_cpu_set_f32_matmul(HM_CPU_F32_MATMUL_OPENBLAS);
    op_run_case(c, be, HM_DTYPE_F32, 1, &ref);
    hm_cpu_set_f32_matmul(HM_CPU_F32_MATMUL_ONEDNN);
    op_run_case(c, be, HM_DTYPE_F32, 1, &got);
    hm_cpu_set_f32_matmul(HM_CPU_F32_MATMUL_AUTO);
    check(c->name, "output", got.out, ref.out, ref.n_out);
    for (int i = 0; i < c->n_f && !c->fwd_only; i++) {
        char what[32];
        snprintf(what, sizeof what, "gradient of input %d", i);
        check(c->name, what, got.grad[i], ref.grad[i], ref.n[i]);
    }
    op_result_free(&ref), op_result_free(&got);
    hm_backend_free(be);
}

/* dst (M, N) (+)= alpha op(a) op(b) (+ bias) as one MATMUL node, run by the backend's kernel. */
struct mm_shape {
    int64_t M, N, K;
    bool ta, tb, bias, acc;
    float alpha;
};

static void run_matmul(struct hm_backend *be, const struct mm_shape *s, const float *a,
                       const float *b, const float *bias, float *c)
{
    struct hm_ctx *ctx;
    assert_int_equal(hm_ctx_new(&ctx), HM_OK);
    struct hm_tensor *ta = hm_new_input(ctx, HM_DTYPE_F32, 2,
                                        (int64_t[]){s->ta ? s->K : s->M, s->ta ? s->M : s->K});
    struct hm_tensor *tb = hm_new_input(ctx, HM_DTYPE_F32, 2,
                                        (int64_t[]){s->tb ? s->N : s->K, s->tb ? s->K : s->N});
    struct hm_tensor *tbias = s->bias ? hm_new_input(ctx, HM_DTYPE_F32, 1, (int64_t[]){s->N}) : NULL;
    struct hm_tensor *y = hm_matmul_ex(ctx, ta, tb, tbias, s->ta, s->tb, s->alpha);
    y->acc = s->acc;
    ta->data = (void *)a, tb->data = (void *)b, y->data = c;
    if (tbias)
        tbias->data = (void *)bias;
    struct hm_exec ex = {0};
    assert_int_equal(be->iface->kernels[HM_OP_MATMUL](&ex, y), HM_OK);
    hm_ctx_free(ctx);
}

static void fill(float *x, int64_t n, uint32_t seed)
{
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)(seed >> 8) / (float)(1u << 24) - 0.5f;
    }
}

static void test_training_shapes(void **state)
{
    static const struct mm_shape shapes[] = {
        {512, 128, 128, false, true, true, false, 1.0f},   /* a linear layer's forward, bias */
        {512, 128, 384, false, false, false, true, 1.0f},  /* its input gradient, accumulated */
        {384, 128, 512, true, false, false, false, 1.0f},  /* its weight gradient */
        {384, 128, 512, true, false, false, true, 0.5f},   /* accumulated, scaled */
        {256, 200, 96, false, true, false, false, 0.125f}, /* attention-like scale */
        {65, 33, 17, true, true, true, false, 1.0f},       /* odd sizes, both transposed */
    };
    struct hm_backend *be;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const struct mm_shape *s = &shapes[i];
        float *a = malloc(sizeof(float) * s->M * s->K), *b = malloc(sizeof(float) * s->K * s->N);
        float *bias = malloc(sizeof(float) * s->N), *c0 = malloc(sizeof(float) * s->M * s->N);
        float *c1 = malloc(sizeof(float) * s->M * s->N);
        fill(a, s->M * s->K, 1), fill(b, s->K * s->N, 2), fill(bias, s->N, 3);
        fill(c0, s->M * s->N, 4), memcpy(c1, c0, sizeof(float) * s->M * s->N);
        hm_cpu_set_f32_matmul(HM_CPU_F32_MATMUL_OPENBLAS);
        run_matmul(be, s, a, b, bias, c0);
        hm_cpu_set_f32_matmul(HM_CPU_F32_MATMUL_ONEDNN);
        run_matmul(be, s, a, b, bias, c1);
        hm_cpu_set_f32_matmul(HM_CPU_F32_MATMUL_AUTO);
        char name[64];
        snprintf(name, sizeof name, "%lldx%lldx%lld ta%d tb%d", (long long)s->M, (long long)s->N,
                 (long long)s->K, s->ta, s->tb);
        check(name, "product", c1, c0, s->M * s->N);
        free(a), free(b), free(bias), free(c0), free(c1);
    }
    hm_backend_free(be);
}

/* More distinct shapes than oneDNN's primitive table holds (a chat session's many prompt lengths):
 * the table recycles its slots, and every product stays right. */
static void test_many_shapes(void **state)
{
    struct hm_backend *be;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    float a[300 * 24], b[24 * 20], bias[20], c0[300 * 20], c1[300 * 20];
    fill(a, 300 * 24, 5), fill(b, 24 * 20, 6), fill(bias, 20, 7);
    for (int64_t M = 2; M < 300; M++) {
        struct mm_shape s = {M, 20, 24, false, true, M % 2 == 0, false, 1.0f};
        hm_cpu_set_f32_matmul(HM_CPU_F32_MATMUL_OPENBLAS);
        run_matmul(be, &s, a, b, bias, c0);
        hm_cpu_set_f32_matmul(HM_CPU_F32_MATMUL_ONEDNN);
        run_matmul(be, &s, a, b, bias, c1);
        hm_cpu_set_f32_matmul(HM_CPU_F32_MATMUL_AUTO);
        char name[32];
        snprintf(name, sizeof name, "M=%lld", (long long)M);
        check(name, "product", c1, c0, M * 20);
    }
    hm_backend_free(be);
}

/* The auto rule on the presets' training shapes (scripts/bench/matmul-libs measured them):
 * oneDNN for tiny's products, OpenBLAS for gpt2-small's larger ones and for short prompts. */
static void test_rule(void **state)
{
    assert_true(hm_cpu_f32_onednn_rule(8192, 128, 128));        /* tiny q/o forward */
    assert_true(hm_cpu_f32_onednn_rule(8192, 128, 4096));       /* tiny head dX */
    assert_true(hm_cpu_f32_onednn_rule(512, 128, 8192));        /* tiny up dW */
    assert_false(hm_cpu_f32_onednn_rule(1024, 3072, 768));      /* gpt2 down dX */
    assert_false(hm_cpu_f32_onednn_rule(1024, 768, 32000));     /* gpt2 head dX */
    assert_false(hm_cpu_f32_onednn_rule(7, 128, 128));          /* a 7-token prompt */
}

/* HM_CPU_F32_MATMUL picks the library at backend creation; anything else is a usage error. */
static void test_env(void **state)
{
    struct hm_backend *be = NULL;
    setenv("HM_CPU_F32_MATMUL", "mkl", 1);
    assert_int_equal(hm_backend_cpu_new(&be), HM_ERR_USAGE);
    assert_non_null(strstr(hm_last_error(), "HM_CPU_F32_MATMUL=mkl"));
    setenv("HM_CPU_F32_MATMUL", "openblas", 1);
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    hm_backend_free(be);
    unsetenv("HM_CPU_F32_MATMUL");
    hm_cpu_set_f32_matmul(HM_CPU_F32_MATMUL_AUTO);
}

int main(void)
{
    if (!hm_cpu_have_onednn()) {
        printf("skip: built without oneDNN (or its CPU engine failed): every f32 matmul is sgemm\n");
        return 77;
    }
    struct CMUnitTest *tests = calloc((size_t)hm_n_op_cases + 5, sizeof *tests);
    int n = op_case_tests(tests, test_case);
    tests[n++] = (struct CMUnitTest){"training_shapes", test_training_shapes, NULL, NULL, NULL};
    tests[n++] = (struct CMUnitTest){"many_shapes", test_many_shapes, NULL, NULL, NULL};
    tests[n++] = (struct CMUnitTest){"rule", test_rule, NULL, NULL, NULL};
    tests[n++] = (struct CMUnitTest){"env", test_env, NULL, NULL, NULL};
    int rc = _cmocka_run_group_tests("matmul-libs", tests, (size_t)n, NULL, NULL);
    free(tests);
    return rc;
}
