/*
 * matvec.c - batch-1 decode kernels for bf16 and q8_0 weights (matvec.h): a portable scalar path
 * and an AVX-512 one chosen at run time (__builtin_cpu_supports), which compute the same sums in
 * the same order. Each row keeps 16 f32 lanes: bf16 lane l takes columns k = 16c + l; q8_0 lane
 * 8h + l takes the int32 dot of bytes 4l..4l+3 of block b (h = b mod 2, as a 512-bit register
 * holds two blocks). The lanes are summed as lane i + lane i+8, then i+4, i+2, i+1.
 * bf16 widens each weight and fuses a multiply-add with x in f32. AVX512-BF16's vdpbf16ps was
 * measured too: it raises the cache-resident rate from 50 to 68 GB/s per core, but both are
 * several times the DRAM bandwidth decode runs at and the streaming rates were the same within
 * noise, so x stays f32 instead of being rounded to bf16.
 */
#include "cpu-impl.h"
#include "matvec.h"

#include "hermes/export.h"
#include "hermes/safetensors.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HM_HAVE_AVX512_KERNELS 1
#define HM_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma")))
#endif

/* q8_0 rows are read 1 KiB ahead with software prefetches: 12.7 -> 14.4 GB/s (median of 5,
 * interleaved, 2 threads, read bandwidth 16.5 GB/s; 2 and 4 KiB ahead did no better). Two rows
 * at a time: four measured slower. */
enum { LANES = 16, ROWS_BF16 = 4, ROWS_Q8 = 2, Q8_PREFETCH = 1024 };

enum hm_cpu_isa hm_cpu_matvec_isa(void)
{
#ifdef HM_HAVE_AVX512_KERNELS
    /* F16C is on every AVX-512 CPU (and clang 14's builtin does not know its name). */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("fma"))
        return HM_CPU_ISA_AVX512;
#endif
    return HM_CPU_ISA_SCALAR;
}

const char *hm_cpu_matvec_isa_name(enum hm_cpu_isa isa)
{
    return isa == HM_CPU_ISA_AVX512 ? "avx512" : "scalar";
}

/* The fixed reduction tree over the 16 lanes. */
static float lanes_sum(float *a)
{
    for (int w = LANES / 2; w >= 1; w /= 2)
        for (int i = 0; i < w; i++)
            a[i] += a[i + w];
    return a[0];
}

static float f16_at(const uint8_t *p)
{
    return hm_f32_from_f16((uint16_t)(p[0] | p[1] << 8));
}

/* ---- scalar: the oracle -------------------------------------------------------------------- */

static float dot_bf16_scalar(const uint16_t *w, const float *x, int64_t K)
{
    float acc[LANES] = {0};
    for (int64_t k0 = 0; k0 < K; k0 += LANES)
        for (int l = 0; l < LANES; l++) { /* past K both factors are 0, as the masked loads read */
            int64_t k = k0 + l;
            acc[l] = fmaf(k < K ? hm_bf16_to_f32(w[k]) : 0.0f, k < K ? x[k] : 0.0f, acc[l]);
        }
    return lanes_sum(acc);
}

static float dot_q8_0_scalar(const uint8_t *w, const uint8_t *xq, const float *xd, int64_t K)
{
    float acc[LANES] = {0};
    for (int64_t b = 0; b < K / HM_Q8_0_BLOCK; b++) {
        const uint8_t *wb = w + b * HM_Q8_0_BYTES, *xb = xq + b * HM_Q8_0_BYTES;
        float d = f16_at(wb) * xd[b];
        for (int l = 0; l < 8; l++) {
            int32_t s = 0;
            for (int j = 4 * l; j < 4 * l + 4; j++)
                s += (int32_t)(int8_t)wb[2 + j] * (int32_t)(int8_t)xb[2 + j];
            float *a = &acc[(b & 1) * 8 + l];
            *a = fmaf((float)s, d, *a);
        }
    }
    return lanes_sum(acc);
}

/* ---- AVX-512 ------------------------------------------------------------------------------- */

