/*
 * matmul-onednn.c - MATMUL through oneDNN's matmul primitive, for two kinds of node:
 *  - bf16 inputs with f32 accumulation, on AMX tiles where the CPU has them and on AVX512-BF16
 *    dot products where it has only those (oneDNN picks the kernel from the CPU at run time;
 *    ONEDNN_VERBOSE=1 names it). OpenBLAS 0.3.21 as Debian ships it exports no cblas_sbgemm, and
 *    on our shapes oneDNN ran 2-10x faster than the widening path's sgemm. The result is written
 *    in dst's dtype, rounded once from the f32 accumulator, as the widening path does.
 *  - f32 on AVX-512 CPUs, for the shapes where oneDNN's brgemm kernels beat OpenBLAS's sgemm:
 *    a small inner or outer dimension (the layers of small models), where OpenBLAS 0.3.21 ran at
 *    60-90% of oneDNN's rate on an idle machine (docs/performance.md). The choice
 *    is a fixed rule of the shape, never a timing, so a run's results do not depend on the load.
 *
 * Primitives are created once per shape and kept in a small table, with their memory objects
 * (only the data pointers change per call), so a training step allocates nothing after the first.
 */
#include "cpu-impl.h"

#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>

#define CACHE_SLOTS 256

struct mm_key {
    int64_t batch, M, N, K;
    float alpha;
    bool ta, tb, acc;
    enum hm_dtype in, out, bias; /* bias HM_DTYPE_COUNT: none */
};

struct mm_entry {
    struct mm_key key;
    dnnl_primitive_t prim;
    dnnl_memory_t mem[4]; /* src, weights, dst, bias */
};

struct onednn_state {
    pthread_mutex_t lock;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    bool ready, avx512; /* avx512: oneDNN's effective ISA has AVX-512 (the f32 rule's machines) */
    enum hm_cpu_bf16 support;
    enum hm_cpu_f32_matmul f32_mode;
    struct mm_entry slot[CACHE_SLOTS];
    int n, evict; /* live entries [0, n); the next slot a full table recycles */
};
static struct onednn_state g = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void ensure_ready(void);

bool hm_cpu_have_onednn(void)
{
    pthread_mutex_lock(&g.lock);
    ensure_ready();
    bool ok = g.engine != NULL;
    pthread_mutex_unlock(&g.lock);
    return ok;
}

void hm_cpu_set_f32_matmul(enum hm_cpu_f32_matmul mode)
{
    pthread_mutex_lock(&g.lock);
    g.f32_mode = mode;
    pthread_mutex_unlock(&g.lock);
}

static dnnl_data_type_t dnnl_type(enum hm_dtype t)
{
    return t == HM_DTYPE_BF16 ? dnnl_bf16 : dnnl_f32;
}

/* Whether isa includes every feature of `want` (the ISA values are nested bit masks). */
static bool has_isa(dnnl_cpu_isa_t isa, dnnl_cpu_isa_t want)
{
    return ((unsigned)isa & (unsigned)want) == (unsigned)want;
}

/* Engine and stream, once (oneDNN asks Linux for the AMX tile state itself), and what the CPU
 * offers: native bf16 (AMX or AVX512-BF16) and AVX-512. Called with the lock held. */
static void ensure_ready(void)
{
    if (g.ready)
        return;
    g.ready = true;
    if (dnnl_engine_create(&g.engine, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&g.stream, g.engine, dnnl_stream_default_flags) != dnnl_success)
        return; /* support stays NONE, avx512 false: every matmul takes sgemm */
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    g.support = has_isa(isa, dnnl_cpu_isa_avx512_core_amx) ? HM_CPU_BF16_AMX
                : has_isa(isa, dnnl_cpu_isa_avx512_core_bf16) ? HM_CPU_BF16_AVX512
                                                              : HM_CPU_BF16_NONE;
    g.avx512 = has_isa(isa, dnnl_cpu_isa_avx512_core);
}

enum hm_cpu_bf16 hm_cpu_bf16_support(void)
{
    pthread_mutex_lock(&g.lock);
    ensure_ready();
    enum hm_cpu_bf16 s = g.support;
    pthread_mutex_unlock(&g.lock);
    return s;
}

