/*
 * common.cuh - shared by every .cu file of the CUDA backend: the backend context, the two error
 * macros, launch geometry, warp/block reductions with a fixed order (so every reduction here is
 * deterministic), the device-side data-error record, and bf16 load/store helpers.
 *
 * Errors:
 *   HM_CUDA_TRY(expr)   a failure the user can cause or hit (allocation, init, copies): returns
 *                       HM_ERR_NOMEM / HM_ERR_DEVICE from the enclosing function with the statement,
 *                       file:line and cudaGetErrorString in hm_last_error().
 *   HM_CUDA_CHECK(expr) after kernel launches inside a step, where a sticky error leaves the context
 *                       unusable anyway: prints one line and aborts (an internal error).
 * Kernel entries (hm_cuda_<op>, declared here for every op of ops.def with a kernel) have three
 * layers: a static __global__ kernel, a static launcher taking a cudaStream_t, and the entry that
 * unpacks the node. Only backend-cuda.cu has extern "C" symbols; everything else here has C++
 * linkage.
 */
#ifndef HERMES_CUDA_COMMON_CUH
#define HERMES_CUDA_COMMON_CUH

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#define HM_HOSTDEV __host__ __device__
extern "C" {
#include "backend/backend-impl.h"
#include "backend/cuda/cuda-host.h"
#include "hermes/ops.h"
#include "util/util.h"
}

/* ---- the backend context ------------------------------------------------------------------- */

/* Data errors found on the device (bad token id / target): per slot, the smallest offending index
 * packed with the offending value (hm_cuda_report), UINT64_MAX when none. Checked at the next
 * synchronisation (hm_tensor_get, hm_backend_synchronize). */
enum { HM_CUDA_ERR_EMBEDDING = 0, HM_CUDA_ERR_CROSS_ENTROPY, HM_CUDA_ERR_SLOTS };
struct hm_cuda_err_slot {
    int64_t limit; /* V of the last launch that could report */
};

struct hm_mm_cache;         /* matmul.cu: cuBLASLt algorithm cache */
struct hm_cuda_graph_cache; /* graph-capture.cu: recorded node sequences */

struct hm_cuda_ctx {
    int device;
    int sm_count;
    size_t smem_optin;              /* max dynamic shared memory per block after opt-in */
    cudaStream_t stream;            /* every kernel and copy of this backend runs here, in order */
    cublasLtHandle_t lt;
    void *lt_ws;                    /* cuBLASLt workspace */
    size_t lt_ws_bytes;
    bool tf32;                      /* HM_CUDA_TF32=1: TF32 tensor cores for f32 matmuls */
    bool attn_reference;            /* HM_CUDA_ATTN=reference: scalar attention kernels only */
    double *red;                    /* HM_CUDA_REDUCE_BLOCKS partials + 1 result */
    int *flag;                      /* is_finite */
    unsigned long long *err;        /* [HM_CUDA_ERR_SLOTS] smallest bad index, or ~0 */
    struct hm_cuda_err_slot err_slot[HM_CUDA_ERR_SLOTS];
    struct hm_mm_cache *mm;
    struct hm_cuda_graph_cache *graphs; /* HM_CUDA_GRAPH=1; NULL: kernels are launched one by one */
};

static inline struct hm_cuda_ctx *hm_cuda_ctx_of(const struct hm_exec *ex)
{
    return (struct hm_cuda_ctx *)ex->be->context;
}
static inline cudaStream_t hm_cuda_stream(const struct hm_exec *ex)
{
    return hm_cuda_ctx_of(ex)->stream;
}

/* ---- errors -------------------------------------------------------------------------------- */

enum hm_status hm_cuda_fail(cudaError_t e, const char *expr, const char *file, int line);
void hm_cuda_abort(cudaError_t e, const char *expr, const char *file, int line) __attribute__((noreturn));

