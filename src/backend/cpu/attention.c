/*
 * attention.c - fused causal attention with grouped-query heads, and the KV-cache write.
 * q (B,T,NH,HD), k/v (B,S,NKV,HD), query head h reads kv head h / (NH/NKV), scale 1/sqrt(HD).
 * Query t is at position pos + t and attends keys 0..pos+t, so the same code serves training
 * (S = T, pos = 0) and decoding over a cache (S = T_max). Only the row log-sum-exp is saved;
 * backward recomputes each probability row (flash-attention style) instead of keeping a
 * (B, NH, T, T) tensor, which at gpt2-small sizes would be 12x the rest of the activations.
 */
#include "cpu-impl.h"

struct attn_geom {
    int64_t B, T, NH, HD, S, NKV, group, pos;
    float scale;
};

static enum hm_status geom(const struct hm_exec *ex, const struct hm_tensor *q,
                           const struct hm_tensor *k, struct attn_geom *g)
{
    g->B = q->shape[0], g->T = q->shape[1], g->NH = q->shape[2], g->HD = q->shape[3];
    g->S = k->shape[1], g->NKV = k->shape[2], g->group = g->NH / g->NKV;
    g->pos = ex->rt->pos;
    g->scale = 1.0f / sqrtf((float)g->HD);
    if (g->pos < 0 || g->pos + g->T > g->S)
        return hm_fail(HM_ERR_USAGE, "attention: positions %lld..%lld exceed the %lld keys available",
                       (long long)g->pos, (long long)(g->pos + g->T - 1), (long long)g->S);
    return HM_OK;
}

