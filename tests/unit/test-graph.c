/*
 * test-graph.c - the graph as a whole: a two-layer toy transformer (GQA attention, RoPE, GELU and
 * SwiGLU MLPs, dropout, tied head, cross-entropy with ignore index) learns a task that needs
 * attention; the training step allocates nothing; runs are bit-identical; gradients accumulate
 * and scale with the loss seed; the planner reuses memory; KV-cache decoding matches a full
 * recompute; bf16 conversion; user errors come back as statuses.
 */
#include "testutil.h"

#include "core/core-impl.h"
#include "hermes/backend.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { V = 16, C = 32, NH = 4, NKV = 2, HD = C / NH, I = 48, L = 2 };

struct toy {
    struct hm_block *p;
    struct hm_tensor *wte, *wq[L], *wk[L], *wv[L], *wo[L], *w1[L], *w2[L], *w3[L];
    struct hm_tensor *b1[L], *n1[L], *n2[L], *nf;
};

static struct hm_tensor *param(struct toy *m, const char *name, int nd, int64_t a, int64_t b)
{
    return hm_block_add(m->p, name, HM_DTYPE_F32, nd, (int64_t[]){a, b});
}

static void toy_new(struct toy *m, struct hm_backend *be, uint64_t seed)
{
    memset(m, 0, sizeof(*m));
    assert_int_equal(hm_block_new(true, &m->p), HM_OK);
    /* weight-decayed matrices first, then norms and biases */
    m->wte = param(m, "wte", 2, V, C);
    for (int l = 0; l < L; l++) {
        m->wq[l] = param(m, "wq", 2, C, C);
        m->wk[l] = param(m, "wk", 2, NKV * HD, C);
        m->wv[l] = param(m, "wv", 2, NKV * HD, C);
        m->wo[l] = param(m, "wo", 2, C, C);
        m->w1[l] = param(m, "w1", 2, I, C);
        m->w2[l] = param(m, "w2", 2, C, I);
        m->w3[l] = param(m, "w3", 2, I, C);
    }
    for (int l = 0; l < L; l++) {
        m->b1[l] = param(m, "b1", 1, I, 1);
        m->n1[l] = param(m, "n1", 1, C, 1);
        m->n2[l] = param(m, "n2", 1, C, 1);
    }
    m->nf = param(m, "nf", 1, C, 1);
    assert_int_equal(hm_block_alloc(m->p, be), HM_OK);
    struct hm_rng rng;
    hm_rng_seed(&rng, seed);
    for (int i = 0; i < hm_block_n_tensors(m->p); i++) {
        struct hm_tensor *t = hm_block_tensor(m->p, i);
        int64_t n = hm_nelements(t);
        float *h = malloc(sizeof(float) * (size_t)n);
        bool norm = t->n_dims == 1 && strcmp(t->name, "b1") != 0;
        for (int64_t j = 0; j < n; j++)
            h[j] = norm ? 1.0f : t->n_dims == 1 ? 0.0f : 0.1f * hm_rng_normal(&rng);
        assert_int_equal(hm_tensor_set(t, h, hm_nbytes(t)), HM_OK);
        free(h);
    }
}

