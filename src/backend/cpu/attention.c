/*
 * attention.c - fused causal attention with grouped-query heads, and the KV-cache write.
 * q (B,T,NH,HD), k/v (B,S,NKV,HD), query head h reads kv head h / (NH/NKV), scale 1/sqrt(HD).
 * Query t is at position pos + t and attends keys 0..pos+t, so the same code serves training
 * (S = T, pos = 0) and decoding over a cache (S = T_max). Only the row log-sum-exp is saved;
 * backward recomputes each probability row (flash-attention style) instead of keeping a
 * (B, NH, T, T) tensor: at gpt2-small (T = 1024, NH = 12) that is 48 MiB per sequence per layer,
 * more than all the other activations of the layer, for ~25% more attention FLOPs.
 *
 * Document masking (packed training windows): an optional i32 doc_start (B, T) limits row t to
 * keys doc_start[b, t] .. pos + t, so packed documents never see each other. A block of rows
 * computes scores only from the smallest start of its rows, which makes packed windows cheaper.
 */
#include "backend/backend-shared.h"
#include "cpu-impl.h"

#include <cblas.h>

static enum hm_status geom(const struct hm_exec *ex, const struct hm_tensor *q,
                           const struct hm_tensor *k, const struct hm_tensor *doc,
                           struct hm_attn_geom *g)
{
    enum hm_status st = hm_attn_geom_init(ex, q, k, doc, g);
    if (st != HM_OK)
        return st;
    for (int64_t i = 0; g->doc && i < g->B * g->T; i++)
        if (g->doc[i] < 0 || g->doc[i] > g->pos + i % g->T)
            return hm_fail(HM_ERR_USAGE, "attention: document start %d of row %lld is outside 0..%lld",
                           g->doc[i], (long long)(i % g->T), (long long)(g->pos + i % g->T));
    return HM_OK;
}

/* First key row t of batch b may see. */
static inline int64_t row_start(const struct hm_attn_geom *g, int64_t b, int64_t t)
{
    return g->doc ? g->doc[b * g->T + t] : 0;
}

/* Smallest start of rows t0 .. t0+n-1: the block's scores cover keys [lo, pos + t0 + n). */
static int64_t block_start(const struct hm_attn_geom *g, int64_t b, int64_t t0, int64_t n)
{
    int64_t lo = row_start(g, b, t0);
    for (int64_t i = 1; i < n; i++)
        lo = HM_MIN(lo, row_start(g, b, t0 + i));
    return lo;
}