#ifdef HM_HAVE_AVX512_KERNELS
HM_AVX512 static float hsum512(__m512 a)
{
    __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

HM_AVX512 static __m512 load_bf16(const uint16_t *p, __mmask16 m)
{
    __m256i h = _mm256_maskz_loadu_epi16(m, p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Rows r0..r0+R-1 (R <= ROWS_BF16; missing rows repeat row 0 and are not stored). */
HM_AVX512 static void rows_bf16_avx512(const uint16_t *w, const float *x, float *y, int64_t R,
                                       int64_t K)
{
    const uint16_t *wr[ROWS_BF16];
    for (int r = 0; r < ROWS_BF16; r++)
        wr[r] = w + (r < R ? r : 0) * K;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t k = 0; k < K; k += LANES) {
        __mmask16 m = K - k >= LANES ? (__mmask16)0xffff : (__mmask16)((1u << (K - k)) - 1);
        __m512 xv = _mm512_maskz_loadu_ps(m, x + k);
        a0 = _mm512_fmadd_ps(load_bf16(wr[0] + k, m), xv, a0);
        a1 = _mm512_fmadd_ps(load_bf16(wr[1] + k, m), xv, a1);
        a2 = _mm512_fmadd_ps(load_bf16(wr[2] + k, m), xv, a2);
        a3 = _mm512_fmadd_ps(load_bf16(wr[3] + k, m), xv, a3);
    }
    float s[ROWS_BF16] = {hsum512(a0), hsum512(a1), hsum512(a2), hsum512(a3)};
    for (int64_t r = 0; r < R; r++)
        y[r] = s[r];
}

/* The int32 dots of a pair of blocks (qs at w and w + 34; `two` false: one block, high lanes 0). */
HM_AVX512 static __m512 dot_pair(const uint8_t *w, const uint8_t *x, bool two)
{
    __m256i wl = _mm256_loadu_si256((const void *)(w + 2)),
            xl = _mm256_loadu_si256((const void *)(x + 2));
    __m256i wh =
        two ? _mm256_loadu_si256((const void *)(w + HM_Q8_0_BYTES + 2)) : _mm256_setzero_si256();
    __m256i xh =
        two ? _mm256_loadu_si256((const void *)(x + HM_Q8_0_BYTES + 2)) : _mm256_setzero_si256();
    __m512i wv = _mm512_inserti64x4(_mm512_castsi256_si512(wl), wh, 1);
    __m512i xv = _mm512_inserti64x4(_mm512_castsi256_si512(xl), xh, 1);
    /* dpbusd multiplies unsigned by signed bytes: |w| times x with w's sign moved onto x */
    __m512i sx = _mm512_mask_sub_epi8(xv, _mm512_movepi8_mask(wv), _mm512_setzero_si512(), xv);
    return _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(wv), sx));
}

/* Rows r0, r0+1 (R = 1: row 0 alone). Per 16 blocks one gather fetches the 16 f16 scales of a
 * row (blocks are 34 bytes apart), times x's scales; a permute hands each block pair its two. */
HM_AVX512 static void rows_q8_0_avx512(const uint8_t *w, const uint8_t *xq, const float *xd,
                                       float *y, int64_t R, int64_t K)
{
    int64_t nb = K / HM_Q8_0_BLOCK, rb = nb * HM_Q8_0_BYTES;
    const uint8_t *w0 = w, *w1 = R > 1 ? w + rb : w;
    const __m512i offs =
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                           _mm512_set1_epi32(HM_Q8_0_BYTES));
    const __m512i pair = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    for (int64_t c = 0; c < nb; c += 16) {
        int64_t n = nb - c < 16 ? nb - c : 16;
        __mmask16 m = n == 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
        int64_t o = c * HM_Q8_0_BYTES;
        __m512 xs = _mm512_maskz_loadu_ps(m, xd + c);
        __m512i g0 = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, offs, w0 + o, 1);
        __m512i g1 = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, offs, w1 + o, 1);
        __m512 s0 = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_cvtepi32_epi16(g0)), xs);
        __m512 s1 = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_cvtepi32_epi16(g1)), xs);
        for (int64_t b = 0; b < n; b += 2) {
            bool two = b + 1 < n;
            int64_t ob = o + b * HM_Q8_0_BYTES;
            __m512i idx = _mm512_add_epi32(pair, _mm512_set1_epi32((int)b));
            _mm_prefetch((const char *)(w0 + ob + Q8_PREFETCH), _MM_HINT_T0);
            _mm_prefetch((const char *)(w1 + ob + Q8_PREFETCH), _MM_HINT_T0);
            a0 = _mm512_fmadd_ps(dot_pair(w0 + ob, xq + ob, two), _mm512_permutexvar_ps(idx, s0),
                                 a0);
            a1 = _mm512_fmadd_ps(dot_pair(w1 + ob, xq + ob, two), _mm512_permutexvar_ps(idx, s1),
                                 a1);
        }
    }
    y[0] = hsum512(a0);
    if (R > 1)
        y[1] = hsum512(a1);
}
#endif

