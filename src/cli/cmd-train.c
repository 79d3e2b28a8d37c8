/*
 * cmd-train.c - `hermes-llm train`: resolve the tokenizer (training one from the data when the
 * file is missing, as the original did), the model config and the data, then run the library's
 * training loop with a progress bar on a terminal and plain log lines otherwise.
 *
 * Data parallelism: under mpirun/srun every process is a rank (MPI for CPU buffers); with
 * --num-gpus N this process becomes a launcher that starts N workers of itself (hm_launch), which
 * find HM_RANK in their environment and form an NCCL communicator. Rank 0 alone trains or loads
 * the tokenizer and builds the token cache, then hands both to the others; a rank that fails
 * prints its error and aborts the communicator, so no other rank is left waiting.
 */
#include "commands.h"
#include "hermes/comm.h"
#include "hermes/corpus.h"
#include "hermes/dataset.h"
#include "hermes/interrupt.h"
#include "hermes/launch.h"
#include "hermes/run-dir.h"
#include "hermes/tokenizer.h"
#include "hermes/train.h"
#include "opts.h"
#include "progress.h"
#include "util/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct train_args {
    struct cli_list data, val_data;
    const char *tokenizer, *model, *output, *checkpoint, *text_field, *lr_schedule, *device, *dtype;
    const char *save_dtype;
    long batch, epochs, seq_len, num_gpus, grad_accum, stride, seed, warmup, max_steps, threads;
    long log_every, eval_every, eval_batches, save_every, vocab_size;
    double lr, min_lr, val_split, grad_clip, weight_decay, bucket_mb;
    bool resume, seq_len_given, warmup_given, min_lr_given, model_given, num_gpus_given;
    bool no_overlap, zero1, overwrite;
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

static bool lists_stdin(const struct cli_list *l)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->items[i], "-") == 0)
            return true;
    return false;
}

static enum hm_status load_or_train_tokenizer(struct train_args *a, struct hm_tokenizer **tok)
{
    if (access(a->tokenizer, F_OK) == 0)
        return hm_tokenizer_load(a->tokenizer, tok);
    if (a->data.n == 0 || lists_stdin(&a->data))
        return hm_fail(HM_ERR_USAGE, "train: tokenizer %s does not exist, and one can only be trained "
                       "from --data files, not standard input", a->tokenizer);
    fprintf(stderr, "Tokenizer %s not found: training a %ld-token byte-level BPE on the data first\n",
            a->tokenizer, a->vocab_size);
    static const char *const specials[] = {"<pad>", "<bos>", "<eos>", "<unk>"};
    struct hm_tokenizer_train_opts to = {(uint32_t)a->vocab_size, 2, specials, 4, 0, NULL, NULL};
    enum hm_status st = hm_corpus_train_tokenizer(a->data.items, a->data.n, a->text_field, &to, tok);
    if (st == HM_OK)
        st = hm_tokenizer_save(*tok, a->tokenizer);
    return st;
}

/* Undo a folder this run created, when it fails before training: only the files it writes. */
static void remove_created_output(const char *dir)
{
    static const char *const ours[] = {"tokens-train.bin", "tokens-val.bin", "config.json",
                                       "metrics.jsonl", "loss.svg", ".hermes.lock"};
    char p[4096];
    for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, ours[i]);
        unlink(p);
    }
    rmdir(dir);
}

/* Flags that contradict each other or the run they would continue, refused (or named) up front. */
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
    if (a->resume && a->model_given)
        fprintf(stderr, "Note: --resume continues the model saved in %s/config.json; -m %s is "
                "ignored\n", a->output, a->model);
    enum hm_status st;
    if ((st = hm_run_dir_check_inputs(a->output, "--data", a->data.items, (size_t)a->data.n)) ||
        (st = hm_run_dir_check_inputs(a->output, "--val-data", a->val_data.items,
                                      (size_t)a->val_data.n)))
        return st;
    return HM_OK;
}

/* Rank 0 loads or trains the tokenizer and sends it as JSON, so the other ranks need not see its
 * file (another node) and never race a half-trained one. */
