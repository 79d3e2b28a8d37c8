/*
 * backend-cuda.cu - the CUDA backend: device memory as backend memory (cudaMalloc; out-of-memory
 * reported with the bytes requested and the device's free/total), one non-blocking stream per
 * backend on which every copy and kernel runs in order, the kernel table, per-node workspace
 * sizes, node checks, and the extern "C" constructor. This is the only file of the backend with
 * C linkage (hm_backend_cuda_new, hm_cuda_device_count); the op families live in the other .cu
 * files, each with its .cuh.
 *
 * Synchronisation: kernels are asynchronous; host copies (set/get), the reductions that return a
 * value (sumsq, is_finite) and hm_backend_synchronize wait for the stream. Data errors found on
 * the device (token id or target out of range) are reported at those points (common.cuh).
 */
#include "elementwise.cuh"
#include "embed.cuh"
#include "graph-capture.cuh"
#include "matmul.cuh"
#include "optim.cuh"

enum hm_status hm_cuda_fail(cudaError_t e, const char *expr, const char *file, int line)
{
    enum hm_status st = e == cudaErrorMemoryAllocation ? HM_ERR_NOMEM : HM_ERR_DEVICE;
    return hm_fail(st, "cuda: %s failed at %s:%d: %s", expr, file, line, cudaGetErrorString(e));
}

void hm_cuda_abort(cudaError_t e, const char *expr, const char *file, int line)
{
    fprintf(stderr, "hermes-llm: internal error: cuda: %s failed at %s:%d: %s (please report)\n", expr, file, line,
            cudaGetErrorString(e));
    fflush(stderr);
    abort();
}

/* ---- data errors recorded by kernels -------------------------------------------------------- */

/* Reports the first slot holding an error and clears that slot only: an error in another slot
 * stays recorded and is reported at the next synchronisation. */
static enum hm_status check_data_errors(struct hm_cuda_ctx *cx)
{
    unsigned long long bad[HM_CUDA_ERR_SLOTS];
    HM_CUDA_TRY(cudaMemcpyAsync(bad, cx->err, sizeof bad, cudaMemcpyDeviceToHost, cx->stream));
    HM_CUDA_TRY(cudaStreamSynchronize(cx->stream));
    for (int slot = 0; slot < HM_CUDA_ERR_SLOTS; slot++) {
        if (bad[slot] == ~0ull)
            continue;
        long long index = (long long)(bad[slot] >> 32), limit = (long long)cx->err_slot[slot].limit;
        int32_t value = (int32_t)(uint32_t)bad[slot];
        HM_CUDA_TRY(cudaMemsetAsync(cx->err + slot, 0xff, sizeof bad[slot], cx->stream));
        HM_CUDA_TRY(cudaStreamSynchronize(cx->stream));
        if (slot == HM_CUDA_ERR_EMBEDDING)
            return hm_fail(HM_ERR_USAGE, "embedding: token id %d at index %lld is outside [0, %lld)", value,
                           index, limit);
        return hm_fail(HM_ERR_USAGE, "cross_entropy: target %d at index %lld is outside [0, %lld)", value,
                       index, limit);
    }
    return HM_OK;
}

/* ---- memory ---------------------------------------------------------------------------------- */

static enum hm_status cuda_alloc(struct hm_backend *be, size_t bytes, void **out)
{
    struct hm_cuda_ctx *cx = (struct hm_cuda_ctx *)be->context;
    HM_CUDA_TRY(cudaSetDevice(cx->device));
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : HM_CUDA_ALIGN);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError(); /* clear it: an allocation failure is not sticky */
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        char msg[512];
        hm_cuda_oom_message(msg, sizeof msg, cx->device, bytes, free_b, total_b);
        return hm_fail(HM_ERR_NOMEM, "%s", msg);
    }
    HM_CUDA_TRY(e);
    *out = p;
    return HM_OK;
}

