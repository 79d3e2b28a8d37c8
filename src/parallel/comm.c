/*
 * comm.c - communicator dispatch, the single-process no-op, and the model-level helpers.
 * Backends (comm-mpi.c, comm-nccl.c) fill struct hm_comm_ops; everything here is backend-free,
 * so the trainer links the same code whichever of them is built.
 */
#include "comm-impl.h"
#include "hermes/model.h"
#include "util/util.h"

static enum hm_status none_allreduce(struct hm_comm *c, void *p, size_t n)
{
    return HM_OK;
}

static enum hm_status none_broadcast(struct hm_comm *c, void *p, size_t bytes, int root)
{
    return HM_OK;
}

static enum hm_status none_double(struct hm_comm *c, double *v)
{
    return HM_OK;
}

static enum hm_status none_barrier(struct hm_comm *c)
{
    return HM_OK;
}

static enum hm_status none_reserve(struct hm_comm *c, int max_ops, size_t max_elems)
{
    return HM_OK;
}

static enum hm_status none_f32(struct hm_comm *c, struct hm_backend *be, float *p, size_t n)
{
    return HM_OK;
}

static enum hm_status none_ireduce_scatter(struct hm_comm *c, struct hm_backend *be, float *base,
                                           size_t total, size_t off, size_t n)
{
    return HM_OK;
}

static enum hm_status none_progress(struct hm_comm *c)
{
    return HM_OK;
}

static enum hm_status none_p2p(struct hm_comm *c, void *p, size_t bytes, int peer)
{
    return hm_fail(HM_ERR_USAGE, "a single-process communicator has no rank %d to talk to", peer);
}

static enum hm_status none_send(struct hm_comm *c, const void *p, size_t bytes, int peer)
{
    return none_p2p(c, NULL, bytes, peer);
}

static void none_free(struct hm_comm *c)
{
}

static const struct hm_comm_ops single_ops = {
    .name = "single",
    .allreduce_sum = none_allreduce,
    .broadcast = none_broadcast,
    .allreduce_double = none_double,
    .barrier = none_barrier,
    .broadcast_host = none_broadcast,
    .async_reserve = none_reserve,
    .iallreduce = none_f32,
    .ireduce_scatter = none_ireduce_scatter,
    .progress = none_progress,
    .wait_all = none_progress,
    .reduce_scatter = none_f32,
    .all_gather = none_f32,
    .send_host = none_send,
    .recv_host = none_p2p,
    .free = none_free,
};

enum hm_status hm_comm_single_new(struct hm_comm **out)
{
    struct hm_comm *c = hm_calloc(1, sizeof *c);
    if (!c)
        return hm_fail(HM_ERR_NOMEM, "out of memory");
    c->ops = &single_ops;
    c->rank = 0;
    c->size = 1;
    *out = c;
    return HM_OK;
}

void hm_comm_free(struct hm_comm *c)
{
    if (!c)
        return;
    c->ops->free(c);
    hm_comm_free(c->parent);
    hm_free(c);
}

void hm_comm_abort(struct hm_comm *c, int code)
{
    if (!c)
        return;
    if (c->ops->abort)
        c->ops->abort(c, code);
    else
        c->ops->free(c);
    hm_comm_abort(c->parent, code);
    hm_free(c);
}

int hm_comm_rank(const struct hm_comm *c)
{
    return c->rank;
}

int hm_comm_size(const struct hm_comm *c)
{
    return c->size;
}

const char *hm_comm_name(const struct hm_comm *c)
{
    return c->ops->name;
}

static size_t n_f32(const struct hm_buffer *buf)
{
    return hm_buffer_size(buf) / sizeof(float);
}

/* f32 elements [offset, offset + n) must lie in buf. */
static enum hm_status check_range(const char *what, const struct hm_buffer *buf, size_t offset,
                                  size_t n)
{
    if (!buf)
        return hm_fail(HM_ERR_USAGE, "%s: no buffer", what);
    if (offset > n_f32(buf) || n > n_f32(buf) - offset)
        return hm_fail(HM_ERR_USAGE, "%s: elements [%zu, %zu + %zu) are outside the buffer's %zu",
                       what, offset, offset, n, n_f32(buf));
    return HM_OK;
}

static enum hm_status check_root(const char *what, const struct hm_comm *c, int root)
{
    if (root < 0 || root >= c->size)
        return hm_fail(HM_ERR_USAGE, "%s: root rank %d is outside the world of %d", what, root,
                       c->size);
    return HM_OK;
}

enum hm_status hm_comm_allreduce_sum(struct hm_comm *c, struct hm_buffer *buf, size_t offset, size_t n)
{
    enum hm_status st = check_range("all-reduce", buf, offset, n);
    return st != HM_OK ? st : c->ops->allreduce_sum(c, (float *)hm_buffer_ptr(buf) + offset, n);
}

