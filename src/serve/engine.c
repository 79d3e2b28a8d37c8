/*
 * engine.c - the continuous-batching engine's lifecycle (engine.h): options, the KV cache and
 * the step graphs made once, the bounded request queue, cancellation, drain, stats, and the
 * engine thread, which between steps ends cancelled requests (freeing their slots) and admits
 * waiting ones, then runs a step (engine-step.c).
 */
#include "serve/engine-impl.h"
#include "util/util.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <time.h>

enum { MAX_SLOTS = 4096 };

struct hm_engine_opts hm_engine_opts_default(void)
{
    return (struct hm_engine_opts){.max_batch = 16, .ctx_len = 0, .prefill_chunk = 64,
                                   .max_queue = 64};
}

struct hm_engine_request hm_engine_request_default(void)
{
    return (struct hm_engine_request){.max_new_tokens = 16, .sampling = hm_sampler_opts_default()};
}

/* ---- requests -------------------------------------------------------------------------------- */

static void seq_free(struct hm_engine_seq *s)
{
    if (!s)
        return;
    hm_sampler_free(s->sampler);
    hm_free(s->tokens);
    hm_free(s);
}

/* Report s as done and free it: engine thread, mutex not held. */
static void seq_done(struct hm_engine *e, struct hm_engine_seq *s, enum hm_finish_reason why,
                     enum hm_status st)
{
    s->res.finish = why;
    s->res.status = st;
    s->res.prompt_tokens = s->rq.n_prompt;
    s->res.total_s = hm_time_s() - s->t_submit;
    if (s->rq.on_done)
        s->rq.on_done(&s->res, s->rq.user);
    seq_free(s);
    pthread_mutex_lock(&e->mu);
    e->in_flight--;
    pthread_cond_broadcast(&e->idle);
    pthread_mutex_unlock(&e->mu);
}

void hm_engine_finish(struct hm_engine *e, struct hm_engine_seq *s, enum hm_finish_reason why,
                      enum hm_status st)
{
    pthread_mutex_lock(&e->mu);
    for (int j = 0; j < e->n_running; j++)
        if (e->running[j] == s) {
            memmove(&e->running[j], &e->running[j + 1],
                    (size_t)(e->n_running - j - 1) * sizeof *e->running);
            e->n_running--;
            break;
        }
    e->slot_used[s->slot] = false;
    pthread_mutex_unlock(&e->mu);
    seq_done(e, s, why, st);
}

static enum hm_status check_request(const struct hm_engine *e, const struct hm_engine_request *rq)
{
    if (rq->n_prompt < 1 || !rq->prompt)
        return hm_fail(HM_ERR_USAGE, "engine: the prompt is empty: give at least one token");
    if (rq->n_prompt > e->o.ctx_len)
        return hm_fail(HM_ERR_USAGE, "engine: the prompt has %d tokens, more than the context "
                       "of %d", rq->n_prompt, e->o.ctx_len);
    if (rq->max_new_tokens < 0)
        return hm_fail(HM_ERR_USAGE, "engine: max_new_tokens must be >= 0, got %d",
                       rq->max_new_tokens);
    if (rq->n_stop_ids < 0 || rq->n_stop_ids > HM_ENGINE_MAX_STOP_IDS)
        return hm_fail(HM_ERR_USAGE, "engine: %d stop ids: at most %d", rq->n_stop_ids,
                       HM_ENGINE_MAX_STOP_IDS);
    for (int i = 0; i < rq->n_prompt; i++)
        if (rq->prompt[i] < 0 || rq->prompt[i] >= e->V)
            return hm_fail(HM_ERR_USAGE, "engine: prompt token id %d is outside the vocabulary "
                           "(%d)", rq->prompt[i], e->V);
    return HM_OK;
}

/* A queued request: its own copy of the prompt with room for every token it may sample. */
static enum hm_status seq_new(const struct hm_engine *e, const struct hm_engine_request *rq,
                              struct hm_engine_seq **out)
{
    struct hm_engine_seq *s = hm_calloc(1, sizeof *s);
    if (!s)
        return hm_fail(HM_ERR_NOMEM, "engine: out of memory for a request");
    s->rq = *rq;
    s->slot = -1;
    s->tokens = hm_malloc((size_t)(e->o.ctx_len + 1) * sizeof *s->tokens);
    enum hm_status st = s->tokens ? hm_sampler_new(e->V, &rq->sampling, &s->sampler)
                                  : hm_fail(HM_ERR_NOMEM, "engine: out of memory for a request");
    if (st != HM_OK) {
        seq_free(s);
        return st;
    }
    memcpy(s->tokens, rq->prompt, (size_t)rq->n_prompt * sizeof *s->tokens);
    s->n_tokens = rq->n_prompt;
    s->rq.prompt = s->tokens;
    s->t_submit = hm_time_s();
    *out = s;
    return HM_OK;
}

