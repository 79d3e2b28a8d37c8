/*
 * loss.c - fused softmax cross-entropy. Forward keeps each row's log-sum-exp (the only thing
 * backward needs besides the logits), and sums the per-row losses in double in row order for a
 * deterministic mean over non-ignored rows. Backward writes dlogits = (softmax - onehot) *
 * dloss / count, row by row; it may run in place over the logits (read then write per element).
 * -inf logits (masked entries) get probability 0 and gradient 0, never NaN: a row of -inf only has
 * lse -inf, and a target whose logit is -inf has loss +inf (the CUDA kernel does the same).
 */
#include "cpu-impl.h"

static int64_t count_valid(const int32_t *tg, int64_t N, int32_t ignore)
{
    int64_t n = 0;
    for (int64_t i = 0; i < N; i++)
        n += tg[i] != ignore;
    return n;
}

CPU_KERNEL(cross_entropy)
{
    const struct hm_tensor *lt = dst->src[0];
    const int32_t *tg = dst->src[1]->data;
    float *lse = F32(dst->src[2]);
    int32_t ignore = dst->op_params[0];
    int64_t V = lt->shape[lt->n_dims - 1], N = hm_nrows(lt);
    double *row_loss = ex->ws;
    HM_ASSERT(ex->ws_bytes >= (size_t)N * sizeof(double));
    for (int64_t i = 0; i < N; i++)
        if (tg[i] != ignore && (tg[i] < 0 || tg[i] >= V))
            return hm_fail(HM_ERR_USAGE, "cross_entropy: target %d at index %lld is outside [0, %lld)",
                           tg[i], (long long)i, (long long)V);
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR(N * V))
    for (int64_t r = 0; r < N; r++) {
        const float *x = CF32(lt) + r * V;
        float m = -INFINITY;
#pragma omp simd reduction(max : m)
        for (int64_t j = 0; j < V; j++)
            m = hm_maxf(m, x[j]);
        float shift = m == -INFINITY ? 0.0f : m, sum = 0.0f; /* -inf - -inf would be NaN */
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < V; j++)
            sum += hm_expf(x[j] - shift);
        lse[r] = shift + logf(sum);
        row_loss[r] = tg[r] == ignore ? 0.0 : hm_ce_row_loss(lse[r], x[tg[r]]);
    }
    double total = 0.0;
    for (int64_t r = 0; r < N; r++)
        total += row_loss[r];
    int64_t n = count_valid(tg, N, ignore);
    F32(dst)[0] = n ? (float)(total / (double)n) : 0.0f;
    return HM_OK;
}

CPU_KERNEL(cross_entropy_back)
{
    const struct hm_tensor *lt = dst->src[1];
    const int32_t *tg = dst->src[2]->data;
    const float *lse = CF32(dst->src[3]);
    int32_t ignore = dst->op_params[0];
    int64_t V = lt->shape[lt->n_dims - 1], N = hm_nrows(lt);
    int64_t n = count_valid(tg, N, ignore);
    float s = n ? CF32(dst->src[0])[0] / (float)n : 0.0f;
    bool acc = dst->acc & 1;
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR(N * V))
    for (int64_t r = 0; r < N; r++) {
        const float *x = CF32(lt) + r * V;
        float *dx = F32(dst) + r * V;
        float l = lse[r] == -INFINITY ? 0.0f : lse[r], rs = tg[r] == ignore ? 0.0f : s; /* all -inf: 0 */
#pragma omp simd
        for (int64_t j = 0; j < V; j++) {
            float v = hm_expf(x[j] - l) * rs;
            dx[j] = acc ? dx[j] + v : v;
        }
        if (tg[r] != ignore)
            dx[tg[r]] -= rs;
    }
    return HM_OK;
}
