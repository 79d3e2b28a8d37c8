/*
 * cmd-train.c - `hermes-llm train`: parse the flags into a training session (session.h), which
 * resolves the tokenizer (training one from the data when the file is missing, as the original
 * did), the model config and the data, picks the data-parallel role (mpirun/srun rank, --num-gpus
 * launcher or worker) and trains; then print the summary. A progress bar on a terminal, plain log
 * lines otherwise.
 *
 * Environment: HM_SHARE_GPU=1 puts every --num-gpus worker on the first GPU; HM_TEST_FAIL_RANK=r
 * (tests/cli/mpi.sh only) makes rank r fail once its data is loaded.
 */
#include "commands.h"
#include "hermes/backend.h"
#include "hermes/session.h"
#include "opts.h"
#include "progress.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct train_args {
    struct cli_list data, val_data;
    const char *tokenizer, *model, *output, *checkpoint, *text_field, *lr_schedule, *device, *dtype;
    const char *save_dtype, *format;
    long batch, epochs, seq_len, num_gpus, grad_accum, stride, seed, warmup, max_steps, threads;
    long log_every, eval_every, eval_batches, save_every, vocab_size;
    double lr, min_lr, val_split, grad_clip, weight_decay, bucket_mb;
    bool resume, seq_len_given, warmup_given, min_lr_given, model_given, num_gpus_given;
    bool no_overlap, zero1, no_loss_mask, overwrite;
};

static void print_progress(const struct hm_train_progress *p, void *user)
{
    struct cli_progress *bar = user;
    char msg[256];
    if (p->final) {
        cli_progress_end(bar);
        return;
    }
    snprintf(msg, sizeof msg, "loss %.4f  lr %.2e  gnorm %.3f  %.0f tok/s", p->loss, p->lr,
             p->grad_norm, p->tokens_per_s);
    if (!isnan(p->val_loss)) {
        size_t n = strlen(msg);
        snprintf(msg + n, sizeof msg - n, "  val %.4f", p->val_loss);
    }
    if (bar->tty) {
        cli_progress_set_total(bar, (uint64_t)p->total_steps);
        cli_progress_update(bar, (uint64_t)p->step, msg);
    } else if (p->logged || !isnan(p->val_loss)) {
        fprintf(stderr, "step %ld/%ld  epoch %ld  %s\n", p->step, p->total_steps, p->epoch + 1, msg);
    }
}