static inline float dot(const float *a, const float *b, int64_t n)
{
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/*
 * Work is cut into blocks of ATTN_ROWS query rows of one head; a block attends keys [0, L) with
 * L = pos + its last row + 1, so the causal mask wastes only the triangle of the diagonal block.
 * The score, P V and gradient products are single-threaded sgemm calls made from inside the
 * OpenMP region (the OpenMP build of OpenBLAS runs one thread when called in a parallel region),
 * and every block is computed whole by one thread: the result does not depend on the thread
 * count or on which thread runs which block, so blocks are handed out dynamically.
 */
enum { ATTN_ROWS = 64 };

size_t hm_cpu_attention_ws(const struct hm_tensor *node, int n_threads)
{
    if (node->op == HM_OP_ATTENTION && node->src[4])
        return hm_cpu_attention_rows_ws(node, n_threads);
    const struct hm_tensor *k = node->src[node->op == HM_OP_ATTENTION ? 1 : 2];
    size_t S = (size_t)k->shape[1], HD = (size_t)k->shape[3], R = ATTN_ROWS;
    size_t per = node->op == HM_OP_ATTENTION ? R * S : 2 * R * S + 2 * S * HD;
    return (size_t)n_threads * per * sizeof(float);
}

CPU_KERNEL(attention)
{
    if (dst->src[4]) /* per-row slots and positions: batched serving */
        return hm_cpu_attention_rows(ex, dst);
    const struct hm_tensor *qt = dst->src[0], *kt = dst->src[1], *vt = dst->src[2];
    float *lse = F32(dst->src[HM_ATTN_LSE]);
    struct hm_attn_geom g;
    enum hm_status st = geom(ex, qt, kt, dst->src[3], &g);
    if (st != HM_OK)
        return st;
    size_t per = (size_t)(ATTN_ROWS * g.S);
    int nt = hm_cpu_threads_for(ex, per * sizeof(float));
    int64_t n_chunks = (g.T + ATTN_ROWS - 1) / ATTN_ROWS, units = g.B * g.NH * n_chunks;
    int64_t qstride = g.NH * g.HD, kstride = g.NKV * g.HD;
#pragma omp parallel num_threads(nt) if (parallel : HM_CPU_PAR(g.B * g.NH * g.T * g.S * g.HD))
    {
        float *sc = (float *)ex->ws + (size_t)omp_get_thread_num() * per;
#pragma omp for schedule(dynamic)
        for (int64_t u = 0; u < units; u++) {
            int64_t ch = u % n_chunks, h = (u / n_chunks) % g.NH, b = u / (n_chunks * g.NH);
            int64_t kh = h / g.group, t0 = ch * ATTN_ROWS;
            int64_t n = t0 + ATTN_ROWS < g.T ? ATTN_ROWS : g.T - t0;
            int64_t lo = block_start(&g, b, t0, n), L = g.pos + t0 + n - lo; /* keys lo .. lo+L-1 */
            const float *q = CF32(qt) + ((b * g.T + t0) * g.NH + h) * g.HD;
            const float *k = CF32(kt) + ((b * g.S + lo) * g.NKV + kh) * g.HD;
            const float *v = CF32(vt) + ((b * g.S + lo) * g.NKV + kh) * g.HD;
            float *o = F32(dst) + ((b * g.T + t0) * g.NH + h) * g.HD;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)L, (int)g.HD, g.scale,
                        q, (int)qstride, k, (int)kstride, 0.0f, sc, (int)L);
            for (int64_t i = 0; i < n; i++) {
                float *p = sc + i * L;
                int64_t j0 = row_start(&g, b, t0 + i) - lo, Li = g.pos + t0 + i + 1 - lo;
                float m = -INFINITY;
#pragma omp simd reduction(max : m)
                for (int64_t j = j0; j < Li; j++)
                    m = hm_maxf(m, p[j]);
                float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
                for (int64_t j = j0; j < Li; j++) {
                    p[j] = hm_expf(p[j] - m);
                    sum += p[j];
                }
                float inv = 1.0f / sum;
#pragma omp simd
                for (int64_t j = j0; j < Li; j++)
                    p[j] *= inv;
                for (int64_t j = 0; j < j0; j++)
                    p[j] = 0.0f;
                for (int64_t j = Li; j < L; j++)
                    p[j] = 0.0f;
                lse[(b * g.NH + h) * g.T + t0 + i] = m + logf(sum);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)g.HD, (int)L, 1.0f,
                        sc, (int)L, v, (int)kstride, 0.0f, o, (int)qstride);
        }
    }
    return HM_OK;
}

/*
 * Per (b, kv head), one thread loops the heads of the group and the row blocks in order, so dk
 * and dv are accumulated in a fixed order. p = exp(s - lse), dp = dout v^T, D = dout . out,
 * ds = p (dp - D) scale; dq = ds k; dk += ds^T q; dv += p^T dout. dk and dv are accumulated
 * in per-thread (S, HD) scratch and written (or added) once at the end.
 */
