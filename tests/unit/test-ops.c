/*
 * test-ops.c - one table-driven harness for every op: the forward result against a plain
 * reference loop (in double), and every input gradient against central finite differences of
 * L = sum(op(x) * r) with a random cotangent r. Shapes are small, odd and non-power-of-two;
 * attention is checked with GQA, at T = 1 and at a cache position. Each case runs on a backend
 * given to run_case(), so a CPU-vs-CUDA parity mode can reuse the same table later.
 */
#include "testutil.h"

#include "core/core-impl.h"
#include "hermes/backend.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tcase;
typedef struct hm_tensor *(*build_fn)(const struct tcase *c, struct hm_ctx *ctx,
                                      struct hm_tensor **x, struct hm_tensor **ids);
typedef void (*ref_fn)(const struct tcase *c, float **x, int32_t **ids,
                       struct hm_tensor **xt, struct hm_tensor **it, const struct hm_tensor *out,
                       double *y);

struct tcase {
    const char *name;
    int n_f;                  /* differentiable f32 inputs (parameters of a block) */
    int nd[4];
    int64_t sh[4][4];
    float amp[4];             /* inputs uniform in [-amp, amp] (default 1) */
    int n_i;                  /* i32 inputs */
    int ind[2];
    int64_t ish[2][4];
    int32_t ihi[2];           /* ids uniform in [0, ihi) */
    bool ignore;              /* some entries of ids[1]... set to HM_IGNORE_INDEX */
    float fp[2];              /* op parameters */
    int ip[2];
    int pos;                  /* runtime position */
    const int32_t *fixed_ids; /* ids[0] given instead of random (attention's document starts) */
    build_fn build;
    ref_fn ref;
    double fd_eps;            /* 0: default 1e-2 */
};

/* ---- reference loops ------------------------------------------------------------------------ */

static int64_t numel(const struct hm_tensor *t)
{
    return hm_nelements(t);
}

static void ref_add(const struct tcase *c, float **x, int32_t **ids, struct hm_tensor **xt,
                    struct hm_tensor **it, const struct hm_tensor *out, double *y)
{
    int64_t nb = numel(xt[1]);
    for (int64_t i = 0; i < numel(out); i++)
        y[i] = (double)x[0][i] + x[1][i % nb];
}

static void ref_mul(const struct tcase *c, float **x, int32_t **ids, struct hm_tensor **xt,
                    struct hm_tensor **it, const struct hm_tensor *out, double *y)
{
    for (int64_t i = 0; i < numel(out); i++)
        y[i] = (double)x[0][i] * x[1][i];
}

static void ref_scale(const struct tcase *c, float **x, int32_t **ids, struct hm_tensor **xt,
                      struct hm_tensor **it, const struct hm_tensor *out, double *y)
{
    for (int64_t i = 0; i < numel(out); i++)
        y[i] = (double)x[0][i] * c->fp[0];
}

/* ip[0] = trans_a, ip[1] = trans_b, fp[0] = alpha (0 -> 1), n_f == 3 -> bias */
static void ref_matmul(const struct tcase *c, float **x, int32_t **ids, struct hm_tensor **xt,
                       struct hm_tensor **it, const struct hm_tensor *out, double *y)
{
    bool ta = c->ip[0], tb = c->ip[1];
    struct hm_mm_dims d = hm_mm_dims_of(xt[0], xt[1], ta, tb);
    double alpha = c->fp[0] ? c->fp[0] : 1.0;
    for (int64_t bb = 0; bb < d.batch; bb++)
        for (int64_t i = 0; i < d.M; i++)
            for (int64_t j = 0; j < d.N; j++) {
                double s = 0;
                for (int64_t k = 0; k < d.K; k++) {
                    const float *A = x[0] + bb * d.M * d.K, *B = x[1] + bb * d.K * d.N;
                    double av = ta ? A[k * d.M + i] : A[i * d.K + k];
                    double bv = tb ? B[j * d.K + k] : B[k * d.N + j];
                    s += av * bv;
                }
                y[(bb * d.M + i) * d.N + j] = alpha * s + (c->n_f == 3 ? x[2][j] : 0.0);
            }
}