static void cuda_release(struct hm_backend *be, void *p)
{
    struct hm_cuda_ctx *cx = (struct hm_cuda_ctx *)be->context;
    if (p) {
        cudaStreamSynchronize(cx->stream); /* kernels may still read it */
        cudaFree(p);
    }
}

static enum hm_status cuda_set(struct hm_backend *be, void *dst, const void *host, size_t bytes)
{
    struct hm_cuda_ctx *cx = (struct hm_cuda_ctx *)be->context;
    HM_CUDA_TRY(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, cx->stream));
    HM_CUDA_TRY(cudaStreamSynchronize(cx->stream)); /* the caller may reuse `host` at once */
    return HM_OK;
}

static enum hm_status cuda_get(struct hm_backend *be, void *host, const void *src, size_t bytes)
{
    struct hm_cuda_ctx *cx = (struct hm_cuda_ctx *)be->context;
    HM_CUDA_TRY(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, cx->stream));
    HM_CUDA_TRY(cudaStreamSynchronize(cx->stream));
    return check_data_errors(cx);
}

static enum hm_status cuda_memset0(struct hm_backend *be, void *dst, size_t bytes)
{
    struct hm_cuda_ctx *cx = (struct hm_cuda_ctx *)be->context;
    HM_CUDA_TRY(cudaMemsetAsync(dst, 0, bytes, cx->stream));
    return HM_OK;
}

static enum hm_status cuda_synchronize(struct hm_backend *be)
{
    struct hm_cuda_ctx *cx = (struct hm_cuda_ctx *)be->context;
    HM_CUDA_TRY(cudaStreamSynchronize(cx->stream));
    return check_data_errors(cx);
}

static enum hm_status cuda_run_sequence(struct hm_backend *be, uint64_t key, struct hm_tensor *const *nodes, int n,
                                        const struct hm_runtime *rt, enum hm_status (*run)(void *user), void *user)
{
    struct hm_cuda_ctx *cx = (struct hm_cuda_ctx *)be->context;
    return cx->graphs ? hm_cuda_graph_run(cx, key, nodes, n, rt, run, user) : run(user);
}

/* Communicators (comm-nccl.c) order their collectives after the work issued here. */
static void *cuda_native_stream(struct hm_backend *be)
{
    return (void *)((struct hm_cuda_ctx *)be->context)->stream;
}

/* ---- kernels, checks, workspace ------------------------------------------------------------- */

static hm_kernel_fn cuda_kernels[HM_OP_COUNT];

/* Every op of ops.def with a kernel: hm_cuda_<name> (declared in common.cuh). */
static void fill_kernel_table(void)
{
#define HM_OP(NAME, name, ...) cuda_kernels[HM_OP_##NAME] = hm_cuda_##name;
#define HM_OP_PSEUDO(...)
#include "hermes/ops.def"
#undef HM_OP_PSEUDO
#undef HM_OP
}

/* The batched-serving modes (per-row KV slots and positions, the row-invariant matmul) have CPU
 * kernels only: the serving engine runs on the CPU. */
static bool serving_mode(const struct hm_tensor *node)
{
    switch (node->op) {
    case HM_OP_MATMUL: return node->op_params[3] != 0;
    case HM_OP_ROPE: return node->src[1] != NULL;
    case HM_OP_KV_WRITE: return node->src[2] != NULL;
    case HM_OP_ATTENTION: return node->src[4] != NULL;
    default: return false;
    }
}

