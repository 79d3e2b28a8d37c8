/*
 * model.h - GPT- and LLaMA-style transformers built on the tensor graph (tensor.h).
 *
 * One model holds its parameters in one block (one contiguous buffer, plus gradients). The same
 * code builds the training graph (forward, loss, backward) for a (B, T) and the inference graphs
 * for generation (prefill and one-token decode over a KV cache), so the two cannot drift apart.
 *
 *     struct hm_model *m;
 *     hm_model_new(&cfg, backend, &m);  hm_model_init_weights(m, 42);
 *     struct hm_train_graph tg;  hm_model_build_train_graph(m, B, T, &tg);
 *     hm_tensor_set(tg.ids, ...); hm_tensor_set(tg.targets, ...);
 *     hm_graph_forward(tg.graph); hm_graph_backward(tg.graph);  hm_tensor_get(tg.loss, &loss, 4);
 *
 * Tensor names follow the original hermes-llm checkpoints: embedding.weight,
 * layers.{i}.attention.{q,k,v,o}_proj.{weight,bias}, layers.{i}.feed_forward.{gate,up,down}_proj.*,
 * layers.{i}.input_layernorm.weight, layers.{i}.post_attention_layernorm.weight, norm.weight and,
 * only when untied, lm_head.weight. Linear weights are [out, in].
 */
#ifndef HERMES_MODEL_H
#define HERMES_MODEL_H

#include "hermes/backend.h"
#include "hermes/config.h"
#include "hermes/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

struct hm_model_memory {
    enum hm_dtype dtype;       /* of activations and weight copies */
    uint64_t params_bytes;     /* f32 parameters */
    uint64_t copies_bytes;     /* bf16 weight copies (0 in f32) */
    uint64_t grads_bytes;      /* f32 gradients */
    uint64_t optim_bytes;      /* AdamW m and v, f32 */
    uint64_t activation_bytes; /* activations, their gradients and workspace at peak */
    uint64_t total_bytes;
    bool planned;              /* activation_bytes comes from the graph planner, not a formula */
};

/* Training memory at micro-batch B and sequence length T, f32. hm_model_memory_planned builds
 * and plans the training graph in `dtype` (nothing else is allocated) and reports the planner's
 * peak: with `be`, including that backend's kernel workspace; with be NULL, the tensors alone. */
HM_API enum hm_status hm_model_memory_estimate(const struct hm_model_config *cfg, int B, int T,
                                               struct hm_model_memory *out);
HM_API enum hm_status hm_model_memory_planned(const struct hm_model_config *cfg, int B, int T,
                                              struct hm_backend *be, enum hm_dtype dtype,
                                              struct hm_model_memory *out);
/* Refuse before allocating anything: HM_ERR_NOMEM naming the figures when training (or, with
 * training false, inference with a T-position KV cache) at batch B would need more than this
 * machine's physical memory; HM_ERR_USAGE when the sizes cannot even be counted in 64 bits. */
HM_API enum hm_status hm_model_memory_check(const struct hm_model_config *cfg, int B, int T,
                                            bool training);

struct hm_model;

/* Declare and allocate the parameters (zero) and their gradient block on `be`. Weights are not
 * initialised. With be NULL the tensors are only declared (to count them or plan memory); such a
 * model cannot run. HM_ERR_USAGE (invalid config) or HM_ERR_NOMEM. */
HM_API enum hm_status hm_model_new(const struct hm_model_config *cfg, struct hm_backend *be,
                                   struct hm_model **out);
/* The same model for generation only: parameters without gradients (half the memory). Inference
 * graphs work; hm_model_build_train_graph refuses it with HM_ERR_USAGE. In bf16 such a model keeps
 * only the bf16 copies: load the weights first, then hm_model_set_dtype releases the f32 ones. */
HM_API enum hm_status hm_model_new_infer(const struct hm_model_config *cfg, struct hm_backend *be,
                                         struct hm_model **out);
HM_API void hm_model_free(struct hm_model *m);

/* What a parameter is for: initialisation (and anything else that treats kinds differently) asks
 * this, never the tensor's name. */
