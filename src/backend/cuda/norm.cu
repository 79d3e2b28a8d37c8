/*
 * norm.cu - RMSNorm: y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps) (eps inside the sqrt),
 * and ADD_RMS_NORM, the residual add in front of it (s = a + b, h = rms_norm(s)) in the same
 * kernel. One block per row; row sums use the fixed-order block reduction. Backward writes dx per
 * row and keeps rstd in the workspace; dw = sum_rows dy * x * rstd goes through the deterministic
 * two-pass column sum (elementwise.cu), never atomics. Rows are read and written 16 bytes per
 * access (N elements, vec.cuh) when C and the pointers allow, else one element at a time; either
 * way a thread owns the same elements in every loop of a kernel.
 */
#include "elementwise.cuh"
#include "vec.cuh"

#define NORM_THREADS 256

/* N = hm_vec<T>::N elements per access when C is a multiple of it and every given pointer is
 * 16-byte aligned (NULL ones are), else 1. */
template <typename T>
static int norm_width(int64_t C, const void *a, const void *b, const void *c, const void *d,
                      const void *e = NULL)
{
    const int N = hm_vec<T>::N;
    return C % N == 0 && hm_aligned16(a) && hm_aligned16(b) && hm_aligned16(c) && hm_aligned16(d) &&
                   hm_aligned16(e)
               ? N
               : 1;
}

/* Launch KERNEL<N, T> 16 bytes wide when `wide`, else one element wide (the same arguments). */
#define NORM_LAUNCH(wide, KERNEL, T, grid, stream, ...)                                              \
    do {                                                                                           \
        if (wide)                                                                                  \
            KERNEL<hm_vec<T>::N, T><<<(grid), NORM_THREADS, 0, (stream)>>>(__VA_ARGS__);           \
        else                                                                                       \
            KERNEL<1, T><<<(grid), NORM_THREADS, 0, (stream)>>>(__VA_ARGS__);                      \
        HM_CUDA_LAUNCHED();                                                                        \
    } while (0)

/* y = x * rstd * w over the block's row; x, w, y of the node's storage type T, statistics in f32.
 * Each thread reads the elements j = threadIdx.x * N + k * blockDim.x * N (+ 0..N-1), which it may
 * have just written. */
template <int N, typename T>
static __device__ __forceinline__ void norm_row(const T *xr, const T *w, T *yr, int64_t C, float eps, float *sh)
{
    float ss = 0.0f, v[N], wv[N];
    for (int64_t j = threadIdx.x * N; j < C; j += blockDim.x * N) {
        hm_ldv<N>(xr, j, v);
#pragma unroll
        for (int k = 0; k < N; k++)
            ss += v[k] * v[k];
    }
    ss = hm_block_sum(ss, sh);
    float rs = 1.0f / sqrtf(ss / (float)C + eps);
    for (int64_t j = threadIdx.x * N; j < C; j += blockDim.x * N) {
        hm_ldv<N>(xr, j, v);
        hm_ldv<N>(w, j, wv);
#pragma unroll
        for (int k = 0; k < N; k++)
            v[k] = v[k] * rs * wv[k];
        hm_stv<N>(yr, j, v);
    }
}

template <int N, typename T>
static __global__ void rms_norm_kernel(const T *x, const T *w, T *y, int64_t C, float eps)
{
    __shared__ float sh[32];
    norm_row<N>(x + blockIdx.x * C, w, y + blockIdx.x * C, C, eps, sh);
}

CUDA_KERNEL(rms_norm)
{
    const struct hm_tensor *xt = dst->src[0];
    int64_t C = xt->shape[xt->n_dims - 1], N = hm_nrows(xt);
    HM_DISPATCH(dst->type, T, {
        const T *x = CPTR(T, xt), *w = CPTR(T, dst->src[1]);
        T *y = PTR(T, dst);
        NORM_LAUNCH(norm_width<T>(C, x, w, y, NULL) > 1, rms_norm_kernel, T, (unsigned)N, hm_cuda_stream(ex), x, w,
                    y, C, hm_op_f32(dst, 0));
    });
    return HM_OK;
}

