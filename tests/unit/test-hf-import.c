/*
 * test-hf-import.c - the Hugging Face import's parsers on bytes (hm_hf_config_parse,
 * hm_hf_index_parse, hm_name_from_hf), with the inputs the fuzz targets found inlined:
 * a rope_theta beyond the range of a float was accepted as inf and the imported config.json
 * could not be written; a layer number with a leading zero passed as part of the model.
 */
#include "testutil.h"

#include "export/export-impl.h"

#include <math.h>
#include <string.h>

#define LLAMA_KEYS                                                                              \
    "\"model_type\": \"llama\", \"vocab_size\": 320, \"hidden_size\": 32, "                     \
    "\"intermediate_size\": 64, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, "         \
    "\"max_position_embeddings\": 32"

static enum hm_status parse_config(const char *json, struct hm_model_config *c)
{
    return hm_hf_config_parse(json, strlen(json), "config.json", c);
}

static void test_config_numbers(void **state)
{
    (void)state;
    struct hm_model_config c;
    assert_int_equal(parse_config("{" LLAMA_KEYS ", \"rope_theta\": 500000.0}", &c), HM_OK);
    assert_true(c.rope_theta == 500000.0f && c.layer_norm_eps == 1e-6f);
    /* fuzz-hf-config: 1e120 became inf; a huge eps, or one in rope_parameters, the same. */
    static const char *const too_big[] = {
        "{" LLAMA_KEYS ", \"rope_theta\": 1e120}",
        "{" LLAMA_KEYS ", \"rms_norm_eps\": 3.5e38}",
        "{" LLAMA_KEYS ", \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 1e39}}",
    };
    for (size_t i = 0; i < HM_ARRAY_LEN(too_big); i++) {
        assert_int_equal(parse_config(too_big[i], &c), HM_ERR_FORMAT);
        assert_non_null(strstr(hm_last_error(), "config.json: key '"));
        assert_non_null(strstr(hm_last_error(), "within the range of a float"));
    }
    /* 1e-50 is positive as a double and 0 as a float. */
    assert_int_equal(parse_config("{" LLAMA_KEYS ", \"rms_norm_eps\": 1e-50}", &c), HM_ERR_FORMAT);
    assert_non_null(strstr(hm_last_error(), "config.json: layer_norm_eps and rope_theta"));
    /* Our own validation refuses what is not finite, whatever filled the config in. */
    assert_int_equal(parse_config("{" LLAMA_KEYS "}", &c), HM_OK);
    c.rope_theta = INFINITY;
    assert_int_equal(hm_config_validate(&c), HM_ERR_FORMAT);
}

static void test_index(void **state)
{
    (void)state;
    const char *json = "{\"weight_map\": {\"a\": \"s1.safetensors\", \"b\": \"s2.safetensors\", "
                       "\"c\": \"s1.safetensors\"}}";
    struct hm_hf_shard_names s;
    assert_int_equal(hm_hf_index_parse(json, strlen(json), "index.json", &s), HM_OK);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.names[0], "s1.safetensors");
    assert_string_equal(s.names[1], "s2.safetensors");
    hm_hf_shard_names_free(&s);
    static const char *const bad[] = {
        "{\"weight_map\": {\"a\": \"../x.safetensors\"}}", "{\"weight_map\": {\"a\": \"\"}}",
        "{\"weight_map\": {\"a\": 1}}", "{\"weight_map\": []}", "{\"weight_map\": {\"a\": \"x\","};
    for (size_t i = 0; i < HM_ARRAY_LEN(bad); i++) {
        assert_int_equal(hm_hf_index_parse(bad[i], strlen(bad[i]), "index.json", &s),
                         HM_ERR_FORMAT);
        assert_non_null(strstr(hm_last_error(), "index.json: "));
        assert_int_equal(s.n, 0);
        assert_null(s.names);
    }
}

static void test_names(void **state)
{
    (void)state;
    char ours[128];
    assert_true(hm_name_from_hf("model.layers.7.mlp.up_proj.weight", ours, sizeof ours));
    assert_string_equal(ours, "layers.7.feed_forward.up_proj.weight");
    assert_true(hm_name_from_hf("model.layers.0.self_attn.q_proj.bias", ours, sizeof ours));
    assert_string_equal(ours, "layers.0.attention.q_proj.bias");
    /* fuzz-hf-names: "07" mapped to layer 7, whose HF name is "model.layers.7...". */
    assert_false(hm_name_from_hf("model.layers.07.mlp.up_proj.weight", ours, sizeof ours));
    assert_false(hm_name_from_hf("model.layers.00.mlp.up_proj.weight", ours, sizeof ours));
    assert_false(hm_name_to_hf("layers.01.feed_forward.up_proj.weight", ours, sizeof ours));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_numbers),
        cmocka_unit_test(test_index),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
