/*
 * trainer.c - the training loop (train.h).
 *
 * One optimizer step = grad_accum micro-batches of batch_size windows per process. The global
 * batch of a step is G = batch * accum * world windows taken from the epoch's seeded order; the
 * micro-batch m of rank r takes windows [(m * world + r) * B, +B) of it, so world processes see
 * exactly the windows one process with a world-times larger batch would. Each micro-batch's loss
 * gradient is seeded with 1 / (accum * world), so the summed gradient is the mean over all of them.
 * The sum over ranks (parallel/ddp.h) overlaps the last micro-batch's backward pass; with ZeRO-1
 * each rank keeps the AdamW moments of its shard only, and rank 0 gathers them to save the state.
 */
#include "parallel/ddp.h"
#include "hermes/chat.h"
#include "hermes/comm.h"
#include "hermes/interrupt.h"
#include "hermes/metrics.h"
#include "hermes/safetensors.h"
#include "hermes/train.h"
#include "util/util.h"

#include <jansson.h>
#include <math.h>
#include <string.h>
#include <sys/resource.h>

struct trainer {
    struct hm_model *model;
    const struct hm_train_opts *o;
    struct hm_comm *comm;
    int rank, world;
    struct hm_optimizer *opt;
    struct hm_ddp *ddp; /* NULL for one process */
    struct hm_train_graph tg;
    const struct hm_token_cache *train, *val;
    struct hm_windows tw, vw; /* training windows; validation windows */
    bool val_from_train;
    uint32_t *perm;
    hm_token *ids, *targets;
    int32_t *doc_start; /* chat data (packed windows) only */
    uint32_t *win; /* window indices of one evaluation batch */
    long steps_per_epoch, total_steps;
    long step;  /* optimizer steps done */
    uint64_t tokens_seen;
    struct hm_metrics *metrics;
    char *path_buf;
};

static char *out_path(struct trainer *t, const char *name)
{
    snprintf(t->path_buf, 4096, "%s/%s", t->o->output_dir, name);
    return t->path_buf;
}

static void fill_batch(struct trainer *t, const struct hm_token_cache *tok, const struct hm_windows *w,
                       const uint32_t *window_ids, int B)
{
    int T = t->o->seq_len;
    for (int b = 0; b < B; b++) {
        uint64_t start = hm_window_start(w, window_ids[b]);
        for (int i = 0; i < T; i++) {
            t->ids[b * T + i] = hm_token_at(tok, start + i);
            t->targets[b * T + i] = hm_token_at(tok, start + i + 1);
        }
        if (tok->flags)
            hm_chat_window_mask(tok->flags, start, T, t->o->no_loss_mask, t->targets + b * T,
                                t->doc_start + b * T);
    }
}

static enum hm_status run_micro(struct trainer *t, bool backward, float *loss)
{
    size_t bytes = (size_t)t->o->batch_size * t->o->seq_len * sizeof(hm_token);
    enum hm_status st;
    if ((st = hm_tensor_set(t->tg.ids, t->ids, bytes)) != HM_OK ||
        (st = hm_tensor_set(t->tg.targets, t->targets, bytes)) != HM_OK ||
        (t->tg.doc_start && (st = hm_tensor_set(t->tg.doc_start, t->doc_start, bytes)) != HM_OK) ||
        (st = hm_graph_forward(t->tg.graph)) != HM_OK)
        return st;
    if (backward && (st = hm_graph_backward(t->tg.graph)) != HM_OK)
        return st;
    return hm_tensor_get(t->tg.loss, loss, sizeof *loss);
}

/* Mean validation loss over up to eval_batches batches of the held-out windows. With world
 * processes an evaluation batch is world * B windows and rank r takes [r * B, +B) of it, so the
 * result is the one a single process with a world-times larger batch would get (up to rounding). */
