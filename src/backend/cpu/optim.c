/*
 * optim.c - optimizer and reduction primitives over f32 ranges: fused AdamW (decoupled weight
 * decay, bias correction in double), sum of squares, scaling and the finiteness check. The sum
 * of squares uses a fixed number of blocks, each summed in double over 16 interleaved lanes in a
 * fixed order, then the block sums in order: the result is the same for any thread count.
 */
#include "backend/backend-shared.h"
#include "cpu-impl.h"

enum hm_status hm_cpu_adamw(struct hm_backend *be, float *p, const float *g, float *m, float *v,
                            size_t n, const struct hm_adamw_params *hp)
{
    float b1 = hp->beta1, b2 = hp->beta2, lr = hp->lr, eps = hp->eps, wd = hp->weight_decay;
    float bc1 = (float)(1.0 - pow((double)b1, (double)hp->t));
    float bc2 = (float)(1.0 - pow((double)b2, (double)hp->t));
    float gs = hp->grad_scale;
#pragma omp parallel for simd schedule(static) if (parallel : HM_CPU_PAR((int64_t)n))
    for (size_t i = 0; i < n; i++) {
        hm_adamw_elem(&p[i], g[i], &m[i], &v[i], lr, b1, b2, eps, wd, bc1, bc2, gs);
    }
    return HM_OK;
}

enum { N_BLOCKS = 256, SUM_LANES = 16 };

enum hm_status hm_cpu_sumsq(struct hm_backend *be, const float *x, size_t n, double *out)
{
    double part[N_BLOCKS];
    size_t bs = (n + N_BLOCKS - 1) / N_BLOCKS;
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR((int64_t)n))
    for (int k = 0; k < N_BLOCKS; k++) {
        size_t lo = (size_t)k * bs, hi = lo + bs < n ? lo + bs : n;
        /* SUM_LANES interleaved partial sums (element i goes to lane i % SUM_LANES of its block),
         * added in lane order: a fixed order that vectorises, unlike one serial chain of double
         * adds (~4 cycles per element). */
        double lane[SUM_LANES] = {0};
        size_t i = lo;
        for (; i + SUM_LANES <= hi; i += SUM_LANES)
#pragma omp simd
            for (int l = 0; l < SUM_LANES; l++)
                lane[l] += (double)x[i + l] * (double)x[i + l];
        for (int l = 0; i < hi; i++, l++)
            lane[l] += (double)x[i] * (double)x[i];
        double s = 0.0;
        for (int l = 0; l < SUM_LANES; l++)
            s += lane[l];
        part[k] = s;
    }
    double s = 0.0;
    for (int k = 0; k < N_BLOCKS; k++)
        s += part[k];
    *out = s;
    return HM_OK;
}

enum hm_status hm_cpu_scale_range(struct hm_backend *be, float *x, size_t n, float s)
{
#pragma omp parallel for simd schedule(static) if (parallel : HM_CPU_PAR((int64_t)n))
    for (size_t i = 0; i < n; i++)
        x[i] *= s;
    return HM_OK;
}

enum hm_status hm_cpu_is_finite(struct hm_backend *be, const float *x, size_t n, bool *out)
{
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if (parallel : HM_CPU_PAR((int64_t)n))
    for (size_t i = 0; i < n; i++)
        bad |= !isfinite(x[i]);
    *out = !bad;
    return HM_OK;
}