/* logits (B, T, V); with caches, k/v go through the KV cache at rt.pos. */
static struct hm_tensor *toy_forward(struct toy *m, struct hm_ctx *ctx, struct hm_tensor *ids,
                                     struct hm_tensor **kc, struct hm_tensor **vc, float p_drop)
{
    int64_t B = ids->shape[0], T = ids->shape[1];
    struct hm_tensor *x = hm_dropout(ctx, hm_embedding(ctx, m->wte, ids), p_drop, 100);
    for (int l = 0; l < L; l++) {
        struct hm_tensor *h = hm_rms_norm(ctx, x, m->n1[l], 1e-5f);
        struct hm_tensor *q = hm_reshape(ctx, hm_linear(ctx, h, m->wq[l], NULL), 4, (int64_t[]){B, T, NH, HD});
        struct hm_tensor *k = hm_reshape(ctx, hm_linear(ctx, h, m->wk[l], NULL), 4, (int64_t[]){B, T, NKV, HD});
        struct hm_tensor *v = hm_reshape(ctx, hm_linear(ctx, h, m->wv[l], NULL), 4, (int64_t[]){B, T, NKV, HD});
        q = hm_rope(ctx, q, 10000.0f);
        k = hm_rope(ctx, k, 10000.0f);
        if (kc) {
            k = hm_kv_write(ctx, kc[l], k);
            v = hm_kv_write(ctx, vc[l], v);
        }
        struct hm_tensor *a = hm_reshape(ctx, hm_attention(ctx, q, k, v), 3, (int64_t[]){B, T, C});
        x = hm_add(ctx, x, hm_dropout(ctx, hm_linear(ctx, a, m->wo[l], NULL), p_drop, 16 * l + 1));
        h = hm_rms_norm(ctx, x, m->n2[l], 1e-5f);
        struct hm_tensor *f;
        if (l % 2 == 0)
            f = hm_gelu(ctx, hm_linear(ctx, h, m->w1[l], m->b1[l]));
        else
            f = hm_swiglu(ctx, hm_linear(ctx, h, m->w1[l], NULL), hm_linear(ctx, h, m->w3[l], NULL));
        x = hm_add(ctx, x, hm_dropout(ctx, hm_linear(ctx, f, m->w2[l], NULL), p_drop, 16 * l + 2));
    }
    return hm_linear(ctx, hm_rms_norm(ctx, x, m->nf, 1e-5f), m->wte, NULL);
}

struct trainer {
    struct toy m;
    struct hm_ctx *ctx;
    struct hm_graph *g;
    struct hm_tensor *ids, *tgt, *loss;
    struct hm_buffer *mom, *var;
    int B, T;
    int32_t *hids, *htgt;
    struct hm_rng data;
};

static void trainer_new(struct trainer *tr, struct hm_backend *be, int B, int T, float p_drop)
{
    memset(tr, 0, sizeof(*tr));
    tr->B = B, tr->T = T;
    toy_new(&tr->m, be, 7);
    assert_int_equal(hm_ctx_new(&tr->ctx), HM_OK);
    tr->ids = hm_new_input(tr->ctx, HM_DTYPE_I32, 2, (int64_t[]){B, T});
    tr->tgt = hm_new_input(tr->ctx, HM_DTYPE_I32, 2, (int64_t[]){B, T});
    struct hm_tensor *logits = toy_forward(&tr->m, tr->ctx, tr->ids, NULL, NULL, p_drop);
    tr->loss = hm_cross_entropy(tr->ctx, logits, tr->tgt, HM_IGNORE_INDEX);
    assert_int_equal(hm_graph_new(tr->ctx, &tr->g), HM_OK);
    hm_graph_build_forward(tr->g, tr->loss);
    assert_int_equal(hm_graph_build_backward(tr->g, tr->loss), HM_OK);
    assert_int_equal(hm_graph_plan(tr->g, be), HM_OK);
    size_t nb = hm_block_nbytes(tr->m.p);
    assert_int_equal(hm_buffer_new(be, nb, &tr->mom), HM_OK);
    assert_int_equal(hm_buffer_new(be, nb, &tr->var), HM_OK);
    hm_buffer_zero(tr->mom);
    hm_buffer_zero(tr->var);
    tr->hids = malloc(sizeof(int32_t) * (size_t)(B * T));
    tr->htgt = malloc(sizeof(int32_t) * (size_t)(B * T));
    hm_rng_seed(&tr->data, 99);
    hm_graph_runtime(tr->g)->seed = 5;
}

static void trainer_free(struct trainer *tr)
{
    free(tr->hids);
    free(tr->htgt);
    hm_buffer_free(tr->mom);
    hm_buffer_free(tr->var);
    hm_graph_free(tr->g);
    hm_ctx_free(tr->ctx);
    hm_block_free(tr->m.p);
}

/* The task: predict the previous token (needs attention); position 0 is ignored. */
static void next_batch(struct trainer *tr)
{
    for (int b = 0; b < tr->B; b++)
        for (int t = 0; t < tr->T; t++) {
            int i = b * tr->T + t;
            tr->hids[i] = (int32_t)hm_rng_below(&tr->data, V);
            tr->htgt[i] = t == 0 ? HM_IGNORE_INDEX : tr->hids[i - 1];
        }
}

