/*
 * attention.c - fused causal attention with grouped-query heads, and the KV-cache write.
 * q (B,T,NH,HD), k/v (B,S,NKV,HD), query head h reads kv head h / (NH/NKV), scale 1/sqrt(HD).
 * Query t is at position pos + t and attends keys 0..pos+t, so the same code serves training
 * (S = T, pos = 0) and decoding over a cache (S = T_max). Only the row log-sum-exp is saved;
 * backward recomputes each probability row (flash-attention style) instead of keeping a
 * (B, NH, T, T) tensor: at gpt2-small (T = 1024, NH = 12) that is 48 MiB per sequence per layer,
 * more than all the other activations of the layer, for ~25% more attention FLOPs.
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

/* kT[d * ld + j] = k[j][d] for j < n: keys become contiguous so score loops vectorise over keys. */
static void transpose_keys(float *kT, int64_t ld, const float *k, int64_t kstride, int64_t n, int64_t HD)
{
    for (int64_t j = 0; j < n; j++)
        for (int64_t d = 0; d < HD; d++)
            kT[d * ld + j] = k[j * kstride + d];
}

/* s[j] = sum_d qs[d] kT[d][j] for j < L, summed in d order (the same for any L, so a position
 * scores the same in a full pass and in cached decoding). */
static void scores(float *s, const float *qs, const float *kT, int64_t ld, int64_t L, int64_t HD)
{
    for (int64_t j = 0; j < L; j++)
        s[j] = 0.0f;
    for (int64_t d = 0; d < HD; d++) {
        const float *kr = kT + d * ld;
        float qd = qs[d];
#pragma omp simd
        for (int64_t j = 0; j < L; j++)
            s[j] += qd * kr[j];
    }
}

enum { ATTN_ROWS = 32 }; /* query rows per forward work unit */

size_t hm_cpu_attention_ws(const struct hm_tensor *node, int n_threads)
{
    const struct hm_tensor *k = node->src[node->op == HM_OP_ATTENTION ? 1 : 2];
    size_t S = (size_t)k->shape[1], HD = (size_t)k->shape[3];
    size_t per = node->op == HM_OP_ATTENTION ? S * HD + S + HD : 4 * S * HD + 2 * S + HD;
    return (size_t)n_threads * per * sizeof(float);
}

