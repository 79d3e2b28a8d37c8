/*
 * norm.cu - RMSNorm: y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps) (eps inside the sqrt).
 * One block per row; row sums use the fixed-order block reduction. Backward writes dx per row and
 * keeps rstd in the workspace; dw = sum_rows dy * x * rstd goes through the deterministic
 * two-pass column sum (elementwise.cu), never atomics.
 */
#include "elementwise.cuh"
#include "norm.cuh"

#define NORM_THREADS 256

/* x, w, y of the node's storage type T; statistics in f32. */
template <typename T> static __global__ void rms_norm_kernel(const T *x, const T *w, T *y, int64_t C, float eps)
{
    __shared__ float sh[32];
    const T *xr = x + blockIdx.x * C;
    T *yr = y + blockIdx.x * C;
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

/* dx = rs w dy - (rs^3 / C) (sum_j dy_j w_j x_j) x */
template <typename T>
static __global__ void rms_norm_back_kernel(const T *dy, const T *x, const T *w, T *dx, float *rstd, int64_t C,
                                            float eps, bool acc)
{
    __shared__ float sh[32];
    const T *xr = x + blockIdx.x * C, *dr = dy + blockIdx.x * C;
    T *dxr = dx + blockIdx.x * C;
    float ss = 0.0f, dot = 0.0f;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
        float xv = hm_ld(xr, j);
        ss += xv * xv;
        dot += hm_ld(dr, j) * hm_ld(w, j) * xv;
    }
    ss = hm_block_sum(ss, sh);
    dot = hm_block_sum(dot, sh);
    float rs = 1.0f / sqrtf(ss / (float)C + eps);
    float k = rs * rs * rs * dot / (float)C;
    if (threadIdx.x == 0)
        rstd[blockIdx.x] = rs;
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
