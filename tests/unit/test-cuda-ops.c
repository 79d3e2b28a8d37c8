/*
 * test-cuda-ops.c - every op of ops.def, forward and backward, on the CUDA backend against the
 * CPU backend (the reference semantics), on random inputs. Each case builds the same graph on both
 * backends: out = op(inputs), loss z = out * r with a random cotangent r, then backward; it compares
 * the output and the gradient of every input. Also: gradients are bit-identical across two CUDA
 * runs (determinism), bad token ids / targets are reported as HM_ERR_USAGE, and the optimizer and
 * reduction primitives (AdamW, sum of squares, scale, is_finite) match the CPU.
 *
 * Tolerance: f32, max |cuda - cpu| <= 1e-4 * max(max |cpu|, 1e-3) per tensor unless the case says
 * otherwise. Every case also runs in bf16 ("NAME_bf16"): f32 master inputs read through bf16
 * copies, bf16 activations, f32 input gradients, against the CPU's bf16 path (the same roundings;
 * only the order of f32 sums differs, which can move a result across a bf16 rounding boundary:
 * one bf16 step is 2^-8 = 3.9e-3 relative). Tolerance 1.6e-2 (4 steps) of max |cpu|, 3.2e-2 for
 * the composite cases (several rounded stages in a row); the case's tol16 overrides.
 *
 * Without a GPU (or in a CPU-only build) it prints "SKIPPED: no CUDA device (...)" and exits 77,
 * which ctest reports as skipped. HM_CUDA_DEVICE=N picks the GPU; HM_TEST_OP=substr filters cases.
 */
#include "testutil.h"

#include "core/core-impl.h"
#include "hermes/backend.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_device;

struct ccase;
typedef struct hm_tensor *(*build_fn)(const struct ccase *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                      struct hm_tensor **ids);

struct ccase {
    const char *name;
    int n_f;
    int nd[4];
    int64_t sh[4][4];
    float amp[4];
    int n_i;
    int ind[2];
    int64_t ish[2][4];
    int32_t ihi[2];
    bool ignore;
    float fp[2];
    int ip[2];
    int pos;
    bool eval; /* rt.training = false */
    bool docs; /* ids[0] (B, T) holds document starts for hm_attention_docs, not random ids */
    build_fn build;
    double tol;   /* 0: 1e-4 */
    double tol16; /* 0: 1.6e-2 */
};

/* ---- builders ------------------------------------------------------------------------------- */

