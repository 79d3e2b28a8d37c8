/*
 * tensor.h - tensors, op builders, the graph with reverse-mode autograd, and the memory planner.
 *
 * Tensor metadata lives in an hm_ctx arena; tensor data lives in backend buffers. Parameters live
 * in an hm_block: one contiguous data buffer plus one gradient buffer with the same layout. Op
 * builders only record nodes; a graph is built once per (B, T), planned once, then replayed:
 *
 *     hm_block_new(true, &params);  w = hm_block_add(params, "w", HM_DTYPE_F32, 2, (int64_t[]){V, C});
 *     hm_block_alloc(params, be);                       // data + grads, each one buffer
 *     hm_ctx_new(&ctx);  ids = hm_new_input(ctx, HM_DTYPE_I32, 2, (int64_t[]){B, T});  ...
 *     loss = hm_cross_entropy(ctx, logits, targets, -100);
 *     hm_graph_new(ctx, &g); hm_graph_build_forward(g, loss); hm_graph_build_backward(g, loss);
 *     hm_graph_plan(g, be);                             // one workspace, lifetime-based reuse
 *     every step: hm_tensor_set(ids, ...); hm_graph_forward(g); hm_graph_backward(g); hm_tensor_get(loss, ...)
 */
#ifndef HERMES_TENSOR_H
#define HERMES_TENSOR_H

#include "hermes/hermes.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HM_MAX_DIMS 4
#define HM_MAX_SRC 8
#define HM_MAX_OP_PARAMS 8
#define HM_IGNORE_INDEX (-100)

enum hm_dtype {
    HM_DTYPE_F32 = 0,
    HM_DTYPE_BF16, /* storage only on the CPU backend: compute there is f32 */
    HM_DTYPE_I32,  /* token ids and targets */
    HM_DTYPE_COUNT
};

/* Every op, from ops.def; its facts are in hm_op_info() (hermes/ops.h). */
enum hm_op {
#define HM_OP(NAME, ...) HM_OP_##NAME,
#include "hermes/ops.def"
#undef HM_OP
    HM_OP_COUNT
};

enum hm_tensor_flag {
    HM_FLAG_INPUT = 1u << 0,  /* set from the host before each run: own storage, never reused */
    HM_FLAG_OUTPUT = 1u << 1, /* read after the run: storage kept alive to the end of the graph */
    HM_FLAG_PARAM = 1u << 2,  /* lives in an hm_block with gradients; backward adds into ->grad */
    HM_FLAG_GRAD = 1u << 3,   /* gradient storage created by autograd or an hm_block */
    HM_FLAG_BLOCK = 1u << 4,  /* storage owned by an hm_block (allocated or not): never planned */
};

/*
 * A tensor: contiguous, up to 4 dims, PyTorch order (shape[0] outermost, unused trailing entries
 * are 1). A view (reshape, slice along a free dimension) shares the storage of `view_src`, the root
 * tensor that owns it, at byte offset `view_offs`. Fields are public for backends and tests; code
 * outside src/ should treat them as read-only and use the functions below.
 */
struct hm_tensor {
    enum hm_dtype type;
    int n_dims;
    int64_t shape[HM_MAX_DIMS];
    enum hm_op op;
    int32_t op_params[HM_MAX_OP_PARAMS]; /* inline op parameters; floats stored bitwise */
    uint32_t acc;                        /* backward nodes: which outputs accumulate (ops.def) */
    struct hm_tensor *src[HM_MAX_SRC];
    struct hm_tensor *view_src; /* root owning the storage, or NULL */
    size_t view_offs;           /* bytes into view_src */
    struct hm_tensor *grad;     /* gradient storage (same shape), once autograd made one */
    uint32_t flags;             /* enum hm_tensor_flag */
    struct hm_buffer *buffer;   /* where data lives, once allocated */
    void *data;                 /* backend memory; never dereference on the host */
    size_t offset;              /* byte offset in `buffer` */
    int32_t id;                 /* creation index in its context or block */
    char name[48];
};

/* ---- contexts and tensors ------------------------------------------------------------------- */

struct hm_ctx; /* arena for tensor metadata; hm_ctx_free frees every tensor made in it */
struct hm_block;
struct hm_graph;
struct hm_backend;
struct hm_buffer;

