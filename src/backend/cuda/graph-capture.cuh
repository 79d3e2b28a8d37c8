/* graph-capture.cuh - CUDA graphs for planned node sequences (graph-capture.cu): record once,
 * replay while the sequence and the runtime values it reads are unchanged. HM_CUDA_GRAPH=1. */
#ifndef HERMES_CUDA_GRAPH_CAPTURE_CUH
#define HERMES_CUDA_GRAPH_CAPTURE_CUH

#include "common.cuh"

struct hm_cuda_graph_cache;

enum hm_status hm_cuda_graph_cache_new(struct hm_cuda_graph_cache **out);
void hm_cuda_graph_cache_free(struct hm_cuda_graph_cache *c);

/* The backend's run_sequence (backend-impl.h) with graphs on: replays the recording of `key` when
 * the runtime values the nodes read match, else records run(user) (updating the old recording in
 * place when CUDA allows) and launches it. */
enum hm_status hm_cuda_graph_run(struct hm_cuda_ctx *cx, uint64_t key, struct hm_tensor *const *nodes, int n,
                                 const struct hm_runtime *rt, enum hm_status (*run)(void *user), void *user);

#endif
