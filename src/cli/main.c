/*
 * main.c - hermes-llm entry point: dispatches to a subcommand and turns its status into the one
 * error line and exit code of the CLI contract: 0 ok, 2 usage error, 130 interrupted, 1 otherwise.
 */
#include "commands.h"
#include "hermes/backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * OpenMP threads that finish a loop spin at the barrier for GOMP_SPINCOUNT iterations (libgomp
 * default 300000, ~0.1-1 ms) before sleeping. On a machine shared with other jobs that spin burns
 * the time slice a descheduled partner thread needs, and every barrier waits for it: training
 * `tiny` on 2 loaded cores ran 1.4x faster with a spin count of 10000 (docs/performance.md).
 * libgomp reads its environment before main(), so when the user set neither OMP_WAIT_POLICY nor
 * GOMP_SPINCOUNT, set the spin count and re-execute this binary once. A failed exec just goes on.
 */
static void tune_openmp_wait(char **argv)
{
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT"))
        return;
    if (setenv("GOMP_SPINCOUNT", "10000", 1) != 0)
        return;
    execv("/proc/self/exe", argv);
}

static const struct {
    const char *name;
    enum hm_status (*fn)(int, char **);
    const char *summary;
} commands[] = {
    {"train-tokenizer", cmd_train_tokenizer, "Train a byte-level BPE tokenizer (HF tokenizer.json)"},
    {"train", cmd_train, "Train a model from scratch or from a checkpoint"},
    {"generate", cmd_generate, "Generate text from a trained checkpoint"},
    {"chat", cmd_chat, "Talk to a chat model (ChatML), turn by turn"},
    {"info", cmd_info, "Show a model's architecture, parameter count, memory and FLOPs"},
    {"export", cmd_export, "Export a model to GGUF (llama.cpp) or a Hugging Face folder"},
    {"import", cmd_import, "Import a Hugging Face LlamaForCausalLM folder as a run folder"},
    {"serve", cmd_serve, "Serve a model over an OpenAI-compatible HTTP API"},
};

static void usage(FILE *out)
{
    fprintf(out, "hermes-llm %s - train GPT- and LLaMA-style language models from scratch\n\n",
            hm_version());
    fprintf(out, "Usage: hermes-llm <command> [options]\n\nCommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-16s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nOptions:\n  -h, --help       Print this help and exit\n"
                 "  -V, --version    Print the version and exit\n\n"
                 "Run 'hermes-llm <command> --help' for a command's options.\n");
}

/* Every write to stdout and stderr must have reached its file: a full disk or a closed pipe is an
 * error (exit 1), never a silent success. */
static int finish(int code)
{
    bool out_ok = fflush(stdout) == 0 && !ferror(stdout);
    int e = errno;
    if (!out_ok && code == 0) /* a failed command has printed its one error line already */
        fprintf(stderr, "hermes-llm: error: standard output: write failed: %s\n", strerror(e));
    bool err_ok = fflush(stderr) == 0 && !ferror(stderr);
    return (out_ok && err_ok) || code != 0 ? code : 1;
}

static int run(int argc, char **argv);

int main(int argc, char **argv)
{
    tune_openmp_wait(argv);
    return finish(run(argc, argv));
}

static int run(int argc, char **argv)
{
    /* Denormals flushed to zero from the start (the CPU backend does it too): a denormal operand
     * costs ~100x on x86 and only ever appears in values too small to matter (backend.h). */
    hm_set_flush_denormals(true);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        printf("hermes-llm %s\n", hm_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(cmd, commands[i].name) != 0)
            continue;
        enum hm_status st = commands[i].fn(argc - 1, argv + 1);
        if (st == HM_OK)
            return 0;
        fprintf(stderr, "hermes-llm: error: %s\n", hm_last_error());
        if (st == HM_ERR_USAGE) {
            fprintf(stderr, "Try 'hermes-llm %s --help' for more information.\n", cmd);
            return 2;
        }
        return st == HM_ERR_INTERRUPTED ? 130 : 1;
    }
    fprintf(stderr, "hermes-llm: error: unknown command '%s'\n", cmd);
    fprintf(stderr, "Try 'hermes-llm --help' for the list of commands.\n");
    return 2;
}
