/* optim.cuh - fused AdamW and the reductions over f32 ranges used by the trainer (optim.cu). */
#ifndef HERMES_CUDA_OPTIM_CUH
#define HERMES_CUDA_OPTIM_CUH

#include "common.cuh"

enum hm_status hm_cuda_adamw(struct hm_backend *be, float *p, const float *g, float *m, float *v, size_t n,
                             const struct hm_adamw_params *hp);
enum hm_status hm_cuda_sumsq(struct hm_backend *be, const float *x, size_t n, double *out);
enum hm_status hm_cuda_scale_range(struct hm_backend *be, float *x, size_t n, float s);
enum hm_status hm_cuda_is_finite(struct hm_backend *be, const float *x, size_t n, bool *out);

#endif
