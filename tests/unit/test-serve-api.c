/* test-serve-api.c - the pure parts of `serve` (src/serve/serve.h): request parsing and
 * validation, response and SSE chunk bodies, errors, stop strings matched across chunk boundaries
 * and never released (not even in part), UTF-8 held back until a character is whole, the bearer
 * key check and the access-log line. */
#include "testutil.h"

#include "serve/serve.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static bool parse(enum hm_api_kind kind, const char *json, struct hm_api_request *r,
                  struct hm_api_error *e)
{
    return hm_api_parse_request(kind, json, strlen(json), r, e);
}

/* A request that must be refused with 400 naming `param` ("" for none). */
static void refused(enum hm_api_kind kind, const char *json, const char *param)
{
    struct hm_api_request r;
    struct hm_api_error e;
    if (parse(kind, json, &r, &e))
        fail_msg("accepted: %s", json);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.type, "invalid_request_error");
    if (strcmp(e.param, param) != 0)
        fail_msg("%s: param '%s', expected '%s' (%s)", json, e.param, param, e.message);
    assert_true(strlen(e.message) > 0);
    assert_null(strchr(e.message, '\n')); /* one line, whatever the body quoted */
}

static void test_chat_request(void **state)
{
    struct hm_api_request r;
    struct hm_api_error e;
    const char *json = "{\"model\": \"m\", \"messages\": [{\"role\": \"system\", \"content\": \"Be "
                       "brief.\"}, {\"role\": \"user\", \"content\": \"Hi\"}], \"max_tokens\": 7, "
                       "\"temperature\": 0, \"top_p\": 0.5, \"top_k\": 3, \"repetition_penalty\": "
                       "1.1, \"seed\": 42, \"stop\": [\"a\", \"bc\"], \"stream\": true, "
                       "\"stream_options\": {\"include_usage\": true}, \"n\": 1, \"user\": \"x\", "
                       "\"ignore_eos\": true}";
    assert_true(parse(HM_API_CHAT, json, &r, &e));
    assert_int_equal(r.conv.n, 2);
    assert_int_equal(r.conv.msgs[0].role, HM_ROLE_SYSTEM);
    assert_string_equal(r.conv.msgs[1].content, "Hi");
    assert_string_equal(r.model, "m");
    assert_int_equal(r.max_tokens, 7);
    assert_true(r.sampling.temperature == 0.0f && r.sampling.top_p == 0.5f);
    assert_int_equal(r.sampling.top_k, 3);
    assert_true(r.sampling.repetition_penalty == 1.1f);
    assert_true(r.seed_given && r.sampling.seed == 42);
    assert_int_equal(r.n_stop, 2);
    assert_string_equal(r.stop[1], "bc");
    assert_true(r.stream && r.include_usage && r.ignore_eos);
    hm_api_request_free(&r);
}

static void test_defaults_and_aliases(void **state)
{
    struct hm_api_request r;
    struct hm_api_error e;
    assert_true(parse(HM_API_COMPLETION, "{\"prompt\": \"once\", \"stop\": \"x\", \"seed\": null}",
                      &r, &e));
    assert_string_equal(r.prompt, "once");
    assert_true(r.sampling.temperature == 1.0f && r.sampling.top_p == 1.0f);
    assert_int_equal(r.max_tokens, 0);
    assert_false(r.seed_given || r.stream || r.model[0]);
    assert_int_equal(r.n_stop, 1);
    hm_api_request_free(&r);
    /* max_completion_tokens (the newer name) wins; a prompt list of one string; 3.0 is 3 */
    assert_true(parse(HM_API_COMPLETION,
                      "{\"prompt\": [\"p\"], \"max_tokens\": 9, \"max_completion_tokens\": 3.0}",
                      &r, &e));
    assert_int_equal(r.max_tokens, 3);
    assert_string_equal(r.prompt, "p");
    hm_api_request_free(&r);
}

