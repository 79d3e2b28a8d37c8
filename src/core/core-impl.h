/*
 * core-impl.h - private structures of the tensor core: the metadata arena, blocks, graphs, op
 * parameter accessors and the counter-based dropout hash. Backends include this file (as ggml
 * backends include ggml-impl.h); nothing else outside src/core/ may.
 * Invariant: a view's view_src is always a root (a tensor that owns storage), never a view.
 */
#ifndef HERMES_CORE_IMPL_H
#define HERMES_CORE_IMPL_H

#include "hermes/backend.h"
#include "hermes/tensor.h"
#include "util/util.h"

#include <string.h>

#define HM_CTX_CHUNK 256

/* Internal tensor flags (above the public enum hm_tensor_flag). */
#define HM_FLAG_REQUIRES_GRAD (1u << 16) /* on a path from a parameter (set by autograd) */
#define HM_FLAG_GRAD_INIT (1u << 17)     /* gradient storage already written once */

struct hm_ctx_chunk {
    struct hm_ctx_chunk *next;
    int used;
    struct hm_tensor t[HM_CTX_CHUNK];
};

struct hm_ctx {
    struct hm_ctx_chunk *head; /* newest first */
    int n_tensors;
};

struct hm_block {
    bool with_grads;
    int n, cap;
    struct hm_tensor **tensors; /* data tensors; their ->grad are the gradient tensors */
    size_t nbytes;
    bool size_overflow; /* nbytes wrapped: hm_block_alloc refuses */
    struct hm_buffer *data;
    struct hm_buffer *grads;
};

struct hm_graph {
    struct hm_ctx *ctx;
    struct hm_tensor **fwd; /* forward nodes, topological order (leaves excluded) */
    int n_fwd, cap_fwd;
    struct hm_tensor **bwd; /* backward nodes in execution order */
    int n_bwd, cap_bwd;
    bool has_backward;
    struct hm_runtime rt;
    struct hm_backend *be;
    struct hm_buffer *work; /* planned tensors + kernel scratch */
    size_t planned_bytes;
    size_t scratch_offset, scratch_bytes;
    bool profiling;
    struct hm_op_profile prof[2][HM_OP_COUNT];
    hm_graph_hook_fn bwd_hook; /* after each backward node (data-parallel gradient reduction) */
    void *bwd_hook_user;
};

/* op_params accessors */
static inline float hm_op_f32(const struct hm_tensor *t, int i)
{
    float f;
    memcpy(&f, &t->op_params[i], sizeof f);
    return f;
}
static inline void hm_op_set_f32(struct hm_tensor *t, int i, float f)
{
    memcpy(&t->op_params[i], &f, sizeof f);
}

static inline struct hm_tensor *hm_root(struct hm_tensor *t)
{
    return t->view_src ? t->view_src : t;
}

static inline int64_t hm_nrows(const struct hm_tensor *t)
{
    return hm_nelements(t) / t->shape[t->n_dims - 1];
}

static inline bool hm_same_shape(const struct hm_tensor *a, const struct hm_tensor *b)
{
    if (a->n_dims != b->n_dims)
        return false;
    for (int i = 0; i < a->n_dims; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

/* Matmul geometry shared by the builder, autograd and every backend's kernel: `batch` products of
 * op(a) (M, K) and op(b) (K, N). With a 2-D b, a's leading dims are flattened into rows first. */
struct hm_mm_dims {
    int64_t batch, M, N, K;
};
static inline struct hm_mm_dims hm_mm_dims_of(const struct hm_tensor *a, const struct hm_tensor *b,
                                              bool ta, bool tb)
{
    struct hm_mm_dims d;
    int an = a->n_dims, bn = b->n_dims;
    if (bn == 2) {
        int64_t rows = hm_nelements(a) / a->shape[an - 1], cols = a->shape[an - 1];
        d.batch = 1;
        d.M = ta ? cols : rows;
        d.K = ta ? rows : cols;
    } else {
        d.batch = hm_nelements(b) / (b->shape[bn - 1] * b->shape[bn - 2]);
        d.M = ta ? a->shape[an - 1] : a->shape[an - 2];
        d.K = ta ? a->shape[an - 2] : a->shape[an - 1];
    }
    d.N = tb ? b->shape[bn - 2] : b->shape[bn - 1];
    return d;
}

void hm_graph_push(struct hm_graph *g, bool backward, struct hm_tensor *t);

/* New node in ctx with the given shape; type f32 unless changed. */
struct hm_tensor *hm_new_node(struct hm_ctx *ctx, enum hm_op op, enum hm_dtype type, int n_dims,
                              const int64_t *shape);
/* A view of root(x) at byte offset `offs` (relative to x's own data) with a new shape. */
struct hm_tensor *hm_view_of(struct hm_ctx *ctx, struct hm_tensor *x, int n_dims,
                             const int64_t *shape, size_t offs);

/*
 * Dropout keep decision, counter-based: a splitmix64-style mix of (seed, step, id, index). Plain
 * C with 64-bit integer ops only, so the CUDA backend can use the same function (HM_HOSTDEV) and
 * masks are identical across backends and resumable with no RNG state.
 */
#ifndef HM_HOSTDEV
#define HM_HOSTDEV
#endif
static HM_HOSTDEV inline uint64_t hm_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static HM_HOSTDEV inline uint32_t hm_dropout_bits(uint64_t seed, uint64_t step, uint32_t id,
                                                  uint64_t i)
{
    uint64_t k = hm_mix64(seed + 0x9e3779b97f4a7c15ULL);
    k = hm_mix64(k ^ (step * 0xd1b54a32d192ed03ULL));
    k = hm_mix64(k ^ ((uint64_t)id * 0x8cb92ba72f3d8dd7ULL));
    return (uint32_t)(hm_mix64(k ^ i) >> 32);
}
/* Global element index of element 0 of an n-element dropout input (struct hm_runtime). */
static HM_HOSTDEV inline uint64_t hm_dropout_offset(uint64_t sample0, uint64_t samples, int64_t n)
{
    return samples ? sample0 * ((uint64_t)n / samples) : 0;
}
/* keep iff bits >= threshold, threshold = p * 2^32 (rounded down, saturated). */
static HM_HOSTDEV inline uint32_t hm_dropout_threshold(float p)
{
    double t = (double)p * 4294967296.0;
    return t >= 4294967295.0 ? 4294967295u : (uint32_t)t;
}

#endif
