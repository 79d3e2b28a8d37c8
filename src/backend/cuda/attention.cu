/*
 * attention.cu - fused causal attention with grouped-query heads, flash-attention style:
 * tiles of 32 keys in shared memory, an online softmax per query row, only the row log-sum-exp
 * (B, NH, T) kept for backward, never a (T, S) matrix.
 *
 * q (B,T,NH,HD), k/v (B,S,NKV,HD); query head h reads kv head h / (NH/NKV); query t sits at
 * position pos + t and sees keys 0..pos+t; scale 1/sqrt(HD). Same semantics as the CPU backend.
 *
 * Work layout (cuda-host.h, hm_cuda_attn_plan): one warp per query row, one key per lane in a
 * tile; each lane owns DPL = HD/32 (rounded up to 1, 2, 4, 8) output dims in registers.
 *   forward:  block = 8 query rows of one (b, h); K/V tiles shared by the 8 warps.
 *   backward, deterministic without atomics, in three kernels:
 *     1. D[row] = dout . out                                  (one warp per row)
 *     2. dK, dV: block = one warp = 32 keys of one (b, kv head); it loops over every query row of
 *        every head of the group in a fixed order, accumulating dK/dV rows in shared memory; each
 *        key row is owned by one lane, so no two threads ever add into the same value.
 *     3. dQ: like the forward; each warp owns its query row.
 *   Scores are recomputed in kernels 2 and 3 (about 1.5x the FLOPs of an atomic dQ), the price of
 *   bit-reproducible gradients. These are scalar FP32 kernels (FFMA, no tensor cores).
 * bf16 with head dim 64 or 128 runs on the tensor-core kernels of flash-attention.cu instead (same
 * semantics, same D workspace); these stay for every other case and as their reference in the GPU
 * tests (HM_CUDA_ATTN=reference forces them).
 * Tensors are f32 or bf16 (template T); tiles in shared memory, scores and sums are f32.
 * Document masking: with doc_start (i32 (B, T), the forward node's src[3]) row t sees keys
 * doc_start[b, t] .. pos + t; key tiles wholly before a row's start are skipped by its warp.
 */
#include "common.cuh"
#include "flash-attention.cuh"

#define BC HM_CUDA_ATTN_BC
#define ROWS HM_CUDA_ATTN_ROWS

static enum hm_status geom(const struct hm_exec *ex, const struct hm_tensor *q,
                           const struct hm_tensor *k, const struct hm_tensor *doc,
                           struct hm_attn_geom *g, struct hm_cuda_attn_plan *plan)
{
    enum hm_status st = hm_attn_geom_init(ex, q, k, doc, g);
    if (st != HM_OK)
        return st;
    return hm_cuda_attn_plan(g->HD, plan);
}

/* Cooperative load of keys [j0, j0 + BC) of one kv head into a padded (BC, ld) tile; zeros past S. */
template <typename T>
static __device__ __forceinline__ void load_tile(float *dst, const T *src, int64_t j0, int64_t S, int64_t kstride,
                                                 int HD, int ld)
{
    for (int i = threadIdx.x; i < BC * HD; i += blockDim.x) {
        int r = i / HD, d = i % HD;
        int64_t j = j0 + r;
        dst[r * ld + d] = j < S ? hm_ld(src, j * kstride + d) : 0.0f;
    }
}

static __device__ __forceinline__ float dot_smem(const float *a, const float *b, int HD)
{
    float s = 0.0f;
    for (int d = 0; d < HD; d++)
        s += a[d] * b[d];
    return s;
}

/* ---- forward ------------------------------------------------------------------------------- */

