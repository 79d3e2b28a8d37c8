/*
 * hm-serve-fake - the HTTP server of `serve` over a test double of the engine, for
 * tests/cli/serve-http.sh: test code only, never part of the product.
 *
 * The double keeps engine.h's contract (a thread, max_batch slots, a bounded queue, cancel, drain,
 * on_done exactly once) but runs no model: each step, every running request "generates" the next
 * token of its own prompt, cyclically (a prompt is echoed), and stops at a stop id, at
 * max_new_tokens or at the context. So every output is known in advance. --step-ms slows the
 * steps so tests can act while requests are in flight.
 *
 *     hm-serve-fake -t tokenizer.json [--port 0] [--max-batch 4] [--max-queue 8] [--step-ms 0]
 *                   [--ctx 256] [--api-key K] [--max-body BYTES] [--drain-s 30]
 */
#include "serve/serve.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct fake_req {
    struct hm_engine_request rq;
    hm_token *prompt;
    uint64_t id;
    int generated;
    bool cancel;
};

struct fake {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct fake_req **queue, **running;
    int n_queue, n_running, max_batch, max_queue, step_ms;
    uint64_t next_id;
    bool closing, draining;
};

static void finish(struct fake_req *r, enum hm_finish_reason why)
{
    struct hm_engine_result res = {
        .finish = why, .prompt_tokens = r->rq.n_prompt, .completion_tokens = r->generated};
    r->rq.on_done(&res, r->rq.user);
    free(r->prompt);
    free(r);
}

/* One request's step: true when it is over. */
static bool step(struct fake_req *r, bool cancel)
{
    hm_token t = r->prompt[r->generated % r->rq.n_prompt];
    enum hm_finish_reason why = HM_FINISH_LENGTH;
    bool over = cancel;
    if (cancel)
        why = HM_FINISH_CANCELLED;
    for (int i = 0; i < r->rq.n_stop_ids && !over; i++)
        if (t == r->rq.stop_ids[i])
            over = true, why = HM_FINISH_STOP;
    if (!over) {
        r->generated++;
        if (!r->rq.on_token(t, r->rq.user))
            over = true, why = HM_FINISH_CANCELLED;
        else if (r->generated >= r->rq.max_new_tokens)
            over = true;
    }
    if (over)
        finish(r, why);
    return over;
}

static void *run(void *arg)
{
    struct fake *f = arg;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (!f->closing && f->n_running == 0 && f->n_queue == 0)
            pthread_cond_wait(&f->cv, &f->mu);
        if (f->closing && f->n_running == 0 && f->n_queue == 0)
            break;
        while (f->n_running < f->max_batch && f->n_queue > 0) { /* admit, oldest first */
            f->running[f->n_running++] = f->queue[0];
            memmove(f->queue, f->queue + 1, (size_t)--f->n_queue * sizeof *f->queue);
        }
        if (f->closing) /* hm_engine_free: cancel what is left */
            for (int i = 0; i < f->n_running; i++)
                f->running[i]->cancel = true;
        int n = f->n_running;
        struct fake_req *batch[n > 0 ? n : 1];
        bool cancel[n > 0 ? n : 1];
        for (int i = 0; i < n; i++)
            batch[i] = f->running[i], cancel[i] = f->running[i]->cancel;
        pthread_mutex_unlock(&f->mu);
        bool over[n > 0 ? n : 1];
        for (int i = 0; i < n; i++) /* callbacks run without the lock, as the engine's do */
            over[i] = step(batch[i], cancel[i]);
        if (f->step_ms)
            usleep((useconds_t)f->step_ms * 1000);
        pthread_mutex_lock(&f->mu);
        int kept = 0;
        for (int i = 0; i < f->n_running; i++)
            if (i >= n || !over[i])
                f->running[kept++] = f->running[i];
        f->n_running = kept;
        pthread_cond_broadcast(&f->cv);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

static enum hm_status fake_submit(void *ctx, const struct hm_engine_request *rq, uint64_t *id)
{
    struct fake *f = ctx;
    if (rq->n_prompt <= 0)
        return hm_fail(HM_ERR_USAGE, "engine: empty prompt");
    struct fake_req *r = calloc(1, sizeof *r);
    hm_token *p = malloc((size_t)rq->n_prompt * sizeof *p);
    if (!r || !p) {
        free(r), free(p);
        return hm_fail(HM_ERR_NOMEM, "out of memory");
    }
    memcpy(p, rq->prompt, (size_t)rq->n_prompt * sizeof *p);
    r->rq = *rq;
    r->rq.prompt = r->prompt = p;
    enum hm_status st = HM_OK;
    pthread_mutex_lock(&f->mu);
    if (f->draining)
        st = hm_fail(HM_ERR_INTERRUPTED, "engine: draining");
    else if (f->n_queue >= f->max_queue + f->max_batch - f->n_running) /* no slot, queue full */
        st = hm_fail(HM_ERR_BUSY, "engine: %d requests are waiting already", f->n_queue);
    else {
        *id = r->id = ++f->next_id;
        f->queue[f->n_queue++] = r;
        pthread_cond_broadcast(&f->cv);
    }
    pthread_mutex_unlock(&f->mu);
    if (st != HM_OK)
        free(p), free(r);
    return st;
}

static void fake_cancel(void *ctx, uint64_t id)
{
    struct fake *f = ctx;
    pthread_mutex_lock(&f->mu);
    for (int i = 0; i < f->n_running; i++)
        if (f->running[i]->id == id)
            f->running[i]->cancel = true;
    for (int i = 0; i < f->n_queue; i++)
        if (f->queue[i]->id == id)
            f->queue[i]->cancel = true;
    pthread_mutex_unlock(&f->mu);
}

static enum hm_status fake_drain(void *ctx, double timeout_s)
{
    struct fake *f = ctx;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)timeout_s;
    enum hm_status st = HM_OK;
    pthread_mutex_lock(&f->mu);
    f->draining = true;
    while (f->n_running + f->n_queue > 0)
        if (pthread_cond_timedwait(&f->cv, &f->mu, &until) != 0) {
            st = hm_fail(HM_ERR_INTERRUPTED, "engine: drain timed out");
            break;
        }
    pthread_mutex_unlock(&f->mu);
    return st;
}