static void test_bad_requests(void **state)
{
    refused(HM_API_CHAT, "{\"messages\": [", "");
    refused(HM_API_CHAT, "[1, 2]", "");
    refused(HM_API_CHAT, "", "");
    refused(HM_API_CHAT, "{\"a\": 1, \"a\": 2, \"messages\": []}", ""); /* duplicate key */
    refused(HM_API_CHAT, "{}", "messages");
    refused(HM_API_CHAT, "{\"messages\": []}", "messages");
    refused(HM_API_CHAT, "{\"messages\": \"hi\"}", "messages");
    refused(HM_API_CHAT, "{\"messages\": [{\"role\": \"tool\", \"content\": \"x\"}]}", "messages");
    refused(HM_API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", "messages");
    refused(HM_API_CHAT, "{\"messages\": [{\"role\": \"a\\nb\", \"content\": \"x\"}]}", "messages");
    refused(HM_API_COMPLETION, "{\"stop\": \"\\\n\n\"}", "");
    const char *m = "\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]";
    const char *bad[][2] = {
        {"\"n\": 2", "n"},
        {"\"max_tokens\": 0", "max_tokens"},
        {"\"max_tokens\": \"5\"", "max_tokens"},
        {"\"max_tokens\": 2.5", "max_tokens"},
        {"\"max_completion_tokens\": -1", "max_completion_tokens"},
        {"\"temperature\": 2.5", "temperature"},
        {"\"temperature\": \"hot\"", "temperature"},
        {"\"top_p\": 0", "top_p"},
        {"\"top_k\": -1", "top_k"},
        {"\"repetition_penalty\": 0", "repetition_penalty"},
        {"\"seed\": 1.5", "seed"},
        {"\"stop\": 5", "stop"},
        {"\"stop\": \"\"", "stop"},
        {"\"stop\": [\"a\", \"b\", \"c\", \"d\", \"e\"]", "stop"},
        {"\"stop\": [\"a\", 1]", "stop"},
        {"\"stream\": 1", "stream"},
        {"\"stream_options\": 1", "stream_options"},
        {"\"stream_options\": {\"include_usage\": \"yes\"}", "include_usage"},
        {"\"model\": 3", "model"},
        {"\"ignore_eos\": 0", "ignore_eos"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char json[512];
        snprintf(json, sizeof json, "{%s, %s}", m, bad[i][0]);
        refused(HM_API_CHAT, json, bad[i][1]);
    }
    refused(HM_API_COMPLETION, "{}", "prompt");
    refused(HM_API_COMPLETION, "{\"prompt\": \"\"}", "prompt");
    refused(HM_API_COMPLETION, "{\"prompt\": [1, 2, 3]}", "prompt");
    refused(HM_API_COMPLETION, "{\"prompt\": [\"a\", \"b\"]}", "prompt");
}

/* Parse a body, checking it is one JSON object. */
static json_t *load(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    if (!j)
        fail_msg("not JSON (%s): %s", err.text, text);
    return j;
}

static void test_reply_bodies(void **state)
{
    struct hm_api_reply chat = {HM_API_CHAT, "chatcmpl-1", "m", 1700000000};
    struct hm_api_usage u = {5, 3};
    char *s = hm_api_reply_json(&chat, "hi \"you\"", 8, "length", u);
    json_t *j = load(s);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion");
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(c0, "message"), "content")),
        "hi \"you\"");
    assert_string_equal(json_string_value(json_object_get(c0, "finish_reason")), "length");
    json_t *usage = json_object_get(j, "usage");
    assert_int_equal(json_integer_value(json_object_get(usage, "total_tokens")), 8);
    json_decref(j);
    free(s);

    struct hm_api_reply cmpl = {HM_API_COMPLETION, "cmpl-1", "m", 1700000000};
    s = hm_api_reply_json(&cmpl, "x", 1, "stop", u);
    j = load(s);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "text_completion");
    c0 = json_array_get(json_object_get(j, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(c0, "text")), "x");
    json_decref(j);
    free(s);
}

/* The JSON of one SSE event "data: {...}\n\n". */
static json_t *event(char *sse)
{
    size_t n = strlen(sse);
    assert_true(strncmp(sse, "data: ", 6) == 0 && n > 8 && strcmp(sse + n - 2, "\n\n") == 0);
    sse[n - 2] = '\0';
    json_t *j = load(sse + 6);
    free(sse);
    return j;
}

