/*
 * chat.h - ChatML conversations: records, rendering, the loss mask, and a multi-turn session.
 *
 * A conversation renders exactly as transformers' ChatML template does:
 *     <|im_start|>{role}\n{content}<|im_end|>\n   for every message, then
 *     <|im_start|>assistant\n                      when a generation prompt is asked for.
 * Token ids: each text between special tokens is encoded on its own (as HF splits on added
 * tokens), and a message's header "{role}\n" is encoded apart from its content, so the ids of a
 * training conversation are the ids a chat session feeds and generates. Targets are the
 * assistant contents and their <|im_end|>; everything else is only context.
 *
 *     struct hm_chat_conv c = {0};
 *     hm_chat_conv_add(&c, HM_ROLE_USER, "Hi", 2);
 *     char *text; size_t n;
 *     hm_chat_render(&c, true, &text, &n);  // "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
 */
#ifndef HERMES_CHAT_H
#define HERMES_CHAT_H

#include "hermes/gen.h"
#include "hermes/model.h"
#include "hermes/token-cache.h"
#include "hermes/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HM_CHAT_IM_START "<|im_start|>"
#define HM_CHAT_IM_END "<|im_end|>"

enum hm_chat_role { HM_ROLE_SYSTEM = 0, HM_ROLE_USER, HM_ROLE_ASSISTANT };

struct hm_chat_message {
    enum hm_chat_role role;
    char *content; /* owned, NUL-terminated; may contain NUL bytes before len */
    size_t len;
};

struct hm_chat_conv {
    struct hm_chat_message *msgs;
    int n, cap;
};

HM_API const char *hm_chat_role_name(enum hm_chat_role role); /* "system", "user", "assistant" */
/* Append a copy of the content. HM_ERR_NOMEM only. */
HM_API enum hm_status hm_chat_conv_add(struct hm_chat_conv *c, enum hm_chat_role role,
                                       const char *content, size_t len);
HM_API void hm_chat_conv_clear(struct hm_chat_conv *c); /* frees the messages, keeps nothing */

/* ---- records -------------------------------------------------------------------------------- */

enum hm_chat_record {
    HM_RECORD_CHAT = 0, /* a conversation: *out holds its messages */
    HM_RECORD_TEXT,     /* no "messages" or "conversations" key: a plain-text record */
};
/* Parse one JSON record: OpenAI style {"messages": [{"role", "content"}]} with roles
 * system/user/assistant, or ShareGPT style {"conversations": [{"from", "value"}]} with
 * system/human/gpt (user/assistant accepted too). HM_ERR_FORMAT (message without the file and line,
 * which the caller adds) for malformed JSON, a non-array list, an unknown role or a non-string
 * content. *out is cleared first. */
HM_API enum hm_status hm_chat_parse_record(const char *json, size_t len, struct hm_chat_conv *out,
                                           enum hm_chat_record *kind);
/* True when some message is the assistant's (a conversation without one trains nothing). */
HM_API bool hm_chat_has_reply(const struct hm_chat_conv *c);

/* ---- rendering and tokens ------------------------------------------------------------------- */

/* The ChatML text (NUL-terminated, free with hm_free). */
HM_API enum hm_status hm_chat_render(const struct hm_chat_conv *c, bool add_generation_prompt,
                                     char **text, size_t *len);

struct hm_chat_ids {
    hm_token im_start, im_end;
};
/* The ids of <|im_start|> and <|im_end|>; HM_ERR_MISMATCH naming the tokenizer when it lacks them. */
HM_API enum hm_status hm_chat_special_ids(const struct hm_tokenizer *tok, const char *tok_name,
                                          struct hm_chat_ids *ids);

/* A tokenizer like `tok` with <|im_start|> and <|im_end|> appended as special tokens (ids V, V+1),
 * in *out with *n_added = 2; *out = NULL and *n_added = 0 when it has both already. HM_ERR_MISMATCH
 * when it holds only one, or holds one as an ordinary token. */
