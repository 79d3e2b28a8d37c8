/*
 * opts.h - table-driven option parsing for the CLI. One table per subcommand gives each option's
 * long and short name, type, destination, range and help; --help is generated from the same table,
 * so the usage text and the parser cannot drift apart.
 */
#ifndef HERMES_CLI_OPTS_H
#define HERMES_CLI_OPTS_H

#include "hermes/hermes.h"
#include "hermes/tensor.h"

#include <stdio.h>

enum cli_opt_type {
    CLI_FLAG,   /* bool*: present => true */
    CLI_INT,    /* long*: strtol, whole string consumed, within [min, max] */
    CLI_FLOAT,  /* double*: strtod, whole string consumed, within [min, max] */
    CLI_STRING, /* const char**: borrowed from argv */
    CLI_LIST,   /* struct cli_list*: one or more values, up to the next option */
};

struct cli_list {
    const char **items; /* borrowed from argv; the array is the parser's (static, never freed) */
    int n;
};

struct cli_opt {
    const char *name;     /* long name, without "--" */
    char short_name;      /* 0 when none */
    enum cli_opt_type type;
    void *dest;
    const char *metavar;  /* "N", "FILE", ... */
    const char *help;
    const char *defval;   /* shown as "(default: X)"; NULL when none */
    double min, max;      /* for CLI_INT and CLI_FLOAT; min == max means unbounded */
    bool *seen;           /* optional: set when the option was given */
};

/* Parse argv (argv[0] is the subcommand). Sets *help when --help/-h was given (and stops).
 * Returns HM_ERR_USAGE with a one-line message naming the flag on any error. */
enum hm_status cli_parse(const char *cmd, const struct cli_opt *opts, int argc, char **argv,
                         bool *help);

void cli_usage(FILE *out, const char *cmd, const char *synopsis, const char *description,
               const struct cli_opt *opts);
/* cli_parse, then the usage (synopsis, description and the option table) on stdout when --help was
 * given: the caller returns as soon as st != HM_OK or *help. */
enum hm_status cli_parse_usage(const char *cmd, const char *synopsis, const char *description,
                               const struct cli_opt *opts, int argc, char **argv, bool *help);

/* --device: "auto" (the default) becomes "cuda" when a GPU is visible, else "cpu"; anything else
 * must parse as cpu, cuda or cuda:N (HM_ERR_USAGE naming the flag otherwise). */
enum hm_status cli_resolve_device(const char *cmd, const char *spec, char *out, size_t cap);

/* --dtype: "auto" (the default) is bf16 on a GPU and f32 on the CPU, where bf16 is a reference
 * mode (f32 compute on bf16 storage, slower than f32). */
enum hm_status cli_resolve_dtype(const char *cmd, const char *spec, const char *device, enum hm_dtype *out);
/* generate and chat: the same, plus q8_0 (CPU only). On the CPU, bf16 and q8_0 pack the weights
 * (hm_model_pack_weights: f32 activations, as llama.cpp's f16 and q8_0 models). */
enum hm_status cli_resolve_gen_dtype(const char *cmd, const char *spec, const char *device,
                                     enum hm_dtype *out);
#define CLI_GEN_DTYPE_HELP                                                                         \
    "Weights: auto, f32, bf16 or q8_0 (ggml's 8-bit blocks, CPU only; on the CPU bf16 and q8_0 "   \
    "weights run with f32 activations)"
#define CLI_DTYPE_HELP "Weights and activations: auto, f32 or bf16 (f32 master weights, optimizer and loss)"
#define CLI_DTYPE_DEFAULT "auto: bf16 on a GPU, f32 on the CPU"

/* Print " ARG" quoted for a POSIX shell when it needs it (spaces, quotes, $, ...). */
void cli_print_quoted(FILE *out, const char *arg);

/* True when stderr is a terminal (progress bars) */
bool cli_stderr_is_tty(void);

#endif
