/*
 * bench-train-gpu.c - training-step throughput of hermes-llm on the CUDA backend (run through
 * scripts/bench/train_gpu, which puts PyTorch next to it in the same run).
 *
 *   bench-train-gpu PRESET B T V STEPS [DEVICE [DTYPE]]
 * Random tokens, full forward + backward + AdamW (the trainer's step), in DTYPE (bf16 mixed
 * precision by default, or f32). Prints one line:
 *   RESULT dtype=.. preset=.. B=.. T=.. V=.. tok_s=.. step_ms=.. mfu=.. hermes_bytes=.. loss=..
 * where mfu = 3 * flops_per_token(T) * tok/s / 989e12 (H100 SXM dense bf16 peak) and hermes_bytes
 * counts what the library allocated (parameters, bf16 copies, gradients, AdamW state, planned
 * activations and workspace). Exit 3 when the batch does not fit (HM_ERR_NOMEM), 1 on other errors.
 */
#include "hermes/backend.h"

#include "bench-util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* check(), but HM_ERR_NOMEM exits 3 so the script can try a smaller batch. */
static void fit_check(enum hm_status st, const char *what)
{
    if (st == HM_ERR_NOMEM) {
        fprintf(stderr, "bench-train-gpu: %s: %s\n", what, hm_last_error());
        exit(3);
    }
    check(st, what);
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: bench-train-gpu PRESET B T V STEPS [DEVICE [f32|bf16]]\n");
        return 2;
    }
    struct hm_model_config cfg;
    check(hm_config_resolve(argv[1], &cfg), "config");
    int B = atoi(argv[2]), T = atoi(argv[3]), steps = atoi(argv[5]);
    cfg.vocab_size = atoi(argv[4]);
    if (T > cfg.max_seq_len)
        cfg.max_seq_len = T;
    bool bf16 = argc <= 7 || strcmp(argv[7], "f32") != 0;
    struct hm_backend *be;
    check(hm_backend_new_from_string(argc > 6 ? argv[6] : "cuda", &be), "backend");
    struct bench_train b;
    fit_check(bench_train_setup(&cfg, be, bf16 ? HM_DTYPE_BF16 : HM_DTYPE_F32, B, T, &b), "setup");
    double t0 = 0;
    float loss = 0;
    int warm = 3;
    for (int i = 0; i < warm + steps; i++) {
        if (i == warm) {
            check(hm_backend_synchronize(be), "sync");
            t0 = now();
        }
        check(hm_buffer_zero(hm_block_grads(hm_model_params(b.m))), "zero");
        check(hm_tensor_set(b.tg.ids, b.ids, b.n * 4), "ids");
        check(hm_tensor_set(b.tg.targets, b.tgt, b.n * 4), "targets");
        check(hm_graph_forward(b.tg.graph), "forward");
        check(hm_graph_backward(b.tg.graph), "backward");
        double norm;
        check(hm_optimizer_step(b.opt, 1e-4f, &norm), "adamw"); /* syncs for the grad norm */
    }
    check(hm_tensor_get(b.tg.loss, &loss, sizeof loss), "loss");
    double dt = now() - t0, tok_s = (double)b.n * steps / dt;
    double mfu = 3.0 * hm_config_flops_per_token(&cfg, T) * tok_s / 989e12;
    size_t params = hm_block_nbytes(hm_model_params(b.m));
    size_t bytes = 4 * params + (bf16 ? params / 2 : 0) + hm_graph_planned_bytes(b.tg.graph);
    printf("RESULT dtype=%s preset=%s B=%d T=%d V=%d tok_s=%.0f step_ms=%.2f mfu=%.4f hermes_bytes=%zu loss=%.4f\n",
           bf16 ? "bf16" : "f32", argv[1], B, T, cfg.vocab_size, tok_s, 1e3 * dt / steps, mfu, bytes, loss);
    bench_train_free(&b);
    hm_backend_free(be);
    return 0;
}