/* One optimizer step: no allocation anywhere in here. */
static float train_step(struct trainer *tr, int64_t step)
{
    size_t n = hm_block_nbytes(tr->m.p) / 4, n_decay = hm_block_elem_offset(tr->m.b1[0]);
    struct hm_buffer *data = hm_block_data(tr->m.p), *grads = hm_block_grads(tr->m.p);
    next_batch(tr);
    assert_int_equal(hm_tensor_set(tr->ids, tr->hids, hm_nbytes(tr->ids)), HM_OK);
    assert_int_equal(hm_tensor_set(tr->tgt, tr->htgt, hm_nbytes(tr->tgt)), HM_OK);
    assert_int_equal(hm_buffer_zero(grads), HM_OK);
    hm_graph_runtime(tr->g)->step = (uint64_t)step;
    assert_int_equal(hm_graph_forward(tr->g), HM_OK);
    assert_int_equal(hm_graph_backward(tr->g), HM_OK);
    float loss;
    assert_int_equal(hm_tensor_get(tr->loss, &loss, sizeof loss), HM_OK);
    double ss;
    bool finite;
    assert_int_equal(hm_buffer_sumsq(grads, 0, n, &ss), HM_OK);
    assert_int_equal(hm_buffer_is_finite(grads, 0, n, &finite), HM_OK);
    assert_true(finite);
    if (sqrt(ss) > 1.0)
        assert_int_equal(hm_buffer_scale(grads, 0, n, (float)(1.0 / sqrt(ss))), HM_OK);
    struct hm_adamw_params hp = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                                 .weight_decay = 0.01f, .t = step};
    assert_int_equal(hm_backend_adamw(data, grads, tr->mom, tr->var, 0, n_decay, &hp), HM_OK);
    hp.weight_decay = 0.0f;
    assert_int_equal(hm_backend_adamw(data, grads, tr->mom, tr->var, n_decay, n - n_decay, &hp), HM_OK);
    return loss;
}

static struct hm_backend *cpu(void)
{
    struct hm_backend *be;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    return be;
}

static void test_toy_training(void **state)
{
    struct hm_backend *be = cpu();
    struct trainer tr;
    trainer_new(&tr, be, 8, 12, 0.05f);
    float first = 0, last = 0;
    for (int step = 1; step <= 150; step++) {
        float l = train_step(&tr, step);
        if (step == 1)
            first = l;
        last = l;
    }
    printf("toy training: loss %.4f -> %.4f (ln V = %.4f), planned %zu bytes\n", first, last,
           log((double)V), hm_graph_planned_bytes(tr.g));
    assert_true(fabs(first - log((double)V)) < 0.5);
    assert_true(last < 0.3f * first);
    trainer_free(&tr);
    hm_backend_free(be);
}

static void test_step_allocates_nothing(void **state)
{
    struct hm_backend *be = cpu();
    struct trainer tr;
    trainer_new(&tr, be, 4, 8, 0.1f);
    train_step(&tr, 1);
    uint64_t before = hm_alloc_count();
    train_step(&tr, 2);
    train_step(&tr, 3);
    assert_int_equal(hm_alloc_count(), before);
    trainer_free(&tr);
    hm_backend_free(be);
}

static void snapshot(struct trainer *tr, float *loss, float *params, float *grads)
{
    size_t nb = hm_block_nbytes(tr->m.p);
    hm_tensor_get(tr->loss, loss, 4);
    hm_buffer_get(hm_block_data(tr->m.p), 0, params, nb);
    hm_buffer_get(hm_block_grads(tr->m.p), 0, grads, nb);
}

static void test_determinism(void **state)
{
    struct hm_backend *be = cpu();
    struct trainer a, b;
    trainer_new(&a, be, 4, 10, 0.1f);
    trainer_new(&b, be, 4, 10, 0.1f);
    size_t nb = hm_block_nbytes(a.m.p);
    float la, lb, *pa = malloc(nb), *pb = malloc(nb), *ga = malloc(nb), *gb = malloc(nb);
    for (int step = 1; step <= 3; step++) {
        train_step(&a, step);
        train_step(&b, step);
        snapshot(&a, &la, pa, ga);
        snapshot(&b, &lb, pb, gb);
        assert_memory_equal(&la, &lb, 4);
        assert_memory_equal(pa, pb, nb);
        assert_memory_equal(ga, gb, nb);
    }
    free(pa), free(pb), free(ga), free(gb);
    trainer_free(&a);
    trainer_free(&b);
    hm_backend_free(be);
}