template <int DPL, typename T>
static __global__ void attention_kernel(const T *q, const T *k, const T *v, const int32_t *doc, T *out,
                                        float *lse, int64_t T_, int64_t NH, int64_t S, int64_t NKV, int64_t group,
                                        int64_t pos, int HD, float scale)
{
    extern __shared__ float smem[];
    int ld = HD + 1;
    float *Ks = smem, *Vs = Ks + BC * ld, *Qs = Vs + BC * ld;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    int64_t b = blockIdx.z, h = blockIdx.y, kh = h / group;
    int64_t t0 = (int64_t)blockIdx.x * ROWS, t = t0 + w;
    bool valid = t < T_;
    int64_t L = pos + t + 1; /* keys lo .. L-1 are visible to this row */
    int64_t lo = doc && valid ? doc[b * T_ + t] : 0;
    int64_t t_last = t0 + ROWS < T_ ? t0 + ROWS - 1 : T_ - 1, Lmax = pos + t_last + 1;
    int64_t kstride = NKV * HD;
    const T *kb = k + (b * S * NKV + kh) * HD, *vb = v + (b * S * NKV + kh) * HD;
    float *qs = Qs + w * HD;
    if (valid)
        for (int d = lane; d < HD; d += 32)
            qs[d] = hm_ld(q, ((b * T_ + t) * NH + h) * HD + d) * scale;
    float o[DPL];
#pragma unroll
    for (int i = 0; i < DPL; i++)
        o[i] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int64_t j0 = 0; j0 < Lmax; j0 += BC) {
        __syncthreads();
        load_tile(Ks, kb, j0, S, kstride, HD, ld);
        load_tile(Vs, vb, j0, S, kstride, HD, ld);
        __syncthreads();
        if (!valid || j0 >= L || j0 + BC <= lo) /* a tile with no visible key keeps m finite */
            continue;
        int64_t j = j0 + lane;
        bool vis = j < L && j >= lo;
        float s = vis ? dot_smem(qs, Ks + lane * ld, HD) : -INFINITY;
        float m_new = fmaxf(m, hm_warp_max(s));
        float p = vis ? expf(s - m_new) : 0.0f, corr = expf(m - m_new);
        l = l * corr + hm_warp_sum(p);
#pragma unroll
        for (int i = 0; i < DPL; i++)
            o[i] *= corr;
        for (int jj = 0; jj < BC; jj++) {
            float pj = __shfl_sync(0xffffffffu, p, jj);
#pragma unroll
            for (int i = 0; i < DPL; i++) {
                int d = lane + 32 * i;
                if (d < HD)
                    o[i] += pj * Vs[jj * ld + d];
            }
        }
        m = m_new;
    }
    if (!valid)
        return;
    float inv = 1.0f / l;
    T *orow = out + ((b * T_ + t) * NH + h) * HD;
#pragma unroll
    for (int i = 0; i < DPL; i++) {
        int d = lane + 32 * i;
        if (d < HD)
            hm_st(orow, d, o[i] * inv);
    }
    if (lane == 0)
        lse[(b * NH + h) * T_ + t] = m + logf(l);
}

