/*
 * bench-engine.c - the serving engine's throughput and what batch invariance costs (run through
 * scripts/bench/engine). Every mode measures ours and its peer in the same process, alternating
 * run by run, and prints medians.
 *   bench-engine matmul K N M REPS       x (M, K) @ w^T, w (N, K): the row-invariant kernel
 *                                        (hm_linear_rows) against BLAS (hm_linear)
 *   bench-engine step PRESET M REPS      one decode step of M sequences through the batch graph,
 *                                        row-invariant against BLAS linear layers: tokens/s
 *   bench-engine serve PRESET S P NEW REPS
 *                                        S streams submitted at once to the engine (max_batch S),
 *                                        P prompt tokens and NEW new tokens each (greedy, no stop
 *                                        ids): aggregate generated tokens/s from the first submit
 *                                        to the last on_done; peer: the same S requests one after
 *                                        another through hm_generate (batch-1 decode)
 * Output is one `key=value ...` line per measurement. Threads come from OMP_NUM_THREADS. Models
 * are random-init presets (configs/PRESET.json through hm_config_preset).
 */
#include "hermes/engine.h"

#include "bench-util.h"

#include <omp.h>
#include <pthread.h>

static int min_int(int a, int b)
{
    return a < b ? a : b;
}

static double median(double *x, int n)
{
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* ---- matmul ---------------------------------------------------------------------------------- */

struct mm {
    struct hm_ctx *ctx;
    struct hm_graph *g;
};

static void mm_build(struct hm_backend *be, int K, int N, int M, bool rows, struct mm *out)
{
    check(hm_ctx_new(&out->ctx), "ctx");
    struct hm_tensor *x = hm_new_input(out->ctx, HM_DTYPE_F32, 2, (int64_t[]){M, K});
    struct hm_tensor *w = hm_new_input(out->ctx, HM_DTYPE_F32, 2, (int64_t[]){N, K});
    struct hm_tensor *y = rows ? hm_linear_rows(out->ctx, x, w, NULL)
                               : hm_linear(out->ctx, x, w, NULL);
    check(hm_graph_new(out->ctx, &out->g), "graph");
    hm_graph_build_forward(out->g, y);
    check(hm_graph_plan(out->g, be), "plan");
    check(hm_tensor_fill(x, 0.01f), "fill");
    check(hm_tensor_fill(w, 0.02f), "fill");
}

static void bench_matmul(int K, int N, int M, int reps)
{
    struct hm_backend *be;
    check(hm_backend_cpu_new(&be), "backend");
    struct mm a, b;
    mm_build(be, K, N, M, true, &a);
    mm_build(be, K, N, M, false, &b);
    double *ta = calloc((size_t)reps, sizeof *ta), *tb = calloc((size_t)reps, sizeof *tb);
    int inner = (int)(2e8 / ((double)K * N * M) + 1); /* ~0.2 GFLOP per timed run */
    for (int r = -1; r < reps; r++) /* r = -1: warm-up */
        for (int which = 0; which < 2; which++) {
            struct mm *x = which ? &b : &a;
            double t0 = now();
            for (int i = 0; i < inner; i++)
                check(hm_graph_forward(x->g), "forward");
            double dt = (now() - t0) / inner;
            if (r >= 0)
                (which ? tb : ta)[r] = dt;
        }
    double ma = median(ta, reps), mb = median(tb, reps), flop = 2.0 * K * N * M;
    printf("matmul K=%d N=%d M=%d rows_us=%.1f blas_us=%.1f rows_gflops=%.1f blas_gflops=%.1f "
           "blas_over_rows=%.3f\n", K, N, M, ma * 1e6, mb * 1e6, flop / ma / 1e9, flop / mb / 1e9,
           mb / ma);
    hm_graph_free(a.g), hm_ctx_free(a.ctx), hm_graph_free(b.g), hm_ctx_free(b.ctx);
    free(ta), free(tb);
    hm_backend_free(be);
}

/* ---- one decode step ------------------------------------------------------------------------- */

static struct hm_model *preset_model(const char *preset, struct hm_backend **be)
{
    struct hm_model_config cfg;
    check(hm_config_preset(preset, &cfg), "preset");
    struct hm_model *m;
    check(hm_backend_cpu_new(be), "backend");
    check(hm_model_new_infer(&cfg, *be, &m), "model");
    check(hm_model_init_weights(m, 1), "init");
    return m;
}

static void bench_step(const char *preset, int M, int reps)
{
    struct hm_backend *be;
    struct hm_model *m = preset_model(preset, &be);
    const struct hm_model_config *c = hm_model_config(m);
    int ctx = min_int(c->max_seq_len, 256), P = ctx / 2;
    struct hm_kv_cache *kc;
    struct hm_batch_graph g[2];
    check(hm_kv_cache_new_slots(m, M, ctx, &kc), "cache");
    for (int i = 0; i < 2; i++)
        check(hm_model_build_batch_graph(m, kc, M, M, i == 0, &g[i]), "batch graph");
    int32_t *ids = calloc((size_t)M, sizeof *ids), *slot = calloc((size_t)M, sizeof *slot);
    int32_t *pos = calloc((size_t)M, sizeof *pos), *rows = calloc((size_t)M, sizeof *rows);
    for (int i = 0; i < M; i++)
        ids[i] = i, slot[i] = i, pos[i] = P, rows[i] = i; /* every sequence P tokens in */
    double *t[2] = {calloc((size_t)reps, sizeof(double)), calloc((size_t)reps, sizeof(double))};
    enum { STEPS = 8 };
    for (int r = -1; r < reps; r++)
        for (int which = 0; which < 2; which++) {
            double t0 = now();
            for (int s = 0; s < STEPS; s++)
                check(hm_batch_run(&g[which], ids, slot, pos, rows), "step");
            if (r >= 0)
                t[which][r] = (now() - t0) / STEPS;
        }
    double rows_s = median(t[0], reps), blas_s = median(t[1], reps);
    printf("step preset=%s M=%d rows_tok_s=%.1f blas_tok_s=%.1f rows_over_blas=%.3f\n", preset, M,
           M / rows_s, M / blas_s, blas_s / rows_s);
    for (int i = 0; i < 2; i++) {
        hm_batch_graph_free(&g[i]);
        free(t[i]);
    }
    free(ids), free(slot), free(pos), free(rows);
    hm_kv_cache_free(kc);
    hm_model_free(m);
    hm_backend_free(be);
}

/* ---- the engine ------------------------------------------------------------------------------ */

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int left;
    long tokens;
};