static void ref_embedding(const struct tcase *c, float **x, int32_t **ids, struct hm_tensor **xt,
                          struct hm_tensor **it, const struct hm_tensor *out, double *y)
{
    int64_t C = xt[0]->shape[1];
    for (int64_t i = 0; i < numel(it[0]); i++)
        for (int64_t j = 0; j < C; j++)
            y[i * C + j] = x[0][ids[0][i] * C + j];
}

static void ref_rms_norm(const struct tcase *c, float **x, int32_t **ids, struct hm_tensor **xt,
                         struct hm_tensor **it, const struct hm_tensor *out, double *y)
{
    int64_t C = numel(xt[1]), N = numel(xt[0]) / C;
    for (int64_t r = 0; r < N; r++) {
        double ss = 0;
        for (int64_t j = 0; j < C; j++)
            ss += (double)x[0][r * C + j] * x[0][r * C + j];
        double rs = 1.0 / sqrt(ss / C + c->fp[0]);
        for (int64_t j = 0; j < C; j++)
            y[r * C + j] = x[0][r * C + j] * rs * x[1][j];
    }
}

static void ref_rope(const struct tcase *c, float **x, int32_t **ids, struct hm_tensor **xt,
                     struct hm_tensor **it, const struct hm_tensor *out, double *y)
{
    int64_t B = xt[0]->shape[0], T = xt[0]->shape[1], H = xt[0]->shape[2], HD = xt[0]->shape[3];
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < H; h++) {
                const float *xr = x[0] + ((b * T + t) * H + h) * HD;
                double *yr = y + ((b * T + t) * H + h) * HD;
                for (int64_t k = 0; k < HD / 2; k++) {
                    double inv = 1.0 / pow(c->fp[0], 2.0 * k / HD), a = (c->pos + t) * inv;
                    yr[k] = xr[k] * cos(a) - xr[k + HD / 2] * sin(a);
                    yr[k + HD / 2] = xr[k + HD / 2] * cos(a) + xr[k] * sin(a);
                }
            }
}

static void ref_attention(const struct tcase *c, float **x, int32_t **ids, struct hm_tensor **xt,
                          struct hm_tensor **it, const struct hm_tensor *out, double *y)
{
    int64_t B = xt[0]->shape[0], T = xt[0]->shape[1], NH = xt[0]->shape[2], HD = xt[0]->shape[3];
    int64_t S = xt[1]->shape[1], NKV = xt[1]->shape[2];
    double *s = malloc(sizeof(double) * S);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < NH; h++) {
                int64_t kh = h / (NH / NKV), L = c->pos + t + 1;
                int64_t lo = c->n_i ? ids[0][b * T + t] : 0; /* packed documents */
                const float *q = x[0] + ((b * T + t) * NH + h) * HD;
                double m = -INFINITY, sum = 0;
                for (int64_t j = 0; j < lo; j++)
                    s[j] = 0;
                for (int64_t j = lo; j < L; j++) {
                    const float *k = x[1] + ((b * S + j) * NKV + kh) * HD;
                    double d = 0;
                    for (int64_t e = 0; e < HD; e++)
                        d += (double)q[e] * k[e];
                    s[j] = d / sqrt((double)HD);
                    m = s[j] > m ? s[j] : m;
                }
                for (int64_t j = lo; j < L; j++)
                    sum += s[j] = exp(s[j] - m);
                double *o = y + ((b * T + t) * NH + h) * HD;
                for (int64_t e = 0; e < HD; e++) {
                    double acc = 0;
                    for (int64_t j = 0; j < L; j++)
                        acc += s[j] * x[2][((b * S + j) * NKV + kh) * HD + e];
                    o[e] = acc / sum;
                }
            }
    free(s);
}

