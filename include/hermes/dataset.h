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

/* ---- chat data -------------------------------------------------------------------------------- */

enum hm_data_format { HM_DATA_AUTO = 0, HM_DATA_TEXT, HM_DATA_CHAT };
/* "auto", "text" or "chat"; HM_ERR_USAGE otherwise. */
HM_API enum hm_status hm_data_format_parse(const char *s, enum hm_data_format *out);
/* Auto-detection: chat when the first record of the first .jsonl input holds "messages" or
 * "conversations" (chat.h), text otherwise (and for standard input). */
HM_API enum hm_status hm_data_format_detect(const char *const *paths, int n_paths, enum hm_data_format *out);

struct hm_chat_dataset_opts {
    const char *const *paths; /* .jsonl files (optionally .gz/.zst); n_paths == 0 reads stdin */
    int n_paths;
    int seq_len;              /* windows of seq_len + 1 tokens */
    const char *cache_path;   /* token cache written here */
    const char *flags_path;   /* per-token flags (HM_TOKEN_*), a token cache of values 0..3 */
    const char *tok_name;     /* for error messages */
};

/* Standard input, seq_len 256 (the trainer's default), no paths set. */
HM_API struct hm_chat_dataset_opts hm_chat_dataset_opts_default(void);

struct hm_chat_dataset_info {
    uint64_t n_records;   /* conversations read */
    uint64_t n_packed;    /* conversations in the windows */
    uint64_t n_no_reply;  /* skipped: no assistant message */
    uint64_t n_too_long;  /* dropped: more than seq_len + 1 tokens */
    uint64_t n_windows;
    uint64_t n_target_tokens; /* assistant tokens trained on (per epoch) */
    uint64_t n_pad_tokens;
    double seconds;
};

/*
 * Render every conversation as ChatML and pack whole conversations, in file order, into windows
 * of seq_len + 1 tokens; the rest of a window that cannot take the next conversation is padding
 * (never a target). Too-long rule: a conversation longer than a window is dropped and counted,
 * never cut, so no reply is trained without its prompt. Train with stride seq_len + 1 and attention
 * limited to each conversation (the flags' HM_TOKEN_DOC_START). Errors (HM_ERR_FORMAT with
 * file:line): malformed JSON, a record that is not a conversation, an unknown role, non-string
 * content; HM_ERR_MISMATCH when the tokenizer lacks the ChatML tokens; HM_ERR_USAGE when nothing
 * is left to train on. On error nothing is written.
 */
HM_API enum hm_status hm_chat_dataset_open(struct hm_tokenizer *tok, const struct hm_chat_dataset_opts *opts,
                                           struct hm_token_cache *tokens, struct hm_token_cache *flags,
                                           struct hm_chat_dataset_info *info);

#ifdef __cplusplus
}
#endif
#endif
