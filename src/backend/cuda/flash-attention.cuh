/* flash-attention.cuh - tensor-core (mma.sync bf16) causal GQA attention for head dims 64 and 128,
 * forward and backward (flash-attention.cu). attention.cu calls these when they apply and keeps its
 * scalar kernels for everything else and as the reference (HM_CUDA_ATTN=reference). */
#ifndef HERMES_CUDA_FLASH_ATTENTION_CUH
#define HERMES_CUDA_FLASH_ATTENTION_CUH

#include "common.cuh"

/* True when the node (ATTENTION or ATTENTION_BACK) can run on the tensor-core kernels: bf16, head
 * dim 64 or 128, 16-byte aligned tensors, enough shared memory, and not forced off. */
bool hm_cuda_flash_applies(const struct hm_exec *ex, const struct hm_tensor *dst);

/* Same arguments and semantics as hm_cuda_attention / hm_cuda_attention_back; `pos` is the first
 * query's position, `D` the (B, NH, T) f32 workspace of rowsum(dout * out) that the backward uses. */
void hm_cuda_flash_forward(const struct hm_exec *ex, struct hm_tensor *dst, int64_t pos);
void hm_cuda_flash_backward(const struct hm_exec *ex, struct hm_tensor *dst, int64_t pos, const float *D);

#endif
