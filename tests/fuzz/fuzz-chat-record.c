/* fuzz-chat-record - one chat data record (hm_chat_parse_record), then the chat data set's
 * record-to-ids step (hm_chat_encode) with the export fixture's tokenizer plus the ChatML tokens.
 * A record that parses writes back as JSON that parses to the same messages (bytes, NULs and
 * roles); its token ids decode to exactly its ChatML rendering; and the ids flagged as training
 * targets decode to exactly the assistant contents, each with its <|im_end|>. */
#include "hermes/chat.h"
#include "hermes/tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct hm_tokenizer *tok;
static struct hm_chat_ids sp;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *path = HM_FIXTURES_DIR "/export/tokenizer.json";
    struct hm_tokenizer *base, *chat;
    int added;
    if (hm_tokenizer_load(path, &base) != HM_OK ||
        hm_chat_add_tokens(base, path, &chat, &added) != HM_OK) {
        fprintf(stderr, "fuzz-chat-record: %s: %s\n", path, hm_last_error());
        abort();
    }
    if (chat)
        hm_tokenizer_free(base);
    tok = chat ? chat : base;
    if (hm_chat_special_ids(tok, path, &sp) != HM_OK)
        abort();
    return 0;
}

static bool same_messages(const struct hm_chat_conv *a, const struct hm_chat_conv *b)
{
    if (a->n != b->n)
        return false;
    for (int i = 0; i < a->n; i++)
        if (a->msgs[i].role != b->msgs[i].role || a->msgs[i].len != b->msgs[i].len ||
            memcmp(a->msgs[i].content, b->msgs[i].content, a->msgs[i].len) != 0)
            return false;
    return true;
}

/* The conversation as an OpenAI-style record. */
static char *to_record(const struct hm_chat_conv *c)
{
    json_t *list = json_array();
    for (int i = 0; i < c->n; i++)
        json_array_append_new(list, json_pack("{s:s, s:s%}", "role",
                                              hm_chat_role_name(c->msgs[i].role), "content",
                                              c->msgs[i].content, c->msgs[i].len));
    json_t *root = json_pack("{s:o}", "messages", list);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

static void check_tokens(const struct hm_chat_conv *c)
{
    char *text;
    size_t len;
    struct hm_chat_tokens t = {0};
    if (hm_chat_render(c, false, &text, &len) != HM_OK ||
        hm_chat_encode(tok, &sp, c, 0, false, &t) != HM_OK)
        abort();
    char *out = malloc(len + 1);
    size_t got;
    if (!out || hm_tokenizer_decode(tok, t.ids, t.n, false, out, len + 1, &got) != HM_OK ||
        got != len || memcmp(out, text, len) != 0)
        abort(); /* the ids are the rendering, byte for byte */
    /* Targets: assistant contents and their <|im_end|>, nothing else. */
    static const char end[] = "<|im_end|>";
    size_t want_len = 0, n_targets = 0;
    for (int i = 0; i < c->n; i++)
        if (c->msgs[i].role == HM_ROLE_ASSISTANT)
            want_len += c->msgs[i].len + sizeof end - 1;
    char *want = malloc(want_len + 1);
    hm_token *targets = malloc((t.n + 1) * sizeof *targets);
    if (!want || !targets)
        abort();
    for (int i = 0, at = 0; i < c->n; i++)
        if (c->msgs[i].role == HM_ROLE_ASSISTANT) {
            memcpy(want + at, c->msgs[i].content, c->msgs[i].len);
            memcpy(want + at + c->msgs[i].len, end, sizeof end - 1);
            at += (int)(c->msgs[i].len + sizeof end - 1);
        }
    for (size_t i = 0; i < t.n; i++)
        if (t.flags[i] & HM_TOKEN_TARGET)
            targets[n_targets++] = t.ids[i];
    char *got_targets = malloc(want_len + 1);
    if (!got_targets ||
        hm_tokenizer_decode(tok, targets, n_targets, false, got_targets, want_len + 1, &got) !=
            HM_OK ||
        got != want_len || memcmp(got_targets, want, want_len) != 0)
        abort();
    free(got_targets);
    free(targets);
    free(want);
    free(out);
    hm_free(text);
    hm_chat_tokens_free(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hm_chat_conv c = {0}, again = {0};
    enum hm_chat_record kind;
    if (hm_chat_parse_record((const char *)data, size, &c, &kind) != HM_OK) {
        if (c.n || c.msgs)
            abort(); /* a refused record leaves no messages behind */
        return 0;
    }
    if (kind == HM_RECORD_TEXT) {
        if (c.n)
            abort();
        return 0;
    }
    char *json = to_record(&c);
    enum hm_chat_record kind2;
    if (!json || hm_chat_parse_record(json, strlen(json), &again, &kind2) != HM_OK ||
        kind2 != HM_RECORD_CHAT || !same_messages(&c, &again))
        abort();
    free(json);
    check_tokens(&c);
    hm_chat_conv_clear(&again);
    hm_chat_conv_clear(&c);
    return 0;
}
