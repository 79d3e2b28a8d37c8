/*
 * comm-mpi.c - the MPI communicator for CPU buffers. Sums run in MPI's fixed reduction order for
 * a given world size, so runs are reproducible. Built only with HM_MPI.
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

static const struct hm_comm_ops mpi_ops = {"mpi", mpi_allreduce, mpi_broadcast, mpi_double,
                                           mpi_barrier, mpi_free};

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
    if (!c)
        return hm_fail(HM_ERR_NOMEM, "out of memory");
    c->ops = &mpi_ops;
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->size);
    *out = c;
    return HM_OK;
}
