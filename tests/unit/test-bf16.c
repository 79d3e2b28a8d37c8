/*
 * test-bf16.c - mixed precision on the CPU backend, the reference for the CUDA bf16 kernels:
 * bf16 weight copies and activations, f32 master weights, gradients, optimizer and loss.
 *   - a bf16 training graph gives the f32 loss and gradients within bf16 rounding, for GPT style
 *     with biases, LLaMA style with GQA, and untied heads;
 *   - gradients land in the f32 master gradients; the copies follow the masters after a step;
 *   - activations are planned in bf16 (the workspace shrinks);
 *   - 40 AdamW steps of nano in bf16 follow the f32 loss curve within 2% (issue 8's criterion);
 *   - generation in bf16: the KV-cache logits equal a full recompute, with a bf16 cache.
 * Tolerances: bf16 keeps 8 significant bits (relative rounding 2^-9 = 0.2%); every activation is
 * rounded once per op, so errors of a few rounding steps per layer are expected: loss within
 * 1e-2 relative, each gradient within 5e-2 of its norm.
 */
#include "testutil.h"

#include "hermes/model.h"
#include "hermes/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct run {
    struct hm_backend *be;
    struct hm_model *m;
    struct hm_train_graph tg;
    int B, T;
};

static void set_batch(struct run *r, unsigned seed)
{
    int n = r->B * r->T, V = hm_model_config(r->m)->vocab_size;
    int32_t *ids = malloc(n * sizeof *ids), *tgt = malloc(n * sizeof *tgt);
    for (int i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        ids[i] = (int32_t)((seed >> 8) % (unsigned)V);
        tgt[i] = (int32_t)((seed >> 4) % (unsigned)V);
    }
    assert_int_equal(hm_tensor_set(r->tg.ids, ids, n * sizeof *ids), HM_OK);
    assert_int_equal(hm_tensor_set(r->tg.targets, tgt, n * sizeof *tgt), HM_OK);
    free(ids), free(tgt);
}

static void open_run(struct run *r, const struct hm_model_config *c, enum hm_dtype dt, int B, int T)
{
    r->B = B, r->T = T;
    assert_int_equal(hm_backend_cpu_new(&r->be), HM_OK);
    assert_int_equal(hm_model_new(c, r->be, &r->m), HM_OK);
    assert_int_equal(hm_model_init_weights(r->m, 7), HM_OK);
    assert_int_equal(hm_model_set_dtype(r->m, dt), HM_OK);
    if (hm_model_build_train_graph(r->m, B, T, &r->tg) != HM_OK)
        fail_msg("train graph: %s", hm_last_error());
}

static void close_run(struct run *r)
{
    hm_train_graph_free(&r->tg);
    hm_model_free(r->m);
    hm_backend_free(r->be);
}

static float step(struct run *r)
{
    assert_int_equal(hm_buffer_zero(hm_block_grads(hm_model_params(r->m))), HM_OK);
    if (hm_graph_forward(r->tg.graph) != HM_OK || hm_graph_backward(r->tg.graph) != HM_OK)
        fail_msg("step: %s", hm_last_error());
    float loss;
    assert_int_equal(hm_tensor_get(r->tg.loss, &loss, sizeof loss), HM_OK);
    return loss;
}

static float *grads(struct run *r, size_t *n)
{
    struct hm_buffer *g = hm_block_grads(hm_model_params(r->m));
    *n = hm_buffer_size(g) / sizeof(float);
    float *h = malloc(*n * sizeof *h);
    assert_int_equal(hm_buffer_get(g, 0, h, *n * sizeof *h), HM_OK);
    return h;
}

static void compare_to_f32(const char *preset, int kv_heads, bool untie)
{
    struct hm_model_config c;
    assert_int_equal(hm_config_preset(preset, &c), HM_OK);
    c.dropout = 0.0f;
    c.vocab_size = 512;
    c.num_layers = 2;
    if (kv_heads)
        c.num_kv_heads = kv_heads;
    if (untie)
        c.tie_embeddings = false;
    if (strcmp(preset, "nano") != 0) { /* shrink llama-small to nano width */
        c.hidden_size = 128, c.num_heads = 4, c.intermediate_size = 344;
        c.num_kv_heads = kv_heads ? kv_heads : 4;
    }
    struct run f, b;
    open_run(&f, &c, HM_DTYPE_F32, 2, 32);
    open_run(&b, &c, HM_DTYPE_BF16, 2, 32);
    assert_int_equal(b.tg.logits->type, HM_DTYPE_BF16);
    assert_int_equal(b.tg.loss->type, HM_DTYPE_F32);
    set_batch(&f, 3), set_batch(&b, 3);
    float lf = step(&f), lb = step(&b);
    assert_true(fabsf(lb - lf) <= 1e-2f * fabsf(lf));
    size_t n, n2;
    float *gf = grads(&f, &n), *gb = grads(&b, &n2);
    assert_int_equal(n, n2);
    struct hm_block *blk = hm_model_params(f.m);
    double worst = 0;
    for (int t = 0; t < hm_block_n_tensors(blk); t++) {
        struct hm_tensor *p = hm_block_tensor(blk, t);
        size_t o = hm_block_elem_offset(p), k = (size_t)hm_nelements(p);
        double d2 = 0, r2 = 0;
        for (size_t i = 0; i < k; i++) {
            d2 += (double)(gb[o + i] - gf[o + i]) * (gb[o + i] - gf[o + i]);
            r2 += (double)gf[o + i] * gf[o + i];
        }
        double rel = sqrt(d2) / (sqrt(r2) + 1e-12);
        if (rel > 5e-2)
            fail_msg("%s: gradient of %s differs by %.3g of its norm in bf16", preset, p->name, rel);
        worst = rel > worst ? rel : worst;
    }
    print_message("%s%s%s: loss f32 %.6f bf16 %.6f; worst gradient error %.3g of its norm\n", preset,
                  kv_heads ? " gqa" : "", untie ? " untied" : "", lf, lb, worst);
    free(gf), free(gb);
    close_run(&f), close_run(&b);
}

