/* embed.cuh - token embedding lookup and its deterministic backward (embed.cu). */
#ifndef HERMES_CUDA_EMBED_CUH
#define HERMES_CUDA_EMBED_CUH

#include "common.cuh"

/* CUB radix-sort scratch for N ids (part of EMBEDDING_BACK's workspace, cuda-host.h). */
size_t hm_cuda_embedding_sort_bytes(int64_t N);

#endif
