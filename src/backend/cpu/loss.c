/*
 * loss.c - fused softmax cross-entropy. Forward keeps each row's log-sum-exp (the only thing
 * backward needs besides the logits), and sums the per-row losses in double in row order for a
 * deterministic mean over non-ignored rows. Backward writes dlogits = (softmax - onehot) *
 * dloss / count, row by row; it may run in place over the logits (read then write per element).
 * -inf logits (masked entries) get probability 0 and gradient 0, never NaN: a row of -inf only has
 * lse -inf, and a target whose logit is -inf has loss +inf (the CUDA kernel does the same).
 * bf16 logits (and dlogits) are read and written here directly, one row at a time widened into a
 * per-thread f32 row, with the f32 arithmetic unchanged: the same bits as the widening path of
 * bf16.c without its f32 copy of the whole (N, V) tensor (hm_cpu_loss_reads_bf16).
 */
#include "cpu-impl.h"

static int64_t count_valid(const int32_t *tg, int64_t N, int32_t ignore)
{
    int64_t n = 0;
    for (int64_t i = 0; i < N; i++)
        n += tg[i] != ignore;
    return n;
}

bool hm_cpu_loss_reads_bf16(const struct hm_tensor *node)
{
    if (node->op != HM_OP_CROSS_ENTROPY && node->op != HM_OP_CROSS_ENTROPY_BACK)
        return false;
    const struct hm_tensor *lse = node->src[node->op == HM_OP_CROSS_ENTROPY ? 2 : 3];
    const struct hm_tensor *loss = node->op == HM_OP_CROSS_ENTROPY ? node : node->src[0];
    return lse->type == HM_DTYPE_F32 && loss->type == HM_DTYPE_F32;
}

size_t hm_cpu_loss_row_ws(const struct hm_tensor *node, int n_threads)
{
    const struct hm_tensor *lt = node->src[node->op == HM_OP_CROSS_ENTROPY ? 0 : 1];
    if (lt->type != HM_DTYPE_BF16 && node->type != HM_DTYPE_BF16)
        return 0;
    return (size_t)n_threads * (size_t)lt->shape[lt->n_dims - 1] * sizeof(float);
}

/* Row r of the logits as f32: the tensor's own row, or row widened into `tmp` when it is bf16. */
static const float *logit_row(const struct hm_tensor *lt, int64_t r, int64_t V, float *tmp)
{
    if (lt->type == HM_DTYPE_F32)
        return CF32(lt) + r * V;
    const uint16_t *x = (const uint16_t *)lt->data + r * V;
#pragma omp simd
    for (int64_t j = 0; j < V; j++)
        tmp[j] = hm_cpu_from_bf16(x[j]);
    return tmp;
}

/* The f32 rows of tmp, one per thread, after the per-row losses in ex->ws. */
static float *thread_row(const struct hm_exec *ex, size_t skip, int64_t V)
{
    return (float *)((char *)ex->ws + skip) + (size_t)omp_get_thread_num() * (size_t)V;
}

CPU_KERNEL(cross_entropy)
{
    const struct hm_tensor *lt = dst->src[0];
    const int32_t *tg = dst->src[1]->data;
    float *lse = F32(dst->src[2]);
    int32_t ignore = dst->op_params[0];
    int64_t V = lt->shape[lt->n_dims - 1], N = hm_nrows(lt);
    bool bf16 = lt->type == HM_DTYPE_BF16;
    double *row_loss = ex->ws;
    size_t skip = ((size_t)N * sizeof(double) + 63) / 64 * 64;
    HM_ASSERT(ex->ws_bytes >= skip + hm_cpu_loss_row_ws(dst, omp_get_max_threads()));
    for (int64_t i = 0; i < N; i++)
        if (tg[i] != ignore && (tg[i] < 0 || tg[i] >= V))
            return hm_fail(HM_ERR_USAGE, "cross_entropy: target %d at index %lld is outside [0, %lld)",
                           tg[i], (long long)i, (long long)V);
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR(N * V))
    for (int64_t r = 0; r < N; r++) {
        const float *x = logit_row(lt, r, V, bf16 ? thread_row(ex, skip, V) : NULL);
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
    bool acc = dst->acc & 1, bf16 = dst->type == HM_DTYPE_BF16;
    bool rows = bf16 || lt->type == HM_DTYPE_BF16; /* f32 rows per thread in the workspace */
    HM_ASSERT(ex->ws_bytes >= hm_cpu_loss_row_ws(dst, omp_get_max_threads()));
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR(N * V))
    for (int64_t r = 0; r < N; r++) {
        /* bf16: the row widened into this thread's f32 row, dx computed there, then rounded */
        float *tmp = rows ? thread_row(ex, 0, V) : NULL;
        const float *x = logit_row(lt, r, V, tmp);
        float *dx = bf16 ? tmp : F32(dst) + r * V;
        const uint16_t *dx16 = (const uint16_t *)dst->data + r * V;
        float l = lse[r] == -INFINITY ? 0.0f : lse[r], rs = tg[r] == ignore ? 0.0f : s; /* all -inf: 0 */
        /* Three plain loops rather than one with selects: GCC does not vectorise a loop that
         * mixes the bf16 loads with the f32 ones (it ran scalar, 4 ns per logit). */
        if (!acc) {
#pragma omp simd
            for (int64_t j = 0; j < V; j++)
                dx[j] = hm_expf(x[j] - l) * rs;
        } else if (!bf16) {
#pragma omp simd
            for (int64_t j = 0; j < V; j++)
                dx[j] += hm_expf(x[j] - l) * rs;
        } else {
#pragma omp simd
            for (int64_t j = 0; j < V; j++)
                dx[j] = hm_cpu_from_bf16(dx16[j]) + hm_expf(x[j] - l) * rs;
        }
        if (tg[r] != ignore)
            dx[tg[r]] -= rs;
        if (bf16) {
            uint16_t *y = (uint16_t *)dst->data + r * V;
#pragma omp simd
            for (int64_t j = 0; j < V; j++)
                y[j] = hm_cpu_to_bf16(dx[j]);
        }
    }
    return HM_OK;
}
