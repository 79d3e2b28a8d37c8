/*
 * test-param-roles.c - every parameter carries a role (model.h), and initialisation follows the
 * role, not the tensor's name: norm gains 1, biases 0 (a bias on a norm included, whatever its
 * name), matrices N(0, 0.02), residual projections narrower by 1/sqrt(2L).
 */
#include "testutil.h"

#include "hermes/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double stddev(const float *p, int64_t n)
{
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++)
        s += p[i], s2 += (double)p[i] * p[i];
    return sqrt(s2 / (double)n - (s / (double)n) * (s / (double)n));
}

static void check_model(bool bias, bool tied, enum hm_activation act)
{
    struct hm_model_config c;
    assert_int_equal(hm_config_preset("nano", &c), HM_OK);
    c.vocab_size = 300, c.use_bias = bias, c.tie_embeddings = tied, c.activation = act;
    struct hm_backend *be;
    struct hm_model *m;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    assert_int_equal(hm_model_new(&c, be, &m), HM_OK);
    assert_int_equal(hm_model_init_weights(m, 7), HM_OK);
    struct hm_block *blk = hm_model_params(m);
    int counts[HM_PARAM_BIAS + 1] = {0};
    for (int i = 0; i < hm_block_n_tensors(blk); i++) {
        struct hm_tensor *t = hm_block_tensor(blk, i);
        enum hm_param_role r = hm_model_param_role(m, i);
        assert_true(r > HM_PARAM_UNKNOWN && r <= HM_PARAM_BIAS);
        counts[r]++;
        int64_t n = hm_nelements(t);
        float *v = malloc((size_t)n * sizeof *v);
        assert_int_equal(hm_tensor_get(t, v, (size_t)n * sizeof *v), HM_OK);
        if (r == HM_PARAM_NORM_GAIN || r == HM_PARAM_BIAS) {
            for (int64_t j = 0; j < n; j++)
                assert_true(v[j] == (r == HM_PARAM_NORM_GAIN ? 1.0f : 0.0f));
        } else {
            double want = 0.02 / (r == HM_PARAM_RESIDUAL_MATRIX ? sqrt(2.0 * c.num_layers) : 1.0);
            assert_true(fabs(stddev(v, n) - want) < 0.1 * want);
        }
        free(v);
    }
    int L = c.num_layers, ffn = act == HM_ACT_SWIGLU ? 3 : 2; /* gate?, up, down */
    assert_int_equal(counts[HM_PARAM_EMBEDDING], 1);
    assert_int_equal(counts[HM_PARAM_HEAD], tied ? 0 : 1);
    assert_int_equal(counts[HM_PARAM_MATRIX], L * (3 + ffn - 1)); /* q, k, v, gate?, up */
    assert_int_equal(counts[HM_PARAM_RESIDUAL_MATRIX], 2 * L);
    assert_int_equal(counts[HM_PARAM_NORM_GAIN], 2 * L + 1);
    assert_int_equal(counts[HM_PARAM_BIAS], bias ? L * (4 + ffn) : 0);
    assert_int_equal(hm_model_param_role(m, -1), HM_PARAM_UNKNOWN);
    assert_int_equal(hm_model_param_role(m, hm_block_n_tensors(blk)), HM_PARAM_UNKNOWN);
    hm_model_free(m);
    hm_backend_free(be);
}

static void test_roles_gpt(void **state)
{
    check_model(true, true, HM_ACT_GELU);
}

static void test_roles_llama(void **state)
{
    check_model(false, false, HM_ACT_SWIGLU);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roles_gpt),
        cmocka_unit_test(test_roles_llama),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
