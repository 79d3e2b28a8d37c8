/*
 * engine.h - continuous batching: many generations over one model, one batched forward per step.
 *
 * The engine owns a thread. Every step it gathers one token for every running sequence (decode)
 * plus up to `prefill_chunk` prompt tokens of sequences still reading their prompt, runs them as
 * one (N, C) forward through the model (each token with its own KV-cache slot and position),
 * samples, and calls back. New requests are admitted between steps while a KV slot is free;
 * otherwise they wait in a bounded queue.
 *
 * Batch invariance: a request's tokens (greedy, or sampled with its seed) do not depend on which
 * other requests share its steps; every per-token reduction runs in a fixed order whatever N is.
 *
 * Callbacks run on the engine thread and must return quickly (copy, signal, return).
 *
 *     struct hm_engine_opts eo = hm_engine_opts_default();
 *     struct hm_engine *e;  hm_engine_new(model, &eo, &e);
 *     struct hm_engine_request rq = hm_engine_request_default();
 *     rq.prompt = ids; rq.n_prompt = n; rq.on_token = f; rq.on_done = g; rq.user = u;
 *     uint64_t id;  hm_engine_submit(e, &rq, &id);   ... on_done fires once ...
 *     hm_engine_free(e);   // cancels what is left (each on_done fires with HM_FINISH_CANCELLED)
 */
#ifndef HERMES_ENGINE_H
#define HERMES_ENGINE_H

#include "hermes/gen.h"
#include "hermes/model.h"

#ifdef __cplusplus
extern "C" {
#endif

struct hm_engine_opts {
    int max_batch;     /* KV-cache slots: sequences generating at once (default 16) */
    int ctx_len;       /* positions per slot, <= max_seq_len (default 0: max_seq_len) */
    int prefill_chunk; /* most prompt tokens fed in one step, all sequences together (default 64) */
    int max_queue;     /* requests waiting for a slot before submit refuses (default 64) */
};
HM_API struct hm_engine_opts hm_engine_opts_default(void);

enum hm_finish_reason {
    HM_FINISH_LENGTH = 0, /* max_new_tokens reached, or the slot's context is full */
    HM_FINISH_STOP,       /* a stop token was sampled (not passed to on_token) */
    HM_FINISH_CANCELLED,  /* on_token returned false, hm_engine_cancel, or the engine closed */
    HM_FINISH_ERROR,      /* the forward failed: `status` says why */
};

struct hm_engine_result {
    enum hm_finish_reason finish;
    enum hm_status status;   /* HM_OK unless finish == HM_FINISH_ERROR */
    int prompt_tokens;
    int completion_tokens;   /* tokens passed to on_token */
    double queued_s;         /* submit -> admitted to a slot */
    double first_token_s;    /* submit -> first token sampled */
    double total_s;          /* submit -> done */
};

#define HM_ENGINE_MAX_STOP_IDS 8

struct hm_engine_request {
    const hm_token *prompt; /* copied by submit */
    int n_prompt;
    int max_new_tokens;
    struct hm_sampler_opts sampling;
    hm_token stop_ids[HM_ENGINE_MAX_STOP_IDS]; /* sampling one ends the request (HM_FINISH_STOP) */
    int n_stop_ids;
    /* return false to end the request (HM_FINISH_CANCELLED) */
    bool (*on_token)(hm_token id, void *user);
    /* called exactly once per accepted request, last */
    void (*on_done)(const struct hm_engine_result *r, void *user);
    void *user;
};
/* 16 new tokens, hm_sampler_opts_default(), no stop ids, no callbacks. */
HM_API struct hm_engine_request hm_engine_request_default(void);

struct hm_engine;
/* Allocates the KV cache for max_batch x ctx_len positions and starts the engine thread.
 * HM_ERR_USAGE for options out of range, HM_ERR_NOMEM naming the bytes. */
HM_API enum hm_status hm_engine_new(struct hm_model *m, const struct hm_engine_opts *opts,
                                    struct hm_engine **out);
/* Queue a request; *id identifies it for hm_engine_cancel. HM_ERR_USAGE for an empty prompt, a
 * prompt that does not fit ctx_len, ids outside the vocabulary or bad sampling values;
 * HM_ERR_BUSY when max_queue requests are already waiting; HM_ERR_INTERRUPTED once draining.
 * On any error no callback fires. Thread-safe. */
HM_API enum hm_status hm_engine_submit(struct hm_engine *e, const struct hm_engine_request *rq,
                                       uint64_t *id);
/* End a request at the next step (its slot is freed then); unknown ids are ignored. */
HM_API void hm_engine_cancel(struct hm_engine *e, uint64_t id);
/* Refuse new requests (HM_ERR_INTERRUPTED) and wait until those accepted have finished, at most
 * `timeout_s` seconds; then cancel the rest. HM_OK when all finished in time. */
HM_API enum hm_status hm_engine_drain(struct hm_engine *e, double timeout_s);

struct hm_engine_stats {
    int running, queued, max_batch;
    uint64_t steps, tokens_fed, tokens_generated;
};
HM_API void hm_engine_stats(struct hm_engine *e, struct hm_engine_stats *out);
/* Cancels what is left, joins the thread, frees the cache. The model stays the caller's. */
HM_API void hm_engine_free(struct hm_engine *e);

#ifdef __cplusplus
}
#endif
#endif
