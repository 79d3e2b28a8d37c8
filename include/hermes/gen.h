/*
 * gen.h - text generation: the sampler and the generation loop over a KV cache.
 *
 * Sampling order: repetition penalty (sign-aware: positive logits divided by r, negative ones
 * multiplied), temperature (0 = greedy argmax, lowest id on ties), top-k, top-p (the smallest set
 * of most likely tokens whose probability reaches p), then one draw from a seeded RNG.
 *
 * Threads: a sampler and a generation belong to one thread at a time, but any number of them may
 * run at once, each with its own sampler (and KV cache, made by hm_generate), over one model.
 *
 *     struct hm_sampler_opts opts = hm_sampler_opts_default();
 *     struct hm_sampler *s;  hm_sampler_new(V, &opts, &s);
 *     hm_generate(model, prompt, n, &gopts, s, on_token, user, &stats);
 */
#ifndef HERMES_GEN_H
#define HERMES_GEN_H

#include "hermes/model.h"

#ifdef __cplusplus
extern "C" {
#endif

struct hm_sampler_opts {
    float temperature;        /* 0 = greedy */
    int top_k;                /* 0 = off */
    float top_p;              /* 1 = off */
    float repetition_penalty; /* 1 = off */
    uint64_t seed;
};
/* temperature 0.8, top-k off, top-p 1 (off), repetition penalty 1 (off), seed 0. */
HM_API struct hm_sampler_opts hm_sampler_opts_default(void);

struct hm_sampler;
HM_API enum hm_status hm_sampler_new(int vocab_size, const struct hm_sampler_opts *opts,
                                     struct hm_sampler **out);
HM_API void hm_sampler_free(struct hm_sampler *s);
/* Pick the next id from `logits` (V, modified in place) given the ids so far. */
HM_API hm_token hm_sampler_sample(struct hm_sampler *s, float *logits, const hm_token *history,
                                   int n_history);
/* After hm_sampler_sample: how many candidates survived top-k/top-p (for tests). */
HM_API int hm_sampler_last_candidates(const struct hm_sampler *s);

typedef bool (*hm_token_fn)(hm_token id, void *user); /* return false to stop */

struct hm_generate_opts {
    int max_new_tokens;
    hm_token eos_id;  /* -1: never stop at a token */
};

/* 100 new tokens, no stop token. */
HM_API struct hm_generate_opts hm_generate_opts_default(void);

enum hm_stop_reason { HM_STOP_MAX_TOKENS = 0, HM_STOP_EOS, HM_STOP_CONTEXT_FULL, HM_STOP_CALLBACK };

struct hm_generate_stats {
    int prompt_tokens;
    int new_tokens;     /* tokens passed to on_token (eos is not counted) */
    int decode_steps;   /* one-token passes over the cache, all timed by decode_s */
    double prefill_s;   /* time to first token: the prompt pass plus the first sample */
    double decode_s;
    enum hm_stop_reason stop;
    size_t kv_cache_bytes;
    uint64_t weight_bytes;  /* what the model's weights take (hm_model_weight_bytes) */
    enum hm_dtype weight_dtype;
};

/* Prefill the prompt in one pass, then decode one token per step over the KV cache, which is
 * sized to the positions fed: min(max_seq_len, prompt + max_new_tokens - 1). Each new token is
 * predicted from at most max_seq_len positions, so prompt + new tokens <= max_seq_len + 1; when
 * more were asked for, generation stops with stats->stop = HM_STOP_CONTEXT_FULL. It also stops
 * early at eos_id (not passed to on_token) or when on_token returns false. HM_ERR_USAGE for an
 * empty prompt, one longer than max_seq_len or max_new_tokens < 0; HM_ERR_MISMATCH for a prompt
 * id outside the vocabulary. `stats` is always filled (zeroed first). */
HM_API enum hm_status hm_generate(struct hm_model *m, const hm_token *prompt, int n_prompt,
                                  const struct hm_generate_opts *opts, struct hm_sampler *s,
                                  hm_token_fn on_token, void *user, struct hm_generate_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