template <typename K> static void set_smem(K kernel, size_t bytes)
{
    if (bytes > 48 * 1024)
        HM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

template <int DPL, typename T>
static void attention_launch(const T *q, const T *k, const T *v, T *out, float *lse,
                             const struct hm_attn_geom *g, const struct hm_cuda_attn_plan *p,
                             cudaStream_t stream)
{
    dim3 grid((unsigned)((g->T + ROWS - 1) / ROWS), (unsigned)g->NH, (unsigned)g->B);
    set_smem(attention_kernel<DPL, T>, p->smem_fwd);
    attention_kernel<DPL, T><<<grid, ROWS * 32, p->smem_fwd, stream>>>(q, k, v, g->doc, out, lse, g->T, g->NH, g->S,
                                                                       g->NKV, g->group, g->pos, (int)g->HD,
                                                                       g->scale);
    HM_CUDA_LAUNCHED();
}

CUDA_KERNEL(attention)
{
    const struct hm_tensor *qt = dst->src[0], *kt = dst->src[1], *vt = dst->src[2];
    struct hm_attn_geom g;
    struct hm_cuda_attn_plan p;
    enum hm_status st = geom(ex, qt, kt, dst->src[3], &g, &p);
    if (st != HM_OK)
        return st;
    if (hm_cuda_flash_applies(ex, dst)) { /* bf16, head dim 64 or 128: tensor cores */
        hm_cuda_flash_forward(ex, dst, g.pos);
        return HM_OK;
    }
    cudaStream_t s = hm_cuda_stream(ex);
    float *lse = F32(dst->src[HM_ATTN_LSE]);
    HM_DISPATCH(dst->type, T, {
        const T *q = CPTR(T, qt), *k = CPTR(T, kt), *v = CPTR(T, vt);
        T *o = PTR(T, dst);
        switch (p.dpl) {
        case 1: attention_launch<1>(q, k, v, o, lse, &g, &p, s); break;
        case 2: attention_launch<2>(q, k, v, o, lse, &g, &p, s); break;
        case 4: attention_launch<4>(q, k, v, o, lse, &g, &p, s); break;
        default: attention_launch<8>(q, k, v, o, lse, &g, &p, s); break;
        }
    });
    return HM_OK;
}

/* ---- backward 1: D = rowsum(dout * out), laid out like lse (B, NH, T) ----------------------- */

template <typename T>
static __global__ void attn_rowdot_kernel(const T *dout, const T *out, float *D, int64_t B, int64_t T_, int64_t NH,
                                          int HD)
{
    int64_t row = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5); /* (b, t, h) order */
    int lane = threadIdx.x & 31;
    if (row >= B * T_ * NH)
        return;
    float s = 0.0f;
    for (int d = lane; d < HD; d += 32)
        s += hm_ld(dout, row * HD + d) * hm_ld(out, row * HD + d);
    s = hm_warp_sum(s);
    int64_t h = row % NH, bt = row / NH, b = bt / T_, t = bt % T_;
    if (lane == 0)
        D[(b * NH + h) * T_ + t] = s;
}

/* ---- backward 2: dK, dV; one warp = 32 keys of one (b, kv head) ---------------------------- */

template <typename T>
static __global__ void attn_dkdv_kernel(const T *dout, const T *q, const T *k, const T *v, const int32_t *doc,
                                        const float *lse, const float *D, T *dk, T *dv, int64_t T_, int64_t NH,
                                        int64_t S, int64_t NKV,
                                        int64_t group, int64_t pos, int HD, float scale, bool acc_k, bool acc_v)
{
    extern __shared__ float smem[];
    int ld = HD + 1, lane = threadIdx.x;
    float *Ks = smem, *Vs = Ks + BC * ld, *dKs = Vs + BC * ld, *dVs = dKs + BC * ld;
    float *qrow = dVs + BC * ld, *drow = qrow + HD;
    int64_t b = blockIdx.z, kh = blockIdx.y, j0 = (int64_t)blockIdx.x * BC, j = j0 + lane;
    int64_t kstride = NKV * HD;
    load_tile(Ks, k + (b * S * NKV + kh) * HD, j0, S, kstride, HD, ld);
    load_tile(Vs, v + (b * S * NKV + kh) * HD, j0, S, kstride, HD, ld);
    for (int i = lane; i < BC * ld; i += 32)
        dKs[i] = dVs[i] = 0.0f;
    __syncwarp();
    const float *kr = Ks + lane * ld, *vr = Vs + lane * ld;
    float *dkr = dKs + lane * ld, *dvr = dVs + lane * ld;
    int64_t t_first = j0 - pos > 0 ? j0 - pos : 0; /* earlier rows see none of these keys */
    for (int64_t h = kh * group; h < (kh + 1) * group; h++)
        for (int64_t t = t_first; t < T_; t++) {
            int64_t row = (b * T_ + t) * NH + h;
            __syncwarp();
            for (int d = lane; d < HD; d += 32) {
                qrow[d] = hm_ld(q, row * HD + d);
                drow[d] = hm_ld(dout, row * HD + d);
            }
            __syncwarp();
            if (j >= S || j > pos + t || (doc && j < doc[b * T_ + t]))
                continue;
            float l = lse[(b * NH + h) * T_ + t], Dt = D[(b * NH + h) * T_ + t];
            float p = expf(scale * dot_smem(qrow, kr, HD) - l);
            float ds = p * (dot_smem(drow, vr, HD) - Dt) * scale;
            for (int d = 0; d < HD; d++) {
                dvr[d] += p * drow[d];
                dkr[d] += ds * qrow[d];
            }
        }
    __syncwarp();
    for (int i = lane; i < BC * HD; i += 32) {
        int r = i / HD, d = i % HD;
        int64_t jj = j0 + r;
        if (jj >= S)
            continue;
        int64_t o = (b * S + jj) * kstride + kh * HD + d;
        hm_store(dk, o, dKs[r * ld + d], acc_k);
        hm_store(dv, o, dVs[r * ld + d], acc_v);
    }
}

