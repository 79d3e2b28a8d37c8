/*
 * tensor.c - the metadata arena (hm_ctx), tensor creation and naming, host transfers through the
 * tensor's backend buffer, bf16 conversion, and hm_block (parameters and other persistent state:
 * one data buffer and optionally one gradient buffer with the same packed layout).
 * Tensors are never freed one by one: a ctx or block frees all of its tensors at once.
 */
#include "core-impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

/* ops.def as a table. The column checks below fail the build for an impossible row. */
static const struct hm_op_info op_info[HM_OP_COUNT] = {
#define HM_OP(NAME, name, n_src, n_in, opt, inplace, grad) [HM_OP_##NAME] = {#name, n_src, n_in, opt, inplace, true, grad},
#define HM_OP_PSEUDO(NAME, name, n_src, n_in, opt, inplace, grad) [HM_OP_##NAME] = {#name, n_src, n_in, opt, inplace, false, grad},
#include "hermes/ops.def"
#undef HM_OP_PSEUDO
#undef HM_OP
};
#define HM_OP(NAME, name, n_src, n_in, opt, inplace, grad)                                          \
    _Static_assert((n_in) <= (n_src) && (n_src) <= HM_MAX_SRC && (opt) >> (n_src) == 0 &&            \
                       (inplace) >> (n_in) == 0 && ((grad) == 0 || (grad) == 1),                   \
                   "ops.def: impossible columns for " #name);
#include "hermes/ops.def"
#undef HM_OP

const struct hm_op_info *hm_op_info(enum hm_op op)
{
    return (unsigned)op < HM_OP_COUNT ? &op_info[op] : NULL;
}

const char *hm_op_name(enum hm_op op)
{
    return (unsigned)op < HM_OP_COUNT ? op_info[op].name : "?";
}

size_t hm_dtype_size(enum hm_dtype type)
{
    switch (type) {
    case HM_DTYPE_F32: return 4;
    case HM_DTYPE_BF16: return 2;
    case HM_DTYPE_I32: return 4;
    default: return 0;
    }
}

const char *hm_dtype_name(enum hm_dtype type)
{
    switch (type) {
    case HM_DTYPE_F32: return "f32";
    case HM_DTYPE_BF16: return "bf16";
    case HM_DTYPE_I32: return "i32";
    case HM_DTYPE_Q8_0: return "q8_0";
    default: return "?";
    }
}

/* ---- ctx ------------------------------------------------------------------------------------ */

enum hm_status hm_ctx_new(struct hm_ctx **out)
{
    struct hm_ctx *ctx = hm_calloc(1, sizeof(*ctx));
    if (!ctx)
        return hm_fail(HM_ERR_NOMEM, "out of memory creating a tensor context");
    *out = ctx;
    return HM_OK;
}

void hm_ctx_free(struct hm_ctx *ctx)
{
    if (!ctx)
        return;
    for (struct hm_ctx_chunk *c = ctx->head, *n; c; c = n) {
        n = c->next;
        hm_free(c);
    }
    hm_free(ctx);
}

static struct hm_tensor *ctx_alloc(struct hm_ctx *ctx)
{
    if (!ctx->head || ctx->head->used == HM_CTX_CHUNK) {
        struct hm_ctx_chunk *c = hm_calloc(1, sizeof(*c));
        HM_ASSERT(c != NULL); /* metadata is small; treat exhaustion as fatal */
        c->next = ctx->head;
        ctx->head = c;
    }
    struct hm_tensor *t = &ctx->head->t[ctx->head->used++];
    memset(t, 0, sizeof(*t));
    t->id = ctx->n_tensors++;
    return t;
}

static void set_shape(struct hm_tensor *t, int n_dims, const int64_t *shape)
{
    HM_ASSERT(n_dims >= 1 && n_dims <= HM_MAX_DIMS);
    t->n_dims = n_dims;
    for (int i = 0; i < HM_MAX_DIMS; i++) {
        t->shape[i] = i < n_dims ? shape[i] : 1;
        HM_ASSERT(t->shape[i] >= 1);
    }
}

struct hm_tensor *hm_new_node(struct hm_ctx *ctx, enum hm_op op, enum hm_dtype type, int n_dims,
                              const int64_t *shape)
{
    struct hm_tensor *t = ctx_alloc(ctx);
    t->type = type;
    t->op = op;
    set_shape(t, n_dims, shape);
    return t;
}

struct hm_tensor *hm_new_tensor(struct hm_ctx *ctx, enum hm_dtype type, int n_dims,
                                const int64_t *shape)
{
    return hm_new_node(ctx, HM_OP_NONE, type, n_dims, shape);
}

struct hm_tensor *hm_new_input(struct hm_ctx *ctx, enum hm_dtype type, int n_dims,
                               const int64_t *shape)
{
    struct hm_tensor *t = hm_new_tensor(ctx, type, n_dims, shape);
    t->flags |= HM_FLAG_INPUT;
    return t;
}

struct hm_tensor *hm_view_of(struct hm_ctx *ctx, struct hm_tensor *x, int n_dims,
                             const int64_t *shape, size_t offs)
{
    struct hm_tensor *v = hm_new_node(ctx, HM_OP_VIEW, x->type, n_dims, shape);
    v->src[0] = x;
    v->view_src = hm_root(x);
    v->view_offs = (x->view_src ? x->view_offs : 0) + offs;
    HM_ASSERT(v->view_offs + hm_nbytes(v) <= hm_nbytes(v->view_src));
    if (v->view_src->data) { /* viewing allocated storage (a block tensor): resolve now */
        v->buffer = v->view_src->buffer;
        v->offset = v->view_src->offset + v->view_offs;
        v->data = (char *)v->view_src->data + v->view_offs;
    }
    snprintf(v->name, sizeof v->name, "%.40s(view)", x->name);
    return v;
}

void hm_set_output(struct hm_tensor *t)
{
    t->flags |= HM_FLAG_OUTPUT;
}

void hm_tensor_set_name(struct hm_tensor *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
}

int64_t hm_nelements(const struct hm_tensor *t)
{
    return t->shape[0] * t->shape[1] * t->shape[2] * t->shape[3];
}

size_t hm_nbytes(const struct hm_tensor *t)
{
    if (t->type == HM_DTYPE_Q8_0)
        return (size_t)hm_nelements(t) / HM_Q8_0_BLOCK * HM_Q8_0_BYTES;
    return (size_t)hm_nelements(t) * hm_dtype_size(t->type);
}

/* ---- host transfers ------------------------------------------------------------------------- */

static enum hm_status check_io(const struct hm_tensor *t, size_t bytes, const char *what)
{
    if (!t->data || !t->buffer)
        return hm_fail(HM_ERR_USAGE, "%s: tensor '%s' has no storage yet (plan the graph first)",
                       what, t->name);
    if (bytes != hm_nbytes(t))
        return hm_fail(HM_ERR_USAGE, "%s: tensor '%s' holds %zu bytes, got %zu", what, t->name,
                       hm_nbytes(t), bytes);
    return HM_OK;
}

enum hm_status hm_tensor_set(struct hm_tensor *t, const void *host, size_t bytes)
{
    enum hm_status st = check_io(t, bytes, "hm_tensor_set");
    if (st != HM_OK)
        return st;
    return hm_buffer_set(t->buffer, t->offset, host, bytes);
}

enum hm_status hm_tensor_get(const struct hm_tensor *t, void *host, size_t bytes)
{
    enum hm_status st = check_io(t, bytes, "hm_tensor_get");
    if (st != HM_OK)
        return st;
    return hm_buffer_get(t->buffer, t->offset, host, bytes);
}

enum hm_status hm_tensor_get_f32(const struct hm_tensor *t, float *host, size_t n)
{
    if (t->type == HM_DTYPE_F32 || n != (size_t)hm_nelements(t))
        return hm_tensor_get(t, host, n * sizeof(float));
    if (t->type != HM_DTYPE_BF16)
        return hm_fail(HM_ERR_USAGE, "hm_tensor_get_f32: '%s' is %s, not f32 or bf16", t->name,
                       hm_dtype_name(t->type));
    /* Widen in place: the bf16 values fill the first half of `host`, read back to front. */
    enum hm_status st = hm_tensor_get(t, host, n * sizeof(uint16_t));
    if (st != HM_OK)
        return st;
    const uint16_t *h = (const uint16_t *)host;
    for (size_t i = n; i-- > 0;)
        host[i] = hm_bf16_to_f32(h[i]);
    return HM_OK;
}

enum hm_status hm_tensor_fill(struct hm_tensor *t, float value)
{
    enum hm_status st = check_io(t, hm_nbytes(t), "hm_tensor_fill");
    if (st != HM_OK)
        return st;
    /* Rare (setup, tests): stage on the host rather than adding a fill to every backend. */
    size_t n = (size_t)hm_nelements(t), es = hm_dtype_size(t->type);
    unsigned char *tmp = hm_malloc(n * es);
    if (!tmp)
        return hm_fail(HM_ERR_NOMEM, "hm_tensor_fill: out of memory (%zu bytes)", n * es);
    for (size_t i = 0; i < n; i++) {
        if (t->type == HM_DTYPE_F32)
            memcpy(tmp + 4 * i, &value, 4);
        else if (t->type == HM_DTYPE_I32) {
            int32_t v = (int32_t)value;
            memcpy(tmp + 4 * i, &v, 4);
        } else {
            uint16_t v = hm_f32_to_bf16(value);
            memcpy(tmp + 2 * i, &v, 2);
        }
    }
    st = hm_buffer_set(t->buffer, t->offset, tmp, n * es);
    hm_free(tmp);
    return st;
}

/* ---- bf16 ----------------------------------------------------------------------------------- */

uint16_t hm_f32_to_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* any NaN: the canonical quiet NaN, as PyTorch writes it */
        return 0x7fc0;
    u += 0x7fffu + ((u >> 16) & 1); /* round to nearest, ties to even */
    return (uint16_t)(u >> 16);
}

