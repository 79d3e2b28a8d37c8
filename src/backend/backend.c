/*
 * backend.c - the backend-independent half of the backend API: argument checks, buffers as
 * (backend, base, size) triples, and dispatch through the vtable in backend-impl.h. Buffer, range
 * and node arguments are validated here once so every backend can trust them; the tensor core
 * reaches backends only through these functions.
 */
#include "backend-impl.h"
#include "hermes/ops.h"
#include "util/util.h"

void hm_backend_free(struct hm_backend *be)
{
    if (be)
        be->iface->free(be);
}

const char *hm_backend_name(const struct hm_backend *be)
{
    return be->iface->name;
}

bool hm_backend_supports_op(const struct hm_backend *be, enum hm_op op)
{
    const struct hm_op_info *info = hm_op_info(op);
    return info && (!info->kernel || be->iface->kernels[op] != NULL);
}

enum hm_status hm_backend_check_node(struct hm_backend *be, const struct hm_tensor *node)
{
    if (!hm_backend_supports_op(be, node->op))
        return hm_fail(HM_ERR_UNSUPPORTED, "op '%s' not available on %s", hm_op_name(node->op),
                       be->iface->name);
    if (!hm_op_info(node->op)->kernel || !be->iface->check_node)
        return HM_OK;
    return be->iface->check_node(be, node);
}

size_t hm_backend_workspace_size(struct hm_backend *be, const struct hm_tensor *node)
{
    const struct hm_op_info *info = hm_op_info(node->op);
    if (!info || !info->kernel || !be->iface->workspace_size)
        return 0;
    return be->iface->workspace_size(be, node);
}

enum hm_status hm_backend_compute(struct hm_backend *be, struct hm_tensor *node,
                                  const struct hm_runtime *rt, void *ws, size_t ws_bytes)
{
    const struct hm_op_info *info = hm_op_info(node->op);
    if (info && !info->kernel)
        return HM_OK;
    if (!info || !be->iface->kernels[node->op])
        return hm_fail(HM_ERR_USAGE, "op '%s' has no kernel on %s", hm_op_name(node->op),
                       be->iface->name);
    if (!node->data || !node->buffer || node->buffer->be != be)
        return hm_fail(HM_ERR_USAGE, "node '%s' has no storage on %s: plan the graph first",
                       node->name, be->iface->name);
    struct hm_exec ex = {.be = be, .rt = rt, .ws = ws, .ws_bytes = ws_bytes};
    return be->iface->kernels[node->op](&ex, node);
}

enum hm_status hm_backend_run_sequence(struct hm_backend *be, uint64_t key,
                                       struct hm_tensor *const *nodes, int n,
                                       const struct hm_runtime *rt,
                                       enum hm_status (*run)(void *user), void *user)
{
    if (!run || n < 0 || (n > 0 && !nodes) || !rt)
        return hm_fail(HM_ERR_USAGE, "run_sequence: no run function, rt or nodes");
    for (int i = 0; i < n; i++) {
        const struct hm_op_info *info = hm_op_info(nodes[i]->op);
        if (info && !info->kernel)
            continue;
        if (!nodes[i]->data || !nodes[i]->buffer || nodes[i]->buffer->be != be)
            return hm_fail(HM_ERR_USAGE, "node '%s' has no storage on %s: plan the graph first",
                           nodes[i]->name, be->iface->name);
    }
    if (!be->iface->run_sequence || n == 0)
        return run(user);
    return be->iface->run_sequence(be, key, nodes, n, rt, run, user);
}

enum hm_status hm_backend_synchronize(struct hm_backend *be)
{
    return be->iface->synchronize(be);
}

void *hm_backend_native_stream(struct hm_backend *be)
{
    return be->iface->native_stream ? be->iface->native_stream(be) : NULL;
}

enum hm_status hm_buffer_new(struct hm_backend *be, size_t bytes, struct hm_buffer **out)
{
    struct hm_buffer *b = hm_calloc(1, sizeof(*b));
    if (!b)
        return hm_fail(HM_ERR_NOMEM, "out of memory allocating a buffer descriptor");
    enum hm_status st = be->iface->alloc(be, bytes, &b->base);
    if (st != HM_OK) {
        hm_free(b);
        return st;
    }
    b->be = be;
    b->size = bytes;
    *out = b;
    return HM_OK;
}

void hm_buffer_free(struct hm_buffer *buf)
{
    if (!buf)
        return;
    if (!buf->borrowed)
        buf->be->iface->release(buf->be, buf->base);
    hm_free(buf);
}

size_t hm_buffer_size(const struct hm_buffer *buf)
{
    return buf->size;
}

void *hm_buffer_ptr(struct hm_buffer *buf)
{
    return buf->base;
}

struct hm_backend *hm_buffer_backend(const struct hm_buffer *buf)
{
    return buf->be;
}

static enum hm_status check_range(const struct hm_buffer *buf, size_t offset, size_t bytes,
                                  const char *what)
{
    if (offset > buf->size || bytes > buf->size - offset)
        return hm_fail(HM_ERR_USAGE, "%s: range [%zu, %zu) outside a buffer of %zu bytes", what,
                       offset, offset + bytes, buf->size);
    return HM_OK;
}

