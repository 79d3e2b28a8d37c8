/*
 * comm-nccl.c - the NCCL communicator: ncclAllReduce (f32 sum) and ncclBroadcast on one
 * communicator per process, one GPU per rank, on a stream of its own. Device buffers are used in
 * place; host buffers (the CPU backend, the loss, a status word) are staged through a device
 * scratch buffer in chunks, so the same trainer runs whatever backend holds the gradients.
 * Every call is synchronous on return (the stream is synchronized), like the MPI backend.
 * This is the only C file that includes CUDA or NCCL headers; it launches no kernels.
 * Built only with HM_NCCL.
 */
#include "comm-impl.h"
#include "util/util.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <string.h>

_Static_assert(sizeof(ncclUniqueId) == HM_COMM_NCCL_ID_BYTES, "ncclUniqueId is not 128 bytes");

#define STAGE_BYTES ((size_t)16 << 20) /* host staging chunk */

struct nccl_impl {
    ncclComm_t comm;
    cudaStream_t stream;
    void *scratch; /* STAGE_BYTES of device memory, allocated on first host-buffer use */
    int device;
};

static enum hm_status cuda_status(cudaError_t e, const char *what)
{
    if (e == cudaSuccess)
        return HM_OK;
    return hm_fail(e == cudaErrorMemoryAllocation ? HM_ERR_NOMEM : HM_ERR_DEVICE, "CUDA %s failed: %s",
                   what, cudaGetErrorString(e));
}

static enum hm_status nccl_status(ncclResult_t r, const char *what)
{
    if (r == ncclSuccess)
        return HM_OK;
    return hm_fail(HM_ERR_DEVICE, "NCCL %s failed: %s (set NCCL_DEBUG=INFO for details)", what,
                   ncclGetErrorString(r));
}

static struct nccl_impl *impl(struct hm_comm *c)
{
    return c->impl;
}

static bool is_device_ptr(const void *p)
{
    struct cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        cudaGetLastError(); /* older runtimes report plain host memory as an error: clear it */
        return false;
    }
    return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

static enum hm_status sync_stream(struct nccl_impl *n, const char *what)
{
    return cuda_status(cudaStreamSynchronize(n->stream), what);
}

static enum hm_status get_scratch(struct nccl_impl *n)
{
    if (n->scratch)
        return HM_OK;
    cudaError_t e = cudaMalloc(&n->scratch, STAGE_BYTES);
    if (e != cudaSuccess)
        return hm_fail(HM_ERR_NOMEM, "NCCL staging: cudaMalloc of %zu bytes failed: %s", STAGE_BYTES,
                       cudaGetErrorString(e));
    return HM_OK;
}

/* One collective over `bytes` bytes at p (device memory), in place. */
typedef ncclResult_t (*collective_fn)(struct nccl_impl *n, void *p, size_t bytes, int root);

static ncclResult_t do_allreduce_f32(struct nccl_impl *n, void *p, size_t bytes, int root)
{
    return ncclAllReduce(p, p, bytes / sizeof(float), ncclFloat32, ncclSum, n->comm, n->stream);
}

static ncclResult_t do_allreduce_f64(struct nccl_impl *n, void *p, size_t bytes, int root)
{
    return ncclAllReduce(p, p, bytes / sizeof(double), ncclFloat64, ncclSum, n->comm, n->stream);
}

static ncclResult_t do_broadcast(struct nccl_impl *n, void *p, size_t bytes, int root)
{
    return ncclBroadcast(p, p, bytes, ncclUint8, root, n->comm, n->stream);
}

/* Run `fn` on p directly when it is device memory, else chunk by chunk through the scratch
 * buffer (chunks are a multiple of 8 bytes, so elements never straddle two). */