static enum hm_status share_tokenizer(struct hm_comm *comm, struct train_args *a, struct hm_tokenizer **tok)
{
    int rank = hm_comm_rank(comm);
    enum hm_status st = HM_OK;
    char *js = NULL;
    struct {
        int32_t status;
        uint64_t len;
    } msg = {0};
    if (rank == 0) {
        st = load_or_train_tokenizer(a, tok);
        if (st == HM_OK && hm_comm_size(comm) > 1)
            st = hm_tokenizer_to_json(*tok, &js);
        msg.status = (int32_t)st;
        msg.len = js ? strlen(js) : 0;
    }
    if (hm_comm_size(comm) == 1)
        return st;
    enum hm_status bst = hm_comm_broadcast_host(comm, &msg, sizeof msg, 0);
    if (bst == HM_OK && msg.status == HM_OK) {
        if (rank != 0 && !(js = malloc(msg.len + 1)))
            bst = hm_fail(HM_ERR_NOMEM, "train: out of memory for the tokenizer");
        /* everyone joins the broadcast even after a local malloc failure: abort ends the job */
        if (bst == HM_OK)
            bst = hm_comm_broadcast_host(comm, js, msg.len, 0);
    }
    if (rank == 0) {
        hm_tokenizer_string_free(js);
        return st != HM_OK ? st : bst;
    }
    if (bst == HM_OK && msg.status != HM_OK)
        bst = hm_fail((enum hm_status)msg.status, "train: rank 0 could not load or train tokenizer %s",
                      a->tokenizer);
    if (bst == HM_OK)
        bst = hm_tokenizer_load_json(js, msg.len, a->tokenizer, tok);
    free(js);
    return bst;
}

/* Rank 0 builds (or reuses) the token cache and sends its key; the other ranks then map the same
 * file. Where the output folder is not shared (another node), the file is missing or stale there
 * and that rank tokenizes the same inputs itself. */
static enum hm_status share_dataset(struct hm_comm *comm, struct hm_tokenizer *tok,
                                    const struct hm_dataset_opts *o, struct hm_token_cache *out,
                                    struct hm_dataset_info *info)
{
    int rank = hm_comm_rank(comm);
    enum hm_status st = HM_OK;
    struct {
        int32_t status;
        uint64_t key;
    } msg = {0};
    memset(info, 0, sizeof *info);
    if (rank == 0) {
        st = hm_dataset_open(tok, o, out, info);
        msg.status = (int32_t)st;
        msg.key = st == HM_OK ? out->key : 0;
    }
    if (hm_comm_size(comm) == 1)
        return st;
    enum hm_status bst = hm_comm_broadcast_host(comm, &msg, sizeof msg, 0);
    if (rank == 0)
        return st != HM_OK ? st : bst;
    if (bst != HM_OK)
        return bst;
    if (msg.status != HM_OK)
        return hm_fail((enum hm_status)msg.status, "train: rank 0 could not read the data into %s",
                       o->cache_path);
    bool hit = false;
    if ((st = hm_token_cache_open(o->cache_path, msg.key, out, &hit)) != HM_OK || hit) {
        info->cache_hit = hit;
        return st;
    }
    if (o->n_paths == 0)
        return hm_fail(HM_ERR_IO, "train: %s: rank 0's token cache is not visible here; with data on "
                       "standard input, --output must be a folder every rank shares", o->cache_path);
    if ((st = hm_dataset_open(tok, o, out, info)) != HM_OK)
        return st;
    if (out->key != msg.key)
        return hm_fail(HM_ERR_MISMATCH, "train: the data files differ between rank 0 and this node");
    return HM_OK;
}

