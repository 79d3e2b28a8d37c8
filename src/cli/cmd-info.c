/*
 * cmd-info.c - `hermes-llm info`: architecture, exact parameter count, inference and training
 * memory, and FLOPs per token, as a table or as JSON (--json).
 */
#include "commands.h"
#include "hermes/config.h"
#include "hermes/model.h"
#include "opts.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

static void human_bytes(double b, char *buf, size_t cap)
{
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024.0 && u < 4) {
        b /= 1024.0;
        u++;
    }
    snprintf(buf, cap, u ? "%.2f %s" : "%.0f %s", b, unit[u]);
}

static void human_count(double n, char *buf, size_t cap)
{
    if (n >= 1e9)
        snprintf(buf, cap, "%.2fB", n / 1e9);
    else if (n >= 1e6)
        snprintf(buf, cap, "%.2fM", n / 1e6);
    else if (n >= 1e3)
        snprintf(buf, cap, "%.2fK", n / 1e3);
    else
        snprintf(buf, cap, "%.0f", n);
}

struct info {
    struct hm_model_config cfg;
    long batch;
    int T;
    struct hm_model_memory mem, mem16; /* f32 and bf16 mixed precision */
    uint64_t P;
    double flops_fwd;
};

/* The training memory keys, in the order the JSON has always had them. */
static void memory_json(json_t *o, const struct hm_model_memory *m, bool copies)
{
    json_object_set_new(o, "parameters", json_integer((json_int_t)m->params_bytes));
    if (copies)
        json_object_set_new(o, "weight_copies", json_integer((json_int_t)m->copies_bytes));
    json_object_set_new(o, "gradients", json_integer((json_int_t)m->grads_bytes));
    json_object_set_new(o, "adamw_state", json_integer((json_int_t)m->optim_bytes));
    json_object_set_new(o, "activations", json_integer((json_int_t)m->activation_bytes));
    json_object_set_new(o, "total", json_integer((json_int_t)m->total_bytes));
}

static void print_json(const struct info *in)
{
    const struct hm_model_config *cfg = &in->cfg;
    json_t *o = json_object();
    json_object_set_new(o, "model", json_string(cfg->name));
    char *cj = hm_config_to_json(cfg);
    json_object_set_new(o, "config", json_loads(cj, 0, NULL));
    hm_free(cj);
    json_object_set_new(o, "head_dim", json_integer(hm_config_head_dim(cfg)));
    json_object_set_new(o, "parameters", json_integer((json_int_t)in->P));
    json_object_set_new(o, "parameters_nonembedding",
                        json_integer((json_int_t)hm_config_param_count_nonembed(cfg)));
    json_t *inf = json_object();
    json_object_set_new(inf, "context", json_integer(cfg->max_seq_len));
    json_object_set_new(inf, "weights_f32", json_integer((json_int_t)(in->P * 4)));
    json_object_set_new(inf, "weights_bf16", json_integer((json_int_t)(in->P * 2)));
    json_object_set_new(inf, "kv_cache_f32", json_integer((json_int_t)hm_config_kv_cache_bytes(cfg, cfg->max_seq_len, 4)));
    json_object_set_new(inf, "kv_cache_bf16", json_integer((json_int_t)hm_config_kv_cache_bytes(cfg, cfg->max_seq_len, 2)));
    json_object_set_new(o, "inference", inf);
    json_t *tr = json_object();
    json_object_set_new(tr, "batch_size", json_integer(in->batch));
    json_object_set_new(tr, "seq_len", json_integer(in->T));
    memory_json(tr, &in->mem, false);
    json_object_set_new(o, "training", tr);
    json_t *t16 = json_object();
    memory_json(t16, &in->mem16, true);
    json_object_set_new(o, "training_bf16", t16);
    json_object_set_new(o, "flops_per_token_forward", json_real(in->flops_fwd));
    json_object_set_new(o, "flops_per_token_training", json_real(3.0 * in->flops_fwd));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    printf("%s\n", s);
    free(s);
    json_decref(o);
}

