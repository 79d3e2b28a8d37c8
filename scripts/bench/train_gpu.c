/*
 * train_gpu.c - training-step throughput of hermes-llm on the CUDA backend (scripts/bench/train_gpu
 * builds and runs it; it is not part of the library build).
 *
 *   train_gpu PRESET B T V STEPS [DEVICE [DTYPE]]
 * Random tokens, full forward + backward + AdamW (the trainer's step), in DTYPE (bf16 mixed
 * precision by default, or f32). Prints one line:
 *   RESULT preset=.. B=.. T=.. V=.. tok_s=.. step_ms=.. mfu=.. hermes_bytes=..
 * where mfu = 3 * flops_per_token(T) * tok/s / 989e12 (H100 SXM dense bf16 peak) and hermes_bytes
 * counts what the library allocated (parameters, bf16 copies, gradients, AdamW state, planned
 * activations and workspace).
 * Exit 3 when the batch does not fit (HM_ERR_NOMEM), 1 on other errors.
 */
#include "hermes/backend.h"
#include "hermes/model.h"
#include "hermes/optim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(enum hm_status st, const char *what)
{
    fprintf(stderr, "train_gpu: %s: %s\n", what, hm_last_error());
    exit(st == HM_ERR_NOMEM ? 3 : 1);
}

#define CHECK(expr, what)                                                                          \
    do {                                                                                           \
        enum hm_status st_ = (expr);                                                               \
        if (st_ != HM_OK)                                                                          \
            die(st_, what);                                                                        \
    } while (0)

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: train_gpu PRESET B T V STEPS [DEVICE [f32|bf16]]\n");
        return 2;
    }
    struct hm_model_config cfg;
    CHECK(hm_config_resolve(argv[1], &cfg), "config");
    int B = atoi(argv[2]), T = atoi(argv[3]), steps = atoi(argv[5]);
    cfg.vocab_size = atoi(argv[4]);
    if (T > cfg.max_seq_len)
        cfg.max_seq_len = T;
    struct hm_backend *be;
    CHECK(hm_backend_new_from_string(argc > 6 ? argv[6] : "cuda", &be), "backend");
    struct hm_model *m;
    CHECK(hm_model_new(&cfg, be, &m), "model");
    CHECK(hm_model_init_weights(m, 1), "init");
    bool bf16 = argc <= 7 || strcmp(argv[7], "f32") != 0;
    CHECK(hm_model_set_dtype(m, bf16 ? HM_DTYPE_BF16 : HM_DTYPE_F32), "dtype");
    struct hm_train_graph tg;
    CHECK(hm_model_build_train_graph(m, B, T, &tg), "graph");
    struct hm_adamw_config ac = hm_adamw_defaults();
    ac.grad_clip = 1.0f;
    struct hm_optimizer *opt;
    CHECK(hm_optimizer_new(m, &ac, &opt), "optimizer");
    size_t n = (size_t)B * T;
    int32_t *ids = malloc(n * 4), *tgt = malloc(n * 4);
    unsigned s = 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1103515245u + 12345u;
        ids[i] = (int32_t)((s >> 8) % (unsigned)cfg.vocab_size);
        tgt[i] = (int32_t)((s >> 4) % (unsigned)cfg.vocab_size);
    }
    double t0 = 0;
    float loss = 0;
    int warm = 3;
    for (int i = 0; i < warm + steps; i++) {
        if (i == warm) {
            CHECK(hm_backend_synchronize(be), "sync");
            t0 = now();
        }
        CHECK(hm_buffer_zero(hm_block_grads(hm_model_params(m))), "zero");
        CHECK(hm_tensor_set(tg.ids, ids, n * 4), "ids");
        CHECK(hm_tensor_set(tg.targets, tgt, n * 4), "targets");
        CHECK(hm_graph_forward(tg.graph), "forward");
        CHECK(hm_graph_backward(tg.graph), "backward");
        double norm;
        CHECK(hm_optimizer_step(opt, 1e-4f, &norm), "adamw"); /* syncs for the grad norm */
    }
    CHECK(hm_tensor_get(tg.loss, &loss, sizeof loss), "loss");
    double dt = now() - t0, tok_s = (double)n * steps / dt;
    double mfu = 3.0 * hm_config_flops_per_token(&cfg, T) * tok_s / 989e12;
    size_t params = hm_block_nbytes(hm_model_params(m));
    size_t bytes = 4 * params + (bf16 ? params / 2 : 0) + hm_graph_planned_bytes(tg.graph);
    printf("RESULT dtype=%s preset=%s B=%d T=%d V=%d tok_s=%.0f step_ms=%.2f mfu=%.4f hermes_bytes=%zu loss=%.4f\n",
           bf16 ? "bf16" : "f32", argv[1],
           B, T, cfg.vocab_size, tok_s, 1e3 * dt / steps, mfu, bytes, loss);
    hm_optimizer_free(opt);
    hm_train_graph_free(&tg);
    hm_model_free(m);
    hm_backend_free(be);
    free(ids), free(tgt);
    return 0;
}
