/*
 * attention-rows.c - attention and the KV-cache write of batched serving (hm_attention_at,
 * hm_kv_write_at): the rows of q are unrelated tokens, row r in cache slot slot[r] at position
 * pos[r]; the cache is (n_slots, S, NKV, HD). The write runs before the attention node, so a
 * prompt chunk's row sees the chunk's earlier rows and never its later ones (they sit at higher
 * positions of the same slot).
 *
 * Batch invariance: each (row, head) is computed whole by one thread in a fixed order - scores
 * as the fixed-order dot products of matmul-rows.c, the max and the sum in key order, the output
 * accumulated key by key - so a token's result depends only on its own row and its slot's cache,
 * never on which other rows share the call or on the thread count. A row with slot -1 is
 * padding: not written, output 0.
 */
#include "cpu-impl.h"

/* Scores of q against keys 0 .. L-1 (rows kstride apart), four keys per pass with the fixed-order
 * dot product of matmul-rows.c; returns their max. */
static float scores(const float *q, const float *k, int64_t kstride, int64_t L, int64_t HD,
                    float scale, float *p)
{
    float m = -INFINITY;
    for (int64_t j0 = 0; j0 < L; j0 += 4) {
        const float *kr[4];
        float d[4];
        for (int i = 0; i < 4; i++) /* past the last key: a duplicate, dropped */
            kr[i] = k + HM_MIN(j0 + i, L - 1) * kstride;
        hm_cpu_dots4(q, kr, HD, d);
        for (int i = 0; i < 4 && j0 + i < L; i++) {
            p[j0 + i] = scale * d[i];
            m = hm_maxf(m, p[j0 + i]);
        }
    }
    return m;
}

/* o = sum over keys j in order of p[j] v[j]: four keys per pass over o, the same adds in the same
 * order as one key at a time. */
static void weighted_sum(const float *p, const float *v, int64_t kstride, int64_t L, int64_t HD,
                         float *o)
{
    int64_t j = 0;
    for (; j + 4 <= L; j += 4) {
        const float *v0 = v + j * kstride, *v1 = v0 + kstride;
        const float *v2 = v1 + kstride, *v3 = v2 + kstride;
        float p0 = p[j], p1 = p[j + 1], p2 = p[j + 2], p3 = p[j + 3];
#pragma omp simd
        for (int64_t d = 0; d < HD; d++) {
            float acc = o[d];
            acc += p0 * v0[d];
            acc += p1 * v1[d];
            acc += p2 * v2[d];
            acc += p3 * v3[d];
            o[d] = acc;
        }
    }
    for (; j < L; j++) {
        const float *vj = v + j * kstride;
#pragma omp simd
        for (int64_t d = 0; d < HD; d++)
            o[d] += p[j] * vj[d];
    }
}

struct rows_geom {
    int64_t R, NH, HD, NS, S, NKV, group;
    const int32_t *slot, *pos;
};

/* Shapes and the check that every row's slot and position lie inside the cache. */
static enum hm_status rows_geom_init(const struct hm_tensor *x, const struct hm_tensor *cache,
                                     const struct hm_tensor *slot, const struct hm_tensor *pos,
                                     const char *op, struct rows_geom *g)
{
    g->R = x->shape[0] * x->shape[1], g->NH = x->shape[2], g->HD = x->shape[3];
    g->NS = cache->shape[0], g->S = cache->shape[1], g->NKV = cache->shape[2];
    g->group = g->NH / g->NKV;
    g->slot = slot->data, g->pos = pos->data;
    for (int64_t r = 0; r < g->R; r++) {
        int32_t s = g->slot[r], p = g->pos[r];
        if (s < -1 || s >= g->NS || (s >= 0 && (p < 0 || p >= g->S)))
            return hm_fail(HM_ERR_USAGE, "%s: row %lld has slot %d, position %d: outside the "
                           "cache's %lld slots of %lld positions", op, (long long)r, s, p,
                           (long long)g->NS, (long long)g->S);
    }
    return HM_OK;
}

size_t hm_cpu_attention_rows_ws(const struct hm_tensor *node, int n_threads)
{
    return (size_t)n_threads * (size_t)node->src[1]->shape[1] * sizeof(float);
}

enum hm_status hm_cpu_attention_rows(const struct hm_exec *ex, struct hm_tensor *dst)
{
    const struct hm_tensor *qt = dst->src[0], *kt = dst->src[1], *vt = dst->src[2];
    struct rows_geom g;
    enum hm_status st = rows_geom_init(qt, kt, dst->src[4], dst->src[5], "attention", &g);
    if (st != HM_OK)
        return st;
    float *lse = F32(dst->src[HM_ATTN_LSE]);
    float scale = 1.0f / sqrtf((float)g.HD);
    int64_t T = qt->shape[1];
    int nt = hm_cpu_threads_for(ex, (size_t)g.S * sizeof(float));
    int64_t units = g.R * g.NH, kstride = g.NKV * g.HD;
#pragma omp parallel num_threads(nt) if (parallel : HM_CPU_PAR(units * g.S * g.HD))
    {
        float *p = (float *)ex->ws + (size_t)omp_get_thread_num() * (size_t)g.S;
#pragma omp for schedule(dynamic, 4)
        for (int64_t u = 0; u < units; u++) {
            int64_t r = u / g.NH, h = u % g.NH, kh = h / g.group;
            const float *q = CF32(qt) + (r * g.NH + h) * g.HD;
            float *o = F32(dst) + (r * g.NH + h) * g.HD;
            float *l = lse + ((r / T) * g.NH + h) * T + r % T; /* lse is (B, NH, T) */
            int32_t s = g.slot[r];
            memset(o, 0, (size_t)g.HD * sizeof(float));
            if (s < 0) {
                *l = 0.0f;
                continue;
            }
            int64_t L = (int64_t)g.pos[r] + 1;
            const float *k = CF32(kt) + (s * g.S * g.NKV + kh) * g.HD;
            const float *v = CF32(vt) + (s * g.S * g.NKV + kh) * g.HD;
            float m = scores(q, k, kstride, L, g.HD, scale, p);
            float sum = 0.0f;
            for (int64_t j = 0; j < L; j++) {
                p[j] = hm_expf(p[j] - m);
                sum += p[j];
            }
            weighted_sum(p, v, kstride, L, g.HD, o);
            float inv = 1.0f / sum;
#pragma omp simd
            for (int64_t d = 0; d < g.HD; d++)
                o[d] *= inv;
            *l = m + logf(sum);
        }
    }
    return HM_OK;
}

enum hm_status hm_cpu_kv_write_rows(const struct hm_exec *ex, struct hm_tensor *dst)
{
    const struct hm_tensor *x = dst->src[1];
    struct rows_geom g;
    enum hm_status st = rows_geom_init(x, dst, dst->src[2], dst->src[3], "kv_write", &g);
    if (st != HM_OK)
        return st;
    size_t row = (size_t)(g.NH * g.HD) * hm_dtype_size(x->type); /* x's heads are the cache's */
    char *cache = (char *)dst->data;
    const char *src = (const char *)x->data;
    for (int64_t r = 0; r < g.R; r++)
        if (g.slot[r] >= 0)
            memcpy(cache + ((size_t)g.slot[r] * (size_t)g.S + (size_t)g.pos[r]) * row,
                   src + (size_t)r * row, row);
    return HM_OK;
}
