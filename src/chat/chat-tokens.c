/*
 * chat-tokens.c - give an older tokenizer the ChatML special tokens (chat.h), through its JSON so
 * the result passes the same validation as any loaded tokenizer.json.
 */
#include "hermes/chat.h"
#include "util/util.h"

#include <jansson.h>
#include <string.h>

static json_t *added_token(uint32_t id, const char *content)
{
    return json_pack("{s:I, s:s, s:b, s:b, s:b, s:b, s:b}", "id", (json_int_t)id, "content",
                     content, "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0,
                     "special", 1);
}

enum hm_status hm_chat_add_tokens(const struct hm_tokenizer *tok, const char *tok_name,
                                  struct hm_tokenizer **out, int *n_added)
{
    *out = NULL;
    *n_added = 0;
    static const char *const names[2] = {HM_CHAT_IM_START, HM_CHAT_IM_END};
    int have = 0;
    for (int i = 0; i < 2; i++) {
        int64_t id = hm_tokenizer_token_to_id(tok, names[i]);
        if (id >= 0 && !hm_tokenizer_is_special(tok, (uint32_t)id))
            return hm_fail(HM_ERR_MISMATCH,
                           "tokenizer %s has %s as an ordinary token, not a special one: "
                           "it cannot be used for chat",
                           tok_name, names[i]);
        have += id >= 0;
    }
    if (have == 1)
        return hm_fail(HM_ERR_MISMATCH, "tokenizer %s has only one of %s and %s", tok_name,
                       names[0], names[1]);
    if (have == 2)
        return HM_OK;
    char *js = NULL;
    enum hm_status st = hm_tokenizer_to_json(tok, &js);
    if (st != HM_OK)
        return st;
    json_error_t err;
    json_t *root = json_loads(js, 0, &err);
    hm_free(js);
    js = NULL;
    json_t *added = root ? json_object_get(root, "added_tokens") : NULL;
    uint32_t V = hm_tokenizer_vocab_size(tok);
    if (!json_is_array(added) || json_array_append_new(added, added_token(V, names[0])) != 0 ||
        json_array_append_new(added, added_token(V + 1, names[1])) != 0 ||
        !(js = json_dumps(root, JSON_PRESERVE_ORDER | JSON_COMPACT)))
        st = hm_fail(HM_ERR_NOMEM, "out of memory adding chat tokens to %s", tok_name);
    else
        st = hm_tokenizer_load_json(js, strlen(js), tok_name, out);
    free(js);
    json_decref(root);
    if (st == HM_OK)
        *n_added = 2;
    return st;
}