static struct hm_tensor *b_add(const struct ccase *c, struct hm_ctx *ctx, struct hm_tensor **x, struct hm_tensor **i)
{
    return hm_add(ctx, x[0], x[1]);
}
static struct hm_tensor *b_mul(const struct ccase *c, struct hm_ctx *ctx, struct hm_tensor **x, struct hm_tensor **i)
{
    return hm_mul(ctx, x[0], x[1]);
}
static struct hm_tensor *b_scale(const struct ccase *c, struct hm_ctx *ctx, struct hm_tensor **x, struct hm_tensor **i)
{
    return hm_scale(ctx, x[0], c->fp[0]);
}
static struct hm_tensor *b_views(const struct ccase *c, struct hm_ctx *ctx, struct hm_tensor **x, struct hm_tensor **i)
{
    struct hm_tensor *r = hm_reshape(ctx, x[0], 3, (int64_t[]){1, 6, 5});
    return hm_scale(ctx, hm_slice(ctx, r, 1, 2, 3), 1.5f);
}
static struct hm_tensor *b_matmul(const struct ccase *c, struct hm_ctx *ctx, struct hm_tensor **x, struct hm_tensor **i)
{
    return hm_matmul_ex(ctx, x[0], x[1], c->n_f == 3 ? x[2] : NULL, c->ip[0], c->ip[1], c->fp[0] ? c->fp[0] : 1.0f);
}
static struct hm_tensor *b_embedding(const struct ccase *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                     struct hm_tensor **i)
{
    return hm_embedding(ctx, x[0], i[0]);
}
static struct hm_tensor *b_rms_norm(const struct ccase *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                    struct hm_tensor **i)
{
    return hm_rms_norm(ctx, x[0], x[1], c->fp[0]);
}
static struct hm_tensor *b_rope(const struct ccase *c, struct hm_ctx *ctx, struct hm_tensor **x, struct hm_tensor **i)
{
    return hm_rope(ctx, x[0], c->fp[0]);
}
static struct hm_tensor *b_attention(const struct ccase *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                     struct hm_tensor **i)
{
    return hm_attention(ctx, x[0], x[1], x[2]);
}
static struct hm_tensor *b_gelu(const struct ccase *c, struct hm_ctx *ctx, struct hm_tensor **x, struct hm_tensor **i)
{
    return hm_gelu(ctx, x[0]);
}
static struct hm_tensor *b_swiglu(const struct ccase *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                  struct hm_tensor **i)
{
    return hm_swiglu(ctx, x[0], x[1]);
}
static struct hm_tensor *b_dropout(const struct ccase *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                   struct hm_tensor **i)
{
    return hm_dropout(ctx, x[0], c->fp[0], c->ip[0]);
}
static struct hm_tensor *b_cross_entropy(const struct ccase *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                         struct hm_tensor **i)
{
    return hm_cross_entropy(ctx, x[0], i[0], HM_IGNORE_INDEX);
}
/* logits = x W^T + b, then cross-entropy: the backward runs in place over the logits */
static struct hm_tensor *b_linear_ce(const struct ccase *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                     struct hm_tensor **i)
{
    return hm_cross_entropy(ctx, hm_linear(ctx, x[0], x[1], x[2]), i[0], HM_IGNORE_INDEX);
}
/* a pre-norm MLP block with a residual: several consumers per tensor, so acc bits matter */
static struct hm_tensor *b_mlp_block(const struct ccase *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                     struct hm_tensor **i)
{
    struct hm_tensor *h = hm_rms_norm(ctx, x[0], x[1], 1e-5f);
    h = hm_gelu(ctx, hm_linear(ctx, h, x[2], NULL));
    h = hm_linear(ctx, h, x[3], NULL);
    return hm_add(ctx, x[0], hm_dropout(ctx, h, 0.2f, 3));
}
/* packed documents: rows see keys from their document's start only */
static struct hm_tensor *b_attention_docs(const struct ccase *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                          struct hm_tensor **ids)
{
    return hm_attention_docs(ctx, hm_rope(ctx, x[0], 10000.0f), hm_rope(ctx, x[1], 10000.0f), x[2], ids[0]);
}

/* Document starts: batch 0 in documents of 37 positions, batch 1 one of 64 then of 11 (whole key
 * tiles before a row's start are skipped, partial ones masked). */
static int32_t doc_start_at(int64_t b, int64_t t)
{
    if (b % 2 == 0)
        return (int32_t)(t - t % 37);
    return t < 64 ? 0 : (int32_t)(64 + (t - 64) / 11 * 11);
}

