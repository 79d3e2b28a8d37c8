/*
 * test-generate.c - generation over the KV cache (gen.h, model.h).
 *
 * Parity: at every step, the logits of the cached path (one prefill graph, then one-token decode
 * graphs writing into the cache) equal, within 1e-5, the last-position logits of a fresh full
 * forward over the whole context. The recompute path is hm_model_build_train_graph(1, L) run
 * forward only (dropout off, targets ignored): no cache, no kv_write, no last-row slice, the full
 * (L, V) logits. It runs for GPT-style (GELU, biases, tied), LLaMA-style GQA (SwiGLU, untied) and
 * multi-query (NKV = 1, untied, biases) models, from prompts of length 1 and longer, up to a full
 * max_seq_len context. Then hm_generate end to end (greedy agrees with the recompute path, stop
 * reasons, cache size, no allocation per decode step), and a tiny model trained here to memorise
 * a sentence must reproduce it greedily from its first character.
 */
#include "testutil.h"

#include "hermes/gen.h"
#include "hermes/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-5f

static struct hm_model_config cfg_gpt(void)
{
    return tu_model_cfg(97, 20, 64, 2, 4, 4, 128, HM_ACT_GELU, true, true, 10000.0f);
}
static struct hm_model_config cfg_llama_gqa(void)
{
    return tu_model_cfg(101, 24, 48, 2, 6, 2, 80, HM_ACT_SWIGLU, false, false, 10000.0f);
}
static struct hm_model_config cfg_mqa(void)
{
    return tu_model_cfg(67, 12, 32, 3, 2, 1, 64, HM_ACT_GELU, true, false, 500000.0f);
}

/* The recompute path: last-position logits of a full forward over ids[0..L). */
static void full_logits(struct hm_model *m, const int32_t *ids, int L, float *out)
{
    int V = hm_model_config(m)->vocab_size;
    float *all = malloc((size_t)L * V * sizeof *all);
    tu_full_logits(m, ids, L, all);
    memcpy(out, all + (size_t)(L - 1) * V, (size_t)V * sizeof *out);
    free(all);
}

static float max_abs_diff(const float *a, const float *b, int n)
{
    float d = 0;
    for (int i = 0; i < n; i++) {
        assert_true(isfinite(a[i]) && isfinite(b[i]));
        d = fmaxf(d, fabsf(a[i] - b[i]));
    }
    return d;
}

static int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* Prefill P random tokens, then decode random tokens until the context holds max_seq_len; compare
 * every step with the recompute path. Returns the worst difference seen. */
static float parity_run(const struct hm_model_config *cfg, int P, uint32_t seed)
{
    struct hm_backend *be;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    struct hm_model *m = tu_random_model(be, cfg, seed);
    int V = cfg->vocab_size, S = cfg->max_seq_len;
    struct hm_kv_cache *kc;
    struct hm_infer_graph pre, dec;
    assert_int_equal(hm_kv_cache_new(m, S, &kc), HM_OK);
    assert_int_equal(hm_model_build_infer_graph(m, kc, P, &pre), HM_OK);
    assert_int_equal(hm_model_build_infer_graph(m, kc, 1, &dec), HM_OK);
    int32_t *ids = malloc((size_t)S * sizeof *ids);
    float *kv = malloc((size_t)V * sizeof *kv), *full = malloc((size_t)V * sizeof *full);
    for (int i = 0; i < S; i++)
        ids[i] = (int32_t)(tu_lcg(&seed) % (uint32_t)V);
    float worst = 0;
    assert_int_equal(hm_infer_run(&pre, ids, 0), HM_OK);
    assert_int_equal(hm_tensor_get(pre.logits, kv, (size_t)V * sizeof *kv), HM_OK);
    for (int n = P;; n++) {
        full_logits(m, ids, n, full);
        float d = max_abs_diff(kv, full, V);
        if (d > TOL)
            fail_msg("%s, prompt %d: context %d: KV-cache logits differ from recompute by %g", cfg->name, P, n, d);
        worst = fmaxf(worst, d);
        if (n == S)
            break;
        assert_int_equal(hm_infer_run(&dec, &ids[n], n), HM_OK); /* feeds position n */
        assert_int_equal(hm_tensor_get(dec.logits, kv, (size_t)V * sizeof *kv), HM_OK);
    }
    /* The cache is full: one more position is an error, not a wrap or a crash. */
    assert_int_not_equal(hm_infer_run(&dec, &ids[0], S), HM_OK);
    free(ids), free(kv), free(full);
    hm_infer_graph_free(&pre);
    hm_infer_graph_free(&dec);
    hm_kv_cache_free(kc);
    hm_model_free(m);
    hm_backend_free(be);
    return worst;
}

