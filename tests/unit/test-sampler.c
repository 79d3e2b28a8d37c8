/* test-sampler.c - top-k keeps exactly k, top-p the smallest set reaching p, the sign-aware
 * repetition penalty, seeded determinism, temperature 0 as the argmax, and plain sampling (no
 * top-k/top-p, no sort) drawing each id with its softmax probability at temperature T. */
#include "testutil.h"

#include "hermes/gen.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { V = 1000 };

static void make_logits(float *l, unsigned seed)
{
    srand(seed);
    for (int i = 0; i < V; i++)
        l[i] = (float)rand() / RAND_MAX * 8.0f - 4.0f;
}

static struct hm_sampler *sampler(float temp, int k, float p, float rep, uint64_t seed)
{
    struct hm_sampler_opts o = {temp, k, p, rep, seed};
    struct hm_sampler *s;
    assert_int_equal(hm_sampler_new(V, &o, &s), HM_OK);
    return s;
}

static void test_greedy_is_argmax(void **state)
{
    float l[V];
    make_logits(l, 1);
    int best = 0;
    for (int i = 1; i < V; i++)
        if (l[i] > l[best])
            best = i;
    struct hm_sampler *s = sampler(0.0f, 0, 1.0f, 1.0f, 7);
    assert_int_equal(hm_sampler_sample(s, l, NULL, 0), best);
    hm_sampler_free(s);
    /* Ties go to the lowest id. */
    for (int i = 0; i < V; i++)
        l[i] = 0;
    l[17] = l[42] = 3;
    s = sampler(0.0f, 0, 1.0f, 1.0f, 7);
    assert_int_equal(hm_sampler_sample(s, l, NULL, 0), 17);
    hm_sampler_free(s);
}

static void test_top_k_exact(void **state)
{
    float l[V], c[V];
    make_logits(l, 2);
    /* The 5 largest ids: everything sampled must be one of them, and 5 candidates were kept. */
    int order[V];
    for (int i = 0; i < V; i++)
        order[i] = i;
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < V; j++)
            if (l[order[j]] > l[order[i]]) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    struct hm_sampler *s = sampler(1.0f, 5, 1.0f, 1.0f, 3);
    int hits[5] = {0};
    for (int n = 0; n < 2000; n++) {
        memcpy(c, l, sizeof l);
        int id = hm_sampler_sample(s, c, NULL, 0);
        assert_int_equal(hm_sampler_last_candidates(s), 5);
        int found = -1;
        for (int i = 0; i < 5; i++)
            if (order[i] == id)
                found = i;
        assert_true(found >= 0);
        hits[found]++;
    }
    for (int i = 0; i < 5; i++)
        assert_true(hits[i] > 0); /* each of the k is reachable */
    hm_sampler_free(s);
}

static void test_top_p_smallest_set(void **state)
{
    /* Probabilities 0.5, 0.3, 0.15, 0.05 (others ~0): p = 0.8 keeps exactly {0,1}; p = 0.81 adds 2. */
    float base[V];
    for (int i = 0; i < V; i++)
        base[i] = -1e4f;
    base[10] = logf(0.5f), base[11] = logf(0.3f), base[12] = logf(0.15f), base[13] = logf(0.05f);
    float l[V];
    struct hm_sampler *s = sampler(1.0f, 0, 0.8f, 1.0f, 5);
    for (int n = 0; n < 500; n++) {
        memcpy(l, base, sizeof l);
        int id = hm_sampler_sample(s, l, NULL, 0);
        assert_true(id == 10 || id == 11);
        assert_int_equal(hm_sampler_last_candidates(s), 2);
    }
    hm_sampler_free(s);
    s = sampler(1.0f, 0, 0.81f, 1.0f, 5);
    memcpy(l, base, sizeof l);
    hm_sampler_sample(s, l, NULL, 0);
    assert_int_equal(hm_sampler_last_candidates(s), 3);
    hm_sampler_free(s);
    /* A flat distribution defeats the 20-nat window shortcut: the full sort must still be exact. */
    for (int i = 0; i < V; i++)
        base[i] = 0.0f;
    s = sampler(1.0f, 0, 0.5f, 1.0f, 5);
    memcpy(l, base, sizeof l);
    hm_sampler_sample(s, l, NULL, 0);
    assert_int_equal(hm_sampler_last_candidates(s), V / 2);
    hm_sampler_free(s);
}

