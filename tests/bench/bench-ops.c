/*
 * bench-ops.c - CPU benchmark of the tensor core (run through scripts/bench/ops).
 *   bench-ops matmul PRESET [B T]   matmul forward/backward GFLOP/s at the preset's linear shapes,
 *                                   next to raw sgemm on the same shapes and a square sgemm peak
 *   bench-ops step PRESET [B T V]   one training step of a stand-in transformer with the preset's
 *                                   dimensions (RMSNorm, RoPE, fused attention, GELU/SwiGLU MLP,
 *                                   tied head, cross-entropy), timed per op with the graph profiler
 * The model here is a stand-in until src/model lands; it uses the same public API.
 */
#include "hermes/backend.h"
#include "hermes/config.h"
#include "hermes/tensor.h"

#include "bench-util.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void fill_random(struct hm_tensor *t, float scale, unsigned seed)
{
    int64_t n = hm_nelements(t);
    float *h = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        h[i] = scale * ((float)(seed >> 8) / 16777216.0f * 2.0f - 1.0f);
    }
    check(hm_tensor_set(t, h, hm_nbytes(t)), "fill");
    free(h);
}

/* ---- matmul ---------------------------------------------------------------------------------- */

static double raw_sgemm(int M, int N, int K, bool tb, int reps)
{
    float *a = calloc((size_t)M * K, 4), *b = calloc((size_t)N * K, 4), *c = calloc((size_t)M * N, 4);
    for (size_t i = 0; i < (size_t)M * K; i++)
        a[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)N * K; i++)
        b[i] = (float)(i % 5) * 0.1f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, a, K, b,
                tb ? K : N, 0.0f, c, N);
    double t0 = now();
    for (int r = 0; r < reps; r++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, a, K,
                    b, tb ? K : N, 0.0f, c, N);
    double dt = (now() - t0) / reps;
    free(a), free(b), free(c);
    return 2.0 * M * N * K / dt / 1e9;
}

static void bench_linear(struct hm_backend *be, const char *name, int64_t rows, int64_t in,
                         int64_t out, int reps)
{
    struct hm_block *p;
    struct hm_ctx *ctx;
    struct hm_graph *g;
    check(hm_block_new(true, &p), "block");
    struct hm_tensor *x = hm_block_add(p, "x", HM_DTYPE_F32, 2, (int64_t[]){rows, in});
    struct hm_tensor *w = hm_block_add(p, "w", HM_DTYPE_F32, 2, (int64_t[]){out, in});
    check(hm_block_alloc(p, be), "alloc");
    fill_random(x, 1.0f, 1);
    fill_random(w, 0.02f, 2);
    check(hm_ctx_new(&ctx), "ctx");
    struct hm_tensor *y = hm_linear(ctx, x, w, NULL);
    check(hm_graph_new(ctx, &g), "graph");
    hm_graph_build_forward(g, y);
    check(hm_graph_build_backward(g, y), "backward");
    check(hm_graph_plan(g, be), "plan");
    check(hm_graph_forward(g), "forward");
    check(hm_graph_backward(g), "backward");
    hm_graph_set_profiling(g, true);
    for (int r = 0; r < reps; r++) {
        check(hm_graph_forward(g), "forward");
        check(hm_graph_backward(g), "backward");
    }
    double flops = 2.0 * rows * in * out;
    double tf = hm_graph_profile(g, false)[HM_OP_MATMUL].seconds / reps;
    double tb = hm_graph_profile(g, true)[HM_OP_MATMUL].seconds / reps;
    double raw = raw_sgemm((int)rows, (int)out, (int)in, true, reps);
    printf("  %-10s %6lld x %5lld -> %5lld   %8.1f   %8.1f   %8.1f\n", name, (long long)rows,
           (long long)in, (long long)out, raw, flops / tf / 1e9, 2 * flops / tb / 1e9);
    hm_graph_free(g);
    hm_ctx_free(ctx);
    hm_block_free(p);
}

static void bench_matmul(struct hm_backend *be, const struct hm_model_config *c, int B, int T)
{
    int64_t rows = (int64_t)B * T, C = c->hidden_size, FF = c->intermediate_size;
    int64_t KV = (int64_t)c->num_kv_heads * (C / c->num_heads);
    double peak = raw_sgemm(2048, 2048, 2048, false, 3);
    printf("matmul, %s, B=%d T=%d, %d threads: raw sgemm peak (2048^3) %.1f GFLOP/s\n", c->name, B, T,
           hm_get_threads(), peak);
    printf("  %-10s %-25s %8s   %8s   %8s  (GFLOP/s)\n", "linear", "rows x in -> out", "sgemm",
           "forward", "backward");
    int reps = rows * C * C < 200000000 ? 5 : 2;
    bench_linear(be, "attn q/o", rows, C, C, reps);
    if (KV != C)
        bench_linear(be, "attn k/v", rows, C, KV, reps);
    bench_linear(be, "mlp up", rows, C, FF, reps);
    bench_linear(be, "mlp down", rows, FF, C, reps);
    bench_linear(be, "lm head", rows, C, c->vocab_size, 1);
}

