/*
 * test-packed.c - packed (bf16, q8_0) inference weights on the CPU: q8_0 quantisation and
 * dequantisation byte for byte against the gguf package (tests/fixtures/quant/q8_0.bin, written by
 * tests/reference/make_q8_0_fixture.py); the decode kernels bit for bit against their scalar
 * oracle and at any thread count, over odd sizes; linear layers (one row: matvec, several: the
 * widened-panel sgemm) and the embedding lookup against f32 on the widened weights; the model's
 * packing and its refusals (q8_0 rows not whole blocks, as ggml refuses them; a training model).
 */
#include "testutil.h"

#include "backend/cpu/matvec.h"
#include "hermes/export.h"
#include "hermes/model.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc(*len);
    assert_int_equal(fread(p, 1, *len, f), *len);
    fclose(f);
    return p;
}

static void test_q8_0_matches_gguf(void **state)
{
    size_t len;
    uint8_t *buf = read_all(HM_FIXTURES_DIR "/quant/q8_0.bin", &len);
    uint32_t n;
    memcpy(&n, buf, 4);
    assert_int_equal(n % HM_Q8_0_BLOCK, 0);
    size_t qbytes = n / HM_Q8_0_BLOCK * HM_Q8_0_BYTES;
    assert_int_equal(len, 4 + 4 * (size_t)n + qbytes + 4 * (size_t)n);
    float *x = malloc(4 * (size_t)n), *dq = malloc(4 * (size_t)n), *ours_dq = malloc(4 * (size_t)n);
    memcpy(x, buf + 4, 4 * (size_t)n);
    memcpy(dq, buf + 4 + 4 * (size_t)n + qbytes, 4 * (size_t)n);
    const uint8_t *q = buf + 4 + 4 * (size_t)n;
    uint8_t *ours = malloc(qbytes);
    hm_quantize_q8_0(x, n, ours);
    for (size_t i = 0; i < qbytes; i++)
        if (ours[i] != q[i])
            fail_msg("q8_0 byte %zu (block %zu): ours 0x%02x, gguf 0x%02x", i, i / HM_Q8_0_BYTES,
                     ours[i], q[i]);
    hm_dequantize_q8_0(q, n, ours_dq);
    assert_memory_equal(ours_dq, dq, 4 * (size_t)n);
    free(buf), free(x), free(dq), free(ours_dq), free(ours);
}

/* Deterministic values in about [-1, 1). */
static void fill(float *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)(seed >> 8) / (float)(1u << 23) - 1.0f;
    }
}

/* y from the kernel in use with `threads` threads, or from the scalar oracle. */
static void run_matvec(bool q8, const void *w, const float *x, const uint8_t *xq, const float *xd,
                       float *y, int64_t N, int64_t K, bool scalar, int threads)
{
    int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    enum hm_cpu_isa isa = scalar ? HM_CPU_ISA_SCALAR : hm_cpu_matvec_isa();
    if (q8)
        hm_cpu_matvec_q8_0(isa, w, xq, xd, y, N, K);
    else
        hm_cpu_matvec_bf16(isa, w, x, y, N, K);
    omp_set_num_threads(saved);
}

static void check_kernel(bool q8, int64_t N, int64_t K)
{
    float *wf = malloc((size_t)(N * K) * sizeof *wf), *x = malloc((size_t)K * sizeof *x);
    fill(wf, (size_t)(N * K), (uint32_t)(N * 131 + K));
    fill(x, (size_t)K, (uint32_t)K);
    size_t wbytes = q8 ? (size_t)(N * K) / HM_Q8_0_BLOCK * HM_Q8_0_BYTES : (size_t)(N * K) * 2;
    void *w = malloc(wbytes);
    uint8_t *xq = malloc((size_t)K / HM_Q8_0_BLOCK * HM_Q8_0_BYTES + 1);
    float *xd = malloc(((size_t)K / HM_Q8_0_BLOCK + 1) * sizeof *xd);
    if (q8) {
        hm_quantize_q8_0(wf, (size_t)(N * K), w);
        hm_quantize_q8_0(x, (size_t)K, xq);
        hm_cpu_q8_0_scales(xq, K, xd);
    } else {
        hm_f32_to_bf16_n(wf, w, (size_t)(N * K));
    }
    float *ref = malloc((size_t)N * sizeof *ref), *y = malloc((size_t)N * sizeof *y);
    run_matvec(q8, w, x, xq, xd, ref, N, K, true, 1);
    for (int threads = 1; threads <= 3; threads++) {
        run_matvec(q8, w, x, xq, xd, y, N, K, false, threads);
        for (int64_t n = 0; n < N; n++)
            if (memcmp(&y[n], &ref[n], sizeof *y) != 0)
                fail_msg("%s N %lld K %lld, %d threads (%s): row %lld is %.9g, the oracle %.9g",
                         q8 ? "q8_0" : "bf16", (long long)N, (long long)K, threads,
                         hm_cpu_matvec_isa_name(hm_cpu_matvec_isa()), (long long)n, y[n], ref[n]);
    }
    /* and the oracle is the dot product it claims to be (f32 over the exact widened weights) */
    float *row = malloc((size_t)K * sizeof *row), *xw = malloc((size_t)K * sizeof *xw);
    if (q8)
        hm_dequantize_q8_0(xq, (size_t)K, xw);
    else
        memcpy(xw, x, (size_t)K * sizeof *x);
    for (int64_t n = 0; n < N; n++) {
        hm_cpu_rows_to_f32(q8 ? HM_DTYPE_Q8_0 : HM_DTYPE_BF16, w, n, 1, K, row);
        double s = 0, mag = 0;
        for (int64_t k = 0; k < K; k++)
            s += (double)row[k] * xw[k], mag += fabs((double)row[k] * xw[k]);
        assert_true(fabs(ref[n] - s) <= 1e-6 * mag + 1e-30);
    }
    free(wf), free(x), free(w), free(xq), free(xd), free(ref), free(y), free(row), free(xw);
}