/* ---- entry points -------------------------------------------------------------------------- */

/* One call's operands; a group is the rows one kernel call computes together. */
struct matvec {
    const void *w;
    const float *x, *xd; /* bf16: x; q8_0: x's block scales */
    const uint8_t *xq;   /* q8_0: x's blocks */
    float *y;
    int64_t N, K;
    bool q8, fast;
};

static void group(const struct matvec *a, int64_t n0, int64_t R)
{
    int64_t rb = a->q8 ? a->K / HM_Q8_0_BLOCK * HM_Q8_0_BYTES : a->K * 2; /* bytes per row */
    const uint8_t *w = (const uint8_t *)a->w + n0 * rb;
#ifdef HM_HAVE_AVX512_KERNELS
    if (a->fast && a->q8) {
        rows_q8_0_avx512(w, a->xq, a->xd, a->y + n0, R, a->K);
        return;
    }
    if (a->fast) {
        rows_bf16_avx512((const uint16_t *)w, a->x, a->y + n0, R, a->K);
        return;
    }
#endif
    for (int64_t r = 0; r < R; r++)
        a->y[n0 + r] = a->q8 ? dot_q8_0_scalar(w + r * rb, a->xq, a->xd, a->K)
                             : dot_bf16_scalar((const uint16_t *)(w + r * rb), a->x, a->K);
}

static void run(struct matvec *a, enum hm_cpu_isa isa)
{
    a->fast = isa == HM_CPU_ISA_AVX512 && hm_cpu_matvec_isa() == HM_CPU_ISA_AVX512;
    int64_t G = a->q8 ? ROWS_Q8 : ROWS_BF16, N = a->N;
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR(N * a->K))
    for (int64_t n0 = 0; n0 < N; n0 += G)
        group(a, n0, N - n0 < G ? N - n0 : G);
}

void hm_cpu_matvec_bf16(enum hm_cpu_isa isa, const uint16_t *w, const float *x, float *y, int64_t N,
                        int64_t K)
{
    struct matvec a = {.w = w, .x = x, .y = y, .N = N, .K = K, .q8 = false};
    run(&a, isa);
}

void hm_cpu_q8_0_scales(const uint8_t *xq, int64_t K, float *xd)
{
    for (int64_t b = 0; b < K / HM_Q8_0_BLOCK; b++)
        xd[b] = f16_at(xq + b * HM_Q8_0_BYTES);
}

void hm_cpu_matvec_q8_0(enum hm_cpu_isa isa, const uint8_t *w, const uint8_t *xq, const float *xd,
                        float *y, int64_t N, int64_t K)
{
    struct matvec a = {.w = w, .xq = xq, .xd = xd, .y = y, .N = N, .K = K, .q8 = true};
    run(&a, isa);
}

void hm_cpu_rows_to_f32(int type, const void *w, int64_t r0, int64_t rows, int64_t K, float *out)
{
    if (type == HM_DTYPE_BF16) {
        hm_bf16_to_f32_n((const uint16_t *)w + r0 * K, out, (size_t)(rows * K));
        return;
    }
    HM_ASSERT(type == HM_DTYPE_Q8_0 && K % HM_Q8_0_BLOCK == 0);
    int64_t rb = K / HM_Q8_0_BLOCK * HM_Q8_0_BYTES;
    hm_dequantize_q8_0((const uint8_t *)w + r0 * rb, (size_t)(rows * K), out);
}
