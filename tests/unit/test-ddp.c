/*
 * test-ddp.c - data-parallel gradient reduction without MPI: the bucket plan on real nano and
 * tiny training graphs (tied and untied heads) covers the gradient block exactly once, cuts only
 * at tensor boundaries, and names a ready node at or after the last backward node touching each
 * of its gradients; the executor's backward hook; shards; and, through a loopback communicator
 * that claims two ranks, that the trainer starts every bucket only once its gradients are final
 * (snapshots taken at the start still match after the backward pass) and allocates nothing per
 * step with overlap and ZeRO-1 on.
 */
#include "testutil.h"

#include "parallel/comm-impl.h"
#include "parallel/ddp.h"
#include "hermes/model.h"
#include "hermes/optim.h"
#include "hermes/train.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---------------------------------------------------------------------------------- */

struct fixture {
    struct hm_backend *be;
    struct hm_model *m;
    struct hm_train_graph tg;
};

static void fixture_open(struct fixture *f, const char *preset, bool tied, int B, int T)
{
    struct hm_model_config c;
    assert_int_equal(hm_config_preset(preset, &c), HM_OK);
    c.tie_embeddings = tied;
    c.vocab_size = 97;
    assert_int_equal(hm_backend_cpu_new(&f->be), HM_OK);
    assert_int_equal(hm_model_new(&c, f->be, &f->m), HM_OK);
    assert_int_equal(hm_model_init_weights(f->m, 3), HM_OK);
    assert_int_equal(hm_model_build_train_graph(f->m, B, T, &f->tg), HM_OK);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(B * T));
    for (int i = 0; i < B * T; i++)
        ids[i] = (i * 31 + 7) % 97;
    assert_int_equal(hm_tensor_set(f->tg.ids, ids, sizeof(int32_t) * (size_t)(B * T)), HM_OK);
    for (int i = 0; i < B * T; i++)
        ids[i] = (i * 17 + 3) % 97;
    assert_int_equal(hm_tensor_set(f->tg.targets, ids, sizeof(int32_t) * (size_t)(B * T)), HM_OK);
    free(ids);
}

static void fixture_close(struct fixture *f)
{
    hm_train_graph_free(&f->tg);
    hm_model_free(f->m);
    hm_backend_free(f->be);
}

/* Last backward node that names tensor p's gradient storage (or a view of it), -1 if none:
 * computed here from the public tensor fields, independently of ddp.c. */
static int last_touch(const struct hm_graph *g, const struct hm_tensor *p)
{
    int last = -1;
    for (int i = 0; i < hm_graph_n_nodes(g, true); i++) {
        const struct hm_tensor *n = hm_graph_node(g, true, i);
        for (int s = -1; s < HM_MAX_SRC; s++) {
            const struct hm_tensor *t = s < 0 ? n : n->src[s];
            if (t && (t == p->grad || t->view_src == p->grad))
                last = i;
        }
    }
    return last;
}