enum hm_param_role {
    HM_PARAM_UNKNOWN = 0,
    HM_PARAM_EMBEDDING,        /* token embedding (V, C) */
    HM_PARAM_MATRIX,           /* a linear layer's weight [out, in] */
    HM_PARAM_RESIDUAL_MATRIX,  /* a linear layer that writes the residual stream (o_proj, down) */
    HM_PARAM_HEAD,             /* the untied output projection (V, C) */
    HM_PARAM_NORM_GAIN,        /* an RMSNorm/LayerNorm scale */
    HM_PARAM_BIAS,             /* a linear layer's bias */
};
/* The role of parameter i of hm_model_params (block order); HM_PARAM_UNKNOWN out of range. */
HM_API enum hm_param_role hm_model_param_role(const struct hm_model *m, int i);

/* By role: N(0, 0.02) embedding, matrices and head; residual matrices N(0, 0.02/sqrt(2L)); norm
 * gains 1; biases 0. Deterministic in `seed`. */
HM_API enum hm_status hm_model_init_weights(struct hm_model *m, uint64_t seed);

/*
 * Mixed precision. With HM_DTYPE_BF16 the graphs built afterwards read bf16 copies of the
 * weights and keep activations, their gradients and the KV cache in bf16; parameters, their
 * gradients, AdamW state, reductions and the loss stay f32 (compute is always f32). Call
 * hm_model_weights_changed after writing parameters directly (init, load and the optimizer do).
 */
HM_API enum hm_status hm_model_set_dtype(struct hm_model *m, enum hm_dtype dtype);
HM_API enum hm_dtype hm_model_dtype(const struct hm_model *m);
HM_API enum hm_status hm_model_weights_changed(struct hm_model *m);
/* True for a bf16 inference model, whose f32 weights were freed (it cannot load or save). */
HM_API bool hm_model_weights_released(const struct hm_model *m);

HM_API const struct hm_model_config *hm_model_config(const struct hm_model *m);
HM_API struct hm_backend *hm_model_backend(const struct hm_model *m);
HM_API struct hm_block *hm_model_params(const struct hm_model *m);
/* Sum of the element counts of the allocated parameter tensors. */
HM_API uint64_t hm_model_param_count(const struct hm_model *m);
/* Parameters are laid out weight-decayed first (matrices, embedding), then norms and biases:
 * elements [0, n_decay) decay. */
HM_API uint64_t hm_model_n_decay(const struct hm_model *m);
/* Parameter by checkpoint name, or NULL. */
HM_API struct hm_tensor *hm_model_param(const struct hm_model *m, const char *name);

struct hm_train_graph {
    struct hm_ctx *ctx;
    struct hm_graph *graph;
    struct hm_tensor *ids;     /* i32 (B, T), set each step */
    struct hm_tensor *targets; /* i32 (B, T), set each step; -100 = ignore */
    struct hm_tensor *logits;  /* (B, T, V) after hm_graph_forward; hm_graph_backward overwrites
                                  them with their gradient (one buffer for both) */
    struct hm_tensor *loss;    /* f32 (1): mean cross-entropy */
    struct hm_tensor *doc_start; /* packed graphs: i32 (B, T), first position of each position's
                                    document, set each step; NULL otherwise */
    int B, T;
};
/* Forward, loss and backward for (B, T), planned once. T <= max_seq_len. */
HM_API enum hm_status hm_model_build_train_graph(struct hm_model *m, int B, int T,
                                                 struct hm_train_graph *out);
/* The same for windows packing several documents (chat data): attention never crosses from one
 * document into another (hm_attention_docs over out->doc_start). */
HM_API enum hm_status hm_model_build_packed_train_graph(struct hm_model *m, int B, int T,
                                                        struct hm_train_graph *out);
HM_API void hm_train_graph_free(struct hm_train_graph *tg);
/* The activation/gradient workspace the (B, T) training graph would plan on `be`, allocating
 * nothing (the model may be declare-only). */
HM_API enum hm_status hm_model_plan_train_bytes(struct hm_model *m, struct hm_backend *be, int B, int T,
                                                size_t *bytes);

/*
 * Inference: a KV cache of `ctx_len` positions (<= max_seq_len) for batch 1 (one slot), and
 * graphs that feed T new tokens at position rt.pos (prefill: T = prompt length; decode: T = 1).
 * Each returns the logits of the last new position only, (V). No dropout, no gradients.
 */
