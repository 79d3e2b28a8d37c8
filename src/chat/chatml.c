/*
 * chatml.c - conversations, their JSON records, the ChatML rendering and its tokens (chat.h).
 */
#include "hermes/chat.h"
#include "util/util.h"

#include <jansson.h>
#include <string.h>

const char *hm_chat_role_name(enum hm_chat_role role)
{
    static const char *const names[] = {"system", "user", "assistant"};
    return names[role];
}

enum hm_status hm_chat_conv_add(struct hm_chat_conv *c, enum hm_chat_role role, const char *content,
                                size_t len)
{
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 8;
        if (!hm_grow((void **)&c->msgs, (size_t)cap, sizeof *c->msgs))
            return hm_fail(HM_ERR_NOMEM, "out of memory for a conversation");
        c->cap = cap;
    }
    char *copy = hm_malloc(len + 1);
    if (!copy)
        return hm_fail(HM_ERR_NOMEM, "out of memory for a conversation");
    memcpy(copy, content, len);
    copy[len] = '\0';
    c->msgs[c->n++] = (struct hm_chat_message){role, copy, len};
    return HM_OK;
}

void hm_chat_conv_clear(struct hm_chat_conv *c)
{
    for (int i = 0; i < c->n; i++)
        hm_free(c->msgs[i].content);
    hm_free(c->msgs);
    memset(c, 0, sizeof *c);
}

bool hm_chat_has_reply(const struct hm_chat_conv *c)
{
    for (int i = 0; i < c->n; i++)
        if (c->msgs[i].role == HM_ROLE_ASSISTANT)
            return true;
    return false;
}

/* ---- records ---------------------------------------------------------------------------------- */

static bool parse_role(const char *s, enum hm_chat_role *role)
{
    static const struct {
        const char *name;
        enum hm_chat_role role;
    } names[] = {{"system", HM_ROLE_SYSTEM},
                 {"user", HM_ROLE_USER},
                 {"human", HM_ROLE_USER},
                 {"assistant", HM_ROLE_ASSISTANT},
                 {"gpt", HM_ROLE_ASSISTANT}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i].name) == 0) {
            *role = names[i].role;
            return true;
        }
    return false;
}

enum hm_status hm_chat_parse_record(const char *json, size_t len, struct hm_chat_conv *out,
                                    enum hm_chat_record *kind)
{
    hm_chat_conv_clear(out);
    json_error_t err;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
    if (!root)
        return hm_fail(HM_ERR_FORMAT, "invalid JSON: %s", err.text);
    enum hm_status st = HM_OK;
    if (!json_is_object(root)) {
        st = hm_fail(HM_ERR_FORMAT, "a record must be a JSON object");
        goto out;
    }
    const char *list_key = "messages", *role_key = "role", *text_key = "content";
    json_t *list = json_object_get(root, list_key);
    if (!list) {
        list_key = "conversations", role_key = "from", text_key = "value";
        list = json_object_get(root, list_key);
    }
    *kind = list ? HM_RECORD_CHAT : HM_RECORD_TEXT;
    if (!list)
        goto out;
    if (!json_is_array(list)) {
        st = hm_fail(HM_ERR_FORMAT, "\"%s\" must be an array of messages", list_key);
        goto out;
    }
    size_t i;
    json_t *m;
    json_array_foreach(list, i, m)
    {
        json_t *r = json_is_object(m) ? json_object_get(m, role_key) : NULL;
        json_t *v = json_is_object(m) ? json_object_get(m, text_key) : NULL;
        enum hm_chat_role role;
        if (!json_is_object(m))
            st = hm_fail(HM_ERR_FORMAT, "%s[%zu] is not an object", list_key, i);
        else if (!json_is_string(r))
            st = hm_fail(HM_ERR_FORMAT, "%s[%zu] has no string \"%s\"", list_key, i, role_key);
        else if (!parse_role(json_string_value(r), &role))
            st = hm_fail(HM_ERR_FORMAT,
                         "%s[%zu]: unknown role '%s' (expected system, user/human or "
                         "assistant/gpt)",
                         list_key, i, json_string_value(r));
        else if (!json_is_string(v))
            st = hm_fail(HM_ERR_FORMAT, "%s[%zu]: \"%s\" is not a string", list_key, i, text_key);
        else
            st = hm_chat_conv_add(out, role, json_string_value(v), json_string_length(v));
        if (st != HM_OK)
            break;
    }
out:
    json_decref(root);
    if (st != HM_OK)
        hm_chat_conv_clear(out);
    return st;
}

/* ---- rendering -------------------------------------------------------------------------------- */

struct buf {
    char *p;
    size_t n, cap;
};

static bool buf_put(struct buf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = HM_MAX(2 * b->cap, b->n + n + 256);
        if (!hm_grow((void **)&b->p, cap, 1))
            return false;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return true;
}

