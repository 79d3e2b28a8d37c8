/*
 * test-train.c - the training loop: real gradient accumulation (4 x B/4 == 1 x B), global-norm
 * clipping against an independent norm, exact resume after an interrupt (bit-identical losses and
 * weights), and NaN detection that leaves the last checkpoint intact.
 */
#include "testutil.h"

#include "hermes/interrupt.h"
#include "hermes/metrics.h"
#include "hermes/safetensors.h"
#include "hermes/train.h"
#include "util/util.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { V = 61, N_TOKENS = 6000 };

static struct hm_model_config small_config(float dropout)
{
    struct hm_model_config c;
    assert_int_equal(hm_config_preset("nano", &c), HM_OK);
    c.vocab_size = V;
    c.hidden_size = 32;
    c.num_heads = 2;
    c.num_kv_heads = 1;
    c.intermediate_size = 48;
    c.max_seq_len = 32;
    c.dropout = dropout;
    return c;
}

/* A learnable stream: a noisy repeating pattern. */
static void write_tokens(const char *path)
{
    hm_token *ids = malloc(N_TOKENS * 4);
    struct hm_rng r;
    hm_rng_seed(&r, 5);
    for (int i = 0; i < N_TOKENS; i++)
        ids[i] = hm_rng_uniform(&r) < 0.1 ? (hm_token)hm_rng_below(&r, V) : (hm_token)((i * 7) % V);
    assert_int_equal(hm_token_cache_write(path, 1, V, ids, N_TOKENS), HM_OK);
    free(ids);
}

static struct hm_train_opts base_opts(const char *out)
{
    struct hm_train_opts o = {
        .output_dir = out, .batch_size = 8, .seq_len = 16, .stride = 16, .grad_accum = 1, .epochs = 2,
        .max_steps = 0, .seed = 42, .val_split = 0.05, .adamw = hm_adamw_defaults(), .log_every = 1,
        .eval_every = 10, .eval_batches = 2, .save_every = 0, .save_dtype = HM_SAVE_F32,
    };
    o.lr = (struct hm_lr_schedule){HM_LR_COSINE, 3e-3, 3e-4, 5, 0, 0};
    return o;
}

struct run {
    struct hm_backend *be;
    struct hm_model *m;
    struct hm_token_cache tok;
};

static void run_open(struct run *r, const char *tokens, float dropout)
{
    struct hm_model_config c = small_config(dropout);
    assert_int_equal(hm_backend_cpu_new(&r->be), HM_OK);
    assert_int_equal(hm_model_new(&c, r->be, &r->m), HM_OK);
    assert_int_equal(hm_model_init_weights(r->m, 42), HM_OK);
    bool hit;
    assert_int_equal(hm_token_cache_open(tokens, 1, &r->tok, &hit), HM_OK);
    assert_true(hit);
}

static void run_close(struct run *r)
{
    hm_token_cache_close(&r->tok);
    hm_model_free(r->m);
    hm_backend_free(r->be);
}

static float *weights(struct hm_model *m, size_t *n)
{
    size_t bytes = hm_block_nbytes(hm_model_params(m));
    float *w = malloc(bytes);
    assert_int_equal(hm_buffer_get(hm_block_data(hm_model_params(m)), 0, w, bytes), HM_OK);
    *n = bytes / 4;
    return w;
}

/* Losses of the logged steps, in order. */
static int read_losses(const char *dir, double *loss, int cap)
{
    char *p = tu_path(dir, "metrics.jsonl");
    struct hm_metrics *m;
    assert_int_equal(hm_metrics_open(p, 1L << 40, 0, &m), HM_OK);
    int n = 0;
    for (long i = 0; i < hm_metrics_count(m) && n < cap; i++)
        if (!isnan(hm_metrics_rows(m)[i].loss))
            loss[n++] = hm_metrics_rows(m)[i].loss;
    hm_metrics_free(m);
    free(p);
    return n;
}

