/*
 * ddp.c - bucketed gradient reduction overlapping the backward pass (ddp.h).
 *
 * Planning reads the backward nodes once: a parameter's gradient is final after the last node
 * that touches its storage (for a tied embedding, the embedding backward at the very end; the
 * LM head's contribution comes early). The executor's backward hook then starts every bucket
 * whose ready node has just been issued, and between nodes lets the communicator progress.
 */
#include "ddp.h"
#include "util/util.h"

#include <stdlib.h>

struct hm_ddp {
    struct hm_comm *comm;
    struct hm_graph *graph;
    struct hm_backend *be;
    struct hm_buffer *grads;
    size_t n_elems;
    bool overlap, zero1, armed;
    struct hm_grad_bucket *b; /* start order */
    int n, next;              /* buckets; the next one to start */
    double t_first;           /* when this step's first bucket started */
    struct hm_ddp_stats stats;
};

/* The block tensor whose gradient storage t is (or views), or -1. */
static int grad_owner(const struct hm_block *params, const struct hm_tensor *t)
{
    if (!t)
        return -1;
    const struct hm_tensor *r = t->view_src ? t->view_src : t;
    if ((r->flags & (HM_FLAG_GRAD | HM_FLAG_BLOCK)) != (HM_FLAG_GRAD | HM_FLAG_BLOCK))
        return -1;
    int i = r->id;
    if (i < 0 || i >= hm_block_n_tensors(params) || hm_block_tensor(params, i)->grad != r)
        return -1;
    return i;
}

static bool is_cut(size_t at, const size_t *cuts, int n_cuts)
{
    for (int i = 0; i < n_cuts; i++)
        if (cuts[i] == at)
            return true;
    return false;
}

static int by_start_order(const void *pa, const void *pb)
{
    const struct hm_grad_bucket *a = pa, *b = pb;
    if (a->ready_node != b->ready_node)
        return a->ready_node < b->ready_node ? -1 : 1;
    return a->offset > b->offset ? -1 : a->offset < b->offset; /* later in the block first */
}

enum hm_status hm_grad_buckets_plan(const struct hm_graph *g, const struct hm_block *params,
                                    size_t bucket_bytes, const size_t *cuts, int n_cuts,
                                    struct hm_grad_bucket **out, int *n_out)
{
    int nt = hm_block_n_tensors(params), nodes = hm_graph_n_nodes(g, true);
    if (nt == 0)
        return hm_fail(HM_ERR_USAGE, "gradient buckets: the parameter block is empty");
    int *last = hm_malloc((size_t)nt * sizeof *last);
    struct hm_grad_bucket *b = hm_calloc((size_t)nt, sizeof *b); /* at most one per tensor */
    if (!last || !b) {
        hm_free(last);
        hm_free(b);
        return hm_fail(HM_ERR_NOMEM, "out of memory planning gradient buckets");
    }
    for (int k = 0; k < nt; k++)
        last[k] = -1;
    for (int i = 0; i < nodes; i++) {
        const struct hm_tensor *node = hm_graph_node(g, true, i);
        int k = grad_owner(params, node);
        if (k >= 0)
            last[k] = i;
        for (int s = 0; s < HM_MAX_SRC; s++)
            if ((k = grad_owner(params, node->src[s])) >= 0)
                last[k] = i;
    }
    int n = 0;
    for (int hi = nt; hi > 0; n++) { /* tensors [lo, hi) form bucket n */
        int lo = hi - 1;
        size_t bytes = hm_nbytes(hm_block_tensor(params, lo));
        while (lo > 0) {
            const struct hm_tensor *t = hm_block_tensor(params, lo), *prev = hm_block_tensor(params, lo - 1);
            if (bytes + hm_nbytes(prev) > bucket_bytes || is_cut(hm_block_elem_offset(t), cuts, n_cuts))
                break;
            bytes += hm_nbytes(prev);
            lo--;
        }
        const struct hm_tensor *first = hm_block_tensor(params, lo);
        b[n] = (struct hm_grad_bucket){.offset = hm_block_elem_offset(first), .n = bytes / sizeof(float),
                                       .first = lo, .count = hi - lo, .ready_node = -1};
        for (int k = lo; k < hi; k++)
            b[n].ready_node = HM_MAX(b[n].ready_node, last[k]);
        hi = lo;
    }
    hm_free(last);
    qsort(b, (size_t)n, sizeof *b, by_start_order);
    *out = b;
    *n_out = n;
    return HM_OK;
}

