/*
 * session-chat.h - the chat half of a training session (session.c): the data format, ChatML tokens
 * added to a tokenizer that lacks them, and the packed conversation windows, with their start-up
 * lines. Library-internal.
 */
#ifndef HERMES_SESSION_CHAT_H
#define HERMES_SESSION_CHAT_H

#include "hermes/session.h"
#include "hermes/token-cache.h"

/* opts->format with auto resolved (chat.h's detection over the data files). Chat data trains in
 * one process with whole conversations per window: HM_ERR_USAGE with world > 1 or a stride. */
enum hm_status hm_session_chat_format(const struct hm_session_opts *o, int world, enum hm_data_format *out);

/* Make *tok hold <|im_start|> and <|im_end|>: nothing to do when it has them; otherwise, only when
 * fine-tuning from `checkpoint` (else HM_ERR_MISMATCH), a grown copy replaces *tok and is written to
 * output/tokenizer.json; *n_added says how many ids were appended (0 or 2). */
enum hm_status hm_session_chat_tokens(struct hm_tokenizer **tok, const char *tok_path, const char *checkpoint,
                                      const char *output, int *n_added);

/* Conversations of `paths` packed into windows of seq_len + 1 tokens, cached as
 * output/tokens-<which>.bin and .flags; the summary lines go to hm_log. */
enum hm_status hm_session_chat_data(struct hm_tokenizer *tok, const char *tok_path, const char *const *paths,
                                    int n_paths, int seq_len, const char *output, const char *which,
                                    struct hm_token_cache *tokens, struct hm_token_cache *flags);

#endif