static enum hm_status evaluate(struct trainer *t, double *val_loss)
{
    const struct hm_windows *w = t->val_from_train ? &t->tw : &t->vw;
    const struct hm_token_cache *tok = t->val_from_train ? t->train : t->val;
    uint64_t first = t->val_from_train ? w->val_first : 0;
    uint64_t n = t->val_from_train ? w->n_val : w->n_total;
    int B = t->o->batch_size;
    uint64_t EB = (uint64_t)B * t->world;
    *val_loss = NAN;
    if (n < EB)
        return HM_OK;
    struct hm_runtime *rt = hm_graph_runtime(t->tg.graph);
    rt->training = false;
    double sum = 0;
    long nb = 0;
    uint32_t *win = t->win;
    enum hm_status st = HM_OK;
    for (uint64_t s = first; s + EB <= first + n && nb < t->o->eval_batches; s += EB, nb++) {
        for (int b = 0; b < B; b++)
            win[b] = (uint32_t)(s + (uint64_t)t->rank * B + b);
        fill_batch(t, tok, w, win, B);
        float l;
        if ((st = run_micro(t, false, &l)) != HM_OK)
            break;
        sum += l;
    }
    rt->training = true;
    if (st != HM_OK)
        return st;
    if (t->comm && t->world > 1) {
        if ((st = hm_comm_allreduce_double(t->comm, &sum)) != HM_OK)
            return st;
        sum /= t->world;
    }
    if (nb)
        *val_loss = sum / (double)nb;
    return st;
}

/* ---- state: weights + moments + position, one file ------------------------------------------ */

/* A token cache's key as saved in the state ("none" without a cache); buf holds 32 bytes. */
static const char *data_key(const struct hm_token_cache *c, char *buf)
{
    if (!c)
        return strcpy(buf, "none");
    snprintf(buf, 32, "%016llx", (unsigned long long)c->key);
    return buf;
}

