/*
 * cmd-serve.c - `hermes-llm serve`: an OpenAI-compatible HTTP server (src/serve/) over one model
 * and the continuous-batching engine (hermes/engine.h). The model loads as for generate and chat
 * (gen-setup.h); sampling comes with each request, so there are no sampling flags here.
 */
#include "commands.h"
#include "gen-setup.h"
#include "hermes/engine.h"
#include "serve/serve.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct serve_args {
    struct cli_gen_args g;
    const char *host, *api_key, *model_name;
    long port, max_batch, ctx, max_queue, drain_s, max_body_kib;
    char tok_path[4096], model_id[HM_API_MAX_MODEL_LEN];
};

static enum hm_status engine_submit(void *e, const struct hm_engine_request *rq, uint64_t *id)
{
    return hm_engine_submit(e, rq, id);
}

static void engine_cancel(void *e, uint64_t id)
{
    hm_engine_cancel(e, id);
}

static enum hm_status engine_drain(void *e, double timeout_s)
{
    return hm_engine_drain(e, timeout_s);
}

/* -t defaults to tokenizer.json next to the checkpoint; the model's name to its folder's name. */
static enum hm_status fill_defaults(struct serve_args *a)
{
    char *copy = strdup(a->g.checkpoint), *copy2 = strdup(a->g.checkpoint);
    if (!copy || !copy2) {
        free(copy), free(copy2);
        return hm_fail(HM_ERR_NOMEM, "out of memory");
    }
    const char *dir = dirname(copy);
    if (!a->g.tokenizer) {
        snprintf(a->tok_path, sizeof a->tok_path, "%s/tokenizer.json", dir);
        a->g.tokenizer = a->tok_path;
    }
    snprintf(a->model_id, sizeof a->model_id, "%s",
             a->model_name ? a->model_name : basename(dirname(copy2)));
    free(copy), free(copy2);
    if (!a->api_key && getenv("HERMES_API_KEY"))
        a->api_key = getenv("HERMES_API_KEY");
    if (a->api_key && !*a->api_key)
        return hm_fail(HM_ERR_USAGE, "serve: --api-key (or HERMES_API_KEY) is empty");
    return HM_OK;
}