static bool count_token(hm_token id, void *user)
{
    (void)id;
    struct waiter *w = user;
    pthread_mutex_lock(&w->mu);
    w->tokens++;
    pthread_mutex_unlock(&w->mu);
    return true;
}

static void count_done(const struct hm_engine_result *r, void *user)
{
    struct waiter *w = user;
    pthread_mutex_lock(&w->mu);
    if (--w->left == 0)
        pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* S requests at once; returns generated tokens per second. */
static double engine_run(struct hm_engine *e, int S, const hm_token *prompt, int P, int NEW)
{
    struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, S, 0};
    double t0 = now();
    for (int i = 0; i < S; i++) {
        struct hm_engine_request rq = hm_engine_request_default();
        rq.prompt = prompt + i; /* a different prompt per stream */
        rq.n_prompt = P;
        rq.max_new_tokens = NEW;
        rq.sampling.temperature = 0.0f;
        rq.on_token = count_token;
        rq.on_done = count_done;
        rq.user = &w;
        uint64_t id;
        check(hm_engine_submit(e, &rq, &id), "submit");
    }
    pthread_mutex_lock(&w.mu);
    while (w.left > 0)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    double dt = now() - t0;
    if (w.tokens != (long)S * NEW) {
        fprintf(stderr, "bench-engine: %ld tokens generated, expected %d\n", w.tokens, S * NEW);
        exit(1);
    }
    return (double)w.tokens / dt;
}

/* The peer: the same S requests one after another through hm_generate. */
static double generate_run(struct hm_model *m, int S, const hm_token *prompt, int P, int NEW)
{
    struct hm_sampler_opts so = hm_sampler_opts_default();
    so.temperature = 0.0f;
    struct hm_generate_opts go = hm_generate_opts_default();
    go.max_new_tokens = NEW;
    struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    double t0 = now();
    for (int i = 0; i < S; i++) {
        struct hm_sampler *s;
        struct hm_generate_stats st;
        check(hm_sampler_new(hm_model_config(m)->vocab_size, &so, &s), "sampler");
        check(hm_generate(m, prompt + i, P, &go, s, count_token, &w, &st), "generate");
        hm_sampler_free(s);
    }
    return (double)w.tokens / (now() - t0);
}

static void bench_serve(const char *preset, int S, int P, int NEW, int reps)
{
    struct hm_backend *be;
    struct hm_model *m = preset_model(preset, &be);
    const struct hm_model_config *c = hm_model_config(m);
    struct hm_engine_opts o = hm_engine_opts_default();
    o.max_batch = S;
    o.ctx_len = min_int(c->max_seq_len, P + NEW);
    struct hm_engine *e;
    check(hm_engine_new(m, &o, &e), "engine");
    hm_token *prompt = malloc((size_t)(P + S) * sizeof *prompt);
    for (int i = 0; i < P + S; i++)
        prompt[i] = (hm_token)((i * 7919) % c->vocab_size);
    double *te = calloc((size_t)reps, sizeof *te), *tg = calloc((size_t)reps, sizeof *tg);
    for (int r = -1; r < reps; r++) {
        double a = engine_run(e, S, prompt, P, NEW), b = generate_run(m, S, prompt, P, NEW);
        if (r >= 0)
            te[r] = a, tg[r] = b;
    }
    double me = median(te, reps), mg = median(tg, reps);
    printf("serve preset=%s streams=%d prompt=%d new=%d threads=%d engine_tok_s=%.1f "
           "generate_tok_s=%.1f engine_over_generate=%.3f\n", preset, S, P, NEW,
           omp_get_max_threads(), me, mg, me / mg);
    hm_engine_free(e);
    free(prompt), free(te), free(tg);
    hm_model_free(m);
    hm_backend_free(be);
}

static int usage(void)
{
    fprintf(stderr, "usage: bench-engine matmul K N M REPS | step PRESET M REPS | "
                    "serve PRESET STREAMS PROMPT NEW REPS\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "matmul") == 0)
        bench_matmul(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    else if (argc == 5 && strcmp(argv[1], "step") == 0)
        bench_step(argv[2], atoi(argv[3]), atoi(argv[4]));
    else if (argc == 7 && strcmp(argv[1], "serve") == 0)
        bench_serve(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]));
    else
        return usage();
    return 0;
}
