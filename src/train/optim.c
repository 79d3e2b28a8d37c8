/* optim.c - AdamW with global-norm clipping (optim.h). */
#include "hermes/optim.h"
#include "util/util.h"

#include <math.h>

struct hm_optimizer {
    struct hm_model *model;
    struct hm_adamw_config cfg;
    struct hm_buffer *m, *v;
    size_t n, n_decay;
    int64_t t;
};

struct hm_adamw_config hm_adamw_defaults(void)
{
    return (struct hm_adamw_config){0.9f, 0.95f, 1e-8f, 0.1f, 1.0f};
}

enum hm_status hm_optimizer_new(struct hm_model *model, const struct hm_adamw_config *cfg,
                                struct hm_optimizer **out)
{
    struct hm_optimizer *o = hm_calloc(1, sizeof *o);
    if (!o)
        return hm_fail(HM_ERR_NOMEM, "out of memory creating the optimizer");
    o->model = model;
    o->cfg = *cfg;
    struct hm_block *blk = hm_model_params(model);
    size_t bytes = hm_block_nbytes(blk);
    o->n = bytes / sizeof(float);
    o->n_decay = (size_t)hm_model_n_decay(model);
    enum hm_status st;
    if ((st = hm_buffer_new(hm_model_backend(model), bytes, &o->m)) != HM_OK ||
        (st = hm_buffer_new(hm_model_backend(model), bytes, &o->v)) != HM_OK ||
        (st = hm_buffer_zero(o->m)) != HM_OK || (st = hm_buffer_zero(o->v)) != HM_OK) {
        hm_optimizer_free(o);
        return st;
    }
    *out = o;
    return HM_OK;
}

void hm_optimizer_free(struct hm_optimizer *o)
{
    if (!o)
        return;
    hm_buffer_free(o->m);
    hm_buffer_free(o->v);
    hm_free(o);
}

enum hm_status hm_optimizer_grad_norm(struct hm_optimizer *o, double *norm)
{
    double ss;
    enum hm_status st = hm_buffer_sumsq(hm_block_grads(hm_model_params(o->model)), 0, o->n, &ss);
    if (st == HM_OK)
        *norm = sqrt(ss);
    return st;
}

enum hm_status hm_optimizer_step(struct hm_optimizer *o, float lr, double *grad_norm)
{
    struct hm_block *blk = hm_model_params(o->model);
    struct hm_buffer *grads = hm_block_grads(blk);
    double norm;
    enum hm_status st = hm_optimizer_grad_norm(o, &norm);
    if (st != HM_OK)
        return st;
    *grad_norm = norm;
    if (!isfinite(norm))
        return hm_fail(HM_ERR_NUMERIC, "gradient norm is %g at optimizer step %lld", norm,
                       (long long)(o->t + 1));
    if (o->cfg.grad_clip > 0 && norm > o->cfg.grad_clip &&
        (st = hm_buffer_scale(grads, 0, o->n, (float)(o->cfg.grad_clip / norm))) != HM_OK)
        return st;
    o->t++;
    struct hm_adamw_params hp = {lr, o->cfg.beta1, o->cfg.beta2, o->cfg.eps, o->cfg.weight_decay, o->t};
    struct hm_buffer *data = hm_block_data(blk);
    if (o->n_decay && (st = hm_backend_adamw(data, grads, o->m, o->v, 0, o->n_decay, &hp)) != HM_OK)
        return st;
    hp.weight_decay = 0.0f;
    if (o->n > o->n_decay &&
        (st = hm_backend_adamw(data, grads, o->m, o->v, o->n_decay, o->n - o->n_decay, &hp)) != HM_OK)
        return st;
    return hm_model_weights_changed(o->model); /* the bf16 copies follow the f32 masters */
}

int64_t hm_optimizer_steps(const struct hm_optimizer *o)
{
    return o->t;
}

struct hm_buffer *hm_optimizer_m(const struct hm_optimizer *o)
{
    return o->m;
}

struct hm_buffer *hm_optimizer_v(const struct hm_optimizer *o)
{
    return o->v;
}

void hm_optimizer_set_steps(struct hm_optimizer *o, int64_t t)
{
    o->t = t;
}