static void print_architecture(const struct info *in)
{
    const struct hm_model_config cfg = in->cfg;
    uint64_t P = in->P;
    char a[32];
    printf("Model: %s\n", cfg.name);
    printf("  %-28s %s\n", "Style", cfg.activation == HM_ACT_SWIGLU ? "LLaMA (SwiGLU FFN)" : "GPT (GELU FFN)");
    printf("  %-28s %d\n", "Vocab size", cfg.vocab_size);
    printf("  %-28s %d\n", "Max sequence length", cfg.max_seq_len);
    printf("  %-28s %d\n", "Hidden size", cfg.hidden_size);
    printf("  %-28s %d\n", "Layers", cfg.num_layers);
    printf("  %-28s %d (kv heads %d%s)\n", "Attention heads", cfg.num_heads, cfg.num_kv_heads,
           cfg.num_kv_heads < cfg.num_heads ? ", grouped-query" : "");
    printf("  %-28s %d\n", "Head dimension", hm_config_head_dim(&cfg));
    printf("  %-28s %d\n", "Intermediate size", cfg.intermediate_size);
    printf("  %-28s RMSNorm (eps %g), RoPE (theta %g)\n", "Norm / positions", cfg.layer_norm_eps, cfg.rope_theta);
    printf("  %-28s %s, %s\n", "Bias / head", cfg.use_bias ? "biases" : "no biases",
           cfg.tie_embeddings ? "tied to the embedding" : "separate lm_head");
    printf("  %-28s %g\n", "Dropout", cfg.dropout);
    human_count((double)P, a, sizeof a);
    printf("\nParameters: %llu (%s)\n", (unsigned long long)P, a);
    printf("  %-28s %llu\n", "Non-embedding", (unsigned long long)hm_config_param_count_nonembed(&cfg));
}

static void print_inference_row(const char *dtype, uint64_t weights, uint64_t kv)
{
    char a[32], b[32], c[32];
    human_bytes((double)weights, a, sizeof a);
    human_bytes((double)kv, b, sizeof b);
    human_bytes((double)(weights + kv), c, sizeof c);
    printf("  %-12s %14s %14s %14s\n", dtype, a, b, c);
}

static void print_memory(const struct info *in)
{
    const struct hm_model_config cfg = in->cfg;
    const struct hm_model_memory mem = in->mem, mem16 = in->mem16;
    long batch = in->batch;
    int T = in->T;
    uint64_t P = in->P;
    double flops_fwd = in->flops_fwd;
    char a[32], b[32];
    printf("\nInference memory (batch 1, KV cache at %d positions):\n", cfg.max_seq_len);
    printf("  %-12s %14s %14s %14s\n", "dtype", "weights", "KV cache", "total");
    for (int eb = 4; eb >= 2; eb -= 2)
        print_inference_row(eb == 4 ? "f32" : "bf16", P * (uint64_t)eb,
                            hm_config_kv_cache_bytes(&cfg, cfg.max_seq_len, eb));
    /* generate --dtype q8_0 on the CPU: packed matrices; vectors and the KV cache f32 */
    print_inference_row("q8_0 (cpu)", hm_model_packed_bytes(&cfg, HM_DTYPE_Q8_0),
                        hm_config_kv_cache_bytes(&cfg, cfg.max_seq_len, 4));

    printf("\nTraining memory (AdamW, batch %ld x seq %d):\n", batch, T);
    printf("  %-28s %14s %14s\n", "", "f32", "bf16 mixed");
    const struct {
        const char *what;
        uint64_t f32, bf16;
    } rows[] = {
        {"Parameters (f32 masters)", mem.params_bytes, mem16.params_bytes},
        {"bf16 weight copies", mem.copies_bytes, mem16.copies_bytes},
        {"Gradients (f32)", mem.grads_bytes, mem16.grads_bytes},
        {"AdamW moments (m, v; f32)", mem.optim_bytes, mem16.optim_bytes},
        {"Activations (planned peak)", mem.activation_bytes, mem16.activation_bytes},
        {"Total", mem.total_bytes, mem16.total_bytes},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        human_bytes((double)rows[i].f32, a, sizeof a);
        human_bytes((double)rows[i].bf16, b, sizeof b);
        printf("  %-28s %14s %14s\n", rows[i].what, a, b);
    }
    printf("  (f32: with the CPU kernels' workspace; bf16, the GPU default: tensors alone, plus\n"
           "   about 32 MiB of cuBLASLt and attention workspace on the GPU)\n");

    human_count(flops_fwd, a, sizeof a);
    human_count(3.0 * flops_fwd, b, sizeof b);
    printf("\nFLOPs per token (context %d): forward %s, training (fwd+bwd) %s\n", T, a, b);
}