static void test_sse_chunks(void **state)
{
    struct hm_api_reply chat = {HM_API_CHAT, "chatcmpl-1", "m", 1};
    json_t *j = event(hm_api_chunk_sse(&chat, "He", 2, true, NULL));
    assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion.chunk");
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    json_t *delta = json_object_get(c0, "delta");
    assert_string_equal(json_string_value(json_object_get(delta, "role")), "assistant");
    assert_string_equal(json_string_value(json_object_get(delta, "content")), "He");
    assert_true(json_is_null(json_object_get(c0, "finish_reason")));
    json_decref(j);
    j = event(hm_api_chunk_sse(&chat, "", 0, false, "stop"));
    c0 = json_array_get(json_object_get(j, "choices"), 0);
    assert_int_equal(json_object_size(json_object_get(c0, "delta")), 0);
    assert_string_equal(json_string_value(json_object_get(c0, "finish_reason")), "stop");
    json_decref(j);
    j = event(hm_api_usage_sse(&chat, (struct hm_api_usage){4, 2}));
    assert_int_equal(json_array_size(json_object_get(j, "choices")), 0);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(j, "usage"), "total_tokens")), 6);
    json_decref(j);
    struct hm_api_reply cmpl = {HM_API_COMPLETION, "cmpl-1", "m", 1};
    j = event(hm_api_chunk_sse(&cmpl, "lo", 2, true, NULL));
    c0 = json_array_get(json_object_get(j, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(c0, "text")), "lo");
    json_decref(j);
}

static void test_error_and_models_bodies(void **state)
{
    struct hm_api_error e;
    hm_api_error_set(&e, 404, "model", "no model '%s'", "x");
    e.code = "model_not_found";
    char *s = hm_api_error_json(&e);
    json_t *j = load(s), *err = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(err, "message")), "no model 'x'");
    assert_string_equal(json_string_value(json_object_get(err, "type")), "invalid_request_error");
    assert_string_equal(json_string_value(json_object_get(err, "param")), "model");
    assert_string_equal(json_string_value(json_object_get(err, "code")), "model_not_found");
    json_decref(j);
    free(s);
    hm_api_error_set(&e, 429, NULL, "busy");
    s = hm_api_error_json(&e);
    j = load(s);
    err = json_object_get(j, "error");
    assert_true(json_is_null(json_object_get(err, "param")) &&
                json_is_null(json_object_get(err, "code")));
    assert_string_equal(json_string_value(json_object_get(err, "type")), "rate_limit_error");
    json_decref(j);
    free(s);
    s = hm_api_models_json("tiny", 5, true);
    j = load(s);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(j, "data"), 0), "id")),
        "tiny");
    json_decref(j);
    free(s);
    assert_string_equal(hm_api_finish_reason(HM_FINISH_STOP, false), "stop");
    assert_string_equal(hm_api_finish_reason(HM_FINISH_CANCELLED, true), "stop");
    assert_string_equal(hm_api_finish_reason(HM_FINISH_LENGTH, false), "length");
}

/* Feed `pieces` one at a time; the concatenated output must be `want`, and after every push the
 * released text must be a prefix of `want` (nothing released that a stop string later claims). */
static void filter_case(const char *const *stops, int n_stop, const char *const *pieces, int n,
                        const char *want, bool stopped)
{
    size_t lens[HM_API_MAX_STOP] = {0};
    for (int i = 0; i < n_stop; i++)
        lens[i] = strlen(stops[i]);
    struct hm_text_filter f;
    hm_text_filter_init(&f, stops, lens, n_stop);
    for (int i = 0; i < n; i++) {
        assert_int_equal(hm_text_filter_push(&f, pieces[i], strlen(pieces[i])), HM_OK);
        if (f.n_out > strlen(want) || (f.n_out && memcmp(f.out, want, f.n_out) != 0))
            fail_msg("after piece %d: released '%.*s', want a prefix of '%s'", i, (int)f.n_out,
                     f.out, want);
    }
    assert_int_equal(hm_text_filter_finish(&f), HM_OK);
    if (f.n_out != strlen(want) || (f.n_out && memcmp(f.out, want, f.n_out) != 0))
        fail_msg("released '%.*s', want '%s'", (int)f.n_out, f.out, want);
    assert_int_equal(f.stopped, stopped);
    hm_text_filter_free(&f);
}

static void test_stop_strings_across_chunks(void **state)
{
    const char *stop1[] = {"STOP"};
    filter_case(stop1, 1, (const char *[]){"ab", "cS", "TO", "Pxyz"}, 4, "abc", true);
    filter_case(stop1, 1, (const char *[]){"ST", "OX", "STOP"}, 3, "STOX", true);
    /* a held prefix that does not grow into the stop string is released whole, in order */
    filter_case(stop1, 1, (const char *[]){"a", "S", "T", "O", "b"}, 5, "aSTOb", false);
    filter_case(stop1, 1, (const char *[]){"xST"}, 1, "xST", false); /* the end releases all */
    /* the earliest of several stop strings wins; a stop string inside one piece */
    const char *stop2[] = {"world", "lo w"};
    filter_case(stop2, 2, (const char *[]){"hello world"}, 1, "hel", true);
    const char *stop3[] = {"\n\n", "x"};
    filter_case(stop3, 2, (const char *[]){"line\n", "\n", "more"}, 3, "line", true);
    /* overlapping self-similar stop: "aab" in "aaab" */
    const char *stop4[] = {"aab"};
    filter_case(stop4, 1, (const char *[]){"a", "a", "a", "b"}, 4, "a", true);
    filter_case(NULL, 0, (const char *[]){"plain", " text"}, 2, "plain text", false);
}

