/*
 * test-config.c - presets, user config files, the original's 10-key config.json, malformed
 * input, and the exact parameter/FLOP/KV-cache arithmetic checked against hand-computed counts.
 */
#include "testutil.h"

#include "hermes/config.h"
#include "hermes/model.h"

#include <stdlib.h>
#include <string.h>

static void test_all_presets_load(void **state)
{
    const char *names[] = {"nano", "tiny", "gpt2-small", "gpt2-medium", "gpt2-large",
                           "llama-nano", "llama-tiny", "llama-small"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        struct hm_model_config c;
        assert_int_equal(hm_config_preset(names[i], &c), HM_OK);
        assert_string_equal(c.name, names[i]);
        assert_int_equal(hm_config_validate(&c), HM_OK);
        assert_true(c.tie_embeddings);
    }
    int n = 0;
    for (const char *const *p = hm_config_preset_names(); *p; p++)
        n++;
    assert_int_equal(n, 8);
}

static void test_preset_dims_match_original(void **state)
{
    /* hermes-llm.md section 3: L, H, heads, I, max_seq, vocab, dropout, eps, bias, act. */
    struct hm_model_config c;
    assert_int_equal(hm_config_preset("llama-small", &c), HM_OK);
    assert_int_equal(c.num_layers, 16);
    assert_int_equal(c.hidden_size, 1024);
    assert_int_equal(c.num_heads, 16);
    assert_int_equal(c.intermediate_size, 2752);
    assert_int_equal(c.max_seq_len, 2048);
    assert_int_equal(c.vocab_size, 32000);
    assert_false(c.use_bias);
    assert_int_equal(c.activation, HM_ACT_SWIGLU);
    assert_true(c.layer_norm_eps == 1e-6f);
    assert_true(c.dropout == 0.0f);
    assert_int_equal(hm_config_preset("gpt2-large", &c), HM_OK);
    assert_int_equal(c.num_layers, 36);
    assert_int_equal(c.hidden_size, 1280);
    assert_int_equal(c.num_heads, 20);
    assert_int_equal(c.intermediate_size, 5120);
    assert_int_equal(c.activation, HM_ACT_GELU);
    assert_true(c.use_bias);
}

/* The llama-style presets: nano and tiny sizes, SwiGLU with a FFN width that keeps the
 * parameter count (3 matrices instead of 2) and a multiple of 32 (q8_0 blocks), no biases, GQA. */
static void test_llama_presets(void **state)
{
    static const struct { const char *name; int L, C, NH, NKV, I, T; uint64_t params; } want[] = {
        {"llama-nano", 2, 64, 4, 2, 192, 128, 162624},
        {"llama-tiny", 4, 128, 4, 2, 352, 256, 866432},
    };
    for (size_t i = 0; i < 2; i++) {
        struct hm_model_config c;
        assert_int_equal(hm_config_preset(want[i].name, &c), HM_OK);
        assert_int_equal(c.num_layers, want[i].L);
        assert_int_equal(c.hidden_size, want[i].C);
        assert_int_equal(c.num_heads, want[i].NH);
        assert_int_equal(c.num_kv_heads, want[i].NKV);
        assert_int_equal(c.intermediate_size, want[i].I);
        assert_int_equal(c.intermediate_size % 32, 0);
        assert_int_equal(c.max_seq_len, want[i].T);
        assert_int_equal(c.activation, HM_ACT_SWIGLU);
        assert_false(c.use_bias);
        assert_true(c.tie_embeddings);
        assert_int_equal(hm_config_param_count(&c), want[i].params);
    }
}

static void test_unknown_preset_lists_presets(void **state)
{
    struct hm_model_config c;
    assert_int_equal(hm_config_preset("gpt5", &c), HM_ERR_USAGE);
    assert_non_null(strstr(hm_last_error(), "gpt5"));
    assert_non_null(strstr(hm_last_error(), "nano, tiny, gpt2-small, gpt2-medium, gpt2-large, llama-nano, llama-tiny, llama-small"));
    assert_int_equal(hm_config_resolve("gpt5", &c), HM_ERR_USAGE);
}