static void ref_gelu(const struct tcase *c, float **x, int32_t **ids, struct hm_tensor **xt,
                     struct hm_tensor **it, const struct hm_tensor *out, double *y)
{
    for (int64_t i = 0; i < numel(out); i++)
        y[i] = 0.5 * x[0][i] * (1.0 + erf(x[0][i] / sqrt(2.0)));
}

static void ref_swiglu(const struct tcase *c, float **x, int32_t **ids, struct hm_tensor **xt,
                       struct hm_tensor **it, const struct hm_tensor *out, double *y)
{
    for (int64_t i = 0; i < numel(out); i++) {
        double g = x[0][i];
        y[i] = g / (1.0 + exp(-g)) * x[1][i];
    }
}

#define DROP_SEED 1234
#define DROP_STEP 7

static void ref_dropout(const struct tcase *c, float **x, int32_t **ids, struct hm_tensor **xt,
                        struct hm_tensor **it, const struct hm_tensor *out, double *y)
{
    uint32_t thr = (uint32_t)((double)c->fp[0] * 4294967296.0);
    for (int64_t i = 0; i < numel(out); i++) {
        bool keep = hm_dropout_bits(DROP_SEED, DROP_STEP, (uint32_t)c->ip[0], (uint64_t)i) >= thr;
        y[i] = keep ? x[0][i] / (1.0 - c->fp[0]) : 0.0;
    }
}

static void ref_cross_entropy(const struct tcase *c, float **x, int32_t **ids, struct hm_tensor **xt,
                              struct hm_tensor **it, const struct hm_tensor *out, double *y)
{
    int64_t V = xt[0]->shape[1], N = xt[0]->shape[0], n = 0;
    double total = 0;
    for (int64_t r = 0; r < N; r++) {
        if (ids[0][r] == HM_IGNORE_INDEX)
            continue;
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < V; j++)
            m = fmax(m, x[0][r * V + j]);
        for (int64_t j = 0; j < V; j++)
            s += exp(x[0][r * V + j] - m);
        total += m + log(s) - x[0][r * V + ids[0][r]];
        n++;
    }
    y[0] = n ? total / n : 0.0;
}

/* ---- builders ------------------------------------------------------------------------------- */

static struct hm_tensor *b_add(const struct tcase *c, struct hm_ctx *ctx, struct hm_tensor **x,
                               struct hm_tensor **ids)
{
    return hm_add(ctx, x[0], x[1]);
}
static struct hm_tensor *b_mul(const struct tcase *c, struct hm_ctx *ctx, struct hm_tensor **x,
                               struct hm_tensor **ids)
{
    return hm_mul(ctx, x[0], x[1]);
}
static struct hm_tensor *b_scale(const struct tcase *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                 struct hm_tensor **ids)
{
    return hm_scale(ctx, x[0], c->fp[0]);
}
static struct hm_tensor *b_matmul(const struct tcase *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                  struct hm_tensor **ids)
{
    return hm_matmul_ex(ctx, x[0], x[1], c->n_f == 3 ? x[2] : NULL, c->ip[0], c->ip[1],
                        c->fp[0] ? c->fp[0] : 1.0f);
}
static struct hm_tensor *b_embedding(const struct tcase *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                     struct hm_tensor **ids)
{
    return hm_embedding(ctx, x[0], ids[0]);
}
static struct hm_tensor *b_rms_norm(const struct tcase *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                    struct hm_tensor **ids)
{
    return hm_rms_norm(ctx, x[0], x[1], c->fp[0]);
}
static struct hm_tensor *b_rope(const struct tcase *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                struct hm_tensor **ids)
{
    return hm_rope(ctx, x[0], c->fp[0]);
}
static struct hm_tensor *b_attention(const struct tcase *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                     struct hm_tensor **ids)
{
    return hm_attention(ctx, x[0], x[1], x[2]);
}
static struct hm_tensor *b_attention_docs(const struct tcase *c, struct hm_ctx *ctx,
                                          struct hm_tensor **x, struct hm_tensor **ids)
{
    return hm_attention_docs(ctx, x[0], x[1], x[2], ids[0]);
}
/* Document starts: short documents in one block of rows, and (T = 70) a block of rows whose
 * keys start past 0, the path that skips keys before the block's documents. */
