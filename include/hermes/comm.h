/*
 * comm.h - the communicator the training loop uses for data parallelism: all-reduce, broadcast
 * and barrier over backend buffers. Three implementations sit behind it: a single-process no-op,
 * MPI (CPU buffers; also bootstraps NCCL across nodes) and NCCL (GPU buffers). The trainer never
 * names one.
 *
 *     struct hm_comm *c;
 *     hm_comm_mpi_new(&argc, &argv, &c);          // rank and world size from mpirun / srun
 *     hm_train(model, data, NULL, &opts, c, ...);  // gradients averaged before clipping
 *     hm_comm_free(c);
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
HM_API void hm_comm_free(struct hm_comm *c);

HM_API int hm_comm_rank(const struct hm_comm *c);
HM_API int hm_comm_size(const struct hm_comm *c);
HM_API const char *hm_comm_name(const struct hm_comm *c);

/* In place over f32 elements [offset, offset+n) of buf. */
HM_API enum hm_status hm_comm_allreduce_sum(struct hm_comm *c, struct hm_buffer *buf, size_t offset, size_t n);
HM_API enum hm_status hm_comm_broadcast(struct hm_comm *c, struct hm_buffer *buf, int root);
HM_API enum hm_status hm_comm_allreduce_double(struct hm_comm *c, double *value); /* sum, host */
HM_API enum hm_status hm_comm_barrier(struct hm_comm *c);

/* Model-level helpers the trainer uses: rank 0's weights to everyone; gradients (and the loss)
 * averaged over ranks. */
HM_API enum hm_status hm_comm_broadcast_params(struct hm_comm *c, struct hm_model *m);
HM_API enum hm_status hm_comm_allreduce_grads(struct hm_comm *c, struct hm_model *m, double *loss);

#ifdef __cplusplus
}
#endif
#endif