/* Hand-computed from the architecture: embedding V*C; per layer attention 4*C*C (+4C biases),
 * FFN up I*C (+I) and down C*I (+C) or gate+up+down for SwiGLU, two norms 2C; final norm C. */
static void test_param_counts_hand_computed(void **state)
{
    struct hm_model_config c;
    assert_int_equal(hm_config_preset("nano", &c), HM_OK);
    uint64_t C = 64, I = 256, V = 1000, L = 2;
    uint64_t layer = 4 * C * C + 4 * C + (I * C + I) + (C * I + C) + 2 * C;
    assert_int_equal(hm_config_param_count(&c), V * C + L * layer + C);
    assert_int_equal(hm_config_param_count(&c), 163776);

    assert_int_equal(hm_config_preset("llama-small", &c), HM_OK);
    C = 1024, I = 2752, V = 32000, L = 16;
    layer = 4 * C * C + 3 * I * C + 2 * C;
    assert_int_equal(hm_config_param_count(&c), V * C + L * layer + C);
    assert_int_equal(hm_config_param_count(&c), 235176960);

    assert_int_equal(hm_config_preset("gpt2-small", &c), HM_OK);
    assert_int_equal(hm_config_param_count(&c), 123634176);
    c.tie_embeddings = false; /* an untied head adds V*C */
    assert_int_equal(hm_config_param_count(&c), 123634176ull + 50257ull * 768);

    /* GQA: k and v shrink to NKV*HD rows. */
    assert_int_equal(hm_config_preset("tiny", &c), HM_OK);
    uint64_t full = hm_config_param_count(&c);
    c.num_kv_heads = 2; /* HD = 32: k, v lose 2 heads each: 2 * (2*32*128 + 2*32 bias) per layer */
    assert_int_equal(full - hm_config_param_count(&c), 4 * 2 * (2 * 32 * 128 + 2 * 32));
}

static void test_flops_and_kv_cache(void **state)
{
    struct hm_model_config c;
    assert_int_equal(hm_config_preset("nano", &c), HM_OK);
    /* per layer: 2*(4*C*C + I*C + C*I) + 4*T*C ; head: 2*C*V */
    double C = 64, I = 256, T = 128;
    double expect = 2 * (2 * (4 * C * C + 2 * I * C) + 4 * T * C) + 2 * C * 1000;
    assert_true(hm_config_flops_per_token(&c, 128) == expect);
    /* K and V: 2 * L * ctx * NKV * HD * bytes */
    assert_int_equal(hm_config_kv_cache_bytes(&c, 128, 4), 2 * 2 * 128 * 2 * 32 * 4);
    struct hm_model_memory m;
    assert_int_equal(hm_model_memory_estimate(&c, 4, 64, &m), HM_OK);
    assert_int_equal(m.params_bytes, 4 * 163776);
    assert_int_equal(m.optim_bytes, 8 * 163776);
    assert_true(m.total_bytes > m.params_bytes + m.grads_bytes + m.optim_bytes);
}

static void test_user_file_and_roundtrip(void **state)
{
    char *dir = tu_mkdtemp();
    char *p = tu_path(dir, "my.json");
    const char *js = "{\"vocab_size\": 500, \"max_seq_len\": 64, \"hidden_size\": 32, \"num_layers\": 3,"
                     " \"num_heads\": 4, \"num_kv_heads\": 2, \"intermediate_size\": 96, \"dropout\": 0.0,"
                     " \"layer_norm_eps\": 1e-6, \"use_bias\": false, \"rope_theta\": 500000.0,"
                     " \"activation\": \"swiglu\", \"tie_embeddings\": false}";
    tu_write(p, js, strlen(js));
    struct hm_model_config c, d;
    assert_int_equal(hm_config_resolve(p, &c), HM_OK);
    assert_int_equal(c.num_kv_heads, 2);
    assert_false(c.tie_embeddings);
    assert_true(c.rope_theta == 500000.0f);
    char *out = tu_path(dir, "config.json");
    assert_int_equal(hm_config_save(&c, out), HM_OK);
    assert_int_equal(hm_config_load(out, &d), HM_OK);
    assert_int_equal(memcmp(&c.vocab_size, &d.vocab_size,
                            sizeof c - offsetof(struct hm_model_config, vocab_size)), 0);
    tu_rmdir(dir);
    free(p);
    free(out);
    free(dir);
}