static int by_offset(const void *a, const void *b)
{
    const struct hm_grad_bucket *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Every property the trainer relies on, for one plan. */
static void check_plan(struct fixture *f, size_t bucket_bytes, size_t cut)
{
    struct hm_block *blk = hm_model_params(f->m);
    struct hm_grad_bucket *b;
    int n;
    assert_int_equal(hm_grad_buckets_plan(f->tg.graph, blk, bucket_bytes, &cut, cut ? 1 : 0, &b, &n), HM_OK);
    assert_true(n >= 1);
    for (int i = 1; i < n; i++) /* start order: by ready node */
        assert_true(b[i - 1].ready_node <= b[i].ready_node);
    struct hm_grad_bucket *s = malloc(sizeof *s * (size_t)n);
    memcpy(s, b, sizeof *s * (size_t)n);
    qsort(s, (size_t)n, sizeof *s, by_offset);
    size_t at = 0, total = hm_block_nbytes(blk) / sizeof(float);
    int next_tensor = 0;
    for (int i = 0; i < n; i++) {
        assert_int_equal(s[i].offset, at); /* contiguous: every element exactly once */
        assert_int_equal(s[i].first, next_tensor);
        assert_true(s[i].count >= 1);
        size_t elems = 0;
        for (int k = s[i].first; k < s[i].first + s[i].count; k++) {
            const struct hm_tensor *p = hm_block_tensor(blk, k);
            assert_int_equal(hm_block_elem_offset(p), s[i].offset + elems); /* tensor boundaries */
            elems += (size_t)hm_nelements(p);
            assert_true(s[i].ready_node >= last_touch(f->tg.graph, p));
            assert_true(last_touch(f->tg.graph, p) >= 0); /* every parameter gets a gradient */
        }
        assert_int_equal(s[i].n, elems);
        if (s[i].count > 1)
            assert_true(elems * sizeof(float) <= bucket_bytes);
        if (cut)
            assert_false(s[i].offset < cut && cut < s[i].offset + s[i].n);
        at += elems;
        next_tensor += s[i].count;
    }
    assert_int_equal(at, total);
    assert_int_equal(next_tensor, hm_block_n_tensors(blk));
    free(s);
    hm_free(b);
}

/* ---- the plan ----------------------------------------------------------------------------------- */

static void test_plan_covers_and_waits(void **state)
{
    const char *presets[] = {"nano", "tiny"};
    for (int p = 0; p < 2; p++) {
        for (int tied = 0; tied < 2; tied++) {
            struct fixture f;
            fixture_open(&f, presets[p], tied, 2, 16);
            size_t cut = (size_t)hm_model_n_decay(f.m);
            size_t sizes[] = {1, 10486 /* 0.01 MiB */, 64 << 10, 25u << 20};
            for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
                check_plan(&f, sizes[k], 0);
                check_plan(&f, sizes[k], cut);
            }
            fixture_close(&f);
        }
    }
}

/* Where the embedding's gradient is final: tied, only after the embedding backward at the very
 * end (the LM head's contribution comes first); untied, the LM head alone is ready early. */
static void test_plan_tied_and_untied_heads(void **state)
{
    for (int tied = 0; tied < 2; tied++) {
        struct fixture f;
        fixture_open(&f, "nano", tied, 2, 16);
        struct hm_block *blk = hm_model_params(f.m);
        struct hm_grad_bucket *b;
        int n, nodes = hm_graph_n_nodes(f.tg.graph, true);
        assert_int_equal(hm_grad_buckets_plan(f.tg.graph, blk, 1, NULL, 0, &b, &n), HM_OK);
        assert_int_equal(n, hm_block_n_tensors(blk)); /* 1-byte buckets: one tensor each */
        struct hm_tensor *emb = hm_model_param(f.m, "embedding.weight"), *head = hm_model_param(f.m, "lm_head.weight");
        int first_emb_write = -1;
        for (int i = 0; i < nodes && first_emb_write < 0; i++)
            if (hm_graph_node(f.tg.graph, true, i)->view_src == emb->grad)
                first_emb_write = i;
        for (int i = 0; i < n; i++) {
            const struct hm_tensor *p = hm_block_tensor(blk, b[i].first);
            if (p == emb) {
                assert_int_equal(b[i].ready_node, last_touch(f.tg.graph, emb));
                assert_int_equal(hm_graph_node(f.tg.graph, true, b[i].ready_node)->op, HM_OP_EMBEDDING_BACK);
                assert_true(b[i].ready_node >= nodes - 2);
                if (tied) /* the LM head wrote into it long before */
                    assert_true(first_emb_write < nodes / 4);
                assert_int_equal(i, n - 1); /* started last */
            }
            if (p == head)
                assert_true(b[i].ready_node < nodes / 4);
        }
        assert_true(tied ? head == NULL : head != NULL);
        hm_free(b);
        fixture_close(&f);
    }
}

/* ---- the executor's hook ---------------------------------------------------------------------- */

struct hook_log {
    int calls, last;
    bool in_order;
    int fail_at;
};

static enum hm_status log_hook(void *user, int node)
{
    struct hook_log *h = user;
    h->in_order &= node == h->last + 1;
    h->last = node;
    h->calls++;
    return node == h->fail_at ? hm_fail(HM_ERR_DEVICE, "hook failed at node %d", node) : HM_OK;
}