static void test_grad_accum_equals_big_batch(void **state)
{
    char *dir = tu_mkdtemp(), *tokens = tu_path(dir, "tokens.bin");
    char *d1 = tu_path(dir, "a"), *d4 = tu_path(dir, "b");
    write_tokens(tokens);
    hm_mkdir_p(d1);
    hm_mkdir_p(d4);
    struct hm_train_opts o1 = base_opts(d1), o4 = base_opts(d4);
    o1.max_steps = o4.max_steps = 12;
    o1.batch_size = 8;
    o4.batch_size = 2;
    o4.grad_accum = 4;
    struct run r1, r4;
    run_open(&r1, tokens, 0.0f);
    run_open(&r4, tokens, 0.0f);
    struct hm_train_summary s;
    assert_int_equal(hm_train(r1.m, &r1.tok, NULL, &o1, NULL, NULL, NULL, &s), HM_OK);
    assert_int_equal(hm_train(r4.m, &r4.tok, NULL, &o4, NULL, NULL, NULL, &s), HM_OK);
    double l1[64], l4[64];
    int n1 = read_losses(d1, l1, 64), n4 = read_losses(d4, l4, 64);
    assert_int_equal(n1, 12);
    assert_int_equal(n4, 12);
    for (int i = 0; i < n1; i++)
        assert_true(fabs(l1[i] - l4[i]) < 1e-5 * fmax(1.0, fabs(l1[i])));
    size_t n;
    float *w1 = weights(r1.m, &n), *w4 = weights(r4.m, &n);
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)w1[i] - w4[i]) * ((double)w1[i] - w4[i]);
        den += (double)w1[i] * w1[i];
    }
    printf("accumulation: relative weight difference after 12 steps %.3g\n", sqrt(num / den));
    assert_true(sqrt(num / den) < 1e-5);
    free(w1), free(w4);
    run_close(&r1);
    run_close(&r4);
    tu_rmdir(dir);
    free(dir), free(tokens), free(d1), free(d4);
}

