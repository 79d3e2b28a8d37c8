/* schedule.c - learning-rate schedules; the formulas are documented in include/hermes/schedule.h. */
#include "hermes/schedule.h"

#include <math.h>
#include <string.h>

double hm_lr_at(const struct hm_lr_schedule *s, long step)
{
    if (step < s->warmup_steps)
        return s->lr_max * (double)(step + 1) / (double)s->warmup_steps;
    if (s->kind == HM_LR_CONSTANT)
        return s->lr_max;
    long span = s->total_steps - s->warmup_steps;
    long t = step - s->warmup_steps;
    if (s->kind == HM_LR_COSINE) {
        double p = span > 0 ? (double)t / (double)span : 1.0;
        p = p < 0 ? 0 : (p > 1 ? 1 : p);
        return s->lr_min + 0.5 * (s->lr_max - s->lr_min) * (1.0 + cos(M_PI * p));
    }
    /* wsd: stable at lr_max, then linear decay over the final decay_frac of the span. */
    long decay = (long)llround(s->decay_frac * (double)span);
    long stable = span - decay;
    if (t < stable || decay <= 0)
        return s->lr_max;
    double p = (double)(t - stable) / (double)decay;
    p = p > 1 ? 1 : p;
    return s->lr_max + (s->lr_min - s->lr_max) * p;
}

enum hm_status hm_lr_kind_parse(const char *name, enum hm_lr_kind *out)
{
    if (strcmp(name, "constant") == 0)
        *out = HM_LR_CONSTANT;
    else if (strcmp(name, "cosine") == 0)
        *out = HM_LR_COSINE;
    else if (strcmp(name, "wsd") == 0)
        *out = HM_LR_WSD;
    else
        return hm_fail(HM_ERR_USAGE, "unknown LR schedule '%s' (choose constant, cosine or wsd)", name);
    return HM_OK;
}

const char *hm_lr_kind_name(enum hm_lr_kind kind)
{
    return kind == HM_LR_CONSTANT ? "constant" : kind == HM_LR_COSINE ? "cosine" : "wsd";
}