/*
 * The f32 shapes oneDNN takes in auto mode, from scripts/bench/matmul-libs on a Sapphire Rapids
 * (2 threads; docs/performance.md has the table): products with an inner or output dimension of
 * at most 512 (every product of a model with hidden size <= 512), where oneDNN ran 1.10-1.72x
 * OpenBLAS's rate whatever the transposes; at gpt2-small's 768 and up the two were even or
 * OpenBLAS led (2x on the input and weight gradients of the 3072-wide layer). Tiny products
 * (under 2^21 multiply-adds: short prompts) stay with sgemm, which needs no primitive per shape.
 */
bool hm_cpu_f32_onednn_rule(int64_t M, int64_t N, int64_t K)
{
    return HM_MIN(N, K) <= 512 && (double)M * (double)N * (double)K >= (double)(1 << 21);
}

bool hm_cpu_matmul_onednn_applies(const struct hm_tensor *node)
{
    const struct hm_tensor *a = node->src[0], *b = node->src[1], *bias = node->src[2];
    /* p3 marks a row-invariant matmul (hm_linear_rows, batched serving): its results must not
     * depend on the batch, which oneDNN's blocking does not promise; it keeps its own kernel. */
    if (node->op != HM_OP_MATMUL || node->op_params[3] || a->type != b->type)
        return false;
    /* oneDNN adds the bias after the output scale would apply; keep alpha != 1 with a bias on the
     * other path rather than guess the order. */
    if (bias && hm_op_f32(node, 0) != 1.0f)
        return false;
    if (a->type == HM_DTYPE_BF16)
        return hm_cpu_bf16_fast() && hm_cpu_bf16_support() != HM_CPU_BF16_NONE;
    if (a->type != HM_DTYPE_F32 || node->type != HM_DTYPE_F32 || (bias && bias->type != HM_DTYPE_F32))
        return false;
    bool ta = node->op_params[1], tb = node->op_params[2];
    struct hm_mm_dims d = hm_mm_dims_of(a, b, ta, tb);
    if (d.M == 1) /* batch-1 decoding: the streaming matvec of matmul.c */
        return false;
    pthread_mutex_lock(&g.lock);
    ensure_ready();
    bool engine = g.engine != NULL, avx512 = g.avx512;
    enum hm_cpu_f32_matmul mode = g.f32_mode;
    pthread_mutex_unlock(&g.lock);
    if (!engine || mode == HM_CPU_F32_MATMUL_OPENBLAS)
        return false;
    return mode == HM_CPU_F32_MATMUL_ONEDNN ||
           (avx512 && hm_cpu_f32_onednn_rule(d.M, d.N, d.K));
}

/* A 3-d descriptor [batch, rows, cols] with the given element strides. */
static dnnl_status_t desc3(dnnl_memory_desc_t *md, int64_t batch, int64_t r, int64_t c,
                           dnnl_data_type_t t, int64_t s0, int64_t s1, int64_t s2)
{
    dnnl_dims_t dims = {batch, r, c}, strides = {s0, s1, s2};
    return dnnl_memory_desc_init_by_strides(md, 3, dims, t, strides);
}

static enum hm_status create_entry(const struct mm_key *k, struct mm_entry *e)
{
    int64_t M = k->M, N = k->N, K = k->K;
    dnnl_memory_desc_t md[4];
    dnnl_data_type_t in = dnnl_type(k->in);
    dnnl_status_t s = desc3(&md[0], k->batch, M, K, in, M * K, k->ta ? 1 : K, k->ta ? M : 1);
    if (s == dnnl_success)
        s = desc3(&md[1], k->batch, K, N, in, K * N, k->tb ? 1 : N, k->tb ? K : 1);
    if (s == dnnl_success)
        s = desc3(&md[2], k->batch, M, N, dnnl_type(k->out), M * N, N, 1);
    bool has_bias = k->bias != HM_DTYPE_COUNT;
    if (s == dnnl_success && has_bias)
        s = desc3(&md[3], 1, 1, N, dnnl_type(k->bias), N, N, 1);
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_matmul_desc_t mmd;
    dnnl_primitive_desc_t pd = NULL;
    if (s == dnnl_success)
        s = dnnl_matmul_desc_init(&mmd, &md[0], &md[1], has_bias ? &md[3] : NULL, &md[2]);
    if (s == dnnl_success)
        s = dnnl_primitive_attr_create(&attr);
    if (s == dnnl_success && k->alpha != 1.0f)
        s = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &k->alpha);
    if (s == dnnl_success && k->acc) {
        if ((s = dnnl_post_ops_create(&po)) == dnnl_success &&
            (s = dnnl_post_ops_append_sum(po, 1.0f)) == dnnl_success)
            s = dnnl_primitive_attr_set_post_ops(attr, po);
    }
    if (s == dnnl_success)
        s = dnnl_primitive_desc_create(&pd, &mmd, attr, g.engine, NULL);
    if (s == dnnl_success)
        s = dnnl_primitive_create(&e->prim, pd);
    for (int i = 0; i < 4 && s == dnnl_success; i++)
        if (i < 3 || has_bias)
            s = dnnl_memory_create(&e->mem[i], &md[i], g.engine, DNNL_MEMORY_NONE);
    dnnl_primitive_desc_destroy(pd);
    dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    if (s != dnnl_success)
        return hm_fail(HM_ERR_DEVICE, "cpu: oneDNN %s matmul %lldx%lldx%lld (batch %lld): "
                       "status %d", hm_dtype_name(k->in), (long long)M, (long long)N, (long long)K,
                       (long long)k->batch, (int)s);
    e->key = *k;
    return HM_OK;
}

