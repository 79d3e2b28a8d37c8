/*
 * ops.h - what the tensor core and every backend both need to read a node: the per-op facts of
 * ops.def as a table (hm_op_info), the op-parameter accessors, the matmul geometry, the
 * counter-based dropout hash and the per-row cross-entropy. Backends include this and backend.h,
 * never the core's private headers; the core includes it too, so the two agree on every formula.
 */
#ifndef HERMES_OPS_H
#define HERMES_OPS_H

#include "hermes/tensor.h"

#include <math.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One row of ops.def (see the column descriptions there). */
struct hm_op_info {
    const char *name;
    uint8_t n_src;   /* source slots used; the rest are NULL */
    uint8_t n_in;    /* [0, n_in) inputs, [n_in, n_src) extra outputs written by the kernel */
    uint8_t opt;     /* bit i: src[i] may be NULL */
    uint8_t inplace; /* bit i: dst may take over src[i]'s storage */
    bool kernel;     /* false for the pseudo-ops (NONE, VIEW, SIDE_OUTPUT) */
    bool grad;       /* autograd has a backward rule */
};
/* The facts of `op`; NULL for a value outside enum hm_op. */
HM_API const struct hm_op_info *hm_op_info(enum hm_op op);

/* ATTENTION's extra output, the row log-sum-exp (B, NH, T): after its six input slots. */
#define HM_ATTN_LSE 6

/* ---- reading a node --------------------------------------------------------------------------- */

static inline float hm_op_f32(const struct hm_tensor *t, int i)
{
    float f;
    memcpy(&f, &t->op_params[i], sizeof f);
    return f;
}
static inline void hm_op_set_f32(struct hm_tensor *t, int i, float f)
{
    memcpy(&t->op_params[i], &f, sizeof f);
}

/* Rows of the last dimension. */
static inline int64_t hm_nrows(const struct hm_tensor *t)
{
    return hm_nelements(t) / t->shape[t->n_dims - 1];
}

/* Matmul geometry shared by the builder, autograd and every backend's kernel: `batch` products of
 * op(a) (M, K) and op(b) (K, N). With a 2-D b, a's leading dims are flattened into rows first. */
struct hm_mm_dims {
    int64_t batch, M, N, K;
};
static inline struct hm_mm_dims hm_mm_dims_of(const struct hm_tensor *a, const struct hm_tensor *b,
                                              bool ta, bool tb)
{
    struct hm_mm_dims d;
    int an = a->n_dims, bn = b->n_dims;
    if (bn == 2) {
        int64_t rows = hm_nelements(a) / a->shape[an - 1], cols = a->shape[an - 1];
        d.batch = 1;
        d.M = ta ? cols : rows;
        d.K = ta ? rows : cols;
    } else {
        d.batch = hm_nelements(b) / (b->shape[bn - 1] * b->shape[bn - 2]);
        d.M = ta ? a->shape[an - 1] : a->shape[an - 2];
        d.K = ta ? a->shape[an - 2] : a->shape[an - 1];
    }
    d.N = tb ? b->shape[bn - 2] : b->shape[bn - 1];
    return d;
}

/*
 * Dropout keep decision, counter-based: a splitmix64-style mix of (seed, step, id, index). Plain
 * C with 64-bit integer ops only, so the CUDA backend can use the same function (HM_HOSTDEV) and
 * masks are identical across backends and resumable with no RNG state.
 */
#ifndef HM_HOSTDEV
#define HM_HOSTDEV
#endif
static HM_HOSTDEV inline uint64_t hm_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static HM_HOSTDEV inline uint32_t hm_dropout_bits(uint64_t seed, uint64_t step, uint32_t id,
                                                  uint64_t i)
{
    uint64_t k = hm_mix64(seed + 0x9e3779b97f4a7c15ULL);
    k = hm_mix64(k ^ (step * 0xd1b54a32d192ed03ULL));
    k = hm_mix64(k ^ ((uint64_t)id * 0x8cb92ba72f3d8dd7ULL));
    return (uint32_t)(hm_mix64(k ^ i) >> 32);
}
/* Global element index of element 0 of an n-element dropout input (struct hm_runtime). */
static HM_HOSTDEV inline uint64_t hm_dropout_offset(uint64_t sample0, uint64_t samples, int64_t n)
{
    return samples ? sample0 * ((uint64_t)n / samples) : 0;
}
/* keep iff bits >= threshold, threshold = p * 2^32 (rounded down, saturated). */
static HM_HOSTDEV inline uint32_t hm_dropout_threshold(float p)
{
    double t = (double)p * 4294967296.0;
    return t >= 4294967295.0 ? 4294967295u : (uint32_t)t;
}

/* One row's cross-entropy, lse - logit[target], shared by the CPU and CUDA kernels: a target whose
 * logit is -inf has probability 0 and loss +inf (not -inf - -inf = NaN when the whole row is -inf). */
static HM_HOSTDEV inline double hm_ce_row_loss(float lse, float target_logit)
{
    return target_logit == -INFINITY ? (double)INFINITY : (double)lse - (double)target_logit;
}

#ifdef __cplusplus
}
#endif
#endif
