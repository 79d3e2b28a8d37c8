/*
 * norm.cu - RMSNorm: y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps) (eps inside the sqrt).
 * One block per row; row sums use the fixed-order block reduction. Backward writes dx per row and
 * keeps rstd in the workspace; dw = sum_rows dy * x * rstd goes through the deterministic
 * two-pass column sum (elementwise.cu), never atomics.
 */
#include "elementwise.cuh"
#include "norm.cuh"

#define NORM_THREADS 256

static __global__ void rms_norm_f32_kernel(const float *x, const float *w, float *y, int64_t C, float eps)
{
    __shared__ float sh[32];
    const float *xr = x + blockIdx.x * C;
    float *yr = y + blockIdx.x * C;
    float ss = 0.0f;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x)
        ss += xr[j] * xr[j];
    ss = hm_block_sum(ss, sh);
    float rs = 1.0f / sqrtf(ss / (float)C + eps);
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x)
        yr[j] = xr[j] * rs * w[j];
}

static void rms_norm_f32_launch(const float *x, const float *w, float *y, int64_t N, int64_t C, float eps,
                                cudaStream_t stream)
{
    rms_norm_f32_kernel<<<(unsigned)N, NORM_THREADS, 0, stream>>>(x, w, y, C, eps);
    HM_CUDA_LAUNCHED();
}

CUDA_KERNEL(rms_norm)
{
    const struct hm_tensor *xt = dst->src[0];
    int64_t C = xt->shape[xt->n_dims - 1], N = hm_nrows(xt);
    rms_norm_f32_launch(CF32(xt), CF32(dst->src[1]), F32(dst), N, C, hm_op_f32(dst, 0), hm_cuda_stream(ex));
    return HM_OK;
}

/* dx = rs w dy - (rs^3 / C) (sum_j dy_j w_j x_j) x */
static __global__ void rms_norm_back_f32_kernel(const float *dy, const float *x, const float *w, float *dx,
                                                float *rstd, int64_t C, float eps, bool acc)
{
    __shared__ float sh[32];
    const float *xr = x + blockIdx.x * C, *dr = dy + blockIdx.x * C;
    float *dxr = dx + blockIdx.x * C;
    float ss = 0.0f, dot = 0.0f;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
        ss += xr[j] * xr[j];
        dot += dr[j] * w[j] * xr[j];
    }
    ss = hm_block_sum(ss, sh);
    dot = hm_block_sum(dot, sh);
    float rs = 1.0f / sqrtf(ss / (float)C + eps);
    float k = rs * rs * rs * dot / (float)C;
    if (threadIdx.x == 0)
        rstd[blockIdx.x] = rs;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x)
        hm_store(dxr, j, rs * w[j] * dr[j] - k * xr[j], acc);
}

CUDA_KERNEL(rms_norm_back)
{
    const struct hm_tensor *xt = dst->src[1];
    int64_t C = xt->shape[xt->n_dims - 1], N = hm_nrows(xt);
    cudaStream_t stream = hm_cuda_stream(ex);
    HM_ASSERT(ex->ws_bytes >= hm_cuda_workspace_bytes(dst, 0));
    float *rstd = (float *)ex->ws;
    rms_norm_back_f32_kernel<<<(unsigned)N, NORM_THREADS, 0, stream>>>(
        CF32(dst->src[0]), CF32(xt), CF32(dst->src[2]), F32(dst), rstd, C, hm_op_f32(dst, 0), dst->acc & 1);
    HM_CUDA_LAUNCHED();
    if (dst->src[3]) {
        float *partial = (float *)((char *)ex->ws + hm_cuda_align((size_t)N * sizeof(float)));
        hm_cuda_colsum_f32(CF32(dst->src[0]), CF32(xt), rstd, F32(dst->src[3]), partial, N, C, 1.0f,
                           (dst->acc & 2) != 0, stream);
    }
    return HM_OK;
}
