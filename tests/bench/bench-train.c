/*
 * bench-train.c - CPU training-step throughput of the real model (run through scripts/bench/train,
 * which puts PyTorch next to it in the same run).
 *
 *   bench-train PRESET B T V STEPS [WARMUP] [--dtype f32|bf16] [--profile]
 * Random tokens, dropout 0, then per step exactly what the trainer does: zero the gradient block,
 * set ids and targets, forward, backward, AdamW with global-norm clipping at 1.0. Each step is
 * timed on its own after WARMUP (default 2) untimed steps; medians are reported. The sgemm peak
 * is a 2048^3 square sgemm through OpenBLAS at the same thread count, best of 5 before and 5
 * after the training steps (on a shared machine the load changes; the larger is used, so the MFU
 * errs low). Peak RSS is read before the second sgemm. Prints one line:
 *   RESULT preset=.. dtype=.. B=.. T=.. V=.. threads=.. tok_s=.. step_ms=.. fwd_ms=.. bwd_ms=..
 *          opt_ms=.. gflops=.. peak_gflops=.. peak_before=.. peak_after=.. mfu=.. peak_rss=..
 *          loss=..
 * where gflops = 3 * hm_config_flops_per_token(T) * tok/s and mfu = gflops / peak_gflops.
 * --profile then runs one more step with the graph profiler and prints the per-op times.
 * Threads: HM_THREADS, else OMP_NUM_THREADS.
 */
#include "hermes/backend.h"
#include "hermes/model.h"
#include "hermes/optim.h"

#include "bench-util.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double median(double *x, int n)
{
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* GFLOP/s of a square N^3 sgemm, best of `reps` after one warm-up call. */
static double sgemm_peak(int N, int reps)
{
    float *a = malloc(sizeof(float) * (size_t)N * N), *b = malloc(sizeof(float) * (size_t)N * N);
    float *c = malloc(sizeof(float) * (size_t)N * N);
    for (size_t i = 0; i < (size_t)N * N; i++) {
        a[i] = (float)(i % 7) * 0.1f;
        b[i] = (float)(i % 5) * 0.1f;
        c[i] = 0.0f;
    }
    double best = 0.0;
    for (int r = 0; r <= reps; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a, N, b, N, 0.0f, c,
                    N);
        double g = 2.0 * N * N * (double)N / (now() - t0) * 1e-9;
        if (r > 0 && g > best)
            best = g;
    }
    free(a), free(b), free(c);
    return best;
}

static void print_profile(struct hm_graph *g, double step_s)
{
    fprintf(stderr, "%-20s %10s %10s %7s\n", "op", "fwd_ms", "bwd_ms", "share");
    for (int op = 0; op < HM_OP_COUNT; op++) {
        double f = hm_graph_profile(g, false)[op].seconds;
        double b = hm_graph_profile(g, true)[op].seconds;
        if (f + b > 0)
            fprintf(stderr, "%-20s %10.2f %10.2f %6.1f%%\n", hm_op_name((enum hm_op)op), 1e3 * f,
                    1e3 * b, 100.0 * (f + b) / step_s);
    }
}