static char *state_json(struct trainer *t)
{
    json_t *o = json_object();
    json_object_set_new(o, "step", json_integer(t->step));
    json_object_set_new(o, "tokens_seen", json_integer((json_int_t)t->tokens_seen));
    json_object_set_new(o, "seed", json_integer((json_int_t)t->o->seed));
    json_object_set_new(o, "global_batch", json_integer((json_int_t)t->o->batch_size * t->o->grad_accum * t->world));
    json_object_set_new(o, "world_size", json_integer(t->world));
    json_object_set_new(o, "seq_len", json_integer(t->o->seq_len));
    json_object_set_new(o, "stride", json_integer(t->o->stride));
    json_object_set_new(o, "n_train_windows", json_integer((json_int_t)t->tw.n_train));
    json_object_set_new(o, "adamw_t", json_integer(hm_optimizer_steps(t->opt)));
    /* The data's identity (token cache keys: tokenizer and input bytes), checked on resume. */
    char key[32];
    json_object_set_new(o, "data_key", json_string(data_key(t->train, key)));
    if (t->val)
        json_object_set_new(o, "val_data_key", json_string(data_key(t->val, key)));
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

/* ZeRO-1, ranks other than 0: send this rank's shard of m and v to rank 0. */
static enum hm_status send_moments(struct trainer *t)
{
    size_t off, n;
    hm_optimizer_shard(t->opt, &off, &n);
    float *host = hm_malloc(HM_MAX(n, 1) * sizeof(float));
    struct hm_buffer *bufs[2] = {hm_optimizer_m(t->opt), hm_optimizer_v(t->opt)};
    enum hm_status st = host ? HM_OK : hm_fail(HM_ERR_NOMEM, "out of memory saving the optimizer state");
    for (int k = 0; k < 2 && st == HM_OK; k++)
        if ((st = hm_buffer_get(bufs[k], 0, host, n * sizeof(float))) == HM_OK)
            st = hm_comm_send_host(t->comm, host, n * sizeof(float), 0);
    hm_free(host);
    return st;
}

/* The full m and v into host[0, n) and host[n, 2n): this rank's part, and under ZeRO-1 every
 * other rank's shard as it sends it. */
static enum hm_status gather_moments(struct trainer *t, float *host, size_t n)
{
    struct hm_buffer *bufs[2] = {hm_optimizer_m(t->opt), hm_optimizer_v(t->opt)};
    size_t off, cnt;
    hm_optimizer_shard(t->opt, &off, &cnt);
    enum hm_status st = HM_OK;
    for (int k = 0; k < 2 && st == HM_OK; k++)
        st = hm_buffer_get(bufs[k], 0, host + k * n + off, cnt * sizeof(float));
    for (int r = 1; r < t->world && t->o->zero1 && st == HM_OK; r++) {
        hm_comm_shard(t->comm, n, r, &off, &cnt);
        for (int k = 0; k < 2 && st == HM_OK; k++)
            st = hm_comm_recv_host(t->comm, host + k * n + off, cnt * sizeof(float), r);
    }
    return st;
}

/* Rank 0 writes; under ZeRO-1 every rank must call this (the moments are gathered first). */
static enum hm_status save_state(struct trainer *t)
{
    if (t->rank != 0)
        return send_moments(t);
    struct hm_block *blk = hm_model_params(t->model);
    size_t bytes = hm_block_nbytes(blk), n = bytes / sizeof(float);
    int nt = hm_block_n_tensors(blk);
    float *host = hm_malloc(3 * bytes);
    struct hm_st_entry *e = hm_calloc((size_t)nt + 2, sizeof *e);
    char *cfg = hm_config_to_json(hm_model_config(t->model)), *js = state_json(t);
    enum hm_status st = HM_OK;
    if (!host || !e || !cfg || !js) {
        st = hm_fail(HM_ERR_NOMEM, "out of memory saving the training state");
        goto out;
    }
    if ((st = hm_buffer_get(hm_block_data(blk), 0, host, bytes)) != HM_OK ||
        (st = gather_moments(t, host + n, n)) != HM_OK)
        goto out;
    for (int i = 0; i < nt; i++) {
        struct hm_tensor *p = hm_block_tensor(blk, i);
        e[i] = (struct hm_st_entry){.name = p->name, .dtype = HM_ST_F32, .ndim = p->n_dims,
                                    .data = host + hm_block_elem_offset(p)};
        for (int d = 0; d < p->n_dims; d++)
            e[i].shape[d] = p->shape[d];
    }
    e[nt] = (struct hm_st_entry){.name = "optim.m", .dtype = HM_ST_F32, .ndim = 1, .shape = {(int64_t)n},
                                 .data = host + n};
    e[nt + 1] = (struct hm_st_entry){.name = "optim.v", .dtype = HM_ST_F32, .ndim = 1,
                                     .shape = {(int64_t)n}, .data = host + 2 * n};
    struct hm_st_kv meta[2] = {{"config", cfg}, {"train_state", js}};
    if ((st = hm_st_write(out_path(t, "state.safetensors"), e, (size_t)nt + 2, meta, 2)) != HM_OK)
        goto out;
    /* weights.safetensors: the latest weights alone, for generate and fine-tuning. */
    for (int i = 0; i < nt; i++) {
        e[i].dtype = t->o->save_dtype == HM_SAVE_BF16 ? HM_ST_BF16 : HM_ST_F32;
        e[i].data_is_f32 = true;
    }
    st = hm_st_write(out_path(t, "weights.safetensors"), e, (size_t)nt, NULL, 0);
out:
    hm_free(host);
    hm_free(e);
    free(cfg);
    free(js);
    return st;
}

/* Same tokens as the run being resumed, not only as many: files of the same size with other bytes
 * (or another tokenizer) would silently continue on other data. States saved before the keys
 * were recorded have none and are accepted. */
static enum hm_status check_data_keys(struct trainer *t, json_t *js, const char *path)
{
    const char *names[2] = {"data_key", "val_data_key"};
    const struct hm_token_cache *caches[2] = {t->train, t->val};
    const char *what[2] = {"training data (--data)", "validation data (--val-data)"};
    for (int i = 0; i < 2; i++) {
        const char *saved = json_string_value(json_object_get(js, names[i]));
        if (!saved)
            continue;
        char now[32];
        if (strcmp(saved, data_key(caches[i], now)) != 0)
            return hm_fail(HM_ERR_MISMATCH, "%s: the %s or the tokenizer differ from the run being "
                           "resumed (data key %s, saved %s)", path, what[i], now, saved);
    }
    return HM_OK;
}

static enum hm_status load_state(struct trainer *t)
{
    const char *path = out_path(t, "state.safetensors");
    struct hm_st_file *f;
    enum hm_status st = hm_st_open(path, &f);
    if (st != HM_OK)
        return st == HM_ERR_IO ? hm_fail(HM_ERR_IO, "--resume: no training state in %s (%s)",
                                         t->o->output_dir, hm_last_error())
                               : st;
    struct hm_block *blk = hm_model_params(t->model);
    size_t bytes = hm_block_nbytes(blk), n = bytes / sizeof(float);
    float *host = hm_malloc(bytes);
    json_t *js = NULL;
    if (!host) {
        st = hm_fail(HM_ERR_NOMEM, "out of memory loading %s", path);
        goto out;
    }
    const char *meta = hm_st_meta(f, "train_state");
    json_error_t err;
    if (!meta || !(js = json_loads(meta, 0, &err)) || !json_is_object(js)) {
        st = hm_fail(HM_ERR_FORMAT, "%s: missing or malformed train_state metadata", path);
        goto out;
    }
    long global = (long)t->o->batch_size * t->o->grad_accum * t->world;
    long saved_global = (long)json_integer_value(json_object_get(js, "global_batch"));
    long saved_world = (long)json_integer_value(json_object_get(js, "world_size"));
    if (saved_global != global)
        st = hm_fail(HM_ERR_MISMATCH,
                     "%s: saved with a global batch of %ld windows (world size %ld), this run has %ld; "
                     "resume with the same batch x grad-accum x processes",
                     path, saved_global, saved_world, global);
    else if (json_integer_value(json_object_get(js, "seq_len")) != t->o->seq_len ||
             json_integer_value(json_object_get(js, "stride")) != t->o->stride ||
             (uint64_t)json_integer_value(json_object_get(js, "seed")) != t->o->seed ||
             (uint64_t)json_integer_value(json_object_get(js, "n_train_windows")) != t->tw.n_train)
        st = hm_fail(HM_ERR_MISMATCH, "%s: the data, --seq-len, --stride or --seed differ from the "
                     "run being resumed", path);
    if (st == HM_OK)
        st = check_data_keys(t, js, path);
    if (st != HM_OK)
        goto out;
    if ((st = hm_model_load_weights(t->model, path)) != HM_OK)
        goto out;
    const char *names[2] = {"optim.m", "optim.v"};
    struct hm_buffer *bufs[2] = {hm_optimizer_m(t->opt), hm_optimizer_v(t->opt)};
    size_t off, cnt; /* under ZeRO-1 this rank keeps only its shard of the saved moments */
    hm_optimizer_shard(t->opt, &off, &cnt);
    for (int k = 0; k < 2; k++) {
        const struct hm_st_tensor *s;
        if ((st = hm_st_get(f, names[k], &s)) != HM_OK)
            goto out;
        if (s->dtype != HM_ST_F32 || s->numel != n) {
            st = hm_fail(HM_ERR_MISMATCH, "%s: '%s' does not match the model's %zu parameters", path,
                         names[k], n);
            goto out;
        }
        memcpy(host, (const char *)s->data + off * sizeof(float), cnt * sizeof(float));
        if ((st = hm_buffer_set(bufs[k], 0, host, cnt * sizeof(float))) != HM_OK)
            goto out;
    }
    t->step = (long)json_integer_value(json_object_get(js, "step"));
    t->tokens_seen = (uint64_t)json_integer_value(json_object_get(js, "tokens_seen"));
    hm_optimizer_set_steps(t->opt, json_integer_value(json_object_get(js, "adamw_t")));
out:
    json_decref(js);
    hm_free(host);
    hm_st_close(f);
    return st;
}

static enum hm_status save_checkpoint(struct trainer *t, const char *name)
{
    return hm_model_save(t->model, out_path(t, name), t->o->save_dtype);
}

/* ---- the loop --------------------------------------------------------------------------------- */

static uint64_t peak_rss(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)ru.ru_maxrss * 1024;
}

