/*
 * generate.c - the generation loop (gen.h): one prefill pass over the prompt, then one token per
 * step over the KV cache. Logits are copied to a host scratch row once per step for the sampler.
 *
 * Context rule: every new token is predicted from at most max_seq_len positions, so a run holds
 * at most max_seq_len + 1 tokens (the last one is sampled but never fed back). The cache holds
 * exactly the positions that are fed: min(max_seq_len, prompt + max_new_tokens - 1).
 */
#include "hermes/gen.h"
#include "util/util.h"

#include <string.h>

enum hm_status hm_generate(struct hm_model *m, const hm_token *prompt, int n_prompt,
                           const struct hm_generate_opts *opts, struct hm_sampler *s,
                           hm_token_fn on_token, void *user, struct hm_generate_stats *stats)
{
    const struct hm_model_config *c = hm_model_config(m);
    memset(stats, 0, sizeof *stats);
    stats->prompt_tokens = n_prompt;
    stats->weight_bytes = hm_model_weight_bytes(m);
    stats->weight_dtype = hm_model_weight_dtype(m);
    if (n_prompt < 1)
        return hm_fail(HM_ERR_USAGE, "the prompt is empty: give at least one token of text");
    if (opts->max_new_tokens < 0)
        return hm_fail(HM_ERR_USAGE, "max_new_tokens must be >= 0, got %d", opts->max_new_tokens);
    if (n_prompt > c->max_seq_len)
        return hm_fail(HM_ERR_USAGE, "the prompt has %d tokens, more than the model's max_seq_len %d",
                       n_prompt, c->max_seq_len);
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= c->vocab_size)
            return hm_fail(HM_ERR_MISMATCH, "prompt token id %d is outside the model's vocabulary (%d)",
                           prompt[i], c->vocab_size);
    /* Positions fed to the model: the prompt, then every new token but the last. */
    long want = HM_MAX((long)n_prompt, (long)n_prompt + (long)opts->max_new_tokens - 1);
    int ctx_len = (int)HM_MIN(want, (long)c->max_seq_len);
    struct hm_kv_cache *cache = NULL;
    struct hm_infer_graph pre = {0}, dec = {0};
    hm_token *hist = hm_malloc((size_t)(ctx_len + 1) * sizeof *hist);
    float *logits = hm_malloc((size_t)c->vocab_size * sizeof *logits);
    enum hm_status st = HM_OK;
    if (!hist || !logits) {
        st = hm_fail(HM_ERR_NOMEM, "out of memory for generation");
        goto out;
    }
    if ((st = hm_kv_cache_new(m, ctx_len, &cache)) != HM_OK ||
        (st = hm_model_build_infer_graph(m, cache, n_prompt, &pre)) != HM_OK ||
        (st = hm_model_build_infer_graph(m, cache, 1, &dec)) != HM_OK)
        goto out;
    stats->kv_cache_bytes = hm_kv_cache_bytes(cache);
    memcpy(hist, prompt, (size_t)n_prompt * sizeof *hist);
    int n = n_prompt;
    double t0 = hm_time_s();
    if ((st = hm_infer_run(&pre, prompt, 0)) != HM_OK)
        goto out;
    stats->stop = HM_STOP_MAX_TOKENS;
    double t1 = 0;
    for (int i = 0; i < opts->max_new_tokens; i++) {
        struct hm_infer_graph *g = i == 0 ? &pre : &dec;
        if ((st = hm_tensor_get_f32(g->logits, logits, (size_t)c->vocab_size)) != HM_OK)
            goto out;
        hm_token id = hm_sampler_sample(s, logits, hist, n);
        if (i == 0) {
            t1 = hm_time_s();
            stats->prefill_s = t1 - t0;
        }
        if (opts->eos_id >= 0 && id == opts->eos_id) {
            stats->stop = HM_STOP_EOS;
            break;
        }
        stats->new_tokens++;
        hist[n++] = id;
        if (on_token && !on_token(id, user)) {
            stats->stop = HM_STOP_CALLBACK;
            break;
        }
        if (i + 1 == opts->max_new_tokens)
            break;
        if (n > c->max_seq_len) { /* feeding `id` would need position max_seq_len */
            stats->stop = HM_STOP_CONTEXT_FULL;
            break;
        }
        if ((st = hm_infer_run(&dec, &id, n - 1)) != HM_OK)
            goto out;
        stats->decode_steps++;
    }
    stats->decode_s = t1 > 0 ? hm_time_s() - t1 : 0;
out:
    hm_infer_graph_free(&pre);
    hm_infer_graph_free(&dec);
    hm_kv_cache_free(cache);
    hm_free(hist);
    hm_free(logits);
    return st;
}
