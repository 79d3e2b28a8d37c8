/*
 * embed.cu - token embedding: y[i] = W[ids[i]], and dW (+)= scatter(dy, ids).
 *
 * Forward validates ids on the device: an id outside [0, V) writes a zero row and records the
 * smallest offending index; the next synchronisation (hm_tensor_get / hm_backend_synchronize)
 * returns HM_ERR_USAGE with the CPU backend's message. Checking on the host would cost a
 * device-to-host copy and a stall in every forward.
 *
 * Backward is deterministic and atomic-free: a stable CUB radix sort of (id, position) pairs
 * groups equal ids with their positions in increasing order; one block per run (the block at a
 * run's first element; the others exit) sums that run's dy rows in position order and adds the
 * result to its W row. Each W row is written by exactly one block, so results are bit-identical run
 * to run. Ids are sorted as uint32 over all 32 bits so even an invalid id (already reported by the
 * forward) cannot merge runs; such runs are skipped.
 */
#include "embed.cuh"

#include <cub/cub.cuh>

template <typename T>
static __global__ void embedding_kernel(const T *w, const int32_t *ids, T *y, int64_t N, int64_t C, int64_t V,
                                        unsigned long long *err)
{
    int64_t n = N * C;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / C, c = i % C;
        int32_t id = ids[r];
        if (id < 0 || id >= V) {
            if (c == 0)
                hm_cuda_report(err, HM_CUDA_ERR_EMBEDDING, r, id);
            hm_st(y, i, 0.0f);
            continue;
        }
        y[i] = w[(int64_t)id * C + c]; /* a copy: no conversion */
    }
}

CUDA_KERNEL(embedding)
{
    struct hm_cuda_ctx *cx = hm_cuda_ctx_of(ex);
    const struct hm_tensor *wt = dst->src[0], *it = dst->src[1];
    int64_t V = wt->shape[0], C = wt->shape[1], N = hm_nelements(it);
    cx->err_slot[HM_CUDA_ERR_EMBEDDING].limit = V;
    HM_DISPATCH(dst->type, T,
                embedding_kernel<<<hm_cuda_blocks(N * C, HM_CUDA_THREADS), HM_CUDA_THREADS, 0, cx->stream>>>(
                    CPTR(T, wt), (const int32_t *)it->data, PTR(T, dst), N, C, V, cx->err));
    HM_CUDA_LAUNCHED();
    return HM_OK;
}

static __global__ void iota_kernel(int32_t *p, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        p[i] = (int32_t)i;
}

/* Block i handles the run of equal ids starting at sorted position i (if one starts there).
 * dy has the activations' storage type TY; dw is the f32 parameter gradient (TW). */
template <typename TY, typename TW>
static __global__ void embedding_back_kernel(const TY *dy, const uint32_t *keys, const int32_t *pos, TW *dw,
                                             int64_t N, int64_t C, int64_t V)
{
    __shared__ int64_t run_end;
    int64_t i = blockIdx.x;
    uint32_t id = keys[i];
    if ((i > 0 && keys[i - 1] == id) || id >= (uint64_t)V)
        return;
    if (threadIdx.x == 0) {
        int64_t j = i + 1;
        while (j < N && keys[j] == id)
            j++;
        run_end = j;
    }
    __syncthreads();
    TW *row = dw + (int64_t)id * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float s = 0.0f;
        for (int64_t p = i; p < run_end; p++)
            s += hm_ld(dy, (int64_t)pos[p] * C + c);
        hm_store(row, c, s, true);
    }
}

size_t hm_cuda_embedding_sort_bytes(int64_t N)
{
    size_t bytes = 0;
    cub::DeviceRadixSort::SortPairs(nullptr, bytes, (const uint32_t *)nullptr, (uint32_t *)nullptr,
                                    (const int32_t *)nullptr, (int32_t *)nullptr, (int)N);
    return bytes;
}

CUDA_KERNEL(embedding_back)
{
    const struct hm_tensor *it = dst->src[1];
    int64_t C = dst->shape[1], V = dst->shape[0], N = hm_nelements(it);
    cudaStream_t stream = hm_cuda_stream(ex);
    size_t sort_bytes = hm_cuda_embedding_sort_bytes(N);
    HM_ASSERT(ex->ws_bytes >= hm_cuda_workspace_bytes(dst, sort_bytes));
    size_t part = hm_cuda_align((size_t)N * sizeof(int32_t));
    char *ws = (char *)ex->ws;
    int32_t *iota = (int32_t *)ws, *pos = (int32_t *)(ws + 2 * part);
    uint32_t *keys = (uint32_t *)(ws + part);
    if (!(dst->acc & 1))
        HM_CUDA_CHECK(cudaMemsetAsync(dst->data, 0, hm_nbytes(dst), stream));
    iota_kernel<<<hm_cuda_blocks(N, HM_CUDA_THREADS), HM_CUDA_THREADS, 0, stream>>>(iota, N);
    HM_CUDA_LAUNCHED();
    HM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(ws + 3 * part, sort_bytes, (const uint32_t *)it->data, keys,
                                                  iota, pos, (int)N, 0, 32, stream));
    HM_DISPATCH(dst->src[0]->type, TY, HM_DISPATCH(dst->type, TW,
                embedding_back_kernel<<<(unsigned)N, 128, 0, stream>>>(CPTR(TY, dst->src[0]), keys, pos,
                                                                       PTR(TW, dst), N, C, V)));
    HM_CUDA_LAUNCHED();
    return HM_OK;
}
