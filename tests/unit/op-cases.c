/*
 * op-cases.c - the op-case table of op-cases.h: builders, reference loops in double, and the
 * shared setup. Shapes are small, odd and non-power-of-two; attention is checked with GQA, at
 * T = 1 and at a cache position.
 */
#include "op-cases.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- reference loops ------------------------------------------------------------------------ */

static int64_t numel(const struct hm_tensor *t)
{
    return hm_nelements(t);
}

static void ref_add(const struct op_case *c, float **x, int32_t **ids, struct hm_tensor **xt,
                    struct hm_tensor **it, const struct hm_tensor *out, double *y)
{
    int64_t nb = numel(xt[1]);
    for (int64_t i = 0; i < numel(out); i++)
        y[i] = (double)x[0][i] + x[1][i % nb];
}

static void ref_mul(const struct op_case *c, float **x, int32_t **ids, struct hm_tensor **xt,
                    struct hm_tensor **it, const struct hm_tensor *out, double *y)
{
    for (int64_t i = 0; i < numel(out); i++)
        y[i] = (double)x[0][i] * x[1][i];
}

static void ref_scale(const struct op_case *c, float **x, int32_t **ids, struct hm_tensor **xt,
                      struct hm_tensor **it, const struct hm_tensor *out, double *y)
{
    for (int64_t i = 0; i < numel(out); i++)
        y[i] = (double)x[0][i] * c->fp[0];
}

