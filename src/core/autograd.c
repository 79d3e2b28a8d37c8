/*
 * autograd.c - reverse-mode autograd: one backward rule per forward op, emitted as ordinary nodes.
 * Gradient storage is a leaf tensor per root (parameters: the block's gradient tensor); backward
 * nodes are views of that storage with a kernel. The first write to a planned gradient overwrites
 * (acc bit 0), later writes accumulate (+=); parameter gradients always accumulate, so
 * micro-batches add up until the trainer zeroes the gradient block. A gradient of a view is the
 * matching view of its root's gradient (a partial view first zero-fills the root).
 */
#include "core-impl.h"

#include <stdio.h>

struct ab {
    struct hm_graph *g;
    struct hm_ctx *ctx;
};

static bool requires(const struct hm_tensor *t)
{
    return t && (t->flags & (HM_FLAG_PARAM | HM_FLAG_REQUIRES_GRAD));
}

static struct hm_tensor *emit(struct ab *ab, enum hm_op op, struct hm_tensor *gstore)
{
    struct hm_tensor *n = hm_view_of(ab->ctx, gstore, gstore->n_dims, gstore->shape, 0);
    n->op = op;
    n->src[0] = NULL; /* the node writes gstore's storage; its sources are the rule's to set */
    snprintf(n->name, sizeof n->name, "%s", hm_op_name(op));
    hm_graph_push(ab->g, true, n);
    return n;
}

/* Whether the next write into gradient storage `gv` must accumulate; marks it written. */
static bool take_acc(struct hm_tensor *gv)
{
    struct hm_tensor *r = hm_root(gv);
    if (r->data) /* block gradient: always += */
        return true;
    bool was = r->flags & HM_FLAG_GRAD_INIT;
    r->flags |= HM_FLAG_GRAD_INIT;
    return was;
}

static struct hm_tensor *grad_of(struct ab *ab, struct hm_tensor *t)
{
    if (t->grad)
        return t->grad;
    if (t->view_src) {
        struct hm_tensor *gr = grad_of(ab, t->view_src);
        if (hm_nbytes(t) != hm_nbytes(t->view_src) && !(hm_root(gr)->flags & HM_FLAG_GRAD_INIT) &&
            !hm_root(gr)->data) {
            struct hm_tensor *z = emit(ab, HM_OP_FILL, gr); /* zero the parts no slice covers */
            hm_op_set_f32(z, 0, 0.0f);
            take_acc(gr);
        }
        size_t offs = t->view_offs - (gr->view_src ? gr->view_offs : 0);
        t->grad = hm_view_of(ab->ctx, gr, t->n_dims, t->shape, offs);
        return t->grad;
    }
    /* A gradient has its tensor's dtype: bf16 activations get bf16 gradients, as in PyTorch's
     * autocast. Parameters (f32 masters, or bf16 copies pointing at them) already have ->grad. */
    struct hm_tensor *gt = hm_new_tensor(ab->ctx, t->type, t->n_dims, t->shape);
    gt->flags |= HM_FLAG_GRAD;
    snprintf(gt->name, sizeof gt->name, "%.40s.grad", t->name);
    t->grad = gt;
    return gt;
}

/* Emit `op` writing grad(t); returns the node with its acc bit 0 set as needed. */
static struct hm_tensor *emit_into(struct ab *ab, enum hm_op op, struct hm_tensor *t)
{
    struct hm_tensor *gt = grad_of(ab, t);
    bool acc = take_acc(gt);
    struct hm_tensor *n = emit(ab, op, gt);
    n->acc = acc ? 1u : 0u;
    return n;
}

/* Extra output slot of a multi-output backward node: grad(t) in src[slot], acc bit `bit`. */
static void extra_out(struct ab *ab, struct hm_tensor *n, int slot, int bit, struct hm_tensor *t)
{
    struct hm_tensor *gt = grad_of(ab, t);
    if (take_acc(gt))
        n->acc |= 1u << bit;
    n->src[slot] = gt;
}

static struct hm_tensor *flat2d(struct ab *ab, struct hm_tensor *t)
{
    int64_t c = t->shape[t->n_dims - 1];
    if (t->n_dims == 2)
        return t;
    return hm_view_of(ab->ctx, t, 2, (int64_t[]){hm_nelements(t) / c, c}, 0);
}