static void test_utf8_held_back(void **state)
{
    /* "é" (C3 A9) and "€" (E2 82 AC) split across pieces come out whole */
    filter_case(NULL, 0, (const char *[]){"caf\xC3", "\xA9 \xE2", "\x82", "\xAC"}, 4,
                "caf\xC3\xA9 \xE2\x82\xAC", false);
    struct hm_text_filter f;
    hm_text_filter_init(&f, NULL, NULL, 0);
    assert_int_equal(hm_text_filter_push(&f, "a\xF0\x9F", 3), HM_OK);
    assert_int_equal(f.n_out, 1); /* the half emoji waits */
    assert_int_equal(hm_text_filter_push(&f, "\x98\x80", 2), HM_OK);
    assert_int_equal(f.n_out, 5);
    hm_text_filter_free(&f);
    /* bytes that can never form a character become U+FFFD; an unfinished one at the end too */
    filter_case(NULL, 0, (const char *[]){"a\x80", "b\xC3", "c"}, 3,
                "a\xEF\xBF\xBD"
                "b\xEF\xBF\xBD"
                "c",
                false);
    filter_case(NULL, 0, (const char *[]){"z\xE2\x82"}, 1, "z\xEF\xBF\xBD", false);
    filter_case(NULL, 0, (const char *[]){"\xE2\x82", "\xE2\x82\xAC"}, 2,
                "\xEF\xBF\xBD\xE2\x82\xAC", false);
    /* a stop string with a multi-byte character, split mid-character */
    const char *stop[] = {"\xC3\xA9t\xC3\xA9"};
    filter_case(stop, 1, (const char *[]){"un \xC3", "\xA9t\xC3", "\xA9!"}, 3, "un ", true);
}

static void test_bearer_key(void **state)
{
    assert_true(hm_serve_auth_ok("sk-1", "Bearer sk-1"));
    assert_true(hm_serve_auth_ok("sk-1", "bearer sk-1"));
    assert_false(hm_serve_auth_ok("sk-1", NULL));
    assert_false(hm_serve_auth_ok("sk-1", "Bearer sk-2"));
    assert_false(hm_serve_auth_ok("sk-1", "Bearer sk-12"));
    assert_false(hm_serve_auth_ok("sk-1", "Bearer sk-"));
    assert_false(hm_serve_auth_ok("sk-1", "Bearer "));
    assert_false(hm_serve_auth_ok("sk-1", "Basic sk-1"));
    assert_false(hm_serve_auth_ok("sk-1", "sk-1"));
}

static void test_access_line(void **state)
{
    char buf[128];
    struct hm_access_entry e = {"POST", "/v1/completions", 200, 12, 30, 45.25};
    size_t n = hm_access_format(&e, buf, sizeof buf);
    assert_int_equal(n, strlen(buf));
    assert_string_equal(buf, "serve: POST /v1/completions 200 prompt=12 completion=30 45.2 ms\n");
    struct hm_access_entry g = {"GET", "/a\nb", 404, -1, 0, 1.0};
    hm_access_format(&g, buf, sizeof buf);
    assert_string_equal(buf, "serve: GET /a?b 404 1.0 ms\n"); /* one entry, one line */
    char small[16];
    n = hm_access_format(&e, small, sizeof small);
    assert_int_equal(n, sizeof small - 1);
    assert_int_equal(small[n - 1], '\n');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_request),
        cmocka_unit_test(test_defaults_and_aliases),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_reply_bodies),
        cmocka_unit_test(test_sse_chunks),
        cmocka_unit_test(test_error_and_models_bodies),
        cmocka_unit_test(test_stop_strings_across_chunks),
        cmocka_unit_test(test_utf8_held_back),
        cmocka_unit_test(test_bearer_key),
        cmocka_unit_test(test_access_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