/* rope on q and k, then attention: the training path of the model */
static struct hm_tensor *b_rope_attention(const struct ccase *c, struct hm_ctx *ctx, struct hm_tensor **x,
                                          struct hm_tensor **i)
{
    return hm_attention(ctx, hm_rope(ctx, x[0], 10000.0f), hm_rope(ctx, x[1], 10000.0f), x[2]);
}
static const struct ccase cases[] = {
    {.name = "add", .n_f = 2, .nd = {3, 3}, .sh = {{3, 5, 7}, {3, 5, 7}}, .build = b_add},
    {.name = "add_broadcast", .n_f = 2, .nd = {3, 1}, .sh = {{4, 75, 33}, {33}}, .build = b_add},
    {.name = "mul", .n_f = 2, .nd = {2, 2}, .sh = {{40, 91}, {40, 91}}, .build = b_mul},
    {.name = "scale", .n_f = 1, .nd = {2}, .sh = {{5, 6}}, .fp = {0.7f}, .build = b_scale},
    {.name = "views", .n_f = 1, .nd = {2}, .sh = {{5, 6}}, .build = b_views},
    {.name = "matmul", .n_f = 2, .nd = {2, 2}, .sh = {{5, 7}, {7, 3}}, .build = b_matmul},
    {.name = "matmul_big", .n_f = 2, .nd = {2, 2}, .sh = {{130, 257}, {257, 96}}, .build = b_matmul},
    {.name = "matmul_ta_tb", .n_f = 2, .nd = {2, 2}, .sh = {{7, 5}, {3, 7}}, .ip = {1, 1}, .fp = {0.5f},
     .build = b_matmul},
    {.name = "linear_bias", .n_f = 3, .nd = {3, 2, 1}, .sh = {{2, 3, 6}, {5, 6}, {5}}, .ip = {0, 1},
     .build = b_matmul},
    {.name = "linear_bias_big", .n_f = 3, .nd = {3, 2, 1}, .sh = {{4, 65, 128}, {192, 128}, {192}}, .ip = {0, 1},
     .build = b_matmul},
    {.name = "matmul_batched", .n_f = 2, .nd = {3, 3}, .sh = {{3, 4, 5}, {3, 5, 2}}, .build = b_matmul},
    {.name = "matmul_batched_t", .n_f = 2, .nd = {3, 3}, .sh = {{3, 5, 4}, {3, 2, 5}}, .ip = {1, 1},
     .build = b_matmul},
    {.name = "embedding", .n_f = 1, .nd = {2}, .sh = {{11, 6}}, .n_i = 1, .ind = {2}, .ish = {{2, 5}}, .ihi = {11},
     .build = b_embedding},
    {.name = "embedding_repeats", .n_f = 1, .nd = {2}, .sh = {{50, 97}}, .n_i = 1, .ind = {2},
     .ish = {{8, 300}}, .ihi = {7}, .build = b_embedding}, /* long runs of equal ids */
    {.name = "rms_norm", .n_f = 2, .nd = {3, 1}, .sh = {{3, 4, 13}, {13}}, .fp = {1e-5f}, .build = b_rms_norm},
    {.name = "rms_norm_rows", .n_f = 2, .nd = {3, 1}, .sh = {{4, 300, 192}, {192}}, .fp = {1e-5f},
     .build = b_rms_norm}, /* several column-sum chunks */
    {.name = "rope", .n_f = 1, .nd = {4}, .sh = {{2, 5, 3, 8}}, .fp = {10000.0f}, .build = b_rope},
    {.name = "rope_pos", .n_f = 1, .nd = {4}, .sh = {{1, 3, 2, 6}}, .fp = {500.0f}, .pos = 17, .build = b_rope},
    {.name = "attention_gqa", .n_f = 3, .nd = {4, 4, 4}, .sh = {{2, 5, 4, 6}, {2, 5, 2, 6}, {2, 5, 2, 6}},
     .build = b_attention},
    {.name = "attention_mha_odd", .n_f = 3, .nd = {4, 4, 4}, .sh = {{1, 7, 3, 5}, {1, 7, 3, 5}, {1, 7, 3, 5}},
     .build = b_attention},
    {.name = "attention_t1", .n_f = 3, .nd = {4, 4, 4}, .sh = {{2, 1, 3, 4}, {2, 1, 1, 4}, {2, 1, 1, 4}},
     .build = b_attention},
    {.name = "attention_cache_pos", .n_f = 3, .nd = {4, 4, 4}, .sh = {{1, 2, 4, 4}, {1, 6, 2, 4}, {1, 6, 2, 4}},
     .pos = 3, .build = b_attention},
    {.name = "attention_hd64_gqa", .n_f = 3, .nd = {4, 4, 4},
     .sh = {{2, 70, 6, 64}, {2, 70, 2, 64}, {2, 70, 2, 64}}, .build = b_attention},
    {.name = "attention_hd128", .n_f = 3, .nd = {4, 4, 4},
     .sh = {{1, 41, 2, 128}, {1, 41, 2, 128}, {1, 41, 2, 128}}, .build = b_attention},
    {.name = "attention_hd40", .n_f = 3, .nd = {4, 4, 4}, .sh = {{2, 33, 4, 40}, {2, 33, 1, 40}, {2, 33, 1, 40}},
     .build = b_attention},
    {.name = "attention_hd200", .n_f = 3, .nd = {4, 4, 4},
     .sh = {{1, 35, 2, 200}, {1, 35, 2, 200}, {1, 35, 2, 200}}, .build = b_attention},
    {.name = "attention_cache_long", .n_f = 3, .nd = {4, 4, 4},
     .sh = {{1, 3, 4, 64}, {1, 100, 2, 64}, {1, 100, 2, 64}}, .pos = 60, .build = b_attention},
    {.name = "attention_docs", .n_f = 3, .nd = {4, 4, 4}, .sh = {{2, 130, 4, 64}, {2, 130, 2, 64}, {2, 130, 2, 64}},
     .n_i = 1, .ind = {2}, .ish = {{2, 130}}, .docs = true, .build = b_attention_docs},
    {.name = "rope_attention", .n_f = 3, .nd = {4, 4, 4}, .sh = {{2, 37, 4, 32}, {2, 37, 4, 32}, {2, 37, 4, 32}},
     .build = b_rope_attention},
    {.name = "gelu", .n_f = 1, .nd = {2}, .sh = {{40, 77}}, .amp = {3.0f}, .build = b_gelu},
    {.name = "swiglu", .n_f = 2, .nd = {2, 2}, .sh = {{30, 111}, {30, 111}}, .amp = {3.0f, 1.0f},
     .build = b_swiglu},
    {.name = "dropout", .n_f = 1, .nd = {2}, .sh = {{60, 97}}, .fp = {0.3f}, .ip = {5}, .build = b_dropout},
    {.name = "dropout_eval", .n_f = 1, .nd = {2}, .sh = {{6, 9}}, .fp = {0.3f}, .ip = {5}, .eval = true,
     .build = b_dropout},
    {.name = "cross_entropy", .n_f = 1, .nd = {2}, .sh = {{7, 9}}, .amp = {2.0f}, .n_i = 1, .ind = {1},
     .ish = {{7}}, .ihi = {9}, .ignore = true, .build = b_cross_entropy},
    {.name = "cross_entropy_big", .n_f = 1, .nd = {2}, .sh = {{130, 5003}}, .amp = {4.0f}, .n_i = 1, .ind = {1},
     .ish = {{130}}, .ihi = {5003}, .ignore = true, .build = b_cross_entropy},
    {.name = "linear_ce", .n_f = 3, .nd = {3, 2, 1}, .sh = {{2, 50, 64}, {1000, 64}, {1000}}, .n_i = 1,
     .ind = {2}, .ish = {{2, 50}}, .ihi = {1000}, .ignore = true, .build = b_linear_ce},
    {.name = "mlp_block", .n_f = 4, .nd = {3, 1, 2, 2}, .sh = {{2, 70, 64}, {64}, {256, 64}, {64, 256}},
     .build = b_mlp_block},
};

