/*
 * elementwise.cu - elementwise ops, the deterministic column sum behind GRAD_ACC, and KV_WRITE.
 * Every kernel is a grid-stride loop in which element i is read before it is written, so the
 * planner's in-place reuse (dst == a source, plan.c can_inplace) is safe, as on the CPU.
 */
#include "elementwise.cuh"

/* ---- FILL ---------------------------------------------------------------------------------- */

static __global__ void fill_f32_kernel(float *y, int64_t n, float v)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = v;
}

static void fill_f32_launch(float *y, int64_t n, float v, cudaStream_t stream)
{
    fill_f32_kernel<<<hm_cuda_blocks(n, HM_CUDA_THREADS), HM_CUDA_THREADS, 0, stream>>>(y, n, v);
    HM_CUDA_LAUNCHED();
}

CUDA_KERNEL(fill)
{
    float v = dst->op_params[1] ? ex->rt->loss_scale : hm_op_f32(dst, 0);
    fill_f32_launch(F32(dst), hm_nelements(dst), v, hm_cuda_stream(ex));
    return HM_OK;
}

/* ---- ADD (b broadcast over leading rows), MUL, SCALE ----------------------------------------- */

enum ew_kind { EW_ADD, EW_MUL, EW_SCALE };

template <int K>
static __global__ void binary_f32_kernel(const float *a, const float *b, float *y, int64_t n, int64_t nb,
                                         float s, bool acc)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float v;
        if (K == EW_ADD)
            v = a[i] + b[nb == n ? i : i % nb];
        else if (K == EW_MUL)
            v = a[i] * b[i];
        else
            v = s * a[i];
        hm_store(y, i, v, acc);
    }
}

template <int K>
static void binary_f32_launch(const float *a, const float *b, float *y, int64_t n, int64_t nb, float s,
                              bool acc, cudaStream_t stream)
{
    binary_f32_kernel<K><<<hm_cuda_blocks(n, HM_CUDA_THREADS), HM_CUDA_THREADS, 0, stream>>>(a, b, y, n, nb, s,
                                                                                            acc);
    HM_CUDA_LAUNCHED();
}

CUDA_KERNEL(add)
{
    binary_f32_launch<EW_ADD>(CF32(dst->src[0]), CF32(dst->src[1]), F32(dst), hm_nelements(dst),
                              hm_nelements(dst->src[1]), 1.0f, dst->acc & 1, hm_cuda_stream(ex));
    return HM_OK;
}

CUDA_KERNEL(mul)
{
    binary_f32_launch<EW_MUL>(CF32(dst->src[0]), CF32(dst->src[1]), F32(dst), hm_nelements(dst),
                              hm_nelements(dst), 1.0f, dst->acc & 1, hm_cuda_stream(ex));
    return HM_OK;
}

CUDA_KERNEL(scale)
{
    binary_f32_launch<EW_SCALE>(CF32(dst->src[0]), NULL, F32(dst), hm_nelements(dst), hm_nelements(dst),
                                hm_op_f32(dst, 0), dst->acc & 1, hm_cuda_stream(ex));
    return HM_OK;
}

/* ---- deterministic column sums (GRAD_ACC, RMSNorm dw) ---------------------------------------- */

/* partial[k][c] = sum over rows [k*rpc, (k+1)*rpc) of x[r][c] (* x2[r][c]) (* rscale[r]), in row
 * order. grid (ceil(n / threads), chunks). */
static __global__ void colsum_pass1_f32_kernel(const float *x, const float *x2, const float *rscale,
                                               float *partial, int64_t rows, int64_t n, int64_t rpc)
{
    int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (c >= n)
        return;
    int64_t r0 = blockIdx.y * rpc, r1 = r0 + rpc < rows ? r0 + rpc : rows;
    float s = 0.0f;
    for (int64_t r = r0; r < r1; r++)
        s += x[r * n + c] * (x2 ? x2[r * n + c] : 1.0f) * (rscale ? rscale[r] : 1.0f);
    partial[blockIdx.y * n + c] = s;
}

