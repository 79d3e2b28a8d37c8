/*
 * cpu-impl.h - private to the CPU backend: kernel declarations (one per op of ops.def, generated;
 * the table in backend-cpu.c is generated from the same list) and small helpers. Kernels parallelise with OpenMP and fixed reduction orders,
 * so the same thread count gives bit-identical results. BLAS runs multi-threaded when called
 * outside OpenMP regions (matmul) and single-threaded inside one (attention's per-block
 * products, each made whole by one thread). Compute is f32; bf16 storage goes through bf16.c.
 */
#ifndef HERMES_CPU_IMPL_H
#define HERMES_CPU_IMPL_H

#include "backend/backend-impl.h"
#include "hermes/ops.h"
#include "util/util.h"

#include <math.h>
#include <omp.h>

/* Let the vectoriser if-convert selects in float loops. This only drops the assumption that FP
 * operations may trap (we never enable FP traps); results stay IEEE and NaN checks keep working,
 * unlike -ffast-math. */
#pragma GCC optimize("no-trapping-math")

#define CPU_KERNEL(name) enum hm_status hm_cpu_##name(const struct hm_exec *ex, struct hm_tensor *dst)
#define HM_OP(NAME, name, ...) CPU_KERNEL(name);
#define HM_OP_PSEUDO(...)
#include "hermes/ops.def"
#undef HM_OP_PSEUDO
#undef HM_OP

/* elementwise.c: y[c] (+)= s * sum over rows of x[r][c] (times x2[r][c] * rscale[r] when x2 is
 * given), in double, each chunk of 64 columns summed over the rows in order: the result does not
 * depend on the thread count. x is f32, or bf16 when x_bf16 (then without x2). REDUCE_ROWS and
 * the RMSNorm weight gradient. */
void hm_cpu_colsum(const void *x, bool x_bf16, const float *x2, const float *rscale, float *y,
                   int64_t rows, int64_t n, float s, bool acc);

/* elementwise.c: whether a REDUCE_ROWS node sums bf16 rows into f32 itself (bias gradients). */
bool hm_cpu_reduce_reads_bf16(const struct hm_tensor *node);

/* bf16.c: nodes with bf16 operands run their f32 kernel on f32 shadows in the workspace. */
bool hm_cpu_needs_shadows(const struct hm_tensor *node);
size_t hm_cpu_bf16_shadow_bytes(const struct hm_tensor *node);
enum hm_status hm_cpu_run_bf16(const struct hm_exec *ex, struct hm_tensor *dst, hm_kernel_fn f32_kernel);
/* matmul-onednn.c (matmul-noonednn.c without oneDNN): MATMUL through oneDNN, for bf16 inputs with
 * f32 accumulation on the CPU's bf16 units (AMX, AVX512-BF16; hm_cpu_bf16_support in backend.h
 * says which) and for the f32 shapes where oneDNN beats sgemm on an AVX-512 CPU. _applies says
 * whether a node takes this path; other bf16 matmuls widen (bf16.c), other f32 ones run sgemm. */
bool hm_cpu_matmul_onednn_applies(const struct hm_tensor *node);
enum hm_status hm_cpu_matmul_onednn(const struct hm_exec *ex, struct hm_tensor *dst);
/* Which library runs f32 matmuls (with more than one output row): AUTO = oneDNN for the shapes
 * its rule names, OpenBLAS for the rest; or one of them for every shape (the tests compare the
 * two; HM_CPU_F32_MATMUL=auto|openblas|onednn sets it at backend creation). */
enum hm_cpu_f32_matmul { HM_CPU_F32_MATMUL_AUTO, HM_CPU_F32_MATMUL_OPENBLAS, HM_CPU_F32_MATMUL_ONEDNN };
void hm_cpu_set_f32_matmul(enum hm_cpu_f32_matmul mode);
bool hm_cpu_have_onednn(void); /* built with oneDNN and its engine could be created */
/* The auto rule: whether oneDNN takes an f32 product of these dims on an AVX-512 CPU. */
bool hm_cpu_f32_onednn_rule(int64_t M, int64_t N, int64_t K);
/* The bf16 fast paths (native matmuls, blocked row-local ops), on by default. Off, every bf16
 * node widens whole to f32: the oracle the tests compare the fast paths with. */
void hm_cpu_bf16_set_fast(bool on);
bool hm_cpu_bf16_fast(void);
enum hm_status hm_cpu_convert(struct hm_backend *be, void *dst, enum hm_dtype dst_type, const void *src,
                              enum hm_dtype src_type, size_t n);

