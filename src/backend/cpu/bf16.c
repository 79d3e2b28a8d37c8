/*
 * bf16.c - bf16 storage on the CPU backend. The CPU computes in f32: a node with bf16 operands
 * runs its f32 kernel on f32 copies ("shadows") of them in the node's workspace, and the bf16
 * operands are rounded back afterwards. That is what the CUDA bf16 kernels do too (load bf16,
 * compute in f32, store rounded to nearest even), so this path is their reference on any
 * machine. Row-local ops (norms, activations) run blocked: a few rows at a time are widened into
 * a thread's own scratch, computed and rounded back while still in cache, which gives the same
 * bits as widening whole tensors with far less memory traffic. Matmuls on a CPU with bf16 units
 * do not come here (matmul-onednn.c).
 */
#include "cpu-impl.h"

#define SHADOW_ALIGN 64
#define N_OPERANDS (HM_MAX_SRC + 1) /* dst, then src[0..] */

static bool fast_paths = true; /* off: every bf16 node widens whole (the tests' oracle) */

void hm_cpu_bf16_set_fast(bool on)
{
    fast_paths = on;
}

bool hm_cpu_bf16_fast(void)
{
    return fast_paths;
}

static size_t align_up(size_t n)
{
    return (n + SHADOW_ALIGN - 1) / SHADOW_ALIGN * SHADOW_ALIGN;
}

static const struct hm_tensor *operand(const struct hm_tensor *node, int i)
{
    return i == 0 ? node : node->src[i - 1];
}

/* kv_write is a copy that handles any element size itself, packed.c reads bf16 weights as they
 * are, cross-entropy reads bf16 logits row by row (loss.c) and reduce_rows sums bf16 rows into f32
 * (elementwise.c); every other op with a bf16 operand runs on shadows. */
bool hm_cpu_needs_shadows(const struct hm_tensor *node)
{
    if (node->op == HM_OP_KV_WRITE || hm_cpu_packed_weight_node(node) ||
        (fast_paths && (hm_cpu_loss_reads_bf16(node) || hm_cpu_reduce_reads_bf16(node))))
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
#pragma omp parallel for simd schedule(static) if (parallel : HM_CPU_PAR(n))
    for (int64_t i = 0; i < n; i++)
        y[i] = hm_cpu_from_bf16(x[i]);
}

static void to_bf16(const float *x, uint16_t *y, int64_t n)
{
#pragma omp parallel for simd schedule(static) if (parallel : HM_CPU_PAR(n))
    for (int64_t i = 0; i < n; i++)
        y[i] = hm_cpu_to_bf16(x[i]);
}

/* Ops whose output rows depend only on the same rows of their operands of the output's size
 * (the others, a norm weight, are read whole) and whose f32 kernels need no workspace. */
static bool row_local(enum hm_op op)
{
    switch (op) {
    case HM_OP_GELU:
    case HM_OP_GELU_BACK:
    case HM_OP_SWIGLU:
    case HM_OP_SWIGLU_BACK:
    case HM_OP_RMS_NORM:
    case HM_OP_ADD_RMS_NORM:
        return true;
    default:
        return false;
    }
}

/* f32 elements per operand in one block: 32 KiB, so a block's operands stay in L2. */
#define BLOCK_FLOATS 8192

struct blocked {
    int64_t rows, cols, block_rows;
    bool split[N_OPERANDS]; /* operand cut into row blocks; the others are read whole */
    size_t shared, per_thread;
};

static bool written(const struct hm_tensor *node, int i)
{
    return i == 0 || i - 1 >= hm_op_info(node->op)->n_in;
}

/* Whether node can run blocked, and the layout of its workspace: the whole-read bf16 operands
 * widened once (shared), then one block's shadows per thread. */
static bool plan_blocked(const struct hm_tensor *node, struct blocked *p)
{
    if (!row_local(node->op) || node->n_dims < 1)
        return false;
    memset(p, 0, sizeof *p);
    int64_t n = hm_nelements(node);
    p->cols = node->shape[node->n_dims - 1];
    if (p->cols <= 0 || n == 0)
        return false;
    p->rows = n / p->cols;
    p->block_rows = BLOCK_FLOATS / p->cols > 1 ? BLOCK_FLOATS / p->cols : 1;
    if (p->block_rows > p->rows)
        p->block_rows = p->rows;
    for (int i = 0; i < N_OPERANDS; i++) {
        const struct hm_tensor *t = operand(node, i);
        if (!t)
            continue;
        p->split[i] = hm_nelements(t) == n && t->shape[t->n_dims - 1] == p->cols;
        if (written(node, i) && !p->split[i])
            return false;
        if (t->type != HM_DTYPE_BF16 || alias_of(node, i) != i)
            continue;
        if (p->split[i])
            p->per_thread += align_up((size_t)(p->block_rows * p->cols) * sizeof(float));
        else
            p->shared += align_up((size_t)hm_nelements(t) * sizeof(float));
    }
    return true;
}

/* node = a copy of dst whose sources are the copies srcs; sh[i] = operand i of the copy (NULL
 * where dst has none). The callers point bf16 operands of the copy at f32 shadows. */
static void copy_node(const struct hm_tensor *dst, struct hm_tensor *node, struct hm_tensor *srcs,
                      struct hm_tensor **sh)
{
    *node = *dst;
    sh[0] = node;
    for (int i = 1; i < N_OPERANDS; i++) {
        sh[i] = NULL;
        if (dst->src[i - 1]) {
            srcs[i - 1] = *dst->src[i - 1];
            node->src[i - 1] = sh[i] = &srcs[i - 1];
        }
    }
}

