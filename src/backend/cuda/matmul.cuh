/* matmul.cuh - MATMUL through cuBLASLt with the bias fused in the epilogue (matmul.cu). */
#ifndef HERMES_CUDA_MATMUL_CUH
#define HERMES_CUDA_MATMUL_CUH

#include "common.cuh"

enum hm_status hm_cuda_mm_cache_new(struct hm_mm_cache **out);
void hm_cuda_mm_cache_free(struct hm_mm_cache *c);

#endif