static enum hm_status start_bucket(struct hm_ddp *d, const struct hm_grad_bucket *b)
{
    if (d->zero1)
        return hm_comm_reduce_scatter_start(d->comm, d->grads, b->offset, b->n);
    return hm_comm_allreduce_start(d->comm, d->grads, b->offset, b->n);
}

/* Backward hook: start what has just become final, and let the communicator progress. */
static enum hm_status on_backward_node(void *user, int node)
{
    struct hm_ddp *d = user;
    while (d->next < d->n && d->b[d->next].ready_node <= node) {
        if (d->next == 0)
            d->t_first = hm_time_s();
        enum hm_status st = start_bucket(d, &d->b[d->next]);
        if (st != HM_OK)
            return st;
        d->next++;
    }
    return d->next > 0 ? hm_comm_progress(d->comm) : HM_OK;
}

enum hm_status hm_ddp_new(struct hm_comm *comm, struct hm_model *m, struct hm_graph *g,
                          const struct hm_ddp_opts *o, struct hm_ddp **out)
{
    struct hm_ddp *d = hm_calloc(1, sizeof *d);
    if (!d)
        return hm_fail(HM_ERR_NOMEM, "out of memory for the gradient reduction");
    d->comm = comm;
    d->graph = g;
    d->be = hm_model_backend(m);
    d->grads = hm_block_grads(hm_model_params(m));
    d->n_elems = hm_buffer_size(d->grads) / sizeof(float);
    d->overlap = o->overlap;
    d->zero1 = o->zero1;
    d->stats.n_buckets = 1;
    if (d->overlap) {
        double mb = o->bucket_mb > 0 ? o->bucket_mb : 25.0;
        size_t bytes = (size_t)HM_MAX(mb * 1048576.0, (double)sizeof(float));
        /* The model lays out weight-decayed matrices first, then every layer's norm weights and
         * biases: that tail becomes final only with layer 0, so it gets buckets of its own rather
         * than holding back the last layers' matrices. */
        size_t cut = (size_t)hm_model_n_decay(m);
        enum hm_status st = hm_grad_buckets_plan(g, hm_model_params(m), bytes, &cut, 1, &d->b, &d->n);
        if (st == HM_OK)
            st = hm_comm_async_reserve(comm, d->n, d->n_elems);
        if (st != HM_OK) {
            hm_ddp_free(d);
            return st;
        }
        d->stats.n_buckets = d->n;
    }
    *out = d;
    return HM_OK;
}

void hm_ddp_free(struct hm_ddp *d)
{
    if (!d)
        return;
    if (d->armed)
        hm_graph_set_backward_hook(d->graph, NULL, NULL);
    hm_free(d->b);
    hm_free(d);
}

void hm_ddp_arm(struct hm_ddp *d)
{
    if (!d->overlap)
        return;
    d->next = 0;
    d->armed = true;
    hm_graph_set_backward_hook(d->graph, on_backward_node, d);
}

enum hm_status hm_ddp_finish(struct hm_ddp *d, double *loss)
{
    double t0 = hm_time_s();
    enum hm_status st;
    if (d->armed) {
        hm_graph_set_backward_hook(d->graph, NULL, NULL);
        d->armed = false;
        HM_ASSERT(d->next == d->n); /* every ready node is a backward node */
        d->stats.overlapped_s += t0 - d->t_first;
        st = hm_comm_wait_all(d->comm);
    } else if (d->zero1) {
        st = hm_comm_reduce_scatter(d->comm, d->grads);
    } else {
        st = hm_comm_allreduce_sum(d->comm, d->grads, 0, d->n_elems);
    }
    /* A GPU finishes the reduction on its own: wait for it here, where the optimizer's norm
     * would wait anyway, so that the exposed time is measured. */
    if (st == HM_OK)
        st = hm_backend_synchronize(d->be);
    if (st == HM_OK && (st = hm_comm_allreduce_double(d->comm, loss)) == HM_OK)
        *loss /= hm_comm_size(d->comm);
    d->stats.exposed_s += hm_time_s() - t0;
    return st;
}

const struct hm_ddp_stats *hm_ddp_stats(const struct hm_ddp *d)
{
    return &d->stats;
}
