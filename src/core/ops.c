/*
 * ops.c - op builders. Each checks shapes with HM_ASSERT (graphs are built by our own model code
 * from validated configs), creates the output node, stores its parameters inline and links its
 * sources. Nothing is computed here; see graph.c for execution and autograd.c for backward rules.
 */
#include "core-impl.h"

#include <math.h>
#include <stdio.h>

static struct hm_tensor *node_like(struct hm_ctx *ctx, enum hm_op op, const struct hm_tensor *x)
{
    struct hm_tensor *t = hm_new_node(ctx, op, x->type, x->n_dims, x->shape);
    snprintf(t->name, sizeof t->name, "%s", hm_op_name(op));
    return t;
}

/* Sources of a new node, in slot order (NULL: unused or optional). */
static void link_srcs(struct hm_tensor *t, struct hm_tensor *s0, struct hm_tensor *s1, struct hm_tensor *s2,
                      struct hm_tensor *s3)
{
    t->src[0] = s0, t->src[1] = s1, t->src[2] = s2, t->src[3] = s3;
}

/* An f32 tensor a node writes besides dst (an extra output slot of ops.def). */
static struct hm_tensor *extra_output(struct hm_ctx *ctx, int n_dims, const int64_t *shape, const char *name)
{
    struct hm_tensor *t = hm_new_tensor(ctx, HM_DTYPE_F32, n_dims, shape);
    snprintf(t->name, sizeof t->name, "%s", name);
    return t;
}

/* Activations are f32 or bf16 storage. */
static void assert_float(const struct hm_tensor *t)
{
    HM_ASSERT(t->type == HM_DTYPE_F32 || t->type == HM_DTYPE_BF16);
}

struct hm_tensor *hm_reshape(struct hm_ctx *ctx, struct hm_tensor *x, int n_dims, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < n_dims; i++)
        n *= shape[i];
    HM_ASSERT(n == hm_nelements(x));
    return hm_view_of(ctx, x, n_dims, shape, 0);
}

