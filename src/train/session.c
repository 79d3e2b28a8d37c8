/*
 * session.c - a training run from files to checkpoints (session.h): the process's role, the
 * rank-0 tokenizer and token-cache sharing, the model, the training loop, and cleanup that never
 * leaves another rank waiting in a collective.
 */
#include "hermes/session.h"
#include "session-chat.h"
#include "hermes/comm.h"
#include "hermes/corpus.h"
#include "hermes/dataset.h"
#include "hermes/interrupt.h"
#include "hermes/launch.h"
#include "hermes/run-dir.h"
#include "util/util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct session {
    const struct hm_session_opts *o;
    struct hm_session_result *res;
    struct hm_train_opts to; /* opts->train with seq_len and stride resolved */
    struct hm_comm *comm;
    int rank;
    struct hm_tokenizer *tok;
    struct hm_model_config cfg;
    struct hm_token_cache train, val;
    struct hm_token_cache train_flags, val_flags; /* chat data's per-token flags */
    enum hm_data_format format;                   /* text or chat, resolved */
    int n_chat_added;                             /* ChatML tokens this run added to the tokenizer */
    bool have_val, created_output;
    struct hm_run_lock *lock; /* rank 0: the output folder's lock, held to the end */
    struct hm_backend *be;
    struct hm_model *model;
    char path[4096];
};

struct hm_session_opts hm_session_opts_default(void)
{
    struct hm_session_opts o = {
        .tokenizer_train = hm_tokenizer_train_opts_default(), .model = "tiny", .text_field = "text",
        .device = "cpu", .dtype = HM_DTYPE_F32, .clamp_seq_len = true,
        .train = hm_train_opts_default(), .handle_signals = true, .fail_rank = -1,
    };
    o.train.stride = 0;
    return o;
}

static const char *out_path(struct session *s, const char *name)
{
    snprintf(s->path, sizeof s->path, "%s/%s", s->to.output_dir, name);
    return s->path;
}

/* ---- role ------------------------------------------------------------------------------------ */