static enum hm_status cuda_check_node(struct hm_backend *be, const struct hm_tensor *node)
{
    struct hm_cuda_ctx *cx = (struct hm_cuda_ctx *)be->context;
    if (serving_mode(node))
        return hm_fail(HM_ERR_UNSUPPORTED, "%s: the batched-serving mode (per-token KV slots and "
                       "positions, row-invariant matmul) runs on the cpu backend only",
                       hm_op_name(node->op));
    /* bf16: every kernel reads and writes f32 or bf16 storage (HM_DISPATCH); a matmul's operands
     * share one dtype, which the model guarantees (weights are copied to the activations' dtype). */
    if (node->op == HM_OP_MATMUL &&
        (node->src[0]->type != node->src[1]->type || (node->src[2] && node->src[2]->type != node->src[0]->type)))
        return hm_fail(HM_ERR_UNSUPPORTED, "matmul: operands of different dtypes (%s, %s) are not supported on cuda",
                       hm_dtype_name(node->src[0]->type), hm_dtype_name(node->src[1]->type));
    if (node->op == HM_OP_ATTENTION || node->op == HM_OP_ATTENTION_BACK) {
        const struct hm_tensor *q = node->src[node->op == HM_OP_ATTENTION ? 0 : 1];
        struct hm_cuda_attn_plan p;
        enum hm_status st = hm_cuda_attn_plan(q->shape[3], &p);
        if (st != HM_OK)
            return st;
        size_t need = p.smem_fwd > p.smem_bwd_kv ? p.smem_fwd : p.smem_bwd_kv;
        need = need > p.smem_bwd_q ? need : p.smem_bwd_q;
        if (need > cx->smem_optin)
            return hm_fail(HM_ERR_UNSUPPORTED, "attention: head dim %d needs %zu bytes of shared memory per "
                                               "block, this GPU allows %zu", p.hd, need, cx->smem_optin);
    }
    return HM_OK;
}

static size_t cuda_workspace_size(struct hm_backend *be, const struct hm_tensor *node)
{
    size_t sort = 0;
    if (node->op == HM_OP_EMBEDDING_BACK)
        sort = hm_cuda_embedding_sort_bytes(hm_nelements(node->src[1]));
    return hm_cuda_workspace_bytes(node, sort);
}

/* ---- lifetime -------------------------------------------------------------------------------- */

static void ctx_free(struct hm_cuda_ctx *cx)
{
    if (!cx)
        return;
    cudaSetDevice(cx->device);
    if (cx->stream)
        cudaStreamSynchronize(cx->stream);
    cudaFree(cx->lt_ws);
    cudaFree(cx->red);
    cudaFree(cx->flag);
    cudaFree(cx->err);
    if (cx->lt)
        cublasLtDestroy(cx->lt);
    if (cx->stream)
        cudaStreamDestroy(cx->stream);
    hm_cuda_mm_cache_free(cx->mm);
    hm_cuda_graph_cache_free(cx->graphs);
    hm_free(cx);
}

static void cuda_free(struct hm_backend *be)
{
    ctx_free((struct hm_cuda_ctx *)be->context);
    hm_free(be);
}

static struct hm_backend_i cuda_iface;

static void fill_iface(void)
{
    struct hm_backend_i *i = &cuda_iface;
    i->name = "cuda";
    i->free = cuda_free;
    i->alloc = cuda_alloc;
    i->release = cuda_release;
    i->set = cuda_set;
    i->get = cuda_get;
    i->memset0 = cuda_memset0;
    i->synchronize = cuda_synchronize;
    i->kernels = cuda_kernels;
    i->check_node = cuda_check_node;
    i->workspace_size = cuda_workspace_size;
    i->adamw = hm_cuda_adamw;
    i->sumsq = hm_cuda_sumsq;
    i->scale = hm_cuda_scale_range;
    i->is_finite = hm_cuda_is_finite;
    i->convert = hm_cuda_convert;
    i->native_stream = cuda_native_stream;
    i->run_sequence = cuda_run_sequence;
}

