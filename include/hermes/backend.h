/*
 * backend.h - compute backends (opaque): buffers in backend memory, host transfers, the
 * optimizer/reduction primitives the trainer runs over contiguous ranges of a block, and the node
 * calls through which the tensor core (src/core) plans and runs graphs. Every call checks its
 * arguments here (src/backend/backend.c) before it reaches a backend.
 *
 *     struct hm_backend *be;
 *     if (hm_backend_cpu_new(&be) != HM_OK) return hm_last_error();
 *     hm_set_threads(8);                            // OpenMP and OpenBLAS share one pool
 *     ... blocks and graphs (tensor.h) ...
 *     hm_buffer_zero(hm_block_grads(params));       // once per optimizer step
 *     hm_buffer_sumsq(hm_block_grads(params), 0, n, &ss);      // global grad norm^2 (double)
 *     hm_backend_adamw(data, grads, m, v, 0, n_decay, &hp);    // decayed tensors first
 *     hm_backend_adamw(data, grads, m, v, n_decay, n - n_decay, &hp_no_decay);
 *
 * Ranges (offset, n) count f32 elements. All buffers passed to one call must share a backend.
 */
#ifndef HERMES_BACKEND_H
#define HERMES_BACKEND_H

#include "hermes/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

struct hm_backend;
struct hm_buffer;

/* CPU backend: CBLAS sgemm + OpenMP. Warns (does not fail) if OpenBLAS is not the OpenMP build. */
HM_API enum hm_status hm_backend_cpu_new(struct hm_backend **out);
HM_API void hm_backend_free(struct hm_backend *be);
HM_API const char *hm_backend_name(const struct hm_backend *be);
HM_API bool hm_backend_supports_op(const struct hm_backend *be, enum hm_op op);
HM_API enum hm_status hm_backend_synchronize(struct hm_backend *be);
/* The stream the backend issues its work on, as an opaque pointer (a cudaStream_t on CUDA), so a
 * communicator can order collectives after it without this header naming CUDA; NULL on the CPU,
 * whose work is done when the call that issued it returns. */
HM_API void *hm_backend_native_stream(struct hm_backend *be);

/* ---- CUDA backend and device selection ------------------------------------------------------ */
/*
 * CUDA backend on GPU `device` (0-based): cuBLASLt matmuls plus our own kernels, f32 compute.
 * HM_ERR_UNSUPPORTED with a one-line message in a build without CUDA, when no GPU is visible, or
 * when `device` is out of range; HM_ERR_NOMEM / HM_ERR_DEVICE if the context cannot be set up.
 */
HM_API enum hm_status hm_backend_cuda_new(int device, struct hm_backend **out);
/* Visible CUDA devices; 0 in a CPU-only build or when the driver reports none. Never fails. */
HM_API int hm_cuda_device_count(void);

enum hm_device_kind { HM_DEVICE_CPU = 0, HM_DEVICE_CUDA };
struct hm_device_spec {
    enum hm_device_kind kind;
    int index; /* GPU ordinal for HM_DEVICE_CUDA, 0 for the CPU */
};
/* Parse "cpu", "cuda" (= cuda:0) or "cuda:N". HM_ERR_USAGE quoting the string otherwise. */
HM_API enum hm_status hm_device_parse(const char *spec, struct hm_device_spec *out);
/* hm_device_parse, then create that backend (--device of the CLI). */
HM_API enum hm_status hm_backend_new_from_string(const char *spec, struct hm_backend **out);
/* ---- end of the CUDA block ------------------------------------------------------------------- */

/* ---- nodes: what hm_graph_plan and hm_graph_forward/backward call --------------------------- */
/*
 * HM_OK if `be` can run `node`: it has a kernel for the op and accepts the operands (dtypes,
 * sizes); HM_ERR_UNSUPPORTED with a message naming the op and the backend otherwise. Ops without
 * a kernel (hm_op_info(op)->kernel false: leaves, views, side outputs) are always fine.
 */
HM_API enum hm_status hm_backend_check_node(struct hm_backend *be, const struct hm_tensor *node);
/* Scratch bytes the node's kernel needs in the workspace passed to hm_backend_compute (0: none). */
HM_API size_t hm_backend_workspace_size(struct hm_backend *be, const struct hm_tensor *node);
/*
 * Run the kernel of one node whose operands already have storage on `be` (a planned graph):
 * `rt` holds the runtime values, `ws` at least hm_backend_workspace_size(be, node) bytes of `be`'s
 * memory. Asynchronous on an asynchronous backend. HM_ERR_USAGE if the node has no storage on `be`
 * or no kernel there; otherwise the kernel's status (a bad token id, a position past the cache).
 */
HM_API enum hm_status hm_backend_compute(struct hm_backend *be, struct hm_tensor *node,
                                         const struct hm_runtime *rt, void *ws, size_t ws_bytes);
/*
 * Issue a planned node sequence (one direction of a planned graph, every node with storage on
 * `be`) by calling run(user), which runs each node through hm_backend_compute. A backend may take
 * it as one unit that it records once and replays (CUDA graphs, HM_CUDA_GRAPH=1) while `key`
 * (unique per planned graph and direction, never reused) and the runtime values those nodes read
 * stay the same; otherwise run(user) is called directly. Returns run's status or the backend's.
 */
