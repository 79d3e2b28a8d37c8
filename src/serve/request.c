/*
 * request.c - OpenAI request bodies -> struct hm_api_request (serve.h). Pure: no I/O, no globals,
 * so the server and tests/fuzz/fuzz-api-request.c run exactly the same code. Unknown keys are
 * ignored (clients send many optional ones); a known key with null is the same as absent.
 */
#include "serve.h"
#include "util/util.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

bool hm_api_error_set(struct hm_api_error *err, int status, const char *param, const char *fmt, ...)
{
    err->status = status;
    err->type = status == 401   ? "authentication_error"
                : status == 429 ? "rate_limit_error"
                : status >= 500 ? "server_error"
                                : "invalid_request_error";
    err->code = NULL;
    snprintf(err->param, sizeof err->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    for (char *p = err->message; *p; p++) /* a quoted role or key may hold any byte: one line */
        if ((unsigned char)*p < 0x20)
            *p = ' ';
    return false;
}

/* The value of `key`, NULL when absent or null. */
static json_t *field(json_t *root, const char *key)
{
    json_t *v = json_object_get(root, key);
    return json_is_null(v) ? NULL : v;
}

static bool get_int(json_t *root, const char *key, long long lo, long long hi, long long *out,
                    bool *given, struct hm_api_error *err)
{
    json_t *v = field(root, key);
    if (given)
        *given = v != NULL;
    if (!v)
        return true;
    /* 2.0 is accepted as 2 (JavaScript clients have only numbers); 2.5 is not */
    double d = json_is_real(v) ? json_real_value(v) : 0;
    if (!json_is_integer(v) && !(json_is_real(v) && d == floor(d) && fabs(d) < 9e15))
        return hm_api_error_set(err, 400, key, "'%s' must be an integer", key);
    long long x = json_is_integer(v) ? json_integer_value(v) : (long long)d;
    if (x < lo || x > hi)
        return hm_api_error_set(err, 400, key, "'%s' is %lld; expected %lld to %lld", key, x, lo,
                                hi);
    *out = x;
    return true;
}

static bool get_number(json_t *root, const char *key, double lo, double hi, float *out,
                       struct hm_api_error *err)
{
    json_t *v = field(root, key);
    if (!v)
        return true;
    if (!json_is_number(v))
        return hm_api_error_set(err, 400, key, "'%s' must be a number", key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi))
        return hm_api_error_set(err, 400, key, "'%s' is %g; expected %g to %g", key, x, lo, hi);
    *out = (float)x;
    return true;
}

static bool get_bool(json_t *root, const char *key, bool *out, struct hm_api_error *err)
{
    json_t *v = field(root, key);
    if (!v)
        return true;
    if (!json_is_boolean(v))
        return hm_api_error_set(err, 400, key, "'%s' must be true or false", key);
    *out = json_is_true(v);
    return true;
}

static bool add_stop(struct hm_api_request *r, json_t *s, struct hm_api_error *err)
{
    if (!json_is_string(s))
        return hm_api_error_set(err, 400, "stop", "'stop' must be a string or a list of strings");
    size_t n = json_string_length(s);
    if (n == 0 || n > HM_API_MAX_STOP_LEN)
        return hm_api_error_set(err, 400, "stop", "a stop string must have 1 to %d bytes",
                                HM_API_MAX_STOP_LEN);
    char *copy = hm_malloc(n + 1);
    if (!copy)
        return hm_api_error_set(err, 500, NULL, "out of memory");
    memcpy(copy, json_string_value(s), n + 1);
    r->stop[r->n_stop] = copy;
    r->stop_len[r->n_stop++] = n;
    return true;
}

/* "stop": a string or a list of at most HM_API_MAX_STOP strings. */
static bool get_stop(json_t *root, struct hm_api_request *r, struct hm_api_error *err)
{
    json_t *v = field(root, "stop");
    if (!v || !json_is_array(v))
        return !v || add_stop(r, v, err);
    if (json_array_size(v) > HM_API_MAX_STOP)
        return hm_api_error_set(err, 400, "stop", "'stop' has %zu strings; at most %d are allowed",
                                json_array_size(v), HM_API_MAX_STOP);
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s)
    {
        if (!add_stop(r, s, err))
            return false;
    }
    return true;
}

static bool get_model(json_t *root, struct hm_api_request *r, struct hm_api_error *err)
{
    json_t *v = field(root, "model");
    if (!v)
        return true;
    if (!json_is_string(v))
        return hm_api_error_set(err, 400, "model", "'model' must be a string");
    if (json_string_length(v) >= sizeof r->model)
        return hm_api_error_set(err, 400, "model", "'model' is longer than %zu bytes",
                                sizeof r->model - 1);
    memcpy(r->model, json_string_value(v), json_string_length(v) + 1);
    return true;
}

