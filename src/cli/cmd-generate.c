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

static bool emit(int32_t id, void *user)
{
    struct stream_ctx *c = user;
    const char *text;
    size_t len;
    if ((c->st = hm_decode_stream_push(c->ds, (uint32_t)id, &text, &len)) != HM_OK)
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

enum hm_status cmd_generate(int argc, char **argv)
{
    const char *checkpoint = NULL, *config = NULL, *tokenizer = NULL, *prompt = NULL, *device = "auto",
               *dtype_name = "auto";
    long max_tokens = 100, top_k = 0, seed = 0, threads = 0;
    double temperature = 0.8, top_p = 1.0, rep = 1.0;
    bool no_eos = false, help = false, seed_given = false;
    const struct cli_opt opts[] = {
        {"checkpoint", 'c', CLI_STRING, &checkpoint, "FILE", "Model weights (.safetensors)", NULL},
        {"config", 0, CLI_STRING, &config, "FILE", "Model config.json", "config.json next to the checkpoint"},
        {"tokenizer", 't', CLI_STRING, &tokenizer, "FILE", "tokenizer.json", NULL},
        {"prompt", 'p', CLI_STRING, &prompt, "TEXT", "Prompt text, or - to read it from standard input", NULL},
        {"max-tokens", 'm', CLI_INT, &max_tokens, "N", "Most new tokens to generate", "100", 1, 1 << 24},
        {"temperature", 0, CLI_FLOAT, &temperature, "T", "Sampling temperature (0 = greedy)", "0.8", 0, 100},
        {"top-k", 0, CLI_INT, &top_k, "K", "Sample from the K most likely tokens (0 = off)", "off", 0, 1 << 24},
        {"top-p", 0, CLI_FLOAT, &top_p, "P", "Sample from the smallest set reaching probability P", "1.0 (off)", 1e-6, 1},
        {"repetition-penalty", 0, CLI_FLOAT, &rep, "R", "Penalise tokens already present (1 = off)", "1.0", 1e-3, 100},
        {"seed", 0, CLI_INT, &seed, "N", "Sampling seed", "random, printed", 0, 1L << 62, &seed_given},
        {"no-eos", 0, CLI_FLAG, &no_eos, NULL, "Do not stop at <eos>", NULL},
        {"device", 0, CLI_STRING, &device, "DEV", "auto, cpu, cuda or cuda:N (auto: the GPU when one is present)", "auto"},
        {"dtype", 0, CLI_STRING, &dtype_name, "TYPE", CLI_DTYPE_HELP, CLI_DTYPE_DEFAULT},
        {"threads", 0, CLI_INT, &threads, "N", "CPU threads", "OMP_NUM_THREADS or all cores", 1, 4096},
        {0},
    };
    enum hm_status st = cli_parse("generate", opts, argc, argv, &help);
    if (st != HM_OK)
        return st;
    if (help) {
        cli_usage(stdout, "generate", "-c CHECKPOINT -t tokenizer.json -p PROMPT [options]",
                  "Generate text from a trained checkpoint, streaming it to standard output.", opts);
        return HM_OK;
    }
    if (!checkpoint || !tokenizer || !prompt)
        return hm_fail(HM_ERR_USAGE, "generate: --checkpoint, --tokenizer and --prompt are required");
    char device_name[32];
    if ((st = cli_resolve_device("generate", device, device_name, sizeof device_name)) != HM_OK)
        return st;
    enum hm_dtype dtype;
    if ((st = cli_resolve_dtype("generate", dtype_name, device_name, &dtype)) != HM_OK)
        return st;
    if (threads && (st = hm_check_threads("generate: --threads", threads)) != HM_OK)
        return st;
    if (threads)
        hm_set_threads((int)threads);
    char cfg_path[4096];
    if (config) {
        snprintf(cfg_path, sizeof cfg_path, "%s", config);
    } else {
        char *copy = strdup(checkpoint);
        snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dirname(copy));
        free(copy);
    }
    struct hm_model_config cfg;
    struct hm_tokenizer *tok = NULL;
    struct hm_backend *be = NULL;
    struct hm_model *model = NULL;
    struct hm_sampler *sampler = NULL;
    struct hm_decode_stream *ds = NULL;
    char *ptext = NULL;
    size_t plen = 0;
    uint32_t *ids = NULL;
    int32_t *prompt_ids = NULL;
    if ((st = hm_config_load(cfg_path, &cfg)) != HM_OK || (st = hm_tokenizer_load(tokenizer, &tok)) != HM_OK)
        goto out;
    if (hm_tokenizer_vocab_size(tok) != (uint32_t)cfg.vocab_size) {
        st = hm_fail(HM_ERR_MISMATCH, "generate: tokenizer %s has %u tokens but %s says vocab_size %d",
                     tokenizer, hm_tokenizer_vocab_size(tok), cfg_path, cfg.vocab_size);
        goto out;
    }
    if (strcmp(prompt, "-") == 0) {
        if ((st = read_stdin(&ptext, &plen)) != HM_OK)
            goto out;
    } else {
        ptext = strdup(prompt);
        plen = strlen(prompt);
    }
    size_t n = 0;
    if ((st = hm_tokenizer_encode(tok, ptext, plen, NULL, 0, &n)) != HM_OK)
        goto out;
    if (n == 0) {
        st = hm_fail(HM_ERR_USAGE, "generate: the prompt is empty");
        goto out;
    }
    if (n > (size_t)cfg.max_seq_len) {
        st = hm_fail(HM_ERR_USAGE, "generate: the prompt is %zu tokens, more than the model's max_seq_len %d",
                     n, cfg.max_seq_len);
        goto out;
    }
    ids = malloc(n * sizeof *ids);
    prompt_ids = malloc(n * sizeof *prompt_ids);
    if (!ids || !prompt_ids) {
        st = hm_fail(HM_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((st = hm_tokenizer_encode(tok, ptext, plen, ids, n, &n)) != HM_OK)
        goto out;
    for (size_t i = 0; i < n; i++)
        prompt_ids[i] = (int32_t)ids[i];
    if ((st = hm_backend_new_from_string(device_name, &be)) != HM_OK ||
        (!strcmp(hm_backend_name(be), "cpu") &&
         (st = hm_model_memory_check(&cfg, 1, cfg.max_seq_len, false)) != HM_OK) ||
        (st = hm_model_new_infer(&cfg, be, &model)) != HM_OK)
        goto out;
    if ((st = hm_model_load_weights(model, checkpoint)) != HM_OK) {
        if (st == HM_ERR_MISMATCH) { /* hm_fail formats into the buffer hm_last_error returns */
            char why[512];
            snprintf(why, sizeof why, "%s", hm_last_error());
            hm_fail(st, "generate: checkpoint does not match %s: %s", cfg_path, why);
        }
        goto out;
    }
    if ((st = hm_model_set_dtype(model, dtype)) != HM_OK)
        goto out;
    if (!seed_given) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (long)(((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid()) &
                      ((1ull << 62) - 1));
        fprintf(stderr, "seed: %ld\n", seed);
    }
    struct hm_sampler_opts so = {(float)temperature, (int)top_k, (float)top_p, (float)rep, (uint64_t)seed};
    if ((st = hm_sampler_new(cfg.vocab_size, &so, &sampler)) != HM_OK ||
        (st = hm_decode_stream_new(tok, true, &ds)) != HM_OK)
        goto out;
    int64_t eos = hm_tokenizer_token_to_id(tok, "<eos>");
    if (eos < 0)
        eos = hm_tokenizer_token_to_id(tok, "<|endoftext|>");
    struct hm_generate_opts go = {(int)max_tokens, no_eos ? -1 : (int32_t)eos};
    struct hm_generate_stats gs;
    struct stream_ctx sc = {ds, HM_OK};
    fwrite(ptext, 1, plen, stdout);
    fflush(stdout);
    st = hm_generate(model, prompt_ids, (int)n, &go, sampler, emit, &sc, &gs);
    if (st == HM_OK && sc.st != HM_OK)
        st = sc.st;
    const char *rest;
    size_t rlen;
    hm_decode_stream_flush(ds, &rest, &rlen);
    fwrite(rest, 1, rlen, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    if (st != HM_OK)
        goto out;
    if (gs.stop == HM_STOP_CONTEXT_FULL)
        fprintf(stderr, "note: stopped after %d of %ld new tokens: the model's context limit is "
                "max_seq_len %d tokens\n", gs.new_tokens, max_tokens, cfg.max_seq_len);
    fprintf(stderr, "prompt tokens: %d, prefill %.1f tok/s, time to first token %.1f ms, "
            "decode %.1f tok/s (%d new tokens)%s\n", gs.prompt_tokens,
            gs.prefill_s > 0 ? gs.prompt_tokens / gs.prefill_s : 0.0, gs.prefill_s * 1000.0,
            gs.decode_s > 0 ? gs.decode_steps / gs.decode_s : 0.0, gs.new_tokens,
            gs.stop == HM_STOP_EOS ? ", stopped at <eos>" : "");
out:
    hm_decode_stream_free(ds);
    hm_sampler_free(sampler);
    hm_model_free(model);
    hm_backend_free(be);
    hm_tokenizer_free(tok);
    free(ptext);
    free(ids);
    free(prompt_ids);
    return st;
}
