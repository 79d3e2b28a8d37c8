/*
 * comm-impl.h - the communicator vtable that comm.c dispatches through (private to src/dist).
 * allreduce_sum and broadcast get backend buffer pointers (host for CPU, device for CUDA);
 * broadcast_host and allreduce_double always get host memory. `parent` is a communicator this
 * one was bootstrapped from (MPI under NCCL across nodes); it is freed or aborted after this one.
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
