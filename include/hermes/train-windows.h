/*
 * train-windows.h - training windows over a token stream, the validation hold-out, and the seeded
 * per-epoch order.
 *
 * Window i holds tokens [i*stride, i*stride + T] (T+1 tokens: inputs and shifted targets). The
 * validation windows are the last ceil(val_frac * n) windows; training windows that would share a
 * token with a validation window are dropped, so nothing held out is ever trained on. The order of
 * an epoch depends only on (seed, epoch), so a resumed run rebuilds it from two numbers.
 */
#ifndef HERMES_TRAIN_WINDOWS_H
#define HERMES_TRAIN_WINDOWS_H

#include "hermes/hermes.h"

#ifdef __cplusplus
extern "C" {
#endif

struct hm_windows {
    uint64_t n_tokens;
    int T;           /* sequence length; a window has T+1 tokens */
    int stride;
    uint64_t n_total; /* windows that fit */
    uint64_t n_train; /* training windows are 0 .. n_train-1 */
    uint64_t val_first; /* validation windows are val_first .. n_total-1 */
    uint64_t n_val;
};

/* HM_ERR_USAGE when the tokens cannot fill one training window (the message gives both counts). */
HM_API enum hm_status hm_windows_init(struct hm_windows *w, uint64_t n_tokens, int T, int stride,
                                      double val_frac);

static inline uint64_t hm_window_start(const struct hm_windows *w, uint64_t i)
{
    return i * (uint64_t)w->stride;
}

/* Fill perm[0..n) with a permutation of 0..n-1 that depends only on (seed, epoch). */
HM_API void hm_epoch_order(uint64_t seed, uint64_t epoch, uint32_t *perm, uint64_t n);

#ifdef __cplusplus
}
#endif
#endif
