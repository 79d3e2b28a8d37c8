/* norm.cuh - RMSNorm forward and backward on the CUDA backend (norm.cu). */
#ifndef HERMES_CUDA_NORM_CUH
#define HERMES_CUDA_NORM_CUH

#include "common.cuh"

CUDA_KERNEL(rms_norm);
CUDA_KERNEL(rms_norm_back);

#endif
