/*
 * matmul-bf16-noonednn.c - the build without oneDNN (CMake says so when it configures): no native
 * bf16 matmul, so every bf16 MATMUL widens to f32 and runs through sgemm (bf16.c).
 */
#include "cpu-impl.h"

enum hm_cpu_bf16 hm_cpu_bf16_support(void)
{
    return HM_CPU_BF16_NONE;
}

bool hm_cpu_matmul_bf16_applies(const struct hm_tensor *node)
{
    return false;
}

enum hm_status hm_cpu_matmul_bf16(const struct hm_exec *ex, struct hm_tensor *dst)
{
    return hm_fail(HM_ERR_UNSUPPORTED, "cpu: built without oneDNN: no native bf16 matmul");
}