struct hm_kv_cache;
HM_API enum hm_status hm_kv_cache_new(struct hm_model *m, int ctx_len, struct hm_kv_cache **out);
HM_API void hm_kv_cache_free(struct hm_kv_cache *c);
HM_API int hm_kv_cache_len(const struct hm_kv_cache *c);
HM_API size_t hm_kv_cache_bytes(const struct hm_kv_cache *c);

struct hm_infer_graph {
    struct hm_ctx *ctx;
    struct hm_graph *graph;
    struct hm_tensor *ids;    /* i32 (1, T) */
    struct hm_tensor *logits; /* (V), the model's dtype: last position (hm_tensor_get_f32) */
    int T;
};
HM_API enum hm_status hm_model_build_infer_graph(struct hm_model *m, struct hm_kv_cache *cache, int T,
                                                 struct hm_infer_graph *out);
/* Run: positions pos .. pos+T-1; fills the cache there. */
HM_API enum hm_status hm_infer_run(struct hm_infer_graph *g, const hm_token *ids, int pos);
HM_API void hm_infer_graph_free(struct hm_infer_graph *g);

/*
 * Batched serving (engine.h): a cache of n_slots independent sequences of ctx_len positions, and
 * a graph over N unrelated tokens, token r in KV slot slot[r] (-1: padding, ignored) at position
 * pos[r], attending its slot's positions 0 .. pos[r] (the tokens of one step are written to the
 * cache first, so a prompt chunk is causal within itself). Logits come out for the M rows listed
 * in out_rows only. Every per-token reduction runs in a fixed order whatever N, M or the row's
 * index (hm_linear_rows, hm_attention_at): a token's logits depend only on its own sequence.
 */
HM_API enum hm_status hm_kv_cache_new_slots(struct hm_model *m, int n_slots, int ctx_len,
                                            struct hm_kv_cache **out);
HM_API int hm_kv_cache_slots(const struct hm_kv_cache *c);

struct hm_batch_graph {
    struct hm_ctx *ctx;
    struct hm_graph *graph;
    struct hm_tensor *ids, *slot, *pos; /* i32 (N) each */
    struct hm_tensor *out_rows;         /* i32 (M): rows of the N whose logits are wanted */
    struct hm_tensor *logits;           /* (M, V), the model's dtype */
    int N, M;
};
/* row_invariant false: the linear layers use BLAS instead (not batch-invariant; benchmarks
 * measure what invariance costs with it). */
HM_API enum hm_status hm_model_build_batch_graph(struct hm_model *m, struct hm_kv_cache *cache,
                                                 int N, int M, bool row_invariant,
                                                 struct hm_batch_graph *out);
/* Set the four inputs (N, N, N and M entries) and run. */
HM_API enum hm_status hm_batch_run(struct hm_batch_graph *g, const hm_token *ids,
                                   const int32_t *slot, const int32_t *pos,
                                   const int32_t *out_rows);
HM_API void hm_batch_graph_free(struct hm_batch_graph *g);

/* ---- checkpoints (safetensors) --------------------------------------------------------------- */

enum hm_save_dtype { HM_SAVE_F32 = 0, HM_SAVE_BF16 };
/* Every parameter under its checkpoint name, written atomically. */
HM_API enum hm_status hm_model_save(const struct hm_model *m, const char *path, enum hm_save_dtype dt);
/* Load every parameter by name, checking dtype and shape; a missing or mis-shaped one is
 * HM_ERR_MISMATCH naming it, and so is a tensor in the model's namespace (embedding.*, layers.*,
 * norm.*, lm_head.*) that this config does not have: an untied head, biases or extra layers would
 * otherwise be dropped silently. Other tensors (a training state's optim.*) are ignored. */
HM_API enum hm_status hm_model_load_weights(struct hm_model *m, const char *path);
/* The same from a checkpoint whose vocabulary lacks the last n_new ids (tokens added for
 * fine-tuning): their embedding rows, and an untied lm_head's, start as the mean row. */
HM_API enum hm_status hm_model_load_weights_grow_vocab(struct hm_model *m, const char *path, int n_new);

#ifdef __cplusplus
}
#endif
#endif