/* ---- one training step ------------------------------------------------------------------------- */

static struct hm_tensor *P(struct hm_block *p, const char *name, int nd, int64_t a, int64_t b)
{
    return hm_block_add(p, name, HM_DTYPE_F32, nd, (int64_t[]){a, b});
}

static void bench_step(struct hm_backend *be, const struct hm_model_config *c, int B, int T, int steps)
{
    int64_t C = c->hidden_size, NH = c->num_heads, NKV = c->num_kv_heads, HD = C / NH;
    int64_t FF = c->intermediate_size, V = c->vocab_size, L = c->num_layers;
    bool swiglu = c->activation == HM_ACT_SWIGLU, bias = c->use_bias;
    struct hm_block *p;
    check(hm_block_new(true, &p), "block");
    struct hm_tensor *wte = P(p, "wte", 2, V, C);
    struct hm_tensor **w = calloc((size_t)L * 16, sizeof(*w));
    for (int64_t l = 0; l < L; l++) {
        struct hm_tensor **lw = w + l * 16;
        lw[0] = P(p, "wq", 2, C, C), lw[1] = P(p, "wk", 2, NKV * HD, C), lw[2] = P(p, "wv", 2, NKV * HD, C);
        lw[3] = P(p, "wo", 2, C, C), lw[4] = P(p, "w1", 2, FF, C), lw[5] = P(p, "w2", 2, C, FF);
        lw[6] = swiglu ? P(p, "w3", 2, FF, C) : NULL;
    }
    for (int64_t l = 0; l < L; l++) {
        struct hm_tensor **lw = w + l * 16;
        lw[7] = P(p, "n1", 1, C, 1), lw[8] = P(p, "n2", 1, C, 1);
        if (bias) {
            lw[9] = P(p, "bq", 1, C, 1), lw[10] = P(p, "bk", 1, NKV * HD, 1);
            lw[11] = P(p, "bv", 1, NKV * HD, 1), lw[12] = P(p, "bo", 1, C, 1);
            lw[13] = P(p, "b1", 1, FF, 1), lw[14] = P(p, "b2", 1, C, 1);
        }
    }
    struct hm_tensor *nf = P(p, "nf", 1, C, 1);
    check(hm_block_alloc(p, be), "params");
    for (int i = 0; i < hm_block_n_tensors(p); i++) {
        struct hm_tensor *t = hm_block_tensor(p, i);
        if (t->n_dims == 2)
            fill_random(t, 0.02f, (unsigned)i + 1);
        else
            check(hm_tensor_fill(t, t->name[0] == 'n' ? 1.0f : 0.0f), "fill");
    }

    struct hm_ctx *ctx;
    check(hm_ctx_new(&ctx), "ctx");
    struct hm_tensor *ids = hm_new_input(ctx, HM_DTYPE_I32, 2, (int64_t[]){B, T});
    struct hm_tensor *tgt = hm_new_input(ctx, HM_DTYPE_I32, 2, (int64_t[]){B, T});
    float pd = c->dropout;
    struct hm_tensor *x = hm_dropout(ctx, hm_embedding(ctx, wte, ids), pd, 0);
    for (int64_t l = 0; l < L; l++) {
        struct hm_tensor **lw = w + l * 16;
        struct hm_tensor *h = hm_rms_norm(ctx, x, lw[7], c->layer_norm_eps);
        struct hm_tensor *q = hm_linear(ctx, h, lw[0], lw[9]), *k = hm_linear(ctx, h, lw[1], lw[10]);
        struct hm_tensor *v = hm_linear(ctx, h, lw[2], lw[11]);
        q = hm_rope(ctx, hm_reshape(ctx, q, 4, (int64_t[]){B, T, NH, HD}), c->rope_theta);
        k = hm_rope(ctx, hm_reshape(ctx, k, 4, (int64_t[]){B, T, NKV, HD}), c->rope_theta);
        v = hm_reshape(ctx, v, 4, (int64_t[]){B, T, NKV, HD});
        struct hm_tensor *a = hm_reshape(ctx, hm_attention(ctx, q, k, v), 3, (int64_t[]){B, T, C});
        x = hm_add(ctx, x, hm_dropout(ctx, hm_linear(ctx, a, lw[3], lw[12]), pd, (int32_t)(16 * l + 1)));
        h = hm_rms_norm(ctx, x, lw[8], c->layer_norm_eps);
        struct hm_tensor *f = swiglu ? hm_swiglu(ctx, hm_linear(ctx, h, lw[4], NULL), hm_linear(ctx, h, lw[6], NULL))
                                     : hm_gelu(ctx, hm_linear(ctx, h, lw[4], lw[13]));
        x = hm_add(ctx, x, hm_dropout(ctx, hm_linear(ctx, f, lw[5], lw[14]), pd, (int32_t)(16 * l + 2)));
    }
    struct hm_tensor *logits = hm_linear(ctx, hm_rms_norm(ctx, x, nf, c->layer_norm_eps), wte, NULL);
    struct hm_tensor *loss = hm_cross_entropy(ctx, logits, tgt, HM_IGNORE_INDEX);
    struct hm_graph *g;
    check(hm_graph_new(ctx, &g), "graph");
    hm_graph_build_forward(g, loss);
    check(hm_graph_build_backward(g, loss), "backward");
    check(hm_graph_plan(g, be), "plan");

    int32_t *hi = malloc(sizeof(int32_t) * (size_t)(B * T));
    for (int64_t i = 0; i < (int64_t)B * T; i++)
        hi[i] = (int32_t)((i * 2654435761u) % (uint64_t)V);
    check(hm_tensor_set(ids, hi, hm_nbytes(ids)), "ids");
    check(hm_tensor_set(tgt, hi, hm_nbytes(tgt)), "targets");
    size_t n = hm_block_nbytes(p) / 4;
    struct hm_buffer *m, *vv;
    check(hm_buffer_new(be, n * 4, &m), "m");
    check(hm_buffer_new(be, n * 4, &vv), "v");
    hm_buffer_zero(m);
    hm_buffer_zero(vv);
    struct hm_adamw_params hp = {.lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f};

    printf("step, %s: B=%d T=%d C=%lld L=%lld NH=%lld NKV=%lld I=%lld V=%lld, %s, %d threads\n", c->name, B, T,
           (long long)C, (long long)L, (long long)NH, (long long)NKV, (long long)FF, (long long)V,
           swiglu ? "swiglu" : "gelu", hm_get_threads());
    printf("  parameters %.2f M, planned activations+gradients+workspace %.1f MiB\n", (double)n / 1e6,
           (double)hm_graph_planned_bytes(g) / 1048576.0);
    double t_opt = 0, t_step = 0;
    float lv = 0;
    for (int s = 0; s <= steps; s++) { /* step 0 warms up */
        if (s == 1) {
            hm_graph_profile_reset(g);
            hm_graph_set_profiling(g, true);
        }
        double t0 = now();
        hm_graph_runtime(g)->step = (uint64_t)s;
        check(hm_buffer_zero(hm_block_grads(p)), "zero");
        check(hm_graph_forward(g), "forward");
        check(hm_graph_backward(g), "backward");
        check(hm_tensor_get(loss, &lv, 4), "loss");
        double t1 = now();
        hp.t = s + 1;
        check(hm_backend_adamw(hm_block_data(p), hm_block_grads(p), m, vv, 0, n, &hp), "adamw");
        double t2 = now();
        if (s >= 1) {
            t_opt += t2 - t1;
            t_step += t2 - t0;
        }
    }
    const struct hm_op_profile *pf = hm_graph_profile(g, false), *pb = hm_graph_profile(g, true);
    double total = 0;
    for (int op = 0; op < HM_OP_COUNT; op++)
        total += pf[op].seconds + pb[op].seconds;
    printf("  %-20s %10s %10s %7s\n", "op", "fwd ms", "bwd ms", "share");
    for (int op = 0; op < HM_OP_COUNT; op++) {
        double f = pf[op].seconds / steps * 1e3, b = pb[op].seconds / steps * 1e3;
        if (f + b < 1e-3)
            continue;
        printf("  %-20s %10.2f %10.2f %6.1f%%\n", hm_op_name(op), f, b,
               100.0 * (f + b) / (total / steps * 1e3));
    }
    printf("  %-20s %10.2f ms (graph %.2f ms, adamw %.2f ms), %.0f tokens/s, loss %.4f\n", "step",
           t_step / steps * 1e3, total / steps * 1e3, t_opt / steps * 1e3, (double)B * T * steps / t_step, lv);
    free(hi);
    free(w);
    hm_buffer_free(m);
    hm_buffer_free(vv);
    hm_graph_free(g);
    hm_ctx_free(ctx);
    hm_block_free(p);
}