static enum hm_status setup(struct trainer *t)
{
    const struct hm_train_opts *o = t->o;
    enum hm_status st;
    t->val_from_train = t->val == NULL;
    if ((st = hm_windows_init(&t->tw, t->train->n_tokens, o->seq_len, o->stride,
                              t->val_from_train ? o->val_split : 0.0)) != HM_OK)
        return st;
    /* chat windows are disjoint packs of seq_len + 1 tokens: the same stride as training */
    int val_stride = t->val && t->val->flags ? o->stride : o->seq_len;
    if (t->val && (st = hm_windows_init(&t->vw, t->val->n_tokens, o->seq_len, val_stride, 0.0)) != HM_OK)
        return hm_fail(st, "validation data: %s", hm_last_error());
    bool packed = t->train->flags != NULL;
    if (t->val && (t->val->flags != NULL) != packed)
        return hm_fail(HM_ERR_USAGE, "validation data: one of the training and validation sets is chat data "
                       "and the other plain text");
    uint64_t G = (uint64_t)o->batch_size * o->grad_accum * t->world;
    t->steps_per_epoch = (long)(t->tw.n_train / G);
    if (t->steps_per_epoch == 0)
        return hm_fail(HM_ERR_USAGE, "the data gives %llu training windows, fewer than one global batch "
                       "of %llu (batch x grad-accum x processes); use more data or a smaller batch",
                       (unsigned long long)t->tw.n_train, (unsigned long long)G);
    t->total_steps = t->steps_per_epoch * o->epochs;
    if (o->max_steps > 0 && o->max_steps < t->total_steps)
        t->total_steps = o->max_steps;
    t->perm = hm_malloc(t->tw.n_train * sizeof *t->perm);
    t->ids = hm_malloc((size_t)o->batch_size * o->seq_len * sizeof *t->ids);
    t->targets = hm_malloc((size_t)o->batch_size * o->seq_len * sizeof *t->targets);
    t->path_buf = hm_malloc(4096);
    t->win = hm_malloc((size_t)o->batch_size * sizeof *t->win);
    t->doc_start = packed ? hm_malloc((size_t)o->batch_size * o->seq_len * sizeof *t->doc_start) : NULL;
    if (!t->perm || !t->ids || !t->targets || !t->path_buf || !t->win || (packed && !t->doc_start))
        return hm_fail(HM_ERR_NOMEM, "out of memory for %llu window indices", (unsigned long long)t->tw.n_train);
    st = o->zero1 && t->comm ? hm_optimizer_new_zero1(t->model, &o->adamw, t->comm, &t->opt)
                             : hm_optimizer_new(t->model, &o->adamw, &t->opt);
    if (st != HM_OK)
        return st;
    st = packed ? hm_model_build_packed_train_graph(t->model, o->batch_size, o->seq_len, &t->tg)
                : hm_model_build_train_graph(t->model, o->batch_size, o->seq_len, &t->tg);
    if (st != HM_OK)
        return hm_fail(st, "training graph at batch %d x sequence length %d: %s", o->batch_size,
                       o->seq_len, hm_last_error());
    struct hm_ddp_opts dopt = {o->bucket_mb, !o->no_overlap, o->zero1};
    if (t->world > 1 && (st = hm_ddp_new(t->comm, t->model, t->tg.graph, &dopt, &t->ddp)) != HM_OK)
        return st;
    struct hm_runtime *rt = hm_graph_runtime(t->tg.graph);
    rt->seed = o->seed;
    rt->training = true;
    rt->loss_scale = 1.0f / (float)(o->grad_accum * t->world);
    return HM_OK;
}