static void parity(const struct hm_model_config *cfg, const char *name)
{
    struct hm_model_config c = *cfg;
    snprintf(c.name, sizeof c.name, "%s", name);
    float worst = 0;
    int prompts[] = {1, 2, 7, c.max_seq_len};
    for (size_t i = 0; i < sizeof prompts / sizeof *prompts; i++)
        worst = fmaxf(worst, parity_run(&c, prompts[i], 100u + (uint32_t)i));
    printf("  %s: worst |KV - recompute| over all steps %.2e\n", name, worst);
}

static void test_parity_gpt(void **state)
{
    struct hm_model_config c = cfg_gpt();
    parity(&c, "gpt (gelu, biases, tied)");
}

static void test_parity_llama_gqa(void **state)
{
    struct hm_model_config c = cfg_llama_gqa();
    c.layer_norm_eps = 1e-6f;
    parity(&c, "llama (swiglu, gqa 6/2, untied)");
}

static void test_parity_mqa(void **state)
{
    struct hm_model_config c = cfg_mqa();
    parity(&c, "mqa (gelu, biases, 2/1 heads, untied, theta 5e5)");
}

/* ---- hm_generate end to end ------------------------------------------------------------------ */

struct collect {
    int32_t ids[512];
    int n;
};

static bool collect(int32_t id, void *user)
{
    struct collect *c = user;
    c->ids[c->n++] = id;
    return true;
}

static struct hm_sampler *greedy(int V)
{
    struct hm_sampler_opts o = {0.0f, 0, 1.0f, 1.0f, 1};
    struct hm_sampler *s;
    assert_int_equal(hm_sampler_new(V, &o, &s), HM_OK);
    return s;
}

/* Greedy hm_generate (KV cache) picks the same tokens as greedy decoding by full recompute, runs
 * until the context is full, and says so. */
static void test_generate_matches_recompute_to_full_context(void **state)
{
    struct hm_model_config cfg = cfg_llama_gqa();
    struct hm_backend *be;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    struct hm_model *m = tu_random_model(be, &cfg, 7);
    int V = cfg.vocab_size, S = cfg.max_seq_len;
    struct hm_sampler *s = greedy(V);
    struct hm_generate_opts go = {1000, -1};
    struct hm_generate_stats gs;
    struct collect got = {.n = 0};
    int32_t prompt[1] = {5};
    assert_int_equal(hm_generate(m, prompt, 1, &go, s, collect, &got, &gs), HM_OK);
    /* Every token is predicted from at most S positions: S new tokens after a 1-token prompt. */
    assert_int_equal(gs.new_tokens, S);
    assert_int_equal(got.n, S);
    assert_int_equal(gs.stop, HM_STOP_CONTEXT_FULL);
    assert_int_equal(gs.decode_steps, S - 1);
    assert_int_equal(gs.kv_cache_bytes, hm_config_kv_cache_bytes(&cfg, S, 4));
    int32_t ctx[64] = {5};
    float *full = malloc((size_t)V * sizeof *full);
    for (int n = 1; n <= S; n++) {
        full_logits(m, ctx, n, full);
        ctx[n] = argmax(full, V);
        assert_int_equal(got.ids[n - 1], ctx[n]);
    }
    free(full);
    hm_sampler_free(s);
    hm_model_free(m);
    hm_backend_free(be);
}