static inline float dot(const float *a, const float *b, int64_t n)
{
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

CPU_KERNEL(attention)
{
    const struct hm_tensor *qt = dst->src[0], *kt = dst->src[1], *vt = dst->src[2];
    float *lse = F32(dst->src[3]);
    struct attn_geom g;
    enum hm_status st = geom(ex, qt, kt, &g);
    if (st != HM_OK)
        return st;
    int nt = hm_cpu_threads_for(ex, (size_t)g.S * sizeof(float));
    int64_t units = g.B * g.NH * g.T;
#pragma omp parallel num_threads(nt) if (parallel : HM_CPU_PAR(units * g.S * g.HD))
    {
        float *sc = (float *)ex->ws + (size_t)omp_get_thread_num() * (size_t)g.S;
#pragma omp for schedule(static)
        for (int64_t u = 0; u < units; u++) {
            int64_t t = u % g.T, h = (u / g.T) % g.NH, b = u / (g.T * g.NH), kh = h / g.group;
            int64_t L = g.pos + t + 1;
            const float *q = CF32(qt) + ((b * g.T + t) * g.NH + h) * g.HD;
            const float *kb = CF32(kt) + (b * g.S * g.NKV + kh) * g.HD;
            const float *vb = CF32(vt) + (b * g.S * g.NKV + kh) * g.HD;
            int64_t kstride = g.NKV * g.HD;
            float m = -INFINITY;
            for (int64_t j = 0; j < L; j++) {
                float s = g.scale * dot(q, kb + j * kstride, g.HD);
                sc[j] = s;
                m = s > m ? s : m;
            }
            float sum = 0.0f;
            for (int64_t j = 0; j < L; j++) {
                sc[j] = expf(sc[j] - m);
                sum += sc[j];
            }
            float *o = F32(dst) + ((b * g.T + t) * g.NH + h) * g.HD;
            for (int64_t d = 0; d < g.HD; d++)
                o[d] = 0.0f;
            for (int64_t j = 0; j < L; j++) {
                const float *v = vb + j * kstride;
                float p = sc[j];
#pragma omp simd
                for (int64_t d = 0; d < g.HD; d++)
                    o[d] += p * v[d];
            }
            float inv = 1.0f / sum;
#pragma omp simd
            for (int64_t d = 0; d < g.HD; d++)
                o[d] *= inv;
            lse[(b * g.NH + h) * g.T + t] = m + logf(sum);
        }
    }
    return HM_OK;
}

/*
 * Per (b, kv head): loop the heads of the group and the query rows in order, so dk and dv are
 * accumulated by one thread in a fixed order. p_j = exp(s_j - lse), dp_j = dout . v_j,
 * ds_j = p_j (dp_j - dout . out); dq = scale sum ds_j k_j; dk_j += scale ds_j q; dv_j += p_j dout.
 */
CPU_KERNEL(attention_back)
{
    const struct hm_tensor *dot_ = dst->src[0], *qt = dst->src[1], *kt = dst->src[2];
    const struct hm_tensor *vt = dst->src[3], *ot = dst->src[4], *lt = dst->src[5];
    struct hm_tensor *dkt = dst->src[6], *dvt = dst->src[7];
    struct attn_geom g;
    enum hm_status st = geom(ex, qt, kt, &g);
    if (st != HM_OK)
        return st;
    bool acc_q = dst->acc & 1, acc_k = dst->acc & 2, acc_v = dst->acc & 4;
    int nt = hm_cpu_threads_for(ex, 2 * (size_t)g.S * sizeof(float));
    int64_t units = g.B * g.NKV, kstride = g.NKV * g.HD;
#pragma omp parallel num_threads(nt) if (parallel : HM_CPU_PAR(g.B * g.NH * g.T * g.S * g.HD))
    {
        float *p = (float *)ex->ws + 2 * (size_t)omp_get_thread_num() * (size_t)g.S;
        float *dp = p + g.S;
#pragma omp for schedule(static)
        for (int64_t u = 0; u < units; u++) {
            int64_t b = u / g.NKV, kh = u % g.NKV;
            const float *kb = CF32(kt) + (b * g.S * g.NKV + kh) * g.HD;
            const float *vb = CF32(vt) + (b * g.S * g.NKV + kh) * g.HD;
            float *dkb = F32(dkt) + (b * g.S * g.NKV + kh) * g.HD;
            float *dvb = F32(dvt) + (b * g.S * g.NKV + kh) * g.HD;
            for (int64_t j = 0; j < g.S; j++) {
                if (!acc_k)
                    memset(dkb + j * kstride, 0, (size_t)g.HD * sizeof(float));
                if (!acc_v)
                    memset(dvb + j * kstride, 0, (size_t)g.HD * sizeof(float));
            }
            for (int64_t h = kh * g.group; h < (kh + 1) * g.group; h++)
                for (int64_t t = 0; t < g.T; t++) {
                    int64_t row = (b * g.T + t) * g.NH + h, L = g.pos + t + 1;
                    const float *q = CF32(qt) + row * g.HD, *dout = CF32(dot_) + row * g.HD;
                    const float *o = CF32(ot) + row * g.HD;
                    float lse = CF32(lt)[(b * g.NH + h) * g.T + t];
                    float D = dot(dout, o, g.HD);
                    for (int64_t j = 0; j < L; j++) {
                        p[j] = expf(g.scale * dot(q, kb + j * kstride, g.HD) - lse);
                        dp[j] = dot(dout, vb + j * kstride, g.HD);
                    }
                    float *dq = F32(dst) + row * g.HD;
                    if (!acc_q)
                        memset(dq, 0, (size_t)g.HD * sizeof(float));
                    for (int64_t j = 0; j < L; j++) {
                        float ds = p[j] * (dp[j] - D) * g.scale, pj = p[j];
                        const float *k = kb + j * kstride;
                        float *dk = dkb + j * kstride, *dv = dvb + j * kstride;
#pragma omp simd
                        for (int64_t d = 0; d < g.HD; d++) {
                            dq[d] += ds * k[d];
                            dk[d] += ds * q[d];
                            dv[d] += pj * dout[d];
                        }
                    }
                }
        }
    }
    return HM_OK;
}

CPU_KERNEL(kv_write)
{
    const struct hm_tensor *x = dst->src[1];
    int64_t B = x->shape[0], T = x->shape[1], S = dst->shape[1];
    int64_t row = x->shape[2] * x->shape[3], pos = ex->rt->pos;
    if (pos < 0 || pos + T > S)
        return hm_fail(HM_ERR_USAGE, "kv_write: positions %lld..%lld exceed the cache length %lld",
                       (long long)pos, (long long)(pos + T - 1), (long long)S);
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR(B * T * row))
    for (int64_t bt = 0; bt < B * T; bt++) {
        int64_t b = bt / T, t = bt % T;
        memcpy(F32(dst) + (b * S + pos + t) * row, CF32(x) + bt * row, (size_t)row * sizeof(float));
    }
    return HM_OK;
}
