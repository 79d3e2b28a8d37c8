/* attention.cuh - fused causal flash-style attention with GQA, forward and backward (attention.cu). */
#ifndef HERMES_CUDA_ATTENTION_CUH
#define HERMES_CUDA_ATTENTION_CUH

#include "common.cuh"

CUDA_KERNEL(attention);
CUDA_KERNEL(attention_back);

#endif
