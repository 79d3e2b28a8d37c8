/*
 * gen-setup.h - what `generate` and `chat` share: the model, tokenizer and sampling options, and
 * loading all of it (config next to the checkpoint, vocabulary check, weights, dtype, seed).
 */
#ifndef HERMES_CLI_GEN_SETUP_H
#define HERMES_CLI_GEN_SETUP_H

#include "hermes/gen.h"
#include "hermes/tokenizer.h"
#include "opts.h"

struct cli_gen_args {
    const char *checkpoint, *config, *tokenizer, *device, *dtype;
    long max_tokens, top_k, seed, threads;
    double temperature, top_p, rep;
    bool seed_given;
};

/* Device and dtype auto, the sampler's and the generator's library defaults. */
struct cli_gen_args cli_gen_args_default(void);

/* The option rows, for the middle of a command's table; max_help describes --max-tokens' default. */
#define CLI_GEN_OPTS(a, max_help)                                                                                    \
    {"checkpoint", 'c', CLI_STRING, &(a)->checkpoint, "FILE", "Model weights (.safetensors)", NULL},                 \
    {"config", 0, CLI_STRING, &(a)->config, "FILE", "Model config.json", "config.json next to the checkpoint"},     \
    {"tokenizer", 't', CLI_STRING, &(a)->tokenizer, "FILE", "tokenizer.json", NULL},                                \
    {"max-tokens", 'm', CLI_INT, &(a)->max_tokens, "N", "Most new tokens to generate", max_help, 1, 1 << 24},       \
    {"temperature", 0, CLI_FLOAT, &(a)->temperature, "T", "Sampling temperature (0 = greedy)", "0.8", 0, 100},      \
    {"top-k", 0, CLI_INT, &(a)->top_k, "K", "Sample from the K most likely tokens (0 = off)", "off", 0, 1 << 24},   \
    {"top-p", 0, CLI_FLOAT, &(a)->top_p, "P", "Sample from the smallest set reaching probability P", "1.0 (off)",   \
     1e-6, 1},                                                                                                       \
    {"repetition-penalty", 0, CLI_FLOAT, &(a)->rep, "R", "Penalise tokens already present (1 = off)", "1.0", 1e-3,  \
     100},                                                                                                           \
    {"seed", 0, CLI_INT, &(a)->seed, "N", "Sampling seed", "random, printed", 0, 1L << 62, &(a)->seed_given},        \
    {"device", 0, CLI_STRING, &(a)->device, "DEV", "auto, cpu, cuda or cuda:N (auto: the GPU when one is present)", \
     "auto"},                                                                                                        \
    {"dtype", 0, CLI_STRING, &(a)->dtype, "TYPE", CLI_GEN_DTYPE_HELP, CLI_DTYPE_DEFAULT},                                \
    {"threads", 0, CLI_INT, &(a)->threads, "N", "CPU threads", "OMP_NUM_THREADS or all cores", 1, 4096}

struct cli_gen {
    struct hm_model_config cfg;
    char cfg_path[4096];
    struct hm_tokenizer *tok;
    struct hm_backend *be;
    struct hm_model *model;
    struct hm_sampler *sampler;
};

/* Check the flags, load the config and the tokenizer (nothing printed, so a bad input is the only
 * line a failing run prints); then cli_gen_load_model loads the weights, prints the seed when none
 * was given and makes the sampler. On error the partial state is freed. */
enum hm_status cli_gen_load(const char *cmd, struct cli_gen_args *a, struct cli_gen *out);
enum hm_status cli_gen_load_model(const char *cmd, struct cli_gen_args *a, struct cli_gen *g);
void cli_gen_free(struct cli_gen *g);

/* Decode one generated token and write its text to stdout, flushed: false (with *st set, a write
 * failure naming `cmd`) when generation must stop. The token callbacks of generate and chat. */
bool cli_stream_token(const char *cmd, struct hm_decode_stream *ds, hm_token id, enum hm_status *st);

#endif
