/*
 * attention-blocks.c - the small matrix products of one attention block (up to 64 query rows of
 * one head against its keys) at head dims that are multiples of 16, register-blocked on 16-float
 * vectors (GCC vector extensions: AVX-512 with -march=native, pairs or quads of narrower vectors
 * elsewhere). At head dim 32 these products are 64 x 256 x 32: OpenBLAS spends most of such a
 * call packing its operands, and ran attention at a tenth of its FLOP rate. Every output element
 * is summed in a fixed order (the index of the shared dimension, ascending), so results do not
 * depend on threads or blocking. attention.c calls these when hm_cpu_att_blocks_apply(HD).
 */
#include "cpu-impl.h"

typedef float v16 __attribute__((vector_size(64)));

static inline v16 ld(const float *p)
{
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void st(float *p, v16 v)
{
    memcpy(p, &v, sizeof v);
}

bool hm_cpu_att_blocks_apply(int64_t HD)
{
    return HD % 16 == 0 && HD <= 256 && !getenv("XX_NOBLK");
}

void hm_cpu_att_transpose(const float *b, int64_t ldb, int64_t L, int64_t Lp, int64_t HD, float *bt)
{
    for (int64_t j = 0; j < L; j++)
        for (int64_t d = 0; d < HD; d++)
            bt[d * Lp + j] = b[j * ldb + d];
    for (int64_t d = 0; d < HD; d++)
        for (int64_t j = L; j < Lp; j++)
            bt[d * Lp + j] = 0.0f;
}

/* Rows i0 .. i0+3 (clamped to n - 1: a short tail recomputes the last row and stores it once). */
static inline void row_ptrs(const float *a, int64_t lda, int64_t i0, int64_t n, const float *r[4])
{
    for (int k = 0; k < 4; k++)
        r[k] = a + HM_MIN(i0 + k, n - 1) * lda;
}

/* C (4 rows, NV vectors at column j0) = alpha * A rows . Bt columns, over HD. */
#define ABT_TILE(NV)                                                                              \
    do {                                                                                          \
        v16 acc[4][NV];                                                                           \
        for (int r = 0; r < 4; r++)                                                               \
            for (int c = 0; c < NV; c++)                                                          \
                acc[r][c] = (v16){0};                                                             \
        for (int64_t d = 0; d < HD; d++) {                                                        \
            v16 bv[NV];                                                                           \
            for (int c = 0; c < NV; c++)                                                          \
                bv[c] = ld(bt + d * ldb + j0 + 16 * c);                                           \
            for (int r = 0; r < 4; r++) {                                                         \
                float x = ar[r][d];                                                               \
                for (int c = 0; c < NV; c++)                                                      \
                    acc[r][c] += x * bv[c];                                                       \
            }                                                                                     \
        }                                                                                         \
        for (int r = 0; r < 4 && i0 + r < n; r++)                                                 \
            for (int c = 0; c < NV; c++)                                                          \
                st(C + (i0 + r) * ldc + j0 + 16 * c, acc[r][c] * alpha);                          \
    } while (0)

void hm_cpu_att_abt(const float *a, int64_t lda, const float *bt, int64_t ldb, int64_t n, int64_t Lp,
                    int64_t HD, float alpha, float *C, int64_t ldc)
{
    for (int64_t i0 = 0; i0 < n; i0 += 4) {
        const float *ar[4];
        row_ptrs(a, lda, i0, n, ar);
        int64_t j0 = 0;
        for (; j0 + 64 <= Lp; j0 += 64)
            ABT_TILE(4);
        for (; j0 < Lp; j0 += 16)
            ABT_TILE(1);
    }
}

/* C (4 rows, NV vectors at column d0) (+)= sum over j < L of A[r][j] * B[j][d0 ..]. */
#define AB_TILE(NV)                                                                               \
    do {                                                                                          \
        v16 acc[4][NV];                                                                           \
        for (int r = 0; r < 4; r++)                                                               \
            for (int c = 0; c < NV; c++)                                                          \
                acc[r][c] = (v16){0};                                                             \
        for (int64_t j = 0; j < L; j++) {                                                         \
            v16 bv[NV];                                                                           \
            for (int c = 0; c < NV; c++)                                                          \
                bv[c] = ld(b + j * ldb + d0 + 16 * c);                                            \
            for (int r = 0; r < 4; r++) {                                                         \
                float x = ar[r][j];                                                               \
                for (int c = 0; c < NV; c++)                                                      \
                    acc[r][c] += x * bv[c];                                                       \
            }                                                                                     \
        }                                                                                         \
        for (int r = 0; r < 4 && i0 + r < n; r++)                                                 \
            for (int c = 0; c < NV; c++) {                                                        \
                float *p = C + (i0 + r) * ldc + d0 + 16 * c;                                      \
                st(p, acc_c ? ld(p) + acc[r][c] : acc[r][c]);                                     \
            }                                                                                     \
    } while (0)

void hm_cpu_att_ab(const float *a, int64_t lda, const float *b, int64_t ldb, int64_t n, int64_t L,
                   int64_t HD, bool acc_c, float *C, int64_t ldc)
{
    for (int64_t i0 = 0; i0 < n; i0 += 4) {
        const float *ar[4];
        row_ptrs(a, lda, i0, n, ar);
        int64_t d0 = 0;
        for (; d0 + 32 <= HD; d0 += 32)
            AB_TILE(2);
        for (; d0 < HD; d0 += 16)
            AB_TILE(1);
    }
}

/* C (4 rows j0.., NV vectors at column d0) += sum over i < n of A[i][j] * B[i][d0 ..]. */
#define ATB_TILE(NV)                                                                              \
    do {                                                                                          \
        v16 acc[4][NV];                                                                           \
        for (int r = 0; r < 4; r++)                                                               \
            for (int c = 0; c < NV; c++)                                                          \
                acc[r][c] = (v16){0};                                                             \
        for (int64_t i = 0; i < n; i++) {                                                         \
            v16 bv[NV];                                                                           \
            for (int c = 0; c < NV; c++)                                                          \
                bv[c] = ld(b + i * ldb + d0 + 16 * c);                                            \
            const float *ai = a + i * lda + j0;                                                   \
            for (int r = 0; r < 4; r++) {                                                         \
                float x = ai[HM_MIN(r, jn - 1)];                                                  \
                for (int c = 0; c < NV; c++)                                                      \
                    acc[r][c] += x * bv[c];                                                       \
            }                                                                                     \
        }                                                                                         \
        for (int r = 0; r < jn; r++)                                                              \
            for (int c = 0; c < NV; c++) {                                                        \
                float *p = C + (j0 + r) * ldc + d0 + 16 * c;                                      \
                st(p, ld(p) + acc[r][c]);                                                         \
            }                                                                                     \
    } while (0)

void hm_cpu_att_atb(const float *a, int64_t lda, const float *b, int64_t ldb, int64_t n, int64_t L,
                    int64_t HD, float *C, int64_t ldc)
{
    for (int64_t j0 = 0; j0 < L; j0 += 4) {
        int jn = (int)HM_MIN(4, L - j0);
        int64_t d0 = 0;
        for (; d0 + 32 <= HD; d0 += 32)
            ATB_TILE(2);
        for (; d0 < HD; d0 += 16)
            ATB_TILE(1);
    }
}
