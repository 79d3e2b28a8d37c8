/*
 * ddp.h - data-parallel gradient synchronisation for the trainer (private to libhermes): the
 * gradient block is reduced in buckets that start while the last micro-batch's backward pass is
 * still running, as soon as every gradient in a bucket is final (PyTorch DDP's idea, on our one
 * contiguous gradient block), or in one blocking call with overlap off.
 *
 *     hm_ddp_new(comm, model, tg.graph, &opts, &d);       // plans the buckets once
 *     per step: micro-batches 0..A-2 as usual; hm_ddp_arm(d); the last micro-batch;
 *               hm_ddp_finish(d, &loss);                  // gradients summed, loss averaged
 *
 * With ZeRO-1 the buckets are reduce-scattered: a rank ends up with the summed gradients of its
 * own shard only (hm_comm_shard), which is all its sharded optimizer reads.
 */
#ifndef HERMES_DIST_DDP_H
#define HERMES_DIST_DDP_H

#include "hermes/comm.h"
#include "hermes/model.h"

/* A contiguous range of the gradient block, cut at tensor boundaries. */
struct hm_grad_bucket {
    size_t offset, n;     /* f32 elements [offset, offset + n) */
    int first, count;     /* block tensors [first, first + count) */
    int ready_node;       /* the backward node after which all of them are final (-1: none writes them) */
};

/*
 * Buckets of at most bucket_bytes each (a larger tensor is a bucket alone), formed from the end
 * of the block, also cut at every element offset in cuts[0..n_cuts) that is a tensor boundary. A
 * bucket's ready node is the last backward node of `g` that writes, accumulates into or reads any
 * of its gradients. *out is in start order: by ready node, then from the end of the block.
 * Free it with hm_free.
 */
enum hm_status hm_grad_buckets_plan(const struct hm_graph *g, const struct hm_block *params,
                                    size_t bucket_bytes, const size_t *cuts, int n_cuts,
                                    struct hm_grad_bucket **out, int *n_out);

struct hm_ddp_opts {
    double bucket_mb; /* bucket size in MiB; <= 0: 25 */
    bool overlap;     /* false: one blocking reduction after the backward pass */
    bool zero1;       /* reduce-scatter instead of all-reduce */
};

struct hm_ddp_stats {
    double exposed_s;    /* wall time in hm_ddp_finish: what the backward pass did not hide */
    double overlapped_s; /* backward time with reductions in flight (first start to backward end) */
    int n_buckets;
};

struct hm_ddp;

/* comm, the model and its training graph are borrowed and must outlive the result. */
enum hm_status hm_ddp_new(struct hm_comm *comm, struct hm_model *m, struct hm_graph *g,
                          const struct hm_ddp_opts *o, struct hm_ddp **out);
void hm_ddp_free(struct hm_ddp *d);
/* The next backward pass of the graph starts the buckets as they become ready (overlap only). */
void hm_ddp_arm(struct hm_ddp *d);
/* After that backward pass: wait for (or run) the reduction, then average *loss over ranks. */
enum hm_status hm_ddp_finish(struct hm_ddp *d, double *loss);
const struct hm_ddp_stats *hm_ddp_stats(const struct hm_ddp *d);

#endif
