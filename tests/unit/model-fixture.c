/*
 * model-fixture.c - one backend's model against the PyTorch reference fixtures (tests/reference/
 * model_ref.py): logits, loss, every parameter's gradient, and the parameters after 3 AdamW steps
 * with global-norm clipping and the LR schedule. Shared by test-model-ref (CPU) and
 * test-cuda-model (GPU), so both backends face exactly the same checks.
 *
 * Tolerances (from each fixture's metadata; justified in tests/reference/README.md):
 *   logits and loss:   1e-4 absolute (the reference is float64 math from float32 weights; a float32
 *                      PyTorch run of the same pipeline lands within ~5e-6);
 *   gradients:         ||g_C - g_ref|| / ||g_ref|| <= 1e-3 per tensor;
 *   after 3 steps:     ||θ_C - θ_ref|| / ||θ_ref - θ_0|| <= 2e-2 per tensor and 3e-3 per element,
 *                      because Adam's g / sqrt(v) amplifies float32 rounding of tiny gradients
 *                      (float32 PyTorch itself misses float64 by up to 5e-4 per element);
 *   losses at θ0..θ3:  1e-4 absolute.
 */
#include "model-fixture.h"

#include "hermes/optim.h"
#include "hermes/safetensors.h"
#include "hermes/schedule.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fixture {
    struct hm_st_file *f;
    struct hm_model_config cfg;
    json_t *train, *tol;
    int B, T;
};

static double jnum(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    assert_non_null(v);
    return json_number_value(v);
}

static void open_fixture(const char *name, struct fixture *fx)
{
    char path[512];
    snprintf(path, sizeof path, "%s/model/%s.safetensors", HM_FIXTURES_DIR, name);
    assert_int_equal(hm_st_open(path, &fx->f), HM_OK);
    assert_int_equal(hm_config_parse(hm_st_meta(fx->f, "config"), path, &fx->cfg), HM_OK);
    fx->train = json_loads(hm_st_meta(fx->f, "train"), 0, NULL);
    fx->tol = json_loads(hm_st_meta(fx->f, "tolerances"), 0, NULL);
    assert_non_null(fx->train);
    assert_non_null(fx->tol);
    const struct hm_st_tensor *ids;
    assert_int_equal(hm_st_get(fx->f, "input_ids", &ids), HM_OK);
    fx->B = (int)ids->shape[0];
    fx->T = (int)ids->shape[1];
}

static void close_fixture(struct fixture *fx)
{
    json_decref(fx->train);
    json_decref(fx->tol);
    hm_st_close(fx->f);
}

static float *read_f32(struct hm_st_file *f, const char *name, const struct hm_tensor *like, size_t n)
{
    float *buf = malloc(n * sizeof(float));
    int64_t shape[4];
    for (int d = 0; d < like->n_dims; d++)
        shape[d] = like->shape[d];
    assert_int_equal(hm_st_read_f32(f, name, like->n_dims, shape, buf), HM_OK);
    return buf;
}

/* One forward + backward; the logits are copied to `logits` (if not NULL) between the two, since
 * the backward pass overwrites them with their gradient (model.h). */
static float run_step_logits(struct hm_train_graph *tg, struct hm_model *m, const int32_t *ids,
                             const int32_t *tg_ids, float *logits)
{
    size_t bytes = (size_t)tg->B * tg->T * sizeof(int32_t);
    assert_int_equal(hm_buffer_zero(hm_block_grads(hm_model_params(m))), HM_OK);
    assert_int_equal(hm_tensor_set(tg->ids, ids, bytes), HM_OK);
    assert_int_equal(hm_tensor_set(tg->targets, tg_ids, bytes), HM_OK);
    assert_int_equal(hm_graph_forward(tg->graph), HM_OK);
    if (logits)
        assert_int_equal(hm_tensor_get(tg->logits, logits, hm_nbytes(tg->logits)), HM_OK);
    assert_int_equal(hm_graph_backward(tg->graph), HM_OK);
    float loss;
    assert_int_equal(hm_tensor_get(tg->loss, &loss, sizeof loss), HM_OK);
    return loss;
}