/* num_gpus: this process launches the workers (same arguments) and waits for them. */
static enum hm_status launch_workers(const struct hm_session_opts *o)
{
    int n_dev = 0, n = o->num_gpus;
    enum hm_status st = hm_comm_nccl_device_count(&n_dev);
    if (st != HM_OK)
        return hm_fail(st, "train: --num-gpus %d: %s", n, hm_last_error());
    if (n_dev == 0)
        return hm_fail(HM_ERR_DEVICE, "train: --num-gpus %d: no CUDA device found", n);
    /* share_gpu puts every worker on the first visible GPU: the only way to try two NCCL ranks
     * on a one-GPU machine (NCCL may refuse it, and then its error is what we report). */
    if (o->share_gpu) {
        const char *vis = getenv("CUDA_VISIBLE_DEVICES");
        bool set = vis && *vis;
        char first[32], list[512] = "";
        snprintf(first, sizeof first, "%.*s", set ? (int)strcspn(vis, ",") : 1, set ? vis : "0");
        for (int r = 0; r < n && strlen(list) + strlen(first) + 2 < sizeof list; r++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", r ? "," : "", first);
        setenv("CUDA_VISIBLE_DEVICES", list, 1);
        hm_log(HM_LOG_INFO, "HM_SHARE_GPU=1: all %d workers on GPU %s", n, first);
    } else if (n_dev < n) {
        return hm_fail(HM_ERR_DEVICE, "train: --num-gpus %d: only %d CUDA device%s visible", n, n_dev,
                       n_dev == 1 ? "" : "s");
    }
    unsigned char id[HM_COMM_NCCL_ID_BYTES];
    if ((st = hm_comm_nccl_get_id(id)) != HM_OK)
        return hm_fail(st, "train: --num-gpus %d: %s", n, hm_last_error());
    hm_log(HM_LOG_INFO, "Starting %d worker processes, one per GPU", n);
    struct hm_launch_opts lo = hm_launch_opts_default();
    lo.n_workers = n, lo.argv = o->worker_argv, lo.secret = id, lo.secret_bytes = sizeof id;
    lo.set_cuda_devices = true;
    struct hm_launch_result lr;
    if ((st = hm_launch(&lo, &lr)) != HM_OK)
        return hm_fail(st, "train: --num-gpus %d: %s", n, hm_last_error());
    return HM_OK;
}

/* Who we are: a launched worker, a launcher, an MPI rank (NCCL-over-MPI for GPU devices), or the
 * only process. A launcher has no communicator. */
static enum hm_status pick_role(const struct hm_session_opts *o, struct hm_session_result *res,
                                struct hm_comm **comm)
{
    int wrank, wworld;
    enum hm_status st;
    if (hm_launch_is_worker(&wrank, &wworld)) {
        unsigned char id[HM_COMM_NCCL_ID_BYTES];
        res->role = HM_SESSION_WORKER;
        if ((st = hm_launch_read_secret(id, sizeof id)) != HM_OK)
            return st;
        return hm_comm_nccl_new(wrank, wworld, id, 0, comm);
    }
    if (o->num_gpus > 0) {
        if (hm_comm_mpi_launched())
            return hm_fail(HM_ERR_USAGE, "train: --num-gpus starts its own processes; under mpirun/srun "
                           "leave it out (one rank per GPU)");
        res->role = HM_SESSION_LAUNCHER;
        return HM_OK;
    }
    if (hm_comm_mpi_launched()) {
        res->role = HM_SESSION_MPI_RANK;
        return strcmp(o->device, "cpu") == 0 ? hm_comm_mpi_new(comm) : hm_comm_nccl_mpi_new(comm);
    }
    res->role = HM_SESSION_SINGLE;
    return hm_comm_single_new(comm);
}

/* ---- tokenizer and data, from rank 0 --------------------------------------------------------- */

/* Standard input is among the inputs: none given, or "-" among them. */
static bool reads_stdin(const char *const *paths, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(paths[i], "-") == 0)
            return true;
    return n == 0;
}

static enum hm_status load_or_train_tokenizer(const struct hm_session_opts *o,
                                              struct hm_tokenizer **tok)
{
    if (access(o->tokenizer, F_OK) == 0)
        return hm_tokenizer_load(o->tokenizer, tok);
    if (reads_stdin(o->data, o->n_data))
        return hm_fail(HM_ERR_USAGE, "train: tokenizer %s does not exist, and one can only be trained "
                       "from --data files, not standard input", o->tokenizer);
    hm_log(HM_LOG_INFO, "Tokenizer %s not found: training a %u-token byte-level BPE on the data first",
           o->tokenizer, o->tokenizer_train.vocab_size);
    enum hm_status st = hm_corpus_train_tokenizer(o->data, o->n_data, o->text_field,
                                                  &o->tokenizer_train, tok);
    if (st == HM_OK)
        st = hm_tokenizer_save(*tok, o->tokenizer);
    return st;
}

/* Rank 0 loads or trains the tokenizer and sends it as JSON, so the other ranks need not see its
 * file (another node) and never race a half-trained one. */
static enum hm_status share_tokenizer(struct session *s)
{
    struct hm_comm *comm = s->comm;
    enum hm_status st = HM_OK;
    char *js = NULL;
    struct {
        int32_t status;
        uint64_t len;
    } msg = {0};
    if (s->rank == 0) {
        st = load_or_train_tokenizer(s->o, &s->tok);
        if (st == HM_OK && hm_comm_size(comm) > 1)
            st = hm_tokenizer_to_json(s->tok, &js);
        msg.status = (int32_t)st;
        msg.len = js ? strlen(js) : 0;
    }
    if (hm_comm_size(comm) == 1)
        return st;
    enum hm_status bst = hm_comm_broadcast_host(comm, &msg, sizeof msg, 0);
    if (bst == HM_OK && msg.status == HM_OK) {
        if (s->rank != 0 && !(js = hm_malloc(msg.len + 1)))
            bst = hm_fail(HM_ERR_NOMEM, "train: out of memory for the tokenizer");
        /* everyone joins the broadcast even after a local malloc failure: abort ends the job */
        if (bst == HM_OK)
            bst = hm_comm_broadcast_host(comm, js, msg.len, 0);
    }
    if (s->rank == 0) {
        hm_free(js);
        return st != HM_OK ? st : bst;
    }
    if (bst == HM_OK && msg.status != HM_OK)
        bst = hm_fail((enum hm_status)msg.status, "train: rank 0 could not load or train tokenizer %s",
                      s->o->tokenizer);
    if (bst == HM_OK)
        bst = hm_tokenizer_load_json(js, msg.len, s->o->tokenizer, &s->tok);
    hm_free(js);
    return bst;
}

