/*
 * launch.h - the single-machine launcher behind `train --num-gpus N`: start N worker processes,
 * hand each one a secret (the NCCL unique id) through a pipe, relay their stderr line by line
 * with a "[rank r] " prefix, wait for all of them, and when one fails stop the others (SIGTERM,
 * then SIGKILL after a grace period) and report that worker's error. Linux only (fork/exec).
 *
 *     char *argv[] = {"hermes-llm", "train", ..., NULL};
 *     struct hm_launch_opts o = {.n_workers = 2, .exe = "/proc/self/exe", .argv = argv,
 *                                .secret = id, .secret_bytes = 128, .set_cuda_devices = true};
 *     struct hm_launch_result r;
 *     enum hm_status st = hm_launch(&o, &r);       // r.failed_rank, r.error on failure
 *
 * In a worker: hm_launch_is_worker(&rank, &world), then hm_launch_read_secret(id, 128).
 */
#ifndef HERMES_LAUNCH_H
#define HERMES_LAUNCH_H

#include "hermes/hermes.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct hm_launch_opts {
    int n_workers;
    const char *exe;        /* executable for every worker, e.g. "/proc/self/exe" */
    char *const *argv;      /* its NULL-terminated argv (argv[0] included), the same for all */
    const void *secret;     /* secret_bytes bytes each worker reads from HM_LAUNCH_FD; NULL: none */
    size_t secret_bytes;    /* at most 4096 */
    bool set_cuda_devices;  /* worker r: CUDA_VISIBLE_DEVICES = entry r of ours, or r when unset */
    double grace_s;         /* SIGTERM -> SIGKILL delay when stopping the others; <= 0: 5 s */
};

struct hm_launch_result {
    int failed_rank;        /* the first worker to fail; -1 when all exited 0 */
    int exit_code;          /* its exit status, 128 + signal when a signal ended it */
    char error[512];        /* its last "hermes-llm: error: " line without the prefix, or "" */
};

/* One worker of /proc/self/exe, no argv (set one), no secret, 5 s grace. */
HM_API struct hm_launch_opts hm_launch_opts_default(void);

/*
 * Run the workers to completion. Each gets, besides our environment: HM_RANK, HM_WORLD_SIZE,
 * HM_LOCAL_RANK, HM_LAUNCH_FD (when there is a secret) and CUDA_VISIBLE_DEVICES (when asked).
 * Rank 0 inherits our standard input; the others read /dev/null. SIGTERM sent to the launcher is
 * forwarded; SIGINT is not (a terminal's Ctrl-C already reaches every worker). Returns HM_OK when
 * every worker exited 0; HM_ERR_DEVICE (HM_ERR_INTERRUPTED for exit status 130) naming the failed
 * rank and its error otherwise; HM_ERR_IO when a worker cannot be started.
 */
HM_API enum hm_status hm_launch(const struct hm_launch_opts *opts, struct hm_launch_result *res);

/* True in a process started by hm_launch; *rank and *world from its environment. */
HM_API bool hm_launch_is_worker(int *rank, int *world);

/* Read exactly `bytes` bytes of the launcher's secret from HM_LAUNCH_FD (then closed).
 * HM_ERR_IO when the launcher sent none or fewer. */
HM_API enum hm_status hm_launch_read_secret(void *buf, size_t bytes);

#ifdef __cplusplus
}
#endif
#endif