CPU_KERNEL(attention)
{
    const struct hm_tensor *qt = dst->src[0], *kt = dst->src[1], *vt = dst->src[2];
    float *lse = F32(dst->src[3]);
    struct attn_geom g;
    enum hm_status st = geom(ex, qt, kt, &g);
    if (st != HM_OK)
        return st;
    size_t per = (size_t)(g.S * g.HD + g.S + g.HD);
    int nt = hm_cpu_threads_for(ex, per * sizeof(float));
    int64_t n_chunks = (g.T + ATTN_ROWS - 1) / ATTN_ROWS, units = g.B * g.NH * n_chunks;
    int64_t kstride = g.NKV * g.HD;
#pragma omp parallel num_threads(nt) if (parallel : HM_CPU_PAR(g.B * g.NH * g.T * g.S * g.HD))
    {
        float *kT = (float *)ex->ws + (size_t)omp_get_thread_num() * per;
        float *sc = kT + g.S * g.HD, *qs = sc + g.S;
#pragma omp for schedule(static)
        for (int64_t u = 0; u < units; u++) {
            int64_t ch = u % n_chunks, h = (u / n_chunks) % g.NH, b = u / (n_chunks * g.NH);
            int64_t kh = h / g.group, t0 = ch * ATTN_ROWS;
            int64_t t1 = t0 + ATTN_ROWS < g.T ? t0 + ATTN_ROWS : g.T, Lmax = g.pos + t1;
            const float *kb = CF32(kt) + (b * g.S * g.NKV + kh) * g.HD;
            const float *vb = CF32(vt) + (b * g.S * g.NKV + kh) * g.HD;
            transpose_keys(kT, Lmax, kb, kstride, Lmax, g.HD);
            for (int64_t t = t0; t < t1; t++) {
                int64_t L = g.pos + t + 1, row = (b * g.T + t) * g.NH + h;
                const float *q = CF32(qt) + row * g.HD;
                for (int64_t d = 0; d < g.HD; d++)
                    qs[d] = q[d] * g.scale;
                scores(sc, qs, kT, Lmax, L, g.HD);
                float m = -INFINITY;
#pragma omp simd reduction(max : m)
                for (int64_t j = 0; j < L; j++)
                    m = fmaxf(m, sc[j]);
                float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
                for (int64_t j = 0; j < L; j++) {
                    sc[j] = hm_expf(sc[j] - m);
                    sum += sc[j];
                }
                float *o = F32(dst) + row * g.HD;
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
    }
    return HM_OK;
}

/*
 * Per (b, kv head): loop the heads of the group and the query rows in order, so dk and dv are
 * accumulated by one thread in a fixed order. p_j = exp(s_j - lse), dp_j = dout . v_j,
 * ds_j = p_j (dp_j - dout . out); dq = scale sum ds_j k_j; dk_j += scale ds_j q; dv_j += p_j dout.
 * K, V and their gradients are held transposed (HD, S) in scratch so every loop over keys is a
 * contiguous vector loop.
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
    int64_t S = g.S, HD = g.HD;
    size_t per = (size_t)(4 * S * HD + 2 * S + HD);
    int nt = hm_cpu_threads_for(ex, per * sizeof(float));
    int64_t units = g.B * g.NKV, kstride = g.NKV * HD, Lall = g.pos + g.T;
#pragma omp parallel num_threads(nt) if (parallel : HM_CPU_PAR(g.B * g.NH * g.T * g.S * g.HD))
    {
        float *kT = (float *)ex->ws + (size_t)omp_get_thread_num() * per;
        float *vT = kT + S * HD, *dkT = vT + S * HD, *dvT = dkT + S * HD;
        float *p = dvT + S * HD, *dp = p + S, *qs = dp + S;
#pragma omp for schedule(static)
        for (int64_t u = 0; u < units; u++) {
            int64_t b = u / g.NKV, kh = u % g.NKV;
            const float *kb = CF32(kt) + (b * S * g.NKV + kh) * HD;
            const float *vb = CF32(vt) + (b * S * g.NKV + kh) * HD;
            float *dkb = F32(dkt) + (b * S * g.NKV + kh) * HD;
            float *dvb = F32(dvt) + (b * S * g.NKV + kh) * HD;
            transpose_keys(kT, Lall, kb, kstride, Lall, HD);
            transpose_keys(vT, Lall, vb, kstride, Lall, HD);
            memset(dkT, 0, (size_t)(HD * Lall) * sizeof(float));
            memset(dvT, 0, (size_t)(HD * Lall) * sizeof(float));
            for (int64_t h = kh * g.group; h < (kh + 1) * g.group; h++)
                for (int64_t t = 0; t < g.T; t++) {
                    int64_t row = (b * g.T + t) * g.NH + h, L = g.pos + t + 1;
                    const float *q = CF32(qt) + row * HD, *dout = CF32(dot_) + row * HD;
                    const float *o = CF32(ot) + row * HD;
                    float lse = CF32(lt)[(b * g.NH + h) * g.T + t];
                    float D = dot(dout, o, HD);
                    for (int64_t d = 0; d < HD; d++)
                        qs[d] = q[d] * g.scale;
                    scores(p, qs, kT, Lall, L, HD);
                    scores(dp, dout, vT, Lall, L, HD);
#pragma omp simd
                    for (int64_t j = 0; j < L; j++) {
                        float pj = hm_expf(p[j] - lse);
                        p[j] = pj;
                        dp[j] = pj * (dp[j] - D) * g.scale; /* ds_j */
                    }
                    float *dq = F32(dst) + row * HD;
                    for (int64_t d = 0; d < HD; d++) {
                        float v = dot(dp, kT + d * Lall, L);
                        dq[d] = acc_q ? dq[d] + v : v;
                        float qd = q[d], gd = dout[d];
                        float *dkr = dkT + d * Lall, *dvr = dvT + d * Lall;
#pragma omp simd
                        for (int64_t j = 0; j < L; j++) {
                            dkr[j] += dp[j] * qd;
                            dvr[j] += p[j] * gd;
                        }
                    }
                }
            for (int64_t j = 0; j < S; j++) {
                float *dk = dkb + j * kstride, *dv = dvb + j * kstride;
                for (int64_t d = 0; d < HD; d++) {
                    float a = j < Lall ? dkT[d * Lall + j] : 0.0f;
                    float c = j < Lall ? dvT[d * Lall + j] : 0.0f;
                    dk[d] = acc_k ? dk[d] + a : a;
                    dv[d] = acc_v ? dv[d] + c : c;
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