static void test_clip_norm_independent(void **state)
{
    char *dir = tu_mkdtemp(), *tokens = tu_path(dir, "tokens.bin");
    write_tokens(tokens);
    struct run r;
    run_open(&r, tokens, 0.0f);
    struct hm_train_graph tg;
    assert_int_equal(hm_model_build_train_graph(r.m, 4, 16, &tg), HM_OK);
    int32_t ids[64], tg_ids[64];
    for (int i = 0; i < 64; i++) {
        ids[i] = (int32_t)hm_token_at(&r.tok, i);
        tg_ids[i] = (int32_t)hm_token_at(&r.tok, i + 1);
    }
    struct hm_block *blk = hm_model_params(r.m);
    assert_int_equal(hm_buffer_zero(hm_block_grads(blk)), HM_OK);
    assert_int_equal(hm_tensor_set(tg.ids, ids, sizeof ids), HM_OK);
    assert_int_equal(hm_tensor_set(tg.targets, tg_ids, sizeof tg_ids), HM_OK);
    assert_int_equal(hm_graph_forward(tg.graph), HM_OK);
    assert_int_equal(hm_graph_backward(tg.graph), HM_OK);
    /* Independent norm: every parameter's gradient read back separately, summed in long double. */
    long double ss = 0;
    for (int i = 0; i < hm_block_n_tensors(blk); i++) {
        struct hm_tensor *p = hm_block_tensor(blk, i);
        size_t n = (size_t)hm_nelements(p);
        float *g = malloc(n * 4);
        assert_int_equal(hm_tensor_get(p->grad, g, n * 4), HM_OK);
        for (size_t j = 0; j < n; j++)
            ss += (long double)g[j] * g[j];
        free(g);
    }
    double want = sqrtl(ss);
    struct hm_adamw_config ac = hm_adamw_defaults();
    ac.grad_clip = (float)(want / 4); /* it must clip */
    struct hm_optimizer *opt;
    assert_int_equal(hm_optimizer_new(r.m, &ac, &opt), HM_OK);
    /* Keep the parameters and gradients: the clipped step is compared with an unclipped one on
     * gradients scaled beforehand by the same factor. */
    size_t bytes = hm_buffer_size(hm_block_data(blk));
    char *p0 = malloc(bytes), *g0 = malloc(bytes), *p1 = malloc(bytes), *p2 = malloc(bytes);
    assert_int_equal(hm_buffer_get(hm_block_data(blk), 0, p0, bytes), HM_OK);
    assert_int_equal(hm_buffer_get(hm_block_grads(blk), 0, g0, bytes), HM_OK);
    double reported;
    assert_int_equal(hm_optimizer_step(opt, 1e-3f, &reported), HM_OK);
    printf("grad norm: reported %.9g, independent %.9g\n", reported, want);
    assert_true(fabs(reported - want) <= 1e-6 * want);
    assert_int_equal(hm_buffer_get(hm_block_data(blk), 0, p1, bytes), HM_OK);
    double after; /* the gradient block is left as accumulated: clipping scaled it in the update */
    assert_int_equal(hm_optimizer_grad_norm(opt, &after), HM_OK);
    assert_true(after == reported);
    hm_optimizer_free(opt);
    struct hm_adamw_config noclip = ac;
    noclip.grad_clip = 0.0f;
    for (int pass = 0; pass < 2; pass++) { /* 0: pre-scaled gradients (same bits); 1: unscaled */
        assert_int_equal(hm_buffer_set(hm_block_data(blk), 0, p0, bytes), HM_OK);
        assert_int_equal(hm_buffer_set(hm_block_grads(blk), 0, g0, bytes), HM_OK);
        if (pass == 0)
            assert_int_equal(hm_buffer_scale(hm_block_grads(blk), 0, bytes / 4,
                                             (float)(ac.grad_clip / reported)), HM_OK);
        assert_int_equal(hm_optimizer_new(r.m, &noclip, &opt), HM_OK);
        double n2;
        assert_int_equal(hm_optimizer_step(opt, 1e-3f, &n2), HM_OK);
        hm_optimizer_free(opt);
        assert_int_equal(hm_buffer_get(hm_block_data(blk), 0, p2, bytes), HM_OK);
        if (pass == 0)
            assert_memory_equal(p1, p2, bytes);
        else
            assert_memory_not_equal(p1, p2, bytes);
    }
    free(p0), free(g0), free(p1), free(p2);
    hm_train_graph_free(&tg);
    run_close(&r);
    tu_rmdir(dir);
    free(dir), free(tokens);
}

static long stop_at;
static void stop_progress(const struct hm_train_progress *p, void *user)
{
    if (p->step == stop_at)
        raise(SIGINT);
}

static void test_resume_bit_identical(void **state)
{
    char *dir = tu_mkdtemp(), *tokens = tu_path(dir, "tokens.bin");
    char *full = tu_path(dir, "full"), *part = tu_path(dir, "part");
    write_tokens(tokens);
    hm_mkdir_p(full);
    hm_mkdir_p(part);
    struct hm_train_opts of = base_opts(full), op = base_opts(part);
    of.max_steps = op.max_steps = 30; /* crosses the epoch boundary: the order is rebuilt on resume */
    struct hm_train_summary s;
    struct run r;
    run_open(&r, tokens, 0.1f); /* dropout on: its masks must resume too */
    assert_int_equal(hm_train(r.m, &r.tok, NULL, &of, NULL, NULL, NULL, &s), HM_OK);
    size_t n;
    float *wf = weights(r.m, &n);
    run_close(&r);

    hm_interrupt_install();
    stop_at = 17;
    run_open(&r, tokens, 0.1f);
    assert_int_equal(hm_train(r.m, &r.tok, NULL, &op, NULL, stop_progress, NULL, &s), HM_ERR_INTERRUPTED);
    assert_int_equal(s.steps, 17);
    run_close(&r);
    hm_interrupt_reset();

    run_open(&r, tokens, 0.1f);
    hm_model_init_weights(r.m, 999); /* resume must overwrite these */
    op.resume = true;
    assert_int_equal(hm_train(r.m, &r.tok, NULL, &op, NULL, NULL, NULL, &s), HM_OK);
    float *wp = weights(r.m, &n);
    run_close(&r);
    assert_memory_equal(wf, wp, n * 4);

    double lf[64], lp[64];
    int nf = read_losses(full, lf, 64), np = read_losses(part, lp, 64);
    assert_int_equal(nf, 30);
    assert_int_equal(np, 30);
    assert_memory_equal(lf, lp, sizeof(double) * 30);
    /* Resuming a run with another global batch is refused, naming the reason. */
    op.batch_size = 4;
    run_open(&r, tokens, 0.1f);
    assert_int_equal(hm_train(r.m, &r.tok, NULL, &op, NULL, NULL, NULL, &s), HM_ERR_MISMATCH);
    assert_non_null(strstr(hm_last_error(), "global batch"));
    run_close(&r);
    free(wf), free(wp);
    tu_rmdir(dir);
    free(dir), free(tokens), free(full), free(part);
}

