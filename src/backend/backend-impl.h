/*
 * backend-impl.h - the backend vtable, private to src/backend/ (the core calls backends through
 * the checked functions of include/hermes/backend.h, implemented in backend.c). A backend fills
 * one struct hm_backend_i: buffer functions, optimizer/reduction primitives over raw ranges, and a
 * kernel table indexed by enum hm_op, generated from ops.def so every op with a kernel has an
 * entry (the CPU's a static initializer, the CUDA one filled by its extern "C" constructor).
 * Backward ops are ops too, so "forward and backward of every op" is just the table. Kernels get
 * the node `dst` (its srcs, inline op_params, acc bits and data pointers in backend memory; read
 * it with include/hermes/ops.h) plus struct hm_exec: the runtime values and a backend-owned
 * workspace sized by workspace_size().
 */
#ifndef HERMES_BACKEND_IMPL_H
#define HERMES_BACKEND_IMPL_H

#include "hermes/backend.h"

struct hm_exec {
    struct hm_backend *be;
    const struct hm_runtime *rt;
    void *ws;        /* backend memory scratch, >= max workspace_size() over the graph's nodes */
    size_t ws_bytes;
};

/* Compute one node. Returns HM_OK or a user-visible failure (bad token id, pos past the cache). */
typedef enum hm_status (*hm_kernel_fn)(const struct hm_exec *ex, struct hm_tensor *dst);

struct hm_backend_i {
    const char *name;
    void (*free)(struct hm_backend *be);
    /* memory */
    enum hm_status (*alloc)(struct hm_backend *be, size_t bytes, void **out);
    void (*release)(struct hm_backend *be, void *p);
    enum hm_status (*set)(struct hm_backend *be, void *dst, const void *host, size_t bytes);
    enum hm_status (*get)(struct hm_backend *be, void *host, const void *src, size_t bytes);
    enum hm_status (*memset0)(struct hm_backend *be, void *dst, size_t bytes);
    enum hm_status (*synchronize)(struct hm_backend *be);
    /* kernels */
    const hm_kernel_fn *kernels; /* [HM_OP_COUNT] */
    /* optional: HM_ERR_UNSUPPORTED with a message if this node cannot run (e.g. bf16 on cpu) */
    enum hm_status (*check_node)(struct hm_backend *be, const struct hm_tensor *node);
    size_t (*workspace_size)(struct hm_backend *be, const struct hm_tensor *node);
    /* optimizer and reductions over f32 ranges (pointers in backend memory) */
    /* hp->grad_scale is never 0 here (hm_backend_adamw turns a left-out 0 into 1) */
    enum hm_status (*adamw)(struct hm_backend *be, float *p, const float *g, float *m, float *v,
                            size_t n, const struct hm_adamw_params *hp);
    enum hm_status (*sumsq)(struct hm_backend *be, const float *x, size_t n, double *out);
    enum hm_status (*scale)(struct hm_backend *be, float *x, size_t n, float s);
    enum hm_status (*is_finite)(struct hm_backend *be, const float *x, size_t n, bool *out);
    /* n elements from src to dst, f32 <-> bf16 (round to nearest even): the bf16 weight copies */
    enum hm_status (*convert)(struct hm_backend *be, void *dst, enum hm_dtype dst_type, const void *src,
                              enum hm_dtype src_type, size_t n);
    /* optional: the native stream work is issued on (cudaStream_t), for communicators that must
     * order collectives after it; NULL (or absent) for a synchronous backend */
    void *(*native_stream)(struct hm_backend *be);
    /* optional: issue a planned node sequence by calling run(user), as one unit the backend may
     * record once and replay (CUDA graphs) while `key` (unique per planned graph and direction,
     * never reused) and the runtime values those nodes read stay the same. NULL: the executor
     * calls run(user) itself. Not used while profiling or while a backward hook is set. */
    enum hm_status (*run_sequence)(struct hm_backend *be, uint64_t key, struct hm_tensor *const *nodes, int n,
                                   const struct hm_runtime *rt, enum hm_status (*run)(void *user), void *user);
};

struct hm_backend {
    const struct hm_backend_i *iface;
    void *context; /* backend private state */
};

struct hm_buffer {
    struct hm_backend *be;
    void *base;
    size_t size;
    bool borrowed; /* a view of another buffer's memory (hm_buffer_view): never released */
};

#endif
