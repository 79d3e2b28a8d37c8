/*
 * cmd-generate.c - `hermes-llm generate`: load a checkpoint, its config and a tokenizer, then
 * stream the prompt and the generated text to stdout at UTF-8 character boundaries. Everything
 * else (the random seed when none was given, the context-limit note, statistics) goes to stderr,
 * after every input has been checked, so an error is the only line a failing run prints.
 */
#include "commands.h"
#include "hermes/gen.h"
#include "hermes/tokenizer.h"
#include "opts.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct stream_ctx {
    struct hm_decode_stream *ds;
    enum hm_status st;
};

static bool emit(hm_token id, void *user)
{
    struct stream_ctx *c = user;
    const char *text;
    size_t len;
    if ((c->st = hm_decode_stream_push(c->ds, id, &text, &len)) != HM_OK)
        return false;
    if (len && (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0)) {
        c->st = hm_fail(HM_ERR_IO, "generate: standard output: write failed: %s", strerror(errno));
        return false;
    }
    return true;
}

static enum hm_status read_stdin(char **out, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        return hm_fail(HM_ERR_NOMEM, "out of memory reading the prompt");
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, stdin)) > 0) {
        n += got;
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                return hm_fail(HM_ERR_NOMEM, "out of memory reading the prompt");
            }
            buf = nb;
        }
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return HM_OK;
}

struct gen_args {
    const char *checkpoint, *config, *tokenizer, *prompt, *device, *dtype_name;
    long max_tokens, top_k, seed, threads;
    double temperature, top_p, rep;
    bool no_eos, help, seed_given;
    char device_name[32];
    enum hm_dtype dtype;
    char cfg_path[4096];
};

static enum hm_status parse_args(int argc, char **argv, struct gen_args *a)
{
    struct hm_sampler_opts sd = hm_sampler_opts_default();
    *a = (struct gen_args){.device = "auto", .dtype_name = "auto",
                           .max_tokens = hm_generate_opts_default().max_new_tokens, .top_k = sd.top_k,
                           .temperature = sd.temperature, .top_p = sd.top_p, .rep = sd.repetition_penalty};
    const struct cli_opt opts[] = {
        {"checkpoint", 'c', CLI_STRING, &a->checkpoint, "FILE", "Model weights (.safetensors)", NULL},
        {"config", 0, CLI_STRING, &a->config, "FILE", "Model config.json", "config.json next to the checkpoint"},
        {"tokenizer", 't', CLI_STRING, &a->tokenizer, "FILE", "tokenizer.json", NULL},
        {"prompt", 'p', CLI_STRING, &a->prompt, "TEXT", "Prompt text, or - to read it from standard input", NULL},
        {"max-tokens", 'm', CLI_INT, &a->max_tokens, "N", "Most new tokens to generate", "100", 1, 1 << 24},
        {"temperature", 0, CLI_FLOAT, &a->temperature, "T", "Sampling temperature (0 = greedy)", "0.8", 0, 100},
        {"top-k", 0, CLI_INT, &a->top_k, "K", "Sample from the K most likely tokens (0 = off)", "off", 0, 1 << 24},
        {"top-p", 0, CLI_FLOAT, &a->top_p, "P", "Sample from the smallest set reaching probability P", "1.0 (off)", 1e-6, 1},
        {"repetition-penalty", 0, CLI_FLOAT, &a->rep, "R", "Penalise tokens already present (1 = off)", "1.0", 1e-3, 100},
        {"seed", 0, CLI_INT, &a->seed, "N", "Sampling seed", "random, printed", 0, 1L << 62, &a->seed_given},
        {"no-eos", 0, CLI_FLAG, &a->no_eos, NULL, "Do not stop at <eos>", NULL},
        {"device", 0, CLI_STRING, &a->device, "DEV", "auto, cpu, cuda or cuda:N (auto: the GPU when one is present)", "auto"},
        {"dtype", 0, CLI_STRING, &a->dtype_name, "TYPE", CLI_DTYPE_HELP, CLI_DTYPE_DEFAULT},
        {"threads", 0, CLI_INT, &a->threads, "N", "CPU threads", "OMP_NUM_THREADS or all cores", 1, 4096},
        {0},
    };
    enum hm_status st = cli_parse("generate", opts, argc, argv, &a->help);
    if (st != HM_OK)
        return st;
    if (a->help) {
        cli_usage(stdout, "generate", "-c CHECKPOINT -t tokenizer.json -p PROMPT [options]",
                  "Generate text from a trained checkpoint, streaming it to standard output.", opts);
        return HM_OK;
    }
    if (!a->checkpoint || !a->tokenizer || !a->prompt)
        return hm_fail(HM_ERR_USAGE, "generate: --checkpoint, --tokenizer and --prompt are required");
    if ((st = cli_resolve_device("generate", a->device, a->device_name, sizeof a->device_name)) != HM_OK ||
        (st = cli_resolve_dtype("generate", a->dtype_name, a->device_name, &a->dtype)) != HM_OK ||
        (a->threads && (st = hm_check_threads("generate: --threads", a->threads)) != HM_OK))
        return st;
    if (a->config) {
        snprintf(a->cfg_path, sizeof a->cfg_path, "%s", a->config);
    } else {
        char *copy = strdup(a->checkpoint);
        snprintf(a->cfg_path, sizeof a->cfg_path, "%s/config.json", copy ? dirname(copy) : ".");
        free(copy);
    }
    return HM_OK;
}

