/*
 * loss.cu - fused softmax cross-entropy over logits (N, V). Probabilities are never stored:
 * forward keeps only the row log-sum-exp (one pass per row with an online max/sum), backward
 * recomputes softmax from the logits and lse and writes dlogits = (softmax - onehot) * dloss / n
 * (in place over the logits when the planner allows). The mean over the n non-ignored rows sums
 * per-row losses in double with a fixed-order single-block reduction: deterministic.
 * -inf logits give probability 0, never NaN (as on the CPU, hm_ce_row_loss).
 * A target outside [0, V) (other than the ignore index) is recorded on the device and reported as
 * HM_ERR_USAGE at the next synchronisation, with the CPU's message.
 */
#include "common.cuh"

#define CE_THREADS 256
#define CE_SUM_THREADS 1024

/* logits of the storage type T; lse and the losses in f32 / f64. */
template <typename T>
static __global__ void ce_rows_kernel(const T *logits, const int32_t *tg, float *lse, double *row_loss, int64_t V,
                                      int32_t ignore, unsigned long long *err)
{
    __shared__ float sh[32];
    int64_t r = blockIdx.x;
    const T *x = logits + r * V;
    float m = -INFINITY, s = 0.0f;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
        float v = hm_ld(x, j);
        if (v > m) {
            s = s * expf(m - v) + 1.0f;
            m = v;
        } else if (v != -INFINITY) { /* -inf - -inf would be NaN; NaN logits still propagate */
            s += expf(v - m);
        }
    }
    float M = hm_block_max(m, sh);
    s = m == -INFINITY ? 0.0f : s * expf(m - M);
    s = hm_block_sum(s, sh);
    if (threadIdx.x == 0) {
        float l = M + logf(s);
        int32_t t = tg[r];
        double loss = 0.0;
        if (t != ignore) {
            if (t < 0 || t >= V)
                hm_cuda_report(err, HM_CUDA_ERR_CROSS_ENTROPY, r, t);
            else
                loss = hm_ce_row_loss(l, hm_ld(x, t));
        }
        lse[r] = l;
        row_loss[r] = loss;
    }
}

/* One block: out[0] = sum(row_loss) / n_valid (0 if none), *count = n_valid. */
static __global__ void ce_mean_kernel(const double *row_loss, const int32_t *tg, int64_t N, int32_t ignore,
                                      float *out, int64_t *count)
{
    __shared__ double shd[32];
    __shared__ long long shn[32];
    double s = 0.0;
    long long n = 0;
    for (int64_t r = threadIdx.x; r < N; r += blockDim.x) {
        s += row_loss[r];
        n += tg[r] != ignore;
    }
    s = hm_block_sum(s, shd);
    n = hm_block_sum(n, shn);
    if (threadIdx.x == 0) {
        out[0] = n ? (float)(s / (double)n) : 0.0f;
        if (count)
            *count = n;
    }
}

CUDA_KERNEL(cross_entropy)
{
    struct hm_cuda_ctx *cx = hm_cuda_ctx_of(ex);
    const struct hm_tensor *lt = dst->src[0];
    const int32_t *tg = (const int32_t *)dst->src[1]->data;
    int32_t ignore = dst->op_params[0];
    int64_t V = lt->shape[lt->n_dims - 1], N = hm_nrows(lt);
    HM_ASSERT(ex->ws_bytes >= hm_cuda_workspace_bytes(dst, 0));
    double *row_loss = (double *)ex->ws;
    int64_t *count = (int64_t *)((char *)ex->ws + hm_cuda_align((size_t)N * sizeof(double)));
    cx->err_slot[HM_CUDA_ERR_CROSS_ENTROPY].limit = V;
    HM_DISPATCH(lt->type, T,
                ce_rows_kernel<<<(unsigned)N, CE_THREADS, 0, cx->stream>>>(CPTR(T, lt), tg, F32(dst->src[2]),
                                                                          row_loss, V, ignore, cx->err));
    HM_CUDA_LAUNCHED();
    ce_mean_kernel<<<1, CE_SUM_THREADS, 0, cx->stream>>>(row_loss, tg, N, ignore, F32(dst), count);
    HM_CUDA_LAUNCHED();
    return HM_OK;
}

static __global__ void ce_count_kernel(const int32_t *tg, int64_t N, int32_t ignore, int64_t *count)
{
    __shared__ long long shn[32];
    long long n = 0;
    for (int64_t r = threadIdx.x; r < N; r += blockDim.x)
        n += tg[r] != ignore;
    n = hm_block_sum(n, shn);
    if (threadIdx.x == 0)
        *count = n;
}

template <typename T>
static __global__ void ce_back_kernel(const float *dloss, const T *logits, const int32_t *tg, const float *lse,
                                      const int64_t *count, T *dx, int64_t V, int32_t ignore, bool acc)
{
    int64_t r = blockIdx.x, n = *count;
    int32_t t = tg[r];
    float s = n ? dloss[0] / (float)n : 0.0f, rs = t == ignore ? 0.0f : s;
    float l = lse[r] == -INFINITY ? 0.0f : lse[r]; /* a row of -inf logits: every term is 0 */
    const T *x = logits + r * V;
    T *d = dx + r * V;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
        float v = expf(hm_ld(x, j) - l) * rs - (j == t ? rs : 0.0f);
        hm_store(d, j, v, acc);
    }
}

CUDA_KERNEL(cross_entropy_back)
{
    cudaStream_t stream = hm_cuda_stream(ex);
    const struct hm_tensor *lt = dst->src[1];
    const int32_t *tg = (const int32_t *)dst->src[2]->data;
    int32_t ignore = dst->op_params[0];
    int64_t V = lt->shape[lt->n_dims - 1], N = hm_nrows(lt);
    HM_ASSERT(ex->ws_bytes >= hm_cuda_workspace_bytes(dst, 0));
    int64_t *count = (int64_t *)ex->ws;
    ce_count_kernel<<<1, CE_SUM_THREADS, 0, stream>>>(tg, N, ignore, count);
    HM_CUDA_LAUNCHED();
    HM_DISPATCH(dst->type, T,
                ce_back_kernel<<<(unsigned)N, CE_THREADS, 0, stream>>>(CF32(dst->src[0]), CPTR(T, lt), tg,
                                                                      CF32(dst->src[3]), count, PTR(T, dst), V,
                                                                      ignore, dst->acc & 1));
    HM_CUDA_LAUNCHED();
    return HM_OK;
}