int main(int argc, char **argv)
{
    static const char usage[] =
        "usage: bench-train PRESET B T V STEPS [WARMUP] [--dtype f32|bf16] [--profile]\n";
    bool profile = false;
    enum hm_dtype dtype = HM_DTYPE_F32;
    int n_args = 0; /* the positional ones, moved to the front of argv */
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--profile") == 0) {
            profile = true;
        } else if (strcmp(argv[i], "--dtype") == 0 && i + 1 < argc) {
            const char *dt = argv[++i];
            if (strcmp(dt, "f32") != 0 && strcmp(dt, "bf16") != 0) {
                fprintf(stderr, "bench-train: --dtype: expected f32 or bf16, got '%s'\n", dt);
                return 2;
            }
            dtype = strcmp(dt, "bf16") == 0 ? HM_DTYPE_BF16 : HM_DTYPE_F32;
        } else {
            argv[n_args++] = argv[i];
        }
    }
    if (n_args < 6) {
        fputs(usage, stderr);
        return 2;
    }
    const char *env = getenv("HM_THREADS");
    if (env)
        hm_set_threads(atoi(env));
    struct hm_model_config cfg;
    check(hm_config_resolve(argv[1], &cfg), "config");
    int B = atoi(argv[2]), T = atoi(argv[3]), steps = atoi(argv[5]);
    int warm = n_args > 6 ? atoi(argv[6]) : 2;
    cfg.vocab_size = atoi(argv[4]);
    cfg.dropout = 0.0f;
    if (T > cfg.max_seq_len)
        cfg.max_seq_len = T;
    double peak_before = sgemm_peak(2048, 5);

    struct hm_backend *be;
    check(hm_backend_cpu_new(&be), "backend");
    struct bench_train b;
    check(bench_train_setup(&cfg, be, dtype, B, T, &b), "setup");
    size_t n = b.n;
    double *t_step = calloc((size_t)steps, sizeof(double));
    double *t_fwd = calloc((size_t)steps, sizeof(double));
    double *t_bwd = calloc((size_t)steps, sizeof(double));
    double *t_opt = calloc((size_t)steps, sizeof(double));
    float loss = 0.0f;
    for (int i = 0; i < warm + steps + (profile ? 1 : 0); i++) {
        bool prof = i == warm + steps;
        if (prof) {
            hm_graph_set_profiling(b.tg.graph, true);
            hm_graph_profile_reset(b.tg.graph);
        }
        double t0 = now();
        check(hm_buffer_zero(hm_block_grads(hm_model_params(b.m))), "zero");
        check(hm_tensor_set(b.tg.ids, b.ids, n * 4), "ids");
        check(hm_tensor_set(b.tg.targets, b.tgt, n * 4), "targets");
        double t1 = now();
        check(hm_graph_forward(b.tg.graph), "forward");
        double t2 = now();
        check(hm_graph_backward(b.tg.graph), "backward");
        double t3 = now();
        double norm;
        check(hm_optimizer_step(b.opt, 1e-4f, &norm), "adamw");
        double t4 = now();
        if (prof) {
            fprintf(stderr,
                    "profile: zero+set %.2f ms, forward %.2f ms, backward %.2f ms, optimizer %.2f ms\n",
                    1e3 * (t1 - t0), 1e3 * (t2 - t1), 1e3 * (t3 - t2), 1e3 * (t4 - t3));
            print_profile(b.tg.graph, t4 - t0);
        } else if (i >= warm) {
            int k = i - warm;
            t_step[k] = t4 - t0, t_fwd[k] = t2 - t1, t_bwd[k] = t3 - t2;
            t_opt[k] = t4 - t3 + t1 - t0; /* zeroing and input copies count as optimizer work */
        }
    }
    check(hm_tensor_get(b.tg.loss, &loss, sizeof loss), "loss");
    double step = median(t_step, steps), tok_s = (double)n / step;
    double gflops = 3.0 * hm_config_flops_per_token(&cfg, T) * tok_s * 1e-9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double peak_after = sgemm_peak(2048, 5);
    double peak = peak_after > peak_before ? peak_after : peak_before;
    printf("RESULT preset=%s dtype=%s B=%d T=%d V=%d threads=%d tok_s=%.1f step_ms=%.1f "
           "fwd_ms=%.1f bwd_ms=%.1f opt_ms=%.1f gflops=%.1f peak_gflops=%.1f peak_before=%.1f "
           "peak_after=%.1f mfu=%.3f peak_rss=%ld loss=%.4f\n",
           argv[1], hm_dtype_name(dtype), B, T, cfg.vocab_size, hm_get_threads(), tok_s, 1e3 * step,
           1e3 * median(t_fwd, steps), 1e3 * median(t_bwd, steps), 1e3 * median(t_opt, steps),
           gflops, peak, peak_before, peak_after, gflops / peak, ru.ru_maxrss * 1024L, loss);
    bench_train_free(&b);
    hm_backend_free(be);
    free(t_step), free(t_fwd), free(t_bwd), free(t_opt);
    return 0;
}