static void test_backward_hook(void **state)
{
    struct fixture f;
    fixture_open(&f, "nano", true, 1, 8);
    struct hm_graph *g = f.tg.graph;
    int nodes = hm_graph_n_nodes(g, true);
    struct hook_log h = {0, -1, true, -1};
    hm_graph_set_backward_hook(g, log_hook, &h);
    assert_int_equal(hm_graph_forward(g), HM_OK);
    assert_int_equal(h.calls, 0); /* backward only */
    assert_int_equal(hm_graph_backward(g), HM_OK);
    assert_int_equal(h.calls, nodes);
    assert_true(h.in_order);
    h = (struct hook_log){0, -1, true, 5};
    assert_int_equal(hm_graph_backward(g), HM_ERR_DEVICE); /* a failing hook stops the pass */
    assert_int_equal(h.calls, 6);
    hm_graph_set_backward_hook(g, NULL, NULL);
    h.calls = 0;
    assert_int_equal(hm_graph_backward(g), HM_OK);
    assert_int_equal(h.calls, 0);
    fixture_close(&f);
}

/* ---- shards ----------------------------------------------------------------------------------- */

static void test_shards(void **state)
{
    struct hm_comm c = {.size = 3};
    size_t off, n;
    hm_comm_shard(&c, 10, 0, &off, &n);
    assert_true(off == 0 && n == 4);
    hm_comm_shard(&c, 10, 1, &off, &n);
    assert_true(off == 4 && n == 3);
    hm_comm_shard(&c, 10, 2, &off, &n);
    assert_true(off == 7 && n == 3);
    for (int w = 1; w <= 9; w++) {
        c.size = w;
        for (size_t total = 0; total < 40; total++) {
            size_t at = 0;
            for (int r = 0; r < w; r++) {
                hm_comm_shard(&c, total, r, &off, &n);
                assert_int_equal(off, at);
                assert_true(n == total / (size_t)w || n == total / (size_t)w + 1);
                at += n;
            }
            assert_int_equal(at, total);
        }
    }
}

/* ZeRO-1 over one process is the plain optimizer, bit for bit. */
static void test_zero1_single_process_is_plain(void **state)
{
    struct fixture f[2];
    struct hm_optimizer *o[2];
    struct hm_comm *single;
    assert_int_equal(hm_comm_single_new(&single), HM_OK);
    struct hm_adamw_config ac = hm_adamw_defaults();
    ac.grad_clip = 0.5f; /* clips */
    for (int k = 0; k < 2; k++) {
        fixture_open(&f[k], "nano", true, 2, 16);
        assert_int_equal(k ? hm_optimizer_new_zero1(f[k].m, &ac, single, &o[k]) : hm_optimizer_new(f[k].m, &ac, &o[k]),
                         HM_OK);
        for (int step = 0; step < 3; step++) {
            double norm;
            assert_int_equal(hm_buffer_zero(hm_block_grads(hm_model_params(f[k].m))), HM_OK);
            assert_int_equal(hm_graph_forward(f[k].tg.graph), HM_OK);
            assert_int_equal(hm_graph_backward(f[k].tg.graph), HM_OK);
            assert_int_equal(hm_optimizer_step(o[k], 1e-3f, &norm), HM_OK);
        }
    }
    struct hm_buffer *d0 = hm_block_data(hm_model_params(f[0].m)), *d1 = hm_block_data(hm_model_params(f[1].m));
    assert_memory_equal(hm_buffer_ptr(d0), hm_buffer_ptr(d1), hm_buffer_size(d0));
    assert_memory_equal(hm_buffer_ptr(hm_optimizer_v(o[0])), hm_buffer_ptr(hm_optimizer_v(o[1])), hm_buffer_size(d0));
    for (int k = 0; k < 2; k++) {
        hm_optimizer_free(o[k]);
        fixture_close(&f[k]);
    }
    hm_comm_free(single);
}

/* ---- a loopback communicator claiming two ranks -------------------------------------------------- */

enum { MAX_STARTS = 64 };

static struct loopback {
    int starts, waits;
    struct {
        float *p;
        size_t n;
        float *snap;
    } s[MAX_STARTS];
    bool changed_after_start; /* a started range was written again before wait_all */
    bool reduce_scatter;
} lb;