float hm_bf16_to_f32(uint16_t x)
{
    uint32_t u = (uint32_t)x << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

void hm_f32_to_bf16_n(const float *x, uint16_t *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = hm_f32_to_bf16(x[i]);
}

void hm_bf16_to_f32_n(const uint16_t *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = hm_bf16_to_f32(x[i]);
}

/* ---- blocks --------------------------------------------------------------------------------- */

enum hm_status hm_block_new(bool with_grads, struct hm_block **out)
{
    struct hm_block *b = hm_calloc(1, sizeof(*b));
    if (!b)
        return hm_fail(HM_ERR_NOMEM, "out of memory creating a block");
    b->with_grads = with_grads;
    *out = b;
    return HM_OK;
}

void hm_block_free(struct hm_block *b)
{
    if (!b)
        return;
    for (int i = 0; i < b->n; i++) {
        if (b->with_grads) /* a copy block borrows its source's gradients */
            hm_free(b->tensors[i]->grad);
        hm_free(b->tensors[i]);
    }
    hm_free(b->tensors);
    hm_buffer_free(b->data);
    hm_buffer_free(b->grads);
    hm_free(b);
}

struct hm_tensor *hm_block_add(struct hm_block *b, const char *name, enum hm_dtype type, int n_dims,
                               const int64_t *shape)
{
    HM_ASSERT(!b->data); /* declare everything before hm_block_alloc */
    if (b->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 64;
        struct hm_tensor **p = hm_realloc(b->tensors, (size_t)cap * sizeof(*p));
        HM_ASSERT(p != NULL);
        b->tensors = p;
        b->cap = cap;
    }
    struct hm_tensor *t = hm_calloc(1, sizeof(*t));
    HM_ASSERT(t != NULL);
    t->type = type;
    t->op = HM_OP_NONE;
    set_shape(t, n_dims, shape);
    t->id = b->n;
    t->offset = b->nbytes;
    snprintf(t->name, sizeof t->name, "%s", name);
    t->flags |= HM_FLAG_BLOCK;
    if (!hm_add_size(b->nbytes, hm_nbytes(t), &b->nbytes))
        b->size_overflow = true; /* reported by hm_block_alloc, before any allocation */
    if (b->with_grads) {
        HM_ASSERT(type == HM_DTYPE_F32); /* parameters and gradients are f32 */
        t->flags |= HM_FLAG_PARAM;
        struct hm_tensor *g = hm_calloc(1, sizeof(*g));
        HM_ASSERT(g != NULL);
        *g = *t;
        g->flags = HM_FLAG_GRAD | HM_FLAG_BLOCK;
        snprintf(g->name, sizeof g->name, "%.40s.grad", name);
        t->grad = g;
    }
    b->tensors[b->n++] = t;
    return t;
}

enum hm_status hm_block_alloc(struct hm_block *b, struct hm_backend *be)
{
    HM_ASSERT(!b->data);
    if (b->size_overflow)
        return hm_fail(HM_ERR_USAGE, "a block of %d tensors is too large to address", b->n);
    enum hm_status st = hm_buffer_new(be, b->nbytes, &b->data);
    if (st == HM_OK && b->with_grads)
        st = hm_buffer_new(be, b->nbytes, &b->grads);
    if (st == HM_OK)
        st = hm_buffer_zero(b->data);
    if (st == HM_OK && b->grads)
        st = hm_buffer_zero(b->grads);
    if (st != HM_OK) {
        hm_buffer_free(b->data);
        hm_buffer_free(b->grads);
        b->data = b->grads = NULL;
        return st;
    }
    for (int i = 0; i < b->n; i++) {
        struct hm_tensor *t = b->tensors[i];
        t->buffer = b->data;
        t->data = (char *)hm_buffer_ptr(b->data) + t->offset;
        if (b->with_grads) { /* a copy block's ->grad belongs to its source */
            t->grad->buffer = b->grads;
            t->grad->data = (char *)hm_buffer_ptr(b->grads) + t->offset;
        }
    }
    return HM_OK;
}

struct hm_buffer *hm_block_data(const struct hm_block *b)
{
    return b->data;
}

struct hm_buffer *hm_block_grads(const struct hm_block *b)
{
    return b->grads;
}

int hm_block_n_tensors(const struct hm_block *b)
{
    return b->n;
}

struct hm_tensor *hm_block_tensor(const struct hm_block *b, int i)
{
    HM_ASSERT(i >= 0 && i < b->n);
    return b->tensors[i];
}

size_t hm_block_nbytes(const struct hm_block *b)
{
    return b->nbytes;
}

size_t hm_block_elem_offset(const struct hm_tensor *t)
{
    return t->offset / hm_dtype_size(t->type);
}

enum hm_status hm_block_new_copy(const struct hm_block *src, enum hm_dtype type, struct hm_backend *be,
                                 struct hm_block **out)
{
    struct hm_block *b;
    enum hm_status st = hm_block_new(false, &b);
    if (st != HM_OK)
        return st;
    for (int i = 0; i < src->n; i++) {
        const struct hm_tensor *s = src->tensors[i];
        struct hm_tensor *t = hm_block_add(b, s->name, type, s->n_dims, s->shape);
        t->flags |= s->flags & HM_FLAG_PARAM;
        t->grad = s->grad;
    }
    if ((st = hm_block_alloc(b, be)) != HM_OK) {
        hm_block_free(b);
        return st;
    }
    *out = b;
    return HM_OK;
}

enum hm_status hm_block_copy_refresh(struct hm_block *copy, const struct hm_block *src)
{
    HM_ASSERT(copy->n == src->n && copy->data && src->data);
    size_t n = hm_block_nbytes(src) / hm_dtype_size(src->tensors[0]->type);
    return hm_buffer_convert(copy->data, copy->tensors[0]->type, src->data, src->tensors[0]->type, n);
}

void hm_block_release(struct hm_block *b)
{
    hm_buffer_free(b->data);
    hm_buffer_free(b->grads);
    b->data = b->grads = NULL;
    for (int i = 0; i < b->n; i++) {
        b->tensors[i]->buffer = NULL;
        b->tensors[i]->data = NULL;
    }
}
