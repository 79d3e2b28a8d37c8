/*
 * scheduler.c - which tokens one engine step feeds. Every sequence that has sampled a token
 * feeds it (one decode row each, so running streams advance every step); then sequences still
 * reading their prompt take the prompt chunk budget in admission order, so a long prompt is fed
 * over several steps and never stalls the streams. A sequence samples when its chunk finishes
 * its prompt, or after its decode row.
 */
#include "serve/engine-impl.h"
#include "util/util.h"

/* Rows for tokens[n_fed .. n_fed + k) of s. */
static void add_rows(struct hm_engine_batch *b, struct hm_engine_seq *s, int k)
{
    for (int i = 0; i < k; i++) {
        b->ids[b->n] = s->tokens[s->n_fed + i];
        b->slot[b->n] = s->slot;
        b->pos[b->n] = s->n_fed + i;
        b->n++;
    }
    s->feeding = k;
    if (s->n_fed + k == s->n_tokens) { /* everything known is fed: sample the next token */
        b->out_rows[b->m] = b->n - 1;
        b->seqs[b->m++] = s;
    }
}

void hm_engine_schedule(struct hm_engine *e, struct hm_engine_batch *b)
{
    b->n = b->m = 0;
    for (int j = 0; j < e->n_running; j++) {
        struct hm_engine_seq *s = e->running[j];
        s->feeding = 0;
        if (s->n_tokens > s->rq.n_prompt) /* decoding: its last sampled token */
            add_rows(b, s, 1);
    }
    int budget = e->o.prefill_chunk;
    for (int j = 0; j < e->n_running && budget > 0; j++) {
        struct hm_engine_seq *s = e->running[j];
        if (s->n_tokens > s->rq.n_prompt)
            continue;
        int k = HM_MIN(s->n_tokens - s->n_fed, budget);
        add_rows(b, s, k);
        budget -= k;
    }
}