static enum hm_status lb_start(float *p, size_t n)
{
    assert_true(lb.starts < MAX_STARTS);
    lb.s[lb.starts].p = p;
    lb.s[lb.starts].n = n;
    lb.s[lb.starts].snap = malloc(n * sizeof(float)); /* test only: the library side allocates nothing */
    memcpy(lb.s[lb.starts].snap, p, n * sizeof(float));
    lb.starts++;
    return HM_OK;
}

static enum hm_status lb_iallreduce(struct hm_comm *c, struct hm_backend *be, float *p, size_t n)
{
    return lb_start(p, n);
}

static enum hm_status lb_ireduce_scatter(struct hm_comm *c, struct hm_backend *be, float *base, size_t total,
                                         size_t off, size_t n)
{
    lb.reduce_scatter = true;
    return lb_start(base + off, n);
}

static enum hm_status lb_wait_all(struct hm_comm *c)
{
    for (int i = 0; i < lb.starts; i++) {
        lb.changed_after_start |= memcmp(lb.s[i].p, lb.s[i].snap, lb.s[i].n * sizeof(float)) != 0;
        free(lb.s[i].snap);
    }
    lb.starts = 0;
    lb.waits++;
    return HM_OK;
}

static enum hm_status lb_ok(struct hm_comm *c)
{
    return HM_OK;
}

static enum hm_status lb_reserve(struct hm_comm *c, int max_ops, size_t max_elems)
{
    return HM_OK;
}

static enum hm_status lb_f32(struct hm_comm *c, struct hm_backend *be, float *p, size_t n)
{
    return HM_OK;
}

static enum hm_status lb_sum(struct hm_comm *c, void *p, size_t n)
{
    return HM_OK;
}

static enum hm_status lb_bcast(struct hm_comm *c, void *p, size_t bytes, int root)
{
    return HM_OK;
}

static enum hm_status lb_double(struct hm_comm *c, double *v)
{
    return HM_OK;
}

static enum hm_status lb_send(struct hm_comm *c, const void *p, size_t bytes, int peer)
{
    return HM_OK;
}

static enum hm_status lb_recv(struct hm_comm *c, void *p, size_t bytes, int peer)
{
    memset(p, 0, bytes);
    return HM_OK;
}

static void lb_free(struct hm_comm *c)
{
}

static const struct hm_comm_ops loopback_ops = {
    .name = "loopback", .allreduce_sum = lb_sum, .broadcast = lb_bcast, .allreduce_double = lb_double,
    .barrier = lb_ok, .broadcast_host = lb_bcast, .async_reserve = lb_reserve, .iallreduce = lb_iallreduce,
    .ireduce_scatter = lb_ireduce_scatter, .progress = lb_ok, .wait_all = lb_wait_all,
    .reduce_scatter = lb_f32, .all_gather = lb_f32, .send_host = lb_send, .recv_host = lb_recv,
    .free = lb_free,
};

/* One step of the DDP machinery by hand: every bucket starts during the backward pass, and
 * nothing writes its gradients after it started. */
static void test_buckets_start_after_final_writes(void **state)
{
    for (int zero1 = 0; zero1 < 2; zero1++) {
        for (int tied = 0; tied < 2; tied++) {
            struct fixture f;
            fixture_open(&f, "nano", tied, 2, 16);
            struct hm_comm c = {.ops = &loopback_ops, .rank = 0, .size = 2};
            struct hm_ddp *d;
            struct hm_ddp_opts o = {.bucket_mb = 0.004, .overlap = true, .zero1 = zero1};
            memset(&lb, 0, sizeof lb);
            assert_int_equal(hm_ddp_new(&c, f.m, f.tg.graph, &o, &d), HM_OK);
            int nb = hm_ddp_stats(d)->n_buckets;
            assert_true(nb > 8);
            for (int step = 0; step < 2; step++) {
                assert_int_equal(hm_buffer_zero(hm_block_grads(hm_model_params(f.m))), HM_OK);
                assert_int_equal(hm_graph_forward(f.tg.graph), HM_OK);
                assert_int_equal(hm_graph_backward(f.tg.graph), HM_OK); /* an earlier micro-batch */
                hm_ddp_arm(d);
                assert_int_equal(hm_graph_forward(f.tg.graph), HM_OK);
                assert_int_equal(hm_graph_backward(f.tg.graph), HM_OK);
                assert_int_equal(lb.starts, nb); /* all started by the end of the backward pass */
                double loss = 1;
                assert_int_equal(hm_ddp_finish(d, &loss), HM_OK);
                assert_int_equal(lb.waits, step + 1);
            }
            assert_false(lb.changed_after_start);
            assert_true(lb.reduce_scatter == zero1);
            hm_ddp_free(d);
            fixture_close(&f);
        }
    }
}

