/*
 * rope.c - rotary position embedding, half-split layout (GPT-NeoX "rotate_half"):
 *   inv_freq[k] = theta^(-2k/HD), k < HD/2; angle = (pos + t) * inv_freq[k], or pos[b*T + t]
 *   when a position per row is given (batched serving)
 *   out[k] = x[k] cos - x[k+HD/2] sin,  out[k+HD/2] = x[k+HD/2] cos + x[k] sin
 * Angles and cos/sin are computed in double and rounded once, so a position gets the same
 * factors whether it is reached by a full pass or by KV-cache decoding. Backward rotates by -angle.
 */
#include "cpu-impl.h"

static enum hm_status rope(const struct hm_exec *ex, struct hm_tensor *dst, float sign)
{
    const struct hm_tensor *xt = dst->src[0];
    int64_t B = xt->shape[0], T = xt->shape[1], H = xt->shape[2], HD = xt->shape[3], half = HD / 2;
    double theta = hm_op_f32(dst, 0);
    int64_t pos = ex->rt->pos;
    const int32_t *row_pos = dst->src[1] ? dst->src[1]->data : NULL; /* per row (serving) */
    int64_t R = row_pos ? B * T : T; /* rows of the cos/sin tables */
    bool acc = dst->acc & 1;
    float *cs = ex->ws, *sn = cs + R * half;
    HM_ASSERT(ex->ws_bytes >= (size_t)(2 * R * half) * sizeof(float));
    /* One pow per frequency, not one per (row, frequency): the same double either way, and pow
     * was a tenth of a small model's serving step. */
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR(R * half * 64))
    for (int64_t k = 0; k < half; k++) {
        double inv_freq = pow(theta, -2.0 * (double)k / (double)HD);
        for (int64_t t = 0; t < R; t++) {
            int64_t p = row_pos ? row_pos[t] : pos + t;
            double ang = (double)p * inv_freq;
            cs[t * half + k] = (float)cos(ang);
            sn[t * half + k] = sign * (float)sin(ang);
        }
    }
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR(B * T * H * HD))
    for (int64_t bt = 0; bt < B * T; bt++) {
        const float *c = cs + (bt % R) * half, *s = sn + (bt % R) * half;
        for (int64_t h = 0; h < H; h++) {
            const float *x = CF32(xt) + (bt * H + h) * HD;
            float *y = F32(dst) + (bt * H + h) * HD;
#pragma omp simd
            for (int64_t k = 0; k < half; k++) {
                float x1 = x[k], x2 = x[k + half];
                float o1 = x1 * c[k] - x2 * s[k], o2 = x2 * c[k] + x1 * s[k];
                y[k] = acc ? y[k] + o1 : o1;
                y[k + half] = acc ? y[k + half] + o2 : o2;
            }
        }
    }
    return HM_OK;
}

CPU_KERNEL(rope)
{
    return rope(ex, dst, 1.0f);
}

CPU_KERNEL(rope_back)
{
    return rope(ex, dst, -1.0f);
}