enum hm_status cmd_info(int argc, char **argv)
{
    const char *model = "gpt2-small";
    long vocab = 0, batch = 32, seq_len = 0;
    bool json = false, help = false;
    const struct cli_opt opts[] = {
        {"model", 'm', CLI_STRING, &model, "MODEL", "Preset name or path to a config .json", "gpt2-small"},
        {"vocab-size", 'v', CLI_INT, &vocab, "V", "Override the vocabulary size", "the config's", 1, 1 << 24},
        {"batch-size", 'b', CLI_INT, &batch, "B", "Micro-batch for the training memory figure", "32", 1, 1 << 20},
        {"seq-len", 0, CLI_INT, &seq_len, "T", "Sequence length for training memory and FLOPs", "min(256, max_seq_len)", 1, 1 << 24},
        {"json", 0, CLI_FLAG, &json, NULL, "Print machine-readable JSON", NULL},
        {0},
    };
    enum hm_status st = cli_parse_usage(
        "info", "[options]",
        "Print a model's architecture, exact parameter count, memory needs and FLOPs.",
        opts, argc, argv, &help);
    if (st != HM_OK || help)
        return st;
    struct info in = {.batch = batch};
    struct hm_model_config *cfg = &in.cfg;
    if ((st = hm_config_resolve(model, cfg)) != HM_OK)
        return st;
    if (vocab)
        cfg->vocab_size = (int)vocab;
    if (vocab && (st = hm_config_validate(cfg)) != HM_OK) /* the sizes with the new vocab */
        return hm_fail(st, "info: --vocab-size %ld: %s", vocab, hm_last_error());
    int T = seq_len ? (int)seq_len : (cfg->max_seq_len < 256 ? cfg->max_seq_len : 256);
    if (T > cfg->max_seq_len)
        return hm_fail(HM_ERR_USAGE, "info: --seq-len %d exceeds the model's max_seq_len %d", T,
                       cfg->max_seq_len);

    /* Training memory: the planner's real peak for this (B, T), planned dry. f32 on the CPU
     * backend (its kernel workspace included); bf16 mixed precision, the GPU's default, as tensors
     * alone (the CPU's bf16 workspace would overstate a GPU's). */
    struct hm_backend *be;
    if ((st = hm_backend_cpu_new(&be)) != HM_OK)
        return st;
    st = hm_model_memory_planned(cfg, (int)batch, T, be, HM_DTYPE_F32, &in.mem);
    hm_backend_free(be);
    if (st == HM_OK)
        st = hm_model_memory_planned(cfg, (int)batch, T, NULL, HM_DTYPE_BF16, &in.mem16);
    if (st != HM_OK)
        return st;
    in.T = T;
    in.P = hm_config_param_count(cfg);
    in.flops_fwd = hm_config_flops_per_token(cfg, T);
    if (json) {
        print_json(&in);
        return HM_OK;
    }
    print_architecture(&in);
    print_memory(&in);
    return HM_OK;
}

