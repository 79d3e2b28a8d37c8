/*
 * bench-add-norm.c - the residual adds and norms of a transformer trunk alone, built with hm_add +
 * hm_rms_norm and with the fused hm_add_rms_norm, run alternately in one process so both see the
 * same machine: L steps of x = x + 0.5 * h, h = rms_norm(x), forward + backward.
 *
 *   bench-add-norm [ROWS [C [L [REPS]]]]      defaults 8192 128 8 40 (tiny's trunk at B=32, T=256)
 * Prints, per variant, the process CPU time of one forward + backward (median and minimum over
 * REPS; CPU time is disturbed less than wall time by other jobs on a shared machine), the node
 * counts and the planned workspace. Threads: OMP_NUM_THREADS.
 */
#include "hermes/backend.h"
#include "hermes/tensor.h"

#include "bench-util.h"

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static struct hm_graph *build(struct hm_backend *be, struct hm_block *blk, int L, bool fused, struct hm_ctx **ctx)
{
    check(hm_ctx_new(ctx), "context");
    struct hm_tensor *x = hm_scale(*ctx, hm_block_tensor(blk, 0), 1.0f);
    struct hm_tensor *h = hm_rms_norm(*ctx, x, hm_block_tensor(blk, 1), 1e-5f);
    for (int i = 0; i < L; i++) {
        struct hm_tensor *o = hm_scale(*ctx, h, 0.5f), *w = hm_block_tensor(blk, 2 + i);
        if (fused) {
            h = hm_add_rms_norm(*ctx, x, o, w, 1e-5f, &x);
        } else {
            x = hm_add(*ctx, x, o);
            h = hm_rms_norm(*ctx, x, w, 1e-5f);
        }
    }
    struct hm_graph *g;
    check(hm_graph_new(*ctx, &g), "graph");
    check(hm_graph_build_backward(g, h), "backward");
    check(hm_graph_plan(g, be), "plan");
    return g;
}

int main(int argc, char **argv)
{
    int64_t N = argc > 1 ? atoll(argv[1]) : 8192, C = argc > 2 ? atoll(argv[2]) : 128;
    int L = argc > 3 ? atoi(argv[3]) : 8, reps = argc > 4 ? atoi(argv[4]) : 40;
    if (N < 1 || C < 1 || L < 1 || reps < 1) {
        fprintf(stderr, "usage: bench-add-norm [ROWS [C [L [REPS]]]]\n");
        return 2;
    }
    struct hm_backend *be;
    check(hm_backend_cpu_new(&be), "cpu backend");
    struct hm_block *blk;
    check(hm_block_new(true, &blk), "block");
    hm_block_add(blk, "x", HM_DTYPE_F32, 2, (int64_t[]){N, C});
    for (int i = 0; i <= L; i++)
        hm_block_add(blk, "w", HM_DTYPE_F32, 1, (int64_t[]){C});
    check(hm_block_alloc(blk, be), "block storage");
    size_t n = hm_block_nbytes(blk) / 4;
    float *host = malloc(n * 4);
    double *t = malloc(sizeof(double) * 2 * (size_t)reps);
    for (size_t i = 0; i < n; i++)
        host[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    check(hm_buffer_set(hm_block_data(blk), 0, host, n * 4), "weights");
    struct hm_ctx *ctx[2];
    struct hm_graph *g[2] = {build(be, blk, L, false, &ctx[0]), build(be, blk, L, true, &ctx[1])};
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < 2; k++) {
            check(hm_buffer_zero(hm_block_grads(blk)), "zero");
            double t0 = cpu_now();
            check(hm_graph_forward(g[k]), "forward");
            check(hm_graph_backward(g[k]), "backward");
            t[k * reps + r] = cpu_now() - t0;
        }
    printf("rows %lld, C %lld, %d steps, %d threads\n", (long long)N, (long long)C, L, hm_get_threads());
    for (int k = 0; k < 2; k++) {
        qsort(t + k * reps, (size_t)reps, sizeof(double), cmp_double);
        printf("  %-15s fwd+bwd cpu %8.2f ms median %8.2f ms min, nodes %d + %d, workspace %.1f MiB\n",
               k ? "add_rms_norm" : "add + rms_norm", t[k * reps + reps / 2] * 1e3, t[k * reps] * 1e3,
               hm_graph_n_nodes(g[k], false), hm_graph_n_nodes(g[k], true),
               (double)hm_graph_planned_bytes(g[k]) / 1048576.0);
        hm_graph_free(g[k]);
        hm_ctx_free(ctx[k]);
    }
    free(t);
    free(host);
    hm_block_free(blk);
    hm_backend_free(be);
    return 0;
}