/* ---- harness -------------------------------------------------------------------------------- */

struct result {
    float *out;
    int64_t n_out;
    float *grad[4];
    int64_t n[4];
};

static void result_free(struct result *r)
{
    free(r->out);
    for (int i = 0; i < 4; i++)
        free(r->grad[i]);
}

/* Build, plan and run forward + backward of case c on be; inputs from a fixed seed. `runs` > 1
 * repeats forward+backward (grads zeroed each time) and keeps the last. In bf16 the graph reads
 * bf16 copies of the f32 inputs, as the model reads its weights. */
static void run_on(const struct ccase *c, struct hm_backend *be, enum hm_dtype dt, int runs, struct result *res)
{
    struct hm_rng rng;
    hm_rng_seed(&rng, 1234);
    struct hm_block *blk;
    struct hm_tensor *x[4] = {0}, *ids[2] = {0};
    assert_int_equal(hm_block_new(true, &blk), HM_OK);
    for (int i = 0; i < c->n_f; i++)
        x[i] = hm_block_add(blk, "x", HM_DTYPE_F32, c->nd[i], c->sh[i]);
    assert_int_equal(hm_block_alloc(blk, be), HM_OK);
    for (int i = 0; i < c->n_f; i++) {
        int64_t n = hm_nelements(x[i]);
        float amp = c->amp[i] ? c->amp[i] : 1.0f, *h = malloc(sizeof(float) * (size_t)n);
        for (int64_t j = 0; j < n; j++)
            h[j] = amp * (float)(2.0 * hm_rng_uniform(&rng) - 1.0);
        assert_int_equal(hm_tensor_set(x[i], h, hm_nbytes(x[i])), HM_OK);
        free(h);
    }
    struct hm_block *copies = NULL;
    struct hm_tensor *xs[4] = {x[0], x[1], x[2], x[3]};
    if (dt == HM_DTYPE_BF16) {
        assert_int_equal(hm_block_new_copy(blk, dt, be, &copies), HM_OK);
        assert_int_equal(hm_block_copy_refresh(copies, blk), HM_OK);
        for (int i = 0; i < c->n_f; i++)
            xs[i] = hm_block_tensor(copies, i);
    }
    struct hm_ctx *ctx;
    assert_int_equal(hm_ctx_new(&ctx), HM_OK);
    for (int i = 0; i < c->n_i; i++)
        ids[i] = hm_new_input(ctx, HM_DTYPE_I32, c->ind[i], c->ish[i]);
    struct hm_tensor *out = c->build(c, ctx, xs, ids);
    struct hm_tensor *r = hm_new_input(ctx, out->type, out->n_dims, out->shape);
    struct hm_tensor *z = hm_mul(ctx, out, r);
    hm_set_output(out);
    struct hm_graph *g;
    assert_int_equal(hm_graph_new(ctx, &g), HM_OK);
    hm_graph_build_forward(g, z);
    assert_int_equal(hm_graph_build_backward(g, z), HM_OK);
    if (hm_graph_plan(g, be) != HM_OK)
        fail_msg("%s: plan on %s: %s", c->name, hm_backend_name(be), hm_last_error());
    struct hm_runtime *rt = hm_graph_runtime(g);
    rt->pos = c->pos;
    rt->seed = 99;
    rt->step = 3;
    rt->training = !c->eval;
    for (int i = 0; i < c->n_i; i++) {
        int64_t n = hm_nelements(ids[i]);
        int32_t *h = malloc(sizeof(int32_t) * (size_t)n);
        for (int64_t j = 0; j < n; j++)
            h[j] = c->docs ? doc_start_at(j / ids[i]->shape[1], j % ids[i]->shape[1])
                           : (int32_t)hm_rng_below(&rng, (uint64_t)c->ihi[i]);
        if (c->ignore) {
            h[1] = HM_IGNORE_INDEX;
            h[n - 1] = HM_IGNORE_INDEX;
        }
        assert_int_equal(hm_tensor_set(ids[i], h, hm_nbytes(ids[i])), HM_OK);
        free(h);
    }
    int64_t no = hm_nelements(out);
    float *hr = malloc(sizeof(float) * (size_t)no);
    for (int64_t j = 0; j < no; j++)
        hr[j] = (float)(2.0 * hm_rng_uniform(&rng) - 1.0);
    if (r->type == HM_DTYPE_BF16) /* rounded in place: the first half of hr holds the bf16 bits */
        hm_f32_to_bf16_n(hr, (uint16_t *)hr, (size_t)no);
    assert_int_equal(hm_tensor_set(r, hr, hm_nbytes(r)), HM_OK);
    free(hr);
    for (int k = 0; k < runs; k++) {
        assert_int_equal(hm_buffer_zero(hm_block_grads(blk)), HM_OK);
        if (hm_graph_forward(g) != HM_OK || hm_graph_backward(g) != HM_OK || hm_backend_synchronize(be) != HM_OK)
            fail_msg("%s on %s: %s", c->name, hm_backend_name(be), hm_last_error());
    }
    res->n_out = no;
    res->out = malloc(sizeof(float) * (size_t)no);
    assert_int_equal(hm_tensor_get_f32(out, res->out, (size_t)no), HM_OK);
    for (int i = 0; i < c->n_f; i++) {
        res->n[i] = hm_nelements(x[i]);
        res->grad[i] = malloc(hm_nbytes(x[i]));
        assert_int_equal(hm_tensor_get(x[i]->grad, res->grad[i], hm_nbytes(x[i])), HM_OK);
    }
    hm_graph_free(g);
    hm_ctx_free(ctx);
    hm_block_free(copies);
    hm_block_free(blk);
}

