/*
 * comm-mpi.c - the MPI communicator for CPU buffers, and the MPI bootstrap of NCCL across nodes
 * (rank 0 makes the NCCL id and MPI_Bcasts it; the node-local rank picks the GPU). Sums run in
 * MPI's fixed reduction order for a given world size, so runs are reproducible. Errors come back
 * as codes (MPI_ERRORS_RETURN) and become one-line messages. Built only with HM_MPI.
 *
 * Asynchronous collectives are MPI_Iallreduce / MPI_Ireduce_scatter requests held in arrays sized
 * by async_reserve; hm_comm_progress is MPI_Testall, which is what lets Open MPI's nonblocking
 * collectives advance while the backward pass runs. An in-place reduce-scatter leaves this
 * rank's block at the start of the range; wait_all moves it to where the shard lies.
 */
#include "comm-impl.h"
#include "util/util.h"

#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK ((size_t)1 << 30) /* MPI counts are int: larger ranges go in chunks of this many */

struct move {
    float *dst, *src;
    size_t n;
};

struct mpi_impl {
    MPI_Request *req; /* cap in-flight requests */
    int n_req, cap;
    int *counts;       /* cap x size: receive counts of each reduce-scatter request */
    struct move *move; /* per request: where its reduce-scatter result belongs (n = 0: nothing) */
    int *tmp_counts, *tmp_displs; /* size each: the blocking collectives' arguments */
};

static struct mpi_impl *impl(struct hm_comm *c)
{
    return c->impl;
}

static enum hm_status mpi_status(int rc, const char *what)
{
    if (rc == MPI_SUCCESS)
        return HM_OK;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return hm_fail(HM_ERR_DEVICE, "MPI %s failed: %s", what, msg);
}

static enum hm_status mpi_allreduce(struct hm_comm *c, void *p, size_t n)
{
    /* MPI counts are int: large buffers go in chunks. */
    float *f = p;
    for (size_t off = 0; off < n; off += (size_t)1 << 30) {
        int cnt = (int)HM_MIN(n - off, (size_t)1 << 30);
        enum hm_status st = mpi_status(MPI_Allreduce(MPI_IN_PLACE, f + off, cnt, MPI_FLOAT, MPI_SUM,
                                                     MPI_COMM_WORLD), "all-reduce");
        if (st != HM_OK)
            return st;
    }
    return HM_OK;
}

static enum hm_status mpi_broadcast(struct hm_comm *c, void *p, size_t bytes, int root)
{
    char *b = p;
    for (size_t off = 0; off < bytes; off += (size_t)1 << 30) {
        int cnt = (int)HM_MIN(bytes - off, (size_t)1 << 30);
        enum hm_status st = mpi_status(MPI_Bcast(b + off, cnt, MPI_BYTE, root, MPI_COMM_WORLD), "broadcast");
        if (st != HM_OK)
            return st;
    }
    return HM_OK;
}

static enum hm_status mpi_reserve(struct hm_comm *c, int max_ops, size_t max_elems)
{
    struct mpi_impl *m = impl(c);
    if (m->n_req != 0)
        return hm_fail(HM_ERR_USAGE, "MPI: cannot reserve while %d operations are in flight",
                       m->n_req);
    size_t cap = (size_t)max_ops + max_elems / CHUNK + 1; /* each range takes one request per chunk */
    if (cap > INT_MAX / (size_t)c->size)
        return hm_fail(HM_ERR_USAGE, "MPI: %d asynchronous operations are too many", max_ops);
    if (cap <= (size_t)m->cap)
        return HM_OK;
    bool ok = hm_grow((void **)&m->req, cap, sizeof *m->req);
    ok &= hm_grow((void **)&m->counts, cap * (size_t)c->size, sizeof *m->counts);
    ok &= hm_grow((void **)&m->move, cap, sizeof *m->move);
    if (!ok)
        return hm_fail(HM_ERR_NOMEM, "MPI: out of memory for %zu request slots", cap);
    m->cap = (int)cap;
    return HM_OK;
}

