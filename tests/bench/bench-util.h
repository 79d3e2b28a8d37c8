/*
 * bench-util.h - the few helpers every benchmark program shares: a monotonic clock, a fatal
 * status check that names the program, and a comparator for medians.
 */
#ifndef HERMES_BENCH_UTIL_H
#define HERMES_BENCH_UTIL_H

#include "hermes/hermes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Exit with "<program>: <what>: <error>" when st is not HM_OK. */
static inline void check(enum hm_status st, const char *what)
{
    if (st != HM_OK) {
        fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what, hm_last_error());
        exit(1);
    }
}

static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#endif
