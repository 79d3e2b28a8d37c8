/*
 * core-impl.h - private structures of the tensor core: the metadata arena, parameter blocks and
 * graphs. Only src/core/ includes it (and white-box tests); backends read nodes through the public
 * include/hermes/ops.h and are reached through the checked API of include/hermes/backend.h.
 * Invariant: a view's view_src is always a root (a tensor that owns storage), never a view.
 */
#ifndef HERMES_CORE_IMPL_H
#define HERMES_CORE_IMPL_H

#include "hermes/backend.h"
#include "hermes/ops.h"
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
    uint64_t plan_id; /* unique per hm_graph_plan: names the node sequences for run_sequence */
};

static inline struct hm_tensor *hm_root(struct hm_tensor *t)
{
    return t->view_src ? t->view_src : t;
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

void hm_graph_push(struct hm_graph *g, bool backward, struct hm_tensor *t);
/* Abort (an internal error) unless t's source slots are what ops.def says for its op: every slot
 * below n_src set unless optional, every slot from n_src on NULL. */
void hm_node_check(const struct hm_tensor *t);

/* New node in ctx with the given shape; type f32 unless changed. */
struct hm_tensor *hm_new_node(struct hm_ctx *ctx, enum hm_op op, enum hm_dtype type, int n_dims,
                              const int64_t *shape);
/* A view of root(x) at byte offset `offs` (relative to x's own data) with a new shape. */
struct hm_tensor *hm_view_of(struct hm_ctx *ctx, struct hm_tensor *x, int n_dims,
                             const int64_t *shape, size_t offs);

#endif