/* The prompt (text or standard input) and its ids, which must fit the model's context. */
static enum hm_status encode_prompt(const struct gen_args *a, struct hm_tokenizer *tok, int max_seq_len,
                                    char **ptext, size_t *plen, hm_token **ids, size_t *n)
{
    enum hm_status st;
    if (strcmp(a->prompt, "-") == 0) {
        if ((st = read_stdin(ptext, plen)) != HM_OK)
            return st;
    } else if (!(*ptext = strdup(a->prompt))) {
        return hm_fail(HM_ERR_NOMEM, "out of memory");
    } else {
        *plen = strlen(a->prompt);
    }
    if ((st = hm_tokenizer_encode(tok, *ptext, *plen, NULL, 0, n)) != HM_OK)
        return st;
    if (*n == 0)
        return hm_fail(HM_ERR_USAGE, "generate: the prompt is empty");
    if (*n > (size_t)max_seq_len)
        return hm_fail(HM_ERR_USAGE, "generate: the prompt is %zu tokens, more than the model's max_seq_len %d",
                       *n, max_seq_len);
    if (!(*ids = malloc(*n * sizeof **ids)))
        return hm_fail(HM_ERR_NOMEM, "out of memory");
    return hm_tokenizer_encode(tok, *ptext, *plen, *ids, *n, n);
}

static enum hm_status load_model(const struct gen_args *a, const struct hm_model_config *cfg,
                                 struct hm_backend **be, struct hm_model **model)
{
    enum hm_status st;
    if ((st = hm_backend_new_from_string(a->device_name, be)) != HM_OK ||
        (!strcmp(hm_backend_name(*be), "cpu") &&
         (st = hm_model_memory_check(cfg, 1, cfg->max_seq_len, false)) != HM_OK) ||
        (st = hm_model_new_infer(cfg, *be, model)) != HM_OK)
        return st;
    if ((st = hm_model_load_weights(*model, a->checkpoint)) != HM_OK) {
        if (st == HM_ERR_MISMATCH) { /* hm_fail formats into the buffer hm_last_error returns */
            char why[512];
            snprintf(why, sizeof why, "%s", hm_last_error());
            hm_fail(st, "generate: checkpoint does not match %s: %s", a->cfg_path, why);
        }
        return st;
    }
    return hm_model_set_dtype(*model, a->dtype);
}

