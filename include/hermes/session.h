/*
 * session.h - a whole training run, data parallel or not, as `hermes-llm train` does it, for any
 * program that links libhermes: pick this process's role, share the tokenizer and the token cache
 * from rank 0, resolve the model, train (train.h), and stop cleanly on SIGINT/SIGTERM after saving.
 *
 * Roles: under mpirun/srun every process is a rank (MPI for CPU buffers, NCCL bootstrapped over
 * MPI for GPUs); with num_gpus > 0 this process becomes a launcher that starts that many workers
 * (hm_launch) running worker_argv, which find themselves workers and form an NCCL communicator;
 * otherwise it is the only process. Rank 0 alone trains or loads the tokenizer and builds the
 * token cache, then hands both to the others. A rank that fails while others may wait in a
 * collective calls on_abort, then aborts the communicator (MPI: that ends the job, no return).
 *
 *     struct hm_session_opts o = hm_session_opts_default();
 *     o.tokenizer = "tok.json";  o.data = files;  o.n_data = n;  o.train.output_dir = "run";
 *     struct hm_session_result r;
 *     enum hm_status st = hm_session_run(&o, &r);  // same call on every rank
 *
 * Chat data (format chat, or auto on ChatML-style .jsonl; session-chat.c): conversations packed
 * into windows of seq_len + 1 tokens (stride seq_len + 1, one process), the loss on the assistant
 * replies only (train.no_loss_mask: every token). A tokenizer without <|im_start|>/<|im_end|> gets
 * them when fine-tuning from `checkpoint`: the grown tokenizer is written to the output folder
 * (removed again if the run fails before training) and the embedding grows by two mean rows.
 *
 * Informational lines (data, model, memory, global batch) go to hm_log on rank 0.
 */
#ifndef HERMES_SESSION_H
#define HERMES_SESSION_H

#include "hermes/dataset.h"
#include "hermes/tokenizer.h"
#include "hermes/train.h"

#ifdef __cplusplus
extern "C" {
#endif

enum hm_session_role {
    HM_SESSION_SINGLE = 0, /* the only process */
    HM_SESSION_MPI_RANK,   /* one rank of an mpirun/srun job */
    HM_SESSION_LAUNCHER,   /* started num_gpus workers and waited for them */
    HM_SESSION_WORKER,     /* started by a launcher: one GPU, NCCL */
};

struct hm_session_result;
typedef void (*hm_session_abort_fn)(const struct hm_session_result *r, enum hm_status st, void *user);

struct hm_session_opts {
    const char *tokenizer;         /* tokenizer.json; trained from `data` first when missing */
    struct hm_tokenizer_train_opts tokenizer_train; /* for that training */
    const char *model;             /* preset name or config .json; on resume, the run's config */
    const char *const *data;       /* n_data files; 0 = standard input (read by rank 0) */
    int n_data;
    const char *const *val_data;   /* separate validation data (replaces train.val_split) */
    int n_val_data;
    const char *text_field;        /* JSONL field */
    enum hm_data_format format;    /* auto: chat when the first .jsonl record is a conversation */
    const char *checkpoint;        /* initial weights (.safetensors), for fine-tuning; NULL: none */
    bool overwrite;                /* start over in a folder holding a resumable run (run-dir.h);
                                      without it (and without train.resume) that is HM_ERR_USAGE */
    const char *device;            /* cpu, cuda or cuda:N (a worker always takes its one GPU) */
    enum hm_dtype dtype;           /* f32 or bf16 */
    bool clamp_seq_len;            /* seq_len above max_seq_len: lowered (true) or HM_ERR_USAGE */
    struct hm_train_opts train;    /* stride 0 = seq_len */
    hm_train_progress_fn_t progress; /* optional */
    void *progress_user;
    bool handle_signals;           /* SIGINT/SIGTERM: finish the step, save, HM_ERR_INTERRUPTED */

    /* Data parallelism. */
    int num_gpus;                  /* > 0: become a launcher of this many workers (not under MPI) */
    char *const *worker_argv;      /* the workers' NULL-terminated argv (argv[0] included) */
    bool share_gpu;                /* every worker on the first visible GPU (trying NCCL on one) */
    hm_session_abort_fn on_abort;  /* report a failure before the communicator is aborted */
    void *abort_user;
    int fail_rank;                 /* test seam: this rank fails once its data is loaded; -1 none */
};

/* The tokenizer trainer's defaults, model "tiny", standard input, text field "text", device
 * "cpu", f32, clamp_seq_len, hm_train_opts_default() with stride 0, signals handled, no
 * launcher, fail_rank -1. */
HM_API struct hm_session_opts hm_session_opts_default(void);

struct hm_session_result {
    enum hm_session_role role;
    int rank, world;
    const char *comm_name;          /* static string; NULL for a launcher */
    bool trained;                   /* the training loop ran: summary is filled */
    struct hm_train_summary summary;
    bool aborted;                   /* failed with other ranks: the communicator was aborted, so
                                       the process should exit now with a non-zero status */
};

/*
 * Run the session to the end. Returns HM_ERR_INTERRUPTED after a clean, saved stop; on any other
 * error, an output folder this run created is removed again if training had not started. A
 * launcher returns once every worker has exited (HM_OK when all succeeded).
 */
HM_API enum hm_status hm_session_run(const struct hm_session_opts *opts, struct hm_session_result *res);

#ifdef __cplusplus
}
#endif
#endif