HM_API enum hm_status hm_ctx_new(struct hm_ctx **out);
HM_API void hm_ctx_free(struct hm_ctx *ctx);

HM_API struct hm_tensor *hm_new_tensor(struct hm_ctx *ctx, enum hm_dtype type, int n_dims,
                                       const int64_t *shape);
/* A tensor the caller fills from the host before each run (token ids, targets). */
HM_API struct hm_tensor *hm_new_input(struct hm_ctx *ctx, enum hm_dtype type, int n_dims,
                                      const int64_t *shape);
HM_API void hm_set_output(struct hm_tensor *t);
HM_API void hm_tensor_set_name(struct hm_tensor *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

HM_API int64_t hm_nelements(const struct hm_tensor *t);
HM_API size_t hm_nbytes(const struct hm_tensor *t);
HM_API size_t hm_dtype_size(enum hm_dtype type);
HM_API const char *hm_dtype_name(enum hm_dtype type);
HM_API const char *hm_op_name(enum hm_op op);

/* Host <-> tensor data; `bytes` must equal hm_nbytes(t). HM_ERR_USAGE if not allocated yet. */
HM_API enum hm_status hm_tensor_set(struct hm_tensor *t, const void *host, size_t bytes);
HM_API enum hm_status hm_tensor_get(const struct hm_tensor *t, void *host, size_t bytes);
HM_API enum hm_status hm_tensor_fill(struct hm_tensor *t, float value); /* f32/bf16/i32 */
/* n floats of an f32 or bf16 tensor (bf16 widened), e.g. logits whatever the model's dtype. */
HM_API enum hm_status hm_tensor_get_f32(const struct hm_tensor *t, float *host, size_t n);

/* bf16 <-> f32. f32 -> bf16 rounds to nearest even; NaN stays a quiet NaN. */
HM_API uint16_t hm_f32_to_bf16(float x);
HM_API float hm_bf16_to_f32(uint16_t x);
HM_API void hm_f32_to_bf16_n(const float *x, uint16_t *y, size_t n);
HM_API void hm_bf16_to_f32_n(const uint16_t *x, float *y, size_t n);

/* ---- parameter / state blocks ---------------------------------------------------------------- */

/*
 * A block: tensors declared one by one, then allocated at once in ONE contiguous backend buffer,
 * packed in declaration order with no padding (so element ranges are exact for AdamW). With
 * `with_grads`, each tensor is a parameter (HM_FLAG_PARAM) whose ->grad lives at the same offset
 * in a second buffer. The model declares weight-decayed tensors first. A block without grads holds
 * persistent non-parameter state, e.g. the KV cache shared by a prefill and a decode graph.
 */
HM_API enum hm_status hm_block_new(bool with_grads, struct hm_block **out);
HM_API void hm_block_free(struct hm_block *b); /* frees the buffers and the tensors */
HM_API struct hm_tensor *hm_block_add(struct hm_block *b, const char *name, enum hm_dtype type,
                                      int n_dims, const int64_t *shape);
HM_API enum hm_status hm_block_alloc(struct hm_block *b, struct hm_backend *be); /* zero-filled */
HM_API struct hm_buffer *hm_block_data(const struct hm_block *b);
HM_API struct hm_buffer *hm_block_grads(const struct hm_block *b); /* NULL without grads */
HM_API int hm_block_n_tensors(const struct hm_block *b);
HM_API struct hm_tensor *hm_block_tensor(const struct hm_block *b, int i);
HM_API size_t hm_block_nbytes(const struct hm_block *b);
/* Element offset of t in its block (AdamW ranges, all-reduce slices). */
HM_API size_t hm_block_elem_offset(const struct hm_tensor *t);
/*
 * A copy of a parameter block in another dtype (the bf16 weights of mixed precision): the same
 * tensors, names and element layout, allocated on `be`. Its tensors are parameters whose ->grad
 * is the SOURCE's gradient, so backward through a copy accumulates into the f32 master
 * gradients. hm_block_copy_refresh rounds the source's current values into it (one pass).
 */
HM_API enum hm_status hm_block_new_copy(const struct hm_block *src, enum hm_dtype type, struct hm_backend *be,
                                        struct hm_block **out);
HM_API enum hm_status hm_block_copy_refresh(struct hm_block *copy, const struct hm_block *src);
/* Free a block's storage, keeping its tensor declarations (data NULL afterwards). */
HM_API void hm_block_release(struct hm_block *b);

/* ---- op builders ----------------------------------------------------------------------------- */
/* Builders assert shapes (the graph is built by our own model code from validated configs) and
 * return the new node. Activations are (B, T, C); heads are (B, T, NH, HD), i.e. a reshape. */

HM_API struct hm_tensor *hm_reshape(struct hm_ctx *ctx, struct hm_tensor *x, int n_dims,
                                    const int64_t *shape);
/* x[.., start:start+len, ..] along `dim`; only where that is contiguous (all dims before `dim`
 * have size 1). */
HM_API struct hm_tensor *hm_slice(struct hm_ctx *ctx, struct hm_tensor *x, int dim, int64_t start,
                                  int64_t len);

HM_API struct hm_tensor *hm_add(struct hm_ctx *ctx, struct hm_tensor *a, struct hm_tensor *b);
HM_API struct hm_tensor *hm_mul(struct hm_ctx *ctx, struct hm_tensor *a, struct hm_tensor *b);
HM_API struct hm_tensor *hm_scale(struct hm_ctx *ctx, struct hm_tensor *x, float s);

/*
 * alpha * op(a) @ op(b) + bias, op = transpose when asked.
 * 2-D mode (b is 2-D): a's leading dims are flattened into rows first; out is a.shape[:-1] + (N)
 * (or (M, N) with trans_a). Batched mode (b has 3+ dims): a and b share the leading batch dims.
 * bias (N) or NULL.
 */
HM_API struct hm_tensor *hm_matmul(struct hm_ctx *ctx, struct hm_tensor *a, struct hm_tensor *b,
                                   bool trans_a, bool trans_b);
HM_API struct hm_tensor *hm_matmul_ex(struct hm_ctx *ctx, struct hm_tensor *a, struct hm_tensor *b,
                                      struct hm_tensor *bias, bool trans_a, bool trans_b,
                                      float alpha);
/* nn.Linear: x (.., in) @ w^T + bias, w is [out, in], bias (out) or NULL. */
HM_API struct hm_tensor *hm_linear(struct hm_ctx *ctx, struct hm_tensor *x, struct hm_tensor *w,
                                   struct hm_tensor *bias);

/* The same for batched serving: row r of the result depends only on row r of x and on w, each
 * output's dot product summed in one fixed order whatever the number of rows (batch invariance;
 * BLAS picks kernels by shape). Forward only: the backward pass uses the plain matmul. */
HM_API struct hm_tensor *hm_linear_rows(struct hm_ctx *ctx, struct hm_tensor *x,
                                        struct hm_tensor *w, struct hm_tensor *bias);

/* w (V, C), ids i32 (...) -> (..., C). An id outside [0, V) fails the run with HM_ERR_USAGE. */
HM_API struct hm_tensor *hm_embedding(struct hm_ctx *ctx, struct hm_tensor *w, struct hm_tensor *ids);
/* x / sqrt(mean(x^2) + eps) * w over the last dim; w (C). */
HM_API struct hm_tensor *hm_rms_norm(struct hm_ctx *ctx, struct hm_tensor *x, struct hm_tensor *w,
                                     float eps);
/*
 * The pre-norm residual step in one node: *sum = a + b (same shape) and the result is
 * hm_rms_norm(*sum, w, eps), bit for bit what hm_add then hm_rms_norm compute (the sum is rounded
 * to its dtype before it is normalised). One pass over the rows instead of two, forward and
 * backward. `sum` must not be NULL; the result is a node ordered after the sum is written.
 */
HM_API struct hm_tensor *hm_add_rms_norm(struct hm_ctx *ctx, struct hm_tensor *a, struct hm_tensor *b,
                                         struct hm_tensor *w, float eps, struct hm_tensor **sum);
/* RoPE, half-split (GPT-NeoX "rotate_half"); x (B, T, H, HD), position of row t = rt.pos + t. */
HM_API struct hm_tensor *hm_rope(struct hm_ctx *ctx, struct hm_tensor *x, float theta);
/* The same with a position per row: pos i32 (B*T), a graph input (batched serving). */
HM_API struct hm_tensor *hm_rope_at(struct hm_ctx *ctx, struct hm_tensor *x, float theta,
                                    struct hm_tensor *pos);
/*
 * Fused causal attention with grouped-query heads, scale 1/sqrt(HD).
 * q (B, T, NH, HD); k, v (B, S, NKV, HD) with NKV | NH; query head h reads kv head h / (NH/NKV).
 * Query t sits at position rt.pos + t and sees keys 0 .. rt.pos + t, so training uses S = T and
 * pos = 0, and decoding passes the KV-cache views from hm_kv_write (S = T_max). Out (B, T, NH, HD).
 * Only the row log-sum-exp (B, NH, T) is kept for backward, which recomputes the probabilities.
 */
HM_API struct hm_tensor *hm_attention(struct hm_ctx *ctx, struct hm_tensor *q, struct hm_tensor *k,
                                      struct hm_tensor *v);
/* The same over packed documents: doc_start i32 (B, T), a graph input, gives the first key each
 * row may see (rows see keys doc_start[b, t] .. rt.pos + t), so documents packed into one window
 * never attend to each other. Gradients are exact: masked keys get none. */
HM_API struct hm_tensor *hm_attention_docs(struct hm_ctx *ctx, struct hm_tensor *q,
                                           struct hm_tensor *k, struct hm_tensor *v,
                                           struct hm_tensor *doc_start);
/* cache[:, pos:pos+T] = x for cache (B, T_max, NKV, HD), x (B, T, NKV, HD); returns the cache
 * (a view ordered after the write) to pass to hm_attention. Inference only (no backward). */
HM_API struct hm_tensor *hm_kv_write(struct hm_ctx *ctx, struct hm_tensor *cache, struct hm_tensor *x);
/*
 * Batched serving: the rows of q (B, T) are unrelated tokens, row r in KV-cache slot slot[r] at
 * position pos[r] (i32 (B*T) graph inputs); the cache is (n_slots, S, NKV, HD).
 * hm_kv_write_at writes x's row r to cache[slot[r], pos[r]]; hm_attention_at makes row r attend
 * keys 0 .. pos[r] of its slot's cache, each row on its own in a fixed order (batch invariance).
 * A row with slot -1 is padding: never written, its attention output is 0. Forward only.
 */
HM_API struct hm_tensor *hm_kv_write_at(struct hm_ctx *ctx, struct hm_tensor *cache,
                                        struct hm_tensor *x, struct hm_tensor *slot,
                                        struct hm_tensor *pos);
HM_API struct hm_tensor *hm_attention_at(struct hm_ctx *ctx, struct hm_tensor *q,
                                         struct hm_tensor *k, struct hm_tensor *v,
                                         struct hm_tensor *slot, struct hm_tensor *pos);

HM_API struct hm_tensor *hm_gelu(struct hm_ctx *ctx, struct hm_tensor *x); /* exact, erf */
HM_API struct hm_tensor *hm_swiglu(struct hm_ctx *ctx, struct hm_tensor *gate, struct hm_tensor *up);
/*
 * Dropout with a counter-based RNG: element i is kept iff hash(seed, step, id, g) >= p * 2^32,
 * g = i + rt.sample0 * (elements per sample), with seed/step/sample0 from the graph runtime, so
 * masks are reproducible, resumable, backend independent and the same for a sample whichever rank
 * or micro-batch holds it. `id` must be unique per dropout site (the model uses 4 * layer + site).
 * Returns x itself
 * (no node) when p == 0; at run time it copies x when rt.training is false.
 */
HM_API struct hm_tensor *hm_dropout(struct hm_ctx *ctx, struct hm_tensor *x, float p, int32_t id);
/*
 * Mean over non-ignored tokens of -log softmax(logits)[target]; logits (N, V) (or (.., V)),
 * targets i32 with N entries. Output is a 1-element f32 tensor (0 if every target is ignored).
 * A target outside [0, V) other than ignore_index fails the run with HM_ERR_USAGE.
 */
HM_API struct hm_tensor *hm_cross_entropy(struct hm_ctx *ctx, struct hm_tensor *logits,
                                          struct hm_tensor *targets, int32_t ignore_index);

/* ---- graphs ---------------------------------------------------------------------------------- */

/*
 * Values that change between replays without rebuilding. hm_graph_runtime() returns the graph's
 * own copy, which the caller edits between runs. A backend that replays recorded sequences keeps
 * the values each op's kernels read (the CUDA one: runtime_sig_of in graph-capture.cu): a new
 * field must be added there for the ops that read it.
 */
struct hm_runtime {
    int32_t pos;      /* position of the first query row (RoPE, KV cache); 0 for training */
    bool training;    /* dropout active; false: dropout copies (default true) */
    uint64_t seed;    /* dropout seed */
    uint64_t step;    /* dropout counter: the optimizer step */
    /* Dropout masks are keyed by the sample's index in the step's global batch, so W processes
     * (or micro-batches) draw exactly the masks one process with the whole batch would: this
     * micro-batch holds samples [sample0, sample0 + samples) of it. samples 0: keyed by the
     * element index only. */
    uint64_t sample0;
    uint64_t samples;
    float loss_scale; /* seed gradient of the loss, e.g. 1 / grad_accum (default 1) */
};

struct hm_op_profile {
    double seconds;
    uint64_t calls;
};

HM_API enum hm_status hm_graph_new(struct hm_ctx *ctx, struct hm_graph **out);
HM_API void hm_graph_free(struct hm_graph *g); /* frees the workspace; tensors stay in ctx */

/* Add `out` and everything it depends on to the forward nodes; marks it HM_FLAG_OUTPUT. */
HM_API void hm_graph_build_forward(struct hm_graph *g, struct hm_tensor *out);
/*
 * Reverse-mode autograd from `loss` (normally 1 element; otherwise every element is seeded with
 * rt.loss_scale). Every parameter reached gets its gradient ADDED into its ->grad (the trainer
 * zeroes the gradient block once per optimizer step); intermediate gradients are planned.
 */
HM_API enum hm_status hm_graph_build_backward(struct hm_graph *g, struct hm_tensor *loss);
/*
 * Give every non-parameter tensor (activations, gradients, inputs) an offset in one workspace
 * buffer, reusing memory whose lifetimes do not overlap (greedy best fit in node order), and
 * allocate it once. HM_ERR_UNSUPPORTED if the backend lacks an op, HM_ERR_NOMEM.
 */
HM_API enum hm_status hm_graph_plan(struct hm_graph *g, struct hm_backend *be);
HM_API size_t hm_graph_planned_bytes(const struct hm_graph *g); /* workspace incl. scratch */
/* Plan without allocating, to report the workspace a (B, T) would need (`info`). The graph cannot
 * run afterwards; parameter blocks need not be allocated. With be NULL: the tensors alone, no
 * kernel workspace and no support check (another backend's needs, e.g. the GPU's in bf16). */
HM_API enum hm_status hm_graph_plan_dry(struct hm_graph *g, struct hm_backend *be, size_t *bytes);
HM_API struct hm_runtime *hm_graph_runtime(struct hm_graph *g);

/* Run the forward / backward nodes in order. No allocation. */
HM_API enum hm_status hm_graph_forward(struct hm_graph *g);
HM_API enum hm_status hm_graph_backward(struct hm_graph *g);

HM_API int hm_graph_n_nodes(const struct hm_graph *g, bool backward);
HM_API struct hm_tensor *hm_graph_node(const struct hm_graph *g, bool backward, int i);

/*
 * Called on the host after backward node `node` (index into the backward nodes) has been issued to
 * the backend, for every node in order; a status other than HM_OK stops the backward pass with it.
 * On an asynchronous backend the node's kernel may still be running: work ordered after it on the
 * backend's stream sees its result. The data-parallel trainer starts gradient reductions here.
 */
typedef enum hm_status (*hm_graph_hook_fn)(void *user, int node);
/* Install (fn non-NULL) or remove (NULL) the backward hook. No allocation. */
HM_API void hm_graph_set_backward_hook(struct hm_graph *g, hm_graph_hook_fn fn, void *user);

/* Per-op-type timing, accumulated while enabled (forward and backward kept apart). */
HM_API void hm_graph_set_profiling(struct hm_graph *g, bool on);
HM_API void hm_graph_profile_reset(struct hm_graph *g);
/* Borrowed array of HM_OP_COUNT entries. */
HM_API const struct hm_op_profile *hm_graph_profile(const struct hm_graph *g, bool backward);

#ifdef __cplusplus
}
#endif
#endif