/* A non-finite loss or gradient: stop, and say which checkpoint is still good. */
static enum hm_status numeric_stop(struct trainer *t, const char *what, double value, long last_saved)
{
    if (last_saved < 0)
        return hm_fail(HM_ERR_NUMERIC, "%s is %g at step %ld; stopping (no checkpoint had been saved yet)",
                       what, value, t->step + 1);
    return hm_fail(HM_ERR_NUMERIC, "%s is %g at step %ld; stopping (the last checkpoint, step %ld, is intact "
                   "in %s)", what, value, t->step + 1, last_saved, t->o->output_dir);
}

static void teardown(struct trainer *t)
{
    hm_metrics_free(t->metrics);
    hm_ddp_free(t->ddp);
    hm_train_graph_free(&t->tg);
    hm_optimizer_free(t->opt);
    hm_free(t->perm);
    hm_free(t->ids);
    hm_free(t->targets);
    hm_free(t->doc_start);
    hm_free(t->path_buf);
    hm_free(t->win);
}

struct hm_train_opts hm_train_opts_default(void)
{
    return (struct hm_train_opts){
        .output_dir = "checkpoints", .batch_size = 32, .seq_len = 256, .stride = 256,
        .grad_accum = 1, .epochs = 1, .max_steps = 0, .seed = 42, .val_split = 0.01,
        .lr = {HM_LR_COSINE, 3e-4, 3e-5, -1, 0, 0.2}, .adamw = hm_adamw_defaults(),
        .log_every = 10, .eval_every = 500, .eval_batches = 20, .save_every = 1000,
        .save_dtype = HM_SAVE_F32, .bucket_mb = 25,
    };
}

