/*
 * matmul-noonednn.c - the build without oneDNN (CMake says so when it configures): no native
 * bf16 matmul, so every bf16 MATMUL widens to f32 (bf16.c), and every f32 MATMUL runs sgemm.
 */
#include "cpu-impl.h"

enum hm_cpu_bf16 hm_cpu_bf16_support(void)
{
    return HM_CPU_BF16_NONE;
}

bool hm_cpu_have_onednn(void)
{
    return false;
}

void hm_cpu_set_f32_matmul(enum hm_cpu_f32_matmul mode)
{
    (void)mode; /* OpenBLAS runs every f32 matmul whatever the mode */
}

bool hm_cpu_f32_onednn_rule(int64_t M, int64_t N, int64_t K)
{
    return false;
}

bool hm_cpu_matmul_onednn_applies(const struct hm_tensor *node)
{
    return false;
}

enum hm_status hm_cpu_matmul_onednn(const struct hm_exec *ex, struct hm_tensor *dst)
{
    return hm_fail(HM_ERR_UNSUPPORTED, "cpu: built without oneDNN");
}