/* y[c] (+)= s * sum_k partial[k][c], chunks summed in order in double. */
static __global__ void colsum_pass2_f32_kernel(const float *partial, float *y, int64_t n, int chunks,
                                               float s, bool acc)
{
    int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (c >= n)
        return;
    double sum = 0.0;
    for (int k = 0; k < chunks; k++)
        sum += partial[k * n + c];
    hm_store(y, c, s * (float)sum, acc);
}

void hm_cuda_colsum_f32(const float *x, const float *x2, const float *rscale, float *y, float *partial, int64_t rows,
                        int64_t n, float s, bool acc, cudaStream_t stream)
{
    int chunks = hm_cuda_colsum_chunks(rows);
    int64_t rpc = hm_cuda_colsum_rows_per_chunk(rows, chunks);
    dim3 grid((unsigned)((n + HM_CUDA_THREADS - 1) / HM_CUDA_THREADS), (unsigned)chunks);
    colsum_pass1_f32_kernel<<<grid, HM_CUDA_THREADS, 0, stream>>>(x, x2, rscale, partial, rows, n, rpc);
    HM_CUDA_LAUNCHED();
    colsum_pass2_f32_kernel<<<grid.x, HM_CUDA_THREADS, 0, stream>>>(partial, y, n, chunks, s, acc);
    HM_CUDA_LAUNCHED();
}

CUDA_KERNEL(grad_acc)
{
    int64_t n = hm_nelements(dst), rows = hm_nelements(dst->src[0]) / n;
    float s = hm_op_f32(dst, 0);
    bool acc = dst->acc & 1;
    if (rows == 1) {
        binary_f32_launch<EW_SCALE>(CF32(dst->src[0]), NULL, F32(dst), n, n, s, acc, hm_cuda_stream(ex));
        return HM_OK;
    }
    HM_ASSERT(ex->ws_bytes >= hm_cuda_workspace_bytes(dst, 0));
    hm_cuda_colsum_f32(CF32(dst->src[0]), NULL, NULL, F32(dst), (float *)ex->ws, rows, n, s, acc,
                       hm_cuda_stream(ex));
    return HM_OK;
}

/* ---- GELU (exact, erf), SwiGLU --------------------------------------------------------------- */

static __device__ __forceinline__ float gelu_grad(float x)
{
    const float inv_sqrt_2pi = 0.3989422804014327f;
    float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
    return cdf + x * inv_sqrt_2pi * expf(-0.5f * x * x);
}
static __device__ __forceinline__ float sigmoidf_(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

static __global__ void gelu_f32_kernel(const float *x, float *y, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float xi = x[i];
        y[i] = 0.5f * xi * (1.0f + erff(xi * 0.70710678118654752f));
    }
}

static __global__ void gelu_back_f32_kernel(const float *dy, const float *x, float *dx, int64_t n, bool acc)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        hm_store(dx, i, dy[i] * gelu_grad(x[i]), acc);
}

static __global__ void swiglu_f32_kernel(const float *g, const float *u, float *y, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float gi = g[i];
        y[i] = gi * sigmoidf_(gi) * u[i];
    }
}

/* dgate = dy u s (1 + g (1 - s)), dup = dy g s, s = sigmoid(g) */
static __global__ void swiglu_back_f32_kernel(const float *dy, const float *g, const float *u, float *dg,
                                              float *du, int64_t n, bool acc_g, bool acc_u)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float gi = g[i], s = sigmoidf_(gi), d = dy[i];
        float vg = d * u[i] * s * (1.0f + gi * (1.0f - s));
        if (du)
            hm_store(du, i, d * gi * s, acc_u);
        hm_store(dg, i, vg, acc_g);
    }
}

CUDA_KERNEL(gelu)
{
    int64_t n = hm_nelements(dst);
    gelu_f32_kernel<<<hm_cuda_blocks(n, HM_CUDA_THREADS), HM_CUDA_THREADS, 0, hm_cuda_stream(ex)>>>(
        CF32(dst->src[0]), F32(dst), n);
    HM_CUDA_LAUNCHED();
    return HM_OK;
}