/* ---- backward 3: dQ; like the forward, one warp per query row ------------------------------ */

template <int DPL, typename T>
static __global__ void attn_dq_kernel(const T *dout, const T *q, const T *k, const T *v, const int32_t *doc,
                                      const float *lse, const float *D, T *dq, int64_t T_, int64_t NH, int64_t S, int64_t NKV,
                                      int64_t group, int64_t pos, int HD, float scale, bool acc)
{
    extern __shared__ float smem[];
    int ld = HD + 1;
    float *Ks = smem, *Vs = Ks + BC * ld, *Qs = Vs + BC * ld, *Ds = Qs + ROWS * HD;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    int64_t b = blockIdx.z, h = blockIdx.y, kh = h / group;
    int64_t t0 = (int64_t)blockIdx.x * ROWS, t = t0 + w;
    bool valid = t < T_;
    int64_t L = pos + t + 1, lo = doc && valid ? doc[b * T_ + t] : 0;
    int64_t t_last = t0 + ROWS < T_ ? t0 + ROWS - 1 : T_ - 1, Lmax = pos + t_last + 1;
    int64_t kstride = NKV * HD, row = (b * T_ + t) * NH + h;
    const T *kb = k + (b * S * NKV + kh) * HD, *vb = v + (b * S * NKV + kh) * HD;
    float *qs = Qs + w * HD, *ds_row = Ds + w * HD;
    float l = 0.0f, Dt = 0.0f;
    if (valid) {
        for (int d = lane; d < HD; d += 32) {
            qs[d] = hm_ld(q, row * HD + d) * scale;
            ds_row[d] = hm_ld(dout, row * HD + d);
        }
        l = lse[(b * NH + h) * T_ + t];
        Dt = D[(b * NH + h) * T_ + t];
    }
    float acc_q[DPL];
#pragma unroll
    for (int i = 0; i < DPL; i++)
        acc_q[i] = 0.0f;
    for (int64_t j0 = 0; j0 < Lmax; j0 += BC) {
        __syncthreads();
        load_tile(Ks, kb, j0, S, kstride, HD, ld);
        load_tile(Vs, vb, j0, S, kstride, HD, ld);
        __syncthreads();
        if (!valid || j0 >= L || j0 + BC <= lo)
            continue;
        int64_t j = j0 + lane;
        float ds = 0.0f;
        if (j < L && j >= lo) {
            float p = expf(dot_smem(qs, Ks + lane * ld, HD) - l);
            ds = p * (dot_smem(ds_row, Vs + lane * ld, HD) - Dt) * scale;
        }
        for (int jj = 0; jj < BC; jj++) {
            float dj = __shfl_sync(0xffffffffu, ds, jj);
#pragma unroll
            for (int i = 0; i < DPL; i++) {
                int d = lane + 32 * i;
                if (d < HD)
                    acc_q[i] += dj * Ks[jj * ld + d];
            }
        }
    }
    if (!valid)
        return;
#pragma unroll
    for (int i = 0; i < DPL; i++) {
        int d = lane + 32 * i;
        if (d < HD)
            hm_store(dq, row * HD + d, acc_q[i], acc);
    }
}