static void destroy_entry(struct mm_entry *e)
{
    for (int i = 0; i < 4; i++)
        dnnl_memory_destroy(e->mem[i]);
    dnnl_primitive_destroy(e->prim);
    memset(e, 0, sizeof *e);
}

/* The cached entry for key, created on first use; NULL (error set) when oneDNN refuses the
 * shape. A full table recycles its slots in turn: a training step's shapes are far fewer than
 * the slots, and a long chat session's many prompt lengths must not exhaust them. Called with
 * the lock held. */
static struct mm_entry *entry_for(const struct mm_key *k, enum hm_status *st)
{
    for (int i = 0; i < g.n; i++)
        if (memcmp(&g.slot[i].key, k, sizeof *k) == 0)
            return &g.slot[i];
    struct mm_entry *e;
    if (g.n < CACHE_SLOTS) {
        e = &g.slot[g.n];
    } else {
        e = &g.slot[g.evict];
        g.evict = (g.evict + 1) % CACHE_SLOTS;
        destroy_entry(e);
    }
    memset(e, 0, sizeof *e);
    if ((*st = create_entry(k, e)) != HM_OK) {
        destroy_entry(e); /* a zeroed slot: its key (batch 0) matches no lookup */
        return NULL;
    }
    if (g.n < CACHE_SLOTS)
        g.n++;
    return e;
}

enum hm_status hm_cpu_matmul_onednn(const struct hm_exec *ex, struct hm_tensor *dst)
{
    const struct hm_tensor *a = dst->src[0], *b = dst->src[1], *bias = dst->src[2];
    bool ta = dst->op_params[1], tb = dst->op_params[2];
    struct hm_mm_dims d = hm_mm_dims_of(a, b, ta, tb);
    struct mm_key k;
    memset(&k, 0, sizeof k); /* the key is compared bytewise, padding included */
    k.batch = d.batch, k.M = d.M, k.N = d.N, k.K = d.K, k.alpha = hm_op_f32(dst, 0);
    k.ta = ta, k.tb = tb, k.acc = dst->acc & 1;
    k.in = a->type, k.out = dst->type, k.bias = bias ? bias->type : HM_DTYPE_COUNT;
    enum hm_status st = HM_OK;
    pthread_mutex_lock(&g.lock);
    struct mm_entry *e = entry_for(&k, &st);
    if (e) {
        void *ptr[4] = {a->data, b->data, dst->data, bias ? bias->data : NULL};
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, e->mem[0]}, {DNNL_ARG_WEIGHTS, e->mem[1]},
                                   {DNNL_ARG_DST, e->mem[2]}, {DNNL_ARG_BIAS, e->mem[3]}};
        dnnl_status_t s = dnnl_success;
        for (int i = 0; i < (bias ? 4 : 3) && s == dnnl_success; i++)
            s = dnnl_memory_set_data_handle(e->mem[i], ptr[i]);
        if (s == dnnl_success)
            s = dnnl_primitive_execute(e->prim, g.stream, bias ? 4 : 3, args);
        if (s == dnnl_success)
            s = dnnl_stream_wait(g.stream);
        if (s != dnnl_success)
            st = hm_fail(HM_ERR_DEVICE, "cpu: oneDNN %s matmul failed: status %d",
                         hm_dtype_name(k.in), (int)s);
    }
    pthread_mutex_unlock(&g.lock);
    return st;
}
