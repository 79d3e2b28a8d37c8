/*
 * alloc.c - the one place host memory is allocated. The counter is atomic so OpenMP code may
 * allocate; tests read it around a training step to prove the step allocates nothing.
 */
#include "util.h"

#include <stdatomic.h>
#include <string.h>

static atomic_uint_fast64_t n_allocs;

uint64_t hm_alloc_count(void)
{
    return atomic_load(&n_allocs);
}

void *hm_malloc(size_t n)
{
    atomic_fetch_add(&n_allocs, 1);
    return malloc(n ? n : 1);
}

void *hm_calloc(size_t n, size_t size)
{
    atomic_fetch_add(&n_allocs, 1);
    return calloc(n ? n : 1, size ? size : 1);
}

void *hm_realloc(void *p, size_t n)
{
    atomic_fetch_add(&n_allocs, 1);
    return realloc(p, n ? n : 1);
}

void *hm_aligned_alloc(size_t align, size_t n)
{
    atomic_fetch_add(&n_allocs, 1);
    void *p = NULL;
    if (posix_memalign(&p, align, n ? n : 1) != 0)
        return NULL;
    return p;
}

char *hm_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = hm_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

void hm_free(void *p)
{
    free(p);
}

bool hm_grow(void **p, size_t n, size_t size)
{
    size_t bytes;
    if (!hm_mul_size(n, size, &bytes))
        return false;
    void *q = hm_realloc(*p, bytes);
    if (!q)
        return false;
    *p = q;
    return true;
}
