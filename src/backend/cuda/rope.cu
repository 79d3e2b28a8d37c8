/*
 * rope.cu - RoPE, half-split (GPT-NeoX rotate_half), x (B, T, H, HD):
 *   angle = (pos + t) * theta^(-2k/HD), k < HD/2
 *   out[k] = x[k] cos - x[k+HD/2] sin,  out[k+HD/2] = x[k+HD/2] cos + x[k] sin
 * As on the CPU, the angle and its cos/sin are computed in double and rounded once, so the GPU uses
 * the same factors as the CPU and a position gets the same factors in a full pass and in cached
 * decoding. One thread per (b, t, k) computes them once and rotates every head. Backward = -angle.
 */
#include "common.cuh"

template <typename TS>
static __global__ void rope_kernel(const TS *x, TS *y, int64_t BT, int64_t T, int64_t H, int64_t HD, int64_t pos,
                                   double theta, float sign, bool acc)
{
    int64_t half = HD / 2, n = BT * half;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t k = i % half, bt = i / half, t = bt % T;
        double ang = (double)(pos + t) * pow(theta, -2.0 * (double)k / (double)HD);
        float c = (float)cos(ang), s = sign * (float)sin(ang);
        for (int64_t h = 0; h < H; h++) {
            int64_t base = (bt * H + h) * HD;
            float x1 = hm_ld(x, base + k), x2 = hm_ld(x, base + k + half);
            hm_store(y, base + k, x1 * c - x2 * s, acc);
            hm_store(y, base + k + half, x2 * c + x1 * s, acc);
        }
    }
}

static enum hm_status rope(const struct hm_exec *ex, struct hm_tensor *dst, float sign)
{
    const struct hm_tensor *xt = dst->src[0];
    int64_t B = xt->shape[0], T = xt->shape[1], H = xt->shape[2], HD = xt->shape[3];
    int64_t n = B * T * (HD / 2);
    HM_DISPATCH(dst->type, TS,
                rope_kernel<<<hm_cuda_blocks(n, HM_CUDA_THREADS), HM_CUDA_THREADS, 0, hm_cuda_stream(ex)>>>(
                    CPTR(TS, xt), PTR(TS, dst), B * T, T, H, HD, ex->rt->pos, (double)hm_op_f32(dst, 0), sign,
                    dst->acc & 1));
    HM_CUDA_LAUNCHED();
    return HM_OK;
}

CUDA_KERNEL(rope)
{
    return rope(ex, dst, 1.0f);
}

CUDA_KERNEL(rope_back)
{
    return rope(ex, dst, -1.0f);
}
