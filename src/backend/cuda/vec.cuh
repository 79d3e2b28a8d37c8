/*
 * vec.cuh - 16-byte loads and stores of the storage type (8 bf16 or 4 f32 per access, converted
 * to f32 in registers), and an elementwise map over them. Memory-bound kernels move most of their
 * bytes this way: one 128-bit access per thread instead of eight 16-bit ones.
 */
#ifndef HERMES_CUDA_VEC_CUH
#define HERMES_CUDA_VEC_CUH

#include "common.cuh"

/* Elements of T in 16 bytes. */
template <typename T> struct hm_vec {
    static const int N = 16 / (int)sizeof(T);
};

static inline bool hm_aligned16(const void *p)
{
    return ((uintptr_t)p & 15) == 0;
}

/* v[0..N) = p[i..i+N); N = 1 is the scalar access, N = hm_vec<T>::N needs p + i 16-byte aligned. */
template <int N, typename T> static __device__ __forceinline__ void hm_ldv(const T *p, int64_t i, float *v)
{
    if (N == 1) {
        v[0] = hm_ld(p, i);
    } else {
        uint4 raw = *(const uint4 *)(p + i);
        const uint32_t *w = (const uint32_t *)&raw;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            if (sizeof(T) == 4) {
                v[k] = __uint_as_float(w[k]);
            } else {
                v[2 * k] = __uint_as_float(w[k] << 16);
                v[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
            }
        }
    }
}

template <int N, typename T> static __device__ __forceinline__ void hm_stv(T *p, int64_t i, const float *v)
{
    if (N == 1) {
        hm_st(p, i, v[0]);
    } else {
        uint4 raw;
        uint32_t *w = (uint32_t *)&raw;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            if (sizeof(T) == 4)
                w[k] = __float_as_uint(v[k]);
            else
                w[k] = (uint32_t)hm_cuda_f32_to_bf16_bits(__float_as_uint(v[2 * k])) |
                       (uint32_t)hm_cuda_f32_to_bf16_bits(__float_as_uint(v[2 * k + 1])) << 16;
        }
        *(uint4 *)(p + i) = raw;
    }
}

/* y[i] = f(a[i], b[i % nb]) (y[i] += ... when acc) for i < n, N elements per access; b may be NULL
 * (f gets 0). Each element is read before it is written by the same thread, so y may alias a or b
 * (the planner's in-place reuse). With N > 1 the pointers must be 16-byte aligned and nb a
 * multiple of N; the last n % N elements go one at a time. */
template <int N, typename T, typename F>
static __global__ void hm_map_kernel(const T *a, const T *b, T *y, int64_t n, int64_t nb, F f, bool acc)
{
    int64_t stride = (int64_t)gridDim.x * blockDim.x, first = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    int64_t nv = n / N;
    for (int64_t v = first; v < nv; v += stride) {
        int64_t i = v * N;
        float va[N], vb[N], vy[N];
        hm_ldv<N>(a, i, va);
        if (b)
            hm_ldv<N>(b, i % nb, vb);
        if (acc)
            hm_ldv<N>(y, i, vy);
#pragma unroll
        for (int k = 0; k < N; k++) {
            float r = f(va[k], b ? vb[k] : 0.0f);
            vy[k] = acc ? vy[k] + r : r;
        }
        hm_stv<N>(y, i, vy);
    }
    for (int64_t i = nv * N + first; i < n; i += stride) {
        float r = f(hm_ld(a, i), b ? hm_ld(b, i % nb) : 0.0f);
        hm_store(y, i, r, acc);
    }
}

/* Launches hm_map_kernel 16 bytes wide when the pointers and nb allow, else one element wide. */
template <typename T, typename F>
static void hm_map(const T *a, const T *b, T *y, int64_t n, int64_t nb, F f, bool acc, cudaStream_t stream)
{
    const int N = hm_vec<T>::N;
    bool wide = hm_aligned16(a) && hm_aligned16(y) && (!b || (hm_aligned16(b) && nb % N == 0));
    if (wide)
        hm_map_kernel<N><<<hm_cuda_blocks(n / N + 1, HM_CUDA_THREADS), HM_CUDA_THREADS, 0, stream>>>(a, b, y, n, nb,
                                                                                                  f, acc);
    else
        hm_map_kernel<1><<<hm_cuda_blocks(n, HM_CUDA_THREADS), HM_CUDA_THREADS, 0, stream>>>(a, b, y, n, nb, f, acc);
    HM_CUDA_LAUNCHED();
}

#endif