static void backward_matmul(struct ab *ab, struct hm_tensor *y, struct hm_tensor *g)
{
    struct hm_tensor *a = y->src[0], *b = y->src[1], *bias = y->src[2];
    bool ta = y->op_params[1], tb = y->op_params[2];
    bool flat = b->n_dims == 2;
    struct hm_tensor *g2 = flat ? flat2d(ab, g) : g;
    if (requires(a)) {
        struct hm_tensor *n = emit_into(ab, HM_OP_MATMUL, a);
        n->op_params[0] = y->op_params[0];
        if (!ta) { /* dA = g @ op(B)^T */
            n->src[0] = g2, n->src[1] = b, n->op_params[1] = 0, n->op_params[2] = !tb;
        } else { /* dA = op(B) @ g^T */
            n->src[0] = b, n->src[1] = g2, n->op_params[1] = tb, n->op_params[2] = 1;
        }
    }
    if (requires(b)) {
        struct hm_tensor *a2 = flat ? flat2d(ab, a) : a;
        struct hm_tensor *n = emit_into(ab, HM_OP_MATMUL, b);
        n->op_params[0] = y->op_params[0];
        if (!tb) { /* dB = op(A)^T @ g */
            n->src[0] = a2, n->src[1] = g2, n->op_params[1] = !ta, n->op_params[2] = 0;
        } else { /* dB = g^T @ op(A) */
            n->src[0] = g2, n->src[1] = a2, n->op_params[1] = 1, n->op_params[2] = ta;
        }
    }
    if (requires(bias)) {
        struct hm_tensor *n = emit_into(ab, HM_OP_REDUCE_ROWS, bias);
        n->src[0] = g;
        hm_op_set_f32(n, 0, 1.0f);
    }
}

/*
 * y = a + b with a of y's shape: a's gradient may simply BE g (its storage), instead of a copy of
 * it, when a has no gradient yet and owns none (not a view, not block storage). Later
 * contributions to grad(a) then accumulate into g's storage, which nothing else reads afterwards:
 * b's copy of g is emitted right now, before any of them. Only one operand may alias g. Along
 * the residual stream this chains: one buffer carries the stream's gradient through every layer.
 */
static bool can_alias_grad(const struct hm_tensor *y, const struct hm_tensor *g)
{
    const struct hm_tensor *a = y->src[0];
    if (a->grad || a->view_src || a->data || a == y->src[1] ||
        (a->flags & (HM_FLAG_PARAM | HM_FLAG_BLOCK)))
        return false;
    if (hm_root((struct hm_tensor *)g)->data || a->n_dims != g->n_dims || a->type != g->type)
        return false;
    for (int d = 0; d < a->n_dims; d++)
        if (a->shape[d] != g->shape[d])
            return false;
    return hm_root((struct hm_tensor *)g)->flags & HM_FLAG_GRAD_INIT;
}

static void backward_add(struct ab *ab, struct hm_tensor *y, struct hm_tensor *g)
{
    for (int i = 0; i < 2; i++) {
        if (!requires(y->src[i]))
            continue;
        if (i == 0 && can_alias_grad(y, g)) { /* grad(a) starts as g itself: no copy */
            y->src[0]->grad = g;
            continue;
        }
        struct hm_tensor *n = emit_into(ab, HM_OP_REDUCE_ROWS, y->src[i]);
        n->src[0] = g;
        hm_op_set_f32(n, 0, 1.0f);
    }
}

/*
 * s = a + b, h = rms_norm(s, w) (h is the side output in src[3]). One node does what the unfused
 * rules emit in the same order: ds (+)= rms_norm_back(dh) into grad(s), then grad(b) = ds and
 * grad(a) = ds (aliased as for ADD when it can be), and dw. Without a gradient for h only the
 * add is left.
 */
static void backward_add_rms_norm(struct ab *ab, struct hm_tensor *y)
{
    struct hm_tensor *a = y->src[0], *b = y->src[1], *w = y->src[2], *dh = y->src[3]->grad;
    if (!dh) {
        backward_add(ab, y, y->grad);
        return;
    }
    struct hm_tensor *n = emit_into(ab, HM_OP_ADD_RMS_NORM_BACK, y); /* dst = ds */
    n->src[0] = dh, n->src[1] = y, n->src[2] = w;
    n->op_params[0] = y->op_params[0];
    n->op_params[1] = y->grad->type == HM_DTYPE_BF16;
    if (requires(b))
        extra_out(ab, n, 3, 1, b);
    if (requires(a)) {
        if (can_alias_grad(y, y->grad))
            a->grad = y->grad;
        else
            extra_out(ab, n, 4, 2, a);
    }
    if (requires(w))
        extra_out(ab, n, 5, 3, w);
}

