/*
 * norm.c - RMSNorm: y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps) (eps inside the sqrt),
 * over the last dim, and ADD_RMS_NORM, the residual add in front of it in the same pass over each
 * row (s = a + b, h = rms_norm(s)). Backward gives dx per row and dw = sum_rows dy * x * rstd;
 * dw is the deterministic column sum of elementwise.c (hm_cpu_colsum). rstd is kept in the
 * workspace between the two passes. The fused kernels run the unfused ones'
 * arithmetic in the same order, so their results are the same bits.
 */
#include "cpu-impl.h"

static float row_rstd(const float *x, int64_t C, float eps)
{
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (int64_t j = 0; j < C; j++)
        ss += x[j] * x[j];
    return 1.0f / sqrtf(ss / (float)C + eps);
}

static inline void norm_row(const float *x, const float *w, float *y, int64_t C, float eps)
{
    float rs = row_rstd(x, C, eps);
#pragma omp simd
    for (int64_t j = 0; j < C; j++)
        y[j] = x[j] * rs * w[j];
}

/* dx (+)= rs w dy - (rs^3 / C) (sum_j dy_j w_j x_j) x for one row; returns rs. */
static inline float norm_back_row(const float *d, const float *x, const float *w, float *dx, int64_t C,
                                  float eps, bool acc)
{
    float rs = row_rstd(x, C, eps);
    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (int64_t j = 0; j < C; j++)
        dot += d[j] * w[j] * x[j];
    float k = rs * rs * rs * dot / (float)C;
#pragma omp simd
    for (int64_t j = 0; j < C; j++) {
        float v = rs * w[j] * d[j] - k * x[j];
        dx[j] = acc ? dx[j] + v : v;
    }
    return rs;
}

CPU_KERNEL(rms_norm)
{
    const struct hm_tensor *xt = dst->src[0];
    const float *w = CF32(dst->src[1]);
    float eps = hm_op_f32(dst, 0);
    int64_t C = xt->shape[xt->n_dims - 1], N = hm_nrows(xt);
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR(N * C))
    for (int64_t r = 0; r < N; r++)
        norm_row(CF32(xt) + r * C, w, F32(dst) + r * C, C, eps);
    return HM_OK;
}

CPU_KERNEL(rms_norm_back)
{
    const struct hm_tensor *xt = dst->src[1];
    const float *dy = CF32(dst->src[0]), *xs = CF32(xt), *w = CF32(dst->src[2]);
    float eps = hm_op_f32(dst, 0);
    int64_t C = xt->shape[xt->n_dims - 1], N = hm_nrows(xt);
    bool acc_x = dst->acc & 1;
    float *rstd = ex->ws;
    HM_ASSERT(ex->ws_bytes >= (size_t)N * sizeof(float));
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR(N * C))
    for (int64_t r = 0; r < N; r++)
        rstd[r] = norm_back_row(dy + r * C, xs + r * C, w, F32(dst) + r * C, C, eps, acc_x);
    if (dst->src[3])
        hm_cpu_colsum(dy, false, xs, rstd, F32(dst->src[3]), N, C, 1.0f, dst->acc & 2); /* dw */
    return HM_OK;
}

/* dst = s = a + b (a, b may share dst's storage: each element is read before it is written),
 * src[3] = rms_norm(s, w). */
CPU_KERNEL(add_rms_norm)
{
    const struct hm_tensor *at = dst->src[0];
    const float *a = CF32(at), *b = CF32(dst->src[1]), *w = CF32(dst->src[2]);
    float eps = hm_op_f32(dst, 0);
    bool round = dst->op_params[1];
    int64_t C = at->shape[at->n_dims - 1], N = hm_nrows(at);
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR(N * C))
    for (int64_t r = 0; r < N; r++) {
        const float *ar = a + r * C, *br = b + r * C;
        float *s = F32(dst) + r * C;
        if (round) { /* the rounding a separate bf16 node would have done */
#pragma omp simd
            for (int64_t j = 0; j < C; j++)
                s[j] = hm_cpu_bf16_round(ar[j] + br[j]);
        } else {
#pragma omp simd
            for (int64_t j = 0; j < C; j++)
                s[j] = ar[j] + br[j];
        }
        norm_row(s, w, F32(dst->src[3]) + r * C, C, eps);
    }
    return HM_OK;
}

/* dst = ds (+)= rms_norm_back(dh, s, w); then db and da (+)= ds, dw as RMS_NORM_BACK's. */
CPU_KERNEL(add_rms_norm_back)
{
    const struct hm_tensor *st = dst->src[1];
    const float *dh = CF32(dst->src[0]), *ss = CF32(st), *w = CF32(dst->src[2]);
    float *db = dst->src[3] ? F32(dst->src[3]) : NULL, *da = dst->src[4] ? F32(dst->src[4]) : NULL;
    float eps = hm_op_f32(dst, 0);
    bool round = dst->op_params[1], acc_b = dst->acc & 2, acc_a = dst->acc & 4;
    int64_t C = st->shape[st->n_dims - 1], N = hm_nrows(st);
    float *rstd = ex->ws;
    HM_ASSERT(ex->ws_bytes >= (size_t)N * sizeof(float));
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR(N * C))
    for (int64_t r = 0; r < N; r++) {
        float *ds = F32(dst) + r * C;
        rstd[r] = norm_back_row(dh + r * C, ss + r * C, w, ds, C, eps, dst->acc & 1);
        if (round)
#pragma omp simd
            for (int64_t j = 0; j < C; j++)
                ds[j] = hm_cpu_bf16_round(ds[j]);
        if (db) {
            float *y = db + r * C;
#pragma omp simd
            for (int64_t j = 0; j < C; j++)
                y[j] = acc_b ? y[j] + ds[j] : ds[j];
        }
        if (da) {
            float *y = da + r * C;
#pragma omp simd
            for (int64_t j = 0; j < C; j++)
                y[j] = acc_a ? y[j] + ds[j] : ds[j];
        }
    }
    if (dst->src[5])
        hm_cpu_colsum(dh, false, ss, rstd, F32(dst->src[5]), N, C, 1.0f, dst->acc & 8); /* dw */
    return HM_OK;
}
