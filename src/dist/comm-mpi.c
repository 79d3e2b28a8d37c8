/*
 * comm-mpi.c - the MPI communicator for CPU buffers, and the MPI bootstrap of NCCL across nodes
 * (rank 0 makes the NCCL id and MPI_Bcasts it; the node-local rank picks the GPU). Sums run in
 * MPI's fixed reduction order for a given world size, so runs are reproducible. Errors come back
 * as codes (MPI_ERRORS_RETURN) and become one-line messages. Built only with HM_MPI.
 */
#include "comm-impl.h"
#include "util/util.h"

#include <mpi.h>
#include <stdlib.h>

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

static enum hm_status mpi_double(struct hm_comm *c, double *v)
{
    return mpi_status(MPI_Allreduce(MPI_IN_PLACE, v, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "all-reduce");
}

static enum hm_status mpi_barrier(struct hm_comm *c)
{
    return mpi_status(MPI_Barrier(MPI_COMM_WORLD), "barrier");
}

static void mpi_free(struct hm_comm *c)
{
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
    if (!c) {
        MPI_Abort(MPI_COMM_WORLD, 1); /* the other ranks are about to wait for this one */
        return hm_fail(HM_ERR_NOMEM, "out of memory");
    }
    c->ops = &mpi_ops;
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->size);
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
    hm_free(mpi);
    return st;
}