/* --num-gpus N: this process launches N workers of itself (same arguments) and waits. */
static enum hm_status launch_workers(struct train_args *a, int argc, char **argv)
{
    int n_dev = 0;
    enum hm_status st = hm_comm_nccl_device_count(&n_dev);
    if (st != HM_OK)
        return hm_fail(st, "train: --num-gpus %ld: %s", a->num_gpus, hm_last_error());
    if (n_dev == 0)
        return hm_fail(HM_ERR_DEVICE, "train: --num-gpus %ld: no CUDA device found", a->num_gpus);
    /* HM_SHARE_GPU=1 puts every worker on the first visible GPU: the only way to try two NCCL
     * ranks on a one-GPU machine (NCCL may refuse it, and then its error is what we report). */
    const char *share = getenv("HM_SHARE_GPU");
    if (share && strcmp(share, "1") == 0) {
        const char *vis = getenv("CUDA_VISIBLE_DEVICES");
        char first[32], list[512] = "";
        snprintf(first, sizeof first, "%.*s", vis && *vis ? (int)strcspn(vis, ",") : 1, vis && *vis ? vis : "0");
        for (long r = 0; r < a->num_gpus && strlen(list) + strlen(first) + 2 < sizeof list; r++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", r ? "," : "", first);
        setenv("CUDA_VISIBLE_DEVICES", list, 1);
        fprintf(stderr, "HM_SHARE_GPU=1: all %ld workers on GPU %s\n", a->num_gpus, first);
    } else if (n_dev < a->num_gpus) {
        return hm_fail(HM_ERR_DEVICE, "train: --num-gpus %ld: only %d CUDA device%s visible", a->num_gpus,
                       n_dev, n_dev == 1 ? "" : "s");
    }
    unsigned char id[HM_COMM_NCCL_ID_BYTES];
    if ((st = hm_comm_nccl_get_id(id)) != HM_OK)
        return hm_fail(st, "train: --num-gpus %ld: %s", a->num_gpus, hm_last_error());
    char **wargv = calloc((size_t)argc + 2, sizeof *wargv);
    if (!wargv)
        return hm_fail(HM_ERR_NOMEM, "train: out of memory");
    wargv[0] = "hermes-llm";
    for (int i = 0; i < argc; i++)
        wargv[i + 1] = argv[i];
    fprintf(stderr, "Starting %ld worker processes, one per GPU\n", a->num_gpus);
    struct hm_launch_opts lo = {.n_workers = (int)a->num_gpus, .exe = "/proc/self/exe", .argv = wargv,
                                .secret = id, .secret_bytes = sizeof id, .set_cuda_devices = true};
    struct hm_launch_result res;
    st = hm_launch(&lo, &res);
    free(wargv);
    if (st != HM_OK)
        return hm_fail(st, "train: --num-gpus %ld: %s", a->num_gpus, hm_last_error());
    return HM_OK;
}

/* Test-only hook (tests/cli/mpi.sh): HM_TEST_FAIL_RANK=r makes rank r fail once its data is
 * loaded, while the other ranks go on into the first collective of training. */
static bool test_fail_rank(int rank)
{
    const char *v = getenv("HM_TEST_FAIL_RANK");
    char *end;
    return v && *v && strtol(v, &end, 10) == rank && !*end;
}

enum hm_status cmd_train(int argc, char **argv)
{
    struct train_args a = {
        .tokenizer = NULL, .model = "tiny", .output = "checkpoints", .text_field = "text",
        .lr_schedule = "cosine", .device = "auto", .dtype = "auto", .save_dtype = "f32", .batch = 32, .epochs = 1,
        .seq_len = 256, .num_gpus = 1, .grad_accum = 1, .stride = 0, .seed = 42, .warmup = 0,
        .max_steps = 0, .threads = 0, .log_every = 10, .eval_every = 500, .eval_batches = 20,
        .save_every = 1000, .vocab_size = 32000, .lr = 3e-4, .min_lr = 0, .val_split = 0.01,
        .grad_clip = 1.0, .weight_decay = 0.1, .bucket_mb = 25,
    };
    bool help = false;
    const struct cli_opt opts[] = {
        {"data", 'd', CLI_LIST, &a.data, "FILE...", "Training data: .txt (one document per file), .jsonl, optionally .gz/.zst", "standard input"},
        {"tokenizer", 't', CLI_STRING, &a.tokenizer, "FILE", "tokenizer.json (trained from the data first if missing)", NULL},
        {"model", 'm', CLI_STRING, &a.model, "MODEL", "Preset (nano, tiny, gpt2-small, gpt2-medium, gpt2-large, llama-small) or config .json", "tiny", 0, 0, &a.model_given},
        {"output", 'o', CLI_STRING, &a.output, "DIR", "Output folder for checkpoints, metrics and the token cache", "checkpoints"},
        {"batch-size", 'b', CLI_INT, &a.batch, "B", "Micro-batch size per process", "32", 1, 1 << 16},
        {"epochs", 'e', CLI_INT, &a.epochs, "N", "Epochs over the training windows", "1", 1, 1 << 20},
        {"seq-len", 0, CLI_INT, &a.seq_len, "T", "Training sequence length (at most the model's max_seq_len)", "256, clamped to max_seq_len", 1, 1 << 20, &a.seq_len_given},
        {"lr", 0, CLI_FLOAT, &a.lr, "LR", "Peak learning rate", "3e-4", 0, 10},
        {"min-lr", 0, CLI_FLOAT, &a.min_lr, "LR", "Final learning rate of the decay", "lr/10", 0, 10, &a.min_lr_given},
        {"lr-schedule", 0, CLI_STRING, &a.lr_schedule, "KIND", "constant, cosine or wsd (all after --warmup)", "cosine"},
        {"warmup", 0, CLI_INT, &a.warmup, "STEPS", "Linear warmup steps", "min(1000, 5% of the steps)", 0, 1L << 40, &a.warmup_given},
        {"num-gpus", 0, CLI_INT, &a.num_gpus, "N", "Data-parallel GPUs on this machine: one worker process per GPU (NCCL)", "1", 1, 1024, &a.num_gpus_given},
        {"grad-accum", 0, CLI_INT, &a.grad_accum, "N", "Micro-batches per optimizer step (gradients averaged)", "1", 1, 1 << 16},
        {"grad-clip", 0, CLI_FLOAT, &a.grad_clip, "NORM", "Global gradient-norm bound (0 = off)", "1.0", 0, 1e9},
        {"weight-decay", 0, CLI_FLOAT, &a.weight_decay, "WD", "AdamW decoupled weight decay (matrices and embedding)", "0.1", 0, 10},
        {"max-steps", 0, CLI_INT, &a.max_steps, "N", "Stop after N optimizer steps (0 = run all epochs)", "0", 0, 1L << 40},
        {"stride", 0, CLI_INT, &a.stride, "S", "Window stride in tokens", "seq-len", 1, 1 << 20},
        {"seed", 0, CLI_INT, &a.seed, "N", "Seed for initialisation, data order and dropout", "42", 0, 1L << 62},
        {"val-split", 0, CLI_FLOAT, &a.val_split, "F", "Fraction of windows held out for validation", "0.01", 0, 0.5},
        {"val-data", 0, CLI_LIST, &a.val_data, "FILE...", "Separate validation data (replaces --val-split)", NULL},
        {"text-field", 0, CLI_STRING, &a.text_field, "KEY", "JSONL field holding the text", "text"},
        {"checkpoint", 0, CLI_STRING, &a.checkpoint, "FILE", "Start from these weights (.safetensors), for fine-tuning", NULL},
        {"resume", 0, CLI_FLAG, &a.resume, NULL, "Continue exactly from the output folder's saved state", NULL},
        {"overwrite", 0, CLI_FLAG, &a.overwrite, NULL, "Start over in an output folder that holds a resumable run, replacing it", NULL},
        {"device", 0, CLI_STRING, &a.device, "DEV", "auto, cpu, cuda or cuda:N (auto: the GPU when one is present)", "auto"},
        {"dtype", 0, CLI_STRING, &a.dtype, "TYPE", CLI_DTYPE_HELP, CLI_DTYPE_DEFAULT},
        {"threads", 0, CLI_INT, &a.threads, "N", "CPU threads", "OMP_NUM_THREADS or all cores", 1, 4096},
        {"log-every", 0, CLI_INT, &a.log_every, "N", "Log a metrics line every N steps", "10", 1, 1L << 40},
        {"eval-every", 0, CLI_INT, &a.eval_every, "N", "Validation loss every N steps (0 = only at the end)", "500", 0, 1L << 40},
        {"eval-batches", 0, CLI_INT, &a.eval_batches, "N", "Validation batches per evaluation", "20", 1, 1L << 40},
        {"save-every", 0, CLI_INT, &a.save_every, "N", "Step checkpoint every N steps (0 = epochs only)", "1000", 0, 1L << 40},
        {"save-dtype", 0, CLI_STRING, &a.save_dtype, "DT", "Checkpoint weights dtype: f32 or bf16", "f32"},
        {"vocab-size", 'v', CLI_INT, &a.vocab_size, "V", "Vocabulary when a tokenizer must be trained", "32000", 260, 1 << 24},
        {"bucket-mb", 0, CLI_FLOAT, &a.bucket_mb, "MIB", "Data parallel: size of the gradient buckets reduced during the backward pass", "25", 0.001, 65536},
        {"no-overlap", 0, CLI_FLAG, &a.no_overlap, NULL, "Data parallel: one blocking all-reduce after the backward pass instead", NULL},
        {"zero1", 0, CLI_FLAG, &a.zero1, NULL, "Data parallel: shard the AdamW moments over the processes (ZeRO-1)", NULL},
        {0},
    };
    enum hm_status st = cli_parse("train", opts, argc, argv, &help);
    if (st != HM_OK)
        return st;
    if (help) {
        cli_usage(stdout, "train", "-t tokenizer.json [-d FILE...] [options]",
                  "Train a model from scratch (or from --checkpoint) on text data.", opts);
        return HM_OK;
    }
    if (!a.tokenizer)
        return hm_fail(HM_ERR_USAGE, "train: --tokenizer is required");
    char device[32];
    if ((st = cli_resolve_device("train", a.device, device, sizeof device)) != HM_OK)
        return st;
    enum hm_dtype dtype;
    if ((st = cli_resolve_dtype("train", a.dtype, device, &dtype)) != HM_OK)
        return st;
    enum hm_lr_kind lr_kind;
    if ((st = hm_lr_kind_parse(a.lr_schedule, &lr_kind)) != HM_OK)
        return st;
    if (strcmp(a.save_dtype, "f32") != 0 && strcmp(a.save_dtype, "bf16") != 0)
        return hm_fail(HM_ERR_USAGE, "train: --save-dtype: expected f32 or bf16, got '%s'", a.save_dtype);
    if (a.threads && (st = hm_check_threads("train: --threads", a.threads)) != HM_OK)
        return st;
    if (a.threads)
        hm_set_threads((int)a.threads);
    if ((st = train_args_check(&a)) != HM_OK)
        return st;