static void test_nan_stops_and_keeps_checkpoint(void **state)
{
    char *dir = tu_mkdtemp(), *tokens = tu_path(dir, "tokens.bin");
    write_tokens(tokens);
    struct hm_train_opts o = base_opts(dir);
    o.max_steps = 6;
    o.save_every = 1;
    o.lr.lr_max = 1e30; /* step 1 is saved, then the weights blow up into inf/nan */
    o.lr.warmup_steps = 0;
    o.adamw.grad_clip = 0;
    struct run r;
    run_open(&r, tokens, 0.0f);
    struct hm_train_summary s;
    enum hm_status st = hm_train(r.m, &r.tok, NULL, &o, NULL, NULL, NULL, &s);
    assert_int_equal(st, HM_ERR_NUMERIC);
    printf("nan: %s\n", hm_last_error());
    assert_non_null(strstr(hm_last_error(), "is intact"));
    run_close(&r);
    char *state_path = tu_path(dir, "state.safetensors");
    struct hm_st_file *f;
    assert_int_equal(hm_st_open(state_path, &f), HM_OK); /* readable */
    hm_st_close(f);
    tu_rmdir(dir);
    free(dir), free(tokens), free(state_path);
}

/* The step loop allocates nothing: a 24-step run makes exactly as many host allocations as a
 * 8-step run of the same setup (setup, the final save and the last evaluation are shared). */
static uint64_t allocs_for(const char *tokens, const char *dir, long steps)
{
    struct hm_train_opts o = base_opts(dir);
    o.max_steps = steps;
    o.eval_every = 0;
    o.epochs = 10;
    o.log_every = 1;
    struct run r;
    run_open(&r, tokens, 0.1f);
    struct hm_train_summary s;
    uint64_t before = hm_alloc_count();
    assert_int_equal(hm_train(r.m, &r.tok, NULL, &o, NULL, NULL, NULL, &s), HM_OK);
    uint64_t n = hm_alloc_count() - before;
    run_close(&r);
    return n;
}

static void test_step_allocates_nothing(void **state)
{
    char *dir = tu_mkdtemp(), *tokens = tu_path(dir, "tokens.bin");
    char *a = tu_path(dir, "a"), *b = tu_path(dir, "b");
    write_tokens(tokens);
    hm_mkdir_p(a);
    hm_mkdir_p(b);
    uint64_t short_run = allocs_for(tokens, a, 8), long_run = allocs_for(tokens, b, 24);
    printf("host allocations: %llu for 8 steps, %llu for 24 steps\n", (unsigned long long)short_run,
           (unsigned long long)long_run);
    assert_int_equal(short_run, long_run);
    tu_rmdir(dir);
    free(dir), free(tokens), free(a), free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_accum_equals_big_batch),
        cmocka_unit_test(test_clip_norm_independent),
        cmocka_unit_test(test_resume_bit_identical),
        cmocka_unit_test(test_nan_stops_and_keeps_checkpoint),
        cmocka_unit_test(test_step_allocates_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
