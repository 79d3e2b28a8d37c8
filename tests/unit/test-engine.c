/*
 * test-engine.c - the continuous-batching engine (engine.h) and its model side (model.h batch
 * graphs, hm_linear_rows).
 *
 * - Kernel: hm_linear_rows gives bit-identical rows for N = 1, 3, 17 and 64 with the row at
 *   different indices, and agrees with a double-precision product.
 * - Model: a batch graph feeding two sequences' prompts in interleaved chunks into different
 *   slots, with padding rows, gives at every position the logits of a full forward over that
 *   sequence's prefix (so positions, slots and the causal mask are right).
 * - Engine: greedy output equals hm_generate's; every request's tokens are the same alone, all
 *   submitted together, and staggered (arriving mid-way), in f32 and in bf16; cancellation frees the slot for a
 *   queued request; a full queue is HM_ERR_BUSY; drain finishes what was accepted; freeing the
 *   engine fires every on_done once; context full, stop ids and request validation.
 */
#include "testutil.h"

#include "hermes/engine.h"
#include "hermes/gen.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct hm_model_config cfg_gpt(void)
{
    return tu_model_cfg(97, 64, 64, 2, 4, 4, 128, HM_ACT_GELU, true, true, 10000.0f);
}

static struct hm_model_config cfg_llama_gqa(void)
{
    return tu_model_cfg(101, 48, 48, 2, 6, 2, 80, HM_ACT_SWIGLU, false, false, 10000.0f);
}

/* A CPU backend and a model of `cfg` with tu_randomise_weights(seed). */
struct fixture {
    struct hm_backend *be;
    struct hm_model_config cfg;
    struct hm_model *m;
};

static struct fixture open_model(struct hm_model_config cfg, uint32_t seed)
{
    struct fixture f = {.cfg = cfg};
    assert_int_equal(hm_backend_cpu_new(&f.be), HM_OK);
    f.m = tu_random_model(f.be, &f.cfg, seed);
    return f;
}

static void close_model(struct fixture *f)
{
    hm_model_free(f->m);
    hm_backend_free(f->be);
}

/* ---- the row-invariant matmul ---------------------------------------------------------------- */

enum { MK = 70, MN = 37 }; /* a K with a lane tail, an N with a column tail */

/* y = x @ w^T + b for N rows through hm_linear_rows. */
static void linear_rows(struct hm_backend *be, const float *x, const float *w, const float *bias,
                        int N, float *y)
{
    struct hm_ctx *ctx;
    struct hm_graph *g;
    assert_int_equal(hm_ctx_new(&ctx), HM_OK);
    struct hm_tensor *xt = hm_new_input(ctx, HM_DTYPE_F32, 2, (int64_t[]){N, MK});
    struct hm_tensor *wt = hm_new_input(ctx, HM_DTYPE_F32, 2, (int64_t[]){MN, MK});
    struct hm_tensor *bt = hm_new_input(ctx, HM_DTYPE_F32, 1, (int64_t[]){MN});
    struct hm_tensor *yt = hm_linear_rows(ctx, xt, wt, bt);
    assert_int_equal(hm_graph_new(ctx, &g), HM_OK);
    hm_graph_build_forward(g, yt);
    assert_int_equal(hm_graph_plan(g, be), HM_OK);
    assert_int_equal(hm_tensor_set(xt, x, (size_t)N * MK * sizeof *x), HM_OK);
    assert_int_equal(hm_tensor_set(wt, w, (size_t)MN * MK * sizeof *w), HM_OK);
    assert_int_equal(hm_tensor_set(bt, bias, (size_t)MN * sizeof *bias), HM_OK);
    assert_int_equal(hm_graph_forward(g), HM_OK);
    assert_int_equal(hm_tensor_get(yt, y, (size_t)N * MN * sizeof *y), HM_OK);
    hm_graph_free(g);
    hm_ctx_free(ctx);
}