/* Backward adds into parameter gradients, and the loss seed scales them. */
static void test_accumulation_and_loss_scale(void **state)
{
    struct hm_backend *be = cpu();
    struct trainer tr;
    trainer_new(&tr, be, 2, 6, 0.0f);
    next_batch(&tr);
    hm_tensor_set(tr.ids, tr.hids, hm_nbytes(tr.ids));
    hm_tensor_set(tr.tgt, tr.htgt, hm_nbytes(tr.tgt));
    size_t nb = hm_block_nbytes(tr.m.p), n = nb / 4;
    float *g1 = malloc(nb), *g2 = malloc(nb), *gs = malloc(nb);
    struct hm_buffer *grads = hm_block_grads(tr.m.p);
    hm_buffer_zero(grads);
    hm_graph_forward(tr.g);
    hm_graph_backward(tr.g);
    hm_buffer_get(grads, 0, g1, nb);
    hm_graph_forward(tr.g);
    hm_graph_backward(tr.g);
    hm_buffer_get(grads, 0, g2, nb);
    hm_buffer_zero(grads);
    hm_graph_runtime(tr.g)->loss_scale = 0.25f;
    hm_graph_forward(tr.g);
    hm_graph_backward(tr.g);
    hm_buffer_get(grads, 0, gs, nb);
    double nz = 0;
    for (size_t i = 0; i < n; i++) {
        assert_float_equal(g2[i], 2 * g1[i], 1e-6 + 1e-5 * fabs(g1[i]));
        assert_float_equal(gs[i], 0.25f * g1[i], 1e-7 + 1e-5 * fabs(g1[i]));
        nz += g1[i] != 0;
    }
    assert_true(nz > 0.9 * n); /* every parameter got a gradient */
    free(g1), free(g2), free(gs);
    trainer_free(&tr);
    hm_backend_free(be);
}

static void test_planner_reuses_memory(void **state)
{
    struct hm_backend *be = cpu();
    struct trainer tr;
    trainer_new(&tr, be, 4, 16, 0.1f);
    size_t naive = 0;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < hm_graph_n_nodes(tr.g, k); i++) {
            struct hm_tensor *t = hm_graph_node(tr.g, k, i);
            if (!t->view_src)
                naive += hm_nbytes(t);
            for (int j = 0; j < HM_MAX_SRC; j++) /* extra outputs and gradient storage */
                if (t->src[j] && !t->src[j]->view_src && t->src[j]->op == HM_OP_NONE &&
                    t->src[j]->buffer == hm_graph_node(tr.g, false, 0)->buffer)
                    naive += hm_nbytes(t->src[j]);
        }
    size_t planned = hm_graph_planned_bytes(tr.g);
    printf("planner: %zu bytes planned, %zu without reuse\n", planned, naive);
    assert_true(planned > 0 && planned < naive * 3 / 4);
    trainer_free(&tr);
    hm_backend_free(be);
}

