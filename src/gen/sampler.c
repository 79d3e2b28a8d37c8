/*
 * sampler.c - repetition penalty, temperature, top-k, top-p and a seeded draw (gen.h). Scratch is
 * allocated once in hm_sampler_new. With top-k or top-p, candidates are ordered by (logit desc,
 * id asc) so ties never depend on the sort algorithm; plain sampling draws over the ids in id order
 * without sorting. All state lives in the sampler (the sort gets the logits through qsort_r's
 * argument), so samplers in different threads never share anything.
 */
#include "hermes/gen.h"
#include "util/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct hm_sampler {
    struct hm_sampler_opts o;
    int V;
    struct hm_rng rng;
    hm_token *idx;    /* candidate ids */
    float *prob;      /* candidate probabilities */
    uint8_t *seen;    /* repetition penalty: ids already penalised this step */
    int last_n;
};

enum hm_status hm_sampler_new(int V, const struct hm_sampler_opts *o, struct hm_sampler **out)
{
    if (V < 1)
        return hm_fail(HM_ERR_USAGE, "sampler: vocabulary size must be positive");
    if (!(o->temperature >= 0) || o->top_k < 0 || !(o->top_p > 0 && o->top_p <= 1) ||
        !(o->repetition_penalty > 0))
        return hm_fail(HM_ERR_USAGE, "sampler: temperature >= 0, top-k >= 0, top-p in (0, 1] and "
                                     "repetition penalty > 0 are required");
    struct hm_sampler *s = hm_calloc(1, sizeof *s);
    if (!s)
        return hm_fail(HM_ERR_NOMEM, "out of memory");
    s->o = *o;
    s->V = V;
    hm_rng_seed(&s->rng, o->seed);
    s->idx = hm_malloc((size_t)V * sizeof *s->idx);
    s->prob = hm_malloc((size_t)V * sizeof *s->prob);
    s->seen = hm_calloc((size_t)V, 1);
    if (!s->idx || !s->prob || !s->seen) {
        hm_sampler_free(s);
        return hm_fail(HM_ERR_NOMEM, "out of memory for a %d-token sampler", V);
    }
    *out = s;
    return HM_OK;
}

void hm_sampler_free(struct hm_sampler *s)
{
    if (!s)
        return;
    hm_free(s->idx);
    hm_free(s->prob);
    hm_free(s->seen);
    hm_free(s);
}

int hm_sampler_last_candidates(const struct hm_sampler *s)
{
    return s->last_n;
}

struct hm_sampler_opts hm_sampler_opts_default(void)
{
    return (struct hm_sampler_opts){.temperature = 0.8f, .top_k = 0, .top_p = 1.0f,
                                    .repetition_penalty = 1.0f, .seed = 0};
}

struct hm_generate_opts hm_generate_opts_default(void)
{
    return (struct hm_generate_opts){.max_new_tokens = 100, .eos_id = -1};
}

static int by_logit_desc(const void *a, const void *b, void *logits)
{
    hm_token i = *(const hm_token *)a, j = *(const hm_token *)b;
    float x = ((const float *)logits)[i], y = ((const float *)logits)[j];
    if (x != y)
        return x > y ? -1 : 1;
    return i < j ? -1 : i > j;
}

/* Write the ids whose logit is >= thr to idx, in id order; returns how many. */
static int gather_at_least(const float *logits, int V, float thr, hm_token *idx)
{
    int n = 0;
    for (int i = 0; i < V; i++)
        if (logits[i] >= thr)
            idx[n++] = i;
    return n;
}

static void sort_by_logit(hm_token *idx, int n, float *logits)
{
    qsort_r(idx, (size_t)n, sizeof *idx, by_logit_desc, logits);
}

hm_token hm_sampler_sample(struct hm_sampler *s, float *logits, const hm_token *hist, int n_hist)
{
    int V = s->V;
    if (s->o.repetition_penalty != 1.0f) {
        float r = s->o.repetition_penalty;
        for (int i = 0; i < n_hist; i++) {
            hm_token id = hist[i];
            if (id < 0 || id >= V || s->seen[id])
                continue;
            s->seen[id] = 1;
            logits[id] = logits[id] > 0 ? logits[id] / r : logits[id] * r;
        }
        for (int i = 0; i < n_hist; i++)
            if (hist[i] >= 0 && hist[i] < V)
                s->seen[hist[i]] = 0;
    }
    if (s->o.temperature == 0.0f) {
        hm_token best = 0;
        for (int i = 1; i < V; i++)
            if (logits[i] > logits[best])
                best = i;
        s->last_n = 1;
        return best;
    }
    float inv_t = 1.0f / s->o.temperature;
    float mx = -INFINITY;
    for (int i = 0; i < V; i++) {
        logits[i] *= inv_t;
        mx = fmaxf(mx, logits[i]);
    }
    /* Candidates, sorted by logit: only the top k when top-k is on; for top-p alone, first try the
     * ids within 20 nats of the max (exact whenever their mass reaches p), else sort everything. */
    int n;
    if (s->o.top_k > 0 && s->o.top_k < V) {
        /* The top k lie within 20 nats of the max unless fewer than k do: sort that window (or
         * everything), keep the first k. */
        n = gather_at_least(logits, V, mx - 20.0f, s->idx);
        if (n < s->o.top_k)
            n = gather_at_least(logits, V, -INFINITY, s->idx);
        sort_by_logit(s->idx, n, logits);
        n = HM_MIN(n, s->o.top_k);
    } else if (s->o.top_p < 1.0f) {
        n = gather_at_least(logits, V, mx - 20.0f, s->idx);
        sort_by_logit(s->idx, n, logits);
    } else { /* plain sampling: every id, in id order; no sort (V log V per token) needed */
        n = gather_at_least(logits, V, -INFINITY, s->idx);
    }
    /* Softmax over all V (the reference mass), then top-p over the sorted candidates. */
    double Z = 0;
    for (int i = 0; i < V; i++)
        Z += exp((double)(logits[i] - mx));
    double kept = 0;
    for (int i = 0; i < n; i++) {
        s->prob[i] = (float)(exp((double)(logits[s->idx[i]] - mx)) / Z);
        kept += s->prob[i];
    }
    if (s->o.top_k > 0) { /* top-p applies to the renormalised top-k distribution */
        for (int i = 0; i < n; i++)
            s->prob[i] = (float)(s->prob[i] / kept);
        kept = 1.0;
    }
    if (s->o.top_p < 1.0f) {
        if (kept < s->o.top_p && n < V) { /* the 20-nat window missed mass: sort everything */
            n = gather_at_least(logits, V, -INFINITY, s->idx);
            sort_by_logit(s->idx, n, logits);
            for (int i = 0; i < n; i++)
                s->prob[i] = (float)(exp((double)(logits[s->idx[i]] - mx)) / Z);
        }
        double cum = 0;
        int cut = n;
        for (int i = 0; i < n; i++) {
            cum += s->prob[i];
            if (cum >= s->o.top_p) {
                cut = i + 1;
                break;
            }
        }
        n = cut;
    }
    double total = 0;
    for (int i = 0; i < n; i++)
        total += s->prob[i];
    double r = hm_rng_uniform(&s->rng) * total, acc = 0;
    s->last_n = n;
    for (int i = 0; i < n; i++) {
        acc += s->prob[i];
        if (r < acc)
            return s->idx[i];
    }
    return s->idx[n - 1];
}
