/*
 * dataset.h - training data: documents from files (or stdin) turned into one token stream with
 * <eos> after every document, encoded in parallel and kept in a memory-mapped token cache.
 *
 * A `.txt` file is one document; a `.jsonl` file holds one document per record (its text field);
 * `.gz` and `.zst` are decompressed on the fly. The cache key hashes the tokenizer, the text field
 * and every input's bytes, so a second run over the same inputs skips tokenization and any change
 * rebuilds the cache.
 */
#ifndef HERMES_DATASET_H
#define HERMES_DATASET_H

#include "hermes/token-cache.h"
#include "hermes/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

struct hm_dataset_opts {
    const char *const *paths; /* n_paths files ("-": standard input); none reads stdin */
    int n_paths;
    const char *text_field;   /* JSONL field, "text" */
    const char *cache_path;   /* token cache to reuse or (re)write */
    int n_threads;
    const char *flag;         /* names the inputs in messages: "--data" when NULL */
    void (*after_read)(const char *path); /* tests: called after each file is read, before the
                                           * check that it did not change meanwhile; NULL */
};

struct hm_dataset_info {
    uint64_t n_docs;
    uint64_t n_bytes;
    bool cache_hit;
    double seconds;
};

/* Standard input, text field "text", no cache path (set one), all threads. */
HM_API struct hm_dataset_opts hm_dataset_opts_default(void);

/* Open (or build) the token cache for the inputs. HM_ERR_FORMAT for empty data, HM_ERR_IO for an
 * unreadable file or one that changed while it was read (no cache is written then), HM_ERR_FORMAT
 * for malformed JSONL (with file and line), HM_ERR_MISMATCH when the
 * tokenizer has no <eos>. */
HM_API enum hm_status hm_dataset_open(struct hm_tokenizer *tok, const struct hm_dataset_opts *opts,
                                      struct hm_token_cache *out, struct hm_dataset_info *info);

#ifdef __cplusplus
}
#endif
#endif
