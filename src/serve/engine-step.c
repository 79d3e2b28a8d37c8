/*
 * engine-step.c - one engine step: the scheduled rows padded to the nearest graph size class
 * (padding rows have slot -1: never written, never read), ONE batched forward, then one sample
 * per sequence that asked for it, each from its own sampler over its own history, in admission
 * order. No allocation: every buffer is sized for the largest step when the engine starts.
 */
#include "serve/engine-impl.h"
#include "util/util.h"

/* The smallest size class that holds n rows (the last one holds any step). */
static struct hm_batch_graph *graph_for(struct hm_engine *e, int n)
{
    for (int i = 0; i < e->n_graphs; i++)
        if (e->graphs[i].N >= n)
            return &e->graphs[i];
    HM_ASSERT(!"a step has more rows than max_batch + prefill_chunk");
    return NULL;
}

static bool is_stop_id(const struct hm_engine_request *rq, hm_token id)
{
    for (int i = 0; i < rq->n_stop_ids; i++)
        if (rq->stop_ids[i] == id)
            return true;
    return false;
}

/* Sample s's next token from its logits row (counting a token passed on in *generated); s is
 * finished and freed when it stops here. */
static void sample_one(struct hm_engine *e, struct hm_engine_seq *s, float *logits,
                       uint64_t *generated)
{
    hm_token id = hm_sampler_sample(s->sampler, logits, s->tokens, s->n_tokens);
    if (s->res.first_token_s == 0)
        s->res.first_token_s = hm_time_s() - s->t_submit;
    if (is_stop_id(&s->rq, id)) {
        hm_engine_finish(e, s, HM_FINISH_STOP, HM_OK);
        return;
    }
    s->tokens[s->n_tokens++] = id;
    s->res.completion_tokens++;
    (*generated)++;
    if (s->rq.on_token && !s->rq.on_token(id, s->rq.user)) {
        hm_engine_finish(e, s, HM_FINISH_CANCELLED, HM_OK);
        return;
    }
    /* Full: the next token would be fed at position ctx_len, past the slot. */
    if (s->res.completion_tokens >= s->rq.max_new_tokens || s->n_tokens > e->o.ctx_len)
        hm_engine_finish(e, s, HM_FINISH_LENGTH, HM_OK);
}

void hm_engine_step(struct hm_engine *e)
{
    struct hm_engine_batch *b = &e->batch;
    hm_engine_schedule(e, b);
    if (b->n == 0)
        return;
    struct hm_batch_graph *g = graph_for(e, b->n);
    for (int r = b->n; r < g->N; r++) {
        b->ids[r] = 0;
        b->slot[r] = -1;
        b->pos[r] = 0;
    }
    for (int i = b->m; i < g->M; i++)
        b->out_rows[i] = 0;
    enum hm_status st = hm_batch_run(g, b->ids, b->slot, b->pos, b->out_rows);
    if (st == HM_OK)
        st = hm_tensor_get_f32(g->logits, e->logits, (size_t)g->M * (size_t)e->V);
    if (st != HM_OK) { /* the fed sequences' caches are now unknown: end them */
        for (int j = e->n_running - 1; j >= 0; j--)
            if (e->running[j]->feeding > 0)
                hm_engine_finish(e, e->running[j], HM_FINISH_ERROR, st);
        return;
    }
    for (int j = 0; j < e->n_running; j++)
        e->running[j]->n_fed += e->running[j]->feeding;
    uint64_t generated = 0;
    for (int i = 0; i < b->m; i++)
        sample_one(e, b->seqs[i], e->logits + (size_t)i * (size_t)e->V, &generated);
    pthread_mutex_lock(&e->mu);
    e->stats.steps++;
    e->stats.tokens_fed += (uint64_t)b->n;
    e->stats.tokens_generated += generated;
    pthread_mutex_unlock(&e->mu);
}