    /* Who we are: a --num-gpus worker, a launcher, an MPI rank (NCCL-over-MPI for GPU devices),
     * or the only process. */
    struct hm_comm *comm = NULL;
    int wrank, wworld;
    bool worker = hm_launch_is_worker(&wrank, &wworld);
    if (worker) {
        unsigned char id[HM_COMM_NCCL_ID_BYTES];
        if ((st = hm_launch_read_secret(id, sizeof id)) != HM_OK ||
            (st = hm_comm_nccl_new(wrank, wworld, id, 0, &comm)) != HM_OK)
            return st;
    } else if (a.num_gpus_given) {
        if (hm_comm_mpi_launched())
            return hm_fail(HM_ERR_USAGE, "train: --num-gpus starts its own processes; under mpirun/srun "
                           "leave it out (one rank per GPU)");
        return launch_workers(&a, argc, argv);
    } else if (hm_comm_mpi_launched()) {
        st = strcmp(device, "cpu") == 0 ? hm_comm_mpi_new(&comm) : hm_comm_nccl_mpi_new(&comm);
        if (st != HM_OK)
            return st;
    } else if ((st = hm_comm_single_new(&comm)) != HM_OK) {
        return st;
    }
    int rank = hm_comm_rank(comm);
    struct hm_tokenizer *tok = NULL;
    struct hm_model *model = NULL;
    struct hm_token_cache train = {0}, val = {0};
    bool have_val = false, created_output = false;
    struct hm_run_lock *lock = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/state.safetensors", a.output);
    if (a.resume && !hm_file_exists(path)) {
        st = hm_fail(HM_ERR_IO, "train: --resume: no training state in %s (state.safetensors is missing)",
                     a.output);
        goto out;
    }
    /* A folder this run creates is removed again if the run fails before training starts. Rank 0
     * creates and locks it before the first collective, the others after (on another node it may
     * be new). */
    if (rank == 0) {
        created_output = !hm_file_exists(a.output);
        if ((st = hm_run_dir_open(a.output, a.resume, a.overwrite, &lock)) != HM_OK) {
            created_output = false;
            goto out;
        }
    }

