/*
 * schedule.h - learning-rate schedules. Steps are optimizer steps, 0-based. Every schedule starts
 * with `warmup_steps` of linear warmup, lr_max * (step + 1) / warmup_steps, then:
 *   constant: lr_max;
 *   cosine:   lr_min + (lr_max - lr_min) * (1 + cos(pi * p)) / 2, p = (step - warmup) / (total - warmup);
 *   wsd:      lr_max until the last `decay_frac` of the post-warmup steps, then linear to lr_min.
 * p is clamped to [0, 1], so steps past `total_steps` stay at lr_min.
 */
#ifndef HERMES_SCHEDULE_H
#define HERMES_SCHEDULE_H

#include "hermes/hermes.h"

#ifdef __cplusplus
extern "C" {
#endif

enum hm_lr_kind { HM_LR_CONSTANT = 0, HM_LR_COSINE, HM_LR_WSD };

struct hm_lr_schedule {
    enum hm_lr_kind kind;
    double lr_max;
    double lr_min;
    long warmup_steps;
    long total_steps;
    double decay_frac; /* wsd only: fraction of the post-warmup steps spent decaying (0.2) */
};

HM_API double hm_lr_at(const struct hm_lr_schedule *s, long step);

/* "constant", "cosine" or "wsd". HM_ERR_USAGE naming the choices otherwise. */
HM_API enum hm_status hm_lr_kind_parse(const char *name, enum hm_lr_kind *out);
HM_API const char *hm_lr_kind_name(enum hm_lr_kind kind);

#ifdef __cplusplus
}
#endif
#endif