static void test_original_ten_key_config(void **state)
{
    /* The Rust original's config.json: 10 keys, no kv heads / activation / tie fields. */
    const char *orig = "{\n  \"vocab_size\": 32000,\n  \"max_seq_len\": 128,\n  \"hidden_size\": 64,\n"
                       "  \"num_layers\": 2,\n  \"num_heads\": 2,\n  \"intermediate_size\": 256,\n"
                       "  \"dropout\": 0.1,\n  \"layer_norm_eps\": 1e-05,\n  \"use_bias\": false,\n"
                       "  \"rope_theta\": 10000.0\n}";
    struct hm_model_config c;
    assert_int_equal(hm_config_parse(orig, "config.json", &c), HM_OK);
    assert_int_equal(c.num_kv_heads, 2);
    assert_int_equal(c.activation, HM_ACT_SWIGLU); /* the original: no bias => SwiGLU */
    assert_true(c.tie_embeddings);
}

static void test_malformed(void **state)
{
    struct hm_model_config c;
    assert_int_equal(hm_config_parse("{\"vocab_size\": 10,", "bad.json", &c), HM_ERR_FORMAT);
    assert_non_null(strstr(hm_last_error(), "bad.json"));
    assert_non_null(strstr(hm_last_error(), "line"));
    assert_int_equal(hm_config_parse("[1,2]", "arr.json", &c), HM_ERR_FORMAT);
    const char *missing = "{\"vocab_size\": 10, \"max_seq_len\": 8, \"hidden_size\": 8, \"num_layers\": 1,"
                          " \"num_heads\": 2}";
    assert_int_equal(hm_config_parse(missing, "m.json", &c), HM_ERR_FORMAT);
    assert_non_null(strstr(hm_last_error(), "intermediate_size"));
    const char *badtype = "{\"vocab_size\": \"ten\", \"max_seq_len\": 8, \"hidden_size\": 8,"
                          " \"num_layers\": 1, \"num_heads\": 2, \"intermediate_size\": 8}";
    assert_int_equal(hm_config_parse(badtype, "t.json", &c), HM_ERR_FORMAT);
    assert_non_null(strstr(hm_last_error(), "vocab_size"));
    const char *indivisible = "{\"vocab_size\": 10, \"max_seq_len\": 8, \"hidden_size\": 10,"
                              " \"num_layers\": 1, \"num_heads\": 3, \"intermediate_size\": 8}";
    assert_int_equal(hm_config_parse(indivisible, "d.json", &c), HM_ERR_FORMAT);
    const char *unknown = "{\"vocab_size\": 10, \"max_seq_len\": 8, \"hidden_size\": 8,"
                          " \"num_layers\": 1, \"num_heads\": 2, \"intermediate_size\": 8, \"wat\": 1}";
    assert_int_equal(hm_config_parse(unknown, "u.json", &c), HM_ERR_FORMAT);
    assert_non_null(strstr(hm_last_error(), "wat"));
    const char *gqa = "{\"vocab_size\": 10, \"max_seq_len\": 8, \"hidden_size\": 8,"
                      " \"num_layers\": 1, \"num_heads\": 2, \"num_kv_heads\": 3, \"intermediate_size\": 8}";
    assert_int_equal(hm_config_parse(gqa, "g.json", &c), HM_ERR_FORMAT);
    assert_int_equal(hm_config_load("/nonexistent/config.json", &c), HM_ERR_IO);
    assert_non_null(strstr(hm_last_error(), "/nonexistent/config.json"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_presets_load),
        cmocka_unit_test(test_preset_dims_match_original),
        cmocka_unit_test(test_llama_presets), cmocka_unit_test(test_unknown_preset_lists_presets),
        cmocka_unit_test(test_param_counts_hand_computed),
        cmocka_unit_test(test_flops_and_kv_cache),
        cmocka_unit_test(test_user_file_and_roundtrip),
        cmocka_unit_test(test_original_ten_key_config),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