/* One block of rows [r0, r0 + nr): shadows of the split bf16 operands in `ws`, the whole-read
 * ones from `shared`, the f32 kernel, then the written operands rounded back. */
static enum hm_status run_block(const struct hm_exec *ex, struct hm_tensor *dst,
                                hm_kernel_fn f32_kernel, const struct blocked *p,
                                float *const *shared, int64_t r0, int64_t nr, char *ws)
{
    struct hm_tensor node, srcs[HM_MAX_SRC], *sh[N_OPERANDS];
    copy_node(dst, &node, srcs, sh);
    for (int i = 0; i < N_OPERANDS; i++) {
        const struct hm_tensor *t = operand(dst, i);
        if (!t)
            continue;
        int64_t first = r0 * p->cols, n = nr * p->cols;
        if (p->split[i]) {
            sh[i]->n_dims = 2; /* [nr, cols]; unused dims are 1 (hm_nelements multiplies all) */
            sh[i]->shape[0] = nr, sh[i]->shape[1] = p->cols, sh[i]->shape[2] = sh[i]->shape[3] = 1;
        }
        if (t->type != HM_DTYPE_BF16) {
            if (p->split[i])
                sh[i]->data = (char *)t->data + (size_t)first * hm_dtype_size(t->type);
            continue;
        }
        sh[i]->type = HM_DTYPE_F32;
        int a = alias_of(dst, i);
        if (a != i) {
            sh[i]->data = sh[a]->data;
        } else if (!p->split[i]) {
            sh[i]->data = shared[i];
        } else {
            float *y = (float *)ws;
            const uint16_t *x = (const uint16_t *)t->data + first;
            ws += align_up((size_t)(p->block_rows * p->cols) * sizeof(float));
#pragma omp simd
            for (int64_t k = 0; k < n; k++)
                y[k] = hm_cpu_from_bf16(x[k]);
            sh[i]->data = y;
        }
    }
    struct hm_exec inner = *ex;
    inner.ws = NULL, inner.ws_bytes = 0;
    enum hm_status st = f32_kernel(&inner, &node);
    for (int i = 0; i < N_OPERANDS && st == HM_OK; i++) {
        const struct hm_tensor *t = operand(dst, i);
        if (!t || t->type != HM_DTYPE_BF16 || !written(dst, i) || alias_of(dst, i) != i)
            continue;
        const float *x = sh[i]->data;
        uint16_t *y = (uint16_t *)t->data + r0 * p->cols;
#pragma omp simd
        for (int64_t k = 0; k < nr * p->cols; k++)
            y[k] = hm_cpu_to_bf16(x[k]);
    }
    return st;
}

/* The blocked path: blocks spread over the threads, each thread with its own scratch. The f32
 * kernel runs inside the parallel region, so its own loops run on the calling thread. */
static enum hm_status run_blocked(const struct hm_exec *ex, struct hm_tensor *dst,
                                  hm_kernel_fn f32_kernel, const struct blocked *p)
{
    char *ws = ex->ws;
    float *shared[N_OPERANDS] = {NULL};
    for (int i = 0; i < N_OPERANDS; i++) {
        const struct hm_tensor *t = operand(dst, i);
        if (t && t->type == HM_DTYPE_BF16 && !p->split[i] && alias_of(dst, i) == i) {
            shared[i] = (float *)ws;
            ws += align_up((size_t)hm_nelements(t) * sizeof(float));
            to_f32(t->data, shared[i], hm_nelements(t));
        }
    }
    int64_t n_blocks = (p->rows + p->block_rows - 1) / p->block_rows;
    int nt = omp_get_max_threads();
    if (p->per_thread > 0 && (size_t)nt * p->per_thread > ex->ws_bytes - p->shared)
        nt = (int)((ex->ws_bytes - p->shared) / p->per_thread);
    enum hm_status st = HM_OK;
#pragma omp parallel num_threads(nt) if (parallel : n_blocks > 1 && HM_CPU_PAR(p->rows * p->cols))
    {
        char *mine = ws + (size_t)omp_get_thread_num() * p->per_thread;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < n_blocks; b++) {
            int64_t r0 = b * p->block_rows;
            int64_t nr = p->rows - r0 < p->block_rows ? p->rows - r0 : p->block_rows;
            enum hm_status s = run_block(ex, dst, f32_kernel, p, shared, r0, nr, mine);
            if (s != HM_OK) {
#pragma omp critical(hm_cpu_bf16_status)
                st = s;
            }
        }
    }
    return st;
}

enum hm_status hm_cpu_run_bf16(const struct hm_exec *ex, struct hm_tensor *dst, hm_kernel_fn f32_kernel)
{
    enum hm_status st = bf16_check(dst);
    if (st != HM_OK)
        return st;
    struct blocked bp;
    if (fast_paths && plan_blocked(dst, &bp) &&
        bp.shared + bp.per_thread <= ex->ws_bytes)
        return run_blocked(ex, dst, f32_kernel, &bp);
    size_t shadow = hm_cpu_bf16_shadow_bytes(dst);
    HM_ASSERT(shadow <= ex->ws_bytes);
    /* Copies of the node and its operands, bf16 ones pointing at f32 shadows: kernels only read
     * shapes, params and data pointers, never the operands' own sources (except attention_back,
     * which reads the forward node's doc_start: an i32 graph input, never shadowed). */
    struct hm_tensor node, srcs[HM_MAX_SRC], *sh[N_OPERANDS];
    copy_node(dst, &node, srcs, sh);
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