static enum hm_status ctx_init(struct hm_cuda_ctx *cx, int device)
{
    cx->device = device;
    HM_CUDA_TRY(cudaSetDevice(device));
    cudaDeviceProp prop;
    HM_CUDA_TRY(cudaGetDeviceProperties(&prop, device));
    if (prop.major < 8)
        return hm_fail(HM_ERR_UNSUPPORTED, "cuda:%d: %s has compute capability %d.%d; hermes-llm is built for "
                                           "8.0 (A100) and 9.0 (H100) and needs at least 8.0",
                       device, prop.name, prop.major, prop.minor);
    cx->sm_count = prop.multiProcessorCount;
    cx->smem_optin = prop.sharedMemPerBlockOptin;
    const char *tf32 = getenv("HM_CUDA_TF32");
    cx->tf32 = tf32 && strcmp(tf32, "1") == 0;
    const char *attn = getenv("HM_CUDA_ATTN"), *graphs = getenv("HM_CUDA_GRAPH");
    cx->attn_reference = attn && strcmp(attn, "reference") == 0;
    HM_CUDA_TRY(cudaStreamCreateWithFlags(&cx->stream, cudaStreamNonBlocking));
    cublasStatus_t s = cublasLtCreate(&cx->lt);
    if (s != CUBLAS_STATUS_SUCCESS) {
        cx->lt = NULL;
        return hm_fail(HM_ERR_DEVICE, "cuda:%d: cublasLtCreate failed: %s", device, cublasGetStatusString(s));
    }
    cx->lt_ws_bytes = 32u << 20; /* NVIDIA's recommendation for Hopper */
    enum hm_status st;
    struct hm_backend tmp = {&cuda_iface, cx};
    if ((st = cuda_alloc(&tmp, cx->lt_ws_bytes, &cx->lt_ws)) != HM_OK)
        return st;
    HM_CUDA_TRY(cudaMalloc((void **)&cx->red, (HM_CUDA_REDUCE_BLOCKS + 1) * sizeof(double)));
    HM_CUDA_TRY(cudaMalloc((void **)&cx->flag, sizeof(int)));
    HM_CUDA_TRY(cudaMalloc((void **)&cx->err, HM_CUDA_ERR_SLOTS * sizeof(unsigned long long)));
    HM_CUDA_TRY(cudaMemsetAsync(cx->err, 0xff, HM_CUDA_ERR_SLOTS * sizeof(unsigned long long), cx->stream));
    HM_CUDA_TRY(cudaStreamSynchronize(cx->stream));
    enum hm_status gs = graphs && strcmp(graphs, "1") == 0 ? hm_cuda_graph_cache_new(&cx->graphs) : HM_OK;
    return gs != HM_OK ? gs : hm_cuda_mm_cache_new(&cx->mm);
}

extern "C" {

HM_API int hm_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

HM_API enum hm_status hm_backend_cuda_new(int device, struct hm_backend **out)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        (void)cudaGetLastError();
        return hm_fail(HM_ERR_UNSUPPORTED, "cuda:%d: no CUDA device found (%s); use --device cpu", device,
                       e != cudaSuccess ? cudaGetErrorString(e) : "the driver reports 0 devices");
    }
    if (device < 0 || device >= n)
        return hm_fail(HM_ERR_UNSUPPORTED, "cuda:%d: no such device (%d CUDA device%s found: cuda:0..cuda:%d)",
                       device, n, n == 1 ? "" : "s", n - 1);
    if (!cuda_iface.name) {
        fill_kernel_table();
        fill_iface();
    }
    struct hm_cuda_ctx *cx = (struct hm_cuda_ctx *)hm_calloc(1, sizeof(*cx));
    struct hm_backend *be = (struct hm_backend *)hm_calloc(1, sizeof(*be));
    if (!cx || !be) {
        hm_free(cx);
        hm_free(be);
        return hm_fail(HM_ERR_NOMEM, "out of memory creating the cuda backend");
    }
    enum hm_status st = ctx_init(cx, device);
    if (st != HM_OK) {
        ctx_free(cx);
        hm_free(be);
        return st;
    }
    be->iface = &cuda_iface;
    be->context = cx;
    *out = be;
    return HM_OK;
}

} /* extern "C" */
