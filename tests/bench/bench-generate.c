/*
 * bench-generate.c - batch-1 decode speed on the CPU (run through scripts/bench/generate).
 *   bench-generate bandwidth [MiB]                  memory bandwidth: a read-only sum and a STREAM
 *                                                   triad over arrays of MiB each (default 512)
 *   bench-generate decode PRESET [P N REPS] [--profile] [--dtype f32|bf16|q8_0]
 *                                                   random-init PRESET (hm_model_new_infer; bf16 and
 *                                                   q8_0 pack its weights), then hm_generate greedy:
 *                                                   P prompt tokens, N new ones; median decode tok/s
 *                                                   over REPS runs, and the bytes one decode step
 *                                                   must read (weights + KV cache)
 *   bench-generate matvec DTYPE [MiB K REPS]        one linear layer at batch 1 on a DTYPE weight of
 *                                                   about MiB (default 1024) with rows of K (2048):
 *                                                   median GB/s of weight read over REPS (9) runs
 * Output is one `key=value ...` line per measurement so the script can parse it. Threads come from
 * OMP_NUM_THREADS (hm_set_threads when HM_THREADS is set).
 */
#include "hermes/export.h"
#include "hermes/gen.h"

#include "bench-util.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- bandwidth ------------------------------------------------------------------------------- */

static void bench_bandwidth(size_t mib)
{
    size_t n = mib * 1024 * 1024 / sizeof(float);
    float *a = aligned_alloc(64, n * sizeof(float)), *b = aligned_alloc(64, n * sizeof(float));
    float *c = aligned_alloc(64, n * sizeof(float));
    if (!a || !b || !c) {
        fprintf(stderr, "bench-generate: cannot allocate 3 x %zu MiB\n", mib);
        exit(1);
    }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        a[i] = 1.0f, b[i] = 2.0f, c[i] = 0.5f;
    double best_read = 0, best_triad = 0, sink = 0;
    for (int r = 0; r < 7; r++) {
        double t0 = now();
        float s = 0; /* simd reduction: vector partial sums, so the loop is not latency-bound */
#pragma omp parallel for simd schedule(static) reduction(+ : s)
        for (size_t i = 0; i < n; i++)
            s += b[i];
        double dt = now() - t0;
        sink += s;
        double gbs = (double)n * sizeof(float) / dt / 1e9;
        best_read = gbs > best_read ? gbs : best_read;
        t0 = now();
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++)
            a[i] = b[i] + 3.0f * c[i];
        dt = now() - t0;
        gbs = 3.0 * (double)n * sizeof(float) / dt / 1e9; /* STREAM counting: no write-allocate */
        best_triad = gbs > best_triad ? gbs : best_triad;
    }
    printf("bandwidth threads=%d mib=%zu read_gbs=%.2f triad_gbs=%.2f sink=%g\n", omp_get_max_threads(),
           mib, best_read, best_triad, sink + a[n / 2]);
    free(a), free(b), free(c);
}

/* ---- decode ---------------------------------------------------------------------------------- */

static bool count_token(int32_t id, void *user)
{
    (void)id;
    (*(int *)user)++;
    return true;
}

static void profile_decode(struct hm_model *m, int P, int N)
{
    struct hm_kv_cache *kc;
    struct hm_infer_graph pre, dec;
    check(hm_kv_cache_new(m, P + N, &kc), "cache");
    check(hm_model_build_infer_graph(m, kc, P, &pre), "prefill graph");
    check(hm_model_build_infer_graph(m, kc, 1, &dec), "decode graph");
    int32_t *ids = calloc((size_t)P, sizeof *ids);
    check(hm_infer_run(&pre, ids, 0), "prefill");
    hm_graph_set_profiling(dec.graph, true);
    double t0 = now();
    for (int i = 0; i < N; i++)
        check(hm_infer_run(&dec, &ids[0], P + i), "decode");
    double dt = now() - t0;
    const struct hm_op_profile *pr = hm_graph_profile(dec.graph, false);
    double sum = 0;
    for (int op = 0; op < HM_OP_COUNT; op++)
        sum += pr[op].seconds;
    printf("profile: %d decode steps, %.2f ms/step (ops %.2f ms)\n", N, dt / N * 1e3, sum / N * 1e3);
    for (int op = 0; op < HM_OP_COUNT; op++)
        if (pr[op].calls)
            printf("  %-14s %8.3f ms/step %5.1f%%  (%llu calls)\n", hm_op_name((enum hm_op)op),
                   pr[op].seconds / N * 1e3, 100.0 * pr[op].seconds / sum, (unsigned long long)pr[op].calls);
    free(ids);
    hm_infer_graph_free(&pre);
    hm_infer_graph_free(&dec);
    hm_kv_cache_free(kc);
}