static enum hm_status next_request(struct hm_comm *c, int *out)
{
    struct mpi_impl *m = impl(c);
    if (m->n_req == m->cap)
        return hm_fail(HM_ERR_USAGE, "MPI: more asynchronous operations in flight than reserved (%d)", m->cap);
    *out = m->n_req;
    m->move[m->n_req] = (struct move){0};
    return HM_OK;
}

static enum hm_status mpi_iallreduce(struct hm_comm *c, struct hm_backend *be, float *p, size_t n)
{
    struct mpi_impl *m = impl(c);
    for (size_t off = 0; off < n; off += CHUNK) {
        int r = 0;
        enum hm_status st = next_request(c, &r);
        if (st != HM_OK || (st = mpi_status(MPI_Iallreduce(MPI_IN_PLACE, p + off, (int)HM_MIN(n - off, CHUNK),
                                                           MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &m->req[r]),
                                            "all-reduce start")) != HM_OK)
            return st;
        m->n_req++;
    }
    return HM_OK;
}

/* Element counts of [lo, hi) that fall in each rank's shard of `total`; returns this rank's
 * part's start in *mine. */
static void shard_counts(struct hm_comm *c, size_t total, size_t lo, size_t hi, int *counts, size_t *mine)
{
    *mine = lo;
    for (int j = 0; j < c->size; j++) {
        size_t s, n;
        hm_comm_shard(c, total, j, &s, &n);
        size_t a = HM_MAX(lo, s), b = HM_MIN(hi, s + n);
        counts[j] = b > a ? (int)(b - a) : 0;
        if (j == c->rank)
            *mine = a;
    }
}

static enum hm_status mpi_ireduce_scatter(struct hm_comm *c, struct hm_backend *be, float *base,
                                          size_t total, size_t off, size_t n)
{
    struct mpi_impl *m = impl(c);
    for (size_t lo = off; lo < off + n; lo += CHUNK) {
        size_t hi = HM_MIN(off + n, lo + CHUNK), mine;
        int r = 0;
        enum hm_status st = next_request(c, &r);
        if (st != HM_OK)
            return st;
        int *counts = m->counts + (size_t)r * (size_t)c->size; /* must live until completion */
        shard_counts(c, total, lo, hi, counts, &mine);
        if ((st = mpi_status(MPI_Ireduce_scatter(MPI_IN_PLACE, base + lo, counts, MPI_FLOAT, MPI_SUM,
                                                 MPI_COMM_WORLD, &m->req[r]), "reduce-scatter start")) != HM_OK)
            return st;
        m->move[r] = (struct move){base + mine, base + lo, (size_t)counts[c->rank]};
        m->n_req++;
    }
    return HM_OK;
}

static enum hm_status mpi_progress(struct hm_comm *c)
{
    struct mpi_impl *m = impl(c);
    int done = 0;
    if (m->n_req == 0)
        return HM_OK;
    return mpi_status(MPI_Testall(m->n_req, m->req, &done, MPI_STATUSES_IGNORE), "progress");
}

static void apply_move(const struct move *mv)
{
    if (mv->n && mv->dst != mv->src)
        memmove(mv->dst, mv->src, mv->n * sizeof(float));
}

static enum hm_status mpi_wait_all(struct hm_comm *c)
{
    struct mpi_impl *m = impl(c);
    int n = m->n_req;
    m->n_req = 0;
    if (n == 0)
        return HM_OK;
    enum hm_status st = mpi_status(MPI_Waitall(n, m->req, MPI_STATUSES_IGNORE), "wait for collectives");
    for (int i = 0; st == HM_OK && i < n; i++)
        apply_move(&m->move[i]);
    return st;
}