static enum hm_status run(struct hm_comm *c, collective_fn fn, void *p, size_t bytes, int root,
                          const char *what)
{
    struct nccl_impl *n = impl(c);
    enum hm_status st;
    if (bytes == 0)
        return HM_OK;
    if (is_device_ptr(p)) {
        if ((st = nccl_status(fn(n, p, bytes, root), what)) != HM_OK)
            return st;
        return sync_stream(n, what);
    }
    if ((st = get_scratch(n)) != HM_OK)
        return st;
    for (size_t off = 0; off < bytes; off += STAGE_BYTES) {
        size_t len = HM_MIN(STAGE_BYTES, bytes - off);
        char *h = (char *)p + off;
        if ((st = cuda_status(cudaMemcpyAsync(n->scratch, h, len, cudaMemcpyHostToDevice, n->stream),
                              "host-to-device copy")) != HM_OK ||
            (st = nccl_status(fn(n, n->scratch, len, root), what)) != HM_OK ||
            (st = cuda_status(cudaMemcpyAsync(h, n->scratch, len, cudaMemcpyDeviceToHost, n->stream),
                              "device-to-host copy")) != HM_OK ||
            (st = sync_stream(n, what)) != HM_OK)
            return st;
    }
    return HM_OK;
}

static enum hm_status nccl_allreduce(struct hm_comm *c, void *p, size_t n)
{
    return run(c, do_allreduce_f32, p, n * sizeof(float), 0, "all-reduce");
}

static enum hm_status nccl_broadcast(struct hm_comm *c, void *p, size_t bytes, int root)
{
    return run(c, do_broadcast, p, bytes, root, "broadcast");
}

static enum hm_status nccl_double(struct hm_comm *c, double *v)
{
    return run(c, do_allreduce_f64, v, sizeof *v, 0, "all-reduce");
}

static enum hm_status nccl_barrier(struct hm_comm *c)
{
    double one = 1;
    return nccl_double(c, &one);
}

static void release(struct nccl_impl *n)
{
    if (n->scratch)
        cudaFree(n->scratch);
    if (n->stream)
        cudaStreamDestroy(n->stream);
    hm_free(n);
}

static void nccl_free(struct hm_comm *c)
{
    struct nccl_impl *n = impl(c);
    ncclCommDestroy(n->comm);
    release(n);
}

static void nccl_abort(struct hm_comm *c, int code)
{
    struct nccl_impl *n = impl(c);
    ncclCommAbort(n->comm); /* does not wait for the other ranks */
    release(n);
}

static const struct hm_comm_ops nccl_ops = {
    .name = "nccl",
    .allreduce_sum = nccl_allreduce,
    .broadcast = nccl_broadcast,
    .allreduce_double = nccl_double,
    .barrier = nccl_barrier,
    .broadcast_host = nccl_broadcast,
    .free = nccl_free,
    .abort = nccl_abort,
};

enum hm_status hm_comm_nccl_device_count(int *out)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver) {
        cudaGetLastError();
        n = 0;
    } else if (e != cudaSuccess) {
        return cuda_status(e, "device query");
    }
    *out = n;
    return HM_OK;
}

enum hm_status hm_comm_nccl_get_id(void *id)
{
    ncclUniqueId u;
    enum hm_status st = nccl_status(ncclGetUniqueId(&u), "unique id");
    if (st == HM_OK)
        memcpy(id, &u, sizeof u);
    return st;
}

enum hm_status hm_comm_nccl_new(int rank, int world, const void *id, int device, struct hm_comm **out)
{
    int n_dev = 0;
    enum hm_status st = hm_comm_nccl_device_count(&n_dev);
    if (st != HM_OK)
        return st;
    if (n_dev == 0)
        return hm_fail(HM_ERR_DEVICE, "rank %d: no CUDA device found", rank);
    if (device < 0 || device >= n_dev)
        return hm_fail(HM_ERR_DEVICE, "rank %d: CUDA device %d does not exist (%d visible)", rank, device,
                       n_dev);
    struct hm_comm *c = hm_calloc(1, sizeof *c);
    struct nccl_impl *n = hm_calloc(1, sizeof *n);
    if (!c || !n) {
        hm_free(c);
        hm_free(n);
        return hm_fail(HM_ERR_NOMEM, "out of memory");
    }
    n->device = device;
    ncclUniqueId u;
    memcpy(&u, id, sizeof u);
    if ((st = cuda_status(cudaSetDevice(device), "set device")) != HM_OK ||
        (st = cuda_status(cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking),
                          "stream create")) != HM_OK ||
        (st = nccl_status(ncclCommInitRank(&n->comm, world, u, rank), "communicator init")) != HM_OK) {
        release(n);
        hm_free(c);
        return st;
    }
    c->ops = &nccl_ops;
    c->rank = rank;
    c->size = world;
    c->impl = n;
    *out = c;
    return HM_OK;
}
