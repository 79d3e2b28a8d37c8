/*
 * matmul.c - MATMUL through CBLAS sgemm (row-major). The forward op and both backward products
 * are this one kernel with different transposes (autograd.c). dst (+)= alpha op(a) op(b) + bias:
 * without accumulation the bias is broadcast into dst first and sgemm runs with beta = 1.
 * A single output row (batch-1 decoding) goes through a streaming matvec instead.
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

/*
 * y[n] = beta * y[n] + alpha * dot(w[n, :], x) for w [N, K] row-major: batch-1 decoding through a
 * linear layer, bound by streaming w from memory. Rows are split statically over the threads and
 * four rows share each pass over x, so w is read once at full bandwidth; every row's sum runs in a
 * fixed lane order, so results do not depend on the thread count.
 */
static void matvec_rows(const float *w, const float *x, float *y, int64_t N, int64_t K, float alpha,
                        float beta)
{
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR(N * K))
    for (int64_t n0 = 0; n0 < N; n0 += 4) {
        int64_t rows = N - n0 < 4 ? N - n0 : 4;
        const float *w0 = w + n0 * K;
        const float *w1 = rows > 1 ? w0 + K : w0, *w2 = rows > 2 ? w0 + 2 * K : w0;
        const float *w3 = rows > 3 ? w0 + 3 * K : w0;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
        for (int64_t k = 0; k < K; k++) {
            s0 += w0[k] * x[k];
            s1 += w1[k] * x[k];
            s2 += w2[k] * x[k];
            s3 += w3[k] * x[k];
        }
        float s[4] = {s0, s1, s2, s3};
        for (int64_t r = 0; r < rows; r++)
            y[n0 + r] = (beta != 0.0f ? beta * y[n0 + r] : 0.0f) + alpha * s[r];
    }
}

CPU_KERNEL(matmul)
{
    if (dst->op_params[3]) /* batched serving: each row summed in one fixed order */
        return hm_cpu_matmul_rows(ex, dst);
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
        for (int64_t i = 0; i < d.batch; i++) {
            if (tb) /* b is [N, K], a linear layer's weight: our streaming matvec */
                matvec_rows(CF32(b) + i * d.K * d.N, CF32(a) + i * d.K, c + i * d.N, d.N, d.K, alpha,
                            beta);
            else
                cblas_sgemv(CblasRowMajor, CblasTrans, (int)d.K, (int)d.N, alpha,
                            CF32(b) + i * d.K * d.N, (int)ldb, CF32(a) + i * d.K, 1, beta,
                            c + i * d.N, 1);
        }
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
