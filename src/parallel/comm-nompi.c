/* comm-nompi.c - MPI entry points for builds without MPI: a clear error instead of a silent fallback. */
#include "comm-impl.h"
#include "util/util.h"

#include <stdlib.h>

bool hm_comm_mpi_launched(void)
{
    const char *v = getenv("OMPI_COMM_WORLD_SIZE");
    return v && atoi(v) > 1;
}

enum hm_status hm_comm_mpi_new(struct hm_comm **out)
{
    (void)out;
    return hm_fail(HM_ERR_UNSUPPORTED, "this hermes-llm was built without MPI (rebuild with -DHM_MPI=ON)");
}

enum hm_status hm_comm_nccl_mpi_new(struct hm_comm **out)
{
    (void)out;
    return hm_fail(HM_ERR_UNSUPPORTED, "NCCL across nodes is bootstrapped by MPI, and this hermes-llm was built without MPI (rebuild with -DHM_MPI=ON)");
}
