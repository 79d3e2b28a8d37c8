/*
 * train.h - the training loop: micro-batches with real gradient accumulation, global-norm
 * clipping, AdamW, an LR schedule, periodic evaluation, safetensors checkpoints and exact resume.
 *
 * The loop is deterministic: the data order depends on (seed, epoch), dropout masks on
 * (seed, step, the sample's index in the global batch: any split over processes and
 * micro-batches draws the same masks), and the kernels are bit-reproducible at a fixed thread
 * count, so a run resumed from `state.safetensors` continues bit-identically to one that never stopped.
 *
 * Output folder: config.json, state.safetensors (weights + AdamW moments + loop position, the one
 * file resume reads), weights.safetensors (latest weights), checkpoint_epoch_{e}.safetensors,
 * checkpoint_step_{N}.safetensors every save_every steps, metrics.jsonl, loss.svg.
 */
#ifndef HERMES_TRAIN_H
#define HERMES_TRAIN_H

#include "hermes/model.h"
#include "hermes/optim.h"
#include "hermes/schedule.h"
#include "hermes/token-cache.h"
#include "hermes/train-windows.h"

#ifdef __cplusplus
extern "C" {
#endif

struct hm_comm;

struct hm_train_opts {
    const char *output_dir;
    int batch_size;      /* micro-batch per process */
    int seq_len;
    int stride;
    int grad_accum;
    int epochs;
    long max_steps;      /* 0 = no limit beyond the epochs */
    uint64_t seed;
    double val_split;    /* fraction of windows held out (when no separate val data) */
    struct hm_lr_schedule lr;   /* total_steps is filled in by the trainer when 0 */
    struct hm_adamw_config adamw;
    long log_every;
    long eval_every;
    long eval_batches;
    long save_every;
    enum hm_save_dtype save_dtype;
    bool resume;
    /* Data parallelism (a communicator with more than one rank). Gradients are reduced in
     * buckets of about bucket_mb MiB that start during the last micro-batch's backward pass, or
     * in one blocking call after it with no_overlap. zero1 shards the AdamW moments over ranks
     * (hm_optimizer_new_zero1): gradients are reduce-scattered, parameters all-gathered. */
    double bucket_mb; /* 0 = 25 */
    bool no_overlap;
    bool zero1;
    /* Chat data (a token cache with flags): train on every token, prompts too, instead of the
     * assistant replies only; for comparison runs. */
    bool no_loss_mask;
};

/* Batch 32 of 256 tokens (stride 256), 1 epoch, seed 42, 1% held out, cosine from 3e-4 to 3e-5
 * after an automatic warmup (lr.warmup_steps -1: 5% of the steps, at most 1000), AdamW defaults,
 * log every 10 steps, evaluate every 500 on 20 batches, save every 1000, f32 checkpoints, 25 MiB
 * buckets. output_dir "checkpoints". */
HM_API struct hm_train_opts hm_train_opts_default(void);

/* Progress callback, called after every optimizer step (and once at the end with final = true). */
struct hm_train_progress {
    long step, total_steps;
    long epoch;
    double loss, lr, grad_norm, tokens_per_s, val_loss; /* val_loss NaN unless just evaluated */
    double elapsed_s;
    bool logged; /* this step is a --log-every step */
    bool final;
};
typedef void (*hm_train_progress_fn_t)(const struct hm_train_progress *p, void *user);

struct hm_train_summary {
    long steps;
    double final_loss, final_val_loss;
    uint64_t tokens_seen;
    double wall_s, mean_tokens_per_s;
    double comm_s;       /* wall time waiting for the gradient reduction after the backward pass
                            (with overlap: what the backward pass did not hide) */
    double comm_overlap_s; /* backward time with reductions in flight (overlap only) */
    int comm_buckets;      /* reductions per step (1 without overlap; 0 for one process) */
    uint64_t peak_rss_bytes;
    size_t planned_bytes;
};

/*
 * Train `m` on windows over `train` (and `val`, or a hold-out of `train` when val is NULL).
 * `comm` may be NULL (one process). Returns HM_ERR_INTERRUPTED after saving when a stop was
 * requested (hm_interrupt), HM_ERR_NUMERIC on a non-finite loss or gradient (the last saved
 * checkpoint is left intact).
 */
HM_API enum hm_status hm_train(struct hm_model *m, const struct hm_token_cache *train,
                               const struct hm_token_cache *val, const struct hm_train_opts *opts,
                               struct hm_comm *comm, hm_train_progress_fn_t progress, void *user,
                               struct hm_train_summary *summary);

#ifdef __cplusplus
}
#endif
#endif