static double rel_err(const float *a, const float *ref, int64_t n, int64_t *worst)
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

static void compare(const struct ccase *c, enum hm_dtype dt)
{
    struct hm_backend *cpu, *gpu;
    assert_int_equal(hm_backend_cpu_new(&cpu), HM_OK);
    assert_int_equal(hm_backend_cuda_new(g_device, &gpu), HM_OK);
    struct result rc = {0}, rg = {0}, rg2 = {0};
    run_on(c, cpu, dt, 1, &rc);
    run_on(c, gpu, dt, 1, &rg);
    bool composite = c->build == b_mlp_block || c->build == b_rope_attention || c->build == b_linear_ce;
    double tol = dt == HM_DTYPE_F32 ? (c->tol ? c->tol : 1e-4) : (c->tol16 ? c->tol16 : composite ? 3.2e-2 : 1.6e-2);
    int64_t w;
    double e = rel_err(rg.out, rc.out, rc.n_out, &w);
    printf("%-22s %-4s forward rel err %.2e", c->name, hm_dtype_name(dt), e);
    if (!(e <= tol))
        fail_msg("%s: forward differs: rel %.3g at %lld (cuda %.7g, cpu %.7g)", c->name, e, (long long)w,
                 rg.out[w], rc.out[w]);
    for (int i = 0; i < c->n_f; i++) {
        e = rel_err(rg.grad[i], rc.grad[i], rc.n[i], &w);
        printf("  d/dx%d %.2e", i, e);
        if (!(e <= tol))
            fail_msg("%s: gradient of input %d differs: rel %.3g at %lld (cuda %.7g, cpu %.7g)", c->name, i, e,
                     (long long)w, rg.grad[i][w], rc.grad[i][w]);
    }
    printf("\n");
    /* determinism: a second run (two forward+backward passes) gives the same bits */
    run_on(c, gpu, dt, 2, &rg2);
    assert_memory_equal(rg.out, rg2.out, (size_t)rg.n_out * sizeof(float));
    for (int i = 0; i < c->n_f; i++)
        if (memcmp(rg.grad[i], rg2.grad[i], (size_t)rg.n[i] * sizeof(float)) != 0)
            fail_msg("%s: gradient of input %d is not bit-identical across runs", c->name, i);
    result_free(&rc), result_free(&rg), result_free(&rg2);
    hm_backend_free(cpu);
    hm_backend_free(gpu);
}

