/*
 * optim.cu - optimizer and reductions over f32 element ranges of a block (the trainer calls them
 * once per range, and the model declares all its parameters in one block, so AdamW is one fused
 * launch over every parameter: a multi-tensor update by construction). Bias corrections are
 * computed on the host in double and rounded to f32 exactly as the CPU backend does.
 * The sum of squares (global grad norm) is deterministic: HM_CUDA_REDUCE_BLOCKS fixed contiguous
 * slices, each summed in double with a fixed tree, then one block sums the partials in order. The
 * result does not depend on the GPU model; it differs from the CPU's only by summation order.
 */
#include "optim.cuh"

static __global__ void adamw_f32_kernel(float *p, const float *g, float *m, float *v, int64_t n, float lr,
                                        float b1, float b2, float eps, float wd, float bc1, float bc2,
                                        float gs)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        hm_adamw_elem(&p[i], g[i], &m[i], &v[i], lr, b1, b2, eps, wd, bc1, bc2, gs);
    }
}

enum hm_status hm_cuda_adamw(struct hm_backend *be, float *p, const float *g, float *m, float *v, size_t n,
                             const struct hm_adamw_params *hp)
{
    struct hm_cuda_ctx *cx = (struct hm_cuda_ctx *)be->context;
    if (n == 0)
        return HM_OK;
    float bc1 = (float)(1.0 - pow((double)hp->beta1, (double)hp->t));
    float bc2 = (float)(1.0 - pow((double)hp->beta2, (double)hp->t));
    adamw_f32_kernel<<<hm_cuda_blocks((int64_t)n, HM_CUDA_THREADS), HM_CUDA_THREADS, 0, cx->stream>>>(
        p, g, m, v, (int64_t)n, hp->lr, hp->beta1, hp->beta2, hp->eps, hp->weight_decay, bc1, bc2,
        hp->grad_scale);
    HM_CUDA_TRY(cudaGetLastError());
    return HM_OK;
}

static __global__ void sumsq_pass1_kernel(const float *x, int64_t n, int64_t per_block, double *partial)
{
    __shared__ double sh[32];
    int64_t lo = blockIdx.x * per_block, hi = lo + per_block < n ? lo + per_block : n;
    double s = 0.0;
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x)
        s += (double)x[i] * (double)x[i];
    s = hm_block_sum(s, sh);
    if (threadIdx.x == 0)
        partial[blockIdx.x] = s;
}

/* One block of HM_CUDA_REDUCE_BLOCKS threads: out = sum of the partials. */
static __global__ void sum_partials_kernel(const double *partial, double *out)
{
    __shared__ double sh[32];
    double s = hm_block_sum(partial[threadIdx.x], sh);
    if (threadIdx.x == 0)
        *out = s;
}

enum hm_status hm_cuda_sumsq(struct hm_backend *be, const float *x, size_t n, double *out)
{
    struct hm_cuda_ctx *cx = (struct hm_cuda_ctx *)be->context;
    int64_t per_block = ((int64_t)n + HM_CUDA_REDUCE_BLOCKS - 1) / HM_CUDA_REDUCE_BLOCKS;
    sumsq_pass1_kernel<<<HM_CUDA_REDUCE_BLOCKS, HM_CUDA_REDUCE_THREADS, 0, cx->stream>>>(x, (int64_t)n, per_block,
                                                                                        cx->red);
    HM_CUDA_TRY(cudaGetLastError());
    sum_partials_kernel<<<1, HM_CUDA_REDUCE_BLOCKS, 0, cx->stream>>>(cx->red, cx->red + HM_CUDA_REDUCE_BLOCKS);
    HM_CUDA_TRY(cudaGetLastError());
    HM_CUDA_TRY(cudaMemcpyAsync(out, cx->red + HM_CUDA_REDUCE_BLOCKS, sizeof(double), cudaMemcpyDeviceToHost,
                                cx->stream));
    HM_CUDA_TRY(cudaStreamSynchronize(cx->stream));
    return HM_OK;
}

static __global__ void scale_f32_kernel(float *x, int64_t n, float s)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] *= s;
}

enum hm_status hm_cuda_scale_range(struct hm_backend *be, float *x, size_t n, float s)
{
    struct hm_cuda_ctx *cx = (struct hm_cuda_ctx *)be->context;
    if (n == 0)
        return HM_OK;
    scale_f32_kernel<<<hm_cuda_blocks((int64_t)n, HM_CUDA_THREADS), HM_CUDA_THREADS, 0, cx->stream>>>(x, (int64_t)n,
                                                                                                  s);
    HM_CUDA_TRY(cudaGetLastError());
    return HM_OK;
}

static __global__ void is_finite_kernel(const float *x, int64_t n, int *bad)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        if (!isfinite(x[i]))
            *bad = 1; /* every writer stores the same value: race-free in effect */
}

enum hm_status hm_cuda_is_finite(struct hm_backend *be, const float *x, size_t n, bool *out)
{
    struct hm_cuda_ctx *cx = (struct hm_cuda_ctx *)be->context;
    int bad = 0;
    HM_CUDA_TRY(cudaMemsetAsync(cx->flag, 0, sizeof(int), cx->stream));
    if (n > 0) {
        is_finite_kernel<<<hm_cuda_blocks((int64_t)n, HM_CUDA_THREADS), HM_CUDA_THREADS, 0, cx->stream>>>(
            x, (int64_t)n, cx->flag);
        HM_CUDA_TRY(cudaGetLastError());
    }
    HM_CUDA_TRY(cudaMemcpyAsync(&bad, cx->flag, sizeof(int), cudaMemcpyDeviceToHost, cx->stream));
    HM_CUDA_TRY(cudaStreamSynchronize(cx->stream));
    *out = !bad;
    return HM_OK;
}

/* ---- f32 <-> bf16 over a range: the bf16 weight copies ------------------------------------- */

template <typename TI, typename TO> static __global__ void convert_kernel(const TI *x, TO *y, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        hm_st(y, i, hm_ld(x, i));
}

enum hm_status hm_cuda_convert(struct hm_backend *be, void *dst, enum hm_dtype dst_type, const void *src,
                               enum hm_dtype src_type, size_t n)
{
    struct hm_cuda_ctx *cx = (struct hm_cuda_ctx *)be->context;
    unsigned blocks = hm_cuda_blocks((int64_t)n, HM_CUDA_THREADS);
    if (n == 0)
        return HM_OK;
    if (dst_type == HM_DTYPE_BF16 && src_type == HM_DTYPE_F32)
        convert_kernel<<<blocks, HM_CUDA_THREADS, 0, cx->stream>>>((const float *)src, (uint16_t *)dst, (int64_t)n);
    else if (dst_type == HM_DTYPE_F32 && src_type == HM_DTYPE_BF16)
        convert_kernel<<<blocks, HM_CUDA_THREADS, 0, cx->stream>>>((const uint16_t *)src, (float *)dst, (int64_t)n);
    else if (dst_type == src_type)
        HM_CUDA_TRY(cudaMemcpyAsync(dst, src, n * hm_dtype_size(src_type), cudaMemcpyDeviceToDevice, cx->stream));
    else
        return hm_fail(HM_ERR_UNSUPPORTED, "cuda: no conversion from %s to %s", hm_dtype_name(src_type),
                       hm_dtype_name(dst_type));
    HM_CUDA_TRY(cudaGetLastError());
    return HM_OK;
}