enum hm_status hm_engine_submit(struct hm_engine *e, const struct hm_engine_request *rq,
                                uint64_t *id)
{
    enum hm_status st = check_request(e, rq);
    struct hm_engine_seq *s = NULL;
    if (st != HM_OK || (st = seq_new(e, rq, &s)) != HM_OK)
        return st;
    pthread_mutex_lock(&e->mu);
    if (e->draining || e->stop)
        st = hm_fail(HM_ERR_INTERRUPTED, "engine: draining, no new requests");
    else if (e->q_len >= e->o.max_queue)
        st = hm_fail(HM_ERR_BUSY, "engine: %d requests are already waiting (max_queue)", e->q_len);
    if (st == HM_OK) {
        s->id = *id = ++e->next_id;
        e->queue[(e->q_head + e->q_len++) % e->o.max_queue] = s;
        e->in_flight++;
        pthread_cond_signal(&e->work);
    }
    pthread_mutex_unlock(&e->mu);
    if (st != HM_OK)
        seq_free(s);
    return st;
}

void hm_engine_cancel(struct hm_engine *e, uint64_t id)
{
    pthread_mutex_lock(&e->mu);
    for (int i = 0; i < e->q_len; i++) {
        struct hm_engine_seq *s = e->queue[(e->q_head + i) % e->o.max_queue];
        if (s->id == id)
            s->cancel = true;
    }
    for (int j = 0; j < e->n_running; j++)
        if (e->running[j]->id == id)
            e->running[j]->cancel = true;
    pthread_cond_signal(&e->work);
    pthread_mutex_unlock(&e->mu);
}

/* Mark everything accepted as cancelled (mutex held). */
static void cancel_all(struct hm_engine *e)
{
    for (int i = 0; i < e->q_len; i++)
        e->queue[(e->q_head + i) % e->o.max_queue]->cancel = true;
    for (int j = 0; j < e->n_running; j++)
        e->running[j]->cancel = true;
}

