/*
 * test-bf16-cpu.c - the CPU's fast bf16 paths against the widening path they replace (bf16.c:
 * every operand widened to f32, f32 kernels, results rounded once), which stays the oracle.
 * Every case of the shared op table runs in bf16 twice on the CPU backend, fast paths off
 * (hm_cpu_bf16_set_fast(false)) and on, and the outputs and input gradients are compared:
 *   - a case whose graph runs no matmul must agree bit for bit: the row-blocked shadows of bf16.c
 *     run the same f32 kernel on the same rows, only on a few rows at a time;
 *   - a case with a matmul (oneDNN on AMX / AVX512-BF16) must agree within 1.6e-2 of max |ref|
 *     (the case's tol16 where it sets one), the tolerance test-cuda-ops.c gives cuBLAS against the
 *     same oracle and for the same reason: both multiply the same bf16 values exactly and sum in
 *     f32, only in another order, which moves an f32 result by a few ulp and can move it across a
 *     bf16 rounding boundary (one bf16 step is 2^-8 = 3.9e-3 relative): 4 steps.
 * Also the rule of `train --dtype auto` (hm_auto_train_dtype), from the features, not timed.
 * Without a native bf16 matmul (a build without oneDNN, a CPU without AVX512-BF16) matmuls widen
 * on both sides; the test says so. HM_TEST_OP=substr filters cases.
 */
#include "op-cases.h"

#include "backend/cpu/cpu-impl.h"
#include "hermes/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(const struct op_case *c, const char *what, const float *fast, const float *ref,
                  int64_t n, double tol)
{
    if (tol == 0.0) {
        for (int64_t i = 0; i < n; i++)
            if (memcmp(&fast[i], &ref[i], sizeof *fast) != 0)
                fail_msg("%s: %s differs from the widening path at %lld (%.9g, widening %.9g)",
                         c->name, what, (long long)i, fast[i], ref[i]);
        return;
    }
    int64_t w;
    double e = op_rel_err(fast, ref, n, &w);
    if (!(e <= tol))
        fail_msg("%s: %s: rel err %.3g > %.3g at %lld (fast %.7g, widening %.7g)", c->name, what, e,
                 tol, (long long)w, fast[w], ref[w]);
}

static void test_case(void **state)
{
    const struct op_case *c = *state;
    struct hm_backend *be;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    struct op_result ref = {0}, fast = {0};
    hm_cpu_bf16_set_fast(false);
    op_run_case(c, be, HM_DTYPE_BF16, 1, &ref);
    hm_cpu_bf16_set_fast(true);
    op_run_case(c, be, HM_DTYPE_BF16, 1, &fast);
    double tol = op_case_runs_matmul(c, be, HM_DTYPE_BF16) ? (c->tol16 ? c->tol16 : 1.6e-2) : 0.0;
    check(c, "output", fast.out, ref.out, ref.n_out, tol);
    for (int i = 0; i < c->n_f && !c->fwd_only; i++) {
        char what[32];
        snprintf(what, sizeof what, "gradient of input %d", i);
        check(c, what, fast.grad[i], ref.grad[i], ref.n[i], tol);
    }
    op_result_free(&ref), op_result_free(&fast);
    hm_backend_free(be);
}

static void test_auto_dtype(void **state)
{
    assert_int_equal(hm_auto_train_dtype(true, HM_CPU_BF16_NONE), HM_DTYPE_BF16);
    assert_int_equal(hm_auto_train_dtype(false, HM_CPU_BF16_AMX), HM_DTYPE_BF16);
    assert_int_equal(hm_auto_train_dtype(false, HM_CPU_BF16_AVX512), HM_DTYPE_F32);
    assert_int_equal(hm_auto_train_dtype(false, HM_CPU_BF16_NONE), HM_DTYPE_F32);
}

int main(void)
{
    if (hm_cpu_bf16_support() == HM_CPU_BF16_NONE)
        printf("note: no native bf16 matmul here (built without oneDNN, or a CPU without "
               "AVX512-BF16): matmuls widen on both sides\n");
    struct CMUnitTest *tests = calloc((size_t)hm_n_op_cases + 1, sizeof *tests);
    int n = op_case_tests(tests, test_case);
    tests[n++] = (struct CMUnitTest){"auto_dtype", test_auto_dtype, NULL, NULL, NULL};
    int rc = _cmocka_run_group_tests("bf16-cpu", tests, (size_t)n, NULL, NULL);
    free(tests);
    return rc;
}
