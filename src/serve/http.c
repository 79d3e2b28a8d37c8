/*
 * http.c - the HTTP side of `serve` (serve.h), on libmicrohttpd: one thread per connection, so a
 * request may block on its generation (a streamed one in MHD's content reader, which returns
 * each piece of text as soon as the engine produced it; a whole one in the request handler).
 *
 * Order of the checks: draining (503), bearer key (401), route (404/405), body size (413),
 * request (400), model (404), then the engine (429 when its queue is full).
 */
#include "serve.h"
#include "hermes/interrupt.h"
#include "util/util.h"

#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct hm_server {
    struct hm_serve_opts o;
    struct MHD_Daemon *d;
    long long created;
    atomic_bool draining;
    atomic_uint_fast64_t next_id; /* request ids and default seeds */
    pthread_mutex_t tok_mu; /* hm_tokenizer_encode: one thread at a time */
    pthread_mutex_t mu; /* guards `active` */
    pthread_cond_t idle;
    int active; /* requests between their first byte and their completion */
    bool chat_ok;
    struct hm_chat_ids chat;
};

/* One request, from its headers to MHD's completion notice. */
struct conn {
    struct hm_server *srv;
    struct MHD_Connection *c;
    char method[16], path[128];
    struct timespec t0;
    char *body;
    size_t n_body, cap_body;
    bool too_big;
    int status;
    struct hm_serve_job *job;
    /* streaming */
    struct hm_api_reply reply;
    char reply_id[48];
    char *text, *sse;
    size_t n_text, cap_text, n_sse, cap_sse, sent;
    bool first_chunk, finished;
};

struct hm_serve_opts hm_serve_opts_default(void)
{
    return (struct hm_serve_opts){
        .host = "127.0.0.1", .port = 8080, .max_body = 1 << 20, .drain_timeout_s = 30};
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + 1e-9 * (double)(t.tv_nsec - t0->tv_nsec);
}

/* ---- responses ---------------------------------------------------------------------------- */

/* Queue `body` (malloc'ed JSON, taken over) with `status`. */
static enum MHD_Result send_json(struct MHD_Connection *c, struct conn *k, int status, char *body)
{
    if (!body) { /* only out of memory gets here */
        status = 500;
        body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\"}}");
        if (!body)
            return MHD_NO;
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (status == 429)
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (status == 405)
        MHD_add_response_header(
            r, MHD_HTTP_HEADER_ALLOW,
            strncmp(k->path, "/v1/models", 10) == 0 || !strcmp(k->path, "/health") ? "GET"
                                                                                   : "POST");
    if (status == 401)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    k->status = status;
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *c, struct conn *k,
                                  const struct hm_api_error *e)
{
    return send_json(c, k, e->status, hm_api_error_json(e));
}

static enum MHD_Result fail(struct MHD_Connection *c, struct conn *k, int status, const char *param,
                            const char *code, const char *message)
{
    struct hm_api_error e;
    hm_api_error_set(&e, status, param, "%s", message);
    e.code = code;
    return send_error(c, k, &e);
}

/* ---- generation --------------------------------------------------------------------------- */

/* The prompt's token ids (hm_free): the ChatML conversation or the completion prompt. */
static bool encode_prompt(struct hm_server *s, const struct hm_api_request *rq, hm_token **ids,
                          int *n, struct hm_api_error *err)
{
    enum hm_status st = HM_OK;
    size_t count = 0;
    struct hm_chat_tokens ct = {0};
    *ids = NULL;
    pthread_mutex_lock(&s->tok_mu);
    if (rq->kind == HM_API_CHAT) {
        st = hm_chat_encode(s->o.tok, &s->chat, &rq->conv, 0, true, &ct);
        *ids = ct.ids, count = ct.n, ct.ids = NULL;
    } else if ((st = hm_tokenizer_encode(s->o.tok, rq->prompt, rq->prompt_len, NULL, 0, &count)) ==
               HM_OK) {
        if (!(*ids = hm_malloc(HM_MAX(count, (size_t)1) * sizeof **ids)))
            st = hm_fail(HM_ERR_NOMEM, "out of memory (prompt)");
        else
            st = hm_tokenizer_encode(s->o.tok, rq->prompt, rq->prompt_len, *ids, count, &count);
    }
    pthread_mutex_unlock(&s->tok_mu);
    hm_chat_tokens_free(&ct);
    const char *param = rq->kind == HM_API_CHAT ? "messages" : "prompt";
    if (st == HM_OK && count >= (size_t)s->o.ctx_len)
        hm_api_error_set(err, 400, param,
                         "the prompt is %zu tokens; this server's context holds %d, and at least "
                         "one must be left to generate",
                         count, s->o.ctx_len);
    else if (st != HM_OK)
        hm_api_error_set(err, 500, NULL, "%s", hm_last_error());
    else {
        *n = (int)count;
        return true;
    }
    hm_free(*ids);
    *ids = NULL;
    return false;
}

