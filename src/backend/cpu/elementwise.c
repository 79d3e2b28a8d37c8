/*
 * elementwise.c - FILL, ADD, MUL, SCALE, REDUCE_ROWS, GELU(+back), SWIGLU(+back), DROPOUT.
 * Elementwise loops are OpenMP static + simd; the planner may run ADD, MUL, SCALE, GELU,
 * GELU_BACK, DROPOUT and REDUCE_ROWS in place (dst == a source: ops.def's inplace column), so
 * nothing here uses restrict and each element is read before it is written. `acc` (dst->acc bit 0) selects += over =.
 */
#include "cpu-impl.h"

#define STORE(p, i, v, acc) ((p)[i] = (acc) ? (p)[i] + (v) : (v))

CPU_KERNEL(fill)
{
    float v = dst->op_params[1] ? ex->rt->loss_scale : hm_op_f32(dst, 0);
    float *y = F32(dst);
    int64_t n = hm_nelements(dst);
#pragma omp parallel for simd schedule(static) if (parallel : HM_CPU_PAR(n))
    for (int64_t i = 0; i < n; i++)
        y[i] = v;
    return HM_OK;
}

CPU_KERNEL(add)
{
    const float *a = CF32(dst->src[0]), *b = CF32(dst->src[1]);
    float *y = F32(dst);
    int64_t n = hm_nelements(dst), nb = hm_nelements(dst->src[1]);
    bool acc = dst->acc & 1;
    if (nb == n) {
#pragma omp parallel for simd schedule(static) if (parallel : HM_CPU_PAR(n))
        for (int64_t i = 0; i < n; i++)
            STORE(y, i, a[i] + b[i], acc);
        return HM_OK;
    }
    int64_t rows = n / nb;
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR(n))
    for (int64_t r = 0; r < rows; r++) {
        const float *ar = a + r * nb;
        float *yr = y + r * nb;
#pragma omp simd
        for (int64_t j = 0; j < nb; j++)
            STORE(yr, j, ar[j] + b[j], acc);
    }
    return HM_OK;
}

CPU_KERNEL(mul)
{
    const float *a = CF32(dst->src[0]), *b = CF32(dst->src[1]);
    float *y = F32(dst);
    int64_t n = hm_nelements(dst);
    bool acc = dst->acc & 1;
#pragma omp parallel for simd schedule(static) if (parallel : HM_CPU_PAR(n))
    for (int64_t i = 0; i < n; i++)
        STORE(y, i, a[i] * b[i], acc);
    return HM_OK;
}

CPU_KERNEL(scale)
{
    const float *x = CF32(dst->src[0]);
    float *y = F32(dst), s = hm_op_f32(dst, 0);
    int64_t n = hm_nelements(dst);
    bool acc = dst->acc & 1;
#pragma omp parallel for simd schedule(static) if (parallel : HM_CPU_PAR(n))
    for (int64_t i = 0; i < n; i++)
        STORE(y, i, s * x[i], acc);
    return HM_OK;
}

void hm_cpu_colsum(const void *x, bool x_bf16, const float *x2, const float *rscale, float *y,
                   int64_t rows, int64_t n, float s, bool acc)
{
    enum { W = 64 };
    int64_t n_chunks = (n + W - 1) / W;
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR(n * rows))
    for (int64_t ch = 0; ch < n_chunks; ch++) {
        int64_t c0 = ch * W, w = n - c0 < W ? n - c0 : W;
        double sum[W] = {0};
        for (int64_t r = 0; r < rows; r++) {
            const float *xr = (const float *)x + r * n + c0;
            const uint16_t *xr16 = (const uint16_t *)x + r * n + c0;
            if (x_bf16) { /* widened exactly as read: the sums of an f32 copy */
#pragma omp simd
                for (int64_t j = 0; j < w; j++)
                    sum[j] += hm_cpu_from_bf16(xr16[j]);
            } else if (x2) {
                const float *x2r = x2 + r * n + c0;
                float rs = rscale[r];
#pragma omp simd
                for (int64_t j = 0; j < w; j++)
                    sum[j] += xr[j] * x2r[j] * rs;
            } else {
#pragma omp simd
                for (int64_t j = 0; j < w; j++)
                    sum[j] += xr[j];
            }
        }
        for (int64_t j = 0; j < w; j++)
            STORE(y, c0 + j, s * (float)sum[j], acc);
    }
}

bool hm_cpu_reduce_reads_bf16(const struct hm_tensor *node)
{
    const struct hm_tensor *x = node->src[0];
    return node->op == HM_OP_REDUCE_ROWS && x->type == HM_DTYPE_BF16 &&
           node->type == HM_DTYPE_F32 && hm_nelements(x) > hm_nelements(node);
}

/* dst (+)= s * sum of src over leading rows (src numel is a multiple of dst numel). */
CPU_KERNEL(reduce_rows)
{
    if (hm_cpu_reduce_reads_bf16(dst)) {
        int64_t n = hm_nelements(dst);
        int64_t rows = hm_nelements(dst->src[0]) / n;
        hm_cpu_colsum(dst->src[0]->data, true, NULL, NULL, F32(dst), rows, n, hm_op_f32(dst, 0),
                      dst->acc & 1);
        return HM_OK;
    }
    const float *x = CF32(dst->src[0]);
    float *y = F32(dst), s = hm_op_f32(dst, 0);
    int64_t n = hm_nelements(dst), rows = hm_nelements(dst->src[0]) / n;
    bool acc = dst->acc & 1;
    if (rows == 1) {
#pragma omp parallel for simd schedule(static) if (parallel : HM_CPU_PAR(n))
        for (int64_t i = 0; i < n; i++)
            STORE(y, i, s * x[i], acc);
        return HM_OK;
    }
    hm_cpu_colsum(x, false, NULL, NULL, y, rows, n, s, acc);
    return HM_OK;
}

