/* train-chat.h - `train --format chat`: chat tokens and packed conversation data (train-chat.c). */
#ifndef HERMES_CLI_TRAIN_CHAT_H
#define HERMES_CLI_TRAIN_CHAT_H

#include "hermes/dataset.h"
#include "opts.h"

/* --format, with "auto" resolved from the data files. */
enum hm_status cli_train_format(const char *spec, const struct cli_list *data,
                                enum hm_data_format *out);
/* Make sure *tok has the ChatML tokens: a base being fine-tuned (checkpoint) gets them added, the
 * result saved as OUTPUT/tokenizer.json and *n_added = 2 (the model grows to match). */
enum hm_status cli_train_chat_tokens(struct hm_tokenizer **tok, const char *tok_path,
                                     const char *checkpoint, const char *output, int *n_added);
/* Pack `files` into OUTPUT/tokens-WHICH.{bin,flags} and print the start-up lines. */
enum hm_status cli_train_chat_data(struct hm_tokenizer *tok, const char *tok_path,
                                   const struct cli_list *files, int seq_len, const char *output,
                                   const char *which, struct hm_token_cache *tokens,
                                   struct hm_token_cache *flags);

#endif