static enum hm_status parse_args(int argc, char **argv, struct train_args *a, bool *help)
{
    struct hm_session_opts d = hm_session_opts_default();
    const struct hm_train_opts *t = &d.train;
    *a = (struct train_args){
        .model = d.model, .output = t->output_dir, .text_field = d.text_field,
        .lr_schedule = "cosine", .format = "auto",
        .device = "auto", .dtype = "auto", .save_dtype = "f32", .batch = t->batch_size,
        .epochs = t->epochs, .seq_len = t->seq_len, .num_gpus = 1, .grad_accum = t->grad_accum,
        .seed = (long)t->seed, .max_steps = t->max_steps, .log_every = t->log_every,
        .eval_every = t->eval_every, .eval_batches = t->eval_batches, .save_every = t->save_every,
        .vocab_size = (long)d.tokenizer_train.vocab_size, .lr = t->lr.lr_max, .val_split = t->val_split,
        .grad_clip = t->adamw.grad_clip, .weight_decay = t->adamw.weight_decay, .bucket_mb = t->bucket_mb,
    };
    const struct cli_opt opts[] = {
        {"data", 'd', CLI_LIST, &a->data, "FILE...", "Training data: .txt (one document per file), .jsonl, optionally .gz/.zst", "standard input"},
        {"tokenizer", 't', CLI_STRING, &a->tokenizer, "FILE", "tokenizer.json (trained from the data first if missing)", NULL},
        {"model", 'm', CLI_STRING, &a->model, "MODEL", "Preset (nano, tiny, gpt2-small, gpt2-medium, gpt2-large, llama-small) or config .json", "tiny", 0, 0, &a->model_given},
        {"output", 'o', CLI_STRING, &a->output, "DIR", "Output folder for checkpoints, metrics and the token cache", "checkpoints"},
        {"batch-size", 'b', CLI_INT, &a->batch, "B", "Micro-batch size per process", "32", 1, 1 << 16},
        {"epochs", 'e', CLI_INT, &a->epochs, "N", "Epochs over the training windows", "1", 1, 1 << 20},
        {"seq-len", 0, CLI_INT, &a->seq_len, "T", "Training sequence length (at most the model's max_seq_len)", "256, clamped to max_seq_len", 1, 1 << 20, &a->seq_len_given},
        {"lr", 0, CLI_FLOAT, &a->lr, "LR", "Peak learning rate", "3e-4", 0, 10},
        {"min-lr", 0, CLI_FLOAT, &a->min_lr, "LR", "Final learning rate of the decay", "lr/10", 0, 10, &a->min_lr_given},
        {"lr-schedule", 0, CLI_STRING, &a->lr_schedule, "KIND", "constant, cosine or wsd (all after --warmup)", "cosine"},
        {"warmup", 0, CLI_INT, &a->warmup, "STEPS", "Linear warmup steps", "min(1000, 5% of the steps)", 0, 1L << 40, &a->warmup_given},
        {"num-gpus", 0, CLI_INT, &a->num_gpus, "N", "Data-parallel GPUs on this machine: one worker process per GPU (NCCL)", "1", 1, 1024, &a->num_gpus_given},
        {"grad-accum", 0, CLI_INT, &a->grad_accum, "N", "Micro-batches per optimizer step (gradients averaged)", "1", 1, 1 << 16},
        {"grad-clip", 0, CLI_FLOAT, &a->grad_clip, "NORM", "Global gradient-norm bound (0 = off)", "1.0", 0, 1e9},
        {"weight-decay", 0, CLI_FLOAT, &a->weight_decay, "WD", "AdamW decoupled weight decay (matrices and embedding)", "0.1", 0, 10},
        {"max-steps", 0, CLI_INT, &a->max_steps, "N", "Stop after N optimizer steps (0 = run all epochs)", "0", 0, 1L << 40},
        {"stride", 0, CLI_INT, &a->stride, "S", "Window stride in tokens (text)", "seq-len", 1, 1 << 20},
        {"format", 0, CLI_STRING, &a->format, "KIND", "auto, text or chat (auto: .jsonl records with \"messages\" or \"conversations\" are chat)", "auto"},
        {"no-loss-mask", 0, CLI_FLAG, &a->no_loss_mask, NULL, "Chat data: train on every token, prompts too (for comparison)", NULL},
        {"seed", 0, CLI_INT, &a->seed, "N", "Seed for initialisation, data order and dropout", "42", 0, 1L << 62},
        {"val-split", 0, CLI_FLOAT, &a->val_split, "F", "Fraction of windows held out for validation", "0.01", 0, 0.5},
        {"val-data", 0, CLI_LIST, &a->val_data, "FILE...", "Separate validation data (replaces --val-split)", NULL},
        {"text-field", 0, CLI_STRING, &a->text_field, "KEY", "JSONL field holding the text", "text"},
        {"checkpoint", 0, CLI_STRING, &a->checkpoint, "FILE", "Start from these weights (.safetensors), for fine-tuning", NULL},
        {"resume", 0, CLI_FLAG, &a->resume, NULL, "Continue exactly from the output folder's saved state", NULL},
        {"overwrite", 0, CLI_FLAG, &a->overwrite, NULL, "Start over in an output folder that holds a resumable run, replacing it", NULL},
        {"device", 0, CLI_STRING, &a->device, "DEV", "auto, cpu, cuda or cuda:N (auto: the GPU when one is present)", "auto"},
        {"dtype", 0, CLI_STRING, &a->dtype, "TYPE", CLI_DTYPE_HELP,
         "auto: bf16 on a GPU and on a CPU with AMX, f32 otherwise"},
        {"threads", 0, CLI_INT, &a->threads, "N", "CPU threads", "OMP_NUM_THREADS or all cores", 1, 4096},
        {"log-every", 0, CLI_INT, &a->log_every, "N", "Log a metrics line every N steps", "10", 1, 1L << 40},
        {"eval-every", 0, CLI_INT, &a->eval_every, "N", "Validation loss every N steps (0 = only at the end)", "500", 0, 1L << 40},
        {"eval-batches", 0, CLI_INT, &a->eval_batches, "N", "Validation batches per evaluation", "20", 1, 1L << 40},
        {"save-every", 0, CLI_INT, &a->save_every, "N", "Step checkpoint every N steps (0 = epochs only)", "1000", 0, 1L << 40},
        {"save-dtype", 0, CLI_STRING, &a->save_dtype, "DT", "Checkpoint weights dtype: f32 or bf16", "f32"},
        {"vocab-size", 'v', CLI_INT, &a->vocab_size, "V", "Vocabulary when a tokenizer must be trained", "32000", 260, 1 << 24},
        {"bucket-mb", 0, CLI_FLOAT, &a->bucket_mb, "MIB", "Data parallel: size of the gradient buckets reduced during the backward pass", "25", 0.001, 65536},
        {"no-overlap", 0, CLI_FLAG, &a->no_overlap, NULL, "Data parallel: one blocking all-reduce after the backward pass instead", NULL},
        {"zero1", 0, CLI_FLAG, &a->zero1, NULL, "Data parallel: shard the AdamW moments over the processes (ZeRO-1)", NULL},
        {0},
    };
    enum hm_status st = cli_parse_usage(
        "train", "-t tokenizer.json [-d FILE...] [options]",
        "Train a model from scratch (or from --checkpoint) on text or chat data (ChatML, loss on the "
        "assistant replies).",
        opts, argc, argv, help);
    if (st != HM_OK || *help)
        return st;
    if (!a->tokenizer)
        return hm_fail(HM_ERR_USAGE, "train: --tokenizer is required");
    return HM_OK;
}