static const int32_t docs_short[18] = {0, 0, 0, 3, 3, 5, 5, 5, 5, 0, 1, 1, 1, 1, 1, 6, 6, 6};
static int32_t docs_long[70];
static void init_docs_long(void)
{
    for (int t = 0; t < 70; t++)
        docs_long[t] = t < 30 ? 0 : t < 55 ? 30 : t < 66 ? 55 : 66;
}
static struct hm_tensor *b_gelu(const struct tcase *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                struct hm_tensor **ids)
{
    return hm_gelu(ctx, x[0]);
}
static struct hm_tensor *b_swiglu(const struct tcase *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                  struct hm_tensor **ids)
{
    return hm_swiglu(ctx, x[0], x[1]);
}
static struct hm_tensor *b_dropout(const struct tcase *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                   struct hm_tensor **ids)
{
    return hm_dropout(ctx, x[0], c->fp[0], c->ip[0]);
}
static struct hm_tensor *b_cross_entropy(const struct tcase *c, struct hm_ctx *ctx,
                                         struct hm_tensor **x, struct hm_tensor **ids)
{
    return hm_cross_entropy(ctx, x[0], ids[0], HM_IGNORE_INDEX);
}
/* A reshape and a slice in front of an op: gradients must flow through views. */
static struct hm_tensor *b_views(const struct tcase *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                 struct hm_tensor **ids)
{
    struct hm_tensor *r = hm_reshape(ctx, x[0], 3, (int64_t[]){1, 6, 5});
    struct hm_tensor *s = hm_slice(ctx, r, 1, 2, 3); /* rows 2..4 of 6 */
    return hm_scale(ctx, s, 1.5f);
}
static void ref_views(const struct tcase *c, float **x, int32_t **ids, struct hm_tensor **xt,
                      struct hm_tensor **it, const struct hm_tensor *out, double *y)
{
    for (int64_t i = 0; i < 15; i++)
        y[i] = 1.5 * x[0][10 + i];
}

