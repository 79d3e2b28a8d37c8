/*
 * backend-nocuda.c - the CUDA entry points of a build without the CUDA toolkit (CMake keeps this
 * file only when HM_CUDA is off; backend-cuda.cu defines the real ones). They fail cleanly so
 * callers need no #ifdef.
 */
#include "hermes/backend.h"

enum hm_status hm_backend_cuda_new(int device, struct hm_backend **out)
{
    return hm_fail(HM_ERR_UNSUPPORTED, "cuda:%d: this build has no CUDA support (rebuild with the "
                                       "CUDA toolkit installed, or -DHM_CUDA=ON)", device);
}

int hm_cuda_device_count(void)
{
    return 0;
}