static bool lists_stdin(const struct cli_list *l)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->items[i], "-") == 0)
            return true;
    return false;
}

/* Flags that contradict each other or the run they would continue, refused (or named) up front.
 * The output folder's own rules (lock, --overwrite, inputs that are outputs) are the session's. */
static enum hm_status train_args_check(const struct train_args *a)
{
    if (a->resume && a->overwrite)
        return hm_fail(HM_ERR_USAGE, "train: --resume continues the run in %s and --overwrite "
                       "replaces it: give one of them", a->output);
    if (a->resume && a->checkpoint)
        return hm_fail(HM_ERR_USAGE, "train: --checkpoint %s conflicts with --resume, which "
                       "continues from %s/state.safetensors", a->checkpoint, a->output);
    if (a->min_lr_given && a->min_lr > a->lr)
        return hm_fail(HM_ERR_USAGE, "train: --min-lr %g is above --lr %g: the schedule decays "
                       "from --lr to --min-lr", a->min_lr, a->lr);
    if ((a->data.n == 0 || lists_stdin(&a->data)) && lists_stdin(&a->val_data))
        return hm_fail(HM_ERR_USAGE, "train: standard input can feed --data or --val-data, not both");
    enum hm_status st;
    if (a->threads && (st = hm_check_threads("train: --threads", a->threads)) != HM_OK)
        return st;
    if (a->resume && a->model_given)
        fprintf(stderr, "Note: --resume continues the model saved in %s/config.json; -m %s is "
                "ignored\n", a->output, a->model);
    return HM_OK;
}

