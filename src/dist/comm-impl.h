/* comm-impl.h - the communicator vtable that comm.c dispatches through (private to src/dist). */
#ifndef HERMES_COMM_IMPL_H
#define HERMES_COMM_IMPL_H

#include "hermes/comm.h"

struct hm_comm_ops {
    const char *name;
    enum hm_status (*allreduce_sum)(struct hm_comm *c, void *ptr, size_t n);
    enum hm_status (*broadcast)(struct hm_comm *c, void *ptr, size_t bytes, int root);
    enum hm_status (*allreduce_double)(struct hm_comm *c, double *value);
    enum hm_status (*barrier)(struct hm_comm *c);
    void (*free)(struct hm_comm *c);
};

struct hm_comm {
    const struct hm_comm_ops *ops;
    int rank, size;
    void *impl;
};

#endif