static void test_generate_limits(void **state)
{
    struct hm_model_config cfg = cfg_gpt();
    struct hm_backend *be;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    struct hm_model *m = tu_random_model(be, &cfg, 9);
    int V = cfg.vocab_size, S = cfg.max_seq_len;
    struct hm_sampler *s = greedy(V);
    int32_t prompt[64];
    for (int i = 0; i < 64; i++)
        prompt[i] = (int32_t)(i * 31 % V);
    struct hm_generate_stats gs;
    struct collect got;

    /* A prompt filling the context still gets its one next token, then stops with a note. */
    struct hm_generate_opts go = {5, -1};
    got.n = 0;
    assert_int_equal(hm_generate(m, prompt, S, &go, s, collect, &got, &gs), HM_OK);
    assert_int_equal(gs.new_tokens, 1);
    assert_int_equal(gs.stop, HM_STOP_CONTEXT_FULL);
    go.max_new_tokens = 1;
    assert_int_equal(hm_generate(m, prompt, S, &go, s, NULL, NULL, &gs), HM_OK);
    assert_int_equal(gs.new_tokens, 1);
    assert_int_equal(gs.stop, HM_STOP_MAX_TOKENS);

    /* Exactly max_new_tokens, and a cache of exactly the positions fed (prompt + new - 1). */
    go.max_new_tokens = 4;
    got.n = 0;
    assert_int_equal(hm_generate(m, prompt, 3, &go, s, collect, &got, &gs), HM_OK);
    assert_int_equal(gs.new_tokens, 4);
    assert_int_equal(got.n, 4);
    assert_int_equal(gs.stop, HM_STOP_MAX_TOKENS);
    assert_int_equal(gs.prompt_tokens, 3);
    assert_int_equal(gs.kv_cache_bytes, hm_config_kv_cache_bytes(&cfg, 3 + 4 - 1, 4));

    /* eos stops before it is emitted. */
    struct hm_generate_opts ge = {10, got.ids[1]};
    struct collect got2 = {.n = 0};
    assert_int_equal(hm_generate(m, prompt, 3, &ge, s, collect, &got2, &gs), HM_OK);
    assert_int_equal(gs.stop, HM_STOP_EOS);
    assert_int_equal(got2.n, 1);
    assert_int_equal(got2.ids[0], got.ids[0]);

    /* Bad input is a status with a message, never a crash. */
    assert_int_equal(hm_generate(m, prompt, 0, &go, s, NULL, NULL, &gs), HM_ERR_USAGE);
    assert_non_null(strstr(hm_last_error(), "empty"));
    assert_int_equal(hm_generate(m, prompt, S + 1, &go, s, NULL, NULL, &gs), HM_ERR_USAGE);
    assert_non_null(strstr(hm_last_error(), "max_seq_len"));
    int32_t bad[2] = {1, V};
    assert_int_equal(hm_generate(m, bad, 2, &go, s, NULL, NULL, &gs), HM_ERR_MISMATCH);
    hm_sampler_free(s);
    hm_model_free(m);
    hm_backend_free(be);
}

/* An inference model has no gradient block, and a decode step allocates nothing. */
static void test_inference_model_is_lean(void **state)
{
    struct hm_model_config cfg = cfg_gpt();
    struct hm_backend *be;
    struct hm_model *m;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    assert_int_equal(hm_model_new_infer(&cfg, be, &m), HM_OK);
    assert_null(hm_block_grads(hm_model_params(m)));
    struct hm_train_graph tg;
    assert_int_equal(hm_model_build_train_graph(m, 1, 4, &tg), HM_ERR_USAGE);
    assert_int_equal(hm_model_init_weights(m, 3), HM_OK);
    struct hm_kv_cache *kc;
    struct hm_infer_graph dec;
    assert_int_equal(hm_kv_cache_new(m, 8, &kc), HM_OK);
    assert_int_equal(hm_model_build_infer_graph(m, kc, 1, &dec), HM_OK);
    int32_t id = 3;
    assert_int_equal(hm_infer_run(&dec, &id, 0), HM_OK);
    uint64_t before = hm_alloc_count();
    for (int p = 1; p < 8; p++)
        assert_int_equal(hm_infer_run(&dec, &id, p), HM_OK);
    assert_int_equal(hm_alloc_count(), before);
    hm_infer_graph_free(&dec);
    hm_kv_cache_free(kc);
    hm_model_free(m);
    hm_backend_free(be);
}