/* rs and k of dx = rs w dy - k x, k = (rs^3 / C) (sum_j dy_j w_j x_j), for the block's row;
 * thread 0 keeps rs in rstd for the weight gradient. */
template <int N, typename T>
static __device__ __forceinline__ void norm_back_stats(const T *dr, const T *xr, const T *w, int64_t C, float eps,
                                                       float *sh, float *rstd, float *rs, float *k)
{
    float ss = 0.0f, dot = 0.0f, xv[N], dv[N], wv[N];
    for (int64_t j = threadIdx.x * N; j < C; j += blockDim.x * N) {
        hm_ldv<N>(xr, j, xv);
        hm_ldv<N>(dr, j, dv);
        hm_ldv<N>(w, j, wv);
#pragma unroll
        for (int q = 0; q < N; q++) {
            ss += xv[q] * xv[q];
            dot += dv[q] * wv[q] * xv[q];
        }
    }
    ss = hm_block_sum(ss, sh);
    dot = hm_block_sum(dot, sh);
    *rs = 1.0f / sqrtf(ss / (float)C + eps);
    *k = *rs * *rs * *rs * dot / (float)C;
    if (threadIdx.x == 0)
        rstd[blockIdx.x] = *rs;
}

/* ov (+)= rs w dy - k x for elements [j, j + N) of the block's row; stores it to gr and leaves
 * the stored (rounded to T) values in ov. */
template <int N, typename T>
static __device__ __forceinline__ void norm_back_elems(const T *dr, const T *xr, const T *w, T *gr, int64_t j,
                                                       float rs, float k, bool acc, float *ov)
{
    float xv[N], dv[N], wv[N];
    hm_ldv<N>(xr, j, xv);
    hm_ldv<N>(dr, j, dv);
    hm_ldv<N>(w, j, wv);
    if (acc)
        hm_ldv<N>(gr, j, ov);
#pragma unroll
    for (int q = 0; q < N; q++) {
        float v = rs * wv[q] * dv[q] - k * xv[q];
        ov[q] = acc ? ov[q] + v : v;
    }
    hm_stv<N>(gr, j, ov);
}

template <int N, typename T>
static __global__ void rms_norm_back_kernel(const T *dy, const T *x, const T *w, T *dx, float *rstd, int64_t C,
                                            float eps, bool acc)
{
    __shared__ float sh[32];
    const T *xr = x + blockIdx.x * C, *dr = dy + blockIdx.x * C;
    T *dxr = dx + blockIdx.x * C;
    float rs, k, ov[N];
    norm_back_stats<N>(dr, xr, w, C, eps, sh, rstd, &rs, &k);
    for (int64_t j = threadIdx.x * N; j < C; j += blockDim.x * N)
        norm_back_elems<N>(dr, xr, w, dxr, j, rs, k, acc, ov);
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
        const T *dy = CPTR(T, dst->src[0]), *x = CPTR(T, xt), *w = CPTR(T, dst->src[2]);
        T *dx = PTR(T, dst);
        NORM_LAUNCH(norm_width<T>(C, dy, x, w, dx) > 1, rms_norm_back_kernel, T, (unsigned)N, stream, dy, x, w, dx,
                    rstd, C, hm_op_f32(dst, 0), dst->acc & 1);
        /* dw: the f32 parameter gradient (or the dtype of the norm weight's gradient) */
        if (dst->src[3])
            HM_DISPATCH(dst->src[3]->type, TW,
                        hm_cuda_colsum(dy, x, rstd, PTR(TW, dst->src[3]), partial, N, C, 1.0f, (dst->acc & 2) != 0,
                                       stream));
    });
    return HM_OK;
}

/* ---- ADD_RMS_NORM: s = a + b and h = rms_norm(s) in one pass; the sum is normalised as stored
 * (rounded to T), as a separate add would have stored it ------------------------------------- */

