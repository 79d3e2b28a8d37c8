/*
 * norm.cu - RMSNorm: y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps) (eps inside the sqrt),
 * and ADD_RMS_NORM, the residual add in front of it (s = a + b, h = rms_norm(s)) in the same
 * kernel. One block per row; row sums use the fixed-order block reduction. Backward writes dx per
 * row and keeps rstd in the workspace; dw = sum_rows dy * x * rstd goes through the deterministic
 * two-pass column sum (elementwise.cu), never atomics.
 */
#include "elementwise.cuh"

#define NORM_THREADS 256

/* y = x * rstd * w over the block's row; x, w, y of the node's storage type T, statistics in f32.
 * Each thread reads the elements j = threadIdx.x + k * blockDim.x, which it may have just written. */
template <typename T>
static __device__ __forceinline__ void norm_row(const T *xr, const T *w, T *yr, int64_t C, float eps, float *sh)
{
    float ss = 0.0f;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
        float v = hm_ld(xr, j);
        ss += v * v;
    }
    ss = hm_block_sum(ss, sh);
    float rs = 1.0f / sqrtf(ss / (float)C + eps);
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x)
        hm_st(yr, j, hm_ld(xr, j) * rs * hm_ld(w, j));
}

template <typename T> static __global__ void rms_norm_kernel(const T *x, const T *w, T *y, int64_t C, float eps)
{
    __shared__ float sh[32];
    norm_row(x + blockIdx.x * C, w, y + blockIdx.x * C, C, eps, sh);
}

CUDA_KERNEL(rms_norm)
{
    const struct hm_tensor *xt = dst->src[0];
    int64_t C = xt->shape[xt->n_dims - 1], N = hm_nrows(xt);
    HM_DISPATCH(dst->type, T,
                rms_norm_kernel<<<(unsigned)N, NORM_THREADS, 0, hm_cuda_stream(ex)>>>(
                    CPTR(T, xt), CPTR(T, dst->src[1]), PTR(T, dst), C, hm_op_f32(dst, 0)));
    HM_CUDA_LAUNCHED();
    return HM_OK;
}

/* rs and k of dx = rs w dy - k x, k = (rs^3 / C) (sum_j dy_j w_j x_j), for the block's row;
 * thread 0 keeps rs in rstd for the weight gradient. */
template <typename T>
static __device__ __forceinline__ void norm_back_stats(const T *dr, const T *xr, const T *w, int64_t C, float eps,
                                                       float *sh, float *rstd, float *rs, float *k)
{
    float ss = 0.0f, dot = 0.0f;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
        float xv = hm_ld(xr, j);
        ss += xv * xv;
        dot += hm_ld(dr, j) * hm_ld(w, j) * xv;
    }
    ss = hm_block_sum(ss, sh);
    dot = hm_block_sum(dot, sh);
    *rs = 1.0f / sqrtf(ss / (float)C + eps);
    *k = *rs * *rs * *rs * dot / (float)C;
    if (threadIdx.x == 0)
        rstd[blockIdx.x] = *rs;
}

template <typename T>
static __global__ void rms_norm_back_kernel(const T *dy, const T *x, const T *w, T *dx, float *rstd, int64_t C,
                                            float eps, bool acc)
{
    __shared__ float sh[32];
    const T *xr = x + blockIdx.x * C, *dr = dy + blockIdx.x * C;
    T *dxr = dx + blockIdx.x * C;
    float rs, k;
    norm_back_stats(dr, xr, w, C, eps, sh, rstd, &rs, &k);
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x)
        hm_store(dxr, j, rs * hm_ld(w, j) * hm_ld(dr, j) - k * hm_ld(xr, j), acc);
}

CUDA_KERNEL(rms_norm_back)
{
    const struct hm_tensor *xt = dst->src[1];
    int64_t C = xt->shape[xt->n_dims - 1], N = hm_nrows(xt);
    cudaStream_t stream = hm_cuda_stream(ex);
    HM_ASSERT(ex->ws_bytes >= hm_cuda_workspace_bytes(dst, 0));
    float *rstd = (float *)ex->ws;
    float *partial = (float *)((char *)ex->ws + hm_cuda_align((size_t)N * sizeof(float)));
    HM_DISPATCH(dst->type, T, {
        rms_norm_back_kernel<<<(unsigned)N, NORM_THREADS, 0, stream>>>(
            CPTR(T, dst->src[0]), CPTR(T, xt), CPTR(T, dst->src[2]), PTR(T, dst), rstd, C, hm_op_f32(dst, 0),
            dst->acc & 1);
        HM_CUDA_LAUNCHED();
        /* dw: the f32 parameter gradient (or the dtype of the norm weight's gradient) */
        if (dst->src[3])
            HM_DISPATCH(dst->src[3]->type, TW,
                        hm_cuda_colsum(CPTR(T, dst->src[0]), CPTR(T, xt), rstd, PTR(TW, dst->src[3]), partial, N,
                                       C, 1.0f, (dst->acc & 2) != 0, stream));
    });
    return HM_OK;
}