enum hm_status hm_buffer_view(struct hm_buffer *parent, size_t offset, size_t bytes, struct hm_buffer **out)
{
    enum hm_status st = check_range(parent, offset, bytes, "hm_buffer_view");
    if (st != HM_OK)
        return st;
    struct hm_buffer *b = hm_calloc(1, sizeof(*b));
    if (!b)
        return hm_fail(HM_ERR_NOMEM, "out of memory allocating a buffer descriptor");
    *b = (struct hm_buffer){parent->be, (char *)parent->base + offset, bytes, true};
    *out = b;
    return HM_OK;
}

enum hm_status hm_buffer_set(struct hm_buffer *buf, size_t offset, const void *host, size_t bytes)
{
    enum hm_status st = check_range(buf, offset, bytes, "hm_buffer_set");
    if (st != HM_OK)
        return st;
    return buf->be->iface->set(buf->be, (char *)buf->base + offset, host, bytes);
}

enum hm_status hm_buffer_get(const struct hm_buffer *buf, size_t offset, void *host, size_t bytes)
{
    enum hm_status st = check_range(buf, offset, bytes, "hm_buffer_get");
    if (st != HM_OK)
        return st;
    return buf->be->iface->get(buf->be, host, (const char *)buf->base + offset, bytes);
}

enum hm_status hm_buffer_zero(struct hm_buffer *buf)
{
    return buf->be->iface->memset0(buf->be, buf->base, buf->size);
}

enum hm_status hm_buffer_convert(struct hm_buffer *dst, enum hm_dtype dst_type,
                                 const struct hm_buffer *src, enum hm_dtype src_type, size_t n)
{
    bool pair = (dst_type == HM_DTYPE_BF16 && src_type == HM_DTYPE_F32) ||
                (dst_type == HM_DTYPE_F32 && src_type == HM_DTYPE_BF16);
    if (!pair || !dst->be->iface->convert)
        return hm_fail(HM_ERR_UNSUPPORTED, "%s cannot convert %s to %s", dst->be->iface->name,
                       hm_dtype_name(src_type), hm_dtype_name(dst_type));
    if (src->be != dst->be)
        return hm_fail(HM_ERR_USAGE, "hm_buffer_convert: buffers live on different backends");
    if (n > SIZE_MAX / 4)
        return hm_fail(HM_ERR_USAGE, "hm_buffer_convert: range too large");
    enum hm_status st = check_range(dst, 0, n * hm_dtype_size(dst_type), "hm_buffer_convert");
    if (st == HM_OK)
        st = check_range(src, 0, n * hm_dtype_size(src_type), "hm_buffer_convert");
    return st != HM_OK ? st : dst->be->iface->convert(dst->be, dst->base, dst_type, src->base, src_type, n);
}

static enum hm_status f32_range(const struct hm_buffer *buf, size_t offset, size_t n, const char *what,
                                float **out)
{
    if (offset > SIZE_MAX / 4 || n > SIZE_MAX / 4)
        return hm_fail(HM_ERR_USAGE, "%s: range too large", what);
    enum hm_status st = check_range(buf, offset * 4, n * 4, what);
    if (st != HM_OK)
        return st;
    *out = (float *)buf->base + offset;
    return HM_OK;
}

enum hm_status hm_buffer_sumsq(const struct hm_buffer *buf, size_t offset, size_t n, double *out)
{
    float *x = NULL;
    enum hm_status st = f32_range(buf, offset, n, "hm_buffer_sumsq", &x);
    return st != HM_OK ? st : buf->be->iface->sumsq(buf->be, x, n, out);
}

enum hm_status hm_buffer_scale(struct hm_buffer *buf, size_t offset, size_t n, float s)
{
    float *x = NULL;
    enum hm_status st = f32_range(buf, offset, n, "hm_buffer_scale", &x);
    return st != HM_OK ? st : buf->be->iface->scale(buf->be, x, n, s);
}

enum hm_status hm_buffer_is_finite(const struct hm_buffer *buf, size_t offset, size_t n, bool *out)
{
    float *x = NULL;
    enum hm_status st = f32_range(buf, offset, n, "hm_buffer_is_finite", &x);
    return st != HM_OK ? st : buf->be->iface->is_finite(buf->be, x, n, out);
}

enum hm_status hm_backend_adamw(struct hm_buffer *params, const struct hm_buffer *grads,
                                struct hm_buffer *m, struct hm_buffer *v, size_t offset, size_t n,
                                const struct hm_adamw_params *hp)
{
    if (grads->be != params->be || m->be != params->be || v->be != params->be)
        return hm_fail(HM_ERR_USAGE, "hm_backend_adamw: buffers live on different backends");
    if (hp->t < 1)
        return hm_fail(HM_ERR_USAGE, "hm_backend_adamw: step t must be >= 1, got %lld",
                       (long long)hp->t);
    float *p = NULL, *g = NULL, *mm = NULL, *vv = NULL;
    enum hm_status st;
    if ((st = f32_range(params, offset, n, "hm_backend_adamw", &p)) != HM_OK ||
        (st = f32_range(grads, offset, n, "hm_backend_adamw", &g)) != HM_OK ||
        (st = f32_range(m, offset, n, "hm_backend_adamw", &mm)) != HM_OK ||
        (st = f32_range(v, offset, n, "hm_backend_adamw", &vv)) != HM_OK)
        return st;
    struct hm_adamw_params h = *hp; /* backends get the factor itself: 0 (left out) means 1 */
    if (h.grad_scale == 0.0f)
        h.grad_scale = 1.0f;
    return params->be->iface->adamw(params->be, p, g, mm, vv, n, &h);
}
