/*
 * matmul-rows.c - the row-invariant linear layer of batched serving (hm_linear_rows):
 * y[r, n] = alpha * dot(x[r, :], w[n, :]) + bias[n] for w [N, K].
 *
 * Batch invariance: row r of y must not depend on how many other rows share the call or on r's
 * index, and sgemm/sgemv pick kernels (and summation orders) by shape. Here every dot product is
 * summed the same way: LANES (8) interleaved partial sums (lane l takes k = l, l + LANES, ...),
 * then one fixed pairwise tree over the lanes. A tile of ROWS token rows x COLS weight rows shares
 * each pass over w; leftover token rows go through the same code one at a time, and leftover weight
 * rows are computed on a duplicate pointer and dropped, so every (row, col) pair runs the same
 * instructions in the same order whatever the tile it lands in. Threads split the weight rows:
 * each block of w is read from memory once and applied to every token row.
 */
#include "cpu-impl.h"

/* 8 lanes (one AVX register): 16 (AVX-512) measured no faster for gpt2-small's shapes and slower
 * for tiny ones, where the per-dot lane sum weighs more against a short K. */
enum { LANES = 8 };
enum { COLS = 4, ROWS = 4, COL_BLOCK = 16 };
_Static_assert(COLS == 4, "hm_cpu_dots4 hands out one tile row");

/* LANES floats in one vector (GCC/Clang vector extension: a register where the target has one,
 * plain lane-by-lane arithmetic elsewhere; the order per lane is the same either way). */
typedef float lanes_t __attribute__((vector_size(LANES * sizeof(float))));

static inline lanes_t load_lanes(const float *p)
{
    lanes_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* The fixed pairwise sum of one dot product's lanes, the tail k = k0 .. K-1 added lane by lane
 * first (lane l takes k0 + l). */
static inline float finish_dot(lanes_t acc, const float *x, const float *w, int64_t k0, int64_t K)
{
    float a[LANES];
    memcpy(a, &acc, sizeof a);
    for (int l = 0; k0 + l < K; l++)
        a[l] += x[k0 + l] * w[k0 + l];
    for (int half = LANES / 2; half > 0; half /= 2) /* pairwise: lane l + half onto lane l */
        for (int l = 0; l < half; l++)
            a[l] += a[l + half];
    return a[0];
}

/* dots[i][j] = dot(x[i], w[j]) for `rows` token rows (a compile-time 1 or ROWS) and COLS weight
 * rows: lane l sums k = l, l + LANES, ... in order, then finish_dot. */
static inline __attribute__((always_inline)) void dot_tile(const float *const *x,
                                                           const float *const *w, int64_t K,
                                                           int rows, float dots[ROWS][COLS])
{
    lanes_t acc[ROWS][COLS];
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < COLS; j++)
            acc[i][j] = (lanes_t){0};
    int64_t k0 = 0;
    for (; k0 + LANES <= K; k0 += LANES) {
        lanes_t wv[COLS];
        for (int j = 0; j < COLS; j++)
            wv[j] = load_lanes(w[j] + k0);
        for (int i = 0; i < rows; i++) {
            lanes_t xv = load_lanes(x[i] + k0);
            for (int j = 0; j < COLS; j++)
                acc[i][j] += xv * wv[j];
        }
    }
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < COLS; j++)
            dots[i][j] = finish_dot(acc[i][j], x[i], w[j], k0, K);
}

void hm_cpu_dots4(const float *x, const float *const *w, int64_t K, float out[4])
{
    const float *xr[ROWS] = {x};
    float dots[ROWS][COLS];
    dot_tile(xr, w, K, 1, dots);
    memcpy(out, dots[0], sizeof dots[0]);
}

static void store(float *y, const float dots[ROWS][COLS], int rows, int64_t n0, int cols,
                  int64_t N, float alpha, const float *bias, bool acc)
{
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            float v = alpha * dots[i][j] + (bias ? bias[n0 + j] : 0.0f);
            float *o = y + i * N + n0 + j;
            *o = acc ? *o + v : v;
        }
}

/* Token rows [0, M) against weight rows [n0, n0 + cols), cols <= COLS. */
static void col_group(const float *x, const float *w, const float *bias, float *y, int64_t M,
                      int64_t N, int64_t K, int64_t n0, int cols, float alpha, bool acc)
{
    const float *wr[COLS];
    for (int j = 0; j < COLS; j++)
        wr[j] = w + (n0 + (j < cols ? j : 0)) * K;
    float dots[ROWS][COLS];
    int64_t r = 0;
    for (; r + ROWS <= M; r += ROWS) {
        const float *xr[ROWS];
        for (int i = 0; i < ROWS; i++)
            xr[i] = x + (r + i) * K;
        dot_tile(xr, wr, K, ROWS, dots);
        store(y + r * N, dots, ROWS, n0, cols, N, alpha, bias, acc);
    }
    for (; r < M; r++) {
        const float *xr[ROWS] = {x + r * K};
        dot_tile(xr, wr, K, 1, dots);
        store(y + r * N, dots, 1, n0, cols, N, alpha, bias, acc);
    }
}

enum hm_status hm_cpu_matmul_rows(const struct hm_exec *ex, struct hm_tensor *dst)
{
    const struct hm_tensor *a = dst->src[0], *b = dst->src[1], *bias = dst->src[2];
    bool ta = dst->op_params[1], tb = dst->op_params[2];
    if (b->type != HM_DTYPE_F32 || a->type != HM_DTYPE_F32)
        return hm_fail(HM_ERR_UNSUPPORTED, "matmul: the row-invariant kernel reads f32 operands, "
                                           "not packed (bf16/q8_0) weights");
    if (ta || !tb || b->n_dims != 2)
        return hm_fail(HM_ERR_UNSUPPORTED, "matmul: the row-invariant kernel takes x @ w^T with a "
                                           "2-D weight (a linear layer) only");
    struct hm_mm_dims d = hm_mm_dims_of(a, b, ta, tb);
    float alpha = hm_op_f32(dst, 0);
    bool acc = dst->acc & 1;
    const float *x = CF32(a), *w = CF32(b), *bv = bias ? CF32(bias) : NULL;
    float *y = F32(dst);
    int64_t n_blocks = (d.N + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR(d.M * d.N * d.K))
    for (int64_t blk = 0; blk < n_blocks; blk++) {
        int64_t end = HM_MIN(d.N, (blk + 1) * COL_BLOCK);
        for (int64_t n0 = blk * COL_BLOCK; n0 < end; n0 += COLS)
            col_group(x, w, bv, y, d.M, d.N, d.K, n0, (int)HM_MIN(COLS, end - n0), alpha, acc);
    }
    return HM_OK;
}
