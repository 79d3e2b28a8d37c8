/*
 * flash-attention.cu - causal GQA attention on the tensor cores, FlashAttention-2 structure:
 * bf16 operands, f32 accumulation (mma.sync.m16n8k16), head dims 64 and 128. Same semantics as
 * attention.cu (the reference): q (B,T,NH,HD), k/v (B,S,NKV,HD), query t at position pos + t sees
 * keys 0..pos+t, query head h reads kv head h / group, lse (B,NH,T) kept for backward.
 *
 * forward: a block owns 64 query rows of one (b, h), 16 per warp. K/V tiles of BC keys stream
 *   through shared memory with cp.async, two stages deep, so the next tile loads while this one
 *   is multiplied. S = Q K^T and the online softmax live in registers (the mma accumulator layout);
 *   P is re-packed in registers as the A operand of O += P V, V read with ldmatrix.trans.
 * backward, deterministic (no atomics), as in attention.cu but on tensor cores:
 *   dK/dV: a block owns 64 keys of one (b, kv head), 16 per warp, and streams the query tiles of
 *     every head of the group in a fixed order (Q, dO, lse, D double-buffered); per warp
 *     S^T = K Q^T, P^T, dV += P^T dO, dP^T = V dO^T, dS^T = P^T (dP^T - D) scale, dK += dS^T Q.
 *   dQ: like the forward; per warp S, P, dP = dO V^T, dS, dQ += dS K.
 *   Scores are recomputed in both (the price of reproducible gradients without atomics).
 * P and dS are rounded to bf16 before their products, as in FlashAttention-2; row sums and the
 * softmax statistics stay f32.
 *
 * mma.sync m16n8k16 fragments (PTX ISA), g = lane / 4, c = lane % 4:
 *   A (16x16, row): a0 = A[g][2c..2c+1], a1 = A[g+8][2c..], a2 = A[g][2c+8..], a3 = A[g+8][2c+8..]
 *   B (16x8, col):  b0 = B[2c..2c+1][g], b1 = B[2c+8..2c+9][g]
 *   C (16x8):       c0,c1 = C[g][2c..2c+1], c2,c3 = C[g+8][2c..2c+1]
 * so the C fragments of two adjacent 8-column tiles are exactly the A fragment of one 16-wide
 * chunk (the FlashAttention-2 register trick), and B = X^T for a row-major X in shared memory is
 * two 32-bit loads, while B = X (k along X's rows) needs ldmatrix.trans.
 * Shared-memory rows are padded by 16 bytes: consecutive rows start 4 banks apart, so the 8 rows
 * of an ldmatrix and the 8 row groups of a fragment load hit 32 different banks.
 */
#include "flash-attention.cuh"

#define FA_WARPS 4
#define FA_THREADS (FA_WARPS * 32)
#define FA_ROWS (FA_WARPS * 16) /* query rows (forward, dQ) or keys (dK/dV) per block */

typedef uint16_t bf16_t; /* storage: the bits of a bf16 */

/* ---- PTX wrappers ---------------------------------------------------------------------------- */

static __device__ __forceinline__ uint32_t smem_addr(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16 bytes global -> shared, asynchronously; zeros instead when !valid (src must still be a
 * mapped address, callers pass the tensor's base). */
static __device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(valid ? 16 : 0));
}
static __device__ __forceinline__ void cp_async_commit(void)
{
    asm volatile("cp.async.commit_group;\n" ::);
}
template <int N> static __device__ __forceinline__ void cp_async_wait(void)
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

static __device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
                 "{%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Four 8x8 bf16 matrices from shared memory; lane l gives the address of row l % 8 of matrix l / 8. */
static __device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const bf16_t *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}
static __device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const bf16_t *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

static __device__ __forceinline__ uint32_t pack_bf16(float lo, float hi)
{
    return (uint32_t)hm_cuda_f32_to_bf16_bits(__float_as_uint(lo)) |
           (uint32_t)hm_cuda_f32_to_bf16_bits(__float_as_uint(hi)) << 16;
}
static __device__ __forceinline__ float bf16_lo(uint32_t v)
{
    return __uint_as_float(v << 16);
}
static __device__ __forceinline__ float bf16_hi(uint32_t v)
{
    return __uint_as_float(v & 0xffff0000u);
}