CUDA_KERNEL(gelu_back)
{
    int64_t n = hm_nelements(dst);
    gelu_back_f32_kernel<<<hm_cuda_blocks(n, HM_CUDA_THREADS), HM_CUDA_THREADS, 0, hm_cuda_stream(ex)>>>(
        CF32(dst->src[0]), CF32(dst->src[1]), F32(dst), n, dst->acc & 1);
    HM_CUDA_LAUNCHED();
    return HM_OK;
}

CUDA_KERNEL(swiglu)
{
    int64_t n = hm_nelements(dst);
    swiglu_f32_kernel<<<hm_cuda_blocks(n, HM_CUDA_THREADS), HM_CUDA_THREADS, 0, hm_cuda_stream(ex)>>>(
        CF32(dst->src[0]), CF32(dst->src[1]), F32(dst), n);
    HM_CUDA_LAUNCHED();
    return HM_OK;
}

CUDA_KERNEL(swiglu_back)
{
    int64_t n = hm_nelements(dst);
    float *du = dst->src[3] ? F32(dst->src[3]) : NULL;
    swiglu_back_f32_kernel<<<hm_cuda_blocks(n, HM_CUDA_THREADS), HM_CUDA_THREADS, 0, hm_cuda_stream(ex)>>>(
        CF32(dst->src[0]), CF32(dst->src[1]), CF32(dst->src[2]), F32(dst), du, n, dst->acc & 1,
        (dst->acc & 2) != 0);
    HM_CUDA_LAUNCHED();
    return HM_OK;
}

/* ---- DROPOUT: the CPU's counter-based hash (core-impl.h), so masks match across backends ------ */

static __global__ void dropout_f32_kernel(const float *x, float *y, int64_t n, uint64_t seed, uint64_t step,
                                          uint32_t id, uint32_t thr, float scale, bool acc)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float keep = hm_dropout_bits(seed, step, id, (uint64_t)i) >= thr ? scale : 0.0f;
        hm_store(y, i, x[i] * keep, acc);
    }
}

CUDA_KERNEL(dropout)
{
    int64_t n = hm_nelements(dst);
    bool acc = dst->acc & 1;
    cudaStream_t stream = hm_cuda_stream(ex);
    if (!ex->rt->training) {
        binary_f32_launch<EW_SCALE>(CF32(dst->src[0]), NULL, F32(dst), n, n, 1.0f, acc, stream);
        return HM_OK;
    }
    float p = hm_op_f32(dst, 0);
    dropout_f32_kernel<<<hm_cuda_blocks(n, HM_CUDA_THREADS), HM_CUDA_THREADS, 0, stream>>>(
        CF32(dst->src[0]), F32(dst), n, ex->rt->seed, ex->rt->step, (uint32_t)dst->op_params[1],
        hm_dropout_threshold(p), 1.0f / (1.0f - p), acc);
    HM_CUDA_LAUNCHED();
    return HM_OK;
}

/* ---- KV_WRITE: cache[:, pos:pos+T] = x -------------------------------------------------------- */

CUDA_KERNEL(kv_write)
{
    const struct hm_tensor *x = dst->src[1];
    int64_t B = x->shape[0], T = x->shape[1], S = dst->shape[1];
    int64_t row = x->shape[2] * x->shape[3], pos = ex->rt->pos;
    if (pos < 0 || pos + T > S)
        return hm_fail(HM_ERR_USAGE, "kv_write: positions %lld..%lld exceed the cache length %lld",
                       (long long)pos, (long long)(pos + T - 1), (long long)S);
    size_t w = (size_t)(T * row) * sizeof(float);
    HM_CUDA_CHECK(cudaMemcpy2DAsync(F32(dst) + pos * row, (size_t)(S * row) * sizeof(float), CF32(x), w, w,
                                    (size_t)B, cudaMemcpyDeviceToDevice, hm_cuda_stream(ex)));
    return HM_OK;
}
