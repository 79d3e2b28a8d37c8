/*
 * hermes.h - umbrella header of libhermes: version, status codes, errors, logging.
 *
 * Every library call that a user can make fail returns an `enum hm_status` and leaves a one-line,
 * thread-local message in hm_last_error(). The library never exits and never prints to stdout.
 *
 *     struct hm_model_config cfg;
 *     if (hm_config_preset("tiny", &cfg) != HM_OK)
 *         fprintf(stderr, "error: %s\n", hm_last_error());
 */
#ifndef HERMES_HERMES_H
#define HERMES_HERMES_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HM_API __attribute__((visibility("default")))

#define HM_VERSION_MAJOR 0
#define HM_VERSION_MINOR 1
#define HM_VERSION_PATCH 0
#define HM_VERSION_STRING "0.1.0"

enum hm_status {
    HM_OK = 0,
    HM_ERR_USAGE,       /* bad argument value or API misuse detectable at run time */
    HM_ERR_IO,          /* open/read/write/mmap failed (message has path + strerror) */
    HM_ERR_FORMAT,      /* malformed tokenizer.json / safetensors / config / data */
    HM_ERR_MISMATCH,    /* files disagree: vocab vs checkpoint, seq_len > max_seq_len, ... */
    HM_ERR_NOMEM,       /* host or device allocation failed (message has bytes requested) */
    HM_ERR_DEVICE,      /* CUDA / cuBLAS / NCCL / MPI runtime error */
    HM_ERR_UNSUPPORTED, /* op or dtype not on this backend; feature not built */
    HM_ERR_NUMERIC,     /* non-finite loss or grad norm */
    HM_ERR_INTERRUPTED, /* SIGINT/SIGTERM after a clean checkpoint; a draining server */
    HM_ERR_BUSY,        /* a bounded queue is full: try again later */
};

/* A token id, the same type from the tokenizer through the data, the model and generation:
 * 0 <= id < vocabulary size (negative values only as markers, e.g. -1 "none", -100 "ignore"). */
typedef int32_t hm_token;

HM_API const char *hm_version(void);
HM_API const char *hm_status_str(enum hm_status st);

/* Thread-local one-line message of the last failure. Borrowed; valid until the next failure. */
HM_API const char *hm_last_error(void);

/* Record a failure: formats the thread-local message and returns `st` (for `return hm_fail(...)`). */
HM_API enum hm_status hm_fail(enum hm_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Logging. Messages go to the callback (default: stderr, "level" filtered). */
enum hm_log_level { HM_LOG_DEBUG = 0, HM_LOG_INFO, HM_LOG_WARN, HM_LOG_ERROR, HM_LOG_QUIET };
typedef void (*hm_log_fn)(enum hm_log_level level, const char *msg, void *user);
HM_API void hm_log_set(hm_log_fn fn, void *user);
HM_API void hm_log_set_level(enum hm_log_level level);
HM_API void hm_log(enum hm_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Free memory the library returned to the caller (strings such as hm_config_to_json's and
 * hm_tokenizer_to_json's). Objects with a constructor have their own hm_*_free. NULL is a no-op. */
HM_API void hm_free(void *p);

/* Host allocation counter, for tests that prove a hot path allocates nothing. */
HM_API uint64_t hm_alloc_count(void);

#ifdef __cplusplus
}
#endif
#endif