static void test_case(void **state)
{
    compare(*state, HM_DTYPE_F32);
}

static void test_case_bf16(void **state)
{
    compare(*state, HM_DTYPE_BF16);
}

/* Every op has a CUDA kernel. */
static void test_coverage(void **state)
{
    struct hm_backend *gpu;
    assert_int_equal(hm_backend_cuda_new(g_device, &gpu), HM_OK);
    for (int op = 0; op < HM_OP_COUNT; op++)
        if (!hm_backend_supports_op(gpu, op))
            fail_msg("op '%s' has no CUDA kernel", hm_op_name(op));
    hm_backend_free(gpu);
}

/* KV_WRITE (inference only, no backward): write k, v at rt.pos into caches kept in a block without
 * gradients, attend over them; compare the output and both caches. */
static void kv_run(struct hm_backend *be, float *out, float *kc_out)
{
    enum { B = 2, S = 12, NKV = 2, NH = 4, HD = 8, T = 3, POS = 5 };
    struct hm_block *cache;
    assert_int_equal(hm_block_new(false, &cache), HM_OK);
    struct hm_tensor *kc = hm_block_add(cache, "k", HM_DTYPE_F32, 4, (int64_t[]){B, S, NKV, HD});
    struct hm_tensor *vc = hm_block_add(cache, "v", HM_DTYPE_F32, 4, (int64_t[]){B, S, NKV, HD});
    assert_int_equal(hm_block_alloc(cache, be), HM_OK);
    struct hm_rng rng;
    hm_rng_seed(&rng, 77);
    float hk[B * S * NKV * HD];
    for (size_t i = 0; i < sizeof hk / 4; i++)
        hk[i] = (float)(2.0 * hm_rng_uniform(&rng) - 1.0);
    assert_int_equal(hm_tensor_set(kc, hk, sizeof hk), HM_OK);
    assert_int_equal(hm_tensor_set(vc, hk, sizeof hk), HM_OK);
    struct hm_ctx *ctx;
    assert_int_equal(hm_ctx_new(&ctx), HM_OK);
    struct hm_tensor *q = hm_new_input(ctx, HM_DTYPE_F32, 4, (int64_t[]){B, T, NH, HD});
    struct hm_tensor *xk = hm_new_input(ctx, HM_DTYPE_F32, 4, (int64_t[]){B, T, NKV, HD});
    struct hm_tensor *xv = hm_new_input(ctx, HM_DTYPE_F32, 4, (int64_t[]){B, T, NKV, HD});
    struct hm_tensor *o = hm_attention(ctx, q, hm_kv_write(ctx, kc, xk), hm_kv_write(ctx, vc, xv));
    struct hm_graph *g;
    assert_int_equal(hm_graph_new(ctx, &g), HM_OK);
    hm_graph_build_forward(g, o);
    assert_int_equal(hm_graph_plan(g, be), HM_OK);
    hm_graph_runtime(g)->pos = POS;
    hm_graph_runtime(g)->training = false;
    float hq[B * T * NH * HD], hx[B * T * NKV * HD];
    for (size_t i = 0; i < sizeof hq / 4; i++)
        hq[i] = (float)(2.0 * hm_rng_uniform(&rng) - 1.0);
    for (size_t i = 0; i < sizeof hx / 4; i++)
        hx[i] = (float)(2.0 * hm_rng_uniform(&rng) - 1.0);
    assert_int_equal(hm_tensor_set(q, hq, sizeof hq), HM_OK);
    assert_int_equal(hm_tensor_set(xk, hx, sizeof hx), HM_OK);
    assert_int_equal(hm_tensor_set(xv, hx, sizeof hx), HM_OK);
    assert_int_equal(hm_graph_forward(g), HM_OK);
    assert_int_equal(hm_tensor_get(o, out, sizeof hq), HM_OK);
    assert_int_equal(hm_tensor_get(kc, kc_out, sizeof hk), HM_OK);
    hm_graph_runtime(g)->pos = S - T + 1; /* past the end of the cache */
    assert_int_equal(hm_graph_forward(g), HM_ERR_USAGE);
    hm_graph_free(g);
    hm_ctx_free(ctx);
    hm_block_free(cache);
}

