/*
 * comm-impl.h - the communicator vtable that comm.c dispatches through (private to src/parallel).
 * allreduce_sum, broadcast and the f32 collectives get backend buffer pointers (host for CPU,
 * device for CUDA), plus the backend that produced the data where the order matters;
 * broadcast_host, allreduce_double and send/recv_host always get host memory. Shards are
 * hm_comm_shard's split of [base, base + total). `parent` is a communicator this one was
 * bootstrapped from (MPI under NCCL across nodes); it is freed or aborted after this one.
 */
#ifndef HERMES_COMM_IMPL_H
#define HERMES_COMM_IMPL_H

#include "hermes/comm.h"

struct hm_comm_ops {
    const char *name;
    enum hm_status (*allreduce_sum)(struct hm_comm *c, void *ptr, size_t n);
    enum hm_status (*broadcast)(struct hm_comm *c, void *ptr, size_t bytes, int root);
    enum hm_status (*allreduce_double)(struct hm_comm *c, double *value);
    enum hm_status (*barrier)(struct hm_comm *c);
    enum hm_status (*broadcast_host)(struct hm_comm *c, void *ptr, size_t bytes, int root);
    /* asynchronous, in place; comm.c checks ranges and skips world size 1 */
    enum hm_status (*async_reserve)(struct hm_comm *c, int max_ops, size_t max_elems);
    enum hm_status (*iallreduce)(struct hm_comm *c, struct hm_backend *be, float *p, size_t n);
    enum hm_status (*ireduce_scatter)(struct hm_comm *c, struct hm_backend *be, float *base, size_t total,
                                      size_t off, size_t n);
    enum hm_status (*progress)(struct hm_comm *c);
    enum hm_status (*wait_all)(struct hm_comm *c);
    /* blocking, over the shards of [base, base + total) */
    enum hm_status (*reduce_scatter)(struct hm_comm *c, struct hm_backend *be, float *base, size_t total);
    enum hm_status (*all_gather)(struct hm_comm *c, struct hm_backend *be, float *base, size_t total);
    enum hm_status (*send_host)(struct hm_comm *c, const void *p, size_t bytes, int peer);
    enum hm_status (*recv_host)(struct hm_comm *c, void *p, size_t bytes, int peer);
    void (*free)(struct hm_comm *c);
    void (*abort)(struct hm_comm *c, int code); /* NULL: same as free */
};

struct hm_comm {
    const struct hm_comm_ops *ops;
    int rank, size;
    void *impl;
    struct hm_comm *parent;
};

#endif