    /* Tokenizer: rank 0 trains a missing one or loads it; the others get it from rank 0. */
    if ((st = share_tokenizer(comm, &a, &tok)) != HM_OK)
        goto out;
    if (rank != 0 && (st = hm_mkdir_p(a.output)) != HM_OK)
        goto out;

    /* Model config: the saved one when resuming, else the preset or file, with the tokenizer's vocab. */
    struct hm_model_config cfg;
    snprintf(path, sizeof path, "%s/config.json", a.output);
    if (a.resume) {
        if ((st = hm_config_load(path, &cfg)) != HM_OK)
            goto out;
    } else if ((st = hm_config_resolve(a.model, &cfg)) != HM_OK) {
        goto out;
    }
    uint32_t V = hm_tokenizer_vocab_size(tok);
    if (a.resume && (uint32_t)cfg.vocab_size != V) {
        st = hm_fail(HM_ERR_MISMATCH, "train: tokenizer %s has %u tokens, the run in %s was trained with %d",
                     a.tokenizer, V, a.output, cfg.vocab_size);
        goto out;
    }
    cfg.vocab_size = (int)V;
    if (a.seq_len > cfg.max_seq_len) {
        if (a.seq_len_given) {
            st = hm_fail(HM_ERR_USAGE, "train: --seq-len %ld exceeds the model's max_seq_len %d",
                         a.seq_len, cfg.max_seq_len);
            goto out;
        }
        if (rank == 0)
            fprintf(stderr, "Note: the default --seq-len 256 exceeds %s's max_seq_len %d; using %d\n",
                    cfg.name, cfg.max_seq_len, cfg.max_seq_len);
        a.seq_len = cfg.max_seq_len;
    }
    if (!a.stride)
        a.stride = a.seq_len;