#define HM_CUDA_TRY(expr)                                                                          \
    do {                                                                                           \
        cudaError_t e_ = (expr);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            return hm_cuda_fail(e_, #expr, __FILE__, __LINE__);                                    \
    } while (0)
#define HM_CUDA_CHECK(expr)                                                                        \
    do {                                                                                           \
        cudaError_t e_ = (expr);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            hm_cuda_abort(e_, #expr, __FILE__, __LINE__);                                          \
    } while (0)
/* After every launch: catches bad launch configurations at once. */
#define HM_CUDA_LAUNCHED() HM_CUDA_CHECK(cudaGetLastError())

/* ---- launch geometry ----------------------------------------------------------------------- */

#define HM_CUDA_THREADS 256
/* Blocks for a grid-stride loop over n items (capped; the loops stride over the rest). */
static inline unsigned hm_cuda_blocks(int64_t n, int threads)
{
    int64_t b = (n + threads - 1) / threads;
    if (b < 1)
        b = 1;
    return (unsigned)(b > (1 << 20) ? (1 << 20) : b);
}

/* ---- fixed-order reductions ---------------------------------------------------------------- */

template <typename T> static __device__ __forceinline__ T hm_warp_sum(T v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
static __device__ __forceinline__ float hm_warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
/* Sum over a block of blockDim.x (a multiple of 32, <= 1024) threads; every thread gets the
 * result. `sh` holds 32 T. The order is fixed by the thread layout, so results are reproducible. */
template <typename T> static __device__ __forceinline__ T hm_block_sum(T v, T *sh)
{
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = hm_warp_sum(v);
    __syncthreads(); /* sh may still be read from a previous call */
    if (lane == 0)
        sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : (T)0;
    return hm_warp_sum(v);
}
static __device__ __forceinline__ float hm_block_max(float v, float *sh)
{
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = hm_warp_max(v);
    __syncthreads();
    if (lane == 0)
        sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : -INFINITY;
    return hm_warp_max(v);
}

/* ---- data errors --------------------------------------------------------------------------- */

/* The value travels with its index: by the time the host looks, the ids buffer may hold the next
 * batch or be freed. The smallest index wins (deterministic); indices saturate at 2^32 - 2. */
static __device__ __forceinline__ void hm_cuda_report(unsigned long long *err, int slot, int64_t index,
                                                      int32_t value)
{
    unsigned long long i = index < 0xfffffffeLL ? (unsigned long long)index : 0xfffffffeull;
    atomicMin(&err[slot], i << 32 | (uint32_t)value);
}

/* ---- bf16 (storage type; arithmetic is always f32) ----------------------------------------- */

static __device__ __forceinline__ float hm_ld(const float *p, int64_t i)
{
    return p[i];
}
static __device__ __forceinline__ float hm_ld(const uint16_t *p, int64_t i)
{
    return __uint_as_float(hm_cuda_bf16_bits_to_f32(p[i]));
}
static __device__ __forceinline__ void hm_st(float *p, int64_t i, float v)
{
    p[i] = v;
}
static __device__ __forceinline__ void hm_st(uint16_t *p, int64_t i, float v)
{
    p[i] = hm_cuda_f32_to_bf16_bits(__float_as_uint(v));
}

/* y[i] = v, or y[i] += v when acc (dst->acc bits). */
template <typename T> static __device__ __forceinline__ void hm_store(T *y, int64_t i, float v, bool acc)
{
    hm_st(y, i, acc ? hm_ld(y, i) + v : v);
}

#define CF32(t) ((const float *)(t)->data)
#define F32(t) ((float *)(t)->data)
/* Storage pointers of a tensor whose element type is the template parameter T (float, or
 * uint16_t holding bf16 bits); hm_ld / hm_st convert. */
#define PTR(T, t) ((T *)(t)->data)
#define CPTR(T, t) ((const T *)(t)->data)

/* Run the statement with T = float or T = uint16_t (bf16 storage) as `dtype` says. Nodes keep
 * one activation dtype; the exceptions (f32 parameter gradients, lse, the loss) are f32 always
 * or get a second HM_DISPATCH. */
#define HM_DISPATCH(dtype, T, ...)                                                                 \
    do {                                                                                           \
        if ((dtype) == HM_DTYPE_BF16) {                                                            \
            typedef uint16_t T;                                                                    \
            __VA_ARGS__;                                                                           \
        } else {                                                                                   \
            typedef float T;                                                                       \
            __VA_ARGS__;                                                                           \
        }                                                                                          \
    } while (0)

#define CUDA_KERNEL(name) enum hm_status hm_cuda_##name(const struct hm_exec *ex, struct hm_tensor *dst)
/* One entry per op of ops.def with a kernel; backend-cuda.cu fills its table from the same list,
 * so an op without a CUDA kernel fails the link. */
#define HM_OP(NAME, name, ...) CUDA_KERNEL(name);
#define HM_OP_PSEUDO(...)
#include "hermes/ops.def"
#undef HM_OP_PSEUDO
#undef HM_OP

#endif