/* Decoding one token at a time through the KV cache gives the logits of a full recompute. */
static void test_kv_cache_matches_full(void **state)
{
    enum { N = 9, TMAX = 12 };
    struct hm_backend *be = cpu();
    struct toy m;
    toy_new(&m, be, 3);
    int32_t toks[N];
    for (int i = 0; i < N; i++)
        toks[i] = (i * 7 + 3) % V;

    struct hm_ctx *cf;
    struct hm_graph *gf;
    assert_int_equal(hm_ctx_new(&cf), HM_OK);
    struct hm_tensor *ids = hm_new_input(cf, HM_DTYPE_I32, 2, (int64_t[]){1, N});
    struct hm_tensor *full = toy_forward(&m, cf, ids, NULL, NULL, 0.1f);
    assert_int_equal(hm_graph_new(cf, &gf), HM_OK);
    hm_graph_build_forward(gf, full);
    assert_int_equal(hm_graph_plan(gf, be), HM_OK);
    hm_graph_runtime(gf)->training = false;
    hm_tensor_set(ids, toks, sizeof toks);
    assert_int_equal(hm_graph_forward(gf), HM_OK);
    float ref[N * V];
    hm_tensor_get(full, ref, sizeof ref);

    struct hm_block *cache;
    struct hm_tensor *kc[L], *vc[L];
    assert_int_equal(hm_block_new(false, &cache), HM_OK);
    for (int l = 0; l < L; l++) {
        kc[l] = hm_block_add(cache, "k", HM_DTYPE_F32, 4, (int64_t[]){1, TMAX, NKV, HD});
        vc[l] = hm_block_add(cache, "v", HM_DTYPE_F32, 4, (int64_t[]){1, TMAX, NKV, HD});
    }
    assert_int_equal(hm_block_alloc(cache, be), HM_OK);
    struct hm_ctx *cd;
    struct hm_graph *gd;
    assert_int_equal(hm_ctx_new(&cd), HM_OK);
    struct hm_tensor *tok = hm_new_input(cd, HM_DTYPE_I32, 2, (int64_t[]){1, 1});
    struct hm_tensor *step = toy_forward(&m, cd, tok, kc, vc, 0.1f);
    assert_int_equal(hm_graph_new(cd, &gd), HM_OK);
    hm_graph_build_forward(gd, step);
    assert_int_equal(hm_graph_plan(gd, be), HM_OK);
    hm_graph_runtime(gd)->training = false;
    double max_err = 0;
    for (int pos = 0; pos < N; pos++) {
        float out[V];
        hm_graph_runtime(gd)->pos = pos;
        hm_tensor_set(tok, &toks[pos], 4);
        assert_int_equal(hm_graph_forward(gd), HM_OK);
        hm_tensor_get(step, out, sizeof out);
        for (int j = 0; j < V; j++)
            max_err = fmax(max_err, fabs(out[j] - ref[pos * V + j]));
    }
    printf("kv cache vs full recompute: max |diff| = %g\n", max_err);
    assert_true(max_err < 1e-5);
    /* past the end of the cache is a usage error, not a crash */
    hm_graph_runtime(gd)->pos = TMAX;
    assert_int_equal(hm_graph_forward(gd), HM_ERR_USAGE);

    hm_graph_free(gd);
    hm_ctx_free(cd);
    hm_block_free(cache);
    hm_graph_free(gf);
    hm_ctx_free(cf);
    hm_block_free(m.p);
    hm_backend_free(be);
}

/* A slice of a non-parameter tensor: its gradient is zero outside the slice. */
static void test_slice_gradient(void **state)
{
    struct hm_backend *be = cpu();
    struct hm_block *blk;
    struct hm_ctx *ctx;
    struct hm_graph *g;
    hm_block_new(true, &blk);
    struct hm_tensor *x = hm_block_add(blk, "x", HM_DTYPE_F32, 2, (int64_t[]){4, 3});
    hm_block_alloc(blk, be);
    float hx[12];
    for (int i = 0; i < 12; i++)
        hx[i] = (float)i;
    hm_tensor_set(x, hx, sizeof hx);
    hm_ctx_new(&ctx);
    struct hm_tensor *y = hm_scale(ctx, x, 2.0f);
    struct hm_tensor *s = hm_slice(ctx, hm_reshape(ctx, y, 3, (int64_t[]){1, 4, 3}), 1, 1, 2);
    struct hm_tensor *z = hm_scale(ctx, s, 3.0f);
    hm_graph_new(ctx, &g);
    hm_graph_build_forward(g, z);
    assert_int_equal(hm_graph_build_backward(g, z), HM_OK);
    assert_int_equal(hm_graph_plan(g, be), HM_OK);
    hm_buffer_zero(hm_block_grads(blk));
    assert_int_equal(hm_graph_forward(g), HM_OK);
    assert_int_equal(hm_graph_backward(g), HM_OK);
    float out[6], gx[12];
    hm_tensor_get(z, out, sizeof out);
    hm_tensor_get(x->grad, gx, sizeof gx);
    for (int i = 0; i < 6; i++)
        assert_float_equal(out[i], 6.0f * (float)(3 + i), 0);
    for (int i = 0; i < 12; i++)
        assert_float_equal(gx[i], (i >= 3 && i < 9) ? 6.0f : 0.0f, 0);
    hm_graph_free(g);
    hm_ctx_free(ctx);
    hm_block_free(blk);
    hm_backend_free(be);
}

