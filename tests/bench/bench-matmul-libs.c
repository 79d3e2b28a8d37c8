/*
 * bench-matmul-libs.c - f32 matmuls through OpenBLAS's sgemm and through oneDNN, side by side, at
 * the linear layers' training shapes of a preset (forward x W^T, input gradient dY W, weight
 * gradient dY^T X), through the backend's own MATMUL kernel (hm_cpu_set_f32_matmul picks the
 * library). Prints GFLOP/s of each (best of REPS after a warm-up call), the ratio, and which one
 * the auto rule picks (hm_cpu_f32_onednn_rule), so a rule that picks the slower library shows.
 * Run through scripts/bench/matmul-libs.
 *
 *   bench-matmul-libs PRESET TOKENS [VOCAB] [REPS]
 */
#include "backend/cpu/cpu-impl.h"
#include "hermes/backend.h"
#include "hermes/model.h"

#include "bench-util.h"

struct shape {
    const char *what;
    int64_t M, N, K;
    bool ta, tb;
};

static double run(struct hm_backend *be, const struct shape *s, float *a, float *b, float *c, int reps)
{
    struct hm_ctx *ctx;
    check(hm_ctx_new(&ctx), "context");
    struct hm_tensor *ta = hm_new_input(ctx, HM_DTYPE_F32, 2,
                                        (int64_t[]){s->ta ? s->K : s->M, s->ta ? s->M : s->K});
    struct hm_tensor *tb = hm_new_input(ctx, HM_DTYPE_F32, 2,
                                        (int64_t[]){s->tb ? s->N : s->K, s->tb ? s->K : s->N});
    struct hm_tensor *y = hm_matmul_ex(ctx, ta, tb, NULL, s->ta, s->tb, 1.0f);
    ta->data = a, tb->data = b, y->data = c;
    struct hm_exec ex = {0};
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t = now();
        check(be->iface->kernels[HM_OP_MATMUL](&ex, y), "matmul");
        t = now() - t;
        if (r > 0 && t < best)
            best = t;
    }
    hm_ctx_free(ctx);
    return 2.0 * (double)s->M * (double)s->N * (double)s->K / best * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench-matmul-libs PRESET TOKENS [VOCAB] [REPS]\n");
        return 2;
    }
    struct hm_model_config cfg;
    check(hm_config_preset(argv[1], &cfg), "preset");
    int64_t Nt = atoll(argv[2]);
    if (argc > 3)
        cfg.vocab_size = atoi(argv[3]);
    int reps = argc > 4 ? atoi(argv[4]) : 5;
    if (!hm_cpu_have_onednn()) {
        fprintf(stderr, "bench-matmul-libs: built without oneDNN: nothing to compare\n");
        return 1;
    }
    int64_t C = cfg.hidden_size, I = cfg.intermediate_size, V = cfg.vocab_size;
    int64_t KV = (int64_t)cfg.num_kv_heads * hm_config_head_dim(&cfg);
    struct {
        const char *name;
        int64_t in, out;
    } lin[] = {{"q/o", C, C}, {"k/v", C, KV}, {"up", C, I}, {"down", I, C}, {"head", C, V}};
    struct hm_backend *be;
    check(hm_backend_cpu_new(&be), "cpu backend");
    printf("%s, %lld tokens, %d threads: f32 GFLOP/s, best of %d\n", argv[1], (long long)Nt,
           omp_get_max_threads(), reps);
    printf("%-6s %-7s %6s %6s %6s %2s %2s %9s %9s %7s %8s\n", "layer", "product", "M", "N", "K", "ta",
           "tb", "openblas", "onednn", "ratio", "rule");
    int wrong = 0;
    for (size_t i = 0; i < sizeof lin / sizeof lin[0]; i++) {
        if (i == 1 && KV == C)
            continue; /* k/v have q's shape */
        struct shape sh[3] = {{"fwd", Nt, lin[i].out, lin[i].in, false, true},
                              {"dX", Nt, lin[i].in, lin[i].out, false, false},
                              {"dW", lin[i].out, lin[i].in, Nt, true, false}};
        for (int j = 0; j < 3; j++) {
            const struct shape *s = &sh[j];
            float *a = malloc(sizeof(float) * (size_t)(s->M * s->K));
            float *b = malloc(sizeof(float) * (size_t)(s->K * s->N));
            float *c = malloc(sizeof(float) * (size_t)(s->M * s->N));
            for (int64_t k = 0; k < s->M * s->K; k++)
                a[k] = (float)(k % 7) * 0.01f;
            for (int64_t k = 0; k < s->K * s->N; k++)
                b[k] = (float)(k % 5) * 0.01f;
            hm_cpu_set_f32_matmul(HM_CPU_F32_MATMUL_OPENBLAS);
            double g0 = run(be, s, a, b, c, reps);
            hm_cpu_set_f32_matmul(HM_CPU_F32_MATMUL_ONEDNN);
            double g1 = run(be, s, a, b, c, reps);
            hm_cpu_set_f32_matmul(HM_CPU_F32_MATMUL_AUTO);
            bool rule = hm_cpu_f32_onednn_rule(s->M, s->N, s->K);
            double picked = rule ? g1 : g0, other = rule ? g0 : g1;
            bool bad = picked < 0.9 * other;
            wrong += bad;
            printf("%-6s %-7s %6lld %6lld %6lld %2d %2d %9.1f %9.1f %6.2fx %8s%s\n", lin[i].name, s->what,
                   (long long)s->M, (long long)s->N, (long long)s->K, s->ta, s->tb, g0, g1, g1 / g0,
                   rule ? "onednn" : "openblas", bad ? "  <- the other is >10% faster" : "");
            free(a), free(b), free(c);
        }
    }
    printf("rule picks the slower library by >10%% on %d shapes\n", wrong);
    hm_backend_free(be);
    return 0;
}
