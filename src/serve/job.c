/*
 * job.c - one request between the engine thread and its HTTP connection (serve.h). The engine's
 * callbacks decode each token and pass it through the text filter under the job's lock (a few
 * microseconds: the engine thread must not wait on a client); the connection takes the text when
 * it is ready. A stop string found in the text ends the request from on_token, so the token count
 * is the tokens actually generated.
 */
#include "serve.h"
#include "util/util.h"

#include <string.h>
#include <time.h>

enum hm_status hm_serve_job_new(const struct hm_tokenizer *tok, struct hm_api_request *req,
                                struct hm_serve_job **out)
{
    struct hm_serve_job *j = hm_calloc(1, sizeof *j);
    if (!j)
        return hm_fail(HM_ERR_NOMEM, "out of memory (request)");
    enum hm_status st = hm_decode_stream_new(tok, true, &j->ds);
    if (st != HM_OK) {
        hm_free(j);
        return st;
    }
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->refs = 2;
    j->req = *req;
    memset(req, 0, sizeof *req);
    hm_text_filter_init(&j->filter, (const char *const *)j->req.stop, j->req.stop_len,
                        j->req.n_stop);
    *out = j;
    return HM_OK;
}

void hm_serve_job_unref(struct hm_serve_job *j)
{
    pthread_mutex_lock(&j->mu);
    bool last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (!last)
        return;
    hm_decode_stream_free(j->ds);
    hm_text_filter_free(&j->filter);
    hm_api_request_free(&j->req);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    hm_free(j);
}

static bool on_token(hm_token id, void *user)
{
    struct hm_serve_job *j = user;
    const char *text;
    size_t len;
    pthread_mutex_lock(&j->mu);
    enum hm_status st = hm_decode_stream_push(j->ds, id, &text, &len);
    if (st == HM_OK)
        st = hm_text_filter_push(&j->filter, text, len);
    if (st != HM_OK)
        j->error = st;
    bool go_on = st == HM_OK && !j->filter.stopped;
    if (j->filter.n_out)
        pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return go_on;
}

static void on_done(const struct hm_engine_result *r, void *user)
{
    struct hm_serve_job *j = user;
    const char *text;
    size_t len;
    pthread_mutex_lock(&j->mu);
    hm_decode_stream_flush(j->ds, &text, &len);
    enum hm_status st = hm_text_filter_push(&j->filter, text, len);
    if (st == HM_OK)
        st = hm_text_filter_finish(&j->filter);
    if (st != HM_OK && j->error == HM_OK)
        j->error = st;
    j->result = *r;
    j->done = true;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    hm_serve_job_unref(j); /* the engine's reference */
}

void hm_serve_job_bind(struct hm_serve_job *j, struct hm_engine_request *rq)
{
    rq->on_token = on_token;
    rq->on_done = on_done;
    rq->user = j;
}

enum hm_status hm_serve_job_take(struct hm_serve_job *j, double wait_s, char **buf, size_t *len,
                                 size_t *cap, bool *done)
{
    enum hm_status st = HM_OK;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    long long ns = until.tv_nsec + (long long)(wait_s * 1e9);
    until.tv_sec += (time_t)(ns / 1000000000);
    until.tv_nsec = (long)(ns % 1000000000);
    pthread_mutex_lock(&j->mu);
    while (!j->done && j->filter.n_out == 0)
        if (pthread_cond_timedwait(&j->cv, &j->mu, &until) != 0)
            break;
    size_t n = j->filter.n_out;
    if (*len + n > *cap) {
        size_t c = HM_MAX((size_t)256, 2 * (*len + n));
        char *b = hm_realloc(*buf, c);
        if (b)
            *buf = b, *cap = c;
        else
            st = hm_fail(HM_ERR_NOMEM, "out of memory (generated text)");
    }
    if (st == HM_OK && n) {
        memcpy(*buf + *len, j->filter.out, n);
        *len += n;
        j->filter.n_out = 0;
    }
    *done = j->done && j->filter.n_out == 0;
    pthread_mutex_unlock(&j->mu);
    return st;
}

bool hm_serve_job_finished_by_stop_string(struct hm_serve_job *j)
{
    pthread_mutex_lock(&j->mu);
    bool s = j->filter.stopped;
    pthread_mutex_unlock(&j->mu);
    return s;
}