    /* Data: tokenized once into the output folder, then memory-mapped. */
    snprintf(path, sizeof path, "%s/tokens-train.bin", a.output);
    struct hm_dataset_opts dopt = {a.data.items, a.data.n, a.text_field, path, 0};
    struct hm_dataset_info dinfo;
    if ((st = share_dataset(comm, tok, &dopt, &train, &dinfo)) != HM_OK)
        goto out;
    if (rank == 0)
        fprintf(stderr, "Data: %llu documents, %llu tokens%s\n", (unsigned long long)dinfo.n_docs,
                (unsigned long long)train.n_tokens, dinfo.cache_hit ? " (token cache reused)" : "");
    if (a.val_data.n) {
        snprintf(path, sizeof path, "%s/tokens-val.bin", a.output);
        struct hm_dataset_opts vopt = {a.val_data.items, a.val_data.n, a.text_field, path, 0,
                                       "--val-data"};
        if ((st = share_dataset(comm, tok, &vopt, &val, &dinfo)) != HM_OK)
            goto out;
        have_val = true;
    }
    if (test_fail_rank(rank)) {
        st = hm_fail(HM_ERR_IO, "HM_TEST_FAIL_RANK=%d: failing on purpose (test-only hook)", rank);
        goto out;
    }

    /* A --num-gpus worker sees only its own GPU (CUDA_VISIBLE_DEVICES), as cuda:0. */
    struct hm_backend *be = NULL;
    if ((st = hm_backend_new_from_string(worker ? "cuda" : device, &be)) != HM_OK)
        goto out;
    if ((!strcmp(hm_backend_name(be), "cpu") &&
         (st = hm_model_memory_check(&cfg, (int)a.batch, (int)a.seq_len, true)) != HM_OK) ||
        (st = hm_model_new(&cfg, be, &model)) != HM_OK ||
        (st = hm_model_init_weights(model, (uint64_t)a.seed)) != HM_OK)
        goto out_be;
    if (a.checkpoint && !a.resume) {
        if ((st = hm_model_load_weights(model, a.checkpoint)) != HM_OK) {
            if (st == HM_ERR_MISMATCH && strstr(hm_last_error(), "embedding.weight"))
                hm_fail(st, "train: --checkpoint %s does not match tokenizer %s (%u tokens): %s",
                        a.checkpoint, a.tokenizer, V, hm_last_error());
            goto out_be;
        }
    }
    if ((st = hm_model_set_dtype(model, dtype)) != HM_OK)
        goto out_be;
    if (rank == 0 && dtype == HM_DTYPE_BF16)
        fprintf(stderr, "Precision: bf16 weights and activations, f32 master weights, optimizer and loss%s\n",
                strcmp(hm_backend_name(be), "cpu") == 0 ? " (bf16 on the cpu is a slow reference mode)" : "");
    if (rank == 0) {
        snprintf(path, sizeof path, "%s/config.json", a.output);
        if ((st = hm_config_save(&cfg, path)) != HM_OK)
            goto out_be;
    }

