/*
 * cmd-import.c - `hermes-llm import HF_FOLDER -o RUN_DIR`: a transformers LlamaForCausalLM folder
 * becomes a run folder (config.json, weights.safetensors, tokenizer.json) for generate and
 * train --checkpoint.
 */
#include "commands.h"
#include "hermes/export.h"
#include "hermes/run-dir.h"
#include "opts.h"

#include <stdio.h>

enum hm_status cmd_import(int argc, char **argv)
{
    const char *input = NULL, *output = NULL;
    bool force = false, help = false;
    const struct cli_opt opts[] = {
        {"input", 'i', CLI_STRING, &input, "DIR",
         "Hugging Face folder (or give it as the first argument)", NULL},
        {"output", 'o', CLI_STRING, &output, "DIR", "Run folder to create", NULL},
        {"force", 0, CLI_FLAG, &force, NULL, "Replace the output folder if it exists", NULL},
        {0},
    };
    /* The folder may come first, as a positional argument: parse what follows it. */
    if (argc > 1 && argv[1][0] != '-') {
        input = argv[1];
        argv++;
        argc--;
    }
    enum hm_status st = cli_parse_usage(
        "import", "HF_FOLDER -o RUN_DIR [options]",
        "Import a Hugging Face LlamaForCausalLM folder (config.json, model.safetensors or a\n"
        "sharded index, a byte-level BPE tokenizer.json). Settings we do not compute exactly\n"
        "(rope scaling, sliding windows, ...) are refused, naming the config key.",
        opts, argc, argv, &help);
    if (st != HM_OK || help)
        return st;
    if (!input || !output)
        return hm_fail(HM_ERR_USAGE, "import: a Hugging Face folder and --output are required");
    const char *in = input; /* with --force, replacing the folder that holds it would delete it */
    if ((st = hm_check_output_not_holding("import: -o", output, "-i", &in, 1)) != HM_OK)
        return st;
    if ((st = hm_import_hf(input, output, force)) == HM_OK)
        fprintf(stderr, "wrote %s: config.json, weights.safetensors, tokenizer.json\n", output);
    return st;
}