static void test_matmul_rows_invariant(void **state)
{
    struct hm_backend *be;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    uint32_t seed = 7;
    float w[MN * MK], bias[MN], probe[MK], ref[MN];
    for (int i = 0; i < MN * MK; i++)
        w[i] = (float)tu_lcg(&seed) / 16777216.0f - 0.5f;
    for (int i = 0; i < MN; i++)
        bias[i] = (float)tu_lcg(&seed) / 16777216.0f - 0.5f;
    for (int i = 0; i < MK; i++)
        probe[i] = (float)tu_lcg(&seed) / 16777216.0f - 0.5f;
    linear_rows(be, probe, w, bias, 1, ref);
    for (int n = 0; n < MN; n++) { /* and it is the product */
        double s = bias[n];
        for (int k = 0; k < MK; k++)
            s += (double)probe[k] * w[n * MK + k];
        assert_true(fabs(s - ref[n]) < 1e-5);
    }
    const int Ns[] = {1, 3, 17, 64};
    for (size_t t = 0; t < sizeof Ns / sizeof Ns[0]; t++) {
        int N = Ns[t];
        float *x = malloc((size_t)N * MK * sizeof *x), *y = malloc((size_t)N * MN * sizeof *y);
        for (int i = 0; i < N * MK; i++)
            x[i] = (float)tu_lcg(&seed) / 16777216.0f - 0.5f;
        int at[] = {0, N / 2, N - 1}; /* the probe row first, in the middle, last */
        for (int a = 0; a < 3; a++) {
            memcpy(x + (size_t)at[a] * MK, probe, sizeof probe);
            linear_rows(be, x, w, bias, N, y);
            assert_memory_equal(y + (size_t)at[a] * MN, ref, sizeof ref);
        }
        free(x);
        free(y);
    }
    hm_backend_free(be);
}

/* ---- the batch graph against a full forward ------------------------------------------------ */

/* Sequences A (slot 2) and B (slot 0) of a 3-slot cache, fed in chunks of 3 and 5 tokens in the
 * same steps, B's rows first, with two padding rows; every row's logits are checked. */
static void batch_parity(const struct hm_model_config *cfg)
{
    struct fixture f = open_model(*cfg, 11);
    struct hm_model *m = f.m;
    int V = cfg->vocab_size, LA = 14, LB = 19, N = 3 + 5 + 2;
    uint32_t seed = 3;
    int32_t a[19], b[19];
    for (int i = 0; i < LB; i++) {
        a[i] = (int32_t)(tu_lcg(&seed) % (uint32_t)V);
        b[i] = (int32_t)(tu_lcg(&seed) % (uint32_t)V);
    }
    float *fa = malloc((size_t)LA * V * sizeof *fa), *fb = malloc((size_t)LB * V * sizeof *fb);
    tu_full_logits(m, a, LA, fa);
    tu_full_logits(m, b, LB, fb);
    struct hm_kv_cache *kc;
    struct hm_batch_graph g;
    assert_int_equal(hm_kv_cache_new_slots(m, 3, cfg->max_seq_len, &kc), HM_OK);
    assert_int_equal(hm_model_build_batch_graph(m, kc, N, N, true, &g), HM_OK);
    float *out = malloc((size_t)N * V * sizeof *out);
    float worst = 0;
    for (int fa_ = 0, fb_ = 0; fa_ < LA || fb_ < LB;) {
        int32_t ids[10], slot[10], pos[10], rows[10], n = 0;
        int is_a[10];
        for (int i = 0; i < 5 && fb_ < LB; i++, fb_++, n++)
            ids[n] = b[fb_], slot[n] = 0, pos[n] = fb_, is_a[n] = 0;
        for (int i = 0; i < 3 && fa_ < LA; i++, fa_++, n++)
            ids[n] = a[fa_], slot[n] = 2, pos[n] = fa_, is_a[n] = 1;
        for (int r = 0; r < N; r++) {
            if (r >= n)
                ids[r] = 0, slot[r] = -1, pos[r] = 0;
            rows[r] = r;
        }
        assert_int_equal(hm_batch_run(&g, ids, slot, pos, rows), HM_OK);
        assert_int_equal(hm_tensor_get(g.logits, out, (size_t)N * V * sizeof *out), HM_OK);
        for (int r = 0; r < n; r++) {
            const float *want = (is_a[r] ? fa : fb) + (size_t)pos[r] * V;
            for (int v = 0; v < V; v++)
                worst = fmaxf(worst, fabsf(out[(size_t)r * V + v] - want[v]));
        }
    }
    printf("batch graph vs full forward: max |diff| %.3g\n", worst);
    assert_true(worst < 1e-4f);
    free(out);
    free(fa);
    free(fb);
    hm_batch_graph_free(&g);
    hm_kv_cache_free(kc);
    close_model(&f);
}

