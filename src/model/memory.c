/*
 * memory.c - training memory figures for `info`. Parameters, gradients and the two AdamW moments
 * are exact (4 bytes each per parameter). Activations come from the graph planner run dry on the
 * real training graph (hm_model_memory_planned), or from a closed-form count of what backward keeps
 * per layer (hm_model_memory_estimate) where no backend is at hand.
 */
#include "hermes/model.h"
#include "util/util.h"

#include <unistd.h>

enum hm_status hm_model_memory_estimate(const struct hm_model_config *c, int B, int T,
                                        struct hm_model_memory *out)
{
    if (B < 1 || T < 1)
        return hm_fail(HM_ERR_USAGE, "batch size and sequence length must be positive");
    /* The same sum in doubles first: a batch too large to count in 64 bits is refused here. */
    double dBT = (double)B * T, dKV = (double)c->num_kv_heads * hm_config_head_dim(c);
    double dlayer = dBT * (6.0 * c->hidden_size + 2 * dKV + 3.0 * c->intermediate_size) +
                    (double)B * c->num_heads * T;
    double dact = 4 * ((c->num_layers + 1.0) * dlayer + dBT * (2.0 * c->hidden_size + c->vocab_size));
    if (dact > 0x1p62)
        return hm_fail(HM_ERR_USAGE, "batch %d x sequence length %d: the activations alone would "
                       "need %.3g bytes", B, T, dact);
    uint64_t P = hm_config_param_count(c);
    uint64_t BT = (uint64_t)B * (uint64_t)T, C = c->hidden_size, I = c->intermediate_size;
    uint64_t KV = (uint64_t)c->num_kv_heads * (uint64_t)hm_config_head_dim(c);
    uint64_t n_in = c->activation == HM_ACT_SWIGLU ? 2 : 1;
    /* Saved per layer: two residual inputs, two norm outputs, q, attention output (C each), k and
     * v (KV each), the FFN pre-activations and activation (n_in + 1 of width I), plus the per-head
     * log-sum-exp of the attention. */
    uint64_t per_layer = BT * (6 * C + 2 * KV + (n_in + 1) * I) + (uint64_t)B * c->num_heads * T;
    /* Plus the final norm, the logits (their gradient is written over them in place), and one
     * layer's worth of gradients. */
    uint64_t rest = BT * (2 * C + (uint64_t)c->vocab_size) + per_layer;
    out->dtype = HM_DTYPE_F32;
    out->params_bytes = 4 * P;
    out->copies_bytes = 0;
    out->grads_bytes = 4 * P;
    out->optim_bytes = 8 * P;
    out->activation_bytes = 4 * ((uint64_t)c->num_layers * per_layer + rest);
    out->total_bytes = out->params_bytes + out->grads_bytes + out->optim_bytes + out->activation_bytes;
    out->planned = false;
    return HM_OK;
}

enum hm_status hm_model_memory_planned(const struct hm_model_config *c, int B, int T,
                                       struct hm_backend *be, enum hm_dtype dtype, struct hm_model_memory *out)
{
    enum hm_status st = hm_model_memory_estimate(c, B, T, out);
    if (st != HM_OK)
        return st;
    struct hm_model *m;
    if ((st = hm_model_new(c, NULL, &m)) != HM_OK)
        return st;
    size_t bytes = 0;
    if ((st = hm_model_set_dtype(m, dtype)) == HM_OK)
        st = hm_model_plan_train_bytes(m, be, B, T, &bytes);
    hm_model_free(m);
    if (st != HM_OK)
        return st;
    out->dtype = dtype;
    out->copies_bytes = dtype == HM_DTYPE_F32 ? 0 : out->params_bytes / 4 * hm_dtype_size(dtype);
    out->activation_bytes = bytes;
    out->total_bytes = out->params_bytes + out->copies_bytes + out->grads_bytes + out->optim_bytes + bytes;
    out->planned = true;
    return HM_OK;
}

enum hm_status hm_model_memory_check(const struct hm_model_config *c, int B, int T, bool training)
{
    struct hm_model_memory mm;
    enum hm_status st = hm_model_memory_estimate(c, B, T, &mm);
    if (st != HM_OK)
        return st;
    double gib = 1024.0 * 1024 * 1024;
    double fixed = training ? (double)(mm.params_bytes + mm.grads_bytes + mm.optim_bytes)
                            : (double)mm.params_bytes;
    double act = training ? (double)mm.activation_bytes
                          : (double)hm_config_kv_cache_bytes(c, T, 4);
    double have = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGE_SIZE);
    if (have > 0 && fixed + act > have)
        return hm_fail(HM_ERR_NOMEM, "model %s at batch %d x sequence length %d needs about %.1f GiB "
                       "(%.1f GiB of %s, %.1f GiB of %s); this machine has %.1f GiB",
                       c->name[0] ? c->name : "(config)", B, T, (fixed + act) / gib, fixed / gib,
                       training ? "parameters, gradients and AdamW moments" : "parameters",
                       act / gib, training ? "activations" : "KV cache", have / gib);
    return HM_OK;
}