struct hm_tensor *hm_slice(struct hm_ctx *ctx, struct hm_tensor *x, int dim, int64_t start, int64_t len)
{
    HM_ASSERT(dim >= 0 && dim < x->n_dims);
    HM_ASSERT(start >= 0 && len >= 1 && start + len <= x->shape[dim]);
    for (int i = 0; i < dim; i++)
        HM_ASSERT(x->shape[i] == 1); /* otherwise the slice is not contiguous */
    int64_t inner = 1;
    for (int i = dim + 1; i < x->n_dims; i++)
        inner *= x->shape[i];
    int64_t shape[HM_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[dim] = len;
    return hm_view_of(ctx, x, x->n_dims, shape, (size_t)(start * inner) * hm_dtype_size(x->type));
}

struct hm_tensor *hm_add(struct hm_ctx *ctx, struct hm_tensor *a, struct hm_tensor *b)
{
    assert_float(a);
    HM_ASSERT(a->type == b->type && b->n_dims <= a->n_dims);
    for (int i = 1; i <= b->n_dims; i++)
        HM_ASSERT(b->shape[b->n_dims - i] == a->shape[a->n_dims - i]);
    struct hm_tensor *t = node_like(ctx, HM_OP_ADD, a);
    link_srcs(t, a, b, NULL, NULL);
    return t;
}

struct hm_tensor *hm_mul(struct hm_ctx *ctx, struct hm_tensor *a, struct hm_tensor *b)
{
    assert_float(a);
    HM_ASSERT(a->type == b->type && hm_nelements(a) == hm_nelements(b));
    struct hm_tensor *t = node_like(ctx, HM_OP_MUL, a);
    link_srcs(t, a, b, NULL, NULL);
    return t;
}

struct hm_tensor *hm_scale(struct hm_ctx *ctx, struct hm_tensor *x, float s)
{
    assert_float(x);
    struct hm_tensor *t = node_like(ctx, HM_OP_SCALE, x);
    t->src[0] = x;
    hm_op_set_f32(t, 0, s);
    return t;
}

struct hm_tensor *hm_matmul_ex(struct hm_ctx *ctx, struct hm_tensor *a, struct hm_tensor *b,
                               struct hm_tensor *bias, bool trans_a, bool trans_b, float alpha)
{
    assert_float(a);
    HM_ASSERT(a->type == b->type && a->n_dims >= 2 && b->n_dims >= 2);
    int64_t shape[HM_MAX_DIMS];
    int n_dims;
    struct hm_mm_dims d = hm_mm_dims_of(a, b, trans_a, trans_b);
    int64_t kb = trans_b ? b->shape[b->n_dims - 1] : b->shape[b->n_dims - 2];
    HM_ASSERT(kb == d.K); /* inner dimensions must agree */
    if (b->n_dims == 2) {
        if (trans_a) {
            n_dims = 2;
            shape[0] = d.M;
        } else {
            n_dims = a->n_dims;
            memcpy(shape, a->shape, sizeof shape);
        }
    } else {
        HM_ASSERT(a->n_dims == b->n_dims); /* batched: same leading dims */
        for (int i = 0; i < b->n_dims - 2; i++)
            HM_ASSERT(a->shape[i] == b->shape[i]);
        n_dims = b->n_dims;
        memcpy(shape, b->shape, sizeof shape);
        shape[n_dims - 2] = d.M;
    }
    shape[n_dims - 1] = d.N;
    if (bias)
        HM_ASSERT(bias->type == a->type && hm_nelements(bias) == d.N);
    struct hm_tensor *t = hm_new_node(ctx, HM_OP_MATMUL, a->type, n_dims, shape);
    snprintf(t->name, sizeof t->name, "matmul");
    link_srcs(t, a, b, bias, NULL);
    hm_op_set_f32(t, 0, alpha);
    t->op_params[1] = trans_a;
    t->op_params[2] = trans_b;
    return t;
}

struct hm_tensor *hm_matmul(struct hm_ctx *ctx, struct hm_tensor *a, struct hm_tensor *b,
                            bool trans_a, bool trans_b)
{
    return hm_matmul_ex(ctx, a, b, NULL, trans_a, trans_b, 1.0f);
}

struct hm_tensor *hm_linear(struct hm_ctx *ctx, struct hm_tensor *x, struct hm_tensor *w,
                            struct hm_tensor *bias)
{
    HM_ASSERT(w->n_dims == 2);
    return hm_matmul_ex(ctx, x, w, bias, false, true, 1.0f);
}

struct hm_tensor *hm_linear_rows(struct hm_ctx *ctx, struct hm_tensor *x, struct hm_tensor *w,
                                 struct hm_tensor *bias)
{
    struct hm_tensor *t = hm_linear(ctx, x, w, bias);
    t->op_params[3] = 1; /* row-invariant kernel */
    return t;
}

struct hm_tensor *hm_embedding(struct hm_ctx *ctx, struct hm_tensor *w, struct hm_tensor *ids)
{
    assert_float(w);
    HM_ASSERT(w->n_dims == 2 && ids->type == HM_DTYPE_I32 && ids->n_dims < HM_MAX_DIMS);
    int64_t shape[HM_MAX_DIMS];
    memcpy(shape, ids->shape, sizeof shape);
    shape[ids->n_dims] = w->shape[1];
    struct hm_tensor *t = hm_new_node(ctx, HM_OP_EMBEDDING, w->type, ids->n_dims + 1, shape);
    snprintf(t->name, sizeof t->name, "embedding");
    link_srcs(t, w, ids, NULL, NULL);
    return t;
}

struct hm_tensor *hm_rms_norm(struct hm_ctx *ctx, struct hm_tensor *x, struct hm_tensor *w, float eps)
{
    assert_float(x);
    HM_ASSERT(w->type == x->type && hm_nelements(w) == x->shape[x->n_dims - 1]);
    struct hm_tensor *t = node_like(ctx, HM_OP_RMS_NORM, x);
    link_srcs(t, x, w, NULL, NULL);
    hm_op_set_f32(t, 0, eps);
    return t;
}

struct hm_tensor *hm_add_rms_norm(struct hm_ctx *ctx, struct hm_tensor *a, struct hm_tensor *b,
                                  struct hm_tensor *w, float eps, struct hm_tensor **sum)
{
    assert_float(a);
    HM_ASSERT(sum && b->type == a->type && hm_same_shape(a, b));
    HM_ASSERT(w->type == a->type && hm_nelements(w) == a->shape[a->n_dims - 1]);
    struct hm_tensor *s = node_like(ctx, HM_OP_ADD_RMS_NORM, a);
    struct hm_tensor *h = hm_new_node(ctx, HM_OP_SIDE_OUTPUT, a->type, a->n_dims, a->shape);
    snprintf(h->name, sizeof h->name, "add_rms_norm.out");
    h->src[0] = s;
    link_srcs(s, a, b, w, h);
    hm_op_set_f32(s, 0, eps);
    s->op_params[1] = s->type == HM_DTYPE_BF16; /* round the sum to bf16 before normalising it */
    *sum = s;
    return h;
}

struct hm_tensor *hm_rope(struct hm_ctx *ctx, struct hm_tensor *x, float theta)
{
    return hm_rope_at(ctx, x, theta, NULL);
}

/* A per-row i32 input (slots, positions) of the (B, T) rows of x. */
static void assert_row_ids(const struct hm_tensor *ids, const struct hm_tensor *x)
{
    HM_ASSERT(ids->type == HM_DTYPE_I32 && ids->op == HM_OP_NONE);
    HM_ASSERT(hm_nelements(ids) == x->shape[0] * x->shape[1]);
}

struct hm_tensor *hm_rope_at(struct hm_ctx *ctx, struct hm_tensor *x, float theta,
                             struct hm_tensor *pos)
{
    assert_float(x);
    HM_ASSERT(x->n_dims == 4 && x->shape[3] % 2 == 0);
    if (pos)
        assert_row_ids(pos, x);
    struct hm_tensor *t = node_like(ctx, HM_OP_ROPE, x);
    link_srcs(t, x, pos, NULL, NULL);
    hm_op_set_f32(t, 0, theta);
    return t;
}

struct hm_tensor *hm_attention(struct hm_ctx *ctx, struct hm_tensor *q, struct hm_tensor *k,
                               struct hm_tensor *v)
{
    return hm_attention_docs(ctx, q, k, v, NULL);
}

struct hm_tensor *hm_attention_docs(struct hm_ctx *ctx, struct hm_tensor *q, struct hm_tensor *k,
                                    struct hm_tensor *v, struct hm_tensor *doc_start)
{
    assert_float(q);
    HM_ASSERT(q->n_dims == 4 && k->n_dims == 4 && hm_same_shape(k, v));
    HM_ASSERT(k->type == q->type && v->type == q->type);
    int64_t B = q->shape[0], T = q->shape[1], NH = q->shape[2], HD = q->shape[3];
    HM_ASSERT(k->shape[0] == B && k->shape[3] == HD && k->shape[1] >= T);
    HM_ASSERT(NH % k->shape[2] == 0); /* num_kv_heads divides num_heads */
    struct hm_tensor *t = node_like(ctx, HM_OP_ATTENTION, q);
    if (doc_start) { /* a leaf input: attention_back reads it through this node (its src[3]) */
        HM_ASSERT(doc_start->type == HM_DTYPE_I32 && doc_start->op == HM_OP_NONE);
        HM_ASSERT(doc_start->n_dims == 2 && doc_start->shape[0] == B && doc_start->shape[1] == T);
    }
    link_srcs(t, q, k, v, doc_start);
    t->src[HM_ATTN_LSE] = extra_output(ctx, 3, (int64_t[]){B, NH, T}, "attention.lse");
    return t;
}

struct hm_tensor *hm_attention_at(struct hm_ctx *ctx, struct hm_tensor *q, struct hm_tensor *k,
                                  struct hm_tensor *v, struct hm_tensor *slot,
                                  struct hm_tensor *pos)
{
    assert_float(q);
    HM_ASSERT(q->n_dims == 4 && k->n_dims == 4 && hm_same_shape(k, v));
    HM_ASSERT(k->type == q->type && v->type == q->type && k->shape[3] == q->shape[3]);
    HM_ASSERT(q->shape[2] % k->shape[2] == 0);
    assert_row_ids(slot, q);
    assert_row_ids(pos, q);
    int64_t B = q->shape[0], T = q->shape[1], NH = q->shape[2];
    struct hm_tensor *t = node_like(ctx, HM_OP_ATTENTION, q);
    link_srcs(t, q, k, v, NULL);
    t->src[4] = slot;
    t->src[5] = pos;
    t->src[HM_ATTN_LSE] = extra_output(ctx, 3, (int64_t[]){B, NH, T}, "attention.lse");
    return t;
}

struct hm_tensor *hm_kv_write(struct hm_ctx *ctx, struct hm_tensor *cache, struct hm_tensor *x)
{
    HM_ASSERT(x->n_dims == 4 && x->shape[0] == cache->shape[0] && x->shape[1] <= cache->shape[1]);
    return hm_kv_write_at(ctx, cache, x, NULL, NULL);
}

struct hm_tensor *hm_kv_write_at(struct hm_ctx *ctx, struct hm_tensor *cache, struct hm_tensor *x,
                                 struct hm_tensor *slot, struct hm_tensor *pos)
{
    HM_ASSERT(cache->n_dims == 4 && x->n_dims == 4 && cache->type == x->type);
    HM_ASSERT(x->shape[2] == cache->shape[2] && x->shape[3] == cache->shape[3]);
    HM_ASSERT(!slot == !pos);
    if (slot) {
        assert_row_ids(slot, x);
        assert_row_ids(pos, x);
    }
    struct hm_tensor *t = hm_view_of(ctx, cache, 4, cache->shape, 0);
    t->op = HM_OP_KV_WRITE;
    t->src[1] = x;
    t->src[2] = slot;
    t->src[3] = pos;
    snprintf(t->name, sizeof t->name, "kv_write");
    return t;
}

struct hm_tensor *hm_gelu(struct hm_ctx *ctx, struct hm_tensor *x)
{
    assert_float(x);
    struct hm_tensor *t = node_like(ctx, HM_OP_GELU, x);
    t->src[0] = x;
    return t;
}

struct hm_tensor *hm_swiglu(struct hm_ctx *ctx, struct hm_tensor *gate, struct hm_tensor *up)
{
    assert_float(gate);
    HM_ASSERT(up->type == gate->type && hm_same_shape(gate, up));
    struct hm_tensor *t = node_like(ctx, HM_OP_SWIGLU, gate);
    link_srcs(t, gate, up, NULL, NULL);
    return t;
}

struct hm_tensor *hm_dropout(struct hm_ctx *ctx, struct hm_tensor *x, float p, int32_t id)
{
    assert_float(x);
    HM_ASSERT(p >= 0.0f && p < 1.0f);
    if (p == 0.0f)
        return x;
    struct hm_tensor *t = node_like(ctx, HM_OP_DROPOUT, x);
    t->src[0] = x;
    hm_op_set_f32(t, 0, p);
    t->op_params[1] = id;
    return t;
}

struct hm_tensor *hm_cross_entropy(struct hm_ctx *ctx, struct hm_tensor *logits,
                                   struct hm_tensor *targets, int32_t ignore_index)
{
    assert_float(logits);
    HM_ASSERT(targets->type == HM_DTYPE_I32 && hm_nelements(targets) == hm_nrows(logits));
    struct hm_tensor *t = hm_new_node(ctx, HM_OP_CROSS_ENTROPY, HM_DTYPE_F32, 1, (int64_t[]){1});
    snprintf(t->name, sizeof t->name, "loss");
    link_srcs(t, logits, targets, extra_output(ctx, 1, (int64_t[]){hm_nrows(logits)}, "cross_entropy.lse"), NULL);
    t->op_params[0] = ignore_index;
    return t;
}
