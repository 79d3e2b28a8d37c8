/*
 * norm.cu - RMSNorm: y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps) (eps inside the sqrt).
 * One block per row; row sums use the fixed-order block reduction. Backward writes dx per row and
 * keeps rstd in the workspace; dw = sum_rows dy * x * rstd goes through the deterministic
 * two-pass column sum (elementwise.cu), never atomics. Rows are read and written 16 bytes per
 * access (N elements, vec.cuh) when C and the pointers allow, else one element at a time.
 */
#include "elementwise.cuh"
#include "norm.cuh"
#include "vec.cuh"

#define NORM_THREADS 256

/* N = 1 or hm_vec<T>::N elements per access (norm_width). */
template <typename T> static int norm_width(int64_t C, const void *a, const void *b, const void *c, const void *d)
{
    const int N = hm_vec<T>::N;
    return C % N == 0 && hm_aligned16(a) && hm_aligned16(b) && hm_aligned16(c) && hm_aligned16(d) ? N : 1;
}

/* x, w, y of the node's storage type T; statistics in f32. */
template <int N, typename T> static __global__ void rms_norm_kernel(const T *x, const T *w, T *y, int64_t C, float eps)
{
    __shared__ float sh[32];
    const T *xr = x + blockIdx.x * C;
    T *yr = y + blockIdx.x * C;
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

CUDA_KERNEL(rms_norm)
{
    const struct hm_tensor *xt = dst->src[0];
    int64_t C = xt->shape[xt->n_dims - 1], N = hm_nrows(xt);
    HM_DISPATCH(dst->type, T, {
        const T *x = CPTR(T, xt), *w = CPTR(T, dst->src[1]);
        T *y = PTR(T, dst);
        if (norm_width<T>(C, x, w, y, y) > 1)
            rms_norm_kernel<hm_vec<T>::N><<<(unsigned)N, NORM_THREADS, 0, hm_cuda_stream(ex)>>>(x, w, y, C,
                                                                                             hm_op_f32(dst, 0));
        else
            rms_norm_kernel<1><<<(unsigned)N, NORM_THREADS, 0, hm_cuda_stream(ex)>>>(x, w, y, C, hm_op_f32(dst, 0));
    });
    HM_CUDA_LAUNCHED();
    return HM_OK;
}

/* dx = rs w dy - (rs^3 / C) (sum_j dy_j w_j x_j) x */
template <int N, typename T>
static __global__ void rms_norm_back_kernel(const T *dy, const T *x, const T *w, T *dx, float *rstd, int64_t C,
                                            float eps, bool acc)
{
    __shared__ float sh[32];
    const T *xr = x + blockIdx.x * C, *dr = dy + blockIdx.x * C;
    T *dxr = dx + blockIdx.x * C;
    float ss = 0.0f, dot = 0.0f, xv[N], dv[N], wv[N], ov[N];
    for (int64_t j = threadIdx.x * N; j < C; j += blockDim.x * N) {
        hm_ldv<N>(xr, j, xv);
        hm_ldv<N>(dr, j, dv);
        hm_ldv<N>(w, j, wv);
#pragma unroll
        for (int k = 0; k < N; k++) {
            ss += xv[k] * xv[k];
            dot += dv[k] * wv[k] * xv[k];
        }
    }
    ss = hm_block_sum(ss, sh);
    dot = hm_block_sum(dot, sh);
    float rs = 1.0f / sqrtf(ss / (float)C + eps);
    float kk = rs * rs * rs * dot / (float)C;
    if (threadIdx.x == 0)
        rstd[blockIdx.x] = rs;
    for (int64_t j = threadIdx.x * N; j < C; j += blockDim.x * N) {
        hm_ldv<N>(xr, j, xv);
        hm_ldv<N>(dr, j, dv);
        hm_ldv<N>(w, j, wv);
        if (acc)
            hm_ldv<N>(dxr, j, ov);
#pragma unroll
        for (int k = 0; k < N; k++) {
            float v = rs * wv[k] * dv[k] - kk * xv[k];
            ov[k] = acc ? ov[k] + v : v;
        }
        hm_stv<N>(dxr, j, ov);
    }
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
        if (norm_width<T>(C, dy, x, w, dx) > 1)
            rms_norm_back_kernel<hm_vec<T>::N><<<(unsigned)N, NORM_THREADS, 0, stream>>>(
                dy, x, w, dx, rstd, C, hm_op_f32(dst, 0), dst->acc & 1);
        else
            rms_norm_back_kernel<1><<<(unsigned)N, NORM_THREADS, 0, stream>>>(dy, x, w, dx, rstd, C,
                                                                              hm_op_f32(dst, 0), dst->acc & 1);
        HM_CUDA_LAUNCHED();
        /* dw: the f32 parameter gradient (or the dtype of the norm weight's gradient) */
        if (dst->src[3])
            HM_DISPATCH(dst->src[3]->type, TW,
                        hm_cuda_colsum(CPTR(T, dst->src[0]), CPTR(T, xt), rstd, PTR(TW, dst->src[3]), partial, N,
                                       C, 1.0f, (dst->acc & 2) != 0, stream));
    });
    return HM_OK;
}