    struct hm_train_opts to = {
        .output_dir = a.output, .batch_size = (int)a.batch, .seq_len = (int)a.seq_len,
        .stride = (int)a.stride, .grad_accum = (int)a.grad_accum, .epochs = (int)a.epochs,
        .max_steps = a.max_steps, .seed = (uint64_t)a.seed, .val_split = a.val_split,
        .adamw = hm_adamw_defaults(), .log_every = a.log_every, .eval_every = a.eval_every,
        .eval_batches = a.eval_batches, .save_every = a.save_every,
        .save_dtype = strcmp(a.save_dtype, "bf16") == 0 ? HM_SAVE_BF16 : HM_SAVE_F32, .resume = a.resume,
        .bucket_mb = a.bucket_mb, .no_overlap = a.no_overlap, .zero1 = a.zero1,
    };
    to.adamw.grad_clip = (float)a.grad_clip;
    to.adamw.weight_decay = (float)a.weight_decay;
    to.lr = (struct hm_lr_schedule){lr_kind, a.lr, a.min_lr_given ? a.min_lr : a.lr / 10, a.warmup, 0, 0.2};
    if (!a.warmup_given)
        to.lr.warmup_steps = -1; /* resolved by the trainer once the step count is known */
    if (rank == 0) {
        long G = a.batch * a.grad_accum * hm_comm_size(comm);
        fprintf(stderr, "Model: %s, %llu parameters (%d layers, hidden %d, vocab %u)\n", cfg.name,
                (unsigned long long)hm_model_param_count(model), cfg.num_layers, cfg.hidden_size, V);
        fprintf(stderr, "Global batch: %ld windows (batch %ld x grad-accum %ld x %d process%s) of %ld tokens\n",
                G, a.batch, a.grad_accum, hm_comm_size(comm), hm_comm_size(comm) > 1 ? "es" : "", a.seq_len);
        size_t planned, off, shard;
        uint64_t P = hm_model_param_count(model);
        bool sharded = a.zero1 && hm_comm_size(comm) > 1;
        hm_comm_shard(comm, (size_t)P, 0, &off, &shard); /* rank 0's shard is the largest */
        double moments = 8.0 * (double)(sharded ? shard : P) / 1048576.0;
        if (hm_model_plan_train_bytes(model, be, (int)a.batch, (int)a.seq_len, &planned) == HM_OK)
            fprintf(stderr, "Memory: %.1f MiB of parameters, gradients and AdamW moments, %.1f MiB "
                    "planned for activations and their gradients\n", 8.0 * (double)P / 1048576.0 + moments,
                    (double)planned / 1048576.0);
        if (sharded)
            fprintf(stderr, "Optimizer state (ZeRO-1): %.1f MiB of AdamW moments per process (1/%d of "
                    "%.1f MiB)\n", moments, hm_comm_size(comm), 8.0 * (double)P / 1048576.0);
        else
            fprintf(stderr, "Optimizer state: %.1f MiB of AdamW moments per process\n", moments);
    }
    hm_interrupt_install();
    struct cli_progress bar;
    cli_progress_begin(&bar, "train", 0);
    struct hm_train_summary sum;
    st = hm_train(model, &train, have_val ? &val : NULL, &to, comm, print_progress, &bar, &sum);
    cli_progress_end(&bar);
    snprintf(path, sizeof path, "%s/state.safetensors", a.output);
    if (hm_file_exists(path))
        created_output = false; /* the folder holds a resumable run now: keep it */
    if (rank == 0 && (st == HM_OK || st == HM_ERR_INTERRUPTED)) {
        fprintf(stderr, "Done: %ld steps, train loss %.4f, val loss %.4f, %llu tokens in %.1f s "
                "(%.0f tok/s), peak memory %.1f MiB (graph workspace %.1f MiB)\n",
                sum.steps, sum.final_loss, sum.final_val_loss, (unsigned long long)sum.tokens_seen,
                sum.wall_s, sum.mean_tokens_per_s, (double)sum.peak_rss_bytes / 1048576.0,
                (double)sum.planned_bytes / 1048576.0);
        if (hm_comm_size(comm) > 1 && sum.comm_buckets > 0) {
            const char *op = a.zero1 ? "reduce-scatter" : "all-reduce";
            if (a.no_overlap)
                fprintf(stderr, "Gradient %s: %.3f s exposed of %.3f s (%.1f%%); %s, %d processes, one "
                        "blocking call per step (--no-overlap)\n", op, sum.comm_s, sum.wall_s,
                        100.0 * sum.comm_s / fmax(sum.wall_s, 1e-9), hm_comm_name(comm), hm_comm_size(comm));
            else
                fprintf(stderr, "Gradient %s: %.3f s exposed of %.3f s (%.1f%%), %.3f s of backward with "
                        "reductions in flight; %s, %d processes, %d buckets per step\n", op, sum.comm_s,
                        sum.wall_s, 100.0 * sum.comm_s / fmax(sum.wall_s, 1e-9), sum.comm_overlap_s,
                        hm_comm_name(comm), hm_comm_size(comm), sum.comm_buckets);
        }
        if (st == HM_ERR_INTERRUPTED) {
            /* The exact command: this one, with --resume added once. */
            fprintf(stderr, "Resume with: hermes-llm");
            for (int i = 0; i < argc; i++)
                if (strcmp(argv[i], "--overwrite") != 0) /* it would start over, not resume */
                    cli_print_quoted(stderr, argv[i]);
            fprintf(stderr, "%s\n", a.resume ? "" : " --resume");
        }
    }
    if (st == HM_ERR_INTERRUPTED)
        st = HM_OK; /* a clean, saved stop */
out_be:
    hm_model_free(model);
    hm_backend_free(be);
out:
    if (st != HM_OK && created_output && rank == 0)
        remove_created_output(a.output);
    hm_run_lock_release(lock);
    if (have_val)
        hm_token_cache_close(&val);
    hm_token_cache_close(&train);
    hm_tokenizer_free(tok);
    if (st != HM_OK && hm_comm_size(comm) > 1) {
        /* The other ranks may be inside a collective that waits for this one: report here, then
         * abort the communicator instead of a clean shutdown that would wait for them. A
         * --num-gpus worker's lines already get a "[rank r]" prefix from the launcher. */
        if (worker)
            fprintf(stderr, "hermes-llm: error: %s\n", hm_last_error());
        else
            fprintf(stderr, "hermes-llm: error: rank %d: %s\n", rank, hm_last_error());
        fflush(stderr);
        int code = st == HM_ERR_USAGE ? 2 : 1;
        hm_comm_abort(comm, code); /* MPI: does not return */
        exit(code);
    }
    hm_comm_free(comm);
    return st;
}