static void now_plus(struct timespec *ts, double seconds)
{
    clock_gettime(CLOCK_REALTIME, ts);
    double whole = floor(seconds);
    ts->tv_sec += (time_t)whole;
    ts->tv_nsec += (long)((seconds - whole) * 1e9);
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

enum hm_status hm_engine_drain(struct hm_engine *e, double timeout_s)
{
    struct timespec until;
    now_plus(&until, timeout_s > 0 ? timeout_s : 0);
    pthread_mutex_lock(&e->mu);
    e->draining = true;
    int rc = 0;
    while (e->in_flight > 0 && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&e->idle, &e->mu, &until);
    int left = e->in_flight;
    if (left > 0) { /* out of time: cancel the rest and wait for their on_done */
        cancel_all(e);
        pthread_cond_signal(&e->work);
        while (e->in_flight > 0)
            pthread_cond_wait(&e->idle, &e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    if (left > 0)
        return hm_fail(HM_ERR_INTERRUPTED, "engine: drain: %d requests still running after %.1f s "
                       "were cancelled", left, timeout_s);
    return HM_OK;
}

void hm_engine_stats(struct hm_engine *e, struct hm_engine_stats *out)
{
    pthread_mutex_lock(&e->mu);
    *out = e->stats;
    out->running = e->n_running;
    out->queued = e->q_len;
    out->max_batch = e->o.max_batch;
    pthread_mutex_unlock(&e->mu);
}

/* ---- the engine thread ---------------------------------------------------------------------- */

/*
 * Between steps (mutex held): take cancelled requests out of the queue and the slot table, and
 * admit waiting requests into free slots. Requests to report are moved to `done` (reported by
 * the caller once the mutex is released). Returns how many.
 */
static int between_steps(struct hm_engine *e, struct hm_engine_seq **done,
                         enum hm_finish_reason *why)
{
    int n_done = 0;
    for (int j = 0; j < e->n_running;) {
        struct hm_engine_seq *s = e->running[j];
        if (!s->cancel) {
            j++;
            continue;
        }
        e->slot_used[s->slot] = false;
        memmove(&e->running[j], &e->running[j + 1],
                (size_t)(e->n_running - j - 1) * sizeof *e->running);
        e->n_running--;
        why[n_done] = HM_FINISH_CANCELLED;
        done[n_done++] = s;
    }
    int kept = 0;
    for (int i = 0; i < e->q_len; i++) { /* cancelled queued requests leave the ring in order */
        struct hm_engine_seq *s = e->queue[(e->q_head + i) % e->o.max_queue];
        if (s->cancel) {
            why[n_done] = HM_FINISH_CANCELLED;
            done[n_done++] = s;
        } else {
            e->queue[(e->q_head + kept++) % e->o.max_queue] = s;
        }
    }
    e->q_len = kept;
    while (e->q_len > 0 && e->n_running < e->o.max_batch) {
        struct hm_engine_seq *s = e->queue[e->q_head];
        e->q_head = (e->q_head + 1) % e->o.max_queue;
        e->q_len--;
        s->res.queued_s = hm_time_s() - s->t_submit;
        if (s->rq.max_new_tokens == 0) { /* nothing to generate: no need to read the prompt */
            why[n_done] = HM_FINISH_LENGTH;
            done[n_done++] = s;
            continue;
        }
        int slot = 0;
        while (e->slot_used[slot])
            slot++;
        e->slot_used[slot] = true;
        s->slot = slot;
        e->running[e->n_running++] = s;
    }
    return n_done;
}

static void *engine_main(void *arg)
{
    struct hm_engine *e = arg;
    hm_set_threads(e->n_threads); /* this thread's OpenMP team, as the creator asked */
    hm_set_flush_denormals(true);
    /* Reported requests: cancelled running ones (max_batch) and queued ones (max_queue). */
    int cap = e->o.max_batch + e->o.max_queue;
    struct hm_engine_seq **done = e->batch.seqs + e->o.max_batch;
    enum hm_finish_reason *why = (enum hm_finish_reason *)(done + cap);
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->stop && e->n_running == 0 && e->q_len == 0)
            pthread_cond_wait(&e->work, &e->mu);
        if (e->stop)
            cancel_all(e);
        bool stop = e->stop;
        int n_done = between_steps(e, done, why);
        pthread_mutex_unlock(&e->mu);
        for (int i = 0; i < n_done; i++)
            seq_done(e, done[i], why[i], HM_OK);
        if (stop)
            return NULL;
        hm_engine_step(e);
    }
}

/* ---- creation ------------------------------------------------------------------------------ */

static enum hm_status check_opts(const struct hm_model_config *c, struct hm_engine_opts *o)
{
    if (o->ctx_len == 0)
        o->ctx_len = c->max_seq_len;
    if (o->max_batch < 1 || o->max_batch > MAX_SLOTS)
        return hm_fail(HM_ERR_USAGE, "engine: max_batch %d must be in [1, %d]", o->max_batch,
                       MAX_SLOTS);
    if (o->ctx_len < 1 || o->ctx_len > c->max_seq_len)
        return hm_fail(HM_ERR_USAGE, "engine: ctx_len %d must be in [1, max_seq_len %d]",
                       o->ctx_len, c->max_seq_len);
    if (o->prefill_chunk < 1 || o->prefill_chunk > 65536)
        return hm_fail(HM_ERR_USAGE, "engine: prefill_chunk %d must be in [1, 65536]",
                       o->prefill_chunk);
    if (o->max_queue < 1 || o->max_queue > 1 << 20)
        return hm_fail(HM_ERR_USAGE, "engine: max_queue %d must be in [1, %d]", o->max_queue,
                       1 << 20);
    return HM_OK;
}

/* Step sizes a graph is planned for: 1, 2, 4, 8, then every multiple of 8, up to the largest
 * step (max_batch decode rows + a full prompt chunk). A step pads to the next one. */
static int size_classes(int n_max, int *sizes)
{
    int n = 0;
    for (int s = 1; s < 8 && s < n_max; s *= 2)
        sizes[n++] = s;
    for (int s = 8; s < n_max; s += 8)
        sizes[n++] = s;
    sizes[n++] = n_max;
    return n;
}

static enum hm_status build_graphs(struct hm_engine *e)
{
    int n_max = e->o.max_batch + e->o.prefill_chunk;
    int *sizes = hm_malloc((size_t)(n_max / 8 + 8) * sizeof *sizes);
    if (!sizes)
        return hm_fail(HM_ERR_NOMEM, "engine: out of memory");
    int n = size_classes(n_max, sizes);
    enum hm_status st = HM_OK;
    e->graphs = hm_calloc((size_t)n, sizeof *e->graphs);
    if (!e->graphs)
        st = hm_fail(HM_ERR_NOMEM, "engine: out of memory");
    for (int i = 0; st == HM_OK && i < n; i++) {
        int n_logits = HM_MIN(sizes[i], e->o.max_batch);
        st = hm_model_build_batch_graph(e->model, e->cache, sizes[i], n_logits, true,
                                        &e->graphs[i]);
        if (st == HM_OK)
            e->n_graphs++;
    }
    hm_free(sizes);
    return st;
}

static enum hm_status alloc_scratch(struct hm_engine *e)
{
    int n_max = e->o.max_batch + e->o.prefill_chunk, cap = e->o.max_batch + e->o.max_queue;
    struct hm_engine_batch *b = &e->batch;
    b->ids = hm_malloc((size_t)n_max * sizeof *b->ids);
    b->slot = hm_malloc((size_t)n_max * sizeof *b->slot);
    b->pos = hm_malloc((size_t)n_max * sizeof *b->pos);
    b->out_rows = hm_malloc((size_t)e->o.max_batch * sizeof *b->out_rows);
    /* seqs: max_batch sampled, then the thread's `done` list and its reasons (engine_main) */
    b->seqs = hm_malloc((size_t)(e->o.max_batch + cap) * sizeof *b->seqs +
                        (size_t)cap * sizeof(enum hm_finish_reason));
    e->logits = hm_malloc((size_t)e->o.max_batch * (size_t)e->V * sizeof *e->logits);
    e->queue = hm_calloc((size_t)e->o.max_queue, sizeof *e->queue);
    e->running = hm_calloc((size_t)e->o.max_batch, sizeof *e->running);
    e->slot_used = hm_calloc((size_t)e->o.max_batch, sizeof *e->slot_used);
    if (!b->ids || !b->slot || !b->pos || !b->out_rows || !b->seqs || !e->logits || !e->queue ||
        !e->running || !e->slot_used)
        return hm_fail(HM_ERR_NOMEM, "engine: out of memory for the step buffers (%d rows, %d x %d "
                       "logits)", n_max, e->o.max_batch, e->V);
    return HM_OK;
}

static void engine_release(struct hm_engine *e)
{
    for (int i = 0; i < e->n_graphs; i++)
        hm_batch_graph_free(&e->graphs[i]);
    hm_free(e->graphs);
    hm_kv_cache_free(e->cache);
    hm_free(e->batch.ids);
    hm_free(e->batch.slot);
    hm_free(e->batch.pos);
    hm_free(e->batch.out_rows);
    hm_free(e->batch.seqs);
    hm_free(e->logits);
    hm_free(e->queue);
    hm_free(e->running);
    hm_free(e->slot_used);
    hm_free(e);
}

enum hm_status hm_engine_new(struct hm_model *m, const struct hm_engine_opts *opts,
                             struct hm_engine **out)
{
    *out = NULL;
    struct hm_engine_opts o = *opts;
    enum hm_status st = check_opts(hm_model_config(m), &o);
    if (st != HM_OK)
        return st;
    /* Packed weights compute in f32 from bf16/q8_0 matrices, which the row-invariant kernel
     * does not read: refuse here rather than fail every request at its first step. */
    if (hm_model_weight_dtype(m) != hm_model_dtype(m))
        return hm_fail(HM_ERR_UNSUPPORTED,
                       "engine: the model's weights are packed as %s; batched serving reads "
                       "unpacked weights", hm_dtype_name(hm_model_weight_dtype(m)));
    struct hm_engine *e = hm_calloc(1, sizeof *e);
    if (!e)
        return hm_fail(HM_ERR_NOMEM, "engine: out of memory");
    e->model = m;
    e->o = o;
    e->V = hm_model_config(m)->vocab_size;
    e->n_threads = hm_get_threads();
    if ((st = alloc_scratch(e)) != HM_OK ||
        (st = hm_kv_cache_new_slots(m, o.max_batch, o.ctx_len, &e->cache)) != HM_OK ||
        (st = build_graphs(e)) != HM_OK) {
        engine_release(e);
        return st;
    }
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->work, NULL);
    pthread_cond_init(&e->idle, NULL);
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->work);
        pthread_cond_destroy(&e->idle);
        engine_release(e);
        return hm_fail(HM_ERR_NOMEM, "engine: cannot start the engine thread");
    }
    *out = e;
    return HM_OK;
}

void hm_engine_free(struct hm_engine *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->mu);
    e->stop = true;
    pthread_cond_signal(&e->work);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->work);
    pthread_cond_destroy(&e->idle);
    engine_release(e);
}
