/*
 * test-gen-threads.c - samplers and generations running in several threads at once, each with its
 * own state, give exactly what the same work gives run one after another in one thread (gen.h).
 * Every thread has its own logits and seed, so a sampler that kept state outside itself (the sort
 * once read its logits through a file-scope pointer) would order one thread's candidates by
 * another's logits and draw other tokens.
 */
#include "testutil.h"

#include "hermes/gen.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N_THREADS = 4, V = 503, DRAWS = 3000, NEW_TOKENS = 24 };

struct sample_job {
    unsigned seed;
    hm_token out[DRAWS];
};

/* Logits that differ per job, with many near-ties so the sort order matters. */
static void job_logits(float *l, unsigned seed, int draw)
{
    uint32_t s = seed * 2654435761u + (uint32_t)draw * 40503u;
    for (int i = 0; i < V; i++) {
        s = s * 1664525u + 1013904223u;
        l[i] = (float)((s >> 8) % 200) / 20.0f;
    }
}

static void *run_sampler(void *arg)
{
    struct sample_job *j = arg;
    struct hm_sampler_opts o = hm_sampler_opts_default();
    o.temperature = 1.0f, o.top_k = 40, o.top_p = 0.9f, o.seed = j->seed;
    struct hm_sampler *s;
    if (hm_sampler_new(V, &o, &s) != HM_OK)
        return NULL;
    float l[V];
    for (int d = 0; d < DRAWS; d++) {
        job_logits(l, j->seed, d);
        j->out[d] = hm_sampler_sample(s, l, NULL, 0);
    }
    hm_sampler_free(s);
    return NULL;
}

static void test_samplers_in_threads(void **state)
{
    static struct sample_job alone[N_THREADS], together[N_THREADS];
    for (int t = 0; t < N_THREADS; t++) {
        alone[t].seed = together[t].seed = 11 + (unsigned)t;
        run_sampler(&alone[t]);
    }
    pthread_t th[N_THREADS];
    for (int t = 0; t < N_THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, run_sampler, &together[t]), 0);
    for (int t = 0; t < N_THREADS; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < N_THREADS; t++)
        assert_memory_equal(alone[t].out, together[t].out, sizeof alone[t].out);
}

struct gen_job {
    struct hm_model *model;
    uint64_t seed;
    enum hm_status st;
    int n;
    hm_token out[NEW_TOKENS];
};

static bool collect(hm_token id, void *user)
{
    struct gen_job *j = user;
    j->out[j->n++] = id;
    return true;
}

static void *run_generation(void *arg)
{
    struct gen_job *j = arg;
    struct hm_sampler_opts o = hm_sampler_opts_default();
    o.temperature = 1.0f, o.top_k = 20, o.top_p = 0.95f, o.repetition_penalty = 1.3f, o.seed = j->seed;
    struct hm_sampler *s;
    if ((j->st = hm_sampler_new(hm_model_config(j->model)->vocab_size, &o, &s)) != HM_OK)
        return NULL;
    struct hm_generate_opts g = hm_generate_opts_default();
    g.max_new_tokens = NEW_TOKENS;
    const hm_token prompt[] = {5, 17, 3, (hm_token)(j->seed % 90)};
    struct hm_generate_stats stats;
    j->st = hm_generate(j->model, prompt, 4, &g, s, collect, j, &stats);
    hm_sampler_free(s);
    return NULL;
}

static void test_generations_in_threads(void **state)
{
    struct hm_model_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.name, sizeof c.name, "threads");
    c.vocab_size = 97, c.max_seq_len = 32, c.hidden_size = 64, c.num_layers = 2, c.num_heads = 4;
    c.num_kv_heads = 2, c.intermediate_size = 128, c.layer_norm_eps = 1e-5f, c.rope_theta = 10000.0f;
    c.activation = HM_ACT_SWIGLU;
    struct hm_backend *be;
    struct hm_model *m;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    assert_int_equal(hm_model_new(&c, be, &m), HM_OK);
    assert_int_equal(hm_model_init_weights(m, 3), HM_OK);
    static struct gen_job alone[N_THREADS], together[N_THREADS];
    for (int t = 0; t < N_THREADS; t++) {
        alone[t] = (struct gen_job){.model = m, .seed = 100 + (uint64_t)t};
        together[t] = alone[t];
        run_generation(&alone[t]);
        assert_int_equal(alone[t].st, HM_OK);
        assert_int_equal(alone[t].n, NEW_TOKENS);
    }
    pthread_t th[N_THREADS];
    for (int t = 0; t < N_THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, run_generation, &together[t]), 0);
    for (int t = 0; t < N_THREADS; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < N_THREADS; t++) {
        assert_int_equal(together[t].st, HM_OK);
        assert_int_equal(together[t].n, NEW_TOKENS);
        assert_memory_equal(alone[t].out, together[t].out, sizeof alone[t].out);
    }
    hm_model_free(m);
    hm_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_samplers_in_threads),
        cmocka_unit_test(test_generations_in_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