HM_API enum hm_status hm_backend_run_sequence(struct hm_backend *be, uint64_t key,
                                              struct hm_tensor *const *nodes, int n,
                                              const struct hm_runtime *rt,
                                              enum hm_status (*run)(void *user), void *user);

/* The bf16 matmul units the CPU backend uses: none (a build without oneDNN, or a CPU without
 * them: bf16 matmuls widen to f32 sgemm), AVX512-BF16 dot products, or AMX tiles. */
enum hm_cpu_bf16 { HM_CPU_BF16_NONE, HM_CPU_BF16_AVX512, HM_CPU_BF16_AMX };
HM_API enum hm_cpu_bf16 hm_cpu_bf16_support(void);
HM_API const char *hm_cpu_bf16_name(enum hm_cpu_bf16 s);

/* The dtype `train --dtype auto` picks: bf16 on a GPU; on the CPU bf16 only with AMX, where it
 * trained faster than f32 and followed f32's loss curve within 1% (docs/performance.md). With
 * AVX512-BF16 alone oneDNN's bf16 matmuls ran at about the f32 sgemm rate, so f32 stays. */
HM_API enum hm_dtype hm_auto_train_dtype(bool gpu, enum hm_cpu_bf16 cpu);

/* Threads for OpenMP loops and OpenBLAS together (n >= 1). */
HM_API void hm_set_threads(int n);
/* The most threads the BLAS library was built for, and HM_ERR_USAGE naming `flag` when n is
 * outside [1, that]. */
HM_API int hm_max_threads(void);
HM_API enum hm_status hm_check_threads(const char *flag, long n);
HM_API int hm_get_threads(void);
/*
 * Flush denormals to zero (x86 MXCSR FTZ + DAZ) in the calling thread and every thread of the
 * OpenMP pool (threads created later inherit it from the thread that creates them). Denormal
 * operands cost ~100x on x86; results differ from IEEE only below FLT_MIN (1.2e-38), and stay
 * deterministic. hm_backend_cpu_new turns it on, and so does the CLI at startup; note that this
 * changes the floating-point mode of the host program's calling thread. No-op off x86.
 */
HM_API void hm_set_flush_denormals(bool on);

/* Buffers: backend memory, 64-byte aligned, contents undefined until written. */
HM_API enum hm_status hm_buffer_new(struct hm_backend *be, size_t bytes, struct hm_buffer **out);
HM_API void hm_buffer_free(struct hm_buffer *buf);
HM_API size_t hm_buffer_size(const struct hm_buffer *buf);
HM_API struct hm_backend *hm_buffer_backend(const struct hm_buffer *buf);
HM_API enum hm_status hm_buffer_set(struct hm_buffer *buf, size_t offset, const void *host, size_t bytes);
HM_API enum hm_status hm_buffer_get(const struct hm_buffer *buf, size_t offset, void *host, size_t bytes);
HM_API enum hm_status hm_buffer_zero(struct hm_buffer *buf);
/* A descriptor for bytes [offset, offset + bytes) of `parent`, sharing its memory (e.g. one rank's
 * shard of a block). Free it with hm_buffer_free, which releases no memory, before the parent. */
HM_API enum hm_status hm_buffer_view(struct hm_buffer *parent, size_t offset, size_t bytes,
                                     struct hm_buffer **out);
/* The buffer's memory in the backend's address space, for communication libraries (MPI on the
 * CPU, NCCL on the GPU). Never dereference it on the host unless the backend is the CPU. */
HM_API void *hm_buffer_ptr(struct hm_buffer *buf);

/* The first n elements of src (src_type) into dst (dst_type), f32 <-> bf16 with round to nearest
 * even (the bf16 weight copies). Both buffers on one backend; HM_ERR_UNSUPPORTED for another pair
 * of dtypes or a backend without conversions. */
HM_API enum hm_status hm_buffer_convert(struct hm_buffer *dst, enum hm_dtype dst_type,
                                        const struct hm_buffer *src, enum hm_dtype src_type, size_t n);

/* Reductions over f32 element ranges, deterministic (fixed blocks, summed in double in order). */
HM_API enum hm_status hm_buffer_sumsq(const struct hm_buffer *buf, size_t offset, size_t n, double *out);
HM_API enum hm_status hm_buffer_scale(struct hm_buffer *buf, size_t offset, size_t n, float s);
HM_API enum hm_status hm_buffer_is_finite(const struct hm_buffer *buf, size_t offset, size_t n, bool *out);

/*
 * AdamW over elements [offset, offset + n) of four same-layout buffers, step t >= 1, on the
 * gradient g = grad_scale * grads (global-norm clipping without a pass that rewrites the
 * gradients; 0, what an initializer that omits it gives, stands for 1):
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  mh = m / (1-b1^t);  vh = v / (1-b2^t)
 *   p -= lr * (mh / (sqrt(vh) + eps) + weight_decay * p)      (decoupled weight decay)
 */
struct hm_adamw_params {
    float lr;
    float beta1;
    float beta2;
    float eps;
    float weight_decay;
    int64_t t;
    float grad_scale;
};
HM_API enum hm_status hm_backend_adamw(struct hm_buffer *params, const struct hm_buffer *grads,
                                       struct hm_buffer *m, struct hm_buffer *v, size_t offset,
                                       size_t n, const struct hm_adamw_params *hp);

#ifdef __cplusplus
}
#endif
#endif