static enum hm_status mpi_reduce_scatter(struct hm_comm *c, struct hm_backend *be, float *base, size_t total)
{
    struct mpi_impl *m = impl(c);
    for (size_t lo = 0; lo < total; lo += CHUNK) {
        size_t hi = HM_MIN(total, lo + CHUNK), mine;
        shard_counts(c, total, lo, hi, m->tmp_counts, &mine);
        enum hm_status st = mpi_status(MPI_Reduce_scatter(MPI_IN_PLACE, base + lo, m->tmp_counts, MPI_FLOAT,
                                                          MPI_SUM, MPI_COMM_WORLD), "reduce-scatter");
        if (st != HM_OK)
            return st;
        apply_move(&(struct move){base + mine, base + lo, (size_t)m->tmp_counts[c->rank]});
    }
    return HM_OK;
}

static enum hm_status mpi_all_gather(struct hm_comm *c, struct hm_backend *be, float *base, size_t total)
{
    struct mpi_impl *m = impl(c);
    for (size_t lo = 0; lo < total; lo += CHUNK) {
        size_t hi = HM_MIN(total, lo + CHUNK), mine;
        shard_counts(c, total, lo, hi, m->tmp_counts, &mine);
        for (int j = 0, at = 0; j < c->size; at += m->tmp_counts[j++])
            m->tmp_displs[j] = at;
        enum hm_status st = mpi_status(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, base + lo, m->tmp_counts,
                                                      m->tmp_displs, MPI_FLOAT, MPI_COMM_WORLD), "all-gather");
        if (st != HM_OK)
            return st;
    }
    return HM_OK;
}

static enum hm_status mpi_send_host(struct hm_comm *c, const void *p, size_t bytes, int peer)
{
    const char *b = p;
    for (size_t off = 0; off < bytes; off += CHUNK) {
        enum hm_status st = mpi_status(MPI_Send(b + off, (int)HM_MIN(bytes - off, CHUNK), MPI_BYTE, peer, 0,
                                                MPI_COMM_WORLD), "send");
        if (st != HM_OK)
            return st;
    }
    return HM_OK;
}

static enum hm_status mpi_recv_host(struct hm_comm *c, void *p, size_t bytes, int peer)
{
    char *b = p;
    for (size_t off = 0; off < bytes; off += CHUNK) {
        enum hm_status st = mpi_status(MPI_Recv(b + off, (int)HM_MIN(bytes - off, CHUNK), MPI_BYTE, peer, 0,
                                                MPI_COMM_WORLD, MPI_STATUS_IGNORE), "receive");
        if (st != HM_OK)
            return st;
    }
    return HM_OK;
}

static enum hm_status mpi_double(struct hm_comm *c, double *v)
{
    return mpi_status(MPI_Allreduce(MPI_IN_PLACE, v, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "all-reduce");
}

static enum hm_status mpi_barrier(struct hm_comm *c)
{
    return mpi_status(MPI_Barrier(MPI_COMM_WORLD), "barrier");
}

static void impl_free(struct mpi_impl *m)
{
    if (!m)
        return;
    hm_free(m->req);
    hm_free(m->counts);
    hm_free(m->move);
    hm_free(m->tmp_counts);
    hm_free(m->tmp_displs);
    hm_free(m);
}

static void mpi_free(struct hm_comm *c)
{
    impl_free(impl(c));
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin)
        MPI_Finalize();
}

static void mpi_abort(struct hm_comm *c, int code)
{
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
}

static const struct hm_comm_ops mpi_ops = {
    .name = "mpi",
    .allreduce_sum = mpi_allreduce,
    .broadcast = mpi_broadcast,
    .allreduce_double = mpi_double,
    .barrier = mpi_barrier,
    .broadcast_host = mpi_broadcast,
    .async_reserve = mpi_reserve,
    .iallreduce = mpi_iallreduce,
    .ireduce_scatter = mpi_ireduce_scatter,
    .progress = mpi_progress,
    .wait_all = mpi_wait_all,
    .reduce_scatter = mpi_reduce_scatter,
    .all_gather = mpi_all_gather,
    .send_host = mpi_send_host,
    .recv_host = mpi_recv_host,
    .free = mpi_free,
    .abort = mpi_abort,
};

