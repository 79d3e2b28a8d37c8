/*
 * metrics.h - the training record: `<output>/metrics.jsonl`, one JSON object per logged step with
 * the keys step, epoch, loss, lr, grad_norm and tokens_per_s (plus val_loss on evaluation steps),
 * and the loss curve `<output>/loss.svg` drawn from it. Scripts read these keys; keep them stable.
 */
#ifndef HERMES_METRICS_H
#define HERMES_METRICS_H

#include "hermes/hermes.h"

#ifdef __cplusplus
extern "C" {
#endif

struct hm_metric_row {
    long step;
    long epoch;
    double loss;         /* NaN when only val_loss was measured at this step */
    double lr;
    double grad_norm;
    double tokens_per_s;
    double val_loss;     /* NaN when not evaluated at this step */
};

struct hm_metrics;

/* Open `path` for appending. Rows with step > keep_upto_step are dropped first (a resumed run
 * rewinds the record to its checkpoint); pass -1 to start a new file. Rows are kept in memory
 * (capacity reserved up front) for the SVG. */
HM_API enum hm_status hm_metrics_open(const char *path, long keep_upto_step, long capacity,
                                      struct hm_metrics **out);
HM_API enum hm_status hm_metrics_append(struct hm_metrics *m, const struct hm_metric_row *row);
/* Write the loss curve (train and val against step) atomically. */
HM_API enum hm_status hm_metrics_write_svg(const struct hm_metrics *m, const char *svg_path);
HM_API long hm_metrics_count(const struct hm_metrics *m);
HM_API const struct hm_metric_row *hm_metrics_rows(const struct hm_metrics *m);
HM_API void hm_metrics_free(struct hm_metrics *m);

#ifdef __cplusplus
}
#endif
#endif