static void test_batch_graph_parity_gpt(void **state)
{
    struct hm_model_config c = cfg_gpt();
    batch_parity(&c);
}

static void test_batch_graph_parity_llama_gqa(void **state)
{
    struct hm_model_config c = cfg_llama_gqa();
    batch_parity(&c);
}

/* Sequence X (slot 1) fed one token per step through an N = 1 graph, and again in chunks of 7,
 * 7 and 6 at row 5 of an N = 17 graph whose other rows feed other slots or pad: X's logits are
 * bit-identical at every position (what makes the engine's output batch-invariant). */
static void test_batch_graph_bitwise_invariant(void **state)
{
    struct fixture f = open_model(cfg_gpt(), 13);
    struct hm_model *m = f.m;
    struct hm_model_config cfg = f.cfg;
    enum { L = 20, N = 17 };
    int V = cfg.vocab_size;
    uint32_t seed = 21;
    int32_t x[L];
    for (int i = 0; i < L; i++)
        x[i] = (int32_t)(tu_lcg(&seed) % (uint32_t)V);
    struct hm_kv_cache *kc;
    struct hm_batch_graph g1, g;
    assert_int_equal(hm_kv_cache_new_slots(m, 4, cfg.max_seq_len, &kc), HM_OK);
    assert_int_equal(hm_model_build_batch_graph(m, kc, 1, 1, true, &g1), HM_OK);
    assert_int_equal(hm_model_build_batch_graph(m, kc, N, N, true, &g), HM_OK);
    float *alone = malloc((size_t)L * V * sizeof *alone);
    float *out = malloc((size_t)N * V * sizeof *out);
    for (int p = 0; p < L; p++) {
        int32_t slot = 1, row = 0;
        assert_int_equal(hm_batch_run(&g1, &x[p], &slot, &p, &row), HM_OK);
        float *row_p = alone + (size_t)p * V;
        assert_int_equal(hm_tensor_get(g1.logits, row_p, (size_t)V * sizeof *out), HM_OK);
    }
    const int chunks[] = {7, 7, 6};
    for (int c = 0, p0 = 0; c < 3; p0 += chunks[c++]) {
        int32_t ids[N], slot[N], pos[N], rows[N];
        for (int r = 0; r < N; r++) { /* others: slots 0, 2, 3 and padding */
            ids[r] = (int32_t)(tu_lcg(&seed) % (uint32_t)V);
            slot[r] = r % 4 == 1 ? -1 : r % 4;
            pos[r] = c * N + r;
            rows[r] = r;
        }
        for (int i = 0; i < chunks[c]; i++)
            ids[5 + i] = x[p0 + i], slot[5 + i] = 1, pos[5 + i] = p0 + i;
        assert_int_equal(hm_batch_run(&g, ids, slot, pos, rows), HM_OK);
        assert_int_equal(hm_tensor_get(g.logits, out, (size_t)N * V * sizeof *out), HM_OK);
        for (int i = 0; i < chunks[c]; i++)
            assert_memory_equal(out + (size_t)(5 + i) * V, alone + (size_t)(p0 + i) * V,
                                (size_t)V * sizeof *out);
    }
    free(alone);
    free(out);
    hm_batch_graph_free(&g1);
    hm_batch_graph_free(&g);
    hm_kv_cache_free(kc);
    close_model(&f);
}

/* ---- engine helpers ------------------------------------------------------------------------- */

enum { MAX_OUT = 128 };

/* What one request produced, filled by its callbacks on the engine thread. */
struct collect {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    hm_token tokens[MAX_OUT];
    int n, n_done;
    struct hm_engine_result res;
    /* optional hooks */
    struct hm_engine *engine;
    uint64_t cancel_id;  /* hm_engine_cancel(engine, cancel_id) at token cancel_at */
    int cancel_at;       /* 0: never */
    int refuse_at;       /* on_token returns false at this token; 0: never */
    bool gate;           /* block in the first on_token until `open` */
    bool entered, open;
};

static void collect_init(struct collect *c)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
}

static void collect_destroy(struct collect *c)
{
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
}