/* Submit the job's request to the engine; on failure the job is gone and *err says why. */
static bool submit(struct hm_server *s, struct hm_serve_job *j, const hm_token *ids, int n,
                   struct hm_api_error *err)
{
    struct hm_engine_request rq = hm_engine_request_default();
    rq.prompt = ids;
    rq.n_prompt = n;
    rq.max_new_tokens = j->req.max_tokens ? j->req.max_tokens : s->o.ctx_len;
    rq.sampling = j->req.sampling;
    if (!j->req.seed_given) /* a different seed per request, as OpenAI does without one */
        rq.sampling.seed = hm_hash64(HM_HASH64_INIT, &(uint64_t){atomic_fetch_add(&s->next_id, 1)},
                                     sizeof(uint64_t)) ^
                           (uint64_t)time(NULL);
    hm_token eos = hm_tokenizer_eos_id(s->o.tok);
    if (eos >= 0 && !j->req.ignore_eos)
        rq.stop_ids[rq.n_stop_ids++] = eos;
    if (s->chat_ok && !j->req.ignore_eos)
        rq.stop_ids[rq.n_stop_ids++] = s->chat.im_end;
    hm_serve_job_bind(j, &rq);
    j->prompt_tokens = n;
    enum hm_status st = s->o.engine.submit(s->o.engine.ctx, &rq, &j->id);
    if (st == HM_OK)
        return true;
    hm_serve_job_unref(j); /* no callback fires after a refused submit: drop the engine's ref */
    hm_serve_job_unref(j);
    if (st == HM_ERR_BUSY)
        return hm_api_error_set(err, 429, NULL, "the server is busy (its queue is full); retry");
    if (st == HM_ERR_INTERRUPTED)
        return hm_api_error_set(err, 503, NULL, "the server is shutting down");
    if (st == HM_ERR_USAGE)
        return hm_api_error_set(err, 400, NULL, "%s", hm_last_error());
    return hm_api_error_set(err, 500, NULL, "%s", hm_last_error());
}

static void reply_init(struct hm_server *s, struct conn *k, enum hm_api_kind kind)
{
    snprintf(k->reply_id, sizeof k->reply_id, "%s-%016llx",
             kind == HM_API_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)hm_hash64(
                 HM_HASH64_INIT, &(uint64_t){atomic_fetch_add(&s->next_id, 1)}, sizeof(uint64_t)));
    k->reply = (struct hm_api_reply){kind, k->reply_id, s->o.model_id, (long long)time(NULL)};
}

/* The finished job's outcome: its usage, and an error when it did not end normally. */
static bool job_outcome(struct hm_server *s, struct hm_serve_job *j, struct hm_api_usage *u,
                        const char **finish, struct hm_api_error *err)
{
    pthread_mutex_lock(&j->mu);
    struct hm_engine_result r = j->result;
    bool stop_string = j->filter.stopped;
    enum hm_status e = j->error;
    pthread_mutex_unlock(&j->mu);
    *u = (struct hm_api_usage){j->prompt_tokens, r.completion_tokens};
    *finish = hm_api_finish_reason(r.finish, stop_string);
    if (r.finish == HM_FINISH_ERROR || e != HM_OK)
        return hm_api_error_set(err, 500, NULL, "generation failed: %s",
                                hm_status_str(e != HM_OK ? e : r.status));
    if (r.finish == HM_FINISH_CANCELLED && !stop_string)
        return hm_api_error_set(err, 503, NULL, "the server is shutting down");
    return true;
}

/* How often a request waiting for text looks whether its client is still there: a generation
 * whose tokens make no text (special tokens) writes nothing that could fail. */
#define CLIENT_CHECK_S 0.2

/* True when the client has closed its connection (MHD notices only when a write fails). */
static bool client_gone(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *i =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!i)
        return false;
    struct pollfd p = {.fd = i->connect_fd, .events = POLLIN | POLLRDHUP};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static bool append_sse(struct conn *k, char *event)
{
    size_t n = event ? strlen(event) : 0;
    bool ok = event && (k->n_sse + n <= k->cap_sse ||
                        hm_grow((void **)&k->sse, k->cap_sse = 2 * (k->n_sse + n), 1));
    if (ok) {
        memcpy(k->sse + k->n_sse, event, n);
        k->n_sse += n;
    }
    free(event);
    return ok;
}