static enum hm_dtype parse_dtype(const char *name)
{
    enum hm_dtype t = strcmp(name, "q8_0") == 0   ? HM_DTYPE_Q8_0
                      : strcmp(name, "bf16") == 0 ? HM_DTYPE_BF16
                                                  : HM_DTYPE_F32;
    if (strcmp(name, hm_dtype_name(t)) != 0) {
        fprintf(stderr, "bench-generate: dtype '%s': expected f32, bf16 or q8_0\n", name);
        exit(2);
    }
    return t;
}

/* Bytes of an [rows, cols] matrix in t. */
static uint64_t matrix_bytes(enum hm_dtype t, int64_t rows, int64_t cols)
{
    uint64_t n = (uint64_t)rows * (uint64_t)cols;
    return t == HM_DTYPE_Q8_0 ? n / HM_Q8_0_BLOCK * HM_Q8_0_BYTES : n * hm_dtype_size(t);
}

static void bench_decode(const char *preset, int P, int N, int reps, bool profile, enum hm_dtype dt)
{
    struct hm_model_config cfg;
    struct hm_backend *be;
    struct hm_model *m;
    check(hm_config_resolve(preset, &cfg), "config");
    check(hm_backend_cpu_new(&be), "backend");
    check(hm_model_new_infer(&cfg, be, &m), "model");
    check(hm_model_init_weights(m, 1234), "init");
    if (dt != HM_DTYPE_F32)
        check(hm_model_pack_weights(m, dt), "pack");
    struct hm_sampler_opts so = {0.0f, 0, 1.0f, 1.0f, 1};
    struct hm_sampler *s;
    check(hm_sampler_new(cfg.vocab_size, &so, &s), "sampler");
    struct hm_generate_opts go = {N, -1};
    int32_t *prompt = malloc((size_t)P * sizeof *prompt);
    for (int i = 0; i < P; i++)
        prompt[i] = (int32_t)((i * 7919 + 13) % cfg.vocab_size);
    double *tps = malloc((size_t)(reps + 1) * sizeof *tps), ttft = 0;
    for (int r = -1; r < reps; r++) { /* r = -1 warms caches and page tables */
        struct hm_generate_stats gs;
        int got = 0;
        check(hm_generate(m, prompt, P, &go, s, count_token, &got, &gs), "generate");
        if (r >= 0) {
            tps[r] = gs.decode_steps / gs.decode_s;
            ttft += gs.prefill_s / reps;
        }
    }
    qsort(tps, (size_t)reps, sizeof *tps, cmp_double);
    /* Bytes one decode step reads: every weight matrix once (the embedding only as a tied head; a
     * lookup reads one row), norms and biases, and the K/V cache up to the step's position. */
    uint64_t emb = matrix_bytes(dt, cfg.vocab_size, cfg.hidden_size);
    uint64_t weight_bytes = hm_model_weight_bytes(m) - (cfg.tie_embeddings ? 0 : emb);
    double mean_pos = P + (N - 2) / 2.0;
    double kv_bytes = (double)hm_config_kv_cache_bytes(&cfg, 1, 4) * mean_pos;
    printf("decode preset=%s dtype=%s threads=%d prompt=%d new=%d reps=%d tok_s=%.2f min=%.2f max=%.2f "
           "ttft_ms=%.1f weight_bytes=%llu kv_bytes=%.0f\n", preset, hm_dtype_name(dt),
           omp_get_max_threads(), P, N, reps,
           tps[reps / 2], tps[0], tps[reps - 1], ttft * 1e3, (unsigned long long)weight_bytes, kv_bytes);
    if (profile)
        profile_decode(m, P, N);
    free(tps);
    free(prompt);
    hm_sampler_free(s);
    hm_model_free(m);
    hm_backend_free(be);
}

/* ---- one linear layer at batch 1 ---------------------------------------------------------- */

