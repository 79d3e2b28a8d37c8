/*
 * comm.h - the communicator the training loop uses for data parallelism: all-reduce, broadcast
 * and barrier over backend buffers, asynchronous all-reduce and reduce-scatter that overlap the
 * backward pass, and the all-gather of sharded (ZeRO-1) parameters. Three implementations sit
 * behind it: a single-process no-op, MPI (CPU buffers; also bootstraps NCCL across nodes) and
 * NCCL (GPU buffers; host buffers are staged through the GPU). The trainer never names one.
 *
 *     struct hm_comm *c;
 *     hm_comm_mpi_new(&c);                         // rank and world size from mpirun / srun
 *     hm_train(model, data, NULL, &opts, c, ...);  // gradients averaged before clipping
 *     hm_comm_free(c);
 *
 * A rank that fails while the others may be inside a collective must call hm_comm_abort, not
 * hm_comm_free: MPI_Finalize and NCCL collectives wait for every rank and would hang.
 *
 * Bad arguments (a range outside the buffer, a root or peer outside the world, a reservation while
 * operations are in flight) are HM_ERR_USAGE with a one-line message, never an abort.
 */
#ifndef HERMES_COMM_H
#define HERMES_COMM_H

#include "hermes/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

struct hm_comm;
struct hm_model;

/* One process: rank 0 of 1; every collective is a no-op. */
HM_API enum hm_status hm_comm_single_new(struct hm_comm **out);
/* MPI: initialises MPI if needed. HM_ERR_UNSUPPORTED when built without MPI. */
HM_API enum hm_status hm_comm_mpi_new(struct hm_comm **out);
/* True when this process was started by mpirun/srun with more than one rank. */
HM_API bool hm_comm_mpi_launched(void);

/* NCCL. The unique id is HM_COMM_NCCL_ID_BYTES opaque bytes made by one process (rank 0 or the
 * launcher) and handed to every rank out of band (a pipe, MPI_Bcast). All HM_ERR_UNSUPPORTED when
 * built without NCCL; HM_ERR_DEVICE when no CUDA device is usable. */
#define HM_COMM_NCCL_ID_BYTES 128
HM_API enum hm_status hm_comm_nccl_device_count(int *out);
HM_API enum hm_status hm_comm_nccl_get_id(void *id /* out: HM_COMM_NCCL_ID_BYTES */);
/* Rank `rank` of `world` on CUDA device `device` (after CUDA_VISIBLE_DEVICES). */
HM_API enum hm_status hm_comm_nccl_new(int rank, int world, const void *id, int device,
                                       struct hm_comm **out);
/* Multi-node: rank, world size and the node-local device come from MPI (mpirun / srun); rank 0
 * makes the NCCL id and MPI_Bcasts it. Needs MPI and NCCL (HM_ERR_UNSUPPORTED otherwise). */
HM_API enum hm_status hm_comm_nccl_mpi_new(struct hm_comm **out);

HM_API void hm_comm_free(struct hm_comm *c);
/* After a failure on this rank: make sure no other rank waits for it forever. MPI: MPI_Abort
 * (ends every rank of the job with `code`; does not return). NCCL: ncclCommAbort, then returns
 * (the launcher stops the other workers when this process exits non-zero). Single: returns.
 * Frees `c` when it returns. */
HM_API void hm_comm_abort(struct hm_comm *c, int code);

HM_API int hm_comm_rank(const struct hm_comm *c);
HM_API int hm_comm_size(const struct hm_comm *c);
HM_API const char *hm_comm_name(const struct hm_comm *c);

/* In place over f32 elements [offset, offset+n) of buf. */
HM_API enum hm_status hm_comm_allreduce_sum(struct hm_comm *c, struct hm_buffer *buf, size_t offset, size_t n);
HM_API enum hm_status hm_comm_broadcast(struct hm_comm *c, struct hm_buffer *buf, int root);
HM_API enum hm_status hm_comm_allreduce_double(struct hm_comm *c, double *value); /* sum, host */
/* `bytes` bytes of host memory from `root` to every rank. */
HM_API enum hm_status hm_comm_broadcast_host(struct hm_comm *c, void *data, size_t bytes, int root);
HM_API enum hm_status hm_comm_barrier(struct hm_comm *c);

/*
 * Shards (ZeRO-1): rank r of W owns elements [*offset, *offset + *count) of n, contiguous, in rank
 * order, sizes differing by at most one. The collectives below that name "shards" use this split
 * of the buffer's f32 elements. HM_ERR_USAGE (and an empty shard) for a rank outside the world.
 */
HM_API enum hm_status hm_comm_shard(const struct hm_comm *c, size_t n, int rank, size_t *offset,
                                    size_t *count);

/*
 * Asynchronous collectives, in place over f32 elements [offset, offset+n) of a backend buffer, to
 * overlap communication with the backward pass. Reserve once at setup for the most operations
 * (and elements, summed over them) in flight between two waits; starting one then allocates
 * nothing. Every rank must start the same operations in the same order. Each operation sees the
 * work already issued to the buffer's backend (the NCCL communicator waits for it on the GPU, not
 * on the host). Call hm_comm_progress between kernels: MPI progresses nonblocking collectives
 * only inside MPI calls. After hm_comm_wait_all, work issued to the backend sees the results.
 * The single-process communicator does nothing.
 */
HM_API enum hm_status hm_comm_async_reserve(struct hm_comm *c, int max_ops, size_t max_elems);
HM_API enum hm_status hm_comm_allreduce_start(struct hm_comm *c, struct hm_buffer *buf, size_t offset,
                                              size_t n);
/* Sum over ranks, kept where the range meets this rank's shard of buf; the rest of the range is
 * left undefined. */
HM_API enum hm_status hm_comm_reduce_scatter_start(struct hm_comm *c, struct hm_buffer *buf,
                                                   size_t offset, size_t n);
HM_API enum hm_status hm_comm_progress(struct hm_comm *c);
HM_API enum hm_status hm_comm_wait_all(struct hm_comm *c);

/* Blocking, over the whole buffer: each rank's shard gets the sum over ranks (the rest becomes
 * undefined); each rank's shard is copied to every rank. */
HM_API enum hm_status hm_comm_reduce_scatter(struct hm_comm *c, struct hm_buffer *buf);
HM_API enum hm_status hm_comm_all_gather(struct hm_comm *c, struct hm_buffer *buf);
/* Host memory from this rank to `peer`, which calls hm_comm_recv_host with the same size. */
HM_API enum hm_status hm_comm_send_host(struct hm_comm *c, const void *data, size_t bytes, int peer);
HM_API enum hm_status hm_comm_recv_host(struct hm_comm *c, void *data, size_t bytes, int peer);

/* Rank 0's weights to everyone, at the start of training. (Gradients are summed by the trainer
 * in buckets that overlap the backward pass: src/parallel/ddp.h.) */
HM_API enum hm_status hm_comm_broadcast_params(struct hm_comm *c, struct hm_model *m);

#ifdef __cplusplus
}
#endif
#endif