static void backward_node(struct ab *ab, struct hm_tensor *y)
{
    struct hm_tensor *g = y->grad, *n;
    struct hm_tensor *s0 = y->src[0], *s1 = y->src[1];
    switch (y->op) {
    case HM_OP_VIEW: /* its gradient already is a view of the root's gradient */
    case HM_OP_SIDE_OUTPUT: /* its gradient is read by its writer's rule */
        break;
    case HM_OP_ADD:
        backward_add(ab, y, g);
        break;
    case HM_OP_ADD_RMS_NORM:
        backward_add_rms_norm(ab, y);
        break;
    case HM_OP_MUL:
        for (int i = 0; i < 2; i++) {
            if (!requires(y->src[i]))
                continue;
            n = emit_into(ab, HM_OP_MUL, y->src[i]);
            n->src[0] = g;
            n->src[1] = y->src[1 - i];
        }
        break;
    case HM_OP_SCALE:
        n = emit_into(ab, HM_OP_REDUCE_ROWS, s0);
        n->src[0] = g;
        n->op_params[0] = y->op_params[0];
        break;
    case HM_OP_MATMUL:
        backward_matmul(ab, y, g);
        break;
    case HM_OP_EMBEDDING:
        n = emit_into(ab, HM_OP_EMBEDDING_BACK, s0);
        n->src[0] = g;
        n->src[1] = s1;
        break;
    case HM_OP_RMS_NORM:
        n = emit_into(ab, HM_OP_RMS_NORM_BACK, s0); /* dx, and dw in src[3] */
        n->src[0] = g, n->src[1] = s0, n->src[2] = s1;
        n->op_params[0] = y->op_params[0];
        if (requires(s1))
            extra_out(ab, n, 3, 1, s1);
        break;
    case HM_OP_ROPE:
        HM_ASSERT(!y->src[1]); /* per-row positions: serving graphs, never differentiated */
        n = emit_into(ab, HM_OP_ROPE_BACK, s0);
        n->src[0] = g;
        n->op_params[0] = y->op_params[0];
        break;
    case HM_OP_ATTENTION:
        HM_ASSERT(!y->src[4]); /* per-row slots: serving graphs, never differentiated */
        n = emit_into(ab, HM_OP_ATTENTION_BACK, s0); /* dq; dk, dv in src[6], src[7] */
        n->src[0] = g, n->src[1] = s0, n->src[2] = s1, n->src[3] = y->src[2];
        n->src[4] = y, n->src[5] = y->src[HM_ATTN_LSE]; /* doc_start stays y->src[3] */
        extra_out(ab, n, 6, 1, s1);
        extra_out(ab, n, 7, 2, y->src[2]);
        break;
    case HM_OP_GELU:
        n = emit_into(ab, HM_OP_GELU_BACK, s0);
        n->src[0] = g, n->src[1] = s0;
        break;
    case HM_OP_SWIGLU:
        n = emit_into(ab, HM_OP_SWIGLU_BACK, s0); /* dgate; dup in src[3] */
        n->src[0] = g, n->src[1] = s0, n->src[2] = s1;
        extra_out(ab, n, 3, 1, s1);
        break;
    case HM_OP_DROPOUT: /* the same mask applied to the gradient */
        n = emit_into(ab, HM_OP_DROPOUT, s0);
        n->src[0] = g;
        memcpy(n->op_params, y->op_params, sizeof n->op_params);
        break;
    case HM_OP_CROSS_ENTROPY:
        n = emit_into(ab, HM_OP_CROSS_ENTROPY_BACK, s0);
        n->src[0] = g, n->src[1] = s0, n->src[2] = s1, n->src[3] = y->src[2];
        n->op_params[0] = y->op_params[0];
        break;
    default: /* hm_graph_build_backward let through an op that ops.def marks differentiable */
        HM_ASSERT(!"ops.def gives this op a backward rule, but autograd.c has none");
    }
}

/* Whether y's backward rule has a gradient to start from: its own, or one of a side output it
 * writes (the normalised output of ADD_RMS_NORM, when nothing reads the sum). */
static bool has_grad(const struct hm_tensor *y)
{
    if (y->grad)
        return true;
    const struct hm_op_info *info = hm_op_info(y->op);
    for (int j = info->n_in; j < info->n_src; j++)
        if (y->src[j] && y->src[j]->op == HM_OP_SIDE_OUTPUT && y->src[j]->grad)
            return true;
    return false;
}

enum hm_status hm_graph_build_backward(struct hm_graph *g, struct hm_tensor *loss)
{
    HM_ASSERT(!g->work && !g->has_backward);
    if (!(loss->flags & HM_FLAG_OUTPUT))
        hm_graph_build_forward(g, loss);
    for (int i = 0; i < g->n_fwd; i++) {
        struct hm_tensor *t = g->fwd[i];
        for (int j = 0; j < hm_op_info(t->op)->n_in; j++)
            if (requires(t->src[j]))
                t->flags |= HM_FLAG_REQUIRES_GRAD;
        if ((t->flags & HM_FLAG_REQUIRES_GRAD) && !hm_op_info(t->op)->grad)
            return hm_fail(HM_ERR_UNSUPPORTED, "backward: op '%s' (node '%s') has no backward rule; "
                                               "it is for inference only", hm_op_name(t->op), t->name);
    }
    if (!requires(loss))
        return hm_fail(HM_ERR_USAGE, "backward: '%s' does not depend on any parameter "
                                     "(declare parameters in a block created with grads)",
                       loss->name);
    struct ab ab = {.g = g, .ctx = g->ctx};
    struct hm_tensor *seed = emit_into(&ab, HM_OP_FILL, loss);
    seed->op_params[1] = 1; /* value = rt.loss_scale at run time */
    for (int i = g->n_fwd - 1; i >= 0; i--) {
        struct hm_tensor *y = g->fwd[i];
        if (!(y->flags & HM_FLAG_REQUIRES_GRAD) || !has_grad(y))
            continue;
        backward_node(&ab, y);
    }
    for (int i = 0; i < g->n_bwd; i++)
        hm_node_check(g->bwd[i]);
    g->has_backward = true;
    return HM_OK;
}
