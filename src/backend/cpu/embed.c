/*
 * embed.c - token embedding lookup and its backward (scatter-add into the weight gradient).
 * Backward splits the embedding columns among threads and walks the tokens in order, so the sum
 * for a repeated token is formed in a fixed order whatever the thread count. Ids are validated
 * in the forward pass (a bad id is a data error, reported as HM_ERR_USAGE, never clamped).
 */
#include "cpu-impl.h"
#include "matvec.h"

CPU_KERNEL(embedding)
{
    const struct hm_tensor *wt = dst->src[0], *it = dst->src[1];
    const int32_t *ids = it->data;
    int64_t V = wt->shape[0], C = wt->shape[1], N = hm_nelements(it);
    int64_t bad = -1;
    for (int64_t i = 0; i < N; i++)
        if (ids[i] < 0 || ids[i] >= V) {
            bad = i;
            break;
        }
    if (bad >= 0)
        return hm_fail(HM_ERR_USAGE, "embedding: token id %d at index %lld is outside [0, %lld)",
                       ids[bad], (long long)bad, (long long)V);
    if (wt->type != HM_DTYPE_F32) { /* a packed inference weight (packed.c): widen the rows */
        for (int64_t i = 0; i < N; i++)
            hm_cpu_rows_to_f32(wt->type, wt->data, ids[i], 1, C, F32(dst) + i * C);
        return HM_OK;
    }
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR(N * C))
    for (int64_t i = 0; i < N; i++)
        memcpy(F32(dst) + i * C, CF32(wt) + (int64_t)ids[i] * C, (size_t)C * sizeof(float));
    return HM_OK;
}

CPU_KERNEL(embedding_back)
{
    const struct hm_tensor *dyt = dst->src[0], *it = dst->src[1];
    const int32_t *ids = it->data;
    const float *dy = CF32(dyt);
    float *dw = F32(dst);
    int64_t C = dst->shape[1], N = hm_nelements(it);
    if (!(dst->acc & 1))
        memset(dw, 0, hm_nbytes(dst));
    enum { W = 64 };
    int64_t n_chunks = (C + W - 1) / W;
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR(N * C))
    for (int64_t ch = 0; ch < n_chunks; ch++) {
        int64_t c0 = ch * W, w = C - c0 < W ? C - c0 : W;
        for (int64_t i = 0; i < N; i++) {
            float *row = dw + (int64_t)ids[i] * C + c0;
            const float *d = dy + i * C + c0;
#pragma omp simd
            for (int64_t j = 0; j < w; j++)
                row[j] += d[j];
        }
    }
    return HM_OK;
}