/* Flags -> session options; the device, dtype, schedule and save dtype are checked here. */
static enum hm_status session_opts(struct train_args *a, char *device, size_t cap,
                                   struct hm_session_opts *o)
{
    enum hm_status st;
    *o = hm_session_opts_default();
    struct hm_train_opts *t = &o->train;
    if ((st = cli_resolve_device("train", a->device, device, cap)) != HM_OK ||
        (st = cli_resolve_dtype("train", a->dtype, device, &o->dtype)) != HM_OK ||
        (st = hm_lr_kind_parse(a->lr_schedule, &t->lr.kind)) != HM_OK)
        return st;
    if (strcmp(a->dtype, "auto") == 0) { /* training has its own rule on the CPU (backend.h) */
        bool gpu = strncmp(device, "cuda", 4) == 0;
        o->dtype = hm_auto_train_dtype(gpu, gpu ? HM_CPU_BF16_NONE : hm_cpu_bf16_support());
    }
    if ((st = hm_data_format_parse(a->format, &o->format)) != HM_OK)
        return hm_fail(st, "train: %s", hm_last_error());
    if (strcmp(a->save_dtype, "f32") != 0 && strcmp(a->save_dtype, "bf16") != 0)
        return hm_fail(HM_ERR_USAGE, "train: --save-dtype: expected f32 or bf16, got '%s'",
                       a->save_dtype);
    o->tokenizer = a->tokenizer, o->model = a->model, o->text_field = a->text_field;
    o->tokenizer_train.vocab_size = (uint32_t)a->vocab_size;
    o->data = a->data.items, o->n_data = a->data.n;
    o->val_data = a->val_data.items, o->n_val_data = a->val_data.n;
    o->checkpoint = a->checkpoint, o->device = device, o->clamp_seq_len = !a->seq_len_given;
    o->overwrite = a->overwrite;
    o->num_gpus = a->num_gpus_given ? (int)a->num_gpus : 0;
    t->output_dir = a->output, t->batch_size = (int)a->batch, t->seq_len = (int)a->seq_len;
    t->stride = (int)a->stride, t->grad_accum = (int)a->grad_accum, t->epochs = (int)a->epochs;
    t->max_steps = a->max_steps, t->seed = (uint64_t)a->seed, t->val_split = a->val_split;
    t->adamw.grad_clip = (float)a->grad_clip, t->adamw.weight_decay = (float)a->weight_decay;
    t->lr.lr_max = a->lr, t->lr.lr_min = a->min_lr_given ? a->min_lr : a->lr / 10;
    t->lr.warmup_steps = a->warmup_given ? a->warmup : -1; /* -1: resolved by the trainer */
    t->log_every = a->log_every, t->eval_every = a->eval_every, t->eval_batches = a->eval_batches;
    t->save_every = a->save_every, t->resume = a->resume, t->bucket_mb = a->bucket_mb;
    t->save_dtype = strcmp(a->save_dtype, "bf16") == 0 ? HM_SAVE_BF16 : HM_SAVE_F32;
    t->no_overlap = a->no_overlap, t->zero1 = a->zero1, t->no_loss_mask = a->no_loss_mask;
    const char *share = getenv("HM_SHARE_GPU"), *fail = getenv("HM_TEST_FAIL_RANK");
    char *end;
    o->share_gpu = share && strcmp(share, "1") == 0;
    if (fail && *fail && (o->fail_rank = (int)strtol(fail, &end, 10), *end))
        o->fail_rank = -1;
    return HM_OK;
}

/* The error line of a rank that fails while others may wait for it (before the job is aborted).
 * A --num-gpus worker's lines already get a "[rank r]" prefix from the launcher. */
static void report_abort(const struct hm_session_result *r, enum hm_status st, void *user)
{
    if (r->role == HM_SESSION_WORKER)
        fprintf(stderr, "hermes-llm: error: %s\n", hm_last_error());
    else
        fprintf(stderr, "hermes-llm: error: rank %d: %s\n", r->rank, hm_last_error());
    fflush(stderr);
}

