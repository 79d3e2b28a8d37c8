/*
 * comm-nccl.c - the NCCL communicator: ncclAllReduce (f32 sum) and ncclBroadcast on one
 * communicator per process, one GPU per rank, on a stream of its own. Device buffers are used in
 * place; host buffers (the CPU backend, the loss, a status word) are staged through a device
 * scratch buffer in chunks, so the same trainer runs whatever backend holds the gradients.
 * The original calls are synchronous on return (the stream is synchronized), like the MPI backend;
 * on device memory they first wait for the device, so earlier kernels that wrote the buffer are done.
 *
 * The f32 collectives that take a backend (asynchronous all-reduce and reduce-scatter, the
 * blocking reduce-scatter and all-gather) order themselves on the GPU instead: an event recorded
 * on the backend's compute stream (hm_backend_native_stream) gates our stream, and wait_all (or
 * the end of a blocking one) makes the compute stream wait for ours; the host never waits.
 * Uneven shards are groups of ncclReduce / ncclBroadcast, one per rank, as NCCL has no "v" forms.
 * Host buffers stay synchronous and staged; a reduce-scatter of host memory is an all-reduce.
 *
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
    cudaEvent_t ready, done; /* compute stream -> ours, ours -> compute stream */
    cudaStream_t waiter;     /* compute stream to release at wait_all; NULL when none */
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
        /* The buffer's backend may still be writing it on its compute stream, which these calls
         * are not given: wait for the whole device (the call blocks until done anyway). */
        if ((st = cuda_status(cudaDeviceSynchronize(), what)) != HM_OK ||
            (st = nccl_status(fn(n, p, bytes, root), what)) != HM_OK)
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

/* Our stream waits for the work `be` has issued so far (nothing to wait for on the CPU). */
static enum hm_status after_compute(struct nccl_impl *n, struct hm_backend *be)
{
    cudaStream_t s = (cudaStream_t)hm_backend_native_stream(be);
    enum hm_status st;
    if (!s)
        return HM_OK;
    if ((st = cuda_status(cudaEventRecord(n->ready, s), "event record")) != HM_OK ||
        (st = cuda_status(cudaStreamWaitEvent(n->stream, n->ready, 0), "stream wait")) != HM_OK)
        return st;
    n->waiter = s;
    return HM_OK;
}

/* The compute stream waits for everything issued on ours. */
static enum hm_status before_compute(struct nccl_impl *n)
{
    enum hm_status st;
    if (!n->waiter)
        return HM_OK;
    if ((st = cuda_status(cudaEventRecord(n->done, n->stream), "event record")) != HM_OK ||
        (st = cuda_status(cudaStreamWaitEvent(n->waiter, n->done, 0), "stream wait")) != HM_OK)
        return st;
    n->waiter = NULL;
    return HM_OK;
}

static enum hm_status nccl_reserve(struct hm_comm *c, int max_ops, size_t max_elems)
{
    return HM_OK; /* NCCL queues any number of operations on the stream */
}

static enum hm_status nccl_iallreduce(struct hm_comm *c, struct hm_backend *be, float *p, size_t cnt)
{
    struct nccl_impl *n = impl(c);
    enum hm_status st;
    if (!is_device_ptr(p))
        return nccl_allreduce(c, p, cnt);
    if ((st = after_compute(n, be)) != HM_OK)
        return st;
    return nccl_status(ncclAllReduce(p, p, cnt, ncclFloat32, ncclSum, n->comm, n->stream), "all-reduce");
}

/* [base+off, +cnt) summed onto each rank's part of its shard: one in-place ncclReduce per rank. */
static enum hm_status issue_reduce_scatter(struct hm_comm *c, float *base, size_t total, size_t off, size_t cnt)
{
    struct nccl_impl *n = impl(c);
    ncclResult_t r = ncclGroupStart();
    for (int j = 0; j < c->size && r == ncclSuccess; j++) {
        size_t s, len;
        hm_comm_shard(c, total, j, &s, &len);
        size_t a = HM_MAX(off, s), b = HM_MIN(off + cnt, s + len);
        if (b > a)
            r = ncclReduce(base + a, base + a, b - a, ncclFloat32, ncclSum, j, n->comm, n->stream);
    }
    ncclResult_t e = ncclGroupEnd();
    return nccl_status(r != ncclSuccess ? r : e, "reduce-scatter");
}

static enum hm_status nccl_ireduce_scatter(struct hm_comm *c, struct hm_backend *be, float *base,
                                           size_t total, size_t off, size_t cnt)
{
    enum hm_status st;
    if (!is_device_ptr(base))
        return nccl_allreduce(c, base + off, cnt); /* a superset of the shard's sums */
    if ((st = after_compute(impl(c), be)) != HM_OK)
        return st;
    return issue_reduce_scatter(c, base, total, off, cnt);
}

