/*
 * backend-cpu.c - the CPU backend: host memory as backend memory, the kernel table, per-node
 * workspace sizes, thread control and the OpenBLAS check. bf16 operands run through f32 shadows
 * (bf16.c). Matmuls go to CBLAS sgemm of the
 * OpenMP build of OpenBLAS, so BLAS and our loops share one OpenMP thread pool; hm_set_threads
 * sets both. Kernels are split by op family in the other files of this folder.
 */
#include "cpu-impl.h"

#include <cblas.h>
#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define HM_HAVE_MXCSR 1
#endif

/* Declared by OpenBLAS (cblas.h of some builds lacks the prototypes). */
int openblas_get_parallel(void);
void openblas_set_num_threads(int n);

/* Every op of ops.def with a kernel: its f32 kernel, hm_cpu_<name> (cpu-impl.h). */
#define HM_OP_PSEUDO(...)
#define HM_OP(NAME, name, ...) [HM_OP_##NAME] = hm_cpu_##name,
static const hm_kernel_fn f32_kernels[HM_OP_COUNT] = {
#include "hermes/ops.def"
};
#undef HM_OP

/* Matmuls to oneDNN where it applies (bf16 on the CPU's bf16 units, f32 shapes it runs faster);
 * nodes with bf16 operands through the f32 shadows of bf16.c; the rest straight to their kernel. */
static enum hm_status cpu_dispatch(const struct hm_exec *ex, struct hm_tensor *dst)
{
    hm_kernel_fn f = f32_kernels[dst->op];
    if (hm_cpu_matmul_onednn_applies(dst))
        return hm_cpu_matmul_onednn(ex, dst);
    if (hm_cpu_needs_shadows(dst))
        return hm_cpu_run_bf16(ex, dst, f);
    return f(ex, dst);
}

#define HM_OP(NAME, ...) [HM_OP_##NAME] = cpu_dispatch,
static const hm_kernel_fn cpu_kernels[HM_OP_COUNT] = {
#include "hermes/ops.def"
};
#undef HM_OP
#undef HM_OP_PSEUDO

const char *hm_cpu_bf16_name(enum hm_cpu_bf16 s)
{
    return s == HM_CPU_BF16_AMX ? "AMX" : s == HM_CPU_BF16_AVX512 ? "AVX512-BF16" : "none";
}

enum hm_dtype hm_auto_train_dtype(bool gpu, enum hm_cpu_bf16 cpu)
{
    return gpu || cpu == HM_CPU_BF16_AMX ? HM_DTYPE_BF16 : HM_DTYPE_F32;
}

static size_t f32_workspace(const struct hm_tensor *node)
{
    const struct hm_tensor *x = node->src[0];
    switch (node->op) {
    case HM_OP_RMS_NORM_BACK:
    case HM_OP_ADD_RMS_NORM_BACK:
        return (size_t)hm_nrows(node->src[1]) * sizeof(float);
    case HM_OP_ROPE:
    case HM_OP_ROPE_BACK: /* cos/sin per position: per row with per-row positions */
        return (size_t)((node->src[1] ? x->shape[0] : 1) * x->shape[1] * x->shape[3]) *
               sizeof(float);
    case HM_OP_ATTENTION:
    case HM_OP_ATTENTION_BACK:
        return hm_cpu_attention_ws(node, hm_cpu_plan_threads());
    case HM_OP_CROSS_ENTROPY: /* per-row losses, 64-byte aligned, then bf16 rows (loss.c) */
        return ((size_t)hm_nrows(x) * sizeof(double) + 63) / 64 * 64 +
               hm_cpu_loss_row_ws(node, hm_cpu_plan_threads());
    case HM_OP_CROSS_ENTROPY_BACK:
        return hm_cpu_loss_row_ws(node, hm_cpu_plan_threads());
    case HM_OP_MATMUL:
        return hm_cpu_matmul_packed_ws(node);
    default:
        return 0;
    }
}

size_t hm_cpu_workspace_size(struct hm_backend *be, const struct hm_tensor *node)
{
    size_t ws = f32_workspace(node);
    if (hm_cpu_needs_shadows(node))
        ws += hm_cpu_bf16_shadow_bytes(node);
    return ws;
}

static enum hm_status cpu_alloc(struct hm_backend *be, size_t bytes, void **out)
{
    void *p = hm_aligned_alloc(64, bytes);
    if (!p)
        return hm_fail(HM_ERR_NOMEM, "cpu: cannot allocate %zu bytes (%.1f MiB)", bytes,
                       (double)bytes / (1024.0 * 1024.0));
    *out = p;
    return HM_OK;
}

static void cpu_release(struct hm_backend *be, void *p)
{
    hm_free(p);
}

static enum hm_status cpu_set(struct hm_backend *be, void *dst, const void *host, size_t bytes)
{
    memcpy(dst, host, bytes);
    return HM_OK;
}

