/*
 * util.h - small helpers shared by every module: allocation, overflow-checked sizes, files, RNG.
 * No tensor knowledge lives here. All host allocations go through hm_malloc/hm_free so tests can
 * count them (hm_alloc_count) and prove the training step allocates nothing.
 */
#ifndef HERMES_UTIL_H
#define HERMES_UTIL_H

#include "hermes/hermes.h"

#include <stdio.h>
#include <stdlib.h>

/* Internal invariant: always on, aborts with file:line. Never use for input validation. */
#define HM_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            hm_assert_fail(__FILE__, __LINE__, #cond);                                             \
    } while (0)
void hm_assert_fail(const char *file, int line, const char *cond) __attribute__((noreturn));

#define HM_MIN(a, b) ((a) < (b) ? (a) : (b))
#define HM_MAX(a, b) ((a) > (b) ? (a) : (b))
#define HM_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

void *hm_malloc(size_t n);               /* NULL on failure (caller reports HM_ERR_NOMEM) */
void *hm_calloc(size_t n, size_t size);
void *hm_realloc(void *p, size_t n);
void *hm_aligned_alloc(size_t align, size_t n); /* free with hm_free */
char *hm_strdup(const char *s);
/* Resize *p to n elements of `size` bytes; on failure *p is kept as it was. For growing several
 * parallel arrays together: `ok &= hm_grow((void **)&a, n, sizeof *a)` for each, then check ok. */
bool hm_grow(void **p, size_t n, size_t size);
/* hm_free is public (hermes.h): the one way to free what the library returns. */

/* a*b with overflow check: false on overflow. */
static inline bool hm_mul_size(size_t a, size_t b, size_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

/* a+b with overflow check: false on overflow. */
static inline bool hm_add_size(size_t a, size_t b, size_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

/* Files. Inputs are opened without ever blocking: a FIFO, device, socket or directory is refused
 * ("<path>: is a FIFO, not a regular file") before anything is read. */
enum hm_status hm_open_regular(const char *path, int *fd, uint64_t *size); /* size may be NULL */
FILE *hm_fopen_regular(const char *path, uint64_t *size); /* NULL with hm_last_error() set */
enum hm_status hm_read_file(const char *path, char **data, size_t *len); /* NUL-terminated; hm_free */
bool hm_file_exists(const char *path);
enum hm_status hm_mkdir_p(const char *path);

/* Remove "<prefix>.tmp.<pid>" files in dir (any prefix when NULL) whose process no longer runs:
 * atomic writes cut short by a crash or SIGKILL. Returns how many were removed. */
int hm_remove_dead_temps(const char *dir, const char *prefix);

/* Atomic write: data goes to "<path>.tmp.<pid>", is fsync'ed and renamed over <path>. Opening
 * first removes the temp files of <path> that dead processes left behind. */
struct hm_atomic_file {
    FILE *f;
    char *path;
    char *tmp_path;
};
enum hm_status hm_atomic_open(struct hm_atomic_file *af, const char *path);
enum hm_status hm_atomic_commit(struct hm_atomic_file *af); /* fsync + rename; closes */
void hm_atomic_abort(struct hm_atomic_file *af);            /* closes and removes the temp file */
enum hm_status hm_write_file_atomic(const char *path, const void *data, size_t len);

/* 64-bit FNV-1a, continuing from `h` (start with HM_HASH64_INIT). For cache keys, not security. */
#define HM_HASH64_INIT 0xcbf29ce484222325ull
uint64_t hm_hash64(uint64_t h, const void *data, size_t len);

/* Memory-mapped read-only file. */
struct hm_mmap {
    const void *data;
    size_t size;
};
enum hm_status hm_mmap_open(const char *path, struct hm_mmap *m);
void hm_mmap_close(struct hm_mmap *m);

/* The double nearest the shortest decimal that reads back as f (0.1f -> 0.1, not 0.100000001),
 * so JSON written from floats shows what a person typed. */
double hm_float_shortest(float f);

/* Monotonic seconds. */
double hm_time_s(void);

/* Deterministic RNG: xoshiro256** seeded by splitmix64. State is plain data so it can be saved. */
struct hm_rng {
    uint64_t s[4];
};
void hm_rng_seed(struct hm_rng *r, uint64_t seed);
uint64_t hm_rng_u64(struct hm_rng *r);
double hm_rng_uniform(struct hm_rng *r);   /* [0, 1) */
float hm_rng_normal(struct hm_rng *r);     /* N(0, 1), Box-Muller */
uint64_t hm_rng_below(struct hm_rng *r, uint64_t n); /* unbiased [0, n) */

#endif
