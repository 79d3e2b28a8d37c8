/*
 * norm.c - RMSNorm: y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps) (eps inside the sqrt),
 * over the last dim. Backward gives dx per row and dw = sum_rows dy * x * rstd; dw is reduced
 * per column chunk over rows in order (double), independent of the thread count. rstd is kept in
 * the workspace between the two passes.
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

CPU_KERNEL(rms_norm)
{
    const struct hm_tensor *xt = dst->src[0];
    const float *w = CF32(dst->src[1]);
    float eps = hm_op_f32(dst, 0);
    int64_t C = xt->shape[xt->n_dims - 1], N = hm_nrows(xt);
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR(N * C))
    for (int64_t r = 0; r < N; r++) {
        const float *x = CF32(xt) + r * C;
        float *y = F32(dst) + r * C;
        float rs = row_rstd(x, C, eps);
#pragma omp simd
        for (int64_t j = 0; j < C; j++)
            y[j] = x[j] * rs * w[j];
    }
    return HM_OK;
}

CPU_KERNEL(rms_norm_back)
{
    const struct hm_tensor *xt = dst->src[1];
    const float *dy = CF32(dst->src[0]), *xs = CF32(xt), *w = CF32(dst->src[2]);
    float *dw = dst->src[3] ? F32(dst->src[3]) : NULL;
    float eps = hm_op_f32(dst, 0);
    int64_t C = xt->shape[xt->n_dims - 1], N = hm_nrows(xt);
    bool acc_x = dst->acc & 1, acc_w = dst->acc & 2;
    float *rstd = ex->ws;
    HM_ASSERT(ex->ws_bytes >= (size_t)N * sizeof(float));
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR(N * C))
    for (int64_t r = 0; r < N; r++) {
        const float *x = xs + r * C, *d = dy + r * C;
        float *dx = F32(dst) + r * C;
        float rs = row_rstd(x, C, eps);
        rstd[r] = rs;
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int64_t j = 0; j < C; j++)
            dot += d[j] * w[j] * x[j];
        float k = rs * rs * rs * dot / (float)C;
#pragma omp simd
        for (int64_t j = 0; j < C; j++) {
            float v = rs * w[j] * d[j] - k * x[j];
            dx[j] = acc_x ? dx[j] + v : v;
        }
    }
    if (!dw)
        return HM_OK;
    enum { W = 64 };
    int64_t n_chunks = (C + W - 1) / W;
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR(N * C))
    for (int64_t ch = 0; ch < n_chunks; ch++) {
        int64_t c0 = ch * W, wd = C - c0 < W ? C - c0 : W;
        double sum[W] = {0};
        for (int64_t r = 0; r < N; r++) {
            const float *x = xs + r * C + c0, *d = dy + r * C + c0;
            float rs = rstd[r];
#pragma omp simd
            for (int64_t j = 0; j < wd; j++)
                sum[j] += d[j] * x[j] * rs;
        }
        for (int64_t j = 0; j < wd; j++)
            dw[c0 + j] = acc_w ? dw[c0 + j] + (float)sum[j] : (float)sum[j];
    }
    return HM_OK;
}