/* hm_train with the loopback pair: overlap and ZeRO-1 on, the step loop still allocates nothing
 * (24 steps make as many host allocations as 8). */
static uint64_t train_allocs(const char *tokens, const char *dir, long steps)
{
    struct hm_model_config c;
    assert_int_equal(hm_config_preset("nano", &c), HM_OK);
    c.vocab_size = 61;
    c.max_seq_len = 16;
    struct hm_backend *be;
    struct hm_model *m;
    assert_int_equal(hm_backend_cpu_new(&be), HM_OK);
    assert_int_equal(hm_model_new(&c, be, &m), HM_OK);
    assert_int_equal(hm_model_init_weights(m, 1), HM_OK);
    struct hm_token_cache tok;
    bool hit;
    assert_int_equal(hm_token_cache_open(tokens, 1, &tok, &hit), HM_OK);
    struct hm_train_opts o = {
        .output_dir = dir, .batch_size = 2, .seq_len = 16, .stride = 16, .grad_accum = 2, .epochs = 20,
        .max_steps = steps, .seed = 1, .val_split = 0.05, .adamw = hm_adamw_defaults(), .log_every = 1,
        .eval_every = 0, .eval_batches = 1, .save_every = 0, .bucket_mb = 0.01, .zero1 = true,
    };
    o.lr = (struct hm_lr_schedule){HM_LR_CONSTANT, 1e-3, 1e-3, 0, 0, 0};
    struct hm_comm comm = {.ops = &loopback_ops, .rank = 0, .size = 2};
    struct hm_train_summary s;
    memset(&lb, 0, sizeof lb);
    uint64_t before = hm_alloc_count();
    assert_int_equal(hm_train(m, &tok, NULL, &o, &comm, NULL, NULL, &s), HM_OK);
    uint64_t n = hm_alloc_count() - before;
    assert_int_equal(lb.waits, steps);
    assert_true(s.comm_buckets > 8);
    assert_false(lb.changed_after_start);
    hm_token_cache_close(&tok);
    hm_model_free(m);
    hm_backend_free(be);
    return n;
}

static void test_train_step_allocates_nothing(void **state)
{
    char *dir = tu_mkdtemp(), *tokens = tu_path(dir, "tokens.bin");
    char *a = tu_path(dir, "a"), *b = tu_path(dir, "b");
    hm_token *ids = malloc(4000 * sizeof *ids);
    for (int i = 0; i < 4000; i++)
        ids[i] = (i * 7) % 61;
    assert_int_equal(hm_token_cache_write(tokens, 1, 61, ids, 4000), HM_OK);
    free(ids);
    hm_mkdir_p(a);
    hm_mkdir_p(b);
    uint64_t short_run = train_allocs(tokens, a, 8), long_run = train_allocs(tokens, b, 24);
    printf("host allocations with overlap + ZeRO-1: %llu for 8 steps, %llu for 24 steps\n",
           (unsigned long long)short_run, (unsigned long long)long_run);
    assert_int_equal(short_run, long_run);
    tu_rmdir(dir);
    free(dir), free(tokens), free(a), free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_covers_and_waits),
        cmocka_unit_test(test_plan_tied_and_untied_heads),
        cmocka_unit_test(test_backward_hook),
        cmocka_unit_test(test_shards),
        cmocka_unit_test(test_zero1_single_process_is_plain),
        cmocka_unit_test(test_buckets_start_after_final_writes),
        cmocka_unit_test(test_train_step_allocates_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
