/*
 * cpu-impl.h - private to the CPU backend: kernel declarations (one per op, table in
 * backend-cpu.c) and small helpers. Kernels parallelise with OpenMP static schedules and fixed
 * reduction orders, so the same thread count gives bit-identical results; BLAS is only called
 * outside OpenMP regions. Compute is f32; bf16 nodes are rejected at plan time.
 */
#ifndef HERMES_CPU_IMPL_H
#define HERMES_CPU_IMPL_H

#include "backend/backend-impl.h"
#include "core/core-impl.h"

#include <math.h>
#include <omp.h>

#define CPU_KERNEL(name) enum hm_status hm_cpu_##name(const struct hm_exec *ex, struct hm_tensor *dst)
CPU_KERNEL(fill);
CPU_KERNEL(add);
CPU_KERNEL(mul);
CPU_KERNEL(scale);
CPU_KERNEL(grad_acc);
CPU_KERNEL(matmul);
CPU_KERNEL(embedding);
CPU_KERNEL(embedding_back);
CPU_KERNEL(rms_norm);
CPU_KERNEL(rms_norm_back);
CPU_KERNEL(rope);
CPU_KERNEL(rope_back);
CPU_KERNEL(attention);
CPU_KERNEL(attention_back);
CPU_KERNEL(kv_write);
CPU_KERNEL(gelu);
CPU_KERNEL(gelu_back);
CPU_KERNEL(swiglu);
CPU_KERNEL(swiglu_back);
CPU_KERNEL(dropout);
CPU_KERNEL(cross_entropy);
CPU_KERNEL(cross_entropy_back);

size_t hm_cpu_workspace_size(struct hm_backend *be, const struct hm_tensor *node);

enum hm_status hm_cpu_adamw(struct hm_backend *be, float *p, const float *g, float *m, float *v,
                            size_t n, const struct hm_adamw_params *hp);
enum hm_status hm_cpu_sumsq(struct hm_backend *be, const float *x, size_t n, double *out);
enum hm_status hm_cpu_scale_range(struct hm_backend *be, float *x, size_t n, float s);
enum hm_status hm_cpu_is_finite(struct hm_backend *be, const float *x, size_t n, bool *out);

/* Threads a kernel may use given per-thread scratch of `per_thread` bytes in ex->ws. */
static inline int hm_cpu_threads_for(const struct hm_exec *ex, size_t per_thread)
{
    int nt = omp_get_max_threads();
    if (per_thread > 0 && (size_t)nt * per_thread > ex->ws_bytes)
        nt = (int)(ex->ws_bytes / per_thread);
    return nt < 1 ? 1 : nt;
}

/* Threads the planner sizes per-thread scratch for. */
static inline int hm_cpu_plan_threads(void)
{
    int a = omp_get_max_threads(), b = omp_get_num_procs();
    return a > b ? a : b;
}

/* Fork threads only for enough work: below this many element-operations a parallel region costs
 * more than it saves (and on a shared machine a descheduled thread stalls every barrier). Whether
 * a loop runs in parallel never changes its result: rows are independent and reductions have a
 * fixed order. */
#define HM_CPU_PAR_MIN 32768
#define HM_CPU_PAR(work) ((int64_t)(work) >= HM_CPU_PAR_MIN)

#define F32(t) ((float *)(t)->data)
#define CF32(t) ((const float *)(t)->data)

#endif
