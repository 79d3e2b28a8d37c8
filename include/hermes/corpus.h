/*
 * corpus.h - train a tokenizer straight from corpus files (.txt lines or .jsonl records,
 * optionally .gz/.zst), as `train-tokenizer` does and as `train` does when its tokenizer file is
 * missing.
 */
#ifndef HERMES_CORPUS_H
#define HERMES_CORPUS_H

#include "hermes/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

HM_API enum hm_status hm_corpus_train_tokenizer(const char *const *paths, int n_paths,
                                                const char *text_field,
                                                const struct hm_tokenizer_train_opts *opts,
                                                struct hm_tokenizer **out);

#ifdef __cplusplus
}
#endif
#endif
