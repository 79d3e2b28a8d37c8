/*
 * matmul.c - MATMUL through CBLAS sgemm (row-major). The forward op and both backward products
 * are this one kernel with different transposes (autograd.c). dst (+)= alpha op(a) op(b) + bias:
 * without accumulation the bias is broadcast into dst first and sgemm runs with beta = 1.
 * A single output row (batch-1 decoding) goes through sgemv instead.
 */
#include "cpu-impl.h"

#include <cblas.h>

static void add_bias(float *c, const float *bias, int64_t rows, int64_t N)
{
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR(rows * N))
    for (int64_t r = 0; r < rows; r++) {
        float *cr = c + r * N;
#pragma omp simd
        for (int64_t j = 0; j < N; j++)
            cr[j] += bias[j];
    }
}

CPU_KERNEL(matmul)
{
    const struct hm_tensor *a = dst->src[0], *b = dst->src[1], *bias = dst->src[2];
    float alpha = hm_op_f32(dst, 0);
    bool ta = dst->op_params[1], tb = dst->op_params[2], acc = dst->acc & 1;
    struct hm_mm_dims d = hm_mm_dims_of(a, b, ta, tb);
    float *c = F32(dst);
    float beta = acc ? 1.0f : 0.0f;
    int64_t rows = d.batch * d.M;
    if (bias && !acc) {
        const float *bv = CF32(bias);
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR(rows * d.N))
        for (int64_t r = 0; r < rows; r++)
            memcpy(c + r * d.N, bv, (size_t)d.N * sizeof(float));
        beta = 1.0f;
    }
    int64_t lda = ta ? d.M : d.K, ldb = tb ? d.K : d.N;
    if (d.M == 1) {
        /* One row (batch-1 decoding): sgemv streams b once. OpenBLAS 0.3.21's sgemm would first
         * pack all of b, reading and writing the weights again (measured ~3x slower there). With
         * M = 1, op(a) is one contiguous row whichever way a is stored. */
        for (int64_t i = 0; i < d.batch; i++)
            cblas_sgemv(CblasRowMajor, tb ? CblasNoTrans : CblasTrans, tb ? (int)d.N : (int)d.K,
                        tb ? (int)d.K : (int)d.N, alpha, CF32(b) + i * d.K * d.N, (int)ldb,
                        CF32(a) + i * d.K, 1, beta, c + i * d.N, 1);
        if (bias && acc)
            add_bias(c, CF32(bias), rows, d.N);
        return HM_OK;
    }
    for (int64_t i = 0; i < d.batch; i++)
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    (int)d.M, (int)d.N, (int)d.K, alpha, CF32(a) + i * d.M * d.K, (int)lda,
                    CF32(b) + i * d.K * d.N, (int)ldb, beta, c + i * d.M * d.N, (int)d.N);
    if (bias && acc)
        add_bias(c, CF32(bias), rows, d.N);
    return HM_OK;
}
