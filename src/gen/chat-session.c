/*
 * chat-session.c - a multi-turn conversation over one KV cache (chat.h).
 *
 * The cache holds the tokens of hist[0, n_hist): the conversation so far as fed to the model.
 * A turn feeds `pending` (what closes the previous reply: the last sampled token when the reply
 * was stopped before it was fed, <|im_end|>, "\n"), the user message and the assistant header,
 * in one prefill at position n_hist; then it decodes one token per step. Replies keep the ids
 * that were sampled, so the cache never needs re-encoding unless turns are dropped for room.
 */
#include "hermes/chat.h"
#include "util/util.h"

#include <string.h>

struct hm_chat_session {
    struct hm_model *model;
    struct hm_tokenizer *tok;
    struct hm_sampler *sampler;
    struct hm_chat_session_opts opts;
    struct hm_chat_ids sp;
    hm_token eos; /* <eos> or <|endoftext|>, -1 when absent */
    int ctx_len, vocab;
    struct hm_kv_cache *cache;
    struct hm_infer_graph dec; /* T = 1 */
    float *logits;
    hm_token *hist; /* ctx_len + 1 */
    int n_hist;
    struct hm_chat_conv conv; /* the system prompt (when set) first, then the turns */
    bool has_system;
    struct hm_chat_tokens feed;  /* the next prefill */
    struct hm_chat_tokens reply; /* ids of the reply being generated */
    hm_token pending[3];
    int n_pending;
};

struct hm_chat_session_opts hm_chat_session_opts_default(void)
{
    return (struct hm_chat_session_opts){.max_new_tokens = 0};
}

enum hm_status hm_chat_session_new(struct hm_model *m, struct hm_tokenizer *tok,
                                   const char *tok_name, struct hm_sampler *smp,
                                   const struct hm_chat_session_opts *opts,
                                   struct hm_chat_session **out)
{
    *out = NULL;
    struct hm_chat_session *s = hm_calloc(1, sizeof *s);
    if (!s)
        return hm_fail(HM_ERR_NOMEM, "out of memory for a chat session");
    const struct hm_model_config *c = hm_model_config(m);
    s->model = m, s->tok = tok, s->sampler = smp, s->opts = *opts;
    s->ctx_len = c->max_seq_len, s->vocab = c->vocab_size;
    s->eos = hm_tokenizer_eos_id(tok);
    enum hm_status st = hm_chat_special_ids(tok, tok_name, &s->sp);
    if (st == HM_OK && (s->sp.im_end >= s->vocab || s->sp.im_start >= s->vocab))
        st = hm_fail(HM_ERR_MISMATCH,
                     "tokenizer %s has chat tokens outside the model's vocabulary (%d)", tok_name,
                     s->vocab);
    if (st == HM_OK && (!(s->logits = hm_malloc((size_t)s->vocab * sizeof *s->logits)) ||
                        !(s->hist = hm_malloc((size_t)(s->ctx_len + 1) * sizeof *s->hist))))
        st = hm_fail(HM_ERR_NOMEM, "out of memory for a chat session");
    if (st == HM_OK && (st = hm_kv_cache_new(m, s->ctx_len, &s->cache)) == HM_OK)
        st = hm_model_build_infer_graph(m, s->cache, 1, &s->dec);
    if (st != HM_OK) {
        hm_chat_session_free(s);
        return st;
    }
    *out = s;
    return HM_OK;
}

void hm_chat_session_free(struct hm_chat_session *s)
{
    if (!s)
        return;
    hm_infer_graph_free(&s->dec);
    hm_kv_cache_free(s->cache);
    hm_free(s->logits);
    hm_free(s->hist);
    hm_chat_conv_clear(&s->conv);
    hm_chat_tokens_free(&s->feed);
    hm_chat_tokens_free(&s->reply);
    hm_free(s);
}

