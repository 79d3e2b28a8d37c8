/*
 * matmul-bf16-onednn.c - MATMUL on bf16 inputs with f32 accumulation through oneDNN's matmul
 * primitive, which runs on AMX tiles where the CPU has them and on AVX512-BF16 dot products
 * where it has only those (oneDNN picks the kernel from the CPU at run time; ONEDNN_VERBOSE=1
 * names it). OpenBLAS 0.3.21 as Debian ships it exports no cblas_sbgemm, and on our shapes oneDNN
 * ran 2-10x faster than the widening path's sgemm (docs/performance.md). The result is written
 * in dst's dtype, rounded once from the f32 accumulator, as the widening path does.
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
    enum hm_dtype out, bias; /* bias HM_DTYPE_COUNT: none */
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
    bool ready;
    enum hm_cpu_bf16 support;
    struct mm_entry slot[CACHE_SLOTS];
    int n;
};
static struct onednn_state g = {.lock = PTHREAD_MUTEX_INITIALIZER};

static dnnl_data_type_t dnnl_type(enum hm_dtype t)
{
    return t == HM_DTYPE_BF16 ? dnnl_bf16 : dnnl_f32;
}

/* Whether isa includes every feature of `want` (the ISA values are nested bit masks). */
static bool has_isa(dnnl_cpu_isa_t isa, dnnl_cpu_isa_t want)
{
    return ((unsigned)isa & (unsigned)want) == (unsigned)want;
}

/* Engine and stream, once, where the CPU multiplies bf16 natively (AMX or AVX512-BF16; oneDNN
 * asks Linux for the AMX tile state itself). Called with the lock held. */
static enum hm_cpu_bf16 ensure_ready(void)
{
    if (!g.ready) {
        g.ready = true;
        dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
        enum hm_cpu_bf16 s = has_isa(isa, dnnl_cpu_isa_avx512_core_amx) ? HM_CPU_BF16_AMX
                             : has_isa(isa, dnnl_cpu_isa_avx512_core_bf16) ? HM_CPU_BF16_AVX512
                                                                           : HM_CPU_BF16_NONE;
        if (s != HM_CPU_BF16_NONE &&
            (dnnl_engine_create(&g.engine, dnnl_cpu, 0) != dnnl_success ||
             dnnl_stream_create(&g.stream, g.engine, dnnl_stream_default_flags) != dnnl_success))
            s = HM_CPU_BF16_NONE;
        g.support = s;
    }
    return g.support;
}

enum hm_cpu_bf16 hm_cpu_bf16_support(void)
{
    pthread_mutex_lock(&g.lock);
    enum hm_cpu_bf16 s = ensure_ready();
    pthread_mutex_unlock(&g.lock);
    return s;
}

bool hm_cpu_matmul_bf16_applies(const struct hm_tensor *node)
{
    const struct hm_tensor *a = node->src[0], *b = node->src[1], *bias = node->src[2];
    /* p3 marks a row-invariant matmul (hm_linear_rows, batched serving): its results must not
     * depend on the batch, which oneDNN's blocking does not promise; it keeps its own kernel. */
    if (!hm_cpu_bf16_fast() || node->op != HM_OP_MATMUL || node->op_params[3] ||
        a->type != HM_DTYPE_BF16 || b->type != HM_DTYPE_BF16)
        return false;
    /* oneDNN adds the bias after the output scale would apply; keep alpha != 1 with a bias on the
     * widening path rather than guess the order. */
    if (bias && hm_op_f32(node, 0) != 1.0f)
        return false;
    return hm_cpu_bf16_support() != HM_CPU_BF16_NONE;
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
    dnnl_status_t s = desc3(&md[0], k->batch, M, K, dnnl_bf16, M * K, k->ta ? 1 : K, k->ta ? M : 1);
    if (s == dnnl_success)
        s = desc3(&md[1], k->batch, K, N, dnnl_bf16, K * N, k->tb ? 1 : N, k->tb ? K : 1);
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
        return hm_fail(HM_ERR_DEVICE, "cpu: oneDNN bf16 matmul %lldx%lldx%lld (batch %lld): "
                       "status %d", (long long)M, (long long)N, (long long)K, (long long)k->batch,
                       (int)s);
    e->key = *k;
    return HM_OK;
}

/* The cached entry for key, created on first use; NULL (error set) when the table is full or
 * oneDNN refuses the shape. Called with the lock held. */
static struct mm_entry *entry_for(const struct mm_key *k, enum hm_status *st)
{
    for (int i = 0; i < g.n; i++)
        if (memcmp(&g.slot[i].key, k, sizeof *k) == 0)
            return &g.slot[i];
    if (g.n == CACHE_SLOTS) {
        *st = hm_fail(HM_ERR_UNSUPPORTED, "cpu: more than %d bf16 matmul shapes", CACHE_SLOTS);
        return NULL;
    }
    struct mm_entry *e = &g.slot[g.n];
    memset(e, 0, sizeof *e);
    if ((*st = create_entry(k, e)) != HM_OK)
        return NULL;
    g.n++;
    return e;
}

enum hm_status hm_cpu_matmul_bf16(const struct hm_exec *ex, struct hm_tensor *dst)
{
    const struct hm_tensor *a = dst->src[0], *b = dst->src[1], *bias = dst->src[2];
    bool ta = dst->op_params[1], tb = dst->op_params[2];
    struct hm_mm_dims d = hm_mm_dims_of(a, b, ta, tb);
    struct mm_key k;
    memset(&k, 0, sizeof k); /* the key is compared bytewise, padding included */
    k.batch = d.batch, k.M = d.M, k.N = d.N, k.K = d.K, k.alpha = hm_op_f32(dst, 0);
    k.ta = ta, k.tb = tb, k.acc = dst->acc & 1;
    k.out = dst->type, k.bias = bias ? bias->type : HM_DTYPE_COUNT;
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
            st = hm_fail(HM_ERR_DEVICE, "cpu: oneDNN bf16 matmul failed: status %d", (int)s);
    }
    pthread_mutex_unlock(&g.lock);
    return st;
}