static void test_errors_are_statuses(void **state)
{
    struct hm_backend *be = cpu();
    struct hm_block *blk;
    struct hm_ctx *ctx;
    struct hm_graph *g;
    hm_block_new(true, &blk);
    struct hm_tensor *w = hm_block_add(blk, "w", HM_DTYPE_F32, 2, (int64_t[]){5, 4});
    hm_block_alloc(blk, be);
    hm_ctx_new(&ctx);
    struct hm_tensor *ids = hm_new_input(ctx, HM_DTYPE_I32, 1, (int64_t[]){3});
    struct hm_tensor *e = hm_embedding(ctx, w, ids);
    hm_graph_new(ctx, &g);
    hm_graph_build_forward(g, e);
    assert_int_equal(hm_graph_forward(g), HM_ERR_USAGE); /* not planned */
    assert_int_equal(hm_graph_plan(g, be), HM_OK);
    int32_t bad[3] = {0, 5, 1};
    assert_int_equal(hm_tensor_set(ids, bad, 8), HM_ERR_USAGE); /* wrong size */
    hm_tensor_set(ids, bad, sizeof bad);
    assert_int_equal(hm_graph_forward(g), HM_ERR_USAGE);
    assert_non_null(strstr(hm_last_error(), "token id 5"));
    hm_graph_free(g);
    hm_ctx_free(ctx);

    /* bf16 storage: the CPU computes in f32 on widened copies and rounds the result */
    struct hm_block *bb;
    hm_block_new(false, &bb);
    struct hm_tensor *xb = hm_block_add(bb, "xb", HM_DTYPE_BF16, 1, (int64_t[]){8});
    assert_int_equal(hm_block_alloc(bb, be), HM_OK);
    assert_int_equal(hm_tensor_fill(xb, 1.5f), HM_OK);
    uint16_t hb[8];
    hm_tensor_get(xb, hb, sizeof hb);
    assert_float_equal(hm_bf16_to_f32(hb[3]), 1.5f, 0);
    hm_ctx_new(&ctx);
    hm_graph_new(ctx, &g);
    struct hm_tensor *yb = hm_gelu(ctx, xb);
    hm_graph_build_forward(g, yb);
    assert_int_equal(hm_graph_plan(g, be), HM_OK);
    assert_int_equal(hm_graph_forward(g), HM_OK);
    float yf[8];
    assert_int_equal(hm_tensor_get_f32(yb, yf, 8), HM_OK);
    float gelu15 = 0.75f * (1.0f + erff(1.5f / sqrtf(2.0f)));
    assert_float_equal(yf[5], hm_bf16_to_f32(hm_f32_to_bf16(gelu15)), 0);
    hm_graph_free(g);
    hm_ctx_free(ctx);
    hm_block_free(bb);
    hm_block_free(blk);
    hm_backend_free(be);
}

static void test_bf16_rounding(void **state)
{
    assert_int_equal(hm_f32_to_bf16(1.0f), 0x3f80);
    /* 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125: ties to even -> 1.0 */
    assert_int_equal(hm_f32_to_bf16(1.00390625f), 0x3f80);
    /* 1 + 3*2^-8 is halfway between 1.0078125 (odd) and 1.015625 (even) -> up */
    assert_int_equal(hm_f32_to_bf16(1.01171875f), 0x3f82);
    assert_true(isnan(hm_bf16_to_f32(hm_f32_to_bf16(NAN))));
    assert_true(isinf(hm_bf16_to_f32(hm_f32_to_bf16(INFINITY))));
    float x[3] = {-2.5f, 0.0f, 3.140625f}, y[3];
    uint16_t h[3];
    hm_f32_to_bf16_n(x, h, 3);
    hm_bf16_to_f32_n(h, y, 3);
    assert_memory_equal(x, y, sizeof x); /* exactly representable */
}

