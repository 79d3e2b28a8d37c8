/*
 * elementwise.cu - elementwise ops, the deterministic column sum behind REDUCE_ROWS, and KV_WRITE.
 * Every kernel is a grid-stride loop in which element i is read before it is written, so the
 * planner's in-place reuse (dst == a source, plan.c can_inplace) is safe, as on the CPU.
 * Storage is f32 or bf16 (template T; hm_ld / hm_st convert), arithmetic always f32, so bf16
 * results equal the CPU's bf16 path (f32 on widened inputs, rounded once). ADD, MUL, SCALE, GELU
 * (+back) and SWIGLU go through hm_map (vec.cuh): 16-byte accesses where the pointers allow.
 */
#include "elementwise.cuh"
#include "vec.cuh"

/* ---- FILL ---------------------------------------------------------------------------------- */

template <typename T> static __global__ void fill_kernel(T *y, int64_t n, float v)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        hm_st(y, i, v);
}

CUDA_KERNEL(fill)
{
    float v = dst->op_params[1] ? ex->rt->loss_scale : hm_op_f32(dst, 0);
    int64_t n = hm_nelements(dst);
    HM_DISPATCH(dst->type, T, fill_kernel<<<hm_cuda_blocks(n, HM_CUDA_THREADS), HM_CUDA_THREADS, 0,
                                             hm_cuda_stream(ex)>>>(PTR(T, dst), n, v));
    HM_CUDA_LAUNCHED();
    return HM_OK;
}

/* ---- ADD (b broadcast over leading rows), MUL, SCALE ----------------------------------------- */

/* y = s * a with a source type TA and a destination type TY: REDUCE_ROWS of one row into an
 * f32 parameter gradient (the same-type ops use hm_map). */
template <typename TA, typename TY>
static __global__ void scale_kernel(const TA *a, TY *y, int64_t n, float s, bool acc)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        hm_store(y, i, s * hm_ld(a, i), acc);
}

/* Functors for hm_map (vec.cuh): f(a, b) of one element, f32. */
struct ew_add {
    __device__ float operator()(float a, float b) const { return a + b; }
};
struct ew_mul {
    __device__ float operator()(float a, float b) const { return a * b; }
};
struct ew_scale {
    float s;
    __device__ float operator()(float a, float) const { return s * a; }
};

/* dst = f(src[0], src[1]) over dst's n elements and dtype; unary functors (binary false) get no
 * second input. The plain elementwise kernels are each one call of this. */
template <typename F>
static enum hm_status ew_run(const struct hm_exec *ex, struct hm_tensor *dst, F f, bool binary,
                             bool acc)
{
    int64_t n = hm_nelements(dst);
    HM_DISPATCH(dst->type, T,
                hm_map(CPTR(T, dst->src[0]), binary ? CPTR(T, dst->src[1]) : (const T *)NULL,
                       PTR(T, dst), n, n, f, acc, hm_cuda_stream(ex)));
    return HM_OK;
}

CUDA_KERNEL(add)
{
    HM_DISPATCH(dst->type, T,
                hm_map(CPTR(T, dst->src[0]), CPTR(T, dst->src[1]), PTR(T, dst), hm_nelements(dst),
                       hm_nelements(dst->src[1]), ew_add{}, dst->acc & 1, hm_cuda_stream(ex)));
    return HM_OK;
}

CUDA_KERNEL(mul)
{
    return ew_run(ex, dst, ew_mul{}, true, dst->acc & 1);
}

CUDA_KERNEL(scale)
{
    return ew_run(ex, dst, ew_scale{hm_op_f32(dst, 0)}, false, dst->acc & 1);
}

/* ---- deterministic column sums (REDUCE_ROWS, RMSNorm dw) ---------------------------------------- */

/* partial[k][c] = sum over rows [k*rpc, (k+1)*rpc) of x[r][c] (* x2[r][c]) (* rscale[r]), in row
 * order. grid (ceil(n / threads), chunks). */