static void test_repetition_penalty_sign_aware(void **state)
{
    float l[V];
    for (int i = 0; i < V; i++)
        l[i] = -100;
    l[1] = 2.0f;  /* positive: divided */
    l[2] = -2.0f; /* negative: multiplied (pushed further down) */
    l[3] = 1.5f;
    int32_t hist[] = {1, 2, 1};
    struct hm_sampler *s = sampler(0.0f, 0, 1.0f, 2.0f, 1);
    assert_int_equal(hm_sampler_sample(s, l, hist, 3), 3); /* 2/2 = 1 < 1.5 */
    assert_true(l[1] == 1.0f);                            /* penalised once, not per occurrence */
    assert_true(l[2] == -4.0f);
    hm_sampler_free(s);
}

static void test_seeded_determinism(void **state)
{
    float l[V], c[V];
    make_logits(l, 4);
    int a[64], b[64], d[64];
    struct hm_sampler *s1 = sampler(0.9f, 50, 0.95f, 1.1f, 123), *s2 = sampler(0.9f, 50, 0.95f, 1.1f, 123),
                      *s3 = sampler(0.9f, 50, 0.95f, 1.1f, 124);
    for (int i = 0; i < 64; i++) {
        memcpy(c, l, sizeof l);
        a[i] = hm_sampler_sample(s1, c, NULL, 0);
        memcpy(c, l, sizeof l);
        b[i] = hm_sampler_sample(s2, c, NULL, 0);
        memcpy(c, l, sizeof l);
        d[i] = hm_sampler_sample(s3, c, NULL, 0);
    }
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, d, sizeof a);
    hm_sampler_free(s1), hm_sampler_free(s2), hm_sampler_free(s3);
}

static void test_plain_sampling_frequencies(void **state)
{
    /* At T = 2, logits 2 log(0.5), 2 log(0.3), 2 log(0.2) give probabilities 0.5, 0.3, 0.2. */
    float base[V], l[V];
    for (int i = 0; i < V; i++)
        base[i] = -1e4f;
    base[900] = 2 * logf(0.5f), base[3] = 2 * logf(0.3f), base[500] = 2 * logf(0.2f);
    struct hm_sampler *s = sampler(2.0f, 0, 1.0f, 1.0f, 99);
    int hits[3] = {0}, N = 20000;
    for (int n = 0; n < N; n++) {
        memcpy(l, base, sizeof l);
        int id = hm_sampler_sample(s, l, NULL, 0);
        assert_int_equal(hm_sampler_last_candidates(s), V);
        assert_true(id == 900 || id == 3 || id == 500);
        hits[id == 900 ? 0 : id == 3 ? 1 : 2]++;
    }
    assert_true(fabs(hits[0] / (double)N - 0.5) < 0.02);
    assert_true(fabs(hits[1] / (double)N - 0.3) < 0.02);
    assert_true(fabs(hits[2] / (double)N - 0.2) < 0.02);
    hm_sampler_free(s);
}

static void test_bad_options(void **state)
{
    struct hm_sampler *s;
    struct hm_sampler_opts o = {-1.0f, 0, 1.0f, 1.0f, 0};
    assert_int_equal(hm_sampler_new(V, &o, &s), HM_ERR_USAGE);
    o = (struct hm_sampler_opts){1.0f, 0, 0.0f, 1.0f, 0};
    assert_int_equal(hm_sampler_new(V, &o, &s), HM_ERR_USAGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_is_argmax),
        cmocka_unit_test(test_top_k_exact),
        cmocka_unit_test(test_top_p_smallest_set),
        cmocka_unit_test(test_repetition_penalty_sign_aware),
        cmocka_unit_test(test_seeded_determinism),
        cmocka_unit_test(test_plain_sampling_frequencies),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