static void bench_matvec(enum hm_dtype dt, size_t mib, int64_t K, int reps)
{
    int64_t N = (int64_t)((uint64_t)mib * 1024 * 1024 / matrix_bytes(dt, 1, K));
    struct hm_backend *be;
    struct hm_block *blk;
    struct hm_ctx *ctx;
    struct hm_graph *g;
    check(hm_backend_cpu_new(&be), "backend");
    check(hm_block_new(false, &blk), "block");
    struct hm_tensor *w = hm_block_add(blk, "w", dt, 2, (int64_t[]){N, K});
    check(hm_block_alloc(blk, be), "weight");
    uint64_t rb = matrix_bytes(dt, 1, K);
#pragma omp parallel
    { /* each thread fills (and so first-touches) the rows it will read */
        float *row = malloc((size_t)K * sizeof *row);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < N; r++) {
            for (int64_t k = 0; k < K; k++)
                row[k] = (float)((r * 31 + k * 17) % 255 - 127) / 4096.0f;
            uint8_t *dst = (uint8_t *)w->data + (uint64_t)r * rb;
            if (dt == HM_DTYPE_Q8_0)
                hm_quantize_q8_0(row, (size_t)K, dst);
            else if (dt == HM_DTYPE_BF16)
                hm_f32_to_bf16_n(row, (uint16_t *)dst, (size_t)K);
            else
                memcpy(dst, row, (size_t)K * sizeof *row);
        }
        free(row);
    }
    check(hm_ctx_new(&ctx), "ctx");
    struct hm_tensor *x = hm_new_input(ctx, HM_DTYPE_F32, 2, (int64_t[]){1, K});
    struct hm_tensor *y = hm_linear(ctx, x, w, NULL);
    check(hm_graph_new(ctx, &g), "graph");
    hm_graph_build_forward(g, y);
    check(hm_graph_plan(g, be), "plan");
    check(hm_tensor_fill(x, 0.5f), "x");
    double *gbs = malloc((size_t)reps * sizeof *gbs);
    check(hm_graph_forward(g), "warm-up");
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        check(hm_graph_forward(g), "matvec");
        gbs[r] = (double)hm_nbytes(w) / (now() - t0) / 1e9;
    }
    qsort(gbs, (size_t)reps, sizeof *gbs, cmp_double);
    printf("matvec dtype=%s threads=%d N=%lld K=%lld mib=%.0f gbs=%.2f min=%.2f max=%.2f\n",
           hm_dtype_name(dt), omp_get_max_threads(), (long long)N, (long long)K,
           (double)hm_nbytes(w) / (1 << 20), gbs[reps / 2], gbs[0], gbs[reps - 1]);
    free(gbs);
    hm_graph_free(g);
    hm_ctx_free(ctx);
    hm_block_free(blk);
    hm_backend_free(be);
}

int main(int argc, char **argv)
{
    const char *env = getenv("HM_THREADS");
    if (env)
        hm_set_threads(atoi(env));
    if (argc >= 2 && strcmp(argv[1], "bandwidth") == 0) {
        bench_bandwidth(argc > 2 ? (size_t)atol(argv[2]) : 512);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "matvec") == 0) {
        bench_matvec(parse_dtype(argv[2]), argc > 3 ? (size_t)atol(argv[3]) : 1024,
                     argc > 4 ? atol(argv[4]) : 2048, argc > 5 ? atoi(argv[5]) : 9);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "decode") == 0) {
        bool profile = false;
        enum hm_dtype dt = HM_DTYPE_F32;
        int pos[3] = {16, 64, 3}, n_pos = 0;
        for (int i = 3; i < argc; i++) {
            if (strcmp(argv[i], "--profile") == 0)
                profile = true;
            else if (strcmp(argv[i], "--dtype") == 0 && i + 1 < argc)
                dt = parse_dtype(argv[++i]);
            else if (n_pos < 3)
                pos[n_pos++] = atoi(argv[i]);
        }
        bench_decode(argv[2], pos[0], pos[1], pos[2], profile, dt);
        return 0;
    }
    fprintf(stderr, "usage: bench-generate bandwidth [MiB] | decode PRESET [P N REPS] [--profile] "
                    "[--dtype f32|bf16|q8_0] | matvec DTYPE [MiB K REPS]\n");
    return 2;
}
