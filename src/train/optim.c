/* optim.c - AdamW with global-norm clipping (optim.h), optionally sharded over ranks (ZeRO-1). */
#include "hermes/optim.h"
#include "hermes/comm.h"
#include "util/util.h"

#include <math.h>

struct hm_optimizer {
    struct hm_model *model;
    struct hm_adamw_config cfg;
    struct hm_buffer *m, *v;
    size_t n, n_decay; /* elements this optimizer updates; the block's decayed prefix */
    int64_t t;
    /* The range [off, off + n) of the block it updates (ZeRO-1: this rank's shard; otherwise all
     * of it): p and g are views of that range of the parameters and gradients, and a ZeRO-1 comm
     * sums the norm over ranks and gathers the updated shards. */
    size_t off;
    struct hm_buffer *p, *g;
    struct hm_comm *comm;
};

struct hm_adamw_config hm_adamw_defaults(void)
{
    return (struct hm_adamw_config){0.9f, 0.95f, 1e-8f, 0.1f, 1.0f};
}

static enum hm_status optimizer_new(struct hm_model *model, const struct hm_adamw_config *cfg,
                                    struct hm_comm *comm, struct hm_optimizer **out)
{
    struct hm_optimizer *o = hm_calloc(1, sizeof *o);
    if (!o)
        return hm_fail(HM_ERR_NOMEM, "out of memory creating the optimizer");
    o->model = model;
    o->cfg = *cfg;
    o->comm = comm;
    struct hm_block *blk = hm_model_params(model);
    if (!hm_block_grads(blk)) {
        hm_free(o);
        return hm_fail(HM_ERR_USAGE, "the optimizer needs a model with gradients (hm_model_new)");
    }
    o->n = hm_block_nbytes(blk) / sizeof(float);
    o->n_decay = (size_t)hm_model_n_decay(model);
    if (comm)
        hm_comm_shard(comm, o->n, hm_comm_rank(comm), &o->off, &o->n);
    size_t off = o->off * sizeof(float), bytes = o->n * sizeof(float);
    struct hm_backend *be = hm_model_backend(model);
    enum hm_status st;
    if ((st = hm_buffer_view(hm_block_data(blk), off, bytes, &o->p)) != HM_OK ||
        (st = hm_buffer_view(hm_block_grads(blk), off, bytes, &o->g)) != HM_OK ||
        (st = hm_buffer_new(be, HM_MAX(bytes, 4), &o->m)) != HM_OK ||
        (st = hm_buffer_new(be, HM_MAX(bytes, 4), &o->v)) != HM_OK || /* an empty shard */
        (st = hm_buffer_zero(o->m)) != HM_OK || (st = hm_buffer_zero(o->v)) != HM_OK) {
        hm_optimizer_free(o);
        return st;
    }
    *out = o;
    return HM_OK;
}

enum hm_status hm_optimizer_new(struct hm_model *model, const struct hm_adamw_config *cfg,
                                struct hm_optimizer **out)
{
    return optimizer_new(model, cfg, NULL, out);
}

enum hm_status hm_optimizer_new_zero1(struct hm_model *model, const struct hm_adamw_config *cfg,
                                      struct hm_comm *comm, struct hm_optimizer **out)
{
    return optimizer_new(model, cfg, comm, out);
}

void hm_optimizer_free(struct hm_optimizer *o)
{
    if (!o)
        return;
    hm_buffer_free(o->p);
    hm_buffer_free(o->g);
    hm_buffer_free(o->m);
    hm_buffer_free(o->v);
    hm_free(o);
}

enum hm_status hm_optimizer_grad_norm(struct hm_optimizer *o, double *norm)
{
    double ss;
    enum hm_status st = hm_buffer_sumsq(o->g, 0, o->n, &ss);
    if (st == HM_OK && o->comm) /* the full gradient's norm: shard sums added in double */
        st = hm_comm_allreduce_double(o->comm, &ss);
    if (st == HM_OK)
        *norm = sqrt(ss);
    return st;
}

enum hm_status hm_optimizer_step(struct hm_optimizer *o, float lr, double *grad_norm)
{
    double norm;
    enum hm_status st = hm_optimizer_grad_norm(o, &norm);
    if (st != HM_OK)
        return st;
    *grad_norm = norm;
    if (!isfinite(norm))
        return hm_fail(HM_ERR_NUMERIC, "gradient norm is %g at optimizer step %lld", norm,
                       (long long)(o->t + 1));
    /* Clipping scales the gradient inside the update, not in a pass of its own over it. */
    float gs = o->cfg.grad_clip > 0 && norm > o->cfg.grad_clip ? (float)(o->cfg.grad_clip / norm) : 1.0f;
    o->t++;
    struct hm_adamw_params hp = {lr, o->cfg.beta1, o->cfg.beta2, o->cfg.eps, o->cfg.weight_decay, o->t, gs};
    /* Weight decay is per tensor: the decayed tensors are the block's prefix [0, n_decay). */
    size_t nd = o->n_decay > o->off ? HM_MIN(o->n, o->n_decay - o->off) : 0;
    if (nd && (st = hm_backend_adamw(o->p, o->g, o->m, o->v, 0, nd, &hp)) != HM_OK)
        return st;
    hp.weight_decay = 0.0f;
    if (o->n > nd && (st = hm_backend_adamw(o->p, o->g, o->m, o->v, nd, o->n - nd, &hp)) != HM_OK)
        return st;
    if (o->comm && (st = hm_comm_all_gather(o->comm, hm_block_data(hm_model_params(o->model)))) != HM_OK)
        return st; /* every rank's updated shard to every rank */
    return hm_model_weights_changed(o->model); /* the bf16 copies follow the f32 masters */
}

void hm_optimizer_shard(const struct hm_optimizer *o, size_t *offset, size_t *n)
{
    *offset = o->off;
    *n = o->n;
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