template <int DPL, typename T>
static void attn_dq_launch(const T *dout, const T *q, const T *k, const T *v, const float *lse, const float *D, T *dq,
                           const struct hm_attn_geom *g, const struct hm_cuda_attn_plan *p,
                           bool acc, cudaStream_t stream)
{
    dim3 grid((unsigned)((g->T + ROWS - 1) / ROWS), (unsigned)g->NH, (unsigned)g->B);
    set_smem(attn_dq_kernel<DPL, T>, p->smem_bwd_q);
    attn_dq_kernel<DPL, T><<<grid, ROWS * 32, p->smem_bwd_q, stream>>>(dout, q, k, v, g->doc, lse, D, dq, g->T, g->NH,
                                                                       g->S,
                                                                       g->NKV, g->group, g->pos, (int)g->HD, g->scale,
                                                                       acc);
    HM_CUDA_LAUNCHED();
}

/* Kernels 2 and 3 of the scalar backward, after D. */
template <typename T>
static void attn_back_reference(const T *dout, const T *q, const T *k, const T *v, const float *lse,
                                const float *D, struct hm_tensor *dst, const struct hm_attn_geom *g,
                                const struct hm_cuda_attn_plan *p, cudaStream_t s)
{
    struct hm_tensor *dkt = dst->src[6], *dvt = dst->src[7];
    bool acc = dst->acc & 1;
    dim3 grid_kv((unsigned)((g->S + BC - 1) / BC), (unsigned)g->NKV, (unsigned)g->B);
    set_smem(attn_dkdv_kernel<T>, p->smem_bwd_kv);
    attn_dkdv_kernel<<<grid_kv, 32, p->smem_bwd_kv, s>>>(dout, q, k, v, g->doc, lse, D, PTR(T, dkt), PTR(T, dvt), g->T,
                                                         g->NH, g->S, g->NKV, g->group, g->pos, (int)g->HD,
                                                         g->scale, (dst->acc & 2) != 0, (dst->acc & 4) != 0);
    HM_CUDA_LAUNCHED();
    switch (p->dpl) {
    case 1: attn_dq_launch<1>(dout, q, k, v, lse, D, PTR(T, dst), g, p, acc, s); break;
    case 2: attn_dq_launch<2>(dout, q, k, v, lse, D, PTR(T, dst), g, p, acc, s); break;
    case 4: attn_dq_launch<4>(dout, q, k, v, lse, D, PTR(T, dst), g, p, acc, s); break;
    default: attn_dq_launch<8>(dout, q, k, v, lse, D, PTR(T, dst), g, p, acc, s); break;
    }
}

CUDA_KERNEL(attention_back)
{
    const struct hm_tensor *dot_ = dst->src[0], *qt = dst->src[1], *kt = dst->src[2];
    const struct hm_tensor *vt = dst->src[3], *ot = dst->src[4], *lt = dst->src[5];
    struct hm_attn_geom g;
    struct hm_cuda_attn_plan p;
    enum hm_status st = geom(ex, qt, kt, ot->src[3], &g, &p); /* out is the forward node */
    if (st != HM_OK)
        return st;
    HM_ASSERT(ex->ws_bytes >= hm_cuda_workspace_bytes(dst, 0));
    cudaStream_t s = hm_cuda_stream(ex);
    float *D = (float *)ex->ws;
    int64_t rows = g.B * g.T * g.NH;
    const float *lse = CF32(lt);
    bool flash = hm_cuda_flash_applies(ex, dst);
    HM_DISPATCH(dst->type, T, {
        const T *dout = CPTR(T, dot_), *q = CPTR(T, qt), *k = CPTR(T, kt), *v = CPTR(T, vt);
        attn_rowdot_kernel<<<(unsigned)((rows + 7) / 8), 256, 0, s>>>(dout, CPTR(T, ot), D, g.B, g.T, g.NH,
                                                                      (int)g.HD);
        HM_CUDA_LAUNCHED();
        if (flash) /* bf16, head dim 64 or 128: tensor cores, same D */
            hm_cuda_flash_backward(ex, dst, g.pos, D);
        else
            attn_back_reference(dout, q, k, v, lse, D, dst, &g, &p, s);
    });
    return HM_OK;
}
