/*
 * matvec.h - private to the CPU backend (and its tests): batch-1 decode through packed weights.
 * y[n] = dot(w[n, :], x) for w [N, K] stored as bf16 or ggml q8_0 blocks, rows split over the
 * threads. Every row is summed by one thread in one fixed order (16 lanes, then a fixed tree), so
 * results do not depend on the thread count, and the AVX-512 kernels equal the portable scalar
 * ones (their test oracle) bit for bit: the scalar code runs the same lanes in the same order.
 */
#ifndef HERMES_CPU_MATVEC_H
#define HERMES_CPU_MATVEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum hm_cpu_isa {
    HM_CPU_ISA_SCALAR = 0, /* portable C: the oracle */
    HM_CPU_ISA_AVX512, /* AVX512F/BW/VL + VNNI + F16C (x86-64, chosen at run time) */
};

/* The best kernels this CPU supports. The kernels take the ISA to run so tests can ask for the
 * oracle; asking for AVX512 where hm_cpu_matvec_isa() says SCALAR runs the oracle too. */
enum hm_cpu_isa hm_cpu_matvec_isa(void);
const char *hm_cpu_matvec_isa_name(enum hm_cpu_isa isa);

/* bf16 weights, f32 x, any K: each product widened to f32 and fused-multiply-added. */
void hm_cpu_matvec_bf16(enum hm_cpu_isa isa, const uint16_t *w, const float *x, float *y, int64_t N,
                        int64_t K);
/* q8_0 weights times x already quantised to q8_0 (hm_quantize_q8_0), K a multiple of 32: exact
 * int32 dots of each block pair, scaled by d_w * d_x (as ggml's q8_0 x q8_0 vec_dot). xd holds
 * x's block scales widened to f32 (hm_cpu_q8_0_scales), read once per call instead of per row. */
void hm_cpu_q8_0_scales(const uint8_t *xq, int64_t K, float *xd);
void hm_cpu_matvec_q8_0(enum hm_cpu_isa isa, const uint8_t *w, const uint8_t *xq, const float *xd,
                        float *y, int64_t N, int64_t K);

/* Rows [r0, r0 + rows) of a bf16 or q8_0 [*, K] weight widened to f32 rows of K (exact). */
void hm_cpu_rows_to_f32(int type, const void *w, int64_t r0, int64_t rows, int64_t K, float *out);

#endif
