/* optim.cuh - fused AdamW, the reductions over f32 ranges used by the trainer, and the f32/bf16
 * conversion of the weight copies (optim.cu). */
#ifndef HERMES_CUDA_OPTIM_CUH
#define HERMES_CUDA_OPTIM_CUH

#include "common.cuh"

enum hm_status hm_cuda_adamw(struct hm_backend *be, float *p, const float *g, float *m, float *v, size_t n,
                             const struct hm_adamw_params *hp);
enum hm_status hm_cuda_sumsq(struct hm_backend *be, const float *x, size_t n, double *out);
enum hm_status hm_cuda_scale_range(struct hm_backend *be, float *x, size_t n, float s);
enum hm_status hm_cuda_is_finite(struct hm_backend *be, const float *x, size_t n, bool *out);
enum hm_status hm_cuda_convert(struct hm_backend *be, void *dst, enum hm_dtype dst_type, const void *src,
                               enum hm_dtype src_type, size_t n);

#endif