void hm_chat_session_reset(struct hm_chat_session *s)
{
    int keep = s->has_system ? 1 : 0;
    for (int i = keep; i < s->conv.n; i++)
        hm_free(s->conv.msgs[i].content);
    s->conv.n = keep;
    s->n_hist = 0;
    s->n_pending = 0;
}

enum hm_status hm_chat_session_set_system(struct hm_chat_session *s, const char *system)
{
    hm_chat_session_reset(s);
    if (s->has_system) {
        hm_free(s->conv.msgs[0].content);
        s->conv.n = 0;
        s->has_system = false;
    }
    if (!system || !*system)
        return HM_OK;
    enum hm_status st = hm_chat_conv_add(&s->conv, HM_ROLE_SYSTEM, system, strlen(system));
    s->has_system = st == HM_OK;
    return st;
}

int hm_chat_session_tokens(const struct hm_chat_session *s)
{
    return s->n_hist;
}

/* Drop the oldest turn after the system prompt: a user message and the reply that followed. */
static int drop_oldest_turn(struct hm_chat_session *s)
{
    int first = s->has_system ? 1 : 0, n = 1;
    if (first + 1 < s->conv.n && s->conv.msgs[first + 1].role == HM_ROLE_ASSISTANT)
        n = 2;
    for (int i = first; i < first + n; i++)
        hm_free(s->conv.msgs[i].content);
    memmove(s->conv.msgs + first, s->conv.msgs + first + n,
            (size_t)(s->conv.n - first - n) * sizeof *s->conv.msgs);
    s->conv.n -= n;
    return 1;
}

/* Tokens of the new turn into s->feed; re-encodes the whole (shortened) conversation when it does
 * not fit after what the cache holds, leaving room for `room` reply tokens. */
static enum hm_status plan_feed(struct hm_chat_session *s, int room, int *dropped)
{
    enum hm_status st;
    int last = s->conv.n - 1; /* the new user message */
    s->feed.n = 0;
    if (s->n_hist > 0) {
        if ((st = hm_chat_tokens_reserve(&s->feed, (size_t)s->n_pending)) != HM_OK)
            return st;
        for (int i = 0; i < s->n_pending; i++)
            s->feed.ids[s->feed.n++] = s->pending[i];
        if ((st = hm_chat_encode(s->tok, &s->sp, &s->conv, last, true, &s->feed)) != HM_OK)
            return st;
        if (s->n_hist + (int)s->feed.n + room <= s->ctx_len)
            return HM_OK;
    }
    for (;;) { /* from the start: everything that is left of the conversation */
        s->feed.n = 0;
        if ((st = hm_chat_encode(s->tok, &s->sp, &s->conv, 0, true, &s->feed)) != HM_OK)
            return st;
        if ((int)s->feed.n + room <= s->ctx_len)
            break;
        if (s->conv.n - (s->has_system ? 1 : 0) <= 1)
            return hm_fail(HM_ERR_USAGE,
                           "the message needs %zu tokens with the system prompt, more than the "
                           "model's context of %d leaves room for (%d kept for the reply)",
                           s->feed.n, s->ctx_len, room);
        *dropped += drop_oldest_turn(s);
    }
    s->n_hist = 0;
    return HM_OK;
}

static enum hm_status sample(struct hm_chat_session *s, struct hm_tensor *logits, hm_token *id)
{
    enum hm_status st = hm_tensor_get_f32(logits, s->logits, (size_t)s->vocab);
    if (st == HM_OK)
        *id = hm_sampler_sample(s->sampler, s->logits, s->hist, s->n_hist);
    return st;
}