static enum hm_status cpu_get(struct hm_backend *be, void *host, const void *src, size_t bytes)
{
    memcpy(host, src, bytes);
    return HM_OK;
}

static enum hm_status cpu_memset0(struct hm_backend *be, void *dst, size_t bytes)
{
    enum { CHUNK = 1 << 20 };
    size_t n_chunks = (bytes + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) if (parallel : HM_CPU_PAR((int64_t)(bytes / 4)))
    for (size_t i = 0; i < n_chunks; i++) {
        size_t lo = i * CHUNK, n = bytes - lo < CHUNK ? bytes - lo : CHUNK;
        memset((char *)dst + lo, 0, n);
    }
    return HM_OK;
}

static enum hm_status cpu_synchronize(struct hm_backend *be)
{
    return HM_OK;
}

/* Work is done when the call that issued it returns: no stream to order communication after. */
static void *cpu_native_stream(struct hm_backend *be)
{
    return NULL;
}

static void cpu_free(struct hm_backend *be)
{
    hm_free(be);
}

static const struct hm_backend_i cpu_iface = {
    .name = "cpu",
    .free = cpu_free,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .set = cpu_set,
    .get = cpu_get,
    .memset0 = cpu_memset0,
    .synchronize = cpu_synchronize,
    .kernels = cpu_kernels,
    .convert = hm_cpu_convert,
    .workspace_size = hm_cpu_workspace_size,
    .adamw = hm_cpu_adamw,
    .sumsq = hm_cpu_sumsq,
    .scale = hm_cpu_scale_range,
    .is_finite = hm_cpu_is_finite,
    .native_stream = cpu_native_stream,
};

int hm_max_threads(void)
{
    /* More OpenMP threads than OpenBLAS was built for exhaust its buffer table, where it spins. */
    const char *cfg = openblas_get_config(), *m = cfg ? strstr(cfg, "MAX_THREADS=") : NULL;
    long n = m ? strtol(m + 12, NULL, 10) : 0;
    return n > 0 && n < 4096 ? (int)n : 4096;
}

enum hm_status hm_check_threads(const char *flag, long n)
{
    int max = hm_max_threads();
    if (n < 1 || n > max)
        return hm_fail(HM_ERR_USAGE, "%s %ld: this build supports 1 to %d threads (OpenBLAS "
                       "MAX_THREADS)", flag, n, max);
    return HM_OK;
}

void hm_set_threads(int n)
{
    if (n < 1)
        n = 1;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

int hm_get_threads(void)
{
    return omp_get_max_threads();
}

static void set_ftz_daz(bool on)
{
#ifdef HM_HAVE_MXCSR
    enum { FTZ = 0x8000, DAZ = 0x0040 };
    unsigned csr = _mm_getcsr();
    _mm_setcsr(on ? csr | FTZ | DAZ : csr & ~(unsigned)(FTZ | DAZ));
#else
    (void)on;
#endif
}

void hm_set_flush_denormals(bool on)
{
    set_ftz_daz(on);
    /* MXCSR is per thread: set it in every pool thread too. Pool threads are created by the
     * master, which already has the mode, so a later larger team inherits it. */
#pragma omp parallel
    set_ftz_daz(on);
}

enum hm_status hm_backend_cpu_new(struct hm_backend **out)
{
    static bool warned;
    if (openblas_get_parallel() != 2 && !warned) {
        warned = true;
        hm_log(HM_LOG_WARN, "OpenBLAS is not the OpenMP build (openblas_get_parallel() = %d): "
                            "BLAS and OpenMP loops will fight over cores and results may vary run to "
                            "run; link libopenblas0-openmp", openblas_get_parallel());
    }
    const char *lib = getenv("HM_CPU_F32_MATMUL");
    if (lib && *lib) {
        enum hm_cpu_f32_matmul mode;
        if (!strcmp(lib, "auto"))
            mode = HM_CPU_F32_MATMUL_AUTO;
        else if (!strcmp(lib, "openblas"))
            mode = HM_CPU_F32_MATMUL_OPENBLAS;
        else if (!strcmp(lib, "onednn") && hm_cpu_have_onednn())
            mode = HM_CPU_F32_MATMUL_ONEDNN;
        else
            return hm_fail(HM_ERR_USAGE, "HM_CPU_F32_MATMUL=%s: expected auto, openblas%s", lib,
                           hm_cpu_have_onednn() ? " or onednn" : " (this build has no oneDNN)");
        hm_cpu_set_f32_matmul(mode);
    }
    struct hm_backend *be = hm_calloc(1, sizeof(*be));
    if (!be)
        return hm_fail(HM_ERR_NOMEM, "out of memory creating the cpu backend");
    be->iface = &cpu_iface;
    openblas_set_num_threads(omp_get_max_threads()); /* OMP_NUM_THREADS governs both */
    hm_set_flush_denormals(true);
    *out = be;
    return HM_OK;
}