enum hm_status hm_train(struct hm_model *m, const struct hm_token_cache *train,
                        const struct hm_token_cache *val, const struct hm_train_opts *o,
                        struct hm_comm *comm, hm_train_progress_fn_t progress, void *user,
                        struct hm_train_summary *summary)
{
    struct trainer t;
    memset(&t, 0, sizeof t);
    t.model = m;
    t.o = o;
    t.comm = comm;
    t.rank = comm ? hm_comm_rank(comm) : 0;
    t.world = comm ? hm_comm_size(comm) : 1;
    t.train = train;
    t.val = val;
    memset(summary, 0, sizeof *summary);
    enum hm_status st = setup(&t);
    if (st != HM_OK)
        goto out;
    if (o->resume && (st = load_state(&t)) != HM_OK)
        goto out;
    if (comm && (st = hm_comm_broadcast_params(comm, m)) != HM_OK)
        goto out;
    struct hm_lr_schedule sched = o->lr;
    if (sched.total_steps <= 0)
        sched.total_steps = t.total_steps;
    if (sched.warmup_steps < 0) /* default: 5% of the run, at most 1000 steps */
        sched.warmup_steps = HM_MIN(1000, t.total_steps / 20);
    if (t.rank == 0 && (st = hm_metrics_open(out_path(&t, "metrics.jsonl"), o->resume ? t.step : -1,
                                             t.total_steps + 16, &t.metrics)) != HM_OK)
        goto out;
    summary->planned_bytes = hm_graph_planned_bytes(t.tg.graph);

    struct hm_runtime *rt = hm_graph_runtime(t.tg.graph);
    struct hm_buffer *grads = hm_block_grads(hm_model_params(m));
    int B = o->batch_size, A = o->grad_accum, W = t.world, T = o->seq_len;
    uint64_t G = (uint64_t)B * A * W;
    long perm_epoch = -1;
    double t0 = hm_time_s(), t_log = t0;
    uint64_t tokens_at_log = t.tokens_seen, tokens_at_start = t.tokens_seen;
    double last_loss = NAN, last_val = NAN;
    long last_saved = o->resume ? t.step : -1;