static void test_gpt_bias(void **state)
{
    compare_to_f32("nano", 0, false);
}

static void test_llama_gqa_untied(void **state)
{
    compare_to_f32("llama-small", 2, true);
}

static void test_planned_bytes_shrink(void **state)
{
    struct hm_model_config c;
    assert_int_equal(hm_config_preset("tiny", &c), HM_OK);
    struct hm_backend *be;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    size_t bytes[2];
    for (int i = 0; i < 2; i++) {
        struct hm_model *m;
        assert_int_equal(hm_model_new(&c, NULL, &m), HM_OK);
        assert_int_equal(hm_model_set_dtype(m, i ? HM_DTYPE_BF16 : HM_DTYPE_F32), HM_OK);
        assert_int_equal(hm_model_plan_train_bytes(m, be, 4, 128, &bytes[i]), HM_OK);
        hm_model_free(m);
    }
    print_message("tiny B=4 T=128 planned: f32 %zu, bf16 %zu bytes\n", bytes[0], bytes[1]);
    /* Everything planned is bf16 except small f32 pieces (lse, loss, shadows for the CPU's f32
     * kernels), so well under 3/4 of the f32 plan. */
    assert_true(bytes[1] < bytes[0] * 3 / 4);
    hm_backend_free(be);
}

static void test_copies_follow_masters(void **state)
{
    struct hm_model_config c;
    assert_int_equal(hm_config_preset("nano", &c), HM_OK);
    c.vocab_size = 256;
    struct run r;
    open_run(&r, &c, HM_DTYPE_BF16, 2, 16);
    set_batch(&r, 5);
    step(&r);
    struct hm_adamw_config ac = hm_adamw_defaults();
    struct hm_optimizer *opt;
    assert_int_equal(hm_optimizer_new(r.m, &ac, &opt), HM_OK);
    double norm;
    assert_int_equal(hm_optimizer_step(opt, 1e-2f, &norm), HM_OK);
    assert_true(norm > 0);
    /* Every copy equals its master rounded to bf16 after the step. */
    struct hm_tensor *w = hm_model_param(r.m, "layers.1.attention.q_proj.weight");
    size_t n = (size_t)hm_nelements(w);
    float *master = malloc(n * sizeof *master), *copy = malloc(n * sizeof *copy);
    assert_int_equal(hm_tensor_get(w, master, n * sizeof *master), HM_OK);
    const struct hm_tensor *q = NULL;
    struct hm_graph *g = r.tg.graph;
    for (int i = 0; i < hm_graph_n_nodes(g, false) && !q; i++) { /* the first matmul reading a copy of w */
        struct hm_tensor *t = hm_graph_node(g, false, i);
        for (int s = 0; s < 3 && !q; s++)
            if (t->op == HM_OP_MATMUL && t->src[s] && t->src[s]->type == HM_DTYPE_BF16 &&
                strcmp(t->src[s]->name, w->name) == 0)
                q = t->src[s];
    }
    assert_non_null(q);
    assert_ptr_equal(q->grad, w->grad); /* backward through the copy reaches the f32 gradient */
    assert_int_equal(hm_tensor_get_f32(q, copy, n), HM_OK);
    for (size_t i = 0; i < n; i++)
        assert_true(copy[i] == hm_bf16_to_f32(hm_f32_to_bf16(master[i])));
    free(master), free(copy);
    hm_optimizer_free(opt);
    close_run(&r);
}