CPU_KERNEL(attention_back)
{
    const struct hm_tensor *dot_ = dst->src[0], *qt = dst->src[1], *kt = dst->src[2];
    const struct hm_tensor *vt = dst->src[3], *ot = dst->src[4], *lt = dst->src[5];
    struct hm_tensor *dkt = dst->src[6], *dvt = dst->src[7];
    struct hm_attn_geom g;
    enum hm_status st = geom(ex, qt, kt, ot->src[3], &g); /* out is the forward node */
    if (st != HM_OK)
        return st;
    bool acc_q = dst->acc & 1, acc_k = dst->acc & 2, acc_v = dst->acc & 4;
    int64_t S = g.S, HD = g.HD, R = ATTN_ROWS;
    size_t per = (size_t)(2 * R * S + 2 * S * HD);
    int nt = hm_cpu_threads_for(ex, per * sizeof(float));
    int64_t units = g.B * g.NKV, Lall = g.pos + g.T;
    int64_t qstride = g.NH * HD, kstride = g.NKV * HD, n_chunks = (g.T + R - 1) / R;
#pragma omp parallel num_threads(nt) if (parallel : HM_CPU_PAR(g.B * g.NH * g.T * g.S * g.HD))
    {
        float *P = (float *)ex->ws + (size_t)omp_get_thread_num() * per;
        float *dP = P + R * S, *dK = dP + R * S, *dV = dK + S * HD;
#pragma omp for schedule(dynamic)
        for (int64_t u = 0; u < units; u++) {
            int64_t b = u / g.NKV, kh = u % g.NKV;
            const float *k = CF32(kt) + (b * S * g.NKV + kh) * HD;
            const float *v = CF32(vt) + (b * S * g.NKV + kh) * HD;
            memset(dK, 0, (size_t)(Lall * HD) * sizeof(float));
            memset(dV, 0, (size_t)(Lall * HD) * sizeof(float));
            for (int64_t h = kh * g.group; h < (kh + 1) * g.group; h++)
                for (int64_t ch = 0; ch < n_chunks; ch++) {
                    int64_t t0 = ch * R, n = t0 + R < g.T ? R : g.T - t0;
                    int64_t lo = block_start(&g, b, t0, n), L = g.pos + t0 + n - lo;
                    int64_t row0 = (b * g.T + t0) * g.NH + h;
                    const float *q = CF32(qt) + row0 * HD, *dout = CF32(dot_) + row0 * HD;
                    const float *o = CF32(ot) + row0 * HD;
                    const float *lse = CF32(lt) + (b * g.NH + h) * g.T + t0;
                    const float *kl = k + lo * kstride, *vl = v + lo * kstride;
                    float *dq = F32(dst) + row0 * HD;
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)L, (int)HD,
                                g.scale, q, (int)qstride, kl, (int)kstride, 0.0f, P, (int)L);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)L, (int)HD,
                                1.0f, dout, (int)qstride, vl, (int)kstride, 0.0f, dP, (int)L);
                    for (int64_t i = 0; i < n; i++) {
                        float *p = P + i * L, *dp = dP + i * L;
                        int64_t j0 = row_start(&g, b, t0 + i) - lo, Li = g.pos + t0 + i + 1 - lo;
                        float D = dot(dout + i * qstride, o + i * qstride, HD), l = lse[i];
#pragma omp simd
                        for (int64_t j = j0; j < Li; j++) {
                            float pj = hm_expf(p[j] - l);
                            p[j] = pj;
                            dp[j] = pj * (dp[j] - D) * g.scale; /* ds_j */
                        }
                        for (int64_t j = 0; j < j0; j++)
                            p[j] = dp[j] = 0.0f;
                        for (int64_t j = Li; j < L; j++)
                            p[j] = dp[j] = 0.0f;
                    }
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)HD, (int)L,
                                1.0f, dP, (int)L, kl, (int)kstride, acc_q ? 1.0f : 0.0f, dq,
                                (int)qstride);
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)L, (int)HD, (int)n,
                                1.0f, dP, (int)L, q, (int)qstride, 1.0f, dK + lo * HD, (int)HD);
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)L, (int)HD, (int)n,
                                1.0f, P, (int)L, dout, (int)qstride, 1.0f, dV + lo * HD, (int)HD);
                }
            float *dkb = F32(dkt) + (b * S * g.NKV + kh) * HD;
            float *dvb = F32(dvt) + (b * S * g.NKV + kh) * HD;
            for (int64_t j = 0; j < S; j++) {
                float *dk = dkb + j * kstride, *dv = dvb + j * kstride;
                const float *a = dK + j * HD, *c = dV + j * HD;
                bool in = j < Lall;
                for (int64_t d = 0; d < HD; d++) {
                    float x = in ? a[d] : 0.0f, y = in ? c[d] : 0.0f;
                    dk[d] = acc_k ? dk[d] + x : x;
                    dv[d] = acc_v ? dv[d] + y : y;
                }
            }
        }
    }
    return HM_OK;
}

CPU_KERNEL(kv_write)
{
    if (dst->src[2])
        return hm_cpu_kv_write_rows(ex, dst);
    struct hm_kv_write_geom g;
    enum hm_status st = hm_kv_write_geom_init(ex, dst, &g);
    if (st != HM_OK)
        return st;
    char *cache = (char *)dst->data;
    const char *x = (const char *)g.x->data;
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR(g.B * g.T * g.row))
    for (int64_t bt = 0; bt < g.B * g.T; bt++) {
        int64_t b = bt / g.T, t = bt % g.T;
        memcpy(cache + (size_t)((b * g.S + g.pos + t) * g.row) * g.es,
               x + (size_t)(bt * g.row) * g.es, (size_t)g.row * g.es);
    }
    return HM_OK;
}