static void test_kv_write(void **state)
{
    struct hm_backend *cpu, *gpu;
    assert_int_equal(hm_backend_cpu_new(&cpu), HM_OK);
    assert_int_equal(hm_backend_cuda_new(g_device, &gpu), HM_OK);
    float oc[2 * 3 * 4 * 8], og[2 * 3 * 4 * 8], kcc[2 * 12 * 2 * 8], kcg[2 * 12 * 2 * 8];
    kv_run(cpu, oc, kcc);
    kv_run(gpu, og, kcg);
    assert_memory_equal(kcc, kcg, sizeof kcc); /* a copy: bit-exact */
    int64_t w;
    double e = rel_err(og, oc, (int64_t)(sizeof oc / 4), &w);
    printf("kv_write + attention rel err %.2e\n", e);
    assert_true(e <= 1e-4);
    hm_backend_free(cpu);
    hm_backend_free(gpu);
}

/* A bad token id / target is a data error: HM_ERR_USAGE with the CPU's message, at the next sync. */
static void bad_input(bool embedding)
{
    struct hm_backend *gpu;
    assert_int_equal(hm_backend_cuda_new(g_device, &gpu), HM_OK);
    struct hm_block *blk;
    assert_int_equal(hm_block_new(true, &blk), HM_OK);
    struct hm_tensor *w = hm_block_add(blk, "w", HM_DTYPE_F32, 2, (int64_t[]){11, 4});
    assert_int_equal(hm_block_alloc(blk, gpu), HM_OK);
    struct hm_ctx *ctx;
    assert_int_equal(hm_ctx_new(&ctx), HM_OK);
    struct hm_tensor *ids = hm_new_input(ctx, HM_DTYPE_I32, 1, (int64_t[]){6});
    struct hm_tensor *y = embedding ? hm_embedding(ctx, w, ids) : hm_cross_entropy(ctx, w, hm_new_input(ctx, HM_DTYPE_I32, 1, (int64_t[]){11}), -100);
    struct hm_tensor *tg = embedding ? ids : y->src[1];
    struct hm_graph *g;
    assert_int_equal(hm_graph_new(ctx, &g), HM_OK);
    hm_graph_build_forward(g, y);
    assert_int_equal(hm_graph_plan(g, gpu), HM_OK);
    int32_t good[11] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, bad[11] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    bad[2] = embedding ? 11 : 4; /* the CE target limit is 4 */
    bad[4] = -7;
    if (!embedding)
        good[4] = good[5] = good[6] = good[7] = good[8] = good[9] = good[10] = 3, good[2] = 1;
    size_t nb = hm_nbytes(tg);
    assert_int_equal(hm_tensor_set(tg, bad, nb), HM_OK);
    assert_int_equal(hm_graph_forward(g), HM_OK); /* asynchronous: reported at the sync */
    assert_int_equal(hm_backend_synchronize(gpu), HM_ERR_USAGE);
    printf("%s\n", hm_last_error());
    assert_non_null(strstr(hm_last_error(), embedding ? "embedding: token id 11 at index 2" : "cross_entropy: target 4 at index 2"));
    assert_int_equal(hm_tensor_set(tg, good, nb), HM_OK); /* the error is cleared once reported */
    assert_int_equal(hm_graph_forward(g), HM_OK);
    assert_int_equal(hm_backend_synchronize(gpu), HM_OK);
    hm_graph_free(g);
    hm_ctx_free(ctx);
    hm_block_free(blk);
    hm_backend_free(gpu);
}

static void test_bad_token_id(void **state)
{
    bad_input(true);
}

static void test_bad_target(void **state)
{
    bad_input(false);
}