static enum hm_status nccl_progress(struct hm_comm *c)
{
    return HM_OK; /* NCCL progresses on its own */
}

static enum hm_status nccl_wait_all(struct hm_comm *c)
{
    return before_compute(impl(c));
}

static enum hm_status nccl_reduce_scatter(struct hm_comm *c, struct hm_backend *be, float *base, size_t total)
{
    enum hm_status st = nccl_ireduce_scatter(c, be, base, total, 0, total);
    return st != HM_OK ? st : before_compute(impl(c));
}

static enum hm_status nccl_all_gather(struct hm_comm *c, struct hm_backend *be, float *base, size_t total)
{
    struct nccl_impl *n = impl(c);
    enum hm_status st;
    if (!is_device_ptr(base)) {
        for (int j = 0; j < c->size; j++) {
            size_t s, len;
            hm_comm_shard(c, total, j, &s, &len);
            if ((st = run(c, do_broadcast, base + s, len * sizeof(float), j, "all-gather")) != HM_OK)
                return st;
        }
        return HM_OK;
    }
    if ((st = after_compute(n, be)) != HM_OK)
        return st;
    ncclResult_t r = ncclGroupStart();
    for (int j = 0; j < c->size && r == ncclSuccess; j++) {
        size_t s, len;
        hm_comm_shard(c, total, j, &s, &len);
        if (len)
            r = ncclBroadcast(base + s, base + s, len, ncclFloat32, j, n->comm, n->stream);
    }
    ncclResult_t e = ncclGroupEnd();
    if ((st = nccl_status(r != ncclSuccess ? r : e, "all-gather")) != HM_OK)
        return st;
    return before_compute(n);
}

/* Point to point, staged through the scratch buffer chunk by chunk (both sides chunk alike). */
static enum hm_status nccl_send_host(struct hm_comm *c, const void *p, size_t bytes, int peer)
{
    struct nccl_impl *n = impl(c);
    enum hm_status st;
    if ((st = get_scratch(n)) != HM_OK)
        return st;
    for (size_t off = 0; off < bytes; off += STAGE_BYTES) {
        size_t len = HM_MIN(STAGE_BYTES, bytes - off);
        if ((st = cuda_status(cudaMemcpyAsync(n->scratch, (const char *)p + off, len, cudaMemcpyHostToDevice,
                                              n->stream), "host-to-device copy")) != HM_OK ||
            (st = nccl_status(ncclSend(n->scratch, len, ncclUint8, peer, n->comm, n->stream), "send")) != HM_OK ||
            (st = sync_stream(n, "send")) != HM_OK)
            return st;
    }
    return HM_OK;
}

static enum hm_status nccl_recv_host(struct hm_comm *c, void *p, size_t bytes, int peer)
{
    struct nccl_impl *n = impl(c);
    enum hm_status st;
    if ((st = get_scratch(n)) != HM_OK)
        return st;
    for (size_t off = 0; off < bytes; off += STAGE_BYTES) {
        size_t len = HM_MIN(STAGE_BYTES, bytes - off);
        if ((st = nccl_status(ncclRecv(n->scratch, len, ncclUint8, peer, n->comm, n->stream), "receive")) != HM_OK ||
            (st = cuda_status(cudaMemcpyAsync((char *)p + off, n->scratch, len, cudaMemcpyDeviceToHost, n->stream),
                              "device-to-host copy")) != HM_OK ||
            (st = sync_stream(n, "receive")) != HM_OK)
            return st;
    }
    return HM_OK;
}

static enum hm_status nccl_barrier(struct hm_comm *c)
{
    double one = 1;
    return nccl_double(c, &one);
}

static void release(struct nccl_impl *n)
{
    if (n->ready)
        cudaEventDestroy(n->ready);
    if (n->done)
        cudaEventDestroy(n->done);
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
    .async_reserve = nccl_reserve,
    .iallreduce = nccl_iallreduce,
    .ireduce_scatter = nccl_ireduce_scatter,
    .progress = nccl_progress,
    .wait_all = nccl_wait_all,
    .reduce_scatter = nccl_reduce_scatter,
    .all_gather = nccl_all_gather,
    .send_host = nccl_send_host,
    .recv_host = nccl_recv_host,
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
        (st = cuda_status(cudaEventCreateWithFlags(&n->ready, cudaEventDisableTiming), "event create")) != HM_OK ||
        (st = cuda_status(cudaEventCreateWithFlags(&n->done, cudaEventDisableTiming), "event create")) != HM_OK ||
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
