/*
 * tokenizer.h - byte-level BPE tokenizer (GPT-2 style), compatible with HF `tokenizers`:
 * train (same vocab and merges as HF BpeTrainer), load/save tokenizer.json, encode, decode.
 *
 *     struct hm_tokenizer *tok;
 *     if (hm_tokenizer_load("tokenizer.json", &tok) != HM_OK)
 *         fprintf(stderr, "error: %s\n", hm_last_error());
 *     hm_token ids[64];
 *     size_t n;
 *     hm_tokenizer_encode(tok, "Hello world", 11, ids, 64, &n); // n may exceed 64: retry bigger
 *     hm_tokenizer_free(tok);
 *
 * Threads: a tokenizer is read-only after load/train, except for the pre-token cache that
 * hm_tokenizer_encode uses; so call hm_tokenizer_encode from one thread at a time per tokenizer.
 * hm_tokenizer_encode_batch, decode and the getters may run concurrently with each other.
 */
#ifndef HERMES_TOKENIZER_H
#define HERMES_TOKENIZER_H

#include "hermes/hermes.h"

#ifdef __cplusplus
extern "C" {
#endif

struct hm_tokenizer; /* opaque */

/* Load any byte-level BPE tokenizer.json (ours, GPT-2's; merges as "a b" or ["a","b"]).
 * Errors: HM_ERR_IO (unreadable), HM_ERR_FORMAT (malformed, truncated, inconsistent),
 * HM_ERR_UNSUPPORTED (WordPiece/Unigram/WordLevel models, normalizers, other pre-tokenizers,
 * dropout, single_word added tokens). *out is written only on success. */
HM_API enum hm_status hm_tokenizer_load(const char *path, struct hm_tokenizer **out);
/* Same, from an in-memory JSON document; `name` is used in error messages. */
HM_API enum hm_status hm_tokenizer_load_json(const char *json, size_t len, const char *name,
                                             struct hm_tokenizer **out);
/* Write tokenizer.json atomically (temp file + rename). HM_ERR_IO on failure. */
HM_API enum hm_status hm_tokenizer_save(const struct hm_tokenizer *tok, const char *path);
/* The JSON text, NUL-terminated; caller frees with hm_free. */
HM_API enum hm_status hm_tokenizer_to_json(const struct hm_tokenizer *tok, char **json);
HM_API void hm_tokenizer_free(struct hm_tokenizer *tok); /* NULL is a no-op */

/* ---- training ------------------------------------------------------------------------------ */

enum hm_tokenizer_phase {
    HM_TOKENIZER_PHASE_COUNT, /* done = bytes of text counted, total = distinct words so far */
    HM_TOKENIZER_PHASE_MERGE, /* done = merges made, total = merges wanted (vocab_size - initial) */
};
/* Tokenizer training progress (the model trainer's is hm_train_progress_fn_t in train.h). */
typedef void (*hm_tokenizer_progress_fn)(void *user, enum hm_tokenizer_phase phase, uint64_t done,
                                         uint64_t total);

struct hm_tokenizer_train_opts {
    uint32_t vocab_size;          /* total, including special tokens and the 256 bytes */
    uint64_t min_frequency;       /* stop when the best pair count is below max(1, this) */
    const char *const *special_tokens; /* ids 0..n-1 in this order; UTF-8; no duplicates */
    size_t n_special_tokens;
    int n_threads;                /* 0 = OpenMP default */
    hm_tokenizer_progress_fn progress; /* optional; called from the calling thread */
    void *progress_user;
};

/* 32000 tokens, min_frequency 2, specials <pad> <bos> <eos> <unk> (ids 0..3), all threads. */
HM_API struct hm_tokenizer_train_opts hm_tokenizer_train_opts_default(void);

/* Streaming trainer: feed sequences (each is pre-tokenized on its own, as HF's
 * train_from_iterator does with each string), then finish. Word counting runs in parallel
 * batches; memory grows with the distinct words, not the corpus. Special-token text inside
 * the sequences is trained on as ordinary text (HF's BpeTrainer(special_tokens=...) recipe). */
struct hm_tokenizer_trainer;
/* HM_ERR_USAGE: vocab_size < n_special + 256, empty or duplicated special token, bad UTF-8. */
HM_API enum hm_status hm_tokenizer_trainer_new(const struct hm_tokenizer_train_opts *opts,
                                               struct hm_tokenizer_trainer **out);
/* `text` is copied; bytes need not be valid UTF-8. */
HM_API enum hm_status hm_tokenizer_trainer_feed(struct hm_tokenizer_trainer *tr, const char *text,
                                                size_t len);
/* Learn the merges (one call per trainer). HM_ERR_FORMAT when the corpus is empty. On a
 * merge whose result string already has an id (formats.md §1.7.1, e.g. a special token that is
 * also a corpus word) the id is reused and the vocab does not grow, exactly as HF does. */
HM_API enum hm_status hm_tokenizer_trainer_finish(struct hm_tokenizer_trainer *tr,
                                                  struct hm_tokenizer **out);
HM_API void hm_tokenizer_trainer_free(struct hm_tokenizer_trainer *tr);

/* One-shot: train on n in-memory sequences texts[i] of lens[i] bytes. */
HM_API enum hm_status hm_tokenizer_train(const struct hm_tokenizer_train_opts *opts,
                                         const char *const *texts, const size_t *lens, size_t n,
                                         struct hm_tokenizer **out);

/* ---- vocabulary ---------------------------------------------------------------------------- */

/* Number of ids, added tokens included (max id + 1). */
HM_API uint32_t hm_tokenizer_vocab_size(const struct hm_tokenizer *tok);
/* Id of a token by its tokenizer.json spelling ("<eos>", "Ġthe"), or -1 if absent. */
HM_API hm_token hm_tokenizer_token_to_id(const struct hm_tokenizer *tok, const char *token);
/* The end-of-document token: <eos>, else GPT-2's <|endoftext|>, else -1. */
HM_API hm_token hm_tokenizer_eos_id(const struct hm_tokenizer *tok);
/* tokenizer.json spelling of an id (borrowed, valid until free), or NULL for an unused id. */
HM_API const char *hm_tokenizer_id_to_token(const struct hm_tokenizer *tok, hm_token id);
HM_API bool hm_tokenizer_is_special(const struct hm_tokenizer *tok, hm_token id);

/* ---- encoding ------------------------------------------------------------------------------ */

/* Encode len bytes (any bytes; invalid UTF-8 is fine). Added/special tokens are matched first
 * (leftmost-longest), then the GPT-2 regex, then BPE by merge rank. Writes min(cap, n) ids and
 * sets *n_out = n, the full count (snprintf-style): call again with cap >= n when n > cap.
 * Never adds BOS/EOS. HM_ERR_NOMEM on allocation failure. Not thread-safe (see top). */
HM_API enum hm_status hm_tokenizer_encode(struct hm_tokenizer *tok, const char *text, size_t len,
                                          hm_token *ids, size_t cap, size_t *n_out);

/* Result of a batch encode: the ids of document i are ids[offsets[i] .. offsets[i+1]). */
struct hm_token_batch {
    hm_token *ids;
    size_t *offsets; /* n_docs + 1 entries */
    size_t n_docs;
    size_t n_ids;
};
/* Encode n_docs documents in parallel (OpenMP, one cache per thread; n_threads 0 = default).
 * Thread-safe with respect to other batch calls. Free the result with hm_token_batch_free. */
HM_API enum hm_status hm_tokenizer_encode_batch(const struct hm_tokenizer *tok,
                                                const char *const *texts, const size_t *lens,
                                                size_t n_docs, int n_threads,
                                                struct hm_token_batch *out);
HM_API void hm_token_batch_free(struct hm_token_batch *b);

/* ---- decoding ------------------------------------------------------------------------------ */

/* Decode ids to the exact bytes (decode(encode(x)) == x for any x). Special tokens are skipped
 * when skip_special. Writes min(cap, n) bytes plus a NUL when cap > 0 (truncated to cap - 1),
 * and sets *n_out = n (snprintf-style, NUL not counted). HM_ERR_USAGE for an id outside the
 * vocabulary. */
HM_API enum hm_status hm_tokenizer_decode(const struct hm_tokenizer *tok, const hm_token *ids,
                                          size_t n, bool skip_special, char *buf, size_t cap,
                                          size_t *n_out);

/* Streaming decoder for generation: text comes out only at UTF-8 character boundaries; bytes
 * that can never form a character are passed through as they are. */
struct hm_decode_stream;
HM_API enum hm_status hm_decode_stream_new(const struct hm_tokenizer *tok, bool skip_special,
                                           struct hm_decode_stream **out);
/* Add one id. *text (borrowed, valid until the next call) receives *len >= 0 ready bytes. */
HM_API enum hm_status hm_decode_stream_push(struct hm_decode_stream *s, hm_token id,
                                            const char **text, size_t *len);
/* Emit what is still held back (an incomplete character at the end of generation). */
HM_API void hm_decode_stream_flush(struct hm_decode_stream *s, const char **text, size_t *len);
HM_API void hm_decode_stream_free(struct hm_decode_stream *s);

#ifdef __cplusplus
}
#endif
#endif