/* The events that close a stream: the finish reason (or an error), usage when asked, [DONE]. */
static bool close_stream(struct conn *k)
{
    struct hm_api_usage u;
    const char *finish;
    struct hm_api_error e;
    bool ok =
        job_outcome(k->srv, k->job, &u, &finish, &e)
            ? append_sse(k, hm_api_chunk_sse(&k->reply, "", 0, false, finish)) &&
                  (!k->job->req.include_usage || append_sse(k, hm_api_usage_sse(&k->reply, u)))
            : append_sse(k, hm_api_error_sse(&e));
    k->finished = true;
    return ok && append_sse(k, strdup(HM_API_SSE_DONE));
}

/* MHD's content reader of a stream: the next events, waiting for the engine when none is ready. */
static ssize_t read_stream(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct conn *k = cls;
    while (k->sent == k->n_sse) {
        if (k->finished)
            return MHD_CONTENT_READER_END_OF_STREAM;
        k->n_sse = k->sent = k->n_text = 0;
        bool done = false;
        /* the role chunk goes out at once; then each piece of text as it comes */
        if (!k->first_chunk && hm_serve_job_take(k->job, CLIENT_CHECK_S, &k->text, &k->n_text,
                                                 &k->cap_text, &done) != HM_OK)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (!k->first_chunk && !done && k->n_text == 0 && client_gone(k->c))
            return MHD_CONTENT_READER_END_WITH_ERROR; /* ends the request: on_completed cancels */
        if (k->n_text || k->first_chunk) {
            const char *text = k->text ? k->text : ""; /* nothing taken yet: no buffer */
            if (!append_sse(k, hm_api_chunk_sse(&k->reply, text, k->n_text, k->first_chunk, NULL)))
                return MHD_CONTENT_READER_END_WITH_ERROR;
            k->first_chunk = false;
        }
        if (done && !close_stream(k))
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = HM_MIN(max, k->n_sse - k->sent);
    memcpy(buf, k->sse + k->sent, n);
    k->sent += n;
    return (ssize_t)n;
}

static enum MHD_Result start_stream(struct MHD_Connection *c, struct conn *k)
{
    k->first_chunk = true;
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, read_stream, k, NULL);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    k->status = 200;
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

/* Wait for the whole text, then answer with it. */
static enum MHD_Result send_whole(struct MHD_Connection *c, struct conn *k)
{
    bool done = false;
    while (!done) {
        if (hm_serve_job_take(k->job, CLIENT_CHECK_S, &k->text, &k->n_text, &k->cap_text, &done) !=
            HM_OK)
            return fail(c, k, 500, NULL, NULL, hm_last_error());
        if (!done && client_gone(c))
            return MHD_NO; /* closes the connection: on_completed cancels and logs 499 */
    }
    struct hm_api_usage u;
    const char *finish;
    struct hm_api_error e;
    if (!job_outcome(k->srv, k->job, &u, &finish, &e))
        return send_error(c, k, &e);
    return send_json(c, k, 200,
                     hm_api_reply_json(&k->reply, k->text ? k->text : "", k->n_text, finish, u));
}

static enum MHD_Result generate(struct MHD_Connection *c, struct conn *k, enum hm_api_kind kind)
{
    struct hm_server *s = k->srv;
    struct hm_api_request rq;
    struct hm_api_error err;
    hm_token *ids = NULL;
    int n = 0;
    if (!hm_api_parse_request(kind, k->body ? k->body : "", k->n_body, &rq, &err))
        return send_error(c, k, &err);
    bool ok = true;
    if (rq.model[0] && strcmp(rq.model, s->o.model_id) != 0) {
        ok = hm_api_error_set(&err, 404, "model",
                              "the model '%s' does not exist; this server has '%s'", rq.model,
                              s->o.model_id);
        err.code = "model_not_found";
    } else if (kind == HM_API_CHAT && !s->chat_ok) {
        ok = hm_api_error_set(&err, 400, "messages",
                              "this model's tokenizer has no <|im_start|> "
                              "and <|im_end|> tokens: it is not a chat model");
    }
    if (!ok || !encode_prompt(s, &rq, &ids, &n, &err)) {
        hm_api_request_free(&rq);
        return send_error(c, k, &err);
    }
    bool stream = rq.stream;
    struct hm_serve_job *j;
    if (hm_serve_job_new(s->o.tok, &rq, &j) != HM_OK) {
        hm_api_request_free(&rq);
        hm_free(ids);
        return fail(c, k, 500, NULL, NULL, hm_last_error());
    }
    ok = submit(s, j, ids, n, &err);
    hm_free(ids);
    if (!ok)
        return send_error(c, k, &err);
    k->job = j;
    reply_init(s, k, kind);
    return stream ? start_stream(c, k) : send_whole(c, k);
}

/* ---- routing ------------------------------------------------------------------------------ */

static enum MHD_Result route(struct MHD_Connection *c, struct conn *k)
{
    struct hm_server *s = k->srv;
    bool get = strcmp(k->method, "GET") == 0, post = strcmp(k->method, "POST") == 0;
    const char *p = k->path;
    bool is_health = strcmp(p, "/health") == 0;
    if (atomic_load(&s->draining))
        return fail(c, k, 503, NULL, NULL, "the server is shutting down");
    if (s->o.api_key && !is_health &&
        !hm_serve_auth_ok(s->o.api_key, MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                                    MHD_HTTP_HEADER_AUTHORIZATION)))
        return fail(c, k, 401, NULL, "invalid_api_key",
                    "missing or wrong API key: send 'Authorization: Bearer <key>'");
    bool chat = strcmp(p, "/v1/chat/completions") == 0, compl = strcmp(p, "/v1/completions") == 0;
    bool models = strcmp(p, "/v1/models") == 0, one_model = strncmp(p, "/v1/models/", 11) == 0;
    if (!chat && !compl &&!models && !one_model && !is_health) {
        char msg[192];
        snprintf(msg, sizeof msg, "no such route: %s %s", k->method, p);
        return fail(c, k, 404, NULL, "unknown_url", msg);
    }
    if ((chat || compl ) ? !post : !get)
        return fail(c, k, 405, NULL, NULL, "method not allowed on this route");
    if (k->too_big) {
        char msg[128];
        snprintf(msg, sizeof msg, "the body is larger than %zu bytes", s->o.max_body);
        return fail(c, k, 413, NULL, NULL, msg);
    }
    if (is_health)
        return send_json(c, k, 200, strdup("{\"status\":\"ok\"}"));
    if (models)
        return send_json(c, k, 200, hm_api_models_json(s->o.model_id, s->created, true));
    if (one_model) {
        if (strcmp(p + 11, s->o.model_id) != 0)
            return fail(c, k, 404, "model", "model_not_found", "no such model");
        return send_json(c, k, 200, hm_api_models_json(s->o.model_id, s->created, false));
    }
    return generate(c, k, chat ? HM_API_CHAT : HM_API_COMPLETION);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    struct hm_server *s = cls;
    struct conn *k = *con_cls;
    if (!k) { /* the headers: nothing of the body has been read yet */
        if (!(k = hm_calloc(1, sizeof *k)))
            return MHD_NO;
        k->srv = s;
        k->c = c;
        clock_gettime(CLOCK_MONOTONIC, &k->t0);
        snprintf(k->method, sizeof k->method, "%s", method);
        snprintf(k->path, sizeof k->path, "%s", url);
        pthread_mutex_lock(&s->mu);
        s->active++;
        pthread_mutex_unlock(&s->mu);
        *con_cls = k;
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->o.max_body) { /* refuse before reading it */
            k->too_big = true;
            return route(c, k);
        }
        return MHD_YES;
    }
    if (*upload_size) { /* a piece of the body */
        size_t n = *upload_size;
        *upload_size = 0;
        if (k->too_big || k->n_body + n > s->o.max_body) {
            k->too_big = true;
            return MHD_YES;
        }
        if (k->n_body + n + 1 > k->cap_body &&
            !hm_grow((void **)&k->body, k->cap_body = 2 * (k->n_body + n) + 1, 1))
            return MHD_NO;
        memcpy(k->body + k->n_body, upload, n);
        k->n_body += n;
        k->body[k->n_body] = '\0';
        return MHD_YES;
    }
    if (k->status) /* answered already (413 at the headers) */
        return MHD_YES;
    return route(c, k);
}