template <int N, typename T>
static __global__ void add_rms_norm_kernel(const T *a, const T *b, const T *w, T *s, T *h, int64_t C, float eps)
{
    __shared__ float sh[32];
    const T *ar = a + blockIdx.x * C, *br = b + blockIdx.x * C;
    T *sr = s + blockIdx.x * C;
    float av[N], bv[N];
    for (int64_t j = threadIdx.x * N; j < C; j += blockDim.x * N) { /* a, b may be s: read, then write */
        hm_ldv<N>(ar, j, av);
        hm_ldv<N>(br, j, bv);
#pragma unroll
        for (int q = 0; q < N; q++)
            av[q] += bv[q];
        hm_stv<N>(sr, j, av);
    }
    norm_row<N>(sr, w, h + blockIdx.x * C, C, eps, sh);
}

CUDA_KERNEL(add_rms_norm)
{
    const struct hm_tensor *at = dst->src[0];
    int64_t C = at->shape[at->n_dims - 1], N = hm_nrows(at);
    HM_DISPATCH(dst->type, T, {
        const T *a = CPTR(T, at), *b = CPTR(T, dst->src[1]), *w = CPTR(T, dst->src[2]);
        T *s = PTR(T, dst), *h = PTR(T, dst->src[3]);
        NORM_LAUNCH(norm_width<T>(C, a, b, w, s, h) > 1, add_rms_norm_kernel, T, (unsigned)N, hm_cuda_stream(ex), a,
                    b, w, s, h, C, hm_op_f32(dst, 0));
    });
    return HM_OK;
}

/* ds (+)= rms_norm_back(dh, s, w), then db, da (+)= ds as stored; TB, TA: the types of db, da
 * (f32 when they are parameter gradients), written one element at a time. acc: the node's acc bits. */
template <int N, typename T, typename TB, typename TA>
static __global__ void add_rms_norm_back_kernel(const T *dh, const T *s, const T *w, T *ds, TB *db, TA *da,
                                                float *rstd, int64_t C, float eps, unsigned acc)
{
    __shared__ float sh[32];
    const T *sr = s + blockIdx.x * C, *dr = dh + blockIdx.x * C;
    T *gr = ds + blockIdx.x * C;
    float rs, k, ov[N];
    norm_back_stats<N>(dr, sr, w, C, eps, sh, rstd, &rs, &k);
    for (int64_t j = threadIdx.x * N; j < C; j += blockDim.x * N) {
        norm_back_elems<N>(dr, sr, w, gr, j, rs, k, acc & 1, ov);
        hm_ldv<N>(gr, j, ov); /* as stored: rounded to T */
#pragma unroll
        for (int q = 0; q < N; q++) {
            if (db)
                hm_store(db + blockIdx.x * C, j + q, ov[q], acc & 2);
            if (da)
                hm_store(da + blockIdx.x * C, j + q, ov[q], acc & 4);
        }
    }
}

template <typename T, typename TB, typename TA>
static void add_rms_norm_back_launch(const struct hm_tensor *dst, TB *db, TA *da, float *rstd, cudaStream_t stream)
{
    const struct hm_tensor *st = dst->src[1];
    int64_t C = st->shape[st->n_dims - 1], N = hm_nrows(st);
    const T *dh = CPTR(T, dst->src[0]), *s = CPTR(T, st), *w = CPTR(T, dst->src[2]);
    T *ds = PTR(T, dst);
    if (norm_width<T>(C, dh, s, w, ds) > 1)
        add_rms_norm_back_kernel<hm_vec<T>::N, T><<<(unsigned)N, NORM_THREADS, 0, stream>>>(
            dh, s, w, ds, db, da, rstd, C, hm_op_f32(dst, 0), dst->acc);
    else
        add_rms_norm_back_kernel<1, T><<<(unsigned)N, NORM_THREADS, 0, stream>>>(dh, s, w, ds, db, da, rstd, C,
                                                                                 hm_op_f32(dst, 0), dst->acc);
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
