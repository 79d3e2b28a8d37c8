/*
 * comm-nonccl.c - NCCL entry points for builds without NCCL (no CUDA toolkit or no libnccl at
 * configure time): each one fails with a message that says how to get a build that has it, so
 * `--num-gpus` never silently falls back to one process.
 */
#include "comm-impl.h"
#include "util/util.h"

#define NO_NCCL "this hermes-llm was built without NCCL (install CUDA and NCCL, then rebuild with -DHM_NCCL=ON)"

enum hm_status hm_comm_nccl_device_count(int *out)
{
    (void)out;
    return hm_fail(HM_ERR_UNSUPPORTED, NO_NCCL);
}

enum hm_status hm_comm_nccl_get_id(void *id)
{
    (void)id;
    return hm_fail(HM_ERR_UNSUPPORTED, NO_NCCL);
}

enum hm_status hm_comm_nccl_new(int rank, int world, const void *id, int device, struct hm_comm **out)
{
    (void)rank, (void)world, (void)id, (void)device, (void)out;
    return hm_fail(HM_ERR_UNSUPPORTED, NO_NCCL);
}
