/*
 * response.c - the JSON the server sends, in OpenAI's shapes (serve.h): completions, SSE chunks,
 * errors, the model list. Text handed in is valid UTF-8 (text-filter.c sees to that).
 */
#include "serve.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Serialise and release `root`: NULL when out of memory or when a string was refused. */
static char *dump(json_t *root)
{
    char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return s;
}

/* "data: <json>\n\n" (consumes json). */
static char *sse_event(char *json)
{
    if (!json)
        return NULL;
    char *ev = NULL;
    if (asprintf(&ev, "data: %s\n\n", json) < 0)
        ev = NULL;
    free(json);
    return ev;
}

char *hm_api_error_json(const struct hm_api_error *err)
{
    return dump(json_pack("{s:{s:s, s:s, s:s?, s:s?}}", "error", "message", err->message, "type",
                          err->type, "param", err->param[0] ? err->param : NULL, "code",
                          err->code));
}

char *hm_api_error_sse(const struct hm_api_error *err)
{
    return sse_event(hm_api_error_json(err));
}

const char *hm_api_finish_reason(enum hm_finish_reason f, bool stop_string)
{
    return f == HM_FINISH_STOP || stop_string ? "stop" : "length";
}

static json_t *usage_json(struct hm_api_usage u)
{
    return json_pack("{s:i, s:i, s:i}", "prompt_tokens", u.prompt_tokens, "completion_tokens",
                     u.completion_tokens, "total_tokens", u.prompt_tokens + u.completion_tokens);
}

/* The envelope every reply and chunk shares. */
static json_t *envelope(const struct hm_api_reply *r, const char *object, json_t *choices)
{
    return json_pack("{s:s, s:s, s:I, s:s, s:o}", "id", r->id, "object", object, "created",
                     (json_int_t)r->created, "model", r->model, "choices", choices);
}

char *hm_api_reply_json(const struct hm_api_reply *r, const char *text, size_t len,
                        const char *finish_reason, struct hm_api_usage usage)
{
    json_t *choice = r->kind == HM_API_CHAT
                         ? json_pack("{s:i, s:{s:s, s:s%}, s:n, s:s}", "index", 0, "message",
                                     "role", "assistant", "content", text, len, "logprobs",
                                     "finish_reason", finish_reason)
                         : json_pack("{s:i, s:s%, s:n, s:s}", "index", 0, "text", text, len,
                                     "logprobs", "finish_reason", finish_reason);
    json_t *root = envelope(r, r->kind == HM_API_CHAT ? "chat.completion" : "text_completion",
                            json_pack("[o]", choice));
    if (root && json_object_set_new(root, "usage", usage_json(usage)) != 0)
        json_decref(root), root = NULL;
    return dump(root);
}

char *hm_api_chunk_sse(const struct hm_api_reply *r, const char *text, size_t len, bool first,
                       const char *finish_reason)
{
    json_t *fin = finish_reason ? json_string(finish_reason) : json_null();
    json_t *choice;
    if (r->kind == HM_API_CHAT) {
        json_t *delta = json_object();
        if (first)
            json_object_set_new(delta, "role", json_string("assistant"));
        if (!finish_reason)
            json_object_set_new(delta, "content", json_stringn(text, len));
        choice = json_pack("{s:i, s:o, s:n, s:o}", "index", 0, "delta", delta, "logprobs",
                           "finish_reason", fin);
    } else {
        choice = json_pack("{s:i, s:s%, s:n, s:o}", "index", 0, "text", finish_reason ? "" : text,
                           finish_reason ? (size_t)0 : len, "logprobs", "finish_reason", fin);
    }
    const char *object = r->kind == HM_API_CHAT ? "chat.completion.chunk" : "text_completion";
    return sse_event(dump(envelope(r, object, json_pack("[o]", choice))));
}

char *hm_api_usage_sse(const struct hm_api_reply *r, struct hm_api_usage usage)
{
    const char *object = r->kind == HM_API_CHAT ? "chat.completion.chunk" : "text_completion";
    json_t *root = envelope(r, object, json_array());
    if (root && json_object_set_new(root, "usage", usage_json(usage)) != 0)
        json_decref(root), root = NULL;
    return sse_event(dump(root));
}

char *hm_api_models_json(const char *model, long long created, bool list)
{
    json_t *m = json_pack("{s:s, s:s, s:I, s:s}", "id", model, "object", "model", "created",
                          (json_int_t)created, "owned_by", "hermes-llm");
    return dump(list ? json_pack("{s:s, s:[o]}", "object", "list", "data", m) : m);
}