/* AdamW, sum of squares, scale and is_finite over ranges, against the CPU. */
static void test_optim(void **state)
{
    struct hm_backend *be[2];
    assert_int_equal(hm_backend_cpu_new(&be[0]), HM_OK);
    assert_int_equal(hm_backend_cuda_new(g_device, &be[1]), HM_OK);
    size_t n = 1000003, off = 17, len = n - 40;
    struct hm_rng rng;
    hm_rng_seed(&rng, 5);
    float *h[4], *res[2][4];
    for (int k = 0; k < 4; k++) {
        h[k] = malloc(n * 4);
        for (size_t i = 0; i < n; i++)
            h[k][i] = k == 3 ? 0.01f * (float)hm_rng_uniform(&rng) : (float)(2.0 * hm_rng_uniform(&rng) - 1.0);
    }
    double ss[2];
    bool fin[2], fin2[2];
    for (int b = 0; b < 2; b++) {
        struct hm_buffer *buf[4];
        for (int k = 0; k < 4; k++) {
            assert_int_equal(hm_buffer_new(be[b], n * 4, &buf[k]), HM_OK);
            assert_int_equal(hm_buffer_set(buf[k], 0, h[k], n * 4), HM_OK);
        }
        struct hm_adamw_params hp = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1};
        for (int t = 1; t <= 3; t++) {
            hp.t = t;
            assert_int_equal(hm_backend_adamw(buf[0], buf[1], buf[2], buf[3], off, len, &hp), HM_OK);
        }
        assert_int_equal(hm_buffer_sumsq(buf[1], off, len, &ss[b]), HM_OK);
        assert_int_equal(hm_buffer_scale(buf[1], 3, n - 3, 0.37f), HM_OK);
        assert_int_equal(hm_buffer_is_finite(buf[1], 0, n, &fin[b]), HM_OK);
        float inf = INFINITY;
        assert_int_equal(hm_buffer_set(buf[1], 4 * 777, &inf, 4), HM_OK);
        assert_int_equal(hm_buffer_is_finite(buf[1], 0, n, &fin2[b]), HM_OK);
        for (int k = 0; k < 4; k++) {
            res[b][k] = malloc(n * 4);
            assert_int_equal(hm_buffer_get(buf[k], 0, res[b][k], n * 4), HM_OK);
            hm_buffer_free(buf[k]);
        }
    }
    printf("sumsq cpu %.17g cuda %.17g\n", ss[0], ss[1]);
    assert_true(fabs(ss[0] - ss[1]) <= 1e-12 * ss[0]);
    assert_true(fin[0] && fin[1] && !fin2[0] && !fin2[1]);
    int64_t w;
    for (int k = 0; k < 4; k++) {
        double e = rel_err(res[1][k], res[0][k], (int64_t)n, &w);
        printf("buffer %d rel err %.2e\n", k, e);
        assert_true(e <= 1e-5);
        free(res[0][k]), free(res[1][k]), free(h[k]);
    }
    hm_backend_free(be[0]);
    hm_backend_free(be[1]);
}

int main(void)
{
    const char *dev = getenv("HM_CUDA_DEVICE");
    g_device = dev ? atoi(dev) : 0;
    struct hm_backend *probe = NULL;
    if (hm_backend_cuda_new(g_device, &probe) != HM_OK) {
        printf("SKIPPED: no CUDA device (%s)\n", hm_last_error());
        return 77;
    }
    hm_backend_free(probe);
    enum { N = sizeof(cases) / sizeof(cases[0]) };
    struct CMUnitTest tests[2 * N + 5];
    static char names16[N][48];
    const char *filter = getenv("HM_TEST_OP");
    int n = 0;
    for (int i = 0; i < N; i++)
        if (!filter || strstr(cases[i].name, filter)) {
            tests[n++] = (struct CMUnitTest){cases[i].name, test_case, NULL, NULL, (void *)&cases[i]};
            snprintf(names16[i], sizeof names16[i], "%s_bf16", cases[i].name);
            tests[n++] = (struct CMUnitTest){names16[i], test_case_bf16, NULL, NULL, (void *)&cases[i]};
        }
    tests[n++] = (struct CMUnitTest){"coverage", test_coverage, NULL, NULL, NULL};
    tests[n++] = (struct CMUnitTest){"kv_write", test_kv_write, NULL, NULL, NULL};
    tests[n++] = (struct CMUnitTest){"bad_token_id", test_bad_token_id, NULL, NULL, NULL};
    tests[n++] = (struct CMUnitTest){"bad_target", test_bad_target, NULL, NULL, NULL};
    tests[n++] = (struct CMUnitTest){"optim", test_optim, NULL, NULL, NULL};
    return _cmocka_run_group_tests("cuda-ops", tests, (size_t)n, NULL, NULL);
}