template <typename TX>
static __global__ void colsum_pass1_kernel(const TX *x, const TX *x2, const float *rscale, float *partial,
                                           int64_t rows, int64_t n, int64_t rpc)
{
    int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (c >= n)
        return;
    int64_t r0 = blockIdx.y * rpc, r1 = r0 + rpc < rows ? r0 + rpc : rows;
    float s = 0.0f;
    for (int64_t r = r0; r < r1; r++)
        s += hm_ld(x, r * n + c) * (x2 ? hm_ld(x2, r * n + c) : 1.0f) * (rscale ? rscale[r] : 1.0f);
    partial[blockIdx.y * n + c] = s;
}

/* y[c] (+)= s * sum_k partial[k][c], chunks summed in order in double. */
template <typename TY>
static __global__ void colsum_pass2_kernel(const float *partial, TY *y, int64_t n, int chunks, float s, bool acc)
{
    int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (c >= n)
        return;
    double sum = 0.0;
    for (int k = 0; k < chunks; k++)
        sum += partial[k * n + c];
    hm_store(y, c, s * (float)sum, acc);
}

template <typename TX, typename TY>
void hm_cuda_colsum(const TX *x, const TX *x2, const float *rscale, TY *y, float *partial, int64_t rows, int64_t n,
                    float s, bool acc, cudaStream_t stream)
{
    int chunks = hm_cuda_colsum_chunks(rows);
    int64_t rpc = hm_cuda_colsum_rows_per_chunk(rows, chunks);
    dim3 grid((unsigned)((n + HM_CUDA_THREADS - 1) / HM_CUDA_THREADS), (unsigned)chunks);
    colsum_pass1_kernel<<<grid, HM_CUDA_THREADS, 0, stream>>>(x, x2, rscale, partial, rows, n, rpc);
    HM_CUDA_LAUNCHED();
    colsum_pass2_kernel<<<grid.x, HM_CUDA_THREADS, 0, stream>>>(partial, y, n, chunks, s, acc);
    HM_CUDA_LAUNCHED();
}
template void hm_cuda_colsum(const float *, const float *, const float *, float *, float *, int64_t, int64_t, float,
                             bool, cudaStream_t);
template void hm_cuda_colsum(const float *, const float *, const float *, uint16_t *, float *, int64_t, int64_t,
                             float, bool, cudaStream_t);
template void hm_cuda_colsum(const uint16_t *, const uint16_t *, const float *, float *, float *, int64_t, int64_t,
                             float, bool, cudaStream_t);
template void hm_cuda_colsum(const uint16_t *, const uint16_t *, const float *, uint16_t *, float *, int64_t,
                             int64_t, float, bool, cudaStream_t);

/* dst (f32 parameter gradient, or an activation gradient of the node's dtype) from src. */
CUDA_KERNEL(reduce_rows)
{
    int64_t n = hm_nelements(dst), rows = hm_nelements(dst->src[0]) / n;
    float s = hm_op_f32(dst, 0);
    bool acc = dst->acc & 1;
    cudaStream_t stream = hm_cuda_stream(ex);
    HM_ASSERT(rows == 1 || ex->ws_bytes >= hm_cuda_workspace_bytes(dst, 0));
    HM_DISPATCH(dst->src[0]->type, TS, HM_DISPATCH(dst->type, TD, {
        if (rows == 1) {
            scale_kernel<<<hm_cuda_blocks(n, HM_CUDA_THREADS), HM_CUDA_THREADS, 0, stream>>>(
                CPTR(TS, dst->src[0]), PTR(TD, dst), n, s, acc);
            HM_CUDA_LAUNCHED();
        } else {
            hm_cuda_colsum(CPTR(TS, dst->src[0]), (const TS *)NULL, (const float *)NULL, PTR(TD, dst),
                           (float *)ex->ws, rows, n, s, acc, stream);
        }
    }));
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

struct ew_gelu {
    __device__ float operator()(float x, float) const { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
};
struct ew_gelu_back { /* f(dy, x) */
    __device__ float operator()(float dy, float x) const { return dy * gelu_grad(x); }
};
struct ew_swiglu { /* f(gate, up) */
    __device__ float operator()(float g, float u) const { return g * sigmoidf_(g) * u; }
};

/* dgate = dy u s (1 + g (1 - s)), dup = dy g s, s = sigmoid(g) */
template <typename T>
static __global__ void swiglu_back_kernel(const T *dy, const T *g, const T *u, T *dg, T *du, int64_t n, bool acc_g,
                                          bool acc_u)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float gi = hm_ld(g, i), s = sigmoidf_(gi), d = hm_ld(dy, i);
        float vg = d * hm_ld(u, i) * s * (1.0f + gi * (1.0f - s));
        if (du)
            hm_store(du, i, d * gi * s, acc_u);
        hm_store(dg, i, vg, acc_g);
    }
}