/* ---- memorisation ---------------------------------------------------------------------------- */

static const char TEXT[] = "hermes carried the message over seven hills, then home again.";

static void test_memorised_text_comes_back_greedily(void **state)
{
    /* Character-level vocabulary of the text's distinct bytes. */
    int map[256], V = 0;
    char chars[256];
    memset(map, -1, sizeof map);
    int n = (int)strlen(TEXT);
    int32_t ids[128];
    for (int i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)TEXT[i];
        if (map[ch] < 0) {
            map[ch] = V;
            chars[V++] = (char)ch;
        }
        ids[i] = map[ch];
    }
    /* nano-sized: hidden 64, 2 layers, 2 heads, FFN 256; no dropout so 300 steps are enough. */
    struct hm_model_config cfg = tu_model_cfg(V, 64, 64, 2, 2, 2, 256, HM_ACT_GELU, true, true, 10000.0f);
    cfg.dropout = 0.0f;
    struct hm_backend *be;
    struct hm_model *m;
    tu_cpu_model(&cfg, 11, &be, &m);
    int T = n - 1;
    struct hm_train_graph tg;
    assert_int_equal(hm_model_build_train_graph(m, 1, T, &tg), HM_OK);
    assert_int_equal(hm_tensor_set(tg.ids, ids, (size_t)T * sizeof *ids), HM_OK);
    assert_int_equal(hm_tensor_set(tg.targets, ids + 1, (size_t)T * sizeof *ids), HM_OK);
    struct hm_adamw_config ac = hm_adamw_defaults();
    ac.weight_decay = 0.0f;
    struct hm_optimizer *opt;
    assert_int_equal(hm_optimizer_new(m, &ac, &opt), HM_OK);
    float loss = 0;
    double gnorm;
    for (int step = 0; step < 300; step++) {
        assert_int_equal(hm_buffer_zero(hm_block_grads(hm_model_params(m))), HM_OK);
        assert_int_equal(hm_graph_forward(tg.graph), HM_OK);
        assert_int_equal(hm_graph_backward(tg.graph), HM_OK);
        assert_int_equal(hm_optimizer_step(opt, 3e-3f, &gnorm), HM_OK);
        assert_int_equal(hm_tensor_get(tg.loss, &loss, sizeof loss), HM_OK);
    }
    printf("  memorised %d characters (V = %d), final loss %.4f\n", n, V, loss);
    assert_true(loss < 0.05f);

    struct hm_sampler *s = greedy(V);
    struct hm_generate_opts go = {n - 1, -1};
    struct hm_generate_stats gs;
    struct collect got = {.n = 0};
    assert_int_equal(hm_generate(m, ids, 1, &go, s, collect, &got, &gs), HM_OK);
    char out[128];
    out[0] = chars[ids[0]];
    for (int i = 0; i < got.n; i++)
        out[i + 1] = chars[got.ids[i]];
    out[got.n + 1] = 0;
    printf("  greedy from '%c': %s\n", out[0], out);
    assert_string_equal(out, TEXT);
    hm_sampler_free(s);
    hm_optimizer_free(opt);
    hm_train_graph_free(&tg);
    hm_model_free(m);
    hm_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parity_gpt),
        cmocka_unit_test(test_parity_llama_gqa),
        cmocka_unit_test(test_parity_mqa),
        cmocka_unit_test(test_generate_matches_recompute_to_full_context),
        cmocka_unit_test(test_generate_limits),
        cmocka_unit_test(test_inference_model_is_lean),
        cmocka_unit_test(test_memorised_text_comes_back_greedily),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
