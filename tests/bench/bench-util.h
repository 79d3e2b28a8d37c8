/*
 * bench-util.h - the few helpers every benchmark program shares: a monotonic clock, a fatal
 * status check that names the program, a comparator for medians, and the setup of a training
 * step as the trainer does it (bench-train on the CPU, bench-train-gpu on the GPU).
 */
#ifndef HERMES_BENCH_UTIL_H
#define HERMES_BENCH_UTIL_H

#include "hermes/hermes.h"
#include "hermes/model.h"
#include "hermes/optim.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* One training step's state: the model (init seed 1, in `dt`), the (B, T) graph, AdamW with
 * global-norm clipping at 1.0, and B*T fixed pseudo-random token ids and targets. */
struct bench_train {
    struct hm_model *m;
    struct hm_train_graph tg;
    struct hm_optimizer *opt;
    int32_t *ids, *tgt;
    size_t n;
};

static inline enum hm_status bench_train_setup(const struct hm_model_config *cfg, struct hm_backend *be,
                                               enum hm_dtype dt, int B, int T, struct bench_train *b)
{
    memset(b, 0, sizeof *b);
    struct hm_adamw_config ac = hm_adamw_defaults();
    ac.grad_clip = 1.0f;
    enum hm_status st;
    if ((st = hm_model_new(cfg, be, &b->m)) != HM_OK || (st = hm_model_init_weights(b->m, 1)) != HM_OK ||
        (st = hm_model_set_dtype(b->m, dt)) != HM_OK ||
        (st = hm_model_build_train_graph(b->m, B, T, &b->tg)) != HM_OK ||
        (st = hm_optimizer_new(b->m, &ac, &b->opt)) != HM_OK)
        return st;
    b->n = (size_t)B * T;
    b->ids = malloc(b->n * sizeof *b->ids);
    b->tgt = malloc(b->n * sizeof *b->tgt);
    if (!b->ids || !b->tgt)
        return HM_ERR_NOMEM;
    unsigned s = 1;
    for (size_t i = 0; i < b->n; i++) {
        s = s * 1103515245u + 12345u;
        b->ids[i] = (int32_t)((s >> 8) % (unsigned)cfg->vocab_size);
        b->tgt[i] = (int32_t)((s >> 4) % (unsigned)cfg->vocab_size);
    }
    return HM_OK;
}

static inline void bench_train_free(struct bench_train *b)
{
    hm_optimizer_free(b->opt);
    hm_train_graph_free(&b->tg);
    hm_model_free(b->m);
    free(b->ids), free(b->tgt);
}

#endif