static bool on_token(hm_token id, void *user)
{
    struct collect *c = user;
    pthread_mutex_lock(&c->mu);
    if (c->n < MAX_OUT)
        c->tokens[c->n] = id;
    int n = ++c->n;
    pthread_cond_broadcast(&c->cv);
    if (c->gate) {
        c->entered = true;
        pthread_cond_broadcast(&c->cv);
        while (!c->open)
            pthread_cond_wait(&c->cv, &c->mu);
        c->gate = false;
    }
    pthread_mutex_unlock(&c->mu);
    if (c->cancel_at && n == c->cancel_at)
        hm_engine_cancel(c->engine, c->cancel_id);
    return !(c->refuse_at && n == c->refuse_at);
}

static void on_done(const struct hm_engine_result *r, void *user)
{
    struct collect *c = user;
    pthread_mutex_lock(&c->mu);
    c->res = *r;
    c->n_done++;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void wait_done(struct collect *c)
{
    pthread_mutex_lock(&c->mu);
    while (c->n_done == 0)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

/* Wait until c has at least n tokens (or is done). */
static void wait_tokens(struct collect *c, int n)
{
    pthread_mutex_lock(&c->mu);
    while (c->n < n && c->n_done == 0)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

static void wait_entered(struct collect *c)
{
    pthread_mutex_lock(&c->mu);
    while (!c->entered)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

static void open_gate(struct collect *c)
{
    pthread_mutex_lock(&c->mu);
    c->open = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

struct req_spec {
    int n_prompt, max_new;
    float temperature;
    int top_k;
    float top_p, rep;
    uint64_t seed;
};

static hm_token prompt_store[16][64]; /* request i's prompt */

static struct hm_engine_request make_request(const struct req_spec *sp, int i, int V,
                                             struct collect *c)
{
    uint32_t seed = 100 + (uint32_t)i;
    for (int k = 0; k < sp->n_prompt; k++)
        prompt_store[i][k] = (hm_token)(tu_lcg(&seed) % (uint32_t)V);
    struct hm_engine_request rq = hm_engine_request_default();
    rq.prompt = prompt_store[i];
    rq.n_prompt = sp->n_prompt;
    rq.max_new_tokens = sp->max_new;
    rq.sampling.temperature = sp->temperature;
    rq.sampling.top_k = sp->top_k;
    rq.sampling.top_p = sp->top_p;
    rq.sampling.repetition_penalty = sp->rep;
    rq.sampling.seed = sp->seed;
    rq.on_token = on_token;
    rq.on_done = on_done;
    rq.user = c;
    return rq;
}

/* Greedy and seeded sampling, prompts from 1 token to several prefill chunks (chunk 8). */
static const struct req_spec SPECS[] = {
    {1, 12, 0.0f, 0, 1.0f, 1.0f, 0},    {5, 10, 0.8f, 0, 1.0f, 1.0f, 42},
    {23, 12, 0.0f, 0, 1.0f, 1.3f, 0},   {40, 8, 1.0f, 20, 0.9f, 1.0f, 7},
    {8, 15, 0.7f, 0, 0.8f, 1.1f, 9},    {17, 9, 0.0f, 0, 1.0f, 1.0f, 0},
    {3, 14, 1.2f, 5, 1.0f, 1.0f, 1234}, {31, 11, 0.9f, 0, 1.0f, 1.2f, 5},
    {12, 13, 0.0f, 0, 1.0f, 1.0f, 0},   {2, 16, 0.6f, 10, 0.95f, 1.0f, 77},
};
enum { N_SPECS = sizeof SPECS / sizeof SPECS[0] };

static struct hm_engine *new_engine(struct hm_model *m, int max_batch, int ctx, int chunk,
                                     int queue)
{
    struct hm_engine_opts o = hm_engine_opts_default();
    o.max_batch = max_batch, o.ctx_len = ctx, o.prefill_chunk = chunk, o.max_queue = queue;
    struct hm_engine *e;
    assert_int_equal(hm_engine_new(m, &o, &e), HM_OK);
    return e;
}

static void assert_same_tokens(const struct collect *a, const struct collect *b, int i)
{
    if (a->n != b->n || memcmp(a->tokens, b->tokens, (size_t)a->n * sizeof(hm_token)) != 0) {
        print_error("request %d: %d tokens alone, %d batched, or different tokens\n", i, a->n,
                    b->n);
        fail();
    }
    assert_int_equal(a->res.finish, b->res.finish);
}

/* ---- engine tests ---------------------------------------------------------------------------- */

static void test_greedy_matches_generate(void **state)
{
    struct fixture f = open_model(cfg_llama_gqa(), 5);
    struct hm_model *m = f.m;
    struct hm_model_config cfg = f.cfg;
    struct hm_engine *e = new_engine(m, 4, 0, 8, 16);
    for (int i = 0; i < 3; i++) {
        struct req_spec sp = {1 + 9 * i, 20, 0.0f, 0, 1.0f, 1.0f, 0};
        struct collect c;
        collect_init(&c);
        struct hm_engine_request rq = make_request(&sp, i, cfg.vocab_size, &c);
        uint64_t id;
        assert_int_equal(hm_engine_submit(e, &rq, &id), HM_OK);
        wait_done(&c);
        struct hm_sampler_opts so = rq.sampling;
        struct hm_sampler *s;
        assert_int_equal(hm_sampler_new(cfg.vocab_size, &so, &s), HM_OK);
        struct hm_generate_opts go = hm_generate_opts_default();
        go.max_new_tokens = sp.max_new;
        struct collect g;
        collect_init(&g);
        struct hm_generate_stats st;
        assert_int_equal(hm_generate(m, rq.prompt, rq.n_prompt, &go, s, on_token, &g, &st), HM_OK);
        assert_int_equal(c.res.finish, HM_FINISH_LENGTH);
        assert_int_equal(c.res.completion_tokens, sp.max_new);
        assert_int_equal(c.res.prompt_tokens, sp.n_prompt);
        assert_same_tokens(&g, &c, i);
        hm_sampler_free(s);
        collect_destroy(&c);
        collect_destroy(&g);
    }
    hm_engine_free(e);
    close_model(&f);
}

/* Run SPECS[i] for i in [0, n): alone (one at a time), all submitted at once, and staggered:
 * half first, the rest once request 0 has produced 3 tokens. */
static void run_all(struct hm_engine *e, int V, struct collect *c, bool staggered)
{
    uint64_t id;
    for (int i = 0; i < N_SPECS; i++)
        collect_init(&c[i]);
    for (int i = 0; i < N_SPECS; i++) {
        if (staggered && i == N_SPECS / 2)
            wait_tokens(&c[0], 3);
        struct hm_engine_request rq = make_request(&SPECS[i], i, V, &c[i]);
        assert_int_equal(hm_engine_submit(e, &rq, &id), HM_OK);
    }
    for (int i = 0; i < N_SPECS; i++)
        wait_done(&c[i]);
}

static void batch_invariance(enum hm_dtype dtype)
{
    struct fixture f = open_model(cfg_gpt(), 9);
    struct hm_model *m = f.m;
    struct hm_model_config cfg = f.cfg;
    assert_int_equal(hm_model_set_dtype(m, dtype), HM_OK);
    struct hm_engine *e = new_engine(m, 4, 0, 8, 32);
    static struct collect alone[N_SPECS], together[N_SPECS], stagger[N_SPECS];
    uint64_t id;
    for (int i = 0; i < N_SPECS; i++) {
        collect_init(&alone[i]);
        struct hm_engine_request rq = make_request(&SPECS[i], i, cfg.vocab_size, &alone[i]);
        assert_int_equal(hm_engine_submit(e, &rq, &id), HM_OK);
        wait_done(&alone[i]);
        assert_int_equal(alone[i].res.finish, HM_FINISH_LENGTH);
        assert_int_equal(alone[i].n, SPECS[i].max_new);
    }
    run_all(e, cfg.vocab_size, together, false);
    run_all(e, cfg.vocab_size, stagger, true);
    struct hm_engine_stats st;
    hm_engine_stats(e, &st);
    assert_int_equal(st.running, 0);
    assert_int_equal(st.queued, 0);
    assert_true(st.steps > 0 && st.tokens_generated > 0 && st.tokens_fed >= st.tokens_generated);
    for (int i = 0; i < N_SPECS; i++) {
        assert_same_tokens(&alone[i], &together[i], i);
        assert_same_tokens(&alone[i], &stagger[i], i);
        assert_int_equal(together[i].n_done, 1);
        collect_destroy(&alone[i]);
        collect_destroy(&together[i]);
        collect_destroy(&stagger[i]);
    }
    hm_engine_free(e);
    close_model(&f);
}

static void test_batch_invariance(void **state)
{
    batch_invariance(HM_DTYPE_F32);
}

/* bf16 weights, activations and KV cache (the CPU computes on f32 shadows): invariant too. */
static void test_batch_invariance_bf16(void **state)
{
    batch_invariance(HM_DTYPE_BF16);
}

/* One slot: A cancels itself (hm_engine_cancel from its callback) at its 3rd token; B, queued
 * behind it, then gets the slot and runs to the end. C ends itself by returning false. */
static void test_cancel_frees_slot(void **state)
{
    struct fixture f = open_model(cfg_gpt(), 9);
    struct hm_model *m = f.m;
    struct hm_model_config cfg = f.cfg;
    struct hm_engine *e = new_engine(m, 1, 0, 8, 4);
    struct collect a, b, c;
    collect_init(&a);
    collect_init(&b);
    collect_init(&c);
    struct req_spec long_run = {4, 50, 0.0f, 0, 1.0f, 1.0f, 0};
    struct req_spec short_run = {6, 5, 0.0f, 0, 1.0f, 1.0f, 0};
    struct hm_engine_request ra = make_request(&long_run, 0, cfg.vocab_size, &a);
    struct hm_engine_request rb = make_request(&short_run, 1, cfg.vocab_size, &b);
    struct hm_engine_request rc = make_request(&long_run, 2, cfg.vocab_size, &c);
    a.engine = e, a.cancel_at = 3;
    c.refuse_at = 2;
    a.gate = true; /* hold A's first token until B is queued behind it */
    uint64_t ida, idb, idc;
    assert_int_equal(hm_engine_submit(e, &ra, &ida), HM_OK);
    a.cancel_id = ida;
    wait_entered(&a);
    assert_int_equal(hm_engine_submit(e, &rb, &idb), HM_OK);
    assert_int_equal(hm_engine_submit(e, &rc, &idc), HM_OK);
    struct hm_engine_stats st;
    hm_engine_stats(e, &st);
    assert_int_equal(st.running, 1);
    assert_int_equal(st.queued, 2);
    open_gate(&a);
    wait_done(&a);
    wait_done(&b);
    wait_done(&c);
    assert_int_equal(a.res.finish, HM_FINISH_CANCELLED);
    assert_int_equal(a.n, 3);
    assert_int_equal(b.res.finish, HM_FINISH_LENGTH);
    assert_int_equal(b.n, 5);
    assert_int_equal(c.res.finish, HM_FINISH_CANCELLED);
    assert_int_equal(c.res.completion_tokens, 2);
    hm_engine_cancel(e, 999); /* unknown: ignored */
    hm_engine_free(e);
    assert_int_equal(a.n_done + b.n_done + c.n_done, 3);
    collect_destroy(&a);
    collect_destroy(&b);
    collect_destroy(&c);
    close_model(&f);
}

/* One slot, queue of 2: with A holding the slot (blocked in its callback), B and C wait and D
 * is refused with HM_ERR_BUSY, no callback fired; then drain finishes A, B and C. */
static void test_queue_full_and_drain(void **state)
{
    struct fixture f = open_model(cfg_gpt(), 9);
    struct hm_model *m = f.m;
    struct hm_model_config cfg = f.cfg;
    struct hm_engine *e = new_engine(m, 1, 0, 8, 2);
    struct collect c[4];
    struct hm_engine_request rq[4];
    struct req_spec sp = {3, 6, 0.0f, 0, 1.0f, 1.0f, 0};
    for (int i = 0; i < 4; i++) {
        collect_init(&c[i]);
        rq[i] = make_request(&sp, i, cfg.vocab_size, &c[i]);
    }
    c[0].gate = true;
    uint64_t id;
    assert_int_equal(hm_engine_submit(e, &rq[0], &id), HM_OK);
    wait_entered(&c[0]);
    assert_int_equal(hm_engine_submit(e, &rq[1], &id), HM_OK);
    assert_int_equal(hm_engine_submit(e, &rq[2], &id), HM_OK);
    assert_int_equal(hm_engine_submit(e, &rq[3], &id), HM_ERR_BUSY);
    open_gate(&c[0]);
    assert_int_equal(hm_engine_drain(e, 600.0), HM_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c[i].n_done, 1);
        assert_int_equal(c[i].res.finish, HM_FINISH_LENGTH);
        assert_int_equal(c[i].n, 6);
        assert_true(c[i].res.total_s >= c[i].res.first_token_s);
        assert_true(c[i].res.first_token_s >= c[i].res.queued_s);
    }
    assert_int_equal(c[3].n_done + c[3].n, 0);
    assert_int_equal(hm_engine_submit(e, &rq[3], &id), HM_ERR_INTERRUPTED);
    hm_engine_free(e);
    for (int i = 0; i < 4; i++)
        collect_destroy(&c[i]);
    close_model(&f);
}

static void *free_engine(void *e)
{
    hm_engine_free(e);
    return NULL;
}

/* Freeing the engine with requests running and queued fires every on_done exactly once. The
 * first request holds the engine thread in its callback until hm_engine_free (on another thread)
 * has begun (submit then answers HM_ERR_INTERRUPTED), so nothing can finish on its own. */
static void test_free_in_flight(void **state)
{
    struct fixture f = open_model(cfg_gpt(), 9);
    struct hm_model *m = f.m;
    struct hm_model_config cfg = f.cfg;
    struct hm_engine *e = new_engine(m, 2, 0, 8, 8);
    enum { N = 6, EXTRA = 8 };
    struct collect c[N + EXTRA];
    struct req_spec sp = {10, 40, 0.8f, 0, 1.0f, 1.0f, 3};
    uint64_t id;
    for (int i = 0; i < N + EXTRA; i++)
        collect_init(&c[i]);
    c[0].gate = true;
    for (int i = 0; i < N; i++) {
        struct hm_engine_request rq = make_request(&sp, i, cfg.vocab_size, &c[i]);
        assert_int_equal(hm_engine_submit(e, &rq, &id), HM_OK);
    }
    wait_entered(&c[0]);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, free_engine, e), 0);
    int n = N;
    for (;;) { /* requests accepted before the free began are in flight too */
        struct hm_engine_request rq = make_request(&sp, n, cfg.vocab_size, &c[n]);
        enum hm_status st = hm_engine_submit(e, &rq, &id);
        if (st == HM_ERR_INTERRUPTED)
            break;
        assert_true(st == HM_OK || st == HM_ERR_BUSY);
        if (st == HM_OK)
            n++;
        assert_true(n < N + EXTRA);
    }
    open_gate(&c[0]);
    pthread_join(t, NULL);
    for (int i = 0; i < N + EXTRA; i++) {
        assert_int_equal(c[i].n_done, i < n ? 1 : 0);
        if (i < n)
            assert_int_equal(c[i].res.finish, HM_FINISH_CANCELLED);
        collect_destroy(&c[i]);
    }
    close_model(&f);
}

/* ctx 16: a 10-token prompt yields 7 tokens (positions 10..15 fed, the 7th never fed). A stop
 * id ends the request before that token is passed on. */
static void test_context_full_and_stop(void **state)
{
    struct fixture f = open_model(cfg_gpt(), 9);
    struct hm_model *m = f.m;
    struct hm_model_config cfg = f.cfg;
    struct hm_engine *e = new_engine(m, 2, 16, 4, 4);
    struct collect full, stop;
    collect_init(&full);
    collect_init(&stop);
    struct req_spec sp = {10, 100, 0.0f, 0, 1.0f, 1.0f, 0};
    struct hm_engine_request rq = make_request(&sp, 0, cfg.vocab_size, &full);
    uint64_t id;
    assert_int_equal(hm_engine_submit(e, &rq, &id), HM_OK);
    wait_done(&full);
    assert_int_equal(full.res.finish, HM_FINISH_LENGTH);
    assert_int_equal(full.n, 7);
    rq.user = &stop;
    rq.stop_ids[0] = full.tokens[4];
    rq.n_stop_ids = 1;
    int first = 0;
    while (full.tokens[first] != full.tokens[4])
        first++;
    assert_int_equal(hm_engine_submit(e, &rq, &id), HM_OK);
    wait_done(&stop);
    assert_int_equal(stop.res.finish, HM_FINISH_STOP);
    assert_int_equal(stop.n, first);
    assert_int_equal(stop.res.completion_tokens, first);
    hm_engine_free(e);
    collect_destroy(&full);
    collect_destroy(&stop);
    close_model(&f);
}

static void test_refusals(void **state)
{
    struct fixture f = open_model(cfg_gpt(), 9);
    struct hm_model *m = f.m;
    struct hm_model_config cfg = f.cfg;
    struct hm_engine_opts o = hm_engine_opts_default();
    struct hm_engine *e;
    o.max_batch = 0;
    assert_int_equal(hm_engine_new(m, &o, &e), HM_ERR_USAGE);
    o = hm_engine_opts_default();
    o.ctx_len = cfg.max_seq_len + 1;
    assert_int_equal(hm_engine_new(m, &o, &e), HM_ERR_USAGE);
    assert_non_null(strstr(hm_last_error(), "ctx_len"));
    o = hm_engine_opts_default();
    o.prefill_chunk = 0;
    assert_int_equal(hm_engine_new(m, &o, &e), HM_ERR_USAGE);
    e = new_engine(m, 2, 16, 4, 4);
    struct collect c;
    collect_init(&c);
    struct req_spec sp = {4, 3, 0.0f, 0, 1.0f, 1.0f, 0};
    struct hm_engine_request rq = make_request(&sp, 0, cfg.vocab_size, &c), bad;
    uint64_t id;
    bad = rq, bad.n_prompt = 0;
    assert_int_equal(hm_engine_submit(e, &bad, &id), HM_ERR_USAGE);
    bad = rq, bad.n_prompt = 17;
    assert_int_equal(hm_engine_submit(e, &bad, &id), HM_ERR_USAGE);
    hm_token oov[1] = {cfg.vocab_size};
    bad = rq, bad.prompt = oov, bad.n_prompt = 1;
    assert_int_equal(hm_engine_submit(e, &bad, &id), HM_ERR_USAGE);
    bad = rq, bad.sampling.top_p = 0.0f;
    assert_int_equal(hm_engine_submit(e, &bad, &id), HM_ERR_USAGE);
    bad = rq, bad.max_new_tokens = -1;
    assert_int_equal(hm_engine_submit(e, &bad, &id), HM_ERR_USAGE);
    bad = rq, bad.max_new_tokens = 0; /* accepted: done at once, no token */
    assert_int_equal(hm_engine_submit(e, &bad, &id), HM_OK);
    wait_done(&c);
    assert_int_equal(c.res.finish, HM_FINISH_LENGTH);
    assert_int_equal(c.n + c.res.completion_tokens, 0);
    hm_engine_free(e);
    assert_int_equal(c.n_done, 1);
    collect_destroy(&c);
    close_model(&f);
}

/* A model with packed weights (generate --dtype bf16|q8_0 on the CPU) is refused at creation. */
static void test_refuses_packed_weights(void **state)
{
    (void)state;
    struct hm_model_config cfg = cfg_gpt();
    struct hm_backend *be;
    struct hm_model *m;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    assert_int_equal(hm_model_new_infer(&cfg, be, &m), HM_OK);
    assert_int_equal(hm_model_init_weights(m, 3), HM_OK);
    assert_int_equal(hm_model_pack_weights(m, HM_DTYPE_BF16), HM_OK);
    struct hm_engine_opts o = hm_engine_opts_default();
    struct hm_engine *e = NULL;
    assert_int_equal(hm_engine_new(m, &o, &e), HM_ERR_UNSUPPORTED);
    assert_null(e);
    assert_non_null(strstr(hm_last_error(), "packed"));
    hm_model_free(m);
    hm_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_rows_invariant),
        cmocka_unit_test(test_batch_graph_parity_gpt),
        cmocka_unit_test(test_batch_graph_parity_llama_gqa),
        cmocka_unit_test(test_batch_graph_bitwise_invariant),
        cmocka_unit_test(test_greedy_matches_generate),
        cmocka_unit_test(test_batch_invariance),
        cmocka_unit_test(test_batch_invariance_bf16),
        cmocka_unit_test(test_cancel_frees_slot),
        cmocka_unit_test(test_queue_full_and_drain),
        cmocka_unit_test(test_free_in_flight),
        cmocka_unit_test(test_context_full_and_stop),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_refuses_packed_weights),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