/* Rank 0 builds (or reuses) the token cache and sends its key; the other ranks then map the same
 * file. Where the output folder is not shared (another node), the file is missing or stale there
 * and that rank tokenizes the same inputs itself. */
static enum hm_status share_dataset(struct session *s, const struct hm_dataset_opts *o,
                                    struct hm_token_cache *out, struct hm_dataset_info *info)
{
    struct hm_comm *comm = s->comm;
    enum hm_status st = HM_OK;
    struct {
        int32_t status;
        uint64_t key;
    } msg = {0};
    memset(info, 0, sizeof *info);
    if (s->rank == 0) {
        st = hm_dataset_open(s->tok, o, out, info);
        msg.status = (int32_t)st;
        msg.key = st == HM_OK ? out->key : 0;
    }
    if (hm_comm_size(comm) == 1)
        return st;
    enum hm_status bst = hm_comm_broadcast_host(comm, &msg, sizeof msg, 0);
    if (s->rank == 0)
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
    if (reads_stdin(o->paths, o->n_paths))
        return hm_fail(HM_ERR_IO, "train: %s: rank 0's token cache is not visible here; with data on "
                       "standard input, --output must be a folder every rank shares", o->cache_path);
    if ((st = hm_dataset_open(s->tok, o, out, info)) != HM_OK)
        return st;
    if (out->key != msg.key)
        return hm_fail(HM_ERR_MISMATCH, "train: the data files differ between rank 0 and this node");
    return HM_OK;
}

/* Chat data: packed conversations and their flags (one process, see hm_session_chat_format). */
static enum hm_status open_chat_data(struct session *s)
{
    const struct hm_session_opts *o = s->o;
    const char *out = s->to.output_dir;
    enum hm_status st = hm_session_chat_data(s->tok, o->tokenizer, o->data, o->n_data, s->to.seq_len, out,
                                             "train", &s->train, &s->train_flags);
    if (st != HM_OK || !o->n_val_data)
        return st;
    s->have_val = true; /* val_flags is closed with it either way */
    return hm_session_chat_data(s->tok, o->tokenizer, o->val_data, o->n_val_data, s->to.seq_len, out, "val",
                                &s->val, &s->val_flags);
}

static enum hm_status open_data(struct session *s)
{
    const struct hm_session_opts *o = s->o;
    if (s->format == HM_DATA_CHAT)
        return open_chat_data(s);
    struct hm_dataset_opts d = hm_dataset_opts_default();
    struct hm_dataset_info info;
    d.paths = o->data, d.n_paths = o->n_data, d.text_field = o->text_field;
    d.cache_path = out_path(s, "tokens-train.bin");
    enum hm_status st = share_dataset(s, &d, &s->train, &info);
    if (st != HM_OK)
        return st;
    if (s->rank == 0)
        hm_log(HM_LOG_INFO, "Data: %llu documents, %llu tokens%s", (unsigned long long)info.n_docs,
               (unsigned long long)s->train.n_tokens, info.cache_hit ? " (token cache reused)" : "");
    if (o->n_val_data) {
        d.paths = o->val_data, d.n_paths = o->n_val_data, d.flag = "--val-data";
        d.cache_path = out_path(s, "tokens-val.bin");
        if ((st = share_dataset(s, &d, &s->val, &info)) != HM_OK)
            return st;
        s->have_val = true;
    }
    if (s->rank == o->fail_rank)
        return hm_fail(HM_ERR_IO, "HM_TEST_FAIL_RANK=%d: failing on purpose (test-only hook)", s->rank);
    return HM_OK;
}