static void test_training_curve(void **state)
{
    struct hm_model_config c;
    assert_int_equal(hm_config_preset("nano", &c), HM_OK);
    c.vocab_size = 256;
    c.dropout = 0.0f;
    struct run r[2];
    struct hm_optimizer *opt[2];
    struct hm_adamw_config ac = hm_adamw_defaults();
    ac.grad_clip = 1.0f;
    for (int k = 0; k < 2; k++) {
        open_run(&r[k], &c, k ? HM_DTYPE_BF16 : HM_DTYPE_F32, 4, 32);
        assert_int_equal(hm_optimizer_new(r[k].m, &ac, &opt[k]), HM_OK);
    }
    double worst = 0;
    float first = 0, last = 0;
    for (int s = 0; s < 40; s++) {
        float l[2];
        for (int k = 0; k < 2; k++) {
            set_batch(&r[k], 100 + s % 4); /* 4 batches repeated: the loss must fall */
            l[k] = step(&r[k]);
            double norm;
            assert_int_equal(hm_optimizer_step(opt[k], 3e-3f, &norm), HM_OK);
        }
        double rel = fabs(l[1] - l[0]) / l[0];
        worst = rel > worst ? rel : worst;
        if (rel > 0.02)
            fail_msg("step %d: bf16 loss %.5f vs f32 %.5f (%.2f%%)", s, l[1], l[0], 100 * rel);
        if (s == 0)
            first = l[0];
        last = l[0];
    }
    print_message("40 steps: f32 loss %.4f -> %.4f, bf16 within %.3f%% at every step\n", first, last,
                  100 * worst);
    assert_true(last < first - 0.5f);
    for (int k = 0; k < 2; k++) {
        hm_optimizer_free(opt[k]);
        close_run(&r[k]);
    }
}

static void test_generation_cache(void **state)
{
    struct hm_model_config c;
    assert_int_equal(hm_config_preset("llama-small", &c), HM_OK);
    c.vocab_size = 300, c.num_layers = 2, c.hidden_size = 64, c.num_heads = 4, c.num_kv_heads = 2;
    c.intermediate_size = 160, c.max_seq_len = 32;
    struct hm_backend *be;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    struct hm_model *m;
    assert_int_equal(hm_model_new_infer(&c, be, &m), HM_OK);
    assert_int_equal(hm_model_init_weights(m, 11), HM_OK);
    assert_int_equal(hm_model_set_dtype(m, HM_DTYPE_BF16), HM_OK);
    /* An inference model keeps only the bf16 copies: half the f32 weights' memory. */
    assert_true(hm_model_weights_released(m));
    assert_null(hm_block_data(hm_model_params(m)));
    assert_int_equal(hm_model_load_weights(m, "/nonexistent.safetensors"), HM_ERR_USAGE);
    assert_non_null(strstr(hm_last_error(), "released"));
    int32_t ids[12];
    for (int i = 0; i < 12; i++)
        ids[i] = (i * 37 + 5) % 300;
    /* Prefill 4, then decode one at a time, against a fresh full pass over the same prefix. */
    struct hm_kv_cache *kc, *kc_full;
    assert_int_equal(hm_kv_cache_new(m, 12, &kc), HM_OK);
    assert_int_equal(hm_kv_cache_new(m, 12, &kc_full), HM_OK);
    struct hm_infer_graph pre, dec;
    assert_int_equal(hm_model_build_infer_graph(m, kc, 4, &pre), HM_OK);
    assert_int_equal(hm_model_build_infer_graph(m, kc, 1, &dec), HM_OK);
    assert_int_equal(pre.logits->type, HM_DTYPE_BF16);
    float a[300], b[300];
    assert_int_equal(hm_infer_run(&pre, ids, 0), HM_OK);
    for (int pos = 4; pos < 12; pos++) {
        assert_int_equal(hm_infer_run(&dec, ids + pos, pos), HM_OK);
        assert_int_equal(hm_tensor_get_f32(dec.logits, a, 300), HM_OK);
        struct hm_infer_graph full;
        assert_int_equal(hm_model_build_infer_graph(m, kc_full, pos + 1, &full), HM_OK);
        assert_int_equal(hm_infer_run(&full, ids, 0), HM_OK);
        assert_int_equal(hm_tensor_get_f32(full.logits, b, 300), HM_OK);
        hm_infer_graph_free(&full);
        /* The same bf16 roundings either way, except the order of attention's sums. */
        for (int v = 0; v < 300; v++)
            assert_true(fabsf(a[v] - b[v]) <= 2e-2f * (1.0f + fabsf(b[v])));
    }
    hm_infer_graph_free(&pre);
    hm_infer_graph_free(&dec);
    hm_kv_cache_free(kc);
    hm_kv_cache_free(kc_full);
    hm_model_free(m);
    hm_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt_bias),
        cmocka_unit_test(test_llama_gqa_untied),
        cmocka_unit_test(test_planned_bytes_shrink),
        cmocka_unit_test(test_copies_follow_masters),
        cmocka_unit_test(test_training_curve),
        cmocka_unit_test(test_generation_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