static float run_step(struct hm_train_graph *tg, struct hm_model *m, const int32_t *ids,
                      const int32_t *tg_ids)
{
    return run_step_logits(tg, m, ids, tg_ids, NULL);
}

void check_model_fixture(const char *name, struct hm_backend *be, const char *label)
{
    struct fixture fx;
    open_fixture(name, &fx);
    struct hm_model *m;
    assert_int_equal(hm_model_new(&fx.cfg, be, &m), HM_OK);
    char path[512];
    snprintf(path, sizeof path, "%s/model/%s.safetensors", HM_FIXTURES_DIR, name);
    assert_int_equal(hm_model_load_weights(m, path), HM_OK); /* extra tensors are ignored */

    struct hm_train_graph tg;
    assert_int_equal(hm_model_build_train_graph(m, fx.B, fx.T, &tg), HM_OK);
    size_t BT = (size_t)fx.B * fx.T, V = (size_t)fx.cfg.vocab_size;
    int32_t *ids = malloc(BT * 4), *targets = malloc(BT * 4);
    assert_int_equal(hm_st_read_i32(fx.f, "input_ids", 2, (int64_t[]){fx.B, fx.T}, ids), HM_OK);
    assert_int_equal(hm_st_read_i32(fx.f, "targets", 2, (int64_t[]){fx.B, fx.T}, targets), HM_OK);

    /* Forward: logits and loss. */
    float *logits = malloc(BT * V * 4), *want = malloc(BT * V * 4);
    float loss = run_step_logits(&tg, m, ids, targets, logits);
    assert_int_equal(hm_st_read_f32(fx.f, "expected.logits", 3, (int64_t[]){fx.B, fx.T, (int64_t)V}, want), HM_OK);
    double max_err = 0;
    for (size_t i = 0; i < BT * V; i++)
        max_err = fmax(max_err, fabs((double)logits[i] - want[i]));
    float want_loss;
    assert_int_equal(hm_st_read_f32(fx.f, "expected.loss", 1, (int64_t[]){1}, &want_loss), HM_OK);
    printf("%s (%s): logits max |err| %.3g, loss %.7f vs %.7f\n", name, label, max_err, loss, want_loss);
    assert_true(max_err <= jnum(fx.tol, "logits_abs"));
    assert_true(fabs(loss - want_loss) <= jnum(fx.tol, "loss_abs"));

    /* Gradients, each tensor relative to its norm. */
    struct hm_block *blk = hm_model_params(m);
    double worst = 0;
    for (int i = 0; i < hm_block_n_tensors(blk); i++) {
        struct hm_tensor *p = hm_block_tensor(blk, i);
        size_t n = (size_t)hm_nelements(p);
        float *g = malloc(n * 4);
        assert_int_equal(hm_tensor_get(p->grad, g, n * 4), HM_OK);
        char gname[128];
        snprintf(gname, sizeof gname, "grad.%s", p->name);
        float *gr = read_f32(fx.f, gname, p, n);
        double num = 0, den = 0;
        for (size_t j = 0; j < n; j++) {
            num += ((double)g[j] - gr[j]) * ((double)g[j] - gr[j]);
            den += (double)gr[j] * gr[j];
        }
        double rel = sqrt(num) / fmax(sqrt(den), 1e-30);
        if (rel > jnum(fx.tol, "grad_rel_norm"))
            fail_msg("%s (%s): gradient of %s off by %.3g relative to its norm", name, label, p->name, rel);
        worst = fmax(worst, rel);
        free(g);
        free(gr);
    }
    printf("%s (%s): gradients worst relative error %.3g\n", name, label, worst);

    /* Three AdamW steps on the same batch, with clipping and the schedule. */
    struct hm_adamw_config ac = hm_adamw_defaults();
    ac.grad_clip = (float)jnum(fx.train, "grad_clip");
    ac.beta1 = (float)jnum(fx.train, "beta1");
    ac.beta2 = (float)jnum(fx.train, "beta2");
    ac.eps = (float)jnum(fx.train, "eps");
    ac.weight_decay = (float)jnum(fx.train, "weight_decay");
    struct hm_lr_schedule sched = {HM_LR_COSINE, jnum(fx.train, "lr"), jnum(fx.train, "min_lr"),
                                   (long)jnum(fx.train, "warmup"), (long)jnum(fx.train, "total"), 0};
    struct hm_optimizer *opt;
    assert_int_equal(hm_optimizer_new(m, &ac, &opt), HM_OK);
    size_t total = hm_block_nbytes(blk) / 4;
    float *theta0 = malloc(total * 4);
    assert_int_equal(hm_buffer_get(hm_block_data(blk), 0, theta0, total * 4), HM_OK);
    float want_losses[4], want_norms[3], want_lr[3];
    assert_int_equal(hm_st_read_f32(fx.f, "losses", 1, (int64_t[]){4}, want_losses), HM_OK);
    assert_int_equal(hm_st_read_f32(fx.f, "gradnorm", 1, (int64_t[]){3}, want_norms), HM_OK);
    assert_int_equal(hm_st_read_f32(fx.f, "lr", 1, (int64_t[]){3}, want_lr), HM_OK);
    for (int s = 0; s < 3; s++) {
        float l = s == 0 ? loss : run_step(&tg, m, ids, targets);
        double lr = hm_lr_at(&sched, s), norm;
        assert_true(fabs(lr - want_lr[s]) <= 1e-9 * fmax(1.0, want_lr[s]));
        assert_int_equal(hm_optimizer_step(opt, (float)lr, &norm), HM_OK);
        printf("%s (%s): step %d loss %.6f (want %.6f) grad norm %.6f (want %.6f)\n", name, label, s, l,
               want_losses[s], norm, want_norms[s]);
        assert_true(fabs(l - want_losses[s]) <= jnum(fx.tol, "losses_abs"));
        assert_true(fabs(norm - want_norms[s]) <= 1e-3 * want_norms[s]);
    }
    float l3 = run_step(&tg, m, ids, targets);
    assert_true(fabs(l3 - want_losses[3]) <= jnum(fx.tol, "losses_abs"));
    for (int i = 0; i < hm_block_n_tensors(blk); i++) {
        struct hm_tensor *p = hm_block_tensor(blk, i);
        size_t n = (size_t)hm_nelements(p), off = hm_block_elem_offset(p);
        float *th = malloc(n * 4);
        assert_int_equal(hm_tensor_get(p, th, n * 4), HM_OK);
        char aname[128];
        snprintf(aname, sizeof aname, "adamw3.%s", p->name);
        float *ref = read_f32(fx.f, aname, p, n);
        double num = 0, den = 0, emax = 0;
        for (size_t j = 0; j < n; j++) {
            double d = (double)th[j] - ref[j], u = (double)ref[j] - theta0[off + j];
            num += d * d;
            den += u * u;
            emax = fmax(emax, fabs(d));
        }
        double rel = sqrt(num) / fmax(sqrt(den), 1e-30);
        if (rel > jnum(fx.tol, "adamw3_rel_update") || emax > jnum(fx.tol, "adamw3_abs"))
            fail_msg("%s (%s): %s after 3 AdamW steps: relative %.3g, max abs %.3g", name, label, p->name, rel, emax);
        free(th);
        free(ref);
    }
    hm_optimizer_free(opt);
    free(theta0);
    free(logits), free(want), free(ids), free(targets);
    hm_train_graph_free(&tg);
    hm_model_free(m);
    close_fixture(&fx);
}