/* ---- ADD_RMS_NORM: s = a + b and h = rms_norm(s) in one pass; the sum is normalised as stored
 * (rounded to T), as a separate add would have stored it ------------------------------------- */

template <typename T>
static __global__ void add_rms_norm_kernel(const T *a, const T *b, const T *w, T *s, T *h, int64_t C, float eps)
{
    __shared__ float sh[32];
    const T *ar = a + blockIdx.x * C, *br = b + blockIdx.x * C;
    T *sr = s + blockIdx.x * C;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) /* a, b may be s: read, then write */
        hm_st(sr, j, hm_ld(ar, j) + hm_ld(br, j));
    norm_row(sr, w, h + blockIdx.x * C, C, eps, sh);
}

CUDA_KERNEL(add_rms_norm)
{
    const struct hm_tensor *at = dst->src[0];
    int64_t C = at->shape[at->n_dims - 1], N = hm_nrows(at);
    HM_DISPATCH(dst->type, T,
                add_rms_norm_kernel<<<(unsigned)N, NORM_THREADS, 0, hm_cuda_stream(ex)>>>(
                    CPTR(T, at), CPTR(T, dst->src[1]), CPTR(T, dst->src[2]), PTR(T, dst), PTR(T, dst->src[3]), C,
                    hm_op_f32(dst, 0)));
    HM_CUDA_LAUNCHED();
    return HM_OK;
}

/* ds (+)= rms_norm_back(dh, s, w), then db, da (+)= ds as stored; TB, TA: the types of db, da
 * (f32 when they are parameter gradients). acc: the node's acc bits. */
template <typename T, typename TB, typename TA>
static __global__ void add_rms_norm_back_kernel(const T *dh, const T *s, const T *w, T *ds, TB *db, TA *da,
                                                float *rstd, int64_t C, float eps, unsigned acc)
{
    __shared__ float sh[32];
    const T *sr = s + blockIdx.x * C, *dr = dh + blockIdx.x * C;
    T *gr = ds + blockIdx.x * C;
    float rs, k;
    norm_back_stats(dr, sr, w, C, eps, sh, rstd, &rs, &k);
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
        hm_store(gr, j, rs * hm_ld(w, j) * hm_ld(dr, j) - k * hm_ld(sr, j), acc & 1);
        float d = hm_ld(gr, j);
        if (db)
            hm_store(db + blockIdx.x * C, j, d, acc & 2);
        if (da)
            hm_store(da + blockIdx.x * C, j, d, acc & 4);
    }
}

template <typename T, typename TB, typename TA>
static void add_rms_norm_back_launch(const struct hm_tensor *dst, TB *db, TA *da, float *rstd, cudaStream_t stream)
{
    const struct hm_tensor *st = dst->src[1];
    int64_t C = st->shape[st->n_dims - 1], N = hm_nrows(st);
    add_rms_norm_back_kernel<<<(unsigned)N, NORM_THREADS, 0, stream>>>(
        CPTR(T, dst->src[0]), CPTR(T, st), CPTR(T, dst->src[2]), PTR(T, dst), db, da, rstd, C, hm_op_f32(dst, 0),
        dst->acc);
    HM_CUDA_LAUNCHED();
}

/* db and da are activation gradients of the node's dtype, or f32 parameter gradients. */
#define HM_DISPATCH_OPT(t, T, ...)                                                                 \
    HM_DISPATCH((t) ? (t)->type : HM_DTYPE_F32, T, __VA_ARGS__)

CUDA_KERNEL(add_rms_norm_back)
{
    const struct hm_tensor *st = dst->src[1], *tb = dst->src[3], *ta = dst->src[4];
    int64_t C = st->shape[st->n_dims - 1], N = hm_nrows(st);
    cudaStream_t stream = hm_cuda_stream(ex);
    HM_ASSERT(ex->ws_bytes >= hm_cuda_workspace_bytes(dst, 0));
    float *rstd = (float *)ex->ws;
    float *partial = (float *)((char *)ex->ws + hm_cuda_align((size_t)N * sizeof(float)));
    HM_DISPATCH(dst->type, T, HM_DISPATCH_OPT(tb, TB, HM_DISPATCH_OPT(ta, TA, {
        add_rms_norm_back_launch<T>(dst, tb ? PTR(TB, tb) : (TB *)NULL, ta ? PTR(TA, ta) : (TA *)NULL, rstd,
                                    stream);
        if (dst->src[5])
            HM_DISPATCH(dst->src[5]->type, TW,
                        hm_cuda_colsum(CPTR(T, dst->src[0]), CPTR(T, st), rstd, PTR(TW, dst->src[5]), partial, N, C,
                                       1.0f, (dst->acc & 8) != 0, stream));
    })));
    return HM_OK;
}