/* MHD's notice that a request is over (answered, or the client went away). */
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct hm_server *s = cls;
    struct conn *k = *con_cls;
    if (!k)
        return;
    struct hm_access_entry e = {k->method, k->path, k->status, -1, 0, 1e3 * seconds_since(&k->t0)};
    if (k->job) {
        pthread_mutex_lock(&k->job->mu);
        bool done = k->job->done;
        e.prompt_tokens = k->job->prompt_tokens;
        e.completion_tokens = k->job->result.completion_tokens;
        pthread_mutex_unlock(&k->job->mu);
        if (!done) /* the client left before the end: free its slot for the others */
            s->o.engine.cancel(s->o.engine.ctx, k->job->id);
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
            e.status = 499; /* nginx's "client closed request" */
        hm_serve_job_unref(k->job);
    }
    hm_access_log(&e);
    hm_free(k->body);
    hm_free(k->text);
    hm_free(k->sse);
    hm_free(k);
    *con_cls = NULL;
    pthread_mutex_lock(&s->mu);
    if (--s->active == 0)
        pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
}

/* ---- life cycle ---------------------------------------------------------------------------- */

static enum hm_status resolve(const char *host, int port, struct sockaddr_storage *addr, bool *v6)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE},
                    *res;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0)
        return hm_fail(HM_ERR_USAGE, "serve: --host %s: %s", host, gai_strerror(rc));
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return HM_OK;
}