/* ---- output folder, config, model ------------------------------------------------------------ */

/* A folder this run creates is removed again if the run fails before training starts. Rank 0
 * creates and locks it before the first collective (run-dir.h: one run per folder, a resumable
 * run replaced only with overwrite, dead processes' temp files removed), the others create it
 * after (on another node it may be new). No input may be a file the run writes there. */
static enum hm_status prepare_output(struct session *s)
{
    const struct hm_session_opts *o = s->o;
    const char *dir = s->to.output_dir;
    enum hm_status st;
    if (s->to.resume && s->o->overwrite)
        return hm_fail(HM_ERR_USAGE, "train: --resume continues the run in %s and --overwrite "
                       "replaces it: give one of them", dir);
    if ((st = hm_run_dir_check_inputs(dir, "--data", o->data, (size_t)o->n_data)) != HM_OK ||
        (st = hm_run_dir_check_inputs(dir, "--val-data", o->val_data, (size_t)o->n_val_data)) != HM_OK)
        return st;
    if (s->to.resume && !hm_file_exists(out_path(s, "state.safetensors")))
        return hm_fail(HM_ERR_IO, "train: --resume: no training state in %s (state.safetensors is "
                       "missing)", dir);
    if (s->rank != 0)
        return HM_OK;
    s->created_output = !hm_file_exists(dir);
    if ((st = hm_run_dir_open(dir, s->to.resume, o->overwrite, &s->lock)) != HM_OK)
        s->created_output = false;
    return st;
}

/* Undo a folder this run created, when it fails before training: only the files it writes. */
static void remove_created_output(struct session *s)
{
    static const char *const ours[] = {"tokens-train.bin", "tokens-val.bin", "tokens-train.flags",
                                       "tokens-val.flags", "config.json", "metrics.jsonl", "loss.svg",
                                       ".hermes.lock"};
    for (size_t i = 0; i < HM_ARRAY_LEN(ours); i++)
        unlink(out_path(s, ours[i]));
    if (s->n_chat_added) /* the tokenizer grown with the ChatML tokens (session-chat.c) */
        unlink(out_path(s, "tokenizer.json"));
    rmdir(s->to.output_dir);
}

/* The saved config when resuming, else the preset or file, with the tokenizer's vocabulary; and
 * the sequence length it allows. */
static enum hm_status resolve_config(struct session *s)
{
    const struct hm_session_opts *o = s->o;
    enum hm_status st = s->to.resume ? hm_config_load(out_path(s, "config.json"), &s->cfg)
                                     : hm_config_resolve(o->model, &s->cfg);
    if (st != HM_OK)
        return st;
    uint32_t V = hm_tokenizer_vocab_size(s->tok);
    if (s->to.resume && (uint32_t)s->cfg.vocab_size != V)
        return hm_fail(HM_ERR_MISMATCH, "train: tokenizer %s has %u tokens, the run in %s was trained "
                       "with %d", o->tokenizer, V, s->to.output_dir, s->cfg.vocab_size);
    s->cfg.vocab_size = (int)V;
    if (s->to.seq_len > s->cfg.max_seq_len) {
        if (!o->clamp_seq_len)
            return hm_fail(HM_ERR_USAGE, "train: --seq-len %d exceeds the model's max_seq_len %d",
                           s->to.seq_len, s->cfg.max_seq_len);
        if (s->rank == 0)
            hm_log(HM_LOG_INFO, "Note: --seq-len %d exceeds %s's max_seq_len %d; using %d",
                   s->to.seq_len, s->cfg.name, s->cfg.max_seq_len, s->cfg.max_seq_len);
        s->to.seq_len = s->cfg.max_seq_len;
    }
    if (!s->to.stride) /* chat: disjoint packed windows of seq_len + 1 tokens */
        s->to.stride = s->format == HM_DATA_CHAT ? s->to.seq_len + 1 : s->to.seq_len;
    return HM_OK;
}