#define EW_GRID(n) hm_cuda_blocks(n, HM_CUDA_THREADS), HM_CUDA_THREADS, 0, hm_cuda_stream(ex)

CUDA_KERNEL(gelu)
{
    return ew_run(ex, dst, ew_gelu{}, false, false);
}

CUDA_KERNEL(gelu_back)
{
    return ew_run(ex, dst, ew_gelu_back{}, true, dst->acc & 1);
}

CUDA_KERNEL(swiglu)
{
    return ew_run(ex, dst, ew_swiglu{}, true, false);
}

CUDA_KERNEL(swiglu_back)
{
    int64_t n = hm_nelements(dst);
    HM_DISPATCH(dst->type, T, {
        T *du = dst->src[3] ? PTR(T, dst->src[3]) : NULL;
        swiglu_back_kernel<<<EW_GRID(n)>>>(CPTR(T, dst->src[0]), CPTR(T, dst->src[1]), CPTR(T, dst->src[2]),
                                           PTR(T, dst), du, n, dst->acc & 1, (dst->acc & 2) != 0);
    });
    HM_CUDA_LAUNCHED();
    return HM_OK;
}

/* ---- DROPOUT: the CPU's counter-based hash (hermes/ops.h), so masks match across backends ------ */

template <typename T>
static __global__ void dropout_kernel(const T *x, T *y, int64_t n, uint64_t seed, uint64_t step, uint32_t id,
                                      uint64_t off, uint32_t thr, float scale, bool acc)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float keep = hm_dropout_bits(seed, step, id, off + (uint64_t)i) >= thr ? scale : 0.0f;
        hm_store(y, i, hm_ld(x, i) * keep, acc);
    }
}

CUDA_KERNEL(dropout)
{
    int64_t n = hm_nelements(dst);
    bool acc = dst->acc & 1;
    cudaStream_t stream = hm_cuda_stream(ex);
    float p = hm_op_f32(dst, 0);
    HM_DISPATCH(dst->type, T, {
        if (!ex->rt->training)
            hm_map(CPTR(T, dst->src[0]), (const T *)NULL, PTR(T, dst), n, n, ew_scale{1.0f}, acc, stream);
        else
            dropout_kernel<<<EW_GRID(n)>>>(CPTR(T, dst->src[0]), PTR(T, dst), n, ex->rt->seed, ex->rt->step,
                                           (uint32_t)dst->op_params[1],
                                           hm_dropout_offset(ex->rt->sample0, ex->rt->samples, n),
                                           hm_dropout_threshold(p),
                                           1.0f / (1.0f - p), acc);
    });
    HM_CUDA_LAUNCHED();
    return HM_OK;
}

/* ---- KV_WRITE: cache[:, pos:pos+T] = x, a copy of f32 or bf16 rows --------------------------- */

CUDA_KERNEL(kv_write)
{
    struct hm_kv_write_geom g;
    enum hm_status st = hm_kv_write_geom_init(ex, dst, &g);
    size_t w = (size_t)(g.T * g.row) * g.es; /* one batch row of x: a 2D copy of B rows */
    if (st == HM_OK) /* else positions past the cache: nothing is copied */
        HM_CUDA_CHECK(cudaMemcpy2DAsync((char *)dst->data + (size_t)(g.pos * g.row) * g.es,
                                        (size_t)(g.S * g.row) * g.es, g.x->data, w, w, (size_t)g.B,
                                        cudaMemcpyDeviceToDevice, hm_cuda_stream(ex)));
    return st;
}
