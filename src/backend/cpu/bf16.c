/*
 * bf16.c - bf16 storage on the CPU backend. The CPU computes in f32: a node with bf16 operands
 * runs its f32 kernel on f32 copies ("shadows") of them in the node's workspace, and the bf16
 * operands are rounded back afterwards. That is what the CUDA bf16 kernels do too (load bf16,
 * compute in f32, store rounded to nearest even), so this path is their reference on any
 * machine. It is correct, not fast: f32 is the CPU's fast path.
 */
#include "cpu-impl.h"

#define SHADOW_ALIGN 64
#define N_OPERANDS (HM_MAX_SRC + 1) /* dst, then src[0..] */

static size_t align_up(size_t n)
{
    return (n + SHADOW_ALIGN - 1) / SHADOW_ALIGN * SHADOW_ALIGN;
}

static const struct hm_tensor *operand(const struct hm_tensor *node, int i)
{
    return i == 0 ? node : node->src[i - 1];
}

/* kv_write is a copy that handles any element size itself, and packed.c reads bf16 weights as
 * they are; every other op with a bf16 operand runs on shadows. */
bool hm_cpu_needs_shadows(const struct hm_tensor *node)
{
    if (node->op == HM_OP_KV_WRITE || hm_cpu_packed_weight_node(node))
        return false;
    for (int i = 0; i < N_OPERANDS; i++) {
        const struct hm_tensor *t = operand(node, i);
        if (t && t->type == HM_DTYPE_BF16)
            return true;
    }
    return false;
}

/* The operand whose shadow operand i shares (same storage), or i itself. Partial overlaps of
 * two bf16 operands cannot be shadowed separately and are reported by bf16_check. */
static int alias_of(const struct hm_tensor *node, int i)
{
    const struct hm_tensor *t = operand(node, i);
    for (int j = 0; j < i; j++) {
        const struct hm_tensor *u = operand(node, j);
        if (u && u->type == HM_DTYPE_BF16 && u->data == t->data && hm_nbytes(u) == hm_nbytes(t))
            return j;
    }
    return i;
}

static bool overlaps(const struct hm_tensor *a, const struct hm_tensor *b)
{
    const char *pa = a->data, *pb = b->data;
    return pa < pb + hm_nbytes(b) && pb < pa + hm_nbytes(a);
}

/* Shadow bytes a node needs in front of its f32 kernel's own workspace. */
size_t hm_cpu_bf16_shadow_bytes(const struct hm_tensor *node)
{
    size_t bytes = 0;
    for (int i = 0; i < N_OPERANDS; i++) {
        const struct hm_tensor *t = operand(node, i);
        if (t && t->type == HM_DTYPE_BF16 && (!t->data || alias_of(node, i) == i))
            bytes += align_up((size_t)hm_nelements(t) * sizeof(float));
    }
    return bytes;
}

static enum hm_status bf16_check(const struct hm_tensor *node)
{
    for (int i = 0; i < N_OPERANDS; i++) {
        const struct hm_tensor *t = operand(node, i);
        if (!t || t->type != HM_DTYPE_BF16 || !t->data)
            continue;
        for (int j = 0; j < i; j++) {
            const struct hm_tensor *u = operand(node, j);
            if (u && u->type == HM_DTYPE_BF16 && alias_of(node, i) != j && overlaps(t, u))
                return hm_fail(HM_ERR_UNSUPPORTED, "op '%s': bf16 operands %d and %d partly overlap; "
                               "the cpu cannot run this node in bf16", hm_op_name(node->op), j, i);
        }
    }
    return HM_OK;
}

static void to_f32(const uint16_t *x, float *y, int64_t n)
{
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR(n))
    for (int64_t i = 0; i < n; i++)
        y[i] = hm_bf16_to_f32(x[i]);
}

static void to_bf16(const float *x, uint16_t *y, int64_t n)
{
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR(n))
    for (int64_t i = 0; i < n; i++)
        y[i] = hm_f32_to_bf16(x[i]);
}

enum hm_status hm_cpu_run_bf16(const struct hm_exec *ex, struct hm_tensor *dst, hm_kernel_fn f32_kernel)
{
    enum hm_status st = bf16_check(dst);
    if (st != HM_OK)
        return st;
    size_t shadow = hm_cpu_bf16_shadow_bytes(dst);
    HM_ASSERT(shadow <= ex->ws_bytes);
    /* Copies of the node and its operands, bf16 ones pointing at f32 shadows: kernels only read
     * shapes, params and data pointers, never the operands' own sources (except attention_back,
     * which reads the forward node's doc_start: an i32 graph input, never shadowed). */
    struct hm_tensor node = *dst, srcs[HM_MAX_SRC];
    struct hm_tensor *sh[N_OPERANDS] = {&node};
    for (int i = 1; i < N_OPERANDS; i++)
        if (dst->src[i - 1]) {
            srcs[i - 1] = *dst->src[i - 1];
            node.src[i - 1] = sh[i] = &srcs[i - 1];
        }
    char *ws = ex->ws;
    for (int i = 0; i < N_OPERANDS; i++) {
        const struct hm_tensor *t = operand(dst, i);
        if (!t || t->type != HM_DTYPE_BF16)
            continue;
        sh[i]->type = HM_DTYPE_F32;
        int a = alias_of(dst, i);
        if (a != i) {
            sh[i]->data = sh[a]->data;
            continue;
        }
        sh[i]->data = ws;
        ws += align_up((size_t)hm_nelements(t) * sizeof(float));
        to_f32(t->data, sh[i]->data, hm_nelements(t));
    }
    struct hm_exec inner = *ex;
    inner.ws = (char *)ex->ws + shadow;
    inner.ws_bytes = ex->ws_bytes - shadow;
    if ((st = f32_kernel(&inner, &node)) != HM_OK)
        return st;
    /* Round back what the kernel wrote: dst and the extra outputs ops.def lists (src slots from
     * n_in on), through the operand whose shadow they share. */
    bool written[N_OPERANDS] = {false};
    for (int i = 0; i < N_OPERANDS; i++) {
        const struct hm_tensor *t = operand(dst, i);
        if (t && t->type == HM_DTYPE_BF16 && (i == 0 || i - 1 >= hm_op_info(dst->op)->n_in))
            written[alias_of(dst, i)] = true;
    }
    for (int i = 0; i < N_OPERANDS; i++)
        if (written[i])
            to_bf16(sh[i]->data, operand(dst, i)->data, hm_nelements(operand(dst, i)));
    return HM_OK;
}

enum hm_status hm_cpu_convert(struct hm_backend *be, void *dst, enum hm_dtype dst_type, const void *src,
                              enum hm_dtype src_type, size_t n)
{
    if (dst_type == HM_DTYPE_BF16 && src_type == HM_DTYPE_F32)
        to_bf16(src, dst, (int64_t)n);
    else if (dst_type == HM_DTYPE_F32 && src_type == HM_DTYPE_BF16)
        to_f32(src, dst, (int64_t)n);
    else if (dst_type == src_type)
        memmove(dst, src, n * hm_dtype_size(src_type));
    else
        return hm_fail(HM_ERR_UNSUPPORTED, "cpu: no conversion from %s to %s", hm_dtype_name(src_type),
                       hm_dtype_name(dst_type));
    return HM_OK;
}
