/* train-windows.c - window arithmetic, the validation hold-out and the per-epoch shuffle
 * (train-windows.h). */
#include "hermes/train-windows.h"
#include "util/util.h"

#include <math.h>

enum hm_status hm_windows_init(struct hm_windows *w, uint64_t n_tokens, int T, int stride,
                               double val_frac)
{
    if (T < 1 || stride < 1)
        return hm_fail(HM_ERR_USAGE, "sequence length and stride must be positive");
    if (!(val_frac >= 0.0 && val_frac < 1.0))
        return hm_fail(HM_ERR_USAGE, "validation split %g must be in [0, 1)", val_frac);
    w->n_tokens = n_tokens;
    w->T = T;
    w->stride = stride;
    if (n_tokens < (uint64_t)T + 1)
        return hm_fail(HM_ERR_FORMAT,
                       "the data has %llu tokens, fewer than one window of seq_len+1 = %d tokens",
                       (unsigned long long)n_tokens, T + 1);
    w->n_total = (n_tokens - (uint64_t)T - 1) / (uint64_t)stride + 1;
    w->n_val = val_frac > 0 ? (uint64_t)ceil(val_frac * (double)w->n_total) : 0;
    w->val_first = w->n_total - w->n_val;
    /* A training window i overlaps validation window val_first when i*stride + T >= val_first*stride. */
    uint64_t n_train = w->val_first;
    if (w->n_val > 0) {
        uint64_t first_val_tok = w->val_first * (uint64_t)stride;
        n_train = first_val_tok >= (uint64_t)T + 1 ? (first_val_tok - (uint64_t)T - 1) / stride + 1 : 0;
        if (n_train > w->val_first)
            n_train = w->val_first;
    }
    w->n_train = n_train;
    if (w->n_train == 0)
        return hm_fail(HM_ERR_FORMAT,
                       "the data has %llu tokens: too few for a training window of %d tokens plus a "
                       "validation hold-out", (unsigned long long)n_tokens, T + 1);
    if (w->n_train > UINT32_MAX)
        return hm_fail(HM_ERR_USAGE, "too many windows (%llu); raise --stride",
                       (unsigned long long)w->n_train);
    return HM_OK;
}

void hm_epoch_order(uint64_t seed, uint64_t epoch, uint32_t *perm, uint64_t n)
{
    struct hm_rng r;
    hm_rng_seed(&r, seed * 0x9e3779b97f4a7c15ull + epoch + 1);
    for (uint64_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    for (uint64_t i = n; i > 1; i--) { /* Fisher-Yates */
        uint64_t j = hm_rng_below(&r, i);
        uint32_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}