/* Keep the reply's text in the conversation: decoded from the sampled ids. */
static enum hm_status keep_reply(struct hm_chat_session *s)
{
    size_t n = 0;
    enum hm_status st = hm_tokenizer_decode(s->tok, s->reply.ids, s->reply.n, true, NULL, 0, &n);
    char *text = st == HM_OK ? hm_malloc(n + 1) : NULL;
    if (st == HM_OK && !text)
        st = hm_fail(HM_ERR_NOMEM, "out of memory for a reply");
    if (st == HM_OK && (st = hm_tokenizer_decode(s->tok, s->reply.ids, s->reply.n, true, text,
                                                 n + 1, &n)) == HM_OK)
        st = hm_chat_conv_add(&s->conv, HM_ROLE_ASSISTANT, text, n);
    hm_free(text);
    return st;
}

enum hm_status hm_chat_reply(struct hm_chat_session *s, const char *user, size_t len,
                             hm_token_fn on_token, void *user_data,
                             struct hm_chat_reply_stats *stats)
{
    memset(stats, 0, sizeof *stats);
    int max_new = s->opts.max_new_tokens > 0 ? s->opts.max_new_tokens : s->ctx_len;
    int room = HM_MIN(max_new, s->ctx_len / 4) + 1;
    enum hm_status st = hm_chat_conv_add(&s->conv, HM_ROLE_USER, user, len);
    if (st != HM_OK)
        return st;
    if ((st = plan_feed(s, room, &stats->dropped_turns)) != HM_OK) {
        hm_free(s->conv.msgs[--s->conv.n].content); /* the turn did not happen */
        return st;
    }
    struct hm_infer_graph pre = {0};
    int T = (int)s->feed.n, pos = s->n_hist;
    for (int i = 0; i < T; i++)
        s->hist[pos + i] = s->feed.ids[i];
    stats->prefill_tokens = T;
    if ((st = hm_model_build_infer_graph(s->model, s->cache, T, &pre)) != HM_OK ||
        (st = hm_infer_run(&pre, s->hist + pos, pos)) != HM_OK) {
        hm_infer_graph_free(&pre);
        s->n_hist = 0; /* the cache may hold part of the prefill: start over next time */
        s->conv.n--, hm_free(s->conv.msgs[s->conv.n].content);
        return st;
    }
    s->n_hist = pos + T;
    s->n_pending = 0;
    s->reply.n = 0;
    stats->stop = HM_STOP_MAX_TOKENS;
    struct hm_tensor *logits = pre.logits;
    for (int i = 0; i < max_new; i++) {
        hm_token id;
        if ((st = sample(s, logits, &id)) != HM_OK)
            break;
        if (id == s->sp.im_end || id == s->eos) {
            stats->stop = HM_STOP_EOS;
            break;
        }
        if ((st = hm_chat_tokens_reserve(&s->reply, 1)) != HM_OK)
            break;
        s->reply.ids[s->reply.n++] = id;
        stats->new_tokens++;
        if (on_token && !on_token(id, user_data)) {
            stats->stop = HM_STOP_CALLBACK;
            s->pending[s->n_pending++] = id;
            break;
        }
        if (s->n_hist + 3 > s->ctx_len) { /* keep room for <|im_end|>\n: no more reply fits */
            stats->stop = HM_STOP_CONTEXT_FULL;
            s->pending[s->n_pending++] = id;
            break;
        }
        s->hist[s->n_hist] = id;
        if ((st = hm_infer_run(&s->dec, &id, s->n_hist)) != HM_OK)
            break;
        s->n_hist++;
        logits = s->dec.logits;
    }
    hm_infer_graph_free(&pre);
    if (st == HM_OK && (st = keep_reply(s)) == HM_OK) {
        /* what closes the reply is fed with the next user message */
        hm_token nl[2];
        size_t n_nl = 0;
        s->pending[s->n_pending++] = s->sp.im_end;
        if ((st = hm_tokenizer_encode(s->tok, "\n", 1, nl, 2, &n_nl)) == HM_OK && n_nl == 1)
            s->pending[s->n_pending++] = nl[0];
        else if (st == HM_OK)
            s->n_hist = 0; /* an odd tokenizer: re-encode everything next turn */
    }
    if (st != HM_OK)
        s->n_hist = 0;
    return st;
}