bool hm_comm_mpi_launched(void)
{
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SLURM_NTASKS"};
    for (size_t i = 0; i < HM_ARRAY_LEN(vars); i++) {
        const char *v = getenv(vars[i]);
        if (v && (i == 2 || atoi(v) > 1))
            return true;
    }
    return false;
}

enum hm_status hm_comm_mpi_new(struct hm_comm **out)
{
    int init = 0;
    MPI_Initialized(&init);
    if (!init && MPI_Init(NULL, NULL) != MPI_SUCCESS)
        return hm_fail(HM_ERR_DEVICE, "MPI_Init failed");
    /* Errors come back as codes so they become one-line messages, not aborts. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    struct hm_comm *c = hm_calloc(1, sizeof *c);
    struct mpi_impl *m = hm_calloc(1, sizeof *m);
    int size = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (m) {
        m->tmp_counts = hm_calloc((size_t)size, sizeof *m->tmp_counts);
        m->tmp_displs = hm_calloc((size_t)size, sizeof *m->tmp_displs);
    }
    if (!c || !m || !m->tmp_counts || !m->tmp_displs) {
        MPI_Abort(MPI_COMM_WORLD, 1); /* the other ranks are about to wait for this one */
        return hm_fail(HM_ERR_NOMEM, "out of memory");
    }
    c->ops = &mpi_ops;
    c->impl = m;
    c->size = size;
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    *out = c;
    return HM_OK;
}

/* Rank within this node: the GPU this process drives. */
static enum hm_status local_rank(int *out)
{
    MPI_Comm node;
    enum hm_status st = mpi_status(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0,
                                                       MPI_INFO_NULL, &node), "split by node");
    if (st != HM_OK)
        return st;
    st = mpi_status(MPI_Comm_rank(node, out), "node rank");
    MPI_Comm_free(&node);
    return st;
}

enum hm_status hm_comm_nccl_mpi_new(struct hm_comm **out)
{
    struct hm_comm *mpi;
    enum hm_status st = hm_comm_mpi_new(&mpi);
    if (st != HM_OK)
        return st;
    /* Rank 0 sends its status with the id, so a failure there is an error everywhere, not a hang. */
    struct {
        int32_t status;
        unsigned char id[HM_COMM_NCCL_ID_BYTES];
    } msg = {0};
    if (mpi->rank == 0)
        msg.status = (int32_t)hm_comm_nccl_get_id(msg.id);
    int lr = 0;
    if ((st = mpi_broadcast(mpi, &msg, sizeof msg, 0)) != HM_OK || (st = local_rank(&lr)) != HM_OK)
        goto fail;
    if (msg.status != HM_OK) {
        st = mpi->rank == 0 ? (enum hm_status)msg.status
                            : hm_fail((enum hm_status)msg.status, "rank 0 could not create the NCCL id");
        goto fail;
    }
    /* The node-local rank picks the GPU, unless the scheduler already gave each rank its own
     * (srun --gpus-per-task=1 sets CUDA_VISIBLE_DEVICES to one device per task). */
    int n_dev = 0;
    if ((st = hm_comm_nccl_device_count(&n_dev)) != HM_OK)
        goto fail;
    struct hm_comm *nccl;
    if ((st = hm_comm_nccl_new(mpi->rank, mpi->size, msg.id, n_dev == 1 ? 0 : lr, &nccl)) != HM_OK)
        goto fail;
    nccl->parent = mpi;
    *out = nccl;
    return HM_OK;
fail:
    /* No MPI_Finalize: it waits for every rank, and the others may be inside ncclCommInitRank.
     * The caller exits non-zero, and mpirun then ends the job. */
    impl_free(impl(mpi));
    hm_free(mpi);
    return st;
}