/* Sampling, length, stream and n: the keys both endpoints share. */
static bool get_params(json_t *root, struct hm_api_request *r, struct hm_api_error *err)
{
    long long n = 1, max_tokens = 0, top_k = 0, seed = 0;
    bool given;
    struct hm_sampler_opts *s = &r->sampling;
    if (!get_int(root, "n", 1, 1 << 20, &n, NULL, err))
        return false;
    if (n != 1)
        return hm_api_error_set(err, 400, "n", "'n' must be 1 (one choice per request)");
    const char *len_key =
        field(root, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if (!get_int(root, len_key, 1, 1 << 24, &max_tokens, NULL, err) ||
        !get_int(root, "top_k", 0, 1 << 24, &top_k, NULL, err) ||
        !get_int(root, "seed", INT64_MIN, INT64_MAX, &seed, &given, err) ||
        !get_number(root, "temperature", 0, 2, &s->temperature, err) ||
        !get_number(root, "top_p", 1e-6, 1, &s->top_p, err) ||
        !get_number(root, "repetition_penalty", 1e-3, 100, &s->repetition_penalty, err) ||
        !get_bool(root, "stream", &r->stream, err) || !get_stop(root, r, err) ||
        !get_bool(root, "ignore_eos", &r->ignore_eos, err) || !get_model(root, r, err))
        return false;
    r->max_tokens = (int)max_tokens;
    s->top_k = (int)top_k;
    s->seed = (uint64_t)seed; /* negative seeds are distinct seeds too */
    r->seed_given = given;
    json_t *so = field(root, "stream_options");
    if (so && !json_is_object(so))
        return hm_api_error_set(err, 400, "stream_options", "'stream_options' must be an object");
    return !so || get_bool(so, "include_usage", &r->include_usage, err);
}

/* "prompt": a string, or a list holding exactly one string. */
static bool get_prompt(json_t *root, struct hm_api_request *r, struct hm_api_error *err)
{
    json_t *v = field(root, "prompt");
    if (json_is_array(v) && json_array_size(v) == 1)
        v = json_array_get(v, 0);
    if (!v)
        return hm_api_error_set(err, 400, "prompt", "'prompt' is required");
    if (!json_is_string(v))
        return hm_api_error_set(err, 400, "prompt", "'prompt' must be a string");
    size_t n = json_string_length(v);
    if (n == 0)
        return hm_api_error_set(err, 400, "prompt", "'prompt' is empty");
    if (!(r->prompt = hm_malloc(n + 1)))
        return hm_api_error_set(err, 500, NULL, "out of memory");
    memcpy(r->prompt, json_string_value(v), n + 1);
    r->prompt_len = n;
    return true;
}

/* "messages" through the chat module's OpenAI record parser (the one training data meets). */
static bool get_messages(json_t *root, const char *json, size_t len, struct hm_api_request *r,
                         struct hm_api_error *err)
{
    json_t *v = field(root, "messages");
    if (!v)
        return hm_api_error_set(err, 400, "messages", "'messages' is required");
    if (!json_is_array(v) || json_array_size(v) == 0)
        return hm_api_error_set(err, 400, "messages", "'messages' must be a non-empty array");
    enum hm_chat_record kind;
    enum hm_status st = hm_chat_parse_record(json, len, &r->conv, &kind);
    if (st == HM_ERR_NOMEM)
        return hm_api_error_set(err, 500, NULL, "out of memory");
    if (st != HM_OK)
        return hm_api_error_set(err, 400, "messages", "%s", hm_last_error());
    return true;
}

bool hm_api_parse_request(enum hm_api_kind kind, const char *json, size_t len,
                          struct hm_api_request *out, struct hm_api_error *err)
{
    memset(out, 0, sizeof *out);
    out->kind = kind;
    out->sampling = hm_sampler_opts_default();
    out->sampling.temperature = 1.0f; /* OpenAI's default, not the CLI's 0.8 */
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    bool ok;
    if (!root)
        ok = hm_api_error_set(err, 400, NULL, "the body is not valid JSON: %s (at byte %d)",
                              jerr.text, jerr.position);
    else if (!json_is_object(root))
        ok = hm_api_error_set(err, 400, NULL, "the body must be a JSON object");
    else
        ok = get_params(root, out, err) &&
             (kind == HM_API_CHAT ? get_messages(root, json, len, out, err)
                                  : get_prompt(root, out, err));
    json_decref(root);
    if (!ok)
        hm_api_request_free(out);
    return ok;
}

void hm_api_request_free(struct hm_api_request *r)
{
    hm_chat_conv_clear(&r->conv);
    hm_free(r->prompt);
    for (int i = 0; i < r->n_stop; i++)
        hm_free(r->stop[i]);
    enum hm_api_kind kind = r->kind;
    memset(r, 0, sizeof *r);
    r->kind = kind;
}
