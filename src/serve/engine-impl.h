/*
 * engine-impl.h - private to src/serve/: the engine's state, shared by the lifecycle and queue
 * (engine.c), the step scheduler (scheduler.c) and the step itself (engine-step.c).
 *
 * Ownership: the mutex guards the queue, every request's `cancel` flag, the slot table, the
 * flags and the counters. A running request's other fields belong to the engine thread alone.
 * Callbacks are made without the mutex held, so they may call hm_engine_submit or _cancel.
 */
#ifndef HERMES_ENGINE_IMPL_H
#define HERMES_ENGINE_IMPL_H

#include "hermes/engine.h"

#include <pthread.h>

struct hm_engine_seq {
    uint64_t id;
    struct hm_engine_request rq; /* the caller's request; rq.prompt points into `tokens` */
    hm_token *tokens;            /* prompt, then every sampled token: ctx_len + 1 at most */
    int n_tokens;
    int n_fed;                   /* tokens whose keys and values are in the slot (positions) */
    int feeding;                 /* tokens this step feeds */
    int slot;                    /* -1 while queued */
    bool cancel;                 /* guarded by the mutex */
    struct hm_sampler *sampler;
    struct hm_engine_result res;
    double t_submit;
};

/* A step's batch: row r feeds ids[r] into slot[r] at pos[r]; the logits of rows out_rows[i]
 * are sampled for seqs[i]. */
struct hm_engine_batch {
    hm_token *ids;
    int32_t *slot, *pos, *out_rows;
    struct hm_engine_seq **seqs;
    int n, m;
};

struct hm_engine {
    struct hm_model *model;
    struct hm_engine_opts o;
    int V, n_threads;
    struct hm_kv_cache *cache;
    struct hm_batch_graph *graphs; /* size classes, N ascending; the last one fits any step */
    int n_graphs;
    struct hm_engine_batch batch;  /* scratch for the largest step */
    float *logits;                 /* max_batch x V */

    pthread_mutex_t mu;
    pthread_cond_t work; /* the engine thread waits here for requests or a stop */
    pthread_cond_t idle; /* drain waits here for in_flight to reach 0 */
    pthread_t thread;
    bool stop, draining;
    struct hm_engine_seq **queue; /* FIFO ring of max_queue waiting requests */
    int q_head, q_len;
    struct hm_engine_seq **running; /* admission order, n_running of max_batch */
    int n_running;
    bool *slot_used;
    int in_flight; /* accepted requests whose on_done has not returned */
    uint64_t next_id;
    struct hm_engine_stats stats;
};

/* scheduler.c: the rows of the next step over e->running (engine thread, mutex not needed). */
void hm_engine_schedule(struct hm_engine *e, struct hm_engine_batch *b);
/* engine-step.c: build, run and sample one step; finished requests are reported and freed. */
void hm_engine_step(struct hm_engine *e);
/* engine.c: end a running request (engine thread): frees its slot, fires on_done, frees it. */
void hm_engine_finish(struct hm_engine *e, struct hm_engine_seq *s, enum hm_finish_reason why,
                      enum hm_status st);

#endif
