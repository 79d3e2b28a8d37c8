/* rope.cuh - rotary position embedding (half-split) forward and backward (rope.cu). */
#ifndef HERMES_CUDA_ROPE_CUH
#define HERMES_CUDA_ROPE_CUH

#include "common.cuh"

CUDA_KERNEL(rope);
CUDA_KERNEL(rope_back);

#endif