/* ip[0] = trans_a, ip[1] = trans_b, fp[0] = alpha (0 -> 1), n_f == 3 -> bias */
static void ref_matmul(const struct op_case *c, float **x, int32_t **ids, struct hm_tensor **xt,
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

static void ref_embedding(const struct op_case *c, float **x, int32_t **ids, struct hm_tensor **xt,
                          struct hm_tensor **it, const struct hm_tensor *out, double *y)
{
    int64_t C = xt[0]->shape[1];
    for (int64_t i = 0; i < numel(it[0]); i++)
        for (int64_t j = 0; j < C; j++)
            y[i * C + j] = x[0][ids[0][i] * C + j];
}

static void ref_rms_norm(const struct op_case *c, float **x, int32_t **ids, struct hm_tensor **xt,
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

static void ref_rope(const struct op_case *c, float **x, int32_t **ids, struct hm_tensor **xt,
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

static void ref_attention(const struct op_case *c, float **x, int32_t **ids, struct hm_tensor **xt,
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

static void ref_gelu(const struct op_case *c, float **x, int32_t **ids, struct hm_tensor **xt,
                     struct hm_tensor **it, const struct hm_tensor *out, double *y)
{
    for (int64_t i = 0; i < numel(out); i++)
        y[i] = 0.5 * x[0][i] * (1.0 + erf(x[0][i] / sqrt(2.0)));
}

static void ref_swiglu(const struct op_case *c, float **x, int32_t **ids, struct hm_tensor **xt,
                       struct hm_tensor **it, const struct hm_tensor *out, double *y)
{
    for (int64_t i = 0; i < numel(out); i++) {
        double g = x[0][i];
        y[i] = g / (1.0 + exp(-g)) * x[1][i];
    }
}

static void ref_dropout(const struct op_case *c, float **x, int32_t **ids, struct hm_tensor **xt,
                        struct hm_tensor **it, const struct hm_tensor *out, double *y)
{
    uint32_t thr = (uint32_t)((double)c->fp[0] * 4294967296.0);
    for (int64_t i = 0; i < numel(out); i++) {
        if (c->eval) { /* dropout copies outside training */
            y[i] = x[0][i];
            continue;
        }
        bool keep = hm_dropout_bits(OP_DROP_SEED, OP_DROP_STEP, (uint32_t)c->ip[0], (uint64_t)i) >= thr;
        y[i] = keep ? x[0][i] / (1.0 - c->fp[0]) : 0.0;
    }
}

static void ref_cross_entropy(const struct op_case *c, float **x, int32_t **ids, struct hm_tensor **xt,
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

/* s = a + b, h = rms_norm(s, w): the row's sum, rounded to f32 as the op stores it. */
static void add_rms_norm_ref(const float *a, double a_scale, const float *b, const float *w, int64_t N,
                             int64_t C, double eps, double *s, double *h)
{
    for (int64_t r = 0; r < N; r++) {
        double ss = 0;
        for (int64_t j = 0; j < C; j++) {
            s[r * C + j] = (float)(a_scale * a[r * C + j] + b[r * C + j]);
            ss += s[r * C + j] * s[r * C + j];
        }
        double rs = 1.0 / sqrt(ss / C + eps);
        for (int64_t j = 0; j < C; j++)
            h[r * C + j] = s[r * C + j] * rs * w[j];
    }
}

static void ref_add_rms_norm(const struct op_case *c, float **x, int32_t **ids, struct hm_tensor **xt,
                             struct hm_tensor **it, const struct hm_tensor *out, double *y)
{
    int64_t C = numel(xt[2]), N = numel(xt[0]) / C;
    double *s = malloc(sizeof(double) * (size_t)(N * C));
    add_rms_norm_ref(x[0], 1.0, x[1], x[2], N, C, c->fp[0], s, y);
    free(s);
}

/* out = h * s with a = 0.5 x0: both outputs carry gradients, and grad(a) may alias grad(s) */
static void ref_add_rms_norm_both(const struct op_case *c, float **x, int32_t **ids, struct hm_tensor **xt,
                                  struct hm_tensor **it, const struct hm_tensor *out, double *y)
{
    int64_t C = numel(xt[2]), N = numel(xt[0]) / C;
    double *s = malloc(sizeof(double) * (size_t)(N * C));
    add_rms_norm_ref(x[0], 0.5, x[1], x[2], N, C, c->fp[0], s, y);
    for (int64_t i = 0; i < N * C; i++)
        y[i] *= s[i];
    free(s);
}

/* ---- builders ------------------------------------------------------------------------------- */

static struct hm_tensor *b_add(const struct op_case *c, struct hm_ctx *ctx, struct hm_tensor **x,
                               struct hm_tensor **ids)
{
    return hm_add(ctx, x[0], x[1]);
}
static struct hm_tensor *b_mul(const struct op_case *c, struct hm_ctx *ctx, struct hm_tensor **x,
                               struct hm_tensor **ids)
{
    return hm_mul(ctx, x[0], x[1]);
}
static struct hm_tensor *b_scale(const struct op_case *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                 struct hm_tensor **ids)
{
    return hm_scale(ctx, x[0], c->fp[0]);
}
static struct hm_tensor *b_matmul(const struct op_case *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                  struct hm_tensor **ids)
{
    return hm_matmul_ex(ctx, x[0], x[1], c->n_f == 3 ? x[2] : NULL, c->ip[0], c->ip[1],
                        c->fp[0] ? c->fp[0] : 1.0f);
}
static struct hm_tensor *b_embedding(const struct op_case *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                     struct hm_tensor **ids)
{
    return hm_embedding(ctx, x[0], ids[0]);
}
static struct hm_tensor *b_rms_norm(const struct op_case *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                    struct hm_tensor **ids)
{
    return hm_rms_norm(ctx, x[0], x[1], c->fp[0]);
}
static struct hm_tensor *b_rope(const struct op_case *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                struct hm_tensor **ids)
{
    return hm_rope(ctx, x[0], c->fp[0]);
}
static struct hm_tensor *b_attention(const struct op_case *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                     struct hm_tensor **ids)
{
    return hm_attention(ctx, x[0], x[1], x[2]);
}
static struct hm_tensor *b_gelu(const struct op_case *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                struct hm_tensor **ids)
{
    return hm_gelu(ctx, x[0]);
}
static struct hm_tensor *b_swiglu(const struct op_case *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                  struct hm_tensor **ids)
{
    return hm_swiglu(ctx, x[0], x[1]);
}
static struct hm_tensor *b_dropout(const struct op_case *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                   struct hm_tensor **ids)
{
    return hm_dropout(ctx, x[0], c->fp[0], c->ip[0]);
}
static struct hm_tensor *b_cross_entropy(const struct op_case *c, struct hm_ctx *ctx,
                                         struct hm_tensor **x, struct hm_tensor **ids)
{
    return hm_cross_entropy(ctx, x[0], ids[0], HM_IGNORE_INDEX);
}
/* A reshape and a slice in front of an op: gradients must flow through views. */
static struct hm_tensor *b_views(const struct op_case *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                 struct hm_tensor **ids)
{
    struct hm_tensor *r = hm_reshape(ctx, x[0], 3, (int64_t[]){1, 6, 5});
    struct hm_tensor *s = hm_slice(ctx, r, 1, 2, 3); /* rows 2..4 of 6 */
    return hm_scale(ctx, s, 1.5f);
}
static void ref_views(const struct op_case *c, float **x, int32_t **ids, struct hm_tensor **xt,
                      struct hm_tensor **it, const struct hm_tensor *out, double *y)
{
    for (int64_t i = 0; i < 15; i++)
        y[i] = 1.5 * x[0][10 + i];
}

static struct hm_tensor *b_add_rms_norm(const struct op_case *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                        struct hm_tensor **ids)
{
    struct hm_tensor *s;
    return hm_add_rms_norm(ctx, x[0], x[1], x[2], c->fp[0], &s);
}
static struct hm_tensor *b_add_rms_norm_both(const struct op_case *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                             struct hm_tensor **ids)
{
    struct hm_tensor *s, *h = hm_add_rms_norm(ctx, hm_scale(ctx, x[0], 0.5f), x[1], x[2], c->fp[0], &s);
    return hm_mul(ctx, h, s);
}
/* KV_WRITE into caches as long as the sequence (every slot written), then attention over them */
static struct hm_tensor *b_kv_write_attention(const struct op_case *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                              struct hm_tensor **ids)
{
    struct hm_tensor *kc = hm_new_tensor(ctx, x[1]->type, 4, x[1]->shape);
    struct hm_tensor *vc = hm_new_tensor(ctx, x[2]->type, 4, x[2]->shape);
    return hm_attention(ctx, x[0], hm_kv_write(ctx, kc, x[1]), hm_kv_write(ctx, vc, x[2]));
}
/* logits = x W^T + b, then cross-entropy: the backward runs in place over the logits */
static struct hm_tensor *b_linear_ce(const struct op_case *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                     struct hm_tensor **i)
{
    return hm_cross_entropy(ctx, hm_linear(ctx, x[0], x[1], x[2]), i[0], HM_IGNORE_INDEX);
}
/* a pre-norm MLP block with a residual: several consumers per tensor, so acc bits matter */
static struct hm_tensor *b_mlp_block(const struct op_case *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                     struct hm_tensor **i)
{
    struct hm_tensor *h = hm_rms_norm(ctx, x[0], x[1], 1e-5f);
    h = hm_gelu(ctx, hm_linear(ctx, h, x[2], NULL));
    h = hm_linear(ctx, h, x[3], NULL);
    return hm_add(ctx, x[0], hm_dropout(ctx, h, 0.2f, 3));
}
/* packed documents: rows see keys from their document's start only (ids[0] holds the starts) */
static struct hm_tensor *b_attention_docs(const struct op_case *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                          struct hm_tensor **ids)
{
    return hm_attention_docs(ctx, x[0], x[1], x[2], ids[0]);
}
static struct hm_tensor *b_rope_attention_docs(const struct op_case *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                               struct hm_tensor **ids)
{
    return hm_attention_docs(ctx, hm_rope(ctx, x[0], 10000.0f), hm_rope(ctx, x[1], 10000.0f), x[2], ids[0]);
}
/* Short documents in one block of rows (B = 2, T = 9). */
static int32_t docs_short(int64_t b, int64_t t)
{
    static const int32_t starts[2][9] = {{0, 0, 0, 3, 3, 5, 5, 5, 5}, {0, 1, 1, 1, 1, 1, 6, 6, 6}};
    return starts[b][t];
}
/* T = 70: a block of rows whose keys start past 0, the path that skips keys before the block's
 * documents. */
static int32_t docs_blocks(int64_t b, int64_t t)
{
    (void)b;
    return t < 30 ? 0 : t < 55 ? 30 : t < 66 ? 55 : 66;
}
/* GPU tiles: batch 0 in documents of 37 positions, batch 1 one of 64 then of 11 (whole key tiles
 * before a row's start are skipped, partial ones masked). */
static int32_t docs_tiles(int64_t b, int64_t t)
{
    if (b % 2 == 0)
        return (int32_t)(t - t % 37);
    return t < 64 ? 0 : (int32_t)(64 + (t - 64) / 11 * 11);
}

/* rope on q and k, then attention: the training path of the model */
static struct hm_tensor *b_rope_attention(const struct op_case *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                          struct hm_tensor **i)
{
    return hm_attention(ctx, hm_rope(ctx, x[0], 10000.0f), hm_rope(ctx, x[1], 10000.0f), x[2]);
}

/* ---- the table -------------------------------------------------------------------------------- */
const struct op_case hm_op_cases[] = {
    {.name = "add", .n_f = 2, .nd = {3, 3}, .sh = {{3, 5, 7}, {3, 5, 7}}, .build = b_add, .ref = ref_add},
    {.name = "add_broadcast", .n_f = 2, .nd = {3, 1}, .sh = {{2, 3, 7}, {7}}, .build = b_add, .ref = ref_add},
    {.name = "add_broadcast_wide", .n_f = 2, .nd = {3, 1}, .sh = {{4, 75, 33}, {33}}, .gpu = true, .build = b_add},
    {.name = "mul", .n_f = 2, .nd = {2, 2}, .sh = {{4, 9}, {4, 9}}, .build = b_mul, .ref = ref_mul},
    {.name = "mul_wide", .n_f = 2, .nd = {2, 2}, .sh = {{40, 91}, {40, 91}}, .gpu = true, .build = b_mul},
    {.name = "scale", .n_f = 1, .nd = {2}, .sh = {{5, 6}}, .fp = {0.7f}, .build = b_scale, .ref = ref_scale},
    {.name = "views", .n_f = 1, .nd = {2}, .sh = {{5, 6}}, .build = b_views, .ref = ref_views},
    {.name = "matmul", .n_f = 2, .nd = {2, 2}, .sh = {{5, 7}, {7, 3}}, .build = b_matmul, .ref = ref_matmul},
    {.name = "matmul_big", .n_f = 2, .nd = {2, 2}, .sh = {{130, 257}, {257, 96}}, .gpu = true, .build = b_matmul},
    {.name = "matmul_ta_tb", .n_f = 2, .nd = {2, 2}, .sh = {{7, 5}, {3, 7}}, .ip = {1, 1}, .fp = {0.5f},
     .build = b_matmul, .ref = ref_matmul},
    {.name = "linear_bias", .n_f = 3, .nd = {3, 2, 1}, .sh = {{2, 3, 6}, {5, 6}, {5}}, .ip = {0, 1},
     .build = b_matmul, .ref = ref_matmul},
    {.name = "linear_bias_big", .n_f = 3, .nd = {3, 2, 1}, .sh = {{4, 65, 128}, {192, 128}, {192}}, .ip = {0, 1},
     .gpu = true, .build = b_matmul},
    {.name = "matmul_batched", .n_f = 2, .nd = {3, 3}, .sh = {{3, 4, 5}, {3, 5, 2}}, .build = b_matmul,
     .ref = ref_matmul},
    {.name = "matmul_batched_t", .n_f = 2, .nd = {3, 3}, .sh = {{3, 5, 4}, {3, 2, 5}}, .ip = {1, 1},
     .build = b_matmul, .ref = ref_matmul},
    {.name = "embedding", .n_f = 1, .nd = {2}, .sh = {{11, 6}}, .n_i = 1, .ind = {2}, .ish = {{2, 5}},
     .ihi = {11}, .build = b_embedding, .ref = ref_embedding},
    {.name = "embedding_repeats", .n_f = 1, .nd = {2}, .sh = {{50, 97}}, .n_i = 1, .ind = {2},
     .ish = {{8, 300}}, .ihi = {7}, .gpu = true, .build = b_embedding}, /* long runs of equal ids */
    {.name = "rms_norm", .n_f = 2, .nd = {3, 1}, .sh = {{3, 4, 13}, {13}}, .fp = {1e-5f},
     .build = b_rms_norm, .ref = ref_rms_norm},
    {.name = "rms_norm_rows", .n_f = 2, .nd = {3, 1}, .sh = {{4, 300, 192}, {192}}, .fp = {1e-5f}, .gpu = true,
     .build = b_rms_norm}, /* several column-sum chunks */
    {.name = "add_rms_norm", .n_f = 3, .nd = {3, 3, 1}, .sh = {{3, 4, 13}, {3, 4, 13}, {13}}, .fp = {1e-5f},
     .build = b_add_rms_norm, .ref = ref_add_rms_norm},
    {.name = "add_rms_norm_both", .n_f = 3, .nd = {3, 3, 1}, .sh = {{2, 5, 11}, {2, 5, 11}, {11}}, .fp = {1e-5f},
     .build = b_add_rms_norm_both, .ref = ref_add_rms_norm_both},
    {.name = "add_rms_norm_rows", .n_f = 3, .nd = {3, 3, 1}, .sh = {{4, 300, 192}, {4, 300, 192}, {192}},
     .fp = {1e-5f}, .gpu = true, .build = b_add_rms_norm_both, .tol16 = 3.2e-2},
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
     .n_i = 1, .ind = {2}, .ish = {{2, 9}}, .id_at = docs_short, .build = b_attention_docs, .ref = ref_attention},
    {.name = "attention_docs_blocks", .n_f = 3, .nd = {4, 4, 4}, .sh = {{1, 70, 2, 4}, {1, 70, 1, 4}, {1, 70, 1, 4}},
     .n_i = 1, .ind = {2}, .ish = {{1, 70}}, .id_at = docs_blocks, .build = b_attention_docs, .ref = ref_attention},
    {.name = "attention_docs_tiles", .n_f = 3, .nd = {4, 4, 4},
     .sh = {{2, 130, 4, 64}, {2, 130, 2, 64}, {2, 130, 2, 64}}, .n_i = 1, .ind = {2}, .ish = {{2, 130}},
     .id_at = docs_tiles, .gpu = true, .build = b_rope_attention_docs},
    {.name = "attention_cache_pos", .n_f = 3, .nd = {4, 4, 4},
     .sh = {{1, 2, 4, 4}, {1, 6, 2, 4}, {1, 6, 2, 4}}, .pos = 3, .build = b_attention, .ref = ref_attention},
    /* the head dims of the presets (16, 32) against the reference loop on the CPU: several row
     * blocks with GQA, document starts, a cache offset, and 48 */
    {.name = "attention_hd32_blocks", .n_f = 3, .nd = {4, 4, 4},
     .sh = {{2, 70, 4, 32}, {2, 70, 2, 32}, {2, 70, 2, 32}}, .build = b_attention, .ref = ref_attention},
    {.name = "attention_hd16_docs", .n_f = 3, .nd = {4, 4, 4}, .sh = {{1, 70, 2, 16}, {1, 70, 1, 16}, {1, 70, 1, 16}},
     .n_i = 1, .ind = {2}, .ish = {{1, 70}}, .id_at = docs_blocks, .build = b_attention_docs, .ref = ref_attention},
    {.name = "attention_hd32_cache_pos", .n_f = 3, .nd = {4, 4, 4},
     .sh = {{1, 17, 2, 32}, {1, 33, 2, 32}, {1, 33, 2, 32}}, .pos = 15, .build = b_attention, .ref = ref_attention},
    {.name = "attention_hd48", .n_f = 3, .nd = {4, 4, 4}, .sh = {{1, 9, 2, 48}, {1, 9, 2, 48}, {1, 9, 2, 48}},
     .build = b_attention, .ref = ref_attention},
    {.name = "attention_hd64_gqa", .n_f = 3, .nd = {4, 4, 4},
     .sh = {{2, 70, 6, 64}, {2, 70, 2, 64}, {2, 70, 2, 64}}, .gpu = true, .build = b_attention},
    {.name = "attention_hd128", .n_f = 3, .nd = {4, 4, 4},
     .sh = {{1, 41, 2, 128}, {1, 41, 2, 128}, {1, 41, 2, 128}}, .gpu = true, .build = b_attention},
    {.name = "attention_hd40", .n_f = 3, .nd = {4, 4, 4}, .sh = {{2, 33, 4, 40}, {2, 33, 1, 40}, {2, 33, 1, 40}},
     .gpu = true, .build = b_attention},
    {.name = "attention_hd200", .n_f = 3, .nd = {4, 4, 4},
     .sh = {{1, 35, 2, 200}, {1, 35, 2, 200}, {1, 35, 2, 200}}, .gpu = true, .build = b_attention},
    {.name = "attention_cache_long", .n_f = 3, .nd = {4, 4, 4},
     .sh = {{1, 3, 4, 64}, {1, 100, 2, 64}, {1, 100, 2, 64}}, .pos = 60, .gpu = true, .build = b_attention},
    {.name = "rope_attention", .n_f = 3, .nd = {4, 4, 4}, .sh = {{2, 37, 4, 32}, {2, 37, 4, 32}, {2, 37, 4, 32}},
     .gpu = true, .build = b_rope_attention, .tol16 = 3.2e-2},
    /* flash: several key tiles (double buffering), rows past the last full tile, GQA groups of 2
     * and 4, a KV cache longer than the queries (pos > 0), single-token decode */
    {.name = "flash_hd64_gqa4_tiles", .n_f = 3, .nd = {4, 4, 4},
     .sh = {{2, 200, 8, 64}, {2, 200, 2, 64}, {2, 200, 2, 64}}, .gpu = true, .flash = true, .build = b_attention},
    {.name = "flash_hd128_gqa2", .n_f = 3, .nd = {4, 4, 4},
     .sh = {{1, 130, 4, 128}, {1, 130, 2, 128}, {1, 130, 2, 128}}, .gpu = true, .flash = true,
     .build = b_attention},
    {.name = "flash_hd64_cache", .n_f = 3, .nd = {4, 4, 4},
     .sh = {{1, 5, 4, 64}, {1, 150, 4, 64}, {1, 150, 4, 64}}, .pos = 145, .gpu = true, .flash = true,
     .build = b_attention},
    {.name = "flash_hd128_decode", .n_f = 3, .nd = {4, 4, 4},
     .sh = {{2, 1, 4, 128}, {2, 77, 1, 128}, {2, 77, 1, 128}}, .pos = 76, .gpu = true, .flash = true,
     .build = b_attention},
    {.name = "flash_hd64_rope", .n_f = 3, .nd = {4, 4, 4},
     .sh = {{2, 97, 4, 64}, {2, 97, 4, 64}, {2, 97, 4, 64}}, .gpu = true, .flash = true,
     .build = b_rope_attention, .tol16 = 3.2e-2},
    {.name = "kv_write_attention", .n_f = 3, .nd = {4, 4, 4}, .sh = {{1, 4, 4, 6}, {1, 4, 2, 6}, {1, 4, 2, 6}},
     .fwd_only = true, .build = b_kv_write_attention, .ref = ref_attention},
    {.name = "gelu", .n_f = 1, .nd = {2}, .sh = {{4, 7}}, .amp = {3.0f}, .build = b_gelu, .ref = ref_gelu},
    {.name = "gelu_wide", .n_f = 1, .nd = {2}, .sh = {{40, 77}}, .amp = {3.0f}, .gpu = true, .build = b_gelu},
    {.name = "swiglu", .n_f = 2, .nd = {2, 2}, .sh = {{3, 11}, {3, 11}}, .amp = {3.0f, 1.0f},
     .build = b_swiglu, .ref = ref_swiglu},
    {.name = "swiglu_wide", .n_f = 2, .nd = {2, 2}, .sh = {{30, 111}, {30, 111}}, .amp = {3.0f, 1.0f},
     .gpu = true, .build = b_swiglu},
    {.name = "dropout", .n_f = 1, .nd = {2}, .sh = {{6, 9}}, .fp = {0.3f}, .ip = {5}, .build = b_dropout,
     .ref = ref_dropout},
    {.name = "dropout_wide", .n_f = 1, .nd = {2}, .sh = {{60, 97}}, .fp = {0.3f}, .ip = {5}, .gpu = true,
     .build = b_dropout},
    {.name = "dropout_eval", .n_f = 1, .nd = {2}, .sh = {{6, 9}}, .fp = {0.3f}, .ip = {5}, .eval = true,
     .build = b_dropout, .ref = ref_dropout},
    {.name = "cross_entropy", .n_f = 1, .nd = {2}, .sh = {{7, 9}}, .amp = {2.0f}, .n_i = 1, .ind = {1},
     .ish = {{7}}, .ihi = {9}, .ignore = true, .build = b_cross_entropy, .ref = ref_cross_entropy},
    {.name = "cross_entropy_big", .n_f = 1, .nd = {2}, .sh = {{130, 5003}}, .amp = {4.0f}, .n_i = 1, .ind = {1},
     .ish = {{130}}, .ihi = {5003}, .ignore = true, .gpu = true, .build = b_cross_entropy},
    /* Threads 200..255 of a row see only -inf: their partial sums must be 0, not NaN. */
    {.name = "cross_entropy_masked", .n_f = 1, .nd = {2}, .sh = {{7, 300}}, .amp = {2.0f}, .n_i = 1,
     .ind = {1}, .ish = {{7}}, .ihi = {200}, .ignore = true, .ninf_from = 200, .gpu = true,
     .build = b_cross_entropy},
    {.name = "linear_ce", .n_f = 3, .nd = {3, 2, 1}, .sh = {{2, 50, 64}, {1000, 64}, {1000}}, .n_i = 1,
     .ind = {2}, .ish = {{2, 50}}, .ihi = {1000}, .ignore = true, .gpu = true, .build = b_linear_ce, .tol16 = 3.2e-2},
    {.name = "mlp_block", .n_f = 4, .nd = {3, 1, 2, 2}, .sh = {{2, 70, 64}, {64}, {256, 64}, {64, 256}},
     .gpu = true, .build = b_mlp_block, .tol16 = 3.2e-2},
};
const int hm_n_op_cases = (int)(sizeof hm_op_cases / sizeof hm_op_cases[0]);

/* ---- setup ------------------------------------------------------------------------------------ */

void op_setup(const struct op_case *c, struct hm_backend *be, enum hm_dtype dt, uint64_t seed,
              uint64_t drop_seed, uint64_t drop_step, struct op_run *R)
{
    memset(R, 0, sizeof *R);
    struct hm_rng rng;
    hm_rng_seed(&rng, seed);
    assert_int_equal(hm_block_new(true, &R->blk), HM_OK);
    for (int i = 0; i < c->n_f; i++)
        R->x[i] = hm_block_add(R->blk, "x", HM_DTYPE_F32, c->nd[i], c->sh[i]);
    assert_int_equal(hm_block_alloc(R->blk, be), HM_OK);
    for (int i = 0; i < c->n_f; i++) {
        int64_t n = hm_nelements(R->x[i]);
        float amp = c->amp[i] ? c->amp[i] : 1.0f;
        R->hx[i] = malloc(sizeof(float) * (size_t)n);
        for (int64_t j = 0; j < n; j++)
            R->hx[i][j] = amp * (float)(2.0 * hm_rng_uniform(&rng) - 1.0);
        int64_t last = c->sh[i][c->nd[i] - 1];
        for (int64_t j = 0; i == 0 && c->ninf_from > 0 && j < n; j++)
            if (j % last >= c->ninf_from)
                R->hx[i][j] = -INFINITY;
        assert_int_equal(hm_tensor_set(R->x[i], R->hx[i], hm_nbytes(R->x[i])), HM_OK);
    }
    struct hm_tensor *xs[4] = {R->x[0], R->x[1], R->x[2], R->x[3]};
    if (dt == HM_DTYPE_BF16) { /* read as the model reads its weights: through bf16 copies */
        assert_int_equal(hm_block_new_copy(R->blk, dt, be, &R->copies), HM_OK);
        assert_int_equal(hm_block_copy_refresh(R->copies, R->blk), HM_OK);
        for (int i = 0; i < c->n_f; i++)
            xs[i] = hm_block_tensor(R->copies, i);
    }
    assert_int_equal(hm_ctx_new(&R->ctx), HM_OK);
    for (int i = 0; i < c->n_i; i++)
        R->ids[i] = hm_new_input(R->ctx, HM_DTYPE_I32, c->ind[i], c->ish[i]);
    R->out = c->build(c, R->ctx, xs, R->ids);
    R->r = hm_new_input(R->ctx, R->out->type, R->out->n_dims, R->out->shape);
    R->z = hm_mul(R->ctx, R->out, R->r);
    hm_set_output(R->out);
    assert_int_equal(hm_graph_new(R->ctx, &R->g), HM_OK);
    hm_graph_build_forward(R->g, R->z);
    if (!c->fwd_only)
        assert_int_equal(hm_graph_build_backward(R->g, R->z), HM_OK);
    if (hm_graph_plan(R->g, be) != HM_OK)
        fail_msg("%s: plan on %s: %s", c->name, hm_backend_name(be), hm_last_error());
    struct hm_runtime *rt = hm_graph_runtime(R->g);
    rt->pos = c->pos;
    rt->seed = drop_seed;
    rt->step = drop_step;
    rt->training = !c->eval;
    for (int i = 0; i < c->n_i; i++) {
        int64_t n = hm_nelements(R->ids[i]);
        R->hids[i] = malloc(sizeof(int32_t) * (size_t)n);
        for (int64_t j = 0; j < n; j++)
            R->hids[i][j] = c->id_at && i == 0 ? c->id_at(j / c->ish[0][1], j % c->ish[0][1])
                                               : (int32_t)hm_rng_below(&rng, (uint64_t)c->ihi[i]);
        if (c->ignore) {
            R->hids[i][1] = HM_IGNORE_INDEX;
            R->hids[i][n - 1] = HM_IGNORE_INDEX;
        }
        assert_int_equal(hm_tensor_set(R->ids[i], R->hids[i], hm_nbytes(R->ids[i])), HM_OK);
    }
    int64_t no = hm_nelements(R->out);
    R->hr = malloc(sizeof(float) * (size_t)no);
    for (int64_t j = 0; j < no; j++)
        R->hr[j] = (float)(2.0 * hm_rng_uniform(&rng) - 1.0);
    if (R->r->type == HM_DTYPE_BF16) /* rounded in place: the first half of hr holds the bf16 bits */
        hm_f32_to_bf16_n(R->hr, (uint16_t *)R->hr, (size_t)no);
    assert_int_equal(hm_tensor_set(R->r, R->hr, hm_nbytes(R->r)), HM_OK);
}

void op_run_free(struct op_run *R)
{
    void *host[] = {R->hx[0], R->hx[1], R->hx[2], R->hx[3], R->hids[0], R->hids[1], R->hr};
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++)
        free(host[i]);
    hm_graph_free(R->g);
    hm_ctx_free(R->ctx);
    hm_block_free(R->copies);
    hm_block_free(R->blk);
    memset(R, 0, sizeof *R);
}

int op_case_tests(struct CMUnitTest *tests, CMUnitTestFunction fn)
{
    const char *filter = getenv("HM_TEST_OP");
    int n = 0;
    for (int i = 0; i < hm_n_op_cases; i++) {
        const struct op_case *c = &hm_op_cases[i];
        if (!c->flash && (!filter || strstr(c->name, filter)))
            tests[n++] = (struct CMUnitTest){c->name, fn, NULL, NULL, (void *)c};
    }
    return n;
}

bool op_case_runs_matmul(const struct op_case *c, struct hm_backend *be, enum hm_dtype dt)
{
    struct op_run R;
    op_setup(c, be, dt, 1234, 99, 3, &R);
    hm_graph_set_profiling(R.g, true);
    assert_int_equal(hm_graph_forward(R.g), HM_OK);
    if (!c->fwd_only)
        assert_int_equal(hm_graph_backward(R.g), HM_OK);
    bool mm = hm_graph_profile(R.g, false)[HM_OP_MATMUL].calls > 0 ||
              hm_graph_profile(R.g, true)[HM_OP_MATMUL].calls > 0;
    op_run_free(&R);
    return mm;
}

/* ---- running a case and comparing results ---------------------------------------------------- */

void op_result_free(struct op_result *r)
{
    free(r->out);
    for (int i = 0; i < 4; i++)
        free(r->grad[i]);
}

void op_run_case(const struct op_case *c, struct hm_backend *be, enum hm_dtype dt, int runs,
                 struct op_result *res)
{
    struct op_run R;
    op_setup(c, be, dt, 1234, 99, 3, &R);
    for (int k = 0; k < runs; k++) {
        assert_int_equal(hm_buffer_zero(hm_block_grads(R.blk)), HM_OK);
        if (hm_graph_forward(R.g) != HM_OK || (!c->fwd_only && hm_graph_backward(R.g) != HM_OK) ||
            hm_backend_synchronize(be) != HM_OK)
            fail_msg("%s on %s: %s", c->name, hm_backend_name(be), hm_last_error());
    }
    res->n_out = hm_nelements(R.out);
    res->out = malloc(sizeof(float) * (size_t)res->n_out);
    assert_int_equal(hm_tensor_get_f32(R.out, res->out, (size_t)res->n_out), HM_OK);
    for (int i = 0; i < c->n_f && !c->fwd_only; i++) {
        res->n[i] = hm_nelements(R.x[i]);
        res->grad[i] = malloc(hm_nbytes(R.x[i]));
        assert_int_equal(hm_tensor_get(R.x[i]->grad, res->grad[i], hm_nbytes(R.x[i])), HM_OK);
    }
    op_run_free(&R);
}

double op_rel_err(const float *a, const float *ref, int64_t n, int64_t *worst)
{
    double emax = 0, rmax = 1e-3;
    *worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = a[i] == ref[i] ? 0.0 : fabs((double)a[i] - ref[i]); /* equal infinities agree */
        if (e > emax || e != e) {
            emax = e != e ? INFINITY : e;
            *worst = i;
        }
        if (isfinite(ref[i]))
            rmax = fmax(rmax, fabs(ref[i]));
    }
    return emax / rmax;
}
