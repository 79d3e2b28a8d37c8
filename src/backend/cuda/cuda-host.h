/*
 * cuda-host.h - the host-side half of the CUDA backend that needs no CUDA headers: device-string
 * parsing lives in backend-select.c, and this file holds the pure planning arithmetic the kernels
 * rely on (workspace sizes, reduction chunking, attention tiling), the out-of-memory message, and
 * the bf16 bit conversions shared with the kernels (HM_HOSTDEV). It is plain C11 compiled into
 * libhermes in every build, so tests/unit/test-cuda-host.c checks all of it on a machine with no GPU.
 * The .cu files include it (inside extern "C") and never duplicate these formulas.
 */
#ifndef HERMES_CUDA_HOST_H
#define HERMES_CUDA_HOST_H

#include "hermes/tensor.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef HM_HOSTDEV
#define HM_HOSTDEV
#endif

/* Sub-allocations inside one workspace start on this boundary (cudaMalloc itself gives 256). */
#define HM_CUDA_ALIGN 256
static inline size_t hm_cuda_align(size_t x)
{
    return (x + HM_CUDA_ALIGN - 1) & ~(size_t)(HM_CUDA_ALIGN - 1);
}

/*
 * Deterministic column sums (REDUCE_ROWS, the RMSNorm weight gradient): pass 1 splits the rows into
 * `chunks` consecutive ranges of `rows_per_chunk` rows and sums each column of each range in row
 * order into a (chunks, n) f32 scratch; pass 2 sums the chunks in order. Both numbers depend on the
 * shape only (never on the GPU model or SM count), so results are bit-identical run to run and
 * across GPUs.
 */
#define HM_CUDA_COLSUM_ROWS 64     /* target rows per chunk */
#define HM_CUDA_COLSUM_MAX_CHUNKS 256
int hm_cuda_colsum_chunks(int64_t rows);
int64_t hm_cuda_colsum_rows_per_chunk(int64_t rows, int chunks);

/* Global reductions over f32 ranges (sum of squares): a fixed grid of blocks, each owning one
 * contiguous slice, summed in double with a fixed tree; then one block sums the partials in order. */
#define HM_CUDA_REDUCE_BLOCKS 1024
#define HM_CUDA_REDUCE_THREADS 256

/*
 * Attention tiling (attention.cu). One warp per query row; a key tile of 32 keys (one per lane)
 * lives in shared memory with rows padded to HD+1 floats (no bank conflicts when HD is a multiple
 * of 32); each lane owns `dpl` = ceil(HD/32) output dims rounded up to 1, 2, 4 or 8 (a template
 * parameter, so the per-lane accumulators stay in registers). HD <= 256.
 */
#define HM_CUDA_ATTN_MAX_HD 256
#define HM_CUDA_ATTN_BC 32        /* keys per tile = warp size */
#define HM_CUDA_ATTN_ROWS 8       /* query rows (warps) per forward / dq block */
struct hm_cuda_attn_plan {
    int hd;
    int dpl;            /* dims per lane: 1, 2, 4 or 8 */
    int rows;           /* warps (query rows) per forward / dq block */
    int ld;             /* padded smem row length in floats: hd + 1 */
    size_t smem_fwd;    /* bytes: K and V tiles + the block's query rows */
    size_t smem_bwd_kv; /* bytes: K, V tiles, dK, dV accumulators, one q and one dout row */
    size_t smem_bwd_q;  /* bytes: same as smem_fwd plus the dout rows */
};
/* HM_ERR_UNSUPPORTED (with a message) if HD is outside [1, HM_CUDA_ATTN_MAX_HD]. */
enum hm_status hm_cuda_attn_plan(int64_t hd, struct hm_cuda_attn_plan *out);

/*
 * Kernel scratch of one node on the CUDA backend, in bytes (0 = none). `sort_temp_bytes` is CUB's
 * radix-sort temporary size for EMBEDDING_BACK (queried by the .cu side; pass anything in tests).
 * The layouts below are what the kernels carve out of ex->ws, each part hm_cuda_align()ed:
 *   REDUCE_ROWS (rows > 1):  partial (chunks, n) f32
 *   RMS_NORM_BACK,
 *   ADD_RMS_NORM_BACK:    rstd (N) f32 | partial (chunks, C) f32 when dw is wanted
 *   EMBEDDING_BACK:       iota (N) i32 | sorted ids (N) i32 | sorted positions (N) i32 | CUB temp
 *   ATTENTION_BACK:       D = rowsum(dout * out) (B, NH, T) f32
 *   CROSS_ENTROPY:        per-row loss (N) f64 | valid count i64
 *   CROSS_ENTROPY_BACK:   valid count i64
 */
size_t hm_cuda_workspace_bytes(const struct hm_tensor *node, size_t sort_temp_bytes);

/*
 * The one-line out-of-memory message: names the device, the bytes that did not fit and the
 * device's free/total memory, and suggests the flags that shrink activations. Writes at most `cap`
 * bytes (always NUL-terminated) and returns buf.
 */
char *hm_cuda_oom_message(char *buf, size_t cap, int device, size_t requested, size_t free_bytes,
                          size_t total_bytes);
/* "1.50 GiB", "12.0 MiB", "512 B"... into buf (cap >= 16). */
char *hm_cuda_fmt_bytes(char *buf, size_t cap, double bytes);

/*
 * bf16 <-> f32 as raw bits, identical on host and device (kernels store bf16 as uint16_t through
 * these, so host and device round the same way): round to nearest even, NaN -> quiet NaN keeping
 * the sign, +-Inf and signed zeros preserved, f32 subnormals rounded like any other value.
 */
static HM_HOSTDEV inline uint16_t hm_cuda_f32_to_bf16_bits(uint32_t u)
{
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: canonical quiet NaN, as hm_f32_to_bf16 */
        return 0x7fc0u;
    uint32_t lsb = (u >> 16) & 1u;
    return (uint16_t)((u + 0x7fffu + lsb) >> 16);
}
static HM_HOSTDEV inline uint32_t hm_cuda_bf16_bits_to_f32(uint16_t b)
{
    return (uint32_t)b << 16;
}

#ifdef __cplusplus
}
#endif
#endif