static enum hm_status build_model(struct session *s)
{
    const struct hm_session_opts *o = s->o;
    /* A launched worker sees only its own GPU (CUDA_VISIBLE_DEVICES), as cuda:0. */
    bool worker = s->res->role == HM_SESSION_WORKER;
    enum hm_status st;
    if ((st = hm_backend_new_from_string(worker ? "cuda" : o->device, &s->be)) != HM_OK)
        return st;
    /* On the CPU a model or batch that cannot fit is refused before allocating, with its figures. */
    if (strcmp(hm_backend_name(s->be), "cpu") == 0 &&
        (st = hm_model_memory_check(&s->cfg, s->to.batch_size, s->to.seq_len, true)) != HM_OK)
        return st;
    if ((st = hm_model_new(&s->cfg, s->be, &s->model)) != HM_OK ||
        (st = hm_model_init_weights(s->model, s->to.seed)) != HM_OK)
        return st;
    if (o->checkpoint && !s->to.resume &&
        (st = s->n_chat_added ? hm_model_load_weights_grow_vocab(s->model, o->checkpoint, s->n_chat_added)
                              : hm_model_load_weights(s->model, o->checkpoint)) != HM_OK) {
        if (st == HM_ERR_MISMATCH && strstr(hm_last_error(), "embedding.weight"))
            hm_fail(st, "train: --checkpoint %s does not match tokenizer %s (%d tokens): %s",
                    o->checkpoint, o->tokenizer, s->cfg.vocab_size, hm_last_error());
        return st;
    }
    if ((st = hm_model_set_dtype(s->model, o->dtype)) != HM_OK)
        return st;
    if (s->rank == 0 && o->dtype == HM_DTYPE_BF16) {
        /* On the CPU, say which units run the bf16 matmuls: without them bf16 only widens. */
        char where[96] = "";
        if (strcmp(hm_backend_name(s->be), "cpu") == 0) {
            enum hm_cpu_bf16 units = hm_cpu_bf16_support();
            snprintf(where, sizeof where, units == HM_CPU_BF16_NONE ?
                     " (no bf16 matmul units here: a slow reference mode)" : " (matmuls on %s)",
                     hm_cpu_bf16_name(units));
        }
        hm_log(HM_LOG_INFO, "Precision: bf16 weights and activations, f32 master weights, optimizer "
               "and loss%s", where);
    }
    return s->rank == 0 ? hm_config_save(&s->cfg, out_path(s, "config.json")) : HM_OK;
}

/* Rank 0: the model, the global batch, and the memory the run will hold. */
static void log_plan(struct session *s)
{
    int W = hm_comm_size(s->comm);
    const struct hm_train_opts *t = &s->to;
    uint64_t P = hm_model_param_count(s->model);
    long G = (long)t->batch_size * t->grad_accum * W;
    hm_log(HM_LOG_INFO, "Model: %s, %llu parameters (%d layers, hidden %d, vocab %d)", s->cfg.name,
           (unsigned long long)P, s->cfg.num_layers, s->cfg.hidden_size, s->cfg.vocab_size);
    hm_log(HM_LOG_INFO, "Global batch: %ld windows (batch %d x grad-accum %d x %d process%s) of %d "
           "tokens", G, t->batch_size, t->grad_accum, W, W > 1 ? "es" : "", t->seq_len);
    size_t planned, off, shard;
    bool sharded = t->zero1 && W > 1;
    hm_comm_shard(s->comm, (size_t)P, 0, &off, &shard); /* rank 0's shard is the largest */
    double all = 8.0 * (double)P / 1048576.0;
    double moments = 8.0 * (double)(sharded ? shard : P) / 1048576.0;
    if (hm_model_plan_train_bytes(s->model, s->be, t->batch_size, t->seq_len, &planned) == HM_OK)
        hm_log(HM_LOG_INFO, "Memory: %.1f MiB of parameters, gradients and AdamW moments, %.1f MiB "
               "planned for activations and their gradients", all + moments,
               (double)planned / 1048576.0);
    if (sharded)
        hm_log(HM_LOG_INFO, "Optimizer state (ZeRO-1): %.1f MiB of AdamW moments per process (1/%d of "
               "%.1f MiB)", moments, W, all);
    else
        hm_log(HM_LOG_INFO, "Optimizer state: %.1f MiB of AdamW moments per process", moments);
}