    while (t.step < t.total_steps) {
        long epoch = t.step / t.steps_per_epoch, in_epoch = t.step % t.steps_per_epoch;
        if (epoch != perm_epoch) {
            hm_epoch_order(o->seed, (uint64_t)epoch, t.perm, t.tw.n_train);
            perm_epoch = epoch;
        }
        if ((st = hm_buffer_zero(grads)) != HM_OK)
            goto out;
        double loss_sum = 0;
        for (int a = 0; a < A; a++) {
            const uint32_t *win = t.perm + (uint64_t)in_epoch * G + ((uint64_t)a * W + t.rank) * B;
            fill_batch(&t, train, &t.tw, win, B);
            rt->step = (uint64_t)t.step;
            rt->sample0 = ((uint64_t)a * W + t.rank) * B; /* win's place in the global batch */
            rt->samples = (uint64_t)B;
            if (t.ddp && a == A - 1) /* earlier micro-batches only accumulate */
                hm_ddp_arm(t.ddp);
            float l;
            if ((st = run_micro(&t, true, &l)) != HM_OK)
                goto out;
            loss_sum += l;
        }
        double loss = loss_sum / A;
        if (t.ddp && (st = hm_ddp_finish(t.ddp, &loss)) != HM_OK)
            goto out;
        if (!isfinite(loss)) {
            st = numeric_stop(&t, "loss", loss, last_saved);
            goto out;
        }
        double lr = hm_lr_at(&sched, t.step), gnorm;
        if ((st = hm_optimizer_step(t.opt, (float)lr, &gnorm)) != HM_OK) {
            if (st == HM_ERR_NUMERIC)
                st = numeric_stop(&t, "gradient norm", gnorm, last_saved);
            goto out;
        }
        t.step++;
        t.tokens_seen += G * (uint64_t)T;
        last_loss = loss;

        bool log = t.step % o->log_every == 0 || t.step == t.total_steps;
        bool eval = (o->eval_every > 0 && t.step % o->eval_every == 0) || t.step == t.total_steps;
        bool epoch_end = t.step % t.steps_per_epoch == 0;
        bool save = (o->save_every > 0 && t.step % o->save_every == 0) || epoch_end ||
                    t.step == t.total_steps;
        double val_loss = NAN;
        if (eval) {
            if ((st = evaluate(&t, &val_loss)) != HM_OK)
                goto out;
            last_val = val_loss;
        }
        double now = hm_time_s();
        double tps = (double)(t.tokens_seen - tokens_at_log) / fmax(now - t_log, 1e-9);
        if (t.rank == 0 && (log || eval)) {
            struct hm_metric_row row = {t.step, epoch, loss, lr, gnorm, tps, val_loss};
            if ((st = hm_metrics_append(t.metrics, &row)) != HM_OK)
                goto out;
            t_log = now;
            tokens_at_log = t.tokens_seen;
        }
        if (progress && t.rank == 0) {
            struct hm_train_progress p = {t.step, t.total_steps, epoch, loss, lr, gnorm, tps,
                                          val_loss, now - t0, log, false};
            progress(&p, user);
        }
        bool stop = hm_interrupt_requested(); /* polled last, so a signal during the step counts */
        if (comm && W > 1) {
            /* Every rank must stop at the same step, or the others wait in the next all-reduce. */
            double any = stop ? 1 : 0;
            if ((st = hm_comm_allreduce_double(comm, &any)) != HM_OK)
                goto out;
            stop = any > 0;
        }
        if (save || stop) {
            if ((t.rank == 0 || o->zero1) && (st = save_state(&t)) != HM_OK)
                goto out;
            if (t.rank == 0) {
                char name[96];
                if (epoch_end) {
                    snprintf(name, sizeof name, "checkpoint_epoch_%ld.safetensors", epoch + 1);
                    if ((st = save_checkpoint(&t, name)) != HM_OK)
                        goto out;
                }
                if (o->save_every > 0 && t.step % o->save_every == 0) {
                    snprintf(name, sizeof name, "checkpoint_step_%ld.safetensors", t.step);
                    if ((st = save_checkpoint(&t, name)) != HM_OK)
                        goto out;
                }
                if ((st = hm_metrics_write_svg(t.metrics, out_path(&t, "loss.svg"))) != HM_OK)
                    goto out;
            }
            if (comm && (st = hm_comm_barrier(comm)) != HM_OK)
                goto out;
            last_saved = t.step;
        }
        if (stop) {
            st = hm_fail(HM_ERR_INTERRUPTED, "interrupted at step %ld of %ld; state saved in %s",
                         t.step, t.total_steps, o->output_dir);
            break;
        }
    }
    double wall = hm_time_s() - t0;
    summary->steps = t.step;
    summary->final_loss = last_loss;
    summary->final_val_loss = last_val;
    summary->tokens_seen = t.tokens_seen;
    summary->wall_s = wall;
    summary->mean_tokens_per_s = (double)(t.tokens_seen - tokens_at_start) / fmax(wall, 1e-9);
    summary->peak_rss_bytes = peak_rss();
    if (t.ddp) {
        const struct hm_ddp_stats *ds = hm_ddp_stats(t.ddp);
        summary->comm_s = ds->exposed_s;
        summary->comm_overlap_s = ds->overlapped_s;
        summary->comm_buckets = ds->n_buckets;
    }
    if (progress && t.rank == 0 && st == HM_OK) {
        struct hm_train_progress p = {t.step, t.total_steps, 0, last_loss, 0, 0,
                                      summary->mean_tokens_per_s, last_val, wall, true, true};
        progress(&p, user);
    }
out:
    teardown(&t);
    return st;
}
