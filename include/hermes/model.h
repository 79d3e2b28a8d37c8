/*
 * model.h - GPT- and LLaMA-style transformer models built on the tensor graph.
 *
 * (The model itself lands with the model issue; this header starts with the memory figures that
 * `info` prints.)
 */
#ifndef HERMES_MODEL_H
#define HERMES_MODEL_H

#include "hermes/config.h"

#ifdef __cplusplus
extern "C" {
#endif

struct hm_model_memory {
    uint64_t params_bytes;     /* f32 parameters */
    uint64_t grads_bytes;      /* f32 gradients */
    uint64_t optim_bytes;      /* AdamW m and v, f32 */
    uint64_t activation_bytes; /* activations, their gradients and workspace at peak */
    uint64_t total_bytes;
    bool planned;              /* activation_bytes comes from the graph planner, not a formula */
};

/* Training memory at micro-batch B and sequence length T. */
HM_API enum hm_status hm_model_memory_estimate(const struct hm_model_config *cfg, int B, int T,
                                               struct hm_model_memory *out);

#ifdef __cplusplus
}
#endif
#endif
