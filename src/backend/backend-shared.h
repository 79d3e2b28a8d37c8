/*
 * backend-shared.h - arithmetic the CPU and CUDA backends must do identically, written once so
 * the two cannot drift: the attention geometry and the KV-cache write range (host side), and the
 * AdamW element update (host and device). C11 and CUDA; private to src/backend/.
 */
#ifndef HERMES_BACKEND_SHARED_H
#define HERMES_BACKEND_SHARED_H

#include "backend/backend-impl.h"
#include "hermes/ops.h"

#include <math.h>

#ifndef HM_HOSTDEV /* common.cuh defines it for CUDA */
#ifdef __CUDACC__
#define HM_HOSTDEV __host__ __device__
#else
#define HM_HOSTDEV
#endif
#endif

/* Attention shapes: q (B,T,NH,HD), k/v (B,S,NKV,HD); query t sits at position pos + t. */
struct hm_attn_geom {
    int64_t B, T, NH, HD, S, NKV, group, pos;
    float scale;
    const int32_t *doc; /* doc_start (B, T) or NULL: every row starts at key 0 */
};

/* Fill g from q, k and the optional doc_start tensor; HM_ERR_USAGE if the rows pass the keys. */
static inline enum hm_status hm_attn_geom_init(const struct hm_exec *ex, const struct hm_tensor *q,
                                               const struct hm_tensor *k,
                                               const struct hm_tensor *doc, struct hm_attn_geom *g)
{
    g->B = q->shape[0], g->T = q->shape[1], g->NH = q->shape[2], g->HD = q->shape[3];
    g->S = k->shape[1], g->NKV = k->shape[2], g->group = g->NH / g->NKV;
    g->pos = ex->rt->pos;
    g->scale = 1.0f / sqrtf((float)g->HD);
    g->doc = doc ? (const int32_t *)doc->data : NULL;
    if (g->pos < 0 || g->pos + g->T > g->S)
        return hm_fail(HM_ERR_USAGE, "attention: positions %lld..%lld exceed the %lld keys available",
                       (long long)g->pos, (long long)(g->pos + g->T - 1), (long long)g->S);
    return HM_OK;
}

/* KV_WRITE (dst = cache (B,S,NKV,HD), src[1] = x (B,T,NKV,HD)): the shapes, the element size
 * (a copy: f32 and bf16 caches alike), and the check that rows pos..pos+T-1 fit the cache. */
struct hm_kv_write_geom {
    const struct hm_tensor *x;
    int64_t B, T, S, row, pos;
    size_t es;
};

static inline enum hm_status hm_kv_write_geom_init(const struct hm_exec *ex,
                                                   const struct hm_tensor *dst,
                                                   struct hm_kv_write_geom *g)
{
    const struct hm_tensor *x = g->x = dst->src[1];
    g->B = x->shape[0], g->T = x->shape[1], g->S = dst->shape[1];
    g->row = x->shape[2] * x->shape[3], g->pos = ex->rt->pos;
    g->es = hm_dtype_size(x->type);
    if (g->pos < 0 || g->pos + g->T > g->S)
        return hm_fail(HM_ERR_USAGE, "kv_write: positions %lld..%lld exceed the cache length %lld",
                       (long long)g->pos, (long long)(g->pos + g->T - 1), (long long)g->S);
    return HM_OK;
}

/* One AdamW element; bc1/bc2 are the bias corrections 1 - beta^t, rounded to f32 on the host;
 * gs scales the gradient first (clipping: the same product a pass over the gradients stored). */
#ifdef __CUDACC__
#define HM_SIMD_INLINE
#else /* inlined into the CPU's OpenMP simd loop, which GCC otherwise leaves a scalar call */
#define HM_SIMD_INLINE __attribute__((always_inline))
#endif
static inline HM_HOSTDEV HM_SIMD_INLINE void hm_adamw_elem(float *p, float g, float *m, float *v, float lr,
                                            float b1, float b2, float eps, float wd, float bc1,
                                            float bc2, float gs)
{
    g *= gs;
    float mi = b1 * *m + (1.0f - b1) * g;
    float vi = b2 * *v + (1.0f - b2) * g * g;
    *m = mi;
    *v = vi;
    float mh = mi / bc1, vh = vi / bc2;
    *p -= lr * (mh / (sqrtf(vh) + eps) + wd * *p);
}

#endif