HM_API enum hm_status hm_chat_add_tokens(const struct hm_tokenizer *tok, const char *tok_name,
                                         struct hm_tokenizer **out, int *n_added);

/* A growable token list with one flag per token. */
enum {
    HM_TOKEN_TARGET = 1,   /* a trained target: assistant content and its <|im_end|> */
    HM_TOKEN_DOC_START = 2 /* first token of a conversation (packing) */
};
struct hm_chat_tokens {
    hm_token *ids;
    uint8_t *flags;
    size_t n, cap;
};
/* Append the tokens of messages [first, c->n) (and the generation prompt when asked), with
 * HM_TOKEN_TARGET on assistant contents and their <|im_end|>. No flag marks the start: callers
 * packing conversations set HM_TOKEN_DOC_START themselves. */
HM_API enum hm_status hm_chat_encode(struct hm_tokenizer *tok, const struct hm_chat_ids *sp,
                                     const struct hm_chat_conv *c, int first,
                                     bool add_generation_prompt, struct hm_chat_tokens *out);
/* Room for `extra` more tokens (capacity doubles). HM_ERR_NOMEM only. */
HM_API enum hm_status hm_chat_tokens_reserve(struct hm_chat_tokens *t, size_t extra);
HM_API void hm_chat_tokens_free(struct hm_chat_tokens *t);

/*
 * The loss mask of one packed window starting at token `start` of a chat data set, given its
 * per-token flags: targets[i] (the token at start + i + 1, already filled in) becomes
 * HM_IGNORE_INDEX unless it is an assistant target (with all_targets: unless it starts a
 * conversation, which nothing before it can predict); doc_start[i] is the window position where
 * the conversation of position i begins, for hm_attention_docs.
 */
HM_API void hm_chat_window_mask(const struct hm_token_cache *flags, uint64_t start, int T,
                                bool all_targets, hm_token *targets, int32_t *doc_start);

/* ---- multi-turn session ----------------------------------------------------------------------- */

/*
 * A conversation with a model: the KV cache persists across turns, so each turn prefills only
 * its new tokens (the user message and the assistant header). When a turn would not fit in the
 * context, the oldest user/assistant turns are dropped (never the system prompt) and what is left
 * is prefilled again; hm_chat_reply reports that in *dropped_turns.
 */
struct hm_chat_session;
struct hm_chat_session_opts {
    int max_new_tokens; /* per reply; 0 = up to the context */
};
/* max_new_tokens 0. */
HM_API struct hm_chat_session_opts hm_chat_session_opts_default(void);
HM_API enum hm_status hm_chat_session_new(struct hm_model *m, struct hm_tokenizer *tok,
                                          const char *tok_name, struct hm_sampler *s,
                                          const struct hm_chat_session_opts *opts,
                                          struct hm_chat_session **out);
HM_API void hm_chat_session_free(struct hm_chat_session *s);
/* Forget every turn; keep the system prompt (NULL or "" = none). Takes effect at the next reply. */
HM_API enum hm_status hm_chat_session_set_system(struct hm_chat_session *s, const char *system);
HM_API void hm_chat_session_reset(struct hm_chat_session *s);

struct hm_chat_reply_stats {
    int prefill_tokens; /* tokens fed before the first new token (new ones only, unless re-prefilled) */
    int new_tokens;
    int dropped_turns;        /* oldest turns dropped to make room, 0 normally */
    enum hm_stop_reason stop; /* EOS: <|im_end|> or <eos>; CALLBACK: on_token said stop */
};
/* Add the user message, generate the assistant reply and keep it in the conversation (a reply
 * stopped early is kept as far as it got, closed with <|im_end|>). on_token gets every reply
 * token (never <|im_end|>); return false to stop. */
HM_API enum hm_status hm_chat_reply(struct hm_chat_session *s, const char *user, size_t len,
                                    hm_token_fn on_token, void *user_data,
                                    struct hm_chat_reply_stats *stats);
/* Tokens the session holds in its cache now (tests). */
HM_API int hm_chat_session_tokens(const struct hm_chat_session *s);

#ifdef __cplusplus
}
#endif
#endif