static enum hm_status parse_args(int argc, char **argv, struct serve_args *a, bool *help)
{
    struct hm_engine_opts eo = hm_engine_opts_default();
    *a = (struct serve_args){.g = cli_gen_args_default(),
                             .host = "127.0.0.1",
                             .port = 8080,
                             .max_batch = eo.max_batch,
                             .max_queue = eo.max_queue,
                             .drain_s = 30,
                             .max_body_kib = 1024};
    struct cli_gen_args *g = &a->g;
    g->device = "cpu"; /* the engine's batched kernels are the CPU backend's (docs/architecture.md) */
    const struct cli_opt opts[] = {
        {"checkpoint", 'c', CLI_STRING, &g->checkpoint, "FILE", "Model weights (.safetensors)",
         NULL},
        {"config", 0, CLI_STRING, &g->config, "FILE", "Model config.json",
         "config.json next to the checkpoint"},
        {"tokenizer", 't', CLI_STRING, &g->tokenizer, "FILE", "tokenizer.json",
         "tokenizer.json next to the checkpoint"},
        {"host", 0, CLI_STRING, &a->host, "ADDR", "Address to listen on (0.0.0.0: every interface)",
         "127.0.0.1"},
        {"port", 0, CLI_INT, &a->port, "N", "TCP port (0: any free port, printed)", "8080", 0,
         65535},
        {"max-batch", 0, CLI_INT, &a->max_batch, "N",
         "Sequences generating at once (KV-cache slots)", "16", 1, 4096},
        {"ctx", 0, CLI_INT, &a->ctx, "N", "Positions per sequence, prompt included",
         "the model's max_seq_len", 1, 1 << 24},
        {"max-queue", 0, CLI_INT, &a->max_queue, "N", "Requests waiting for a slot before 429",
         "64", 0, 1 << 20},
        {"api-key", 0, CLI_STRING, &a->api_key, "KEY", "Require 'Authorization: Bearer KEY'",
         "$HERMES_API_KEY, else none"},
        {"model-name", 0, CLI_STRING, &a->model_name, "NAME", "The model's name in the API",
         "the checkpoint's folder name"},
        {"drain-timeout", 0, CLI_INT, &a->drain_s, "S",
         "On SIGTERM, seconds in-flight requests may take", "30", 0, 86400},
        {"max-body", 0, CLI_INT, &a->max_body_kib, "KIB", "Largest request body (413 above)",
         "1024", 1, 1 << 20},
        {"device", 0, CLI_STRING, &g->device, "DEV", "cpu (serving runs on the CPU backend)", "cpu"},
        {"dtype", 0, CLI_STRING, &g->dtype, "TYPE", "Weights: auto or f32 (the batch-invariant kernel)",
         "auto = f32"},
        {"threads", 0, CLI_INT, &g->threads, "N", "CPU threads", "OMP_NUM_THREADS or all cores", 1,
         4096},
        {0},
    };
    enum hm_status st = cli_parse_usage(
        "serve", "-c CHECKPOINT [-t tokenizer.json] [--host ADDR] [--port N] [options]",
        "Serve the model over an OpenAI-compatible HTTP API: POST /v1/chat/completions (chat "
        "models),\n"
        "POST /v1/completions, GET /v1/models, GET /health. Requests run together, one batched "
        "step\n"
        "at a time; SIGTERM or Ctrl-C stops accepting, finishes what is in flight and exits.",
        opts, argc, argv, help);
    if (st != HM_OK || *help)
        return st;
    if (!g->checkpoint)
        return hm_fail(HM_ERR_USAGE, "serve: --checkpoint is required");
    /* The row-invariant batched matmul reads f32 weights, and the batched serving ops have CPU
     * kernels only: refuse here, before loading, rather than fail at the first step. */
    if (strcmp(g->device, "cpu") != 0)
        return hm_fail(HM_ERR_USAGE, "serve: --device %s: serving runs on the CPU backend only",
                       g->device);
    if (strcmp(g->dtype, "auto") != 0 && strcmp(g->dtype, "f32") != 0)
        return hm_fail(HM_ERR_USAGE, "serve: --dtype %s: serving runs f32 weights (auto or f32); "
                       "bf16 and q8_0 are for generate and chat", g->dtype);
    g->seed_given = true; /* requests bring their seeds: no start-up seed line */
    return fill_defaults(a);
}

enum hm_status cmd_serve(int argc, char **argv)
{
    struct serve_args a;
    bool help = false;
    enum hm_status st = parse_args(argc, argv, &a, &help);
    if (st != HM_OK || help)
        return st;
    struct cli_gen g;
    struct hm_engine *engine = NULL;
    if ((st = cli_gen_load("serve", &a.g, &g)) != HM_OK)
        return st;
    struct hm_engine_opts eo = hm_engine_opts_default();
    eo.max_batch = (int)a.max_batch;
    eo.max_queue = (int)a.max_queue;
    eo.ctx_len = a.ctx ? (int)a.ctx : g.cfg.max_seq_len;
    if (eo.ctx_len > g.cfg.max_seq_len) {
        st = hm_fail(HM_ERR_USAGE, "serve: --ctx %d is more than the model's max_seq_len %d (%s)",
                     eo.ctx_len, g.cfg.max_seq_len, g.cfg_path);
        goto out;
    }
    if ((st = cli_gen_load_model("serve", &a.g, &g)) != HM_OK ||
        (st = hm_engine_new(g.model, &eo, &engine)) != HM_OK)
        goto out;
    struct hm_serve_opts so = hm_serve_opts_default();
    so.host = a.host;
    so.port = (int)a.port;
    so.api_key = a.api_key;
    so.model_id = a.model_id;
    so.max_body = (size_t)a.max_body_kib * 1024;
    so.ctx_len = eo.ctx_len;
    so.drain_timeout_s = (double)a.drain_s;
    so.tok = g.tok;
    so.engine = (struct hm_serve_engine){engine, engine_submit, engine_cancel, engine_drain};
    st = hm_serve_run(&so);
out:
    if (engine)
        hm_engine_free(engine);
    cli_gen_free(&g);
    return st;
}
