/*
 * packed.c - linear layers and the embedding lookup on packed weights: bf16 or ggml q8_0 matrices
 * with f32 activations (an inference model after hm_model_pack_weights). These nodes skip bf16.c's
 * shadows, which would widen the whole weight on every call.
 *   one row (decode): matvec.c's kernels read the packed weight once; for q8_0, x is quantised to
 *     q8_0 first, as ggml does for its q8_0 x q8_0 dot;
 *   several rows (prefill): panels of weight rows are widened to f32 in per-thread workspace and
 *     multiplied by sgemm, so prefill runs at the sgemm rate with no allocation.
 */
#include "cpu-impl.h"
#include "matvec.h"

#include "hermes/export.h"

#include <cblas.h>

enum { PANEL_ROWS = 128 };

static bool packed(enum hm_dtype t)
{
    return t == HM_DTYPE_BF16 || t == HM_DTYPE_Q8_0;
}

bool hm_cpu_packed_weight_node(const struct hm_tensor *node)
{
    const struct hm_tensor *a = node->src[0], *b = node->src[1], *bias = node->src[2];
    if (node->type != HM_DTYPE_F32)
        return false;
    if (node->op == HM_OP_EMBEDDING)
        return packed(a->type);
    return node->op == HM_OP_MATMUL && packed(b->type) && a->type == HM_DTYPE_F32 &&
           (!bias || bias->type == HM_DTYPE_F32);
}

static size_t align64(size_t n)
{
    return (n + 63) / 64 * 64;
}

/* Prefill: each thread widens panels of PANEL_ROWS weight rows into its own slice of the
 * workspace and multiplies them with a single-threaded sgemm (OpenBLAS inside a parallel region),
 * so a layer is one parallel region, not one per panel. */
static size_t panel_bytes(int64_t N, int64_t K)
{
    return align64((size_t)HM_MIN(N, (int64_t)PANEL_ROWS) * (size_t)K * sizeof(float));
}

size_t hm_cpu_matmul_packed_ws(const struct hm_tensor *node)
{
    if (!hm_cpu_packed_weight_node(node) || node->op != HM_OP_MATMUL)
        return 0;
    const struct hm_tensor *b = node->src[1];
    int64_t N = b->shape[0], K = b->shape[1], M = hm_nrows(node->src[0]);
    if (M == 1) /* y, then x in q8_0 blocks and x's scales in f32 */
        return align64((size_t)N * sizeof(float)) +
               align64((size_t)(K / HM_Q8_0_BLOCK) * HM_Q8_0_BYTES) +
               (size_t)(K / HM_Q8_0_BLOCK) * sizeof(float);
    return (size_t)hm_cpu_plan_threads() * panel_bytes(N, K);
}

static void prefill(const struct hm_exec *ex, const struct hm_tensor *b, const float *x, float *c,
                    int64_t M, int64_t N, int64_t K, float alpha, float beta)
{
    size_t per_thread = panel_bytes(N, K);
    int64_t n_panels = (N + PANEL_ROWS - 1) / PANEL_ROWS;
#pragma omp parallel for schedule(static) num_threads(hm_cpu_threads_for(ex, per_thread))
    for (int64_t p = 0; p < n_panels; p++) {
        float *panel = (float *)((char *)ex->ws + (size_t)omp_get_thread_num() * per_thread);
        int64_t n0 = p * PANEL_ROWS, P = HM_MIN((int64_t)PANEL_ROWS, N - n0);
        hm_cpu_rows_to_f32(b->type, b->data, n0, P, K, panel);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)P, (int)K, alpha, x,
                    (int)K, panel, (int)K, beta, c + n0, (int)N);
    }
}

enum hm_status hm_cpu_matmul_packed(const struct hm_exec *ex, const struct hm_tensor *dst,
                                    float alpha, float beta)
{
    const struct hm_tensor *a = dst->src[0], *b = dst->src[1];
    bool ta = dst->op_params[1], tb = dst->op_params[2];
    int64_t N = b->shape[0], K = b->shape[1], M = hm_nrows(a);
    if (ta || !tb || b->n_dims != 2 || a->shape[a->n_dims - 1] != K)
        return hm_fail(HM_ERR_UNSUPPORTED, "matmul: a %s weight must be the [out, in] operand "
                       "of a linear layer", hm_dtype_name(b->type));
    if (b->type == HM_DTYPE_Q8_0 && K % HM_Q8_0_BLOCK)
        return hm_fail(HM_ERR_UNSUPPORTED, "matmul: q8_0 rows of %lld are not whole blocks of %d",
                       (long long)K, HM_Q8_0_BLOCK);
    HM_ASSERT(hm_cpu_matmul_packed_ws(dst) <= ex->ws_bytes);
    float *c = F32(dst);
    const float *x = CF32(a);
    if (M > 1) {
        prefill(ex, b, x, c, M, N, K, alpha, beta);
        return HM_OK;
    }
    float *y = ex->ws;
    if (b->type == HM_DTYPE_BF16) {
        hm_cpu_matvec_bf16(hm_cpu_matvec_isa(), b->data, x, y, N, K);
    } else {
        uint8_t *xq = (uint8_t *)ex->ws + align64((size_t)N * sizeof(float));
        float *xd = (float *)(xq + align64((size_t)(K / HM_Q8_0_BLOCK) * HM_Q8_0_BYTES));
        hm_quantize_q8_0(x, (size_t)K, xq);
        hm_cpu_q8_0_scales(xq, K, xd);
        hm_cpu_matvec_q8_0(hm_cpu_matvec_isa(), b->data, xq, xd, y, N, K);
    }
#pragma omp simd
    for (int64_t n = 0; n < N; n++)
        c[n] = (beta != 0.0f ? beta * c[n] : 0.0f) + alpha * y[n];
    return HM_OK;
}