static void print_comm_summary(const struct train_args *a, const struct hm_session_result *r)
{
    const struct hm_train_summary *sum = &r->summary;
    const char *op = a->zero1 ? "reduce-scatter" : "all-reduce";
    double pct = 100.0 * sum->comm_s / fmax(sum->wall_s, 1e-9);
    if (a->no_overlap)
        fprintf(stderr, "Gradient %s: %.3f s exposed of %.3f s (%.1f%%); %s, %d processes, one "
                "blocking call per step (--no-overlap)\n", op, sum->comm_s, sum->wall_s, pct,
                r->comm_name, r->world);
    else
        fprintf(stderr, "Gradient %s: %.3f s exposed of %.3f s (%.1f%%), %.3f s of backward with "
                "reductions in flight; %s, %d processes, %d buckets per step\n", op, sum->comm_s,
                sum->wall_s, pct, sum->comm_overlap_s, r->comm_name, r->world, sum->comm_buckets);
}

static void print_summary(const struct train_args *a, const struct hm_session_result *r,
                          enum hm_status st, int argc, char **argv)
{
    const struct hm_train_summary *sum = &r->summary;
    fprintf(stderr, "Done: %ld steps, train loss %.4f, val loss %.4f, %llu tokens in %.1f s "
            "(%.0f tok/s), peak memory %.1f MiB (graph workspace %.1f MiB)\n",
            sum->steps, sum->final_loss, sum->final_val_loss, (unsigned long long)sum->tokens_seen,
            sum->wall_s, sum->mean_tokens_per_s, (double)sum->peak_rss_bytes / 1048576.0,
            (double)sum->planned_bytes / 1048576.0);
    if (r->world > 1 && sum->comm_buckets > 0)
        print_comm_summary(a, r);
    if (st == HM_ERR_INTERRUPTED) {
        /* The exact command, shell-quoted: this one, with --resume added once. */
        fprintf(stderr, "Resume with: hermes-llm");
        for (int i = 0; i < argc; i++)
            if (strcmp(argv[i], "--overwrite") != 0) /* it would start over, not resume */
                cli_print_quoted(stderr, argv[i]);
        fprintf(stderr, "%s\n", a->resume ? "" : " --resume");
    }
}

enum hm_status cmd_train(int argc, char **argv)
{
    struct train_args a;
    bool help = false;
    char device[32];
    struct hm_session_opts o;
    enum hm_status st = parse_args(argc, argv, &a, &help);
    if (st != HM_OK || help || (st = train_args_check(&a)) != HM_OK ||
        (st = session_opts(&a, device, sizeof device, &o)) != HM_OK)
        return st;
    if (a.threads)
        hm_set_threads((int)a.threads);
    /* --num-gpus workers run this same command line. */
    char **wargv = calloc((size_t)argc + 2, sizeof *wargv);
    if (!wargv)
        return hm_fail(HM_ERR_NOMEM, "train: out of memory");
    wargv[0] = "hermes-llm";
    memcpy(wargv + 1, argv, (size_t)argc * sizeof *argv);
    struct cli_progress bar;
    cli_progress_begin(&bar, "train", 0);
    o.worker_argv = wargv, o.progress = print_progress, o.progress_user = &bar;
    o.on_abort = report_abort;
    struct hm_session_result r;
    st = hm_session_run(&o, &r);
    cli_progress_end(&bar);
    free(wargv);
    if (r.aborted) /* the error is reported; the other ranks are being stopped */
        exit(st == HM_ERR_USAGE ? 2 : 1);
    if (r.trained && r.rank == 0 && (st == HM_OK || st == HM_ERR_INTERRUPTED))
        print_summary(&a, &r, st, argc, argv);
    return st == HM_ERR_INTERRUPTED ? HM_OK : st; /* a clean, saved stop */
}