enum hm_status hm_serve_start(const struct hm_serve_opts *opts, struct hm_server **out)
{
    struct sockaddr_storage addr;
    bool v6 = false;
    enum hm_status st = resolve(opts->host, opts->port, &addr, &v6);
    if (st != HM_OK)
        return st;
    struct hm_server *s = hm_calloc(1, sizeof *s);
    if (!s)
        return hm_fail(HM_ERR_NOMEM, "out of memory (server)");
    s->o = *opts;
    s->created = (long long)time(NULL);
    /* ids (and default seeds) differ from one server run to the next */
    atomic_store(&s->next_id, ((uint64_t)s->created << 20) ^ ((uint64_t)getpid() << 40));
    s->chat_ok = hm_chat_special_ids(opts->tok, "tokenizer", &s->chat) == HM_OK;
    pthread_mutex_init(&s->tok_mu, NULL);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->idle, NULL);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ITC |
                     (v6 ? MHD_USE_IPv6 : 0);
    s->d = MHD_start_daemon(flags, (uint16_t)opts->port, NULL, NULL, on_request, s,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
    if (!s->d) {
        hm_serve_free(s);
        return hm_fail(HM_ERR_IO,
                       "serve: cannot listen on %s port %d (in use, or not an address "
                       "of this machine?)",
                       opts->host, opts->port);
    }
    *out = s;
    return HM_OK;
}

int hm_serve_port(const struct hm_server *s)
{
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    return i ? i->port : -1;
}

enum hm_status hm_serve_drain(struct hm_server *s)
{
    atomic_store(&s->draining, true);
    MHD_socket fd = MHD_quiesce_daemon(s->d); /* no new connections; open ones go on */
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    enum hm_status st = s->o.engine.drain(s->o.engine.ctx, s->o.drain_timeout_s);
    /* the engine is done; give the connections the same time again to send what is left */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)s->o.drain_timeout_s + 1;
    pthread_mutex_lock(&s->mu);
    while (s->active > 0)
        if (pthread_cond_timedwait(&s->idle, &s->mu, &until) != 0) {
            st = hm_fail(HM_ERR_INTERRUPTED, "serve: %d requests still open after the drain time",
                         s->active);
            break;
        }
    pthread_mutex_unlock(&s->mu);
    return st;
}

void hm_serve_free(struct hm_server *s)
{
    if (!s)
        return;
    if (s->d)
        MHD_stop_daemon(s->d);
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->tok_mu);
    hm_free(s);
}

enum hm_status hm_serve_run(const struct hm_serve_opts *opts)
{
    struct hm_server *s;
    enum hm_status st = hm_serve_start(opts, &s);
    if (st != HM_OK)
        return st;
    hm_interrupt_install();
    fprintf(stderr,
            "serve: listening on http://%s:%d (model %s); SIGTERM or Ctrl-C drains and stops\n",
            opts->host, hm_serve_port(s), opts->model_id);
    while (!hm_interrupt_requested())
        usleep(100 * 1000);
    fprintf(stderr, "serve: draining: no new requests; finishing those in flight (at most %g s)\n",
            opts->drain_timeout_s);
    st = hm_serve_drain(s);
    hm_serve_free(s);
    if (st == HM_OK)
        fprintf(stderr, "serve: stopped\n");
    return st;
}