/* ---- the run --------------------------------------------------------------------------------- */

static enum hm_status run_ranks(struct session *s)
{
    enum hm_status st;
    if ((st = prepare_output(s)) != HM_OK || (st = share_tokenizer(s)) != HM_OK ||
        (st = hm_session_chat_format(s->o, hm_comm_size(s->comm), &s->format)) != HM_OK)
        return st;
    if (s->format == HM_DATA_CHAT &&
        (st = hm_session_chat_tokens(&s->tok, s->o->tokenizer, s->to.resume ? NULL : s->o->checkpoint,
                                     s->to.output_dir, &s->n_chat_added)) != HM_OK)
        return st;
    if (s->rank != 0 && (st = hm_mkdir_p(s->to.output_dir)) != HM_OK)
        return st;
    if ((st = resolve_config(s)) != HM_OK || (st = open_data(s)) != HM_OK ||
        (st = build_model(s)) != HM_OK)
        return st;
    if (s->rank == 0)
        log_plan(s);
    if (s->o->handle_signals)
        hm_interrupt_install();
    st = hm_train(s->model, &s->train, s->have_val ? &s->val : NULL, &s->to, s->comm,
                  s->o->progress, s->o->progress_user, &s->res->summary);
    s->res->trained = true;
    if (hm_file_exists(out_path(s, "state.safetensors")))
        s->created_output = false; /* the folder holds a resumable run now: keep it */
    return st;
}

/* Free everything; after a failure with other ranks, report and abort the communicator instead
 * of a clean shutdown that would wait for them. */
static void finish(struct session *s, enum hm_status st)
{
    hm_model_free(s->model);
    hm_backend_free(s->be);
    if (st != HM_OK && st != HM_ERR_INTERRUPTED && s->created_output && s->rank == 0)
        remove_created_output(s);
    hm_run_lock_release(s->lock);
    s->lock = NULL;
    if (s->have_val)
        hm_token_cache_close(&s->val);
    hm_token_cache_close(&s->train);
    hm_token_cache_close(&s->val_flags);
    hm_token_cache_close(&s->train_flags);
    hm_tokenizer_free(s->tok);
    if (st != HM_OK && st != HM_ERR_INTERRUPTED && s->comm && hm_comm_size(s->comm) > 1) {
        s->res->aborted = true;
        if (s->o->on_abort)
            s->o->on_abort(s->res, st, s->o->abort_user);
        hm_comm_abort(s->comm, st == HM_ERR_USAGE ? 2 : 1); /* MPI: does not return */
        return;
    }
    hm_comm_free(s->comm);
}

enum hm_status hm_session_run(const struct hm_session_opts *o, struct hm_session_result *res)
{
    memset(res, 0, sizeof *res);
    struct session s = {.o = o, .res = res, .to = o->train};
    enum hm_status st = pick_role(o, res, &s.comm);
    if (st == HM_OK && res->role == HM_SESSION_LAUNCHER)
        return launch_workers(o);
    if (st != HM_OK) {
        hm_comm_free(s.comm);
        return st;
    }
    s.rank = res->rank = hm_comm_rank(s.comm);
    res->world = hm_comm_size(s.comm);
    res->comm_name = hm_comm_name(s.comm);
    st = run_ranks(&s);
    finish(&s, st);
    return st;
}