CPU_KERNEL(gelu)
{
    const float *x = CF32(dst->src[0]);
    float *y = F32(dst);
    int64_t n = hm_nelements(dst);
#pragma omp parallel for simd schedule(static) if (parallel : HM_CPU_PAR(n))
    for (int64_t i = 0; i < n; i++) {
        float xi = x[i];
        y[i] = 0.5f * xi * (1.0f + hm_erff(xi * (float)M_SQRT1_2));
    }
    return HM_OK;
}

/* d/dx [x Phi(x)] = Phi(x) + x phi(x) */
static inline float gelu_grad(float xi)
{
    const float inv_sqrt_2pi = 0.3989422804014327f;
    float cdf = 0.5f * (1.0f + hm_erff(xi * (float)M_SQRT1_2));
    float pdf = inv_sqrt_2pi * hm_expf(-0.5f * xi * xi);
    return cdf + xi * pdf;
}

CPU_KERNEL(gelu_back)
{
    const float *dy = CF32(dst->src[0]), *x = CF32(dst->src[1]);
    float *dx = F32(dst);
    int64_t n = hm_nelements(dst);
    if (dst->acc & 1) {
#pragma omp parallel for simd schedule(static) if (parallel : HM_CPU_PAR(n))
        for (int64_t i = 0; i < n; i++)
            dx[i] += dy[i] * gelu_grad(x[i]);
    } else {
#pragma omp parallel for simd schedule(static) if (parallel : HM_CPU_PAR(n))
        for (int64_t i = 0; i < n; i++)
            dx[i] = dy[i] * gelu_grad(x[i]);
    }
    return HM_OK;
}

CPU_KERNEL(swiglu)
{
    const float *g = CF32(dst->src[0]), *u = CF32(dst->src[1]);
    float *y = F32(dst);
    int64_t n = hm_nelements(dst);
#pragma omp parallel for simd schedule(static) if (parallel : HM_CPU_PAR(n))
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        y[i] = gi / (1.0f + hm_expf(-gi)) * u[i];
    }
    return HM_OK;
}

/* silu'(g) = s (1 + g (1 - s)), s = sigmoid(g). dgate and dup are written in separate loops, each
 * unswitched on its acc bit, so every loop is a plain vector loop. */
#define SIMD_LOOP _Pragma("omp parallel for simd schedule(static) if (parallel : HM_CPU_PAR(n))")
static inline float sigmoid(float x)
{
    return 1.0f / (1.0f + hm_expf(-x));
}

CPU_KERNEL(swiglu_back)
{
    const float *dy = CF32(dst->src[0]), *g = CF32(dst->src[1]), *u = CF32(dst->src[2]);
    float *dg = F32(dst), *du = dst->src[3] ? F32(dst->src[3]) : NULL;
    int64_t n = hm_nelements(dst);
    if (du && (dst->acc & 2)) {
        SIMD_LOOP
        for (int64_t i = 0; i < n; i++)
            du[i] += dy[i] * g[i] * sigmoid(g[i]);
    } else if (du) {
        SIMD_LOOP
        for (int64_t i = 0; i < n; i++)
            du[i] = dy[i] * g[i] * sigmoid(g[i]);
    }
    if (dst->acc & 1) {
        SIMD_LOOP
        for (int64_t i = 0; i < n; i++) {
            float s = sigmoid(g[i]);
            dg[i] += dy[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
        }
    } else {
        SIMD_LOOP
        for (int64_t i = 0; i < n; i++) {
            float s = sigmoid(g[i]);
            dg[i] = dy[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
        }
    }
    return HM_OK;
}

/* Forward and backward alike: y (+)= x * keep(i) / (1 - p); a plain copy when not training. */
CPU_KERNEL(dropout)
{
    const float *x = CF32(dst->src[0]);
    float *y = F32(dst);
    int64_t n = hm_nelements(dst);
    bool acc = dst->acc & 1;
    if (!ex->rt->training) {
#pragma omp parallel for simd schedule(static) if (parallel : HM_CPU_PAR(n))
        for (int64_t i = 0; i < n; i++)
            STORE(y, i, x[i], acc);
        return HM_OK;
    }
    float p = hm_op_f32(dst, 0), scale = 1.0f / (1.0f - p);
    uint32_t thr = hm_dropout_threshold(p), id = (uint32_t)dst->op_params[1];
    uint64_t seed = ex->rt->seed, step = ex->rt->step;
    uint64_t off = hm_dropout_offset(ex->rt->sample0, ex->rt->samples, n);
#pragma omp parallel for simd schedule(static) if (parallel : HM_CPU_PAR(n))
    for (int64_t i = 0; i < n; i++) {
        float keep = hm_dropout_bits(seed, step, id, off + (uint64_t)i) >= thr ? scale : 0.0f;
        STORE(y, i, x[i] * keep, acc);
    }
    return HM_OK;
}