static __device__ __forceinline__ uint32_t lds32(const bf16_t *p)
{
    return *(const uint32_t *)p;
}

/* ---- fragment helpers ------------------------------------------------------------------------ */

/* ldmatrix addressing shared by the A operand (x4) and the transposed B operand (x4.trans) over a
 * 16x16 block at (row0, col0) of a tile with leading dimension LD: matrix i = (rows +8 if i is
 * odd, cols +8 if i >= 2). */
template <int LD>
static __device__ __forceinline__ const bf16_t *frag_row(const bf16_t *tile, int row0, int col0, int lane)
{
    return tile + (row0 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + col0 + (lane >> 4) * 8;
}

/* A fragments of 16 rows x HD of a row-major global matrix (row stride `ld` elements); rows at or
 * past `rows` read as zero. */
template <int HD>
static __device__ __forceinline__ void load_a_global(uint32_t a[HD / 16][4], const bf16_t *base, int64_t ld,
                                                     int64_t row0, int64_t rows, int lane)
{
    int g = lane >> 2, c = lane & 3;
    int64_t r0 = row0 + g, r1 = r0 + 8;
    const bf16_t *p0 = base + r0 * ld, *p1 = base + r1 * ld;
#pragma unroll
    for (int kc = 0; kc < HD / 16; kc++) {
        int col = kc * 16 + 2 * c;
        a[kc][0] = r0 < rows ? *(const uint32_t *)(p0 + col) : 0u;
        a[kc][1] = r1 < rows ? *(const uint32_t *)(p1 + col) : 0u;
        a[kc][2] = r0 < rows ? *(const uint32_t *)(p0 + col + 8) : 0u;
        a[kc][3] = r1 < rows ? *(const uint32_t *)(p1 + col + 8) : 0u;
    }
}

/* acc[n] (16 x 8N) += A (16 x HD, fragments) * X^T where X is N*8 rows x HD in shared memory. */
template <int HD, int N, int LD>
static __device__ __forceinline__ void mma_a_xt(float acc[N][4], const uint32_t a[HD / 16][4], const bf16_t *x,
                                                int lane)
{
    int g = lane >> 2, c = lane & 3;
#pragma unroll
    for (int n = 0; n < N; n++) {
        const bf16_t *row = x + (n * 8 + g) * LD + 2 * c;
#pragma unroll
        for (int kc = 0; kc < HD / 16; kc++)
            mma_bf16(acc[n], a[kc], lds32(row + kc * 16), lds32(row + kc * 16 + 8));
    }
}

/* acc (16 x HD) += P (16 x 16K, C fragments in f32, rounded to bf16 here) * X where X is 16K rows
 * x HD in shared memory (k along X's rows: ldmatrix.trans). */
template <int HD, int K16, int LD>
static __device__ __forceinline__ void mma_p_x(float acc[HD / 8][4], const float p[2 * K16][4], const bf16_t *x,
                                               int lane)
{
#pragma unroll
    for (int kk = 0; kk < K16; kk++) {
        uint32_t a[4] = {pack_bf16(p[2 * kk][0], p[2 * kk][1]), pack_bf16(p[2 * kk][2], p[2 * kk][3]),
                         pack_bf16(p[2 * kk + 1][0], p[2 * kk + 1][1]),
                         pack_bf16(p[2 * kk + 1][2], p[2 * kk + 1][3])};
#pragma unroll
        for (int dn = 0; dn < HD / 16; dn++) {
            uint32_t b[4];
            ldmatrix_x4_trans(b, frag_row<LD>(x, kk * 16, dn * 16, lane));
            mma_bf16(acc[2 * dn], a, b[0], b[1]);
            mma_bf16(acc[2 * dn + 1], a, b[2], b[3]);
        }
    }
}

template <int N> static __device__ __forceinline__ void zero(float acc[N][4])
{
#pragma unroll
    for (int n = 0; n < N; n++)
        acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
}

/* Cooperative asynchronous load of `rows` rows x HD of a row-major global matrix (row stride ld)
 * into a padded tile; rows at or past `valid` are zero-filled. */
template <int HD, int LD>
static __device__ __forceinline__ void load_tile_async(bf16_t *tile, const bf16_t *base, int64_t ld, int64_t row0,
                                                       int64_t valid, int rows)
{
    const int chunks = HD / 8; /* 16-byte pieces per row */
    for (int i = threadIdx.x; i < rows * chunks; i += FA_THREADS) {
        int r = i / chunks, ch = i % chunks;
        bool ok = row0 + r < valid;
        const bf16_t *src = ok ? base + (row0 + r) * ld + ch * 8 : base;
        cp_async16(tile + r * LD + ch * 8, src, ok);
    }
}

/* Max / sum over the 4 lanes that share a fragment row. */
static __device__ __forceinline__ float quad_max(float v)
{
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
static __device__ __forceinline__ float quad_sum(float v)
{
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

/* Stores a 16 x HD f32 accumulator as bf16 rows (row stride ld), y = v or y += v when acc. */
template <int HD>
static __device__ __forceinline__ void store_rows(bf16_t *base, int64_t ld, int64_t row0, int64_t rows,
                                                  const float o[HD / 8][4], float s0, float s1, bool acc, int lane)
{
    int g = lane >> 2, c = lane & 3;
#pragma unroll
    for (int h = 0; h < 2; h++) {
        int64_t r = row0 + g + 8 * h;
        if (r >= rows)
            continue;
        float s = h ? s1 : s0;
        bf16_t *row = base + r * ld + 2 * c;
#pragma unroll
        for (int n = 0; n < HD / 8; n++) {
            float v0 = o[n][2 * h] * s, v1 = o[n][2 * h + 1] * s;
            uint32_t *p = (uint32_t *)(row + n * 8);
            if (acc) {
                uint32_t old = *p;
                v0 += bf16_lo(old);
                v1 += bf16_hi(old);
            }
            *p = pack_bf16(v0, v1);
        }
    }
}

/* K/V tile `it` (keys it * BC ..) into stage st of the two-stage K and V buffers, as one group. */
template <int HD, int BC>
static __device__ __forceinline__ void kv_tiles_load(bf16_t *Ks, bf16_t *Vs, const bf16_t *kb, const bf16_t *vb,
                                                     int64_t kld, int64_t S, int it, int st)
{
    const int LD = HD + 8;
    load_tile_async<HD, LD>(Ks + st * BC * LD, kb, kld, (int64_t)it * BC, S, BC);
    load_tile_async<HD, LD>(Vs + st * BC * LD, vb, kld, (int64_t)it * BC, S, BC);
    cp_async_commit();
}

/* Starts tile it + 1 into the other stage, then waits until tile it (stage it & 1) has landed and
 * every thread sees it. The caller ends each iteration with __syncthreads() before the stage it
 * read is overwritten. */
template <int HD, int BC>
static __device__ __forceinline__ void kv_tiles_next(bf16_t *Ks, bf16_t *Vs, const bf16_t *kb, const bf16_t *vb,
                                                     int64_t kld, int64_t S, int it, int n_tiles)
{
    if (it + 1 < n_tiles) {
        kv_tiles_load<HD, BC>(Ks, Vs, kb, vb, kld, S, it + 1, (it + 1) & 1);
        cp_async_wait<1>();
    } else {
        cp_async_wait<0>();
    }
    __syncthreads();
}

/* ---- forward --------------------------------------------------------------------------------- */

struct fa_fwd_args {
    const bf16_t *q, *k, *v;
    bf16_t *out;
    float *lse;
    int64_t T, NH, S, NKV, group, pos;
    float scale;
};

template <int HD, int BC>
static __global__ void __launch_bounds__(FA_THREADS) fa_forward_kernel(struct fa_fwd_args a)
{
    const int LD = HD + 8;
    extern __shared__ __align__(16) unsigned char fa_smem[];
    bf16_t *Ks = (bf16_t *)fa_smem, *Vs = Ks + 2 * BC * LD; /* [2][BC][LD] each */
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
    int64_t b = blockIdx.z, h = blockIdx.y, kh = h / a.group;
    int64_t t0 = (int64_t)blockIdx.x * FA_ROWS, tw = t0 + 16 * w; /* this warp's first row */
    int64_t t_last = t0 + FA_ROWS < a.T ? t0 + FA_ROWS - 1 : a.T - 1;
    int64_t n_keys = a.pos + t_last + 1; /* keys any row of the block sees (<= S) */
    int n_tiles = (int)((n_keys + BC - 1) / BC);
    int64_t qld = a.NH * HD, kld = a.NKV * HD;
    const bf16_t *kb = a.k + (b * a.S * a.NKV + kh) * HD, *vb = a.v + (b * a.S * a.NKV + kh) * HD;

    kv_tiles_load<HD, BC>(Ks, Vs, kb, vb, kld, a.S, 0, 0);

    uint32_t qa[HD / 16][4];
    load_a_global<HD>(qa, a.q + (b * a.T * a.NH + h) * HD, qld, tw, a.T, lane);
    float o[HD / 8][4];
    zero<HD / 8>(o);
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    int64_t last_pos = a.pos + tw + 15; /* the warp's last row sees keys up to here */

    for (int it = 0; it < n_tiles; it++) {
        int st = it & 1;
        kv_tiles_next<HD, BC>(Ks, Vs, kb, vb, kld, a.S, it, n_tiles);
        int64_t j0 = (int64_t)it * BC;
        if (j0 <= last_pos && tw < a.T) {
            float s[BC / 8][4];
            zero<BC / 8>(s);
            mma_a_xt<HD, BC / 8, LD>(s, qa, Ks + st * BC * LD, lane);
            bool diag = j0 + BC - 1 > a.pos + tw; /* some key of the tile is after some row */
#pragma unroll
            for (int hh = 0; hh < 2; hh++) {
                int64_t row_pos = a.pos + tw + g + 8 * hh;
                float mx = -INFINITY;
#pragma unroll
                for (int n = 0; n < BC / 8; n++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        float v = s[n][2 * hh + e] * a.scale;
                        if (diag && j0 + n * 8 + 2 * c + e > row_pos)
                            v = -INFINITY;
                        s[n][2 * hh + e] = v;
                        mx = fmaxf(mx, v);
                    }
                float m_new = fmaxf(m[hh], quad_max(mx));
                float m_use = m_new == -INFINITY ? 0.0f : m_new; /* a row with no key yet */
                float corr = __expf(m[hh] - m_use), sum = 0.0f;
#pragma unroll
                for (int n = 0; n < BC / 8; n++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        float p = __expf(s[n][2 * hh + e] - m_use);
                        s[n][2 * hh + e] = p;
                        sum += p;
                    }
                l[hh] = l[hh] * corr + sum; /* per-lane partial: summed over the quad at the end */
#pragma unroll
                for (int n = 0; n < HD / 8; n++) {
                    o[n][2 * hh] *= corr;
                    o[n][2 * hh + 1] *= corr;
                }
                m[hh] = m_new;
            }
            mma_p_x<HD, BC / 16, LD>(o, s, Vs + st * BC * LD, lane);
        }
        __syncthreads(); /* the next iteration overwrites the stage just read */
    }
    if (tw >= a.T)
        return;
    float l0 = quad_sum(l[0]), l1 = quad_sum(l[1]);
    store_rows<HD>(a.out + (b * a.T * a.NH + h) * HD, qld, tw, a.T, o, 1.0f / l0, 1.0f / l1, false, lane);
    if (c == 0) {
        float *lr = a.lse + (b * a.NH + h) * a.T;
        if (tw + g < a.T)
            lr[tw + g] = m[0] + logf(l0);
        if (tw + g + 8 < a.T)
            lr[tw + g + 8] = m[1] + logf(l1);
    }
}

/* ---- backward: dQ ----------------------------------------------------------------------------- */

struct fa_bwd_args {
    const bf16_t *dout, *q, *k, *v;
    const float *lse, *D;
    bf16_t *dq, *dk, *dv;
    int64_t T, NH, S, NKV, group, pos;
    float scale;
    bool acc_q, acc_k, acc_v;
};

/* p = exp(s * scale - lse) with the causal mask, then ds = p (dp - D) scale, in place: s becomes
 * p and dp becomes ds. Rows are queries (row_pos: position of fragment row g, then g + 8) and
 * columns keys from j0, or the transpose (keys_are_rows) as in the dK/dV kernel. */
template <int N>
static __device__ __forceinline__ void softmax_grad(float s[N][4], float dp[N][4], const float lse_r[2],
                                                    const float D_r[2], int64_t row_pos, int64_t j0, float scale,
                                                    int lane)
{
    int g = lane >> 2, c = lane & 3;
#pragma unroll
    for (int hh = 0; hh < 2; hh++)
#pragma unroll
        for (int n = 0; n < N; n++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                int i = 2 * hh + e;
                bool visible = j0 + n * 8 + 2 * c + e <= row_pos + g + 8 * hh;
                float p = visible ? __expf(s[n][i] * scale - lse_r[hh]) : 0.0f;
                s[n][i] = p;
                dp[n][i] = p * (dp[n][i] - D_r[hh]) * scale;
            }
}

template <int HD, int BC>
static __global__ void __launch_bounds__(FA_THREADS) fa_dq_kernel(struct fa_bwd_args a)
{
    const int LD = HD + 8;
    extern __shared__ __align__(16) unsigned char fa_smem[];
    bf16_t *Ks = (bf16_t *)fa_smem, *Vs = Ks + 2 * BC * LD;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, g = lane >> 2;
    int64_t b = blockIdx.z, h = blockIdx.y, kh = h / a.group;
    int64_t t0 = (int64_t)blockIdx.x * FA_ROWS, tw = t0 + 16 * w;
    int64_t t_last = t0 + FA_ROWS < a.T ? t0 + FA_ROWS - 1 : a.T - 1;
    int n_tiles = (int)((a.pos + t_last + 1 + BC - 1) / BC);
    int64_t qld = a.NH * HD, kld = a.NKV * HD;
    const bf16_t *kb = a.k + (b * a.S * a.NKV + kh) * HD, *vb = a.v + (b * a.S * a.NKV + kh) * HD;

    kv_tiles_load<HD, BC>(Ks, Vs, kb, vb, kld, a.S, 0, 0);

    int64_t qoff = (b * a.T * a.NH + h) * HD;
    uint32_t qa[HD / 16][4], da[HD / 16][4];
    load_a_global<HD>(qa, a.q + qoff, qld, tw, a.T, lane);
    load_a_global<HD>(da, a.dout + qoff, qld, tw, a.T, lane);
    float lse_r[2], D_r[2];
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        int64_t t = tw + g + 8 * hh;
        const int64_t i = (b * a.NH + h) * a.T + t;
        lse_r[hh] = t < a.T ? a.lse[i] : INFINITY; /* padding rows: p = 0 */
        D_r[hh] = t < a.T ? a.D[i] : 0.0f;
    }
    float dq[HD / 8][4];
    zero<HD / 8>(dq);
    int64_t last_pos = a.pos + tw + 15;

    for (int it = 0; it < n_tiles; it++) {
        int st = it & 1;
        kv_tiles_next<HD, BC>(Ks, Vs, kb, vb, kld, a.S, it, n_tiles);
        int64_t j0 = (int64_t)it * BC;
        if (j0 <= last_pos && tw < a.T) {
            float s[BC / 8][4], dp[BC / 8][4];
            zero<BC / 8>(s);
            zero<BC / 8>(dp);
            mma_a_xt<HD, BC / 8, LD>(s, qa, Ks + st * BC * LD, lane);
            mma_a_xt<HD, BC / 8, LD>(dp, da, Vs + st * BC * LD, lane);
            softmax_grad<BC / 8>(s, dp, lse_r, D_r, a.pos + tw, j0, a.scale, lane);
            mma_p_x<HD, BC / 16, LD>(dq, dp, Ks + st * BC * LD, lane);
        }
        __syncthreads();
    }
    if (tw < a.T)
        store_rows<HD>(a.dq + qoff, qld, tw, a.T, dq, 1.0f, 1.0f, a.acc_q, lane);
}

/* ---- backward: dK, dV ------------------------------------------------------------------------- */

/* Keys are the fragment rows here: S^T[key][query], visible when key <= pos + query. */
template <int N>
static __device__ __forceinline__ void softmax_grad_t(float s[N][4], float dp[N][4], const float *lse_t,
                                                      const float *D_t, int64_t key0, int64_t q_pos0, float scale,
                                                      int lane)
{
    int g = lane >> 2, c = lane & 3;
#pragma unroll
    for (int n = 0; n < N; n++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
            int qi = n * 8 + 2 * c + e; /* query within the tile */
            float lq = lse_t[qi], Dq = D_t[qi];
#pragma unroll
            for (int hh = 0; hh < 2; hh++) {
                int i = 2 * hh + e;
                bool visible = key0 + g + 8 * hh <= q_pos0 + qi;
                float p = visible ? __expf(s[n][i] * scale - lq) : 0.0f;
                s[n][i] = p;
                dp[n][i] = p * (dp[n][i] - Dq) * scale;
            }
        }
}

template <int HD, int BQ>
static __global__ void __launch_bounds__(FA_THREADS) fa_dkdv_kernel(struct fa_bwd_args a)
{
    const int LD = HD + 8;
    extern __shared__ __align__(16) unsigned char fa_smem[];
    bf16_t *Kt = (bf16_t *)fa_smem, *Vt = Kt + FA_ROWS * LD;   /* this block's keys, [FA_ROWS][LD] */
    bf16_t *Qs = Vt + FA_ROWS * LD, *dOs = Qs + 2 * BQ * LD;   /* [2][BQ][LD] each */
    float *lse_s = (float *)(dOs + 2 * BQ * LD), *D_s = lse_s + 2 * BQ; /* [2][BQ] each */
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    int64_t b = blockIdx.z, kh = blockIdx.y, j0 = (int64_t)blockIdx.x * FA_ROWS, jw = j0 + 16 * w;
    int64_t qld = a.NH * HD, kld = a.NKV * HD, koff = (b * a.S * a.NKV + kh) * HD;
    int64_t t_first = j0 - a.pos > 0 ? j0 - a.pos : 0; /* earlier queries see none of these keys */
    int q_tile0 = (int)(t_first / BQ), n_q = (int)((a.T + BQ - 1) / BQ) - q_tile0;
    int n_it = n_q > 0 ? n_q * (int)a.group : 0;

    load_tile_async<HD, LD>(Kt, a.k + koff, kld, j0, a.S, FA_ROWS);
    load_tile_async<HD, LD>(Vt, a.v + koff, kld, j0, a.S, FA_ROWS);
    cp_async_commit();

    /* Issues the loads of iteration `it` (head kh * group + it / n_q, query tile q_tile0 + it % n_q)
     * into stage st: Q and dO asynchronously, lse and D (f32, not 16-byte aligned) directly. */
    auto issue = [&](int it, int st) {
        int64_t hq = kh * a.group + it / n_q, qt0 = (int64_t)(q_tile0 + it % n_q) * BQ;
        int64_t off = (b * a.T * a.NH + hq) * HD;
        load_tile_async<HD, LD>(Qs + st * BQ * LD, a.q + off, qld, qt0, a.T, BQ);
        load_tile_async<HD, LD>(dOs + st * BQ * LD, a.dout + off, qld, qt0, a.T, BQ);
        for (int i = threadIdx.x; i < BQ; i += FA_THREADS) {
            int64_t t = qt0 + i, r = (b * a.NH + hq) * a.T + t;
            lse_s[st * BQ + i] = t < a.T ? a.lse[r] : INFINITY; /* padding queries: p = 0 */
            D_s[st * BQ + i] = t < a.T ? a.D[r] : 0.0f;
        }
        cp_async_commit();
    };
    if (n_it > 0)
        issue(0, 0);

    float dk[HD / 8][4], dv[HD / 8][4];
    zero<HD / 8>(dk);
    zero<HD / 8>(dv);
    for (int it = 0; it < n_it; it++) {
        int st = it & 1;
        if (it + 1 < n_it) {
            issue(it + 1, st ^ 1);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        int64_t qt0 = (int64_t)(q_tile0 + it % n_q) * BQ, q_last = qt0 + BQ - 1;
        if (jw <= a.pos + q_last && jw < a.S) { /* some query of the tile sees some key of the warp */
            const bf16_t *Q = Qs + st * BQ * LD, *dO = dOs + st * BQ * LD;
            float s[BQ / 8][4], dp[BQ / 8][4];
            zero<BQ / 8>(s);
            zero<BQ / 8>(dp);
#pragma unroll
            for (int kc = 0; kc < HD / 16; kc++) {
                uint32_t ka[4], va[4];
                ldmatrix_x4(ka, frag_row<LD>(Kt, 16 * w, kc * 16, lane));
                ldmatrix_x4(va, frag_row<LD>(Vt, 16 * w, kc * 16, lane));
                int g = lane >> 2, c = lane & 3;
#pragma unroll
                for (int n = 0; n < BQ / 8; n++) {
                    const bf16_t *qr = Q + (n * 8 + g) * LD + kc * 16 + 2 * c;
                    const bf16_t *dr = dO + (n * 8 + g) * LD + kc * 16 + 2 * c;
                    mma_bf16(s[n], ka, lds32(qr), lds32(qr + 8));
                    mma_bf16(dp[n], va, lds32(dr), lds32(dr + 8));
                }
            }
            softmax_grad_t<BQ / 8>(s, dp, lse_s + st * BQ, D_s + st * BQ, jw, a.pos + qt0, a.scale, lane);
            mma_p_x<HD, BQ / 16, LD>(dv, s, dO, lane);
            mma_p_x<HD, BQ / 16, LD>(dk, dp, Q, lane);
        }
        __syncthreads();
    }
    if (n_it == 0)
        cp_async_wait<0>(); /* the K/V group: never leave a copy in flight */
    if (jw >= a.S)
        return;
    store_rows<HD>(a.dk + koff, kld, jw, a.S, dk, 1.0f, 1.0f, a.acc_k, lane);
    store_rows<HD>(a.dv + koff, kld, jw, a.S, dv, 1.0f, 1.0f, a.acc_v, lane);
}

/* ---- launch ----------------------------------------------------------------------------------- */

/* Tile widths: 64 keys (forward, dQ) or queries (dK/dV) for HD 64; 32 for HD 128, which keeps the
 * f32 accumulators and the score fragments of a warp within 255 registers without spilling. */
template <int HD> struct fa_tiles {
    static const int BC = HD == 64 ? 64 : 32;
};

template <int HD> static size_t smem_fwd(void)
{
    return (size_t)4 * fa_tiles<HD>::BC * (HD + 8) * sizeof(bf16_t);
}
template <int HD> static size_t smem_dkdv(void)
{
    const int BQ = fa_tiles<HD>::BC;
    return (size_t)(2 * FA_ROWS + 4 * BQ) * (HD + 8) * sizeof(bf16_t) + 4 * BQ * sizeof(float);
}

template <typename K> static void set_smem(K kernel, size_t bytes)
{
    if (bytes > 48 * 1024)
        HM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

static bool aligned16(const struct hm_tensor *t)
{
    return t && ((uintptr_t)t->data & 15) == 0;
}

bool hm_cuda_flash_applies(const struct hm_exec *ex, const struct hm_tensor *dst)
{
    const struct hm_cuda_ctx *cx = hm_cuda_ctx_of(ex);
    bool back = dst->op == HM_OP_ATTENTION_BACK;
    const struct hm_tensor *q = dst->src[back ? 1 : 0];
    int64_t hd = q->shape[3];
    if (cx->attn_reference || dst->type != HM_DTYPE_BF16 || (hd != 64 && hd != 128))
        return false;
    size_t need = hd == 64 ? (back ? smem_dkdv<64>() : smem_fwd<64>()) : (back ? smem_dkdv<128>() : smem_fwd<128>());
    if (need > cx->smem_optin)
        return false;
    /* Document masking (doc_start: the forward node's src[3]) runs on the reference kernels only. */
    if ((back ? dst->src[4]->src[3] : dst->src[3]) != NULL)
        return false;
    int n = back ? 8 : 3; /* every tensor a kernel reads or writes with 16-byte (or 4-byte) accesses */
    for (int i = 0; i < n; i++)
        if (!(back && i == 5) && !aligned16(dst->src[i])) /* lse is f32, read per element */
            return false;
    return aligned16(dst);
}

template <int HD>
static void launch_forward(const struct fa_fwd_args *a, int64_t B, cudaStream_t s)
{
    const int BC = fa_tiles<HD>::BC;
    dim3 grid((unsigned)((a->T + FA_ROWS - 1) / FA_ROWS), (unsigned)a->NH, (unsigned)B);
    set_smem(fa_forward_kernel<HD, BC>, smem_fwd<HD>());
    fa_forward_kernel<HD, BC><<<grid, FA_THREADS, smem_fwd<HD>(), s>>>(*a);
    HM_CUDA_LAUNCHED();
}

void hm_cuda_flash_forward(const struct hm_exec *ex, struct hm_tensor *dst, int64_t pos)
{
    const struct hm_tensor *q = dst->src[0], *k = dst->src[1];
    struct fa_fwd_args a = {CPTR(bf16_t, q), CPTR(bf16_t, k), CPTR(bf16_t, dst->src[2]), PTR(bf16_t, dst),
                            F32(dst->src[HM_ATTN_LSE]), q->shape[1], q->shape[2], k->shape[1],
                            k->shape[2],
                            q->shape[2] / k->shape[2], pos, 1.0f / sqrtf((float)q->shape[3])};
    if (q->shape[3] == 64)
        launch_forward<64>(&a, q->shape[0], hm_cuda_stream(ex));
    else
        launch_forward<128>(&a, q->shape[0], hm_cuda_stream(ex));
}

template <int HD>
static void launch_backward(const struct fa_bwd_args *a, int64_t B, cudaStream_t s)
{
    const int BC = fa_tiles<HD>::BC;
    dim3 grid_kv((unsigned)((a->S + FA_ROWS - 1) / FA_ROWS), (unsigned)a->NKV, (unsigned)B);
    set_smem(fa_dkdv_kernel<HD, BC>, smem_dkdv<HD>());
    fa_dkdv_kernel<HD, BC><<<grid_kv, FA_THREADS, smem_dkdv<HD>(), s>>>(*a);
    HM_CUDA_LAUNCHED();
    dim3 grid_q((unsigned)((a->T + FA_ROWS - 1) / FA_ROWS), (unsigned)a->NH, (unsigned)B);
    set_smem(fa_dq_kernel<HD, BC>, smem_fwd<HD>());
    fa_dq_kernel<HD, BC><<<grid_q, FA_THREADS, smem_fwd<HD>(), s>>>(*a);
    HM_CUDA_LAUNCHED();
}

void hm_cuda_flash_backward(const struct hm_exec *ex, struct hm_tensor *dst, int64_t pos, const float *D)
{
    const struct hm_tensor *q = dst->src[1], *k = dst->src[2];
    struct fa_bwd_args a = {CPTR(bf16_t, dst->src[0]), CPTR(bf16_t, q), CPTR(bf16_t, k), CPTR(bf16_t, dst->src[3]),
                            CF32(dst->src[5]), D, PTR(bf16_t, dst), PTR(bf16_t, dst->src[6]),
                            PTR(bf16_t, dst->src[7]), q->shape[1], q->shape[2], k->shape[1], k->shape[2],
                            q->shape[2] / k->shape[2], pos, 1.0f / sqrtf((float)q->shape[3]),
                            (dst->acc & 1) != 0, (dst->acc & 2) != 0, (dst->acc & 4) != 0};
    if (q->shape[3] == 64)
        launch_backward<64>(&a, q->shape[0], hm_cuda_stream(ex));
    else
        launch_backward<128>(&a, q->shape[0], hm_cuda_stream(ex));
}