enum hm_status hm_comm_broadcast(struct hm_comm *c, struct hm_buffer *buf, int root)
{
    enum hm_status st = check_root("broadcast", c, root);
    if (st == HM_OK && !buf)
        st = hm_fail(HM_ERR_USAGE, "broadcast: no buffer");
    return st != HM_OK ? st : c->ops->broadcast(c, hm_buffer_ptr(buf), hm_buffer_size(buf), root);
}

enum hm_status hm_comm_allreduce_double(struct hm_comm *c, double *value)
{
    return c->ops->allreduce_double(c, value);
}

enum hm_status hm_comm_broadcast_host(struct hm_comm *c, void *data, size_t bytes, int root)
{
    enum hm_status st = check_root("broadcast", c, root);
    if (st != HM_OK || c->size == 1 || bytes == 0)
        return st;
    return c->ops->broadcast_host(c, data, bytes, root);
}

enum hm_status hm_comm_barrier(struct hm_comm *c)
{
    return c->ops->barrier(c);
}

enum hm_status hm_comm_shard(const struct hm_comm *c, size_t n, int rank, size_t *offset,
                             size_t *count)
{
    *offset = *count = 0;
    if (rank < 0 || rank >= c->size)
        return hm_fail(HM_ERR_USAGE, "shard: rank %d is outside the world of %d", rank, c->size);
    size_t w = (size_t)c->size, r = (size_t)rank, q = n / w, rem = n % w;
    *offset = q * r + HM_MIN(r, rem); /* the first n % w ranks hold one element more */
    *count = q + (r < rem);
    return HM_OK;
}

enum hm_status hm_comm_async_reserve(struct hm_comm *c, int max_ops, size_t max_elems)
{
    return c->size == 1 ? HM_OK : c->ops->async_reserve(c, max_ops, max_elems);
}

enum hm_status hm_comm_allreduce_start(struct hm_comm *c, struct hm_buffer *buf, size_t offset, size_t n)
{
    enum hm_status st = check_range("all-reduce", buf, offset, n);
    if (st != HM_OK || c->size == 1 || n == 0)
        return st;
    return c->ops->iallreduce(c, hm_buffer_backend(buf), (float *)hm_buffer_ptr(buf) + offset, n);
}

enum hm_status hm_comm_reduce_scatter_start(struct hm_comm *c, struct hm_buffer *buf, size_t offset,
                                            size_t n)
{
    enum hm_status st = check_range("reduce-scatter", buf, offset, n);
    if (st != HM_OK || c->size == 1 || n == 0)
        return st;
    return c->ops->ireduce_scatter(c, hm_buffer_backend(buf), hm_buffer_ptr(buf), n_f32(buf), offset, n);
}

enum hm_status hm_comm_progress(struct hm_comm *c)
{
    return c->size == 1 ? HM_OK : c->ops->progress(c);
}

enum hm_status hm_comm_wait_all(struct hm_comm *c)
{
    return c->size == 1 ? HM_OK : c->ops->wait_all(c);
}

enum hm_status hm_comm_reduce_scatter(struct hm_comm *c, struct hm_buffer *buf)
{
    if (c->size == 1)
        return HM_OK;
    return c->ops->reduce_scatter(c, hm_buffer_backend(buf), hm_buffer_ptr(buf), n_f32(buf));
}

enum hm_status hm_comm_all_gather(struct hm_comm *c, struct hm_buffer *buf)
{
    if (c->size == 1)
        return HM_OK;
    return c->ops->all_gather(c, hm_buffer_backend(buf), hm_buffer_ptr(buf), n_f32(buf));
}

static enum hm_status check_peer(const struct hm_comm *c, int peer)
{
    if (peer < 0 || peer >= c->size || peer == c->rank)
        return hm_fail(HM_ERR_USAGE, "rank %d cannot exchange data with rank %d (world size %d)", c->rank,
                       peer, c->size);
    return HM_OK;
}

enum hm_status hm_comm_send_host(struct hm_comm *c, const void *data, size_t bytes, int peer)
{
    enum hm_status st = check_peer(c, peer);
    return st != HM_OK || bytes == 0 ? st : c->ops->send_host(c, data, bytes, peer);
}

enum hm_status hm_comm_recv_host(struct hm_comm *c, void *data, size_t bytes, int peer)
{
    enum hm_status st = check_peer(c, peer);
    return st != HM_OK || bytes == 0 ? st : c->ops->recv_host(c, data, bytes, peer);
}

enum hm_status hm_comm_broadcast_params(struct hm_comm *c, struct hm_model *m)
{
    if (c->size == 1)
        return HM_OK;
    enum hm_status st = hm_comm_broadcast(c, hm_block_data(hm_model_params(m)), 0);
    return st == HM_OK ? hm_model_weights_changed(m) : st;
}