static int arg_int(const char *s, const char *what)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 1 || v > 1000000) {
        fprintf(stderr, "bench-ops: %s: expected a positive integer, got '%s'\n", what, s);
        exit(2);
    }
    return (int)v;
}

int main(int argc, char **argv)
{
    if (argc < 3 || (strcmp(argv[1], "matmul") && strcmp(argv[1], "step"))) {
        fprintf(stderr, "usage: bench-ops matmul|step PRESET [B [T [V [STEPS]]]]\n");
        return 2;
    }
    struct hm_model_config cfg;
    check(hm_config_resolve(argv[2], &cfg), "config");
    int B = argc > 3 ? arg_int(argv[3], "B") : 4;
    int T = argc > 4 ? arg_int(argv[4], "T") : cfg.max_seq_len;
    if (argc > 5)
        cfg.vocab_size = arg_int(argv[5], "V");
    int steps = argc > 6 ? arg_int(argv[6], "STEPS") : 2;
    if (getenv("HM_THREADS"))
        hm_set_threads(arg_int(getenv("HM_THREADS"), "HM_THREADS"));
    struct hm_backend *be;
    check(hm_backend_cpu_new(&be), "backend");
    if (!strcmp(argv[1], "matmul"))
        bench_matmul(be, &cfg, B, T);
    else
        bench_step(be, &cfg, B, T, steps);
    hm_backend_free(be);
    return 0;
}
