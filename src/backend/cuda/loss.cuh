/* loss.cuh - fused softmax cross-entropy forward and backward (loss.cu). */
#ifndef HERMES_CUDA_LOSS_CUH
#define HERMES_CUDA_LOSS_CUH

#include "common.cuh"

CUDA_KERNEL(cross_entropy);
CUDA_KERNEL(cross_entropy_back);

#endif