enum hm_status hm_chat_render(const struct hm_chat_conv *c, bool add_generation_prompt, char **text,
                              size_t *len)
{
    struct buf b = {0};
    bool ok = buf_put(&b, "", 0);
    for (int i = 0; i < c->n && ok; i++) {
        const char *role = hm_chat_role_name(c->msgs[i].role);
        ok = buf_put(&b, HM_CHAT_IM_START, strlen(HM_CHAT_IM_START)) &&
             buf_put(&b, role, strlen(role)) && buf_put(&b, "\n", 1) &&
             buf_put(&b, c->msgs[i].content, c->msgs[i].len) &&
             buf_put(&b, HM_CHAT_IM_END "\n", strlen(HM_CHAT_IM_END) + 1);
    }
    if (ok && add_generation_prompt)
        ok = buf_put(&b, HM_CHAT_IM_START "assistant\n", strlen(HM_CHAT_IM_START) + 10);
    if (!ok) {
        hm_free(b.p);
        return hm_fail(HM_ERR_NOMEM, "out of memory rendering a conversation");
    }
    *text = b.p;
    *len = b.n;
    return HM_OK;
}

/* ---- tokens ----------------------------------------------------------------------------------- */

enum hm_status hm_chat_special_ids(const struct hm_tokenizer *tok, const char *tok_name,
                                   struct hm_chat_ids *ids)
{
    int64_t s = hm_tokenizer_token_to_id(tok, HM_CHAT_IM_START),
            e = hm_tokenizer_token_to_id(tok, HM_CHAT_IM_END);
    if (s < 0 || e < 0 || !hm_tokenizer_is_special(tok, s) ||
        !hm_tokenizer_is_special(tok, e))
        return hm_fail(
            HM_ERR_MISMATCH,
            "tokenizer %s has no %s and %s special tokens for chat (a new "
            "tokenizer gets them; train --format chat --checkpoint adds them to an old one)",
            tok_name ? tok_name : "", HM_CHAT_IM_START, HM_CHAT_IM_END);
    ids->im_start = s;
    ids->im_end = e;
    return HM_OK;
}

enum hm_status hm_chat_tokens_reserve(struct hm_chat_tokens *t, size_t extra)
{
    if (t->n + extra <= t->cap)
        return HM_OK;
    size_t cap = HM_MAX(2 * t->cap, t->n + extra + 64);
    bool ok = hm_grow((void **)&t->ids, cap, sizeof *t->ids);
    ok = ok && hm_grow((void **)&t->flags, cap, sizeof *t->flags);
    if (!ok)
        return hm_fail(HM_ERR_NOMEM, "out of memory for %zu chat tokens", cap);
    t->cap = cap;
    return HM_OK;
}

static enum hm_status push_id(struct hm_chat_tokens *t, hm_token id, uint8_t flag)
{
    enum hm_status st = hm_chat_tokens_reserve(t, 1);
    if (st == HM_OK) {
        t->ids[t->n] = id;
        t->flags[t->n++] = flag;
    }
    return st;
}

/* Byte-level BPE gives at most one token per byte, so len + 1 slots always suffice. */
static enum hm_status push_text(struct hm_tokenizer *tok, struct hm_chat_tokens *t, const char *s,
                                size_t len, uint8_t flag)
{
    size_t n = 0;
    enum hm_status st = hm_chat_tokens_reserve(t, len + 1);
    if (st == HM_OK)
        st = hm_tokenizer_encode(tok, s, len, t->ids + t->n, t->cap - t->n, &n);
    if (st != HM_OK)
        return st;
    HM_ASSERT(n <= t->cap - t->n);
    memset(t->flags + t->n, flag, n);
    t->n += n;
    return HM_OK;
}

enum hm_status hm_chat_encode(struct hm_tokenizer *tok, const struct hm_chat_ids *sp,
                              const struct hm_chat_conv *c, int first, bool add_generation_prompt,
                              struct hm_chat_tokens *out)
{
    enum hm_status st = HM_OK;
    char head[16];
    for (int i = first; i < c->n && st == HM_OK; i++) {
        const struct hm_chat_message *m = &c->msgs[i];
        uint8_t target = m->role == HM_ROLE_ASSISTANT ? HM_TOKEN_TARGET : 0;
        int hn = snprintf(head, sizeof head, "%s\n", hm_chat_role_name(m->role));
        if ((st = push_id(out, sp->im_start, 0)) != HM_OK ||
            (st = push_text(tok, out, head, (size_t)hn, 0)) != HM_OK ||
            (st = push_text(tok, out, m->content, m->len, target)) != HM_OK ||
            (st = push_id(out, sp->im_end, target)) != HM_OK)
            break;
        st = push_text(tok, out, "\n", 1, 0);
    }
    if (st == HM_OK && add_generation_prompt && (st = push_id(out, sp->im_start, 0)) == HM_OK)
        st = push_text(tok, out, "assistant\n", 10, 0);
    return st;
}

void hm_chat_tokens_free(struct hm_chat_tokens *t)
{
    hm_free(t->ids);
    hm_free(t->flags);
    memset(t, 0, sizeof *t);
}

void hm_chat_window_mask(const struct hm_token_cache *flags, uint64_t start, int T,
                         bool all_targets, hm_token *targets, int32_t *doc_start)
{
    for (int i = 0; i < T; i++) {
        uint32_t in = hm_token_at(flags, start + i), out = hm_token_at(flags, start + i + 1);
        doc_start[i] = i == 0 || (in & HM_TOKEN_DOC_START) ? i : doc_start[i - 1];
        bool keep = all_targets ? !(out & HM_TOKEN_DOC_START) : (out & HM_TOKEN_TARGET) != 0;
        if (!keep)
            targets[i] = HM_IGNORE_INDEX;
    }
}