#define F2(a, b) {a, b}
static const struct tcase cases[] = {
    {.name = "add", .n_f = 2, .nd = {3, 3}, .sh = {{3, 5, 7}, {3, 5, 7}}, .build = b_add, .ref = ref_add},
    {.name = "add_broadcast", .n_f = 2, .nd = {3, 1}, .sh = {{2, 3, 7}, {7}}, .build = b_add, .ref = ref_add},
    {.name = "mul", .n_f = 2, .nd = {2, 2}, .sh = {{4, 9}, {4, 9}}, .build = b_mul, .ref = ref_mul},
    {.name = "scale", .n_f = 1, .nd = {2}, .sh = {{5, 6}}, .fp = {0.7f}, .build = b_scale, .ref = ref_scale},
    {.name = "views", .n_f = 1, .nd = {2}, .sh = {{5, 6}}, .build = b_views, .ref = ref_views},
    {.name = "matmul", .n_f = 2, .nd = {2, 2}, .sh = {{5, 7}, {7, 3}}, .build = b_matmul, .ref = ref_matmul},
    {.name = "matmul_ta_tb", .n_f = 2, .nd = {2, 2}, .sh = {{7, 5}, {3, 7}}, .ip = {1, 1}, .fp = {0.5f},
     .build = b_matmul, .ref = ref_matmul},
    {.name = "linear_bias", .n_f = 3, .nd = {3, 2, 1}, .sh = {{2, 3, 6}, {5, 6}, {5}}, .ip = {0, 1},
     .build = b_matmul, .ref = ref_matmul},
    {.name = "matmul_batched", .n_f = 2, .nd = {3, 3}, .sh = {{3, 4, 5}, {3, 5, 2}}, .build = b_matmul,
     .ref = ref_matmul},
    {.name = "matmul_batched_t", .n_f = 2, .nd = {3, 3}, .sh = {{3, 5, 4}, {3, 2, 5}}, .ip = {1, 1},
     .build = b_matmul, .ref = ref_matmul},
    {.name = "embedding", .n_f = 1, .nd = {2}, .sh = {{11, 6}}, .n_i = 1, .ind = {2}, .ish = {{2, 5}},
     .ihi = {11}, .build = b_embedding, .ref = ref_embedding},
    {.name = "rms_norm", .n_f = 2, .nd = {3, 1}, .sh = {{3, 4, 13}, {13}}, .fp = {1e-5f},
     .build = b_rms_norm, .ref = ref_rms_norm},
    {.name = "rope", .n_f = 1, .nd = {4}, .sh = {{2, 5, 3, 8}}, .fp = {10000.0f}, .build = b_rope, .ref = ref_rope},
    {.name = "rope_pos", .n_f = 1, .nd = {4}, .sh = {{1, 3, 2, 6}}, .fp = {500.0f}, .pos = 17,
     .build = b_rope, .ref = ref_rope},
    {.name = "attention_gqa", .n_f = 3, .nd = {4, 4, 4}, .sh = {{2, 5, 4, 6}, {2, 5, 2, 6}, {2, 5, 2, 6}},
     .build = b_attention, .ref = ref_attention},
    {.name = "attention_mha_odd", .n_f = 3, .nd = {4, 4, 4}, .sh = {{1, 7, 3, 5}, {1, 7, 3, 5}, {1, 7, 3, 5}},
     .build = b_attention, .ref = ref_attention},
    {.name = "attention_t1", .n_f = 3, .nd = {4, 4, 4}, .sh = {{2, 1, 3, 4}, {2, 1, 1, 4}, {2, 1, 1, 4}},
     .build = b_attention, .ref = ref_attention},
    {.name = "attention_docs", .n_f = 3, .nd = {4, 4, 4}, .sh = {{2, 9, 4, 6}, {2, 9, 2, 6}, {2, 9, 2, 6}},
     .n_i = 1, .ind = {2}, .ish = {{2, 9}}, .fixed_ids = docs_short, .build = b_attention_docs,
     .ref = ref_attention},
    {.name = "attention_docs_blocks", .n_f = 3, .nd = {4, 4, 4}, .sh = {{1, 70, 2, 4}, {1, 70, 1, 4}, {1, 70, 1, 4}},
     .n_i = 1, .ind = {2}, .ish = {{1, 70}}, .fixed_ids = docs_long, .build = b_attention_docs,
     .ref = ref_attention},
    {.name = "attention_cache_pos", .n_f = 3, .nd = {4, 4, 4},
     .sh = {{1, 2, 4, 4}, {1, 6, 2, 4}, {1, 6, 2, 4}}, .pos = 3, .build = b_attention, .ref = ref_attention},
    {.name = "gelu", .n_f = 1, .nd = {2}, .sh = {{4, 7}}, .amp = {3.0f}, .build = b_gelu, .ref = ref_gelu},
    {.name = "swiglu", .n_f = 2, .nd = {2, 2}, .sh = {{3, 11}, {3, 11}}, .amp = {3.0f, 1.0f},
     .build = b_swiglu, .ref = ref_swiglu},
    {.name = "dropout", .n_f = 1, .nd = {2}, .sh = {{6, 9}}, .fp = {0.3f}, .ip = {5}, .build = b_dropout,
     .ref = ref_dropout},
    {.name = "cross_entropy", .n_f = 1, .nd = {2}, .sh = {{7, 9}}, .amp = {2.0f}, .n_i = 1, .ind = {1},
     .ish = {{7}}, .ihi = {9}, .ignore = true, .build = b_cross_entropy, .ref = ref_cross_entropy},
};

/* ---- harness -------------------------------------------------------------------------------- */

