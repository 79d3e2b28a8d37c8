/*
 * optim.h - AdamW with global-norm gradient clipping over a model's parameter block.
 *
 * The moments m and v are two more buffers with the parameter block's layout, so one step is:
 * the global gradient norm (one deterministic reduction), then two fused AdamW calls (decayed
 * range, then the norms and biases) that apply the clipping factor to each gradient as they read
 * it (no pass of its own over the gradient block). With
 * ZeRO-1 each rank does that for its shard of the block only.
 */
#ifndef HERMES_OPTIM_H
#define HERMES_OPTIM_H

#include "hermes/model.h"

#ifdef __cplusplus
extern "C" {
#endif

struct hm_comm;

struct hm_adamw_config {
    float beta1;        /* 0.9 */
    float beta2;        /* 0.95 */
    float eps;          /* 1e-8, added after the square root */
    float weight_decay; /* 0.1, matrices and the embedding only */
    float grad_clip;    /* global L2 norm bound; 0 = off */
};

HM_API struct hm_adamw_config hm_adamw_defaults(void);

struct hm_optimizer;

HM_API enum hm_status hm_optimizer_new(struct hm_model *m, const struct hm_adamw_config *cfg,
                                       struct hm_optimizer **out);
/*
 * ZeRO-1: the same AdamW, with m and v only for this rank's shard of the parameter block
 * (hm_comm_shard: 1/world of the elements, contiguous; weight decay still follows the tensors).
 * Only that shard's gradients are read, so they need only be summed there (hm_comm_reduce_scatter).
 * The clipping norm is the full gradient's (shard sums of squares all-reduced in double), and
 * after the update the shards are all-gathered, so every rank holds the same parameters. The
 * norm and the step are collective: every rank calls them together. `comm` is borrowed.
 */
HM_API enum hm_status hm_optimizer_new_zero1(struct hm_model *m, const struct hm_adamw_config *cfg,
                                             struct hm_comm *comm, struct hm_optimizer **out);
HM_API void hm_optimizer_free(struct hm_optimizer *o);

/* Global L2 norm of the gradient block. */
HM_API enum hm_status hm_optimizer_grad_norm(struct hm_optimizer *o, double *norm);

/*
 * One optimizer step at learning rate `lr` on the gradients already accumulated (and averaged):
 * measures the global norm (returned in *grad_norm, before clipping), fails with HM_ERR_NUMERIC if
 * it is not finite (parameters untouched), clips to grad_clip, then applies AdamW with step t+1.
 * The gradient block is left as accumulated (unclipped); the caller zeroes it before the next
 * accumulation.
 */
HM_API enum hm_status hm_optimizer_step(struct hm_optimizer *o, float lr, double *grad_norm);

HM_API int64_t hm_optimizer_steps(const struct hm_optimizer *o);
/* Moments, for checkpoints: buffers with the layout of the parameter block's elements
 * [offset, offset + n) given by hm_optimizer_shard (the whole block unless ZeRO-1). */
HM_API struct hm_buffer *hm_optimizer_m(const struct hm_optimizer *o);
HM_API struct hm_buffer *hm_optimizer_v(const struct hm_optimizer *o);
HM_API void hm_optimizer_shard(const struct hm_optimizer *o, size_t *offset, size_t *n);
HM_API void hm_optimizer_set_steps(struct hm_optimizer *o, int64_t t);

#ifdef __cplusplus
}
#endif
#endif