static void test_bf16_kernel_equals_oracle(void **state)
{
    printf("kernels in use: %s\n", hm_cpu_matvec_isa_name(hm_cpu_matvec_isa()));
    const int64_t sizes[][2] = {{1, 1}, {3, 17}, {5, 33}, {7, 100}, {9, 1000}, {4, 16}, {13, 2049}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        check_kernel(false, sizes[i][0], sizes[i][1]);
}

static void test_q8_0_kernel_equals_oracle(void **state)
{
    /* block counts: 1, 2, 3 (an odd last pair), 15, 17 (a partial 16-block chunk), 86 (K 2752) */
    const int64_t sizes[][2] = {{1, 32},  {3, 64},   {5, 96},   {2, 480},
                                {7, 544}, {9, 2752}, {33, 1024}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        check_kernel(true, sizes[i][0], sizes[i][1]);
}

/* A linear layer y = x w^T + bias on a packed w of N x K, M rows of x, through the graph; compared
 * with f32 on the widened weights (for q8_0 at M = 1, x is quantised as the kernel does). */
static void check_linear(enum hm_dtype dt, int64_t M, int64_t N, int64_t K)
{
    struct hm_backend *be;
    struct hm_block *blk;
    struct hm_ctx *ctx;
    struct hm_graph *g;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    assert_int_equal(hm_block_new(false, &blk), HM_OK);
    struct hm_tensor *bias = hm_block_add(blk, "b", HM_DTYPE_F32, 1, (int64_t[]){N});
    struct hm_tensor *w = hm_block_add(blk, "w", dt, 2, (int64_t[]){N, K});
    assert_int_equal(hm_block_alloc(blk, be), HM_OK);
    float *wf = malloc((size_t)(N * K) * sizeof *wf), *x = malloc((size_t)(M * K) * sizeof *x);
    float *bv = malloc((size_t)N * sizeof *bv), *y = malloc((size_t)(M * N) * sizeof *y);
    fill(wf, (size_t)(N * K), 7), fill(x, (size_t)(M * K), 8), fill(bv, (size_t)N, 9);
    if (dt == HM_DTYPE_Q8_0)
        hm_quantize_q8_0(wf, (size_t)(N * K), w->data);
    else
        hm_f32_to_bf16_n(wf, w->data, (size_t)(N * K));
    hm_cpu_rows_to_f32(dt, w->data, 0, N, K, wf); /* the weights as they are now */
    memcpy(bias->data, bv, (size_t)N * sizeof *bv);
    assert_int_equal(hm_ctx_new(&ctx), HM_OK);
    struct hm_tensor *xt = hm_new_input(ctx, HM_DTYPE_F32, 2, (int64_t[]){M, K});
    struct hm_tensor *ids = hm_new_input(ctx, HM_DTYPE_I32, 1, (int64_t[]){2});
    struct hm_tensor *yt = hm_linear(ctx, xt, w, bias), *et = hm_embedding_f32(ctx, w, ids);
    assert_int_equal(hm_graph_new(ctx, &g), HM_OK);
    hm_graph_build_forward(g, yt);
    hm_graph_build_forward(g, et);
    assert_int_equal(hm_graph_plan(g, be), HM_OK);
    assert_int_equal(hm_tensor_set(xt, x, (size_t)(M * K) * sizeof *x), HM_OK);
    int32_t id[2] = {(int32_t)N - 1, 0};
    assert_int_equal(hm_tensor_set(ids, id, sizeof id), HM_OK);
    assert_int_equal(hm_graph_forward(g), HM_OK);
    assert_int_equal(hm_tensor_get(yt, y, (size_t)(M * N) * sizeof *y), HM_OK);
    if (dt == HM_DTYPE_Q8_0 && M == 1) {
        uint8_t *xq = malloc((size_t)K / HM_Q8_0_BLOCK * HM_Q8_0_BYTES);
        hm_quantize_q8_0(x, (size_t)K, xq);
        hm_dequantize_q8_0(xq, (size_t)K, x);
        free(xq);
    }
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = bv[n], mag = fabs(bv[n]);
            for (int64_t k = 0; k < K; k++)
                s += (double)x[m * K + k] * wf[n * K + k],
                    mag += fabs((double)x[m * K + k] * wf[n * K + k]);
            if (fabs(y[m * N + n] - s) > 1e-5 * mag)
                fail_msg("%s linear M %lld: y[%lld][%lld] = %.7g, f32 on the widened weights %.7g",
                         hm_dtype_name(dt), (long long)M, (long long)m, (long long)n, y[m * N + n],
                         s);
        }
    float *rows = malloc((size_t)(2 * K) * sizeof *rows);
    assert_int_equal(hm_tensor_get(et, rows, (size_t)(2 * K) * sizeof *rows), HM_OK);
    assert_memory_equal(rows, wf + (N - 1) * K, (size_t)K * sizeof *rows);
    assert_memory_equal(rows + K, wf, (size_t)K * sizeof *rows);
    free(wf), free(x), free(bv), free(y), free(rows);
    hm_graph_free(g);
    hm_ctx_free(ctx);
    hm_block_free(blk);
    hm_backend_free(be);
}

static void test_linear_and_embedding(void **state)
{
    /* M = 1: the decode kernels; M = 5: panels of 128 rows, the last one partial (N = 300) */
    for (int64_t M = 1; M <= 5; M += 4) {
        check_linear(HM_DTYPE_BF16, M, 300, 50);
        check_linear(HM_DTYPE_Q8_0, M, 300, 96);
    }
}

static struct hm_model_config nano(int hidden)
{
    struct hm_model_config c;
    assert_int_equal(hm_config_resolve("llama-nano", &c), HM_OK);
    c.hidden_size = hidden;
    return c;
}

static void test_pack_model(void **state)
{
    struct hm_model_config c = nano(64);
    struct hm_backend *be;
    struct hm_model *m;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    assert_int_equal(hm_model_new_infer(&c, be, &m), HM_OK);
    assert_int_equal(hm_model_init_weights(m, 3), HM_OK);
    uint64_t f32_bytes = hm_model_weight_bytes(m);
    assert_int_equal(hm_model_pack_weights(m, HM_DTYPE_Q8_0), HM_OK);
    assert_int_equal(hm_model_weight_dtype(m), HM_DTYPE_Q8_0);
    assert_true(hm_model_weights_released(m));
    /* q8_0 matrices are 34/128 of f32; the norms stay f32 */
    uint64_t q8 = hm_model_weight_bytes(m),
             norms = (uint64_t)(2 * c.num_layers + 1) * c.hidden_size * 4;
    assert_int_equal(q8, (f32_bytes - norms) / 128 * 34 + norms);
    assert_int_equal(q8, hm_model_packed_bytes(&c, HM_DTYPE_Q8_0));
    /* packing twice, or to bf16 activations afterwards, is refused */
    assert_int_equal(hm_model_pack_weights(m, HM_DTYPE_BF16), HM_ERR_USAGE);
    assert_int_equal(hm_model_set_dtype(m, HM_DTYPE_BF16), HM_ERR_USAGE);
    hm_model_free(m);

    /* rows of 48 are not whole q8_0 blocks: refused naming the tensor; bf16 takes them */
    c = nano(48);
    assert_int_equal(hm_model_new_infer(&c, be, &m), HM_OK);
    assert_int_equal(hm_model_pack_weights(m, HM_DTYPE_Q8_0), HM_ERR_UNSUPPORTED);
    assert_non_null(strstr(hm_last_error(), "'embedding.weight' has 48 columns"));
    assert_int_equal(hm_model_pack_weights(m, HM_DTYPE_BF16), HM_OK);
    hm_model_free(m);

    /* a training model keeps its f32 weights */
    assert_int_equal(hm_model_new(&c, be, &m), HM_OK);
    assert_int_equal(hm_model_pack_weights(m, HM_DTYPE_BF16), HM_ERR_USAGE);
    hm_model_free(m);
    hm_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_q8_0_matches_gguf),
        cmocka_unit_test(test_bf16_kernel_equals_oracle),
        cmocka_unit_test(test_q8_0_kernel_equals_oracle),
        cmocka_unit_test(test_linear_and_embedding),
        cmocka_unit_test(test_pack_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