struct run {
    struct hm_block *blk;
    struct hm_ctx *ctx;
    struct hm_graph *g;
    struct hm_tensor *x[4], *ids[2], *out, *z, *r;
    float *hx[4];
    int32_t *hids[2];
};

static double loss_of(struct run *R)
{
    assert_int_equal(hm_graph_forward(R->g), HM_OK);
    int64_t n = hm_nelements(R->z);
    float *z = malloc(sizeof(float) * (size_t)n);
    assert_int_equal(hm_tensor_get(R->z, z, hm_nbytes(R->z)), HM_OK);
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += z[i];
    free(z);
    return s;
}

static void run_case(const struct tcase *c, struct hm_backend *be)
{
    struct run R = {0};
    struct hm_rng rng;
    hm_rng_seed(&rng, 42);
    assert_int_equal(hm_block_new(true, &R.blk), HM_OK);
    for (int i = 0; i < c->n_f; i++)
        R.x[i] = hm_block_add(R.blk, "x", HM_DTYPE_F32, c->nd[i], c->sh[i]);
    assert_int_equal(hm_block_alloc(R.blk, be), HM_OK);
    for (int i = 0; i < c->n_f; i++) {
        int64_t n = hm_nelements(R.x[i]);
        float amp = c->amp[i] ? c->amp[i] : 1.0f;
        R.hx[i] = malloc(sizeof(float) * (size_t)n);
        for (int64_t j = 0; j < n; j++)
            R.hx[i][j] = amp * (float)(2.0 * hm_rng_uniform(&rng) - 1.0);
        assert_int_equal(hm_tensor_set(R.x[i], R.hx[i], hm_nbytes(R.x[i])), HM_OK);
    }
    assert_int_equal(hm_ctx_new(&R.ctx), HM_OK);
    for (int i = 0; i < c->n_i; i++)
        R.ids[i] = hm_new_input(R.ctx, HM_DTYPE_I32, c->ind[i], c->ish[i]);
    R.out = c->build(c, R.ctx, R.x, R.ids);
    R.r = hm_new_input(R.ctx, HM_DTYPE_F32, R.out->n_dims, R.out->shape);
    R.z = hm_mul(R.ctx, R.out, R.r);
    hm_set_output(R.out);
    assert_int_equal(hm_graph_new(R.ctx, &R.g), HM_OK);
    hm_graph_build_forward(R.g, R.z);
    assert_int_equal(hm_graph_build_backward(R.g, R.z), HM_OK);
    assert_int_equal(hm_graph_plan(R.g, be), HM_OK);
    struct hm_runtime *rt = hm_graph_runtime(R.g);
    rt->pos = c->pos;
    rt->seed = DROP_SEED;
    rt->step = DROP_STEP;

    for (int i = 0; i < c->n_i; i++) {
        int64_t n = hm_nelements(R.ids[i]);
        R.hids[i] = malloc(sizeof(int32_t) * (size_t)n);
        for (int64_t j = 0; j < n; j++)
            R.hids[i][j] = c->fixed_ids && i == 0 ? c->fixed_ids[j]
                                                  : (int32_t)hm_rng_below(&rng, (uint64_t)c->ihi[i]);
        if (c->ignore) {
            R.hids[i][1] = HM_IGNORE_INDEX;
            R.hids[i][n - 1] = HM_IGNORE_INDEX;
        }
        assert_int_equal(hm_tensor_set(R.ids[i], R.hids[i], hm_nbytes(R.ids[i])), HM_OK);
    }
    int64_t no = hm_nelements(R.out);
    float *hr = malloc(sizeof(float) * (size_t)no), *ho = malloc(sizeof(float) * (size_t)no);
    for (int64_t j = 0; j < no; j++)
        hr[j] = (float)(2.0 * hm_rng_uniform(&rng) - 1.0);
    assert_int_equal(hm_tensor_set(R.r, hr, hm_nbytes(R.r)), HM_OK);

    /* forward vs reference */
    assert_int_equal(hm_graph_forward(R.g), HM_OK);
    assert_int_equal(hm_tensor_get(R.out, ho, hm_nbytes(R.out)), HM_OK);
    double *ref = malloc(sizeof(double) * (size_t)no);
    c->ref(c, R.hx, R.hids, R.x, R.ids, R.out, ref);
    double max_err = 0, max_ref = 0;
    for (int64_t j = 0; j < no; j++) {
        max_err = fmax(max_err, fabs(ho[j] - ref[j]));
        max_ref = fmax(max_ref, fabs(ref[j]));
    }
    if (max_err > 1e-5 * fmax(1.0, max_ref))
        fail_msg("%s: forward differs from reference by %g (max |ref| %g)", c->name, max_err, max_ref);

    /* backward vs central differences */
    assert_int_equal(hm_buffer_zero(hm_block_grads(R.blk)), HM_OK);
    assert_int_equal(hm_graph_forward(R.g), HM_OK);
    assert_int_equal(hm_graph_backward(R.g), HM_OK);
    double eps = c->fd_eps ? c->fd_eps : 1e-2;
    for (int i = 0; i < c->n_f; i++) {
        int64_t n = hm_nelements(R.x[i]);
        float *gr = malloc(sizeof(float) * (size_t)n);
        assert_int_equal(hm_tensor_get(R.x[i]->grad, gr, hm_nbytes(R.x[i])), HM_OK);
        int64_t step = n > 40 ? n / 40 : 1; /* about 40 elements per input */
        for (int64_t j = (int64_t)(i * 7) % step; j < n; j += step) {
            float orig = R.hx[i][j];
            size_t off = hm_block_elem_offset(R.x[i]) * 4 + (size_t)j * 4;
            float v = orig + (float)eps;
            hm_buffer_set(hm_block_data(R.blk), off, &v, 4);
            double fp = loss_of(&R);
            v = orig - (float)eps;
            hm_buffer_set(hm_block_data(R.blk), off, &v, 4);
            double fm = loss_of(&R);
            hm_buffer_set(hm_block_data(R.blk), off, &orig, 4);
            double num = (fp - fm) / (2 * eps), ana = gr[j];
            if (fabs(num - ana) > 5e-4 + 5e-3 * fmax(fabs(num), fabs(ana)))
                fail_msg("%s: d/dx%d[%lld]: backward %.6g, finite difference %.6g", c->name, i,
                         (long long)j, ana, num);
        }
        free(gr);
    }
    free(ref);
    free(hr);
    free(ho);
    for (int i = 0; i < 4; i++)
        free(R.hx[i]);
    for (int i = 0; i < 2; i++)
        free(R.hids[i]);
    hm_graph_free(R.g);
    hm_ctx_free(R.ctx);
    hm_block_free(R.blk);
}

static void test_case(void **state)
{
    struct hm_backend *be;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    run_case(*state, be);
    hm_backend_free(be);
}

/* Every op in ops.def is either covered by a case above or listed here with where it is tested. */
static void test_coverage(void **state)
{
    struct hm_backend *be;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    for (int op = 0; op < HM_OP_COUNT; op++)
        assert_true(hm_backend_supports_op(be, op));
    hm_backend_free(be);
}

int main(void)
{
    enum { N = sizeof(cases) / sizeof(cases[0]) };
    struct CMUnitTest tests[N + 1];
    const char *filter = getenv("HM_TEST_OP");
    init_docs_long();
    int n = 0;
    for (int i = 0; i < N; i++) {
        if (filter && !strstr(cases[i].name, filter))
            continue;
        tests[n++] = (struct CMUnitTest){cases[i].name, test_case, NULL, NULL, (void *)&cases[i]};
    }
    tests[n++] = (struct CMUnitTest){"coverage", test_coverage, NULL, NULL, NULL};
    return _cmocka_run_group_tests("ops", tests, (size_t)n, NULL, NULL);
}
