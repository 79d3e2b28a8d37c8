/*
 * test-model.c - the model's parameters: exact counts for every preset (the sum over the declared
 * tensors equals hm_config_param_count, which `info` prints), the original's tensor names and
 * shapes, the decay layout, the init rule, and the planner's memory report.
 */
#include "testutil.h"

#include "hermes/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *presets[] = {"nano", "tiny", "gpt2-small", "gpt2-medium", "gpt2-large",
                           "llama-nano", "llama-tiny", "llama-small"};

static void test_counts_every_preset(void **state)
{
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++) {
        struct hm_model_config c;
        assert_int_equal(hm_config_preset(presets[i], &c), HM_OK);
        for (int untie = 0; untie < 2; untie++) {
            c.tie_embeddings = !untie;
            struct hm_model *m;
            assert_int_equal(hm_model_new(&c, NULL, &m), HM_OK); /* declare only */
            uint64_t sum = 0;
            struct hm_block *b = hm_model_params(m);
            for (int t = 0; t < hm_block_n_tensors(b); t++)
                sum += (uint64_t)hm_nelements(hm_block_tensor(b, t));
            assert_int_equal(sum, hm_config_param_count(&c));
            assert_int_equal(hm_model_param_count(m), hm_config_param_count(&c));
            assert_int_equal(hm_model_param(m, "lm_head.weight") != NULL, untie);
            hm_model_free(m);
        }
    }
}

static void expect_shape(struct hm_model *m, const char *name, int64_t d0, int64_t d1)
{
    struct hm_tensor *t = hm_model_param(m, name);
    if (!t)
        fail_msg("missing tensor %s", name);
    assert_int_equal(t->shape[0], d0);
    if (d1)
        assert_int_equal(t->shape[1], d1);
    else
        assert_int_equal(t->n_dims, 1);
}

static void test_names_and_shapes(void **state)
{
    struct hm_model_config c;
    struct hm_model *m;
    assert_int_equal(hm_config_preset("nano", &c), HM_OK); /* GPT style, biases */
    assert_int_equal(hm_model_new(&c, NULL, &m), HM_OK);
    expect_shape(m, "embedding.weight", 1000, 64);
    expect_shape(m, "layers.1.attention.q_proj.weight", 64, 64);
    expect_shape(m, "layers.1.attention.o_proj.bias", 64, 0);
    expect_shape(m, "layers.0.feed_forward.up_proj.weight", 256, 64);
    expect_shape(m, "layers.0.feed_forward.up_proj.bias", 256, 0);
    expect_shape(m, "layers.0.feed_forward.down_proj.weight", 64, 256);
    expect_shape(m, "layers.0.input_layernorm.weight", 64, 0);
    expect_shape(m, "layers.0.post_attention_layernorm.weight", 64, 0);
    expect_shape(m, "norm.weight", 64, 0);
    assert_null(hm_model_param(m, "layers.0.feed_forward.gate_proj.weight")); /* 2-matrix GELU FFN */
    hm_model_free(m);
    assert_int_equal(hm_config_preset("llama-small", &c), HM_OK);
    c.num_kv_heads = 4; /* GQA: k, v are [NKV*HD, C] */
    assert_int_equal(hm_model_new(&c, NULL, &m), HM_OK);
    expect_shape(m, "layers.15.attention.k_proj.weight", 4 * 64, 1024);
    expect_shape(m, "layers.15.feed_forward.gate_proj.weight", 2752, 1024);
    assert_null(hm_model_param(m, "layers.0.attention.q_proj.bias"));
    hm_model_free(m);
}

static void test_decay_layout_and_init(void **state)
{
    struct hm_model_config c;
    assert_int_equal(hm_config_preset("nano", &c), HM_OK);
    struct hm_backend *be;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    struct hm_model *m;
    assert_int_equal(hm_model_new(&c, be, &m), HM_OK);
    assert_int_equal(hm_model_init_weights(m, 3), HM_OK);
    struct hm_block *b = hm_model_params(m);
    uint64_t decay = hm_model_n_decay(m);
    for (int t = 0; t < hm_block_n_tensors(b); t++) {
        struct hm_tensor *p = hm_block_tensor(b, t);
        bool is_matrix = p->n_dims == 2;
        assert_int_equal(hm_block_elem_offset(p) < decay, is_matrix); /* matrices first */
        size_t n = (size_t)hm_nelements(p);
        float *w = malloc(n * 4);
        assert_int_equal(hm_tensor_get(p, w, n * 4), HM_OK);
        double ss = 0;
        for (size_t j = 0; j < n; j++)
            ss += (double)w[j] * w[j];
        double rms = sqrt(ss / n);
        if (is_matrix) {
            bool resid = strstr(p->name, "o_proj") || strstr(p->name, "down_proj");
            double want = 0.02 * (resid ? 1.0 / sqrt(2.0 * c.num_layers) : 1.0);
            if (fabs(rms - want) > 0.1 * want)
                fail_msg("%s: std %.4f, want %.4f", p->name, rms, want);
        } else if (strstr(p->name, "norm")) {
            assert_true(rms == 1.0);
        } else {
            assert_true(rms == 0.0); /* biases */
        }
        free(w);
    }
    hm_model_free(m);
    hm_backend_free(be);
}

static void test_planned_memory(void **state)
{
    struct hm_model_config c;
    assert_int_equal(hm_config_preset("gpt2-large", &c), HM_OK);
    struct hm_backend *be;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    uint64_t before = hm_alloc_count();
    struct hm_model_memory mem;
    assert_int_equal(hm_model_memory_planned(&c, 8, 512, be, HM_DTYPE_F32, &mem), HM_OK);
    assert_true(mem.planned);
    /* It must hold at least the logits and their gradient... */
    assert_true(mem.activation_bytes >= 2ull * 8 * 512 * 50257 * 4 / 2);
    /* ...and never allocate them: planning gpt2-large costs only metadata. */
    printf("gpt2-large B=8 T=512: planned %.2f GiB with %llu host allocations\n",
           mem.activation_bytes / 1073741824.0, (unsigned long long)(hm_alloc_count() - before));
    assert_int_equal(mem.params_bytes, 4 * hm_config_param_count(&c));
    hm_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_every_preset),
        cmocka_unit_test(test_names_and_shapes),
        cmocka_unit_test(test_decay_layout_and_init),
        cmocka_unit_test(test_planned_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