/* matmul-rows.c: MATMUL with p3 set (hm_linear_rows), row-invariant; and its fixed-order dot
 * product, out[j] = dot(x, w[j]) for 4 rows w[j] of K floats, the same bits for any x, w. */
enum hm_status hm_cpu_matmul_rows(const struct hm_exec *ex, struct hm_tensor *dst);
void hm_cpu_dots4(const float *x, const float *const *w, int64_t K, float out[4]);
/* attention-rows.c: ATTENTION and KV_WRITE with per-row KV slots and positions (serving). */
enum hm_status hm_cpu_attention_rows(const struct hm_exec *ex, struct hm_tensor *dst);
enum hm_status hm_cpu_kv_write_rows(const struct hm_exec *ex, struct hm_tensor *dst);
size_t hm_cpu_attention_rows_ws(const struct hm_tensor *node, int n_threads);
/* packed.c: matmul and embedding nodes reading a bf16 or q8_0 weight with f32 activations run on
 * it directly (no shadows); matmul's workspace for that. */
bool hm_cpu_packed_weight_node(const struct hm_tensor *node);
size_t hm_cpu_matmul_packed_ws(const struct hm_tensor *node);
enum hm_status hm_cpu_matmul_packed(const struct hm_exec *ex, const struct hm_tensor *dst,
                                    float alpha, float beta);

/* loss.c: whether a cross-entropy node reads its bf16 logits itself (f32 lse and loss), and the
 * f32 rows per thread it then needs in its workspace (0 for f32 logits). */
bool hm_cpu_loss_reads_bf16(const struct hm_tensor *node);
size_t hm_cpu_loss_row_ws(const struct hm_tensor *node, int n_threads);
size_t hm_cpu_attention_ws(const struct hm_tensor *node, int n_threads);
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
/* Never nested: a kernel called inside a parallel region (bf16.c's blocked path) runs on the
 * calling thread. */
#define HM_CPU_PAR(work) ((int64_t)(work) >= HM_CPU_PAR_MIN && !omp_in_parallel())

/*
 * expf and erff written with arithmetic, selects and bit casts only, so loops under
 * `#pragma omp simd` vectorise them (glibc's vector math needs -ffast-math, which we never use).
 * hm_expf: Cephes range reduction and polynomial, within 2 ulp of expf; 0 below -87.3.
 * hm_erff: 1 - erfc with the Numerical Recipes erfc fit (|error| < 1.2e-7), itself via hm_expf.
 */
static inline float hm_expf(float x)
{
    float xc = x < -87.3f ? -87.3f : x > 88.7f ? 88.7f : x;
    float n = floorf(xc * 1.44269504088896341f + 0.5f);
    float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23; /* unsigned: no UB when x is far below -87 */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < -87.3f ? 0.0f : p * scale;
}

static inline float hm_erff(float x)
{
    float z = x < 0.0f ? -x : x, t = 1.0f / (1.0f + 0.5f * z);
    float poly = -1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f +
                 t * (-0.18628806f + t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f +
                 t * (-0.82215223f + t * 0.17087277f))))))));
    float erfc = t * hm_expf(-z * z + poly);
    return x >= 0.0f ? 1.0f - erfc : erfc - 1.0f;
}

/* max(m, x) for max reductions, ignoring a NaN x as fmaxf does. GCC turns a fmaxf reduction into
 * a slow NaN-aware sequence (~17x slower on cross-entropy's row max); a compare-select reduces
 * with plain vmaxps. */
static inline float hm_maxf(float m, float x)
{
    return x > m ? x : m;
}

/* hm_f32_to_bf16 / hm_bf16_to_f32 (tensor.c: round to nearest even, every NaN to 0x7FC0) inline,
 * so conversion loops vectorise: the bf16 paths convert every operand they touch. */
static inline uint16_t hm_cpu_to_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1)) >> 16;
    return (u & 0x7fffffffu) > 0x7f800000u ? 0x7fc0 : (uint16_t)r;
}

static inline float hm_cpu_from_bf16(uint16_t x)
{
    uint32_t u = (uint32_t)x << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* x rounded to bf16 and back: what storing to and reloading from a bf16 tensor gives. */
static inline float hm_cpu_bf16_round(float x)
{
    return hm_cpu_from_bf16(hm_cpu_to_bf16(x));
}

#define F32(t) ((float *)(t)->data)
#define CF32(t) ((const float *)(t)->data)

#endif
