/*
 * bench-generate.c - batch-1 decode speed on the CPU (run through scripts/bench/generate).
 *   bench-generate bandwidth [MiB]                  memory bandwidth: a read-only sum and a STREAM
 *                                                   triad over arrays of MiB each (default 512)
 *   bench-generate decode PRESET [P N REPS] [--profile]
 *                                                   random-init PRESET (hm_model_new_infer), then
 *                                                   hm_generate greedy: P prompt tokens, N new ones;
 *                                                   median decode tok/s over REPS runs, and the bytes
 *                                                   one decode step must read (weights + KV cache)
 * Output is one `key=value ...` line per measurement so the script can parse it. Threads come from
 * OMP_NUM_THREADS (hm_set_threads when HM_THREADS is set).
 */
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

static void bench_decode(const char *preset, int P, int N, int reps, bool profile)
{
    struct hm_model_config cfg;
    struct hm_backend *be;
    struct hm_model *m;
    check(hm_config_resolve(preset, &cfg), "config");
    check(hm_backend_cpu_new(&be), "backend");
    check(hm_model_new_infer(&cfg, be, &m), "model");
    check(hm_model_init_weights(m, 1234), "init");
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
    uint64_t params = hm_model_param_count(m);
    uint64_t emb = (uint64_t)cfg.vocab_size * (uint64_t)cfg.hidden_size;
    uint64_t weight_bytes = 4 * (cfg.tie_embeddings ? params : params - emb);
    double mean_pos = P + (N - 2) / 2.0;
    double kv_bytes = (double)hm_config_kv_cache_bytes(&cfg, 1, 4) * mean_pos;
    printf("decode preset=%s threads=%d prompt=%d new=%d reps=%d tok_s=%.2f min=%.2f max=%.2f "
           "ttft_ms=%.1f weight_bytes=%llu kv_bytes=%.0f\n", preset, omp_get_max_threads(), P, N, reps,
           tps[reps / 2], tps[0], tps[reps - 1], ttft * 1e3, (unsigned long long)weight_bytes, kv_bytes);
    if (profile)
        profile_decode(m, P, N);
    free(tps);
    free(prompt);
    hm_sampler_free(s);
    hm_model_free(m);
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
    if (argc >= 3 && strcmp(argv[1], "decode") == 0) {
        bool profile = strcmp(argv[argc - 1], "--profile") == 0;
        int n = argc - (profile ? 1 : 0);
        bench_decode(argv[2], n > 3 ? atoi(argv[3]) : 16, n > 4 ? atoi(argv[4]) : 64,
                     n > 5 ? atoi(argv[5]) : 3, profile);
        return 0;
    }
    fprintf(stderr, "usage: bench-generate bandwidth [MiB] | decode PRESET [P N REPS] [--profile]\n");
    return 2;
}
