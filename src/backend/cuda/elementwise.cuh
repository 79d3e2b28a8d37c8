/*
 * elementwise.cuh - FILL, ADD, MUL, SCALE, REDUCE_ROWS, GELU(+back), SWIGLU(+back), DROPOUT, KV_WRITE
 * on the CUDA backend (elementwise.cu). Semantics are the CPU backend's (src/backend/cpu/
 * elementwise.c): the same acc bits, the same in-place rules, the same dropout hash.
 */
#ifndef HERMES_CUDA_ELEMENTWISE_CUH
#define HERMES_CUDA_ELEMENTWISE_CUH

#include "common.cuh"

/* Deterministic column sums (cuda-host.h): y[c] (+)= s * sum_r x[r][c] (* x2[r][c]) (* rscale[r])
 * over `rows` rows of `n` columns (x2, rscale may be NULL), with partial (chunks, n) f32 scratch.
 * Used by REDUCE_ROWS and the RMSNorm weight gradient. TX, TY: float or uint16_t (bf16). */
template <typename TX, typename TY>
void hm_cuda_colsum(const TX *x, const TX *x2, const float *rscale, TY *y, float *partial, int64_t rows, int64_t n,
                    float s, bool acc, cudaStream_t stream);

#endif