static void print_stats(const struct gen_args *a, const struct hm_generate_stats *gs, int max_seq_len)
{
    if (gs->stop == HM_STOP_CONTEXT_FULL)
        fprintf(stderr, "note: stopped after %d of %ld new tokens: the model's context limit is "
                "max_seq_len %d tokens\n", gs->new_tokens, a->max_tokens, max_seq_len);
    fprintf(stderr, "prompt tokens: %d, prefill %.1f tok/s, time to first token %.1f ms, "
            "decode %.1f tok/s (%d new tokens)%s\n", gs->prompt_tokens,
            gs->prefill_s > 0 ? gs->prompt_tokens / gs->prefill_s : 0.0, gs->prefill_s * 1000.0,
            gs->decode_s > 0 ? gs->decode_steps / gs->decode_s : 0.0, gs->new_tokens,
            gs->stop == HM_STOP_EOS ? ", stopped at <eos>" : "");
}

/* Stream the prompt, then the new text, to stdout. */
static enum hm_status run_generation(struct gen_args *a, struct hm_model *model, struct hm_tokenizer *tok,
                                     const char *ptext, size_t plen, const hm_token *ids, size_t n)
{
    if (!a->seed_given) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        a->seed = (long)(((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid()) &
                         ((1ull << 62) - 1));
        fprintf(stderr, "seed: %ld\n", a->seed);
    }
    struct hm_sampler_opts so = {(float)a->temperature, (int)a->top_k, (float)a->top_p, (float)a->rep,
                                 (uint64_t)a->seed};
    struct hm_sampler *sampler = NULL;
    struct hm_decode_stream *ds = NULL;
    enum hm_status st;
    if ((st = hm_sampler_new(hm_model_config(model)->vocab_size, &so, &sampler)) != HM_OK ||
        (st = hm_decode_stream_new(tok, true, &ds)) != HM_OK)
        goto out;
    struct hm_generate_opts go = hm_generate_opts_default();
    go.max_new_tokens = (int)a->max_tokens;
    go.eos_id = a->no_eos ? -1 : hm_tokenizer_eos_id(tok);
    struct hm_generate_stats gs;
    struct stream_ctx sc = {ds, HM_OK};
    fwrite(ptext, 1, plen, stdout);
    fflush(stdout);
    st = hm_generate(model, ids, (int)n, &go, sampler, emit, &sc, &gs);
    if (st == HM_OK && sc.st != HM_OK)
        st = sc.st;
    const char *rest;
    size_t rlen;
    hm_decode_stream_flush(ds, &rest, &rlen);
    fwrite(rest, 1, rlen, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    if (st == HM_OK)
        print_stats(a, &gs, hm_model_config(model)->max_seq_len);
out:
    hm_decode_stream_free(ds);
    hm_sampler_free(sampler);
    return st;
}

enum hm_status cmd_generate(int argc, char **argv)
{
    struct gen_args a;
    enum hm_status st = parse_args(argc, argv, &a);
    if (st != HM_OK || a.help)
        return st;
    if (a.threads)
        hm_set_threads((int)a.threads);
    struct hm_model_config cfg;
    struct hm_tokenizer *tok = NULL;
    struct hm_backend *be = NULL;
    struct hm_model *model = NULL;
    char *ptext = NULL;
    size_t plen = 0, n = 0;
    hm_token *ids = NULL;
    if ((st = hm_config_load(a.cfg_path, &cfg)) != HM_OK || (st = hm_tokenizer_load(a.tokenizer, &tok)) != HM_OK)
        goto out;
    if (hm_tokenizer_vocab_size(tok) != (uint32_t)cfg.vocab_size) {
        st = hm_fail(HM_ERR_MISMATCH, "generate: tokenizer %s has %u tokens but %s says vocab_size %d",
                     a.tokenizer, hm_tokenizer_vocab_size(tok), a.cfg_path, cfg.vocab_size);
        goto out;
    }
    if ((st = encode_prompt(&a, tok, cfg.max_seq_len, &ptext, &plen, &ids, &n)) != HM_OK ||
        (st = load_model(&a, &cfg, &be, &model)) != HM_OK)
        goto out;
    st = run_generation(&a, model, tok, ptext, plen, ids, n);
out:
    hm_model_free(model);
    hm_backend_free(be);
    hm_tokenizer_free(tok);
    free(ptext);
    free(ids);
    return st;
}