static void test_dropout_modes(void **state)
{
    struct hm_backend *be = cpu();
    struct hm_block *blk;
    struct hm_ctx *ctx;
    struct hm_graph *g;
    hm_block_new(false, &blk);
    struct hm_tensor *x = hm_block_add(blk, "x", HM_DTYPE_F32, 1, (int64_t[]){1000});
    hm_block_alloc(blk, be);
    hm_tensor_fill(x, 1.0f);
    hm_ctx_new(&ctx);
    assert_ptr_equal(hm_dropout(ctx, x, 0.0f, 1), x); /* p = 0: no node at all */
    struct hm_tensor *y = hm_dropout(ctx, x, 0.25f, 1);
    hm_graph_new(ctx, &g);
    hm_graph_build_forward(g, y);
    hm_graph_plan(g, be);
    struct hm_runtime *rt = hm_graph_runtime(g);
    float a[1000], b[1000];
    rt->seed = 1, rt->step = 1;
    hm_graph_forward(g);
    hm_tensor_get(y, a, sizeof a);
    int dropped = 0;
    for (int i = 0; i < 1000; i++) {
        assert_true(a[i] == 0.0f || a[i] == 1.0f / 0.75f);
        dropped += a[i] == 0.0f;
    }
    assert_in_range(dropped, 200, 300);
    rt->step = 2; /* a new step draws a new mask */
    hm_graph_forward(g);
    hm_tensor_get(y, b, sizeof b);
    assert_true(memcmp(a, b, sizeof a) != 0);
    rt->step = 1; /* and the old step reproduces the old one */
    hm_graph_forward(g);
    hm_tensor_get(y, b, sizeof b);
    assert_memory_equal(a, b, sizeof a);
    rt->training = false;
    hm_graph_forward(g);
    hm_tensor_get(y, b, sizeof b);
    for (int i = 0; i < 1000; i++)
        assert_float_equal(b[i], 1.0f, 0);
    hm_graph_free(g);
    hm_ctx_free(ctx);
    hm_block_free(blk);
    hm_backend_free(be);
}

/* Masks keyed by the global sample index: one batch of 4 samples draws exactly the masks of two
 * batches of 2 holding samples 0-1 and 2-3 (two ranks, or two micro-batches). */
static void test_dropout_global_sample_index(void **state)
{
    struct hm_backend *be = cpu();
    enum { S = 4, E = 96 }; /* samples, elements per sample */
    float whole[S * E], half[S * E];
    for (int split = 1; split <= 2; split++) {
        int n = S / split;
        struct hm_block *blk;
        struct hm_ctx *ctx;
        struct hm_graph *g;
        hm_block_new(false, &blk);
        struct hm_tensor *x = hm_block_add(blk, "x", HM_DTYPE_F32, 3, (int64_t[]){n, 8, E / 8});
        hm_block_alloc(blk, be);
        hm_tensor_fill(x, 1.0f);
        hm_ctx_new(&ctx);
        struct hm_tensor *y = hm_dropout(ctx, x, 0.5f, 3);
        hm_graph_new(ctx, &g);
        hm_graph_build_forward(g, y);
        hm_graph_plan(g, be);
        struct hm_runtime *rt = hm_graph_runtime(g);
        rt->seed = 7, rt->step = 5, rt->samples = (uint64_t)n;
        for (int part = 0; part < split; part++) {
            rt->sample0 = (uint64_t)(part * n);
            assert_int_equal(hm_graph_forward(g), HM_OK);
            hm_tensor_get(y, (split == 1 ? whole : half) + part * n * E, sizeof(float) * n * E);
        }
        hm_graph_free(g);
        hm_ctx_free(ctx);
        hm_block_free(blk);
    }
    assert_memory_equal(whole, half, sizeof whole);
    hm_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dropout_global_sample_index),
        cmocka_unit_test(test_toy_training),
        cmocka_unit_test(test_step_allocates_nothing),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_accumulation_and_loss_scale),
        cmocka_unit_test(test_planner_reuses_memory),
        cmocka_unit_test(test_kv_cache_matches_full),
        cmocka_unit_test(test_slice_gradient),
        cmocka_unit_test(test_errors_are_statuses),
        cmocka_unit_test(test_bf16_rounding),
        cmocka_unit_test(test_dropout_modes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