static long arg_long(const char *flag, const char *v)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x < 0) {
        fprintf(stderr, "hm-serve-fake: %s: not a number: %s\n", flag, v);
        exit(2);
    }
    return x;
}

int main(int argc, char **argv)
{
    struct hm_serve_opts o = hm_serve_opts_default();
    struct fake f = {.max_batch = 4, .max_queue = 8};
    const char *tok_path = NULL;
    o.ctx_len = 256;
    o.model_id = "fake";
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "-t"))
            tok_path = v;
        else if (!strcmp(a, "--port"))
            o.port = (int)arg_long(a, v);
        else if (!strcmp(a, "--max-batch"))
            f.max_batch = (int)arg_long(a, v);
        else if (!strcmp(a, "--max-queue"))
            f.max_queue = (int)arg_long(a, v);
        else if (!strcmp(a, "--step-ms"))
            f.step_ms = (int)arg_long(a, v);
        else if (!strcmp(a, "--ctx"))
            o.ctx_len = (int)arg_long(a, v);
        else if (!strcmp(a, "--api-key"))
            o.api_key = v;
        else if (!strcmp(a, "--max-body"))
            o.max_body = (size_t)arg_long(a, v);
        else if (!strcmp(a, "--drain-s"))
            o.drain_timeout_s = (double)arg_long(a, v);
        else {
            fprintf(stderr, "hm-serve-fake: unknown option %s\n", a);
            return 2;
        }
    }
    if (!tok_path || hm_tokenizer_load(tok_path, &o.tok) != HM_OK) {
        fprintf(stderr, "hm-serve-fake: -t tokenizer.json: %s\n",
                tok_path ? hm_last_error() : "required");
        return 2;
    }
    f.queue = calloc((size_t)(f.max_queue + f.max_batch) + 1, sizeof *f.queue);
    f.running = calloc((size_t)f.max_batch + 1, sizeof *f.running);
    pthread_mutex_init(&f.mu, NULL);
    pthread_cond_init(&f.cv, NULL);
    pthread_create(&f.thread, NULL, run, &f);
    o.engine = (struct hm_serve_engine){&f, fake_submit, fake_cancel, fake_drain};
    enum hm_status st = hm_serve_run(&o);
    if (st != HM_OK)
        fprintf(stderr, "hm-serve-fake: %s\n", hm_last_error());
    pthread_mutex_lock(&f.mu);
    f.closing = true;
    pthread_cond_broadcast(&f.cv);
    pthread_mutex_unlock(&f.mu);
    pthread_join(f.thread, NULL);
    free(f.queue);
    free(f.running);
    hm_tokenizer_free(o.tok);
    return st == HM_OK ? 0 : 1;
}
