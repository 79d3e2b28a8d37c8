/*
 * cmd-export.c - `hermes-llm export`: a checkpoint to GGUF (llama.cpp) or a Hugging Face folder
 * (transformers). Every input is checked before the output is opened, and the output appears
 * whole or not at all.
 */
#include "commands.h"
#include "hermes/export.h"
#include "hermes/run-dir.h"
#include "opts.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* With --force an output that is an input, or a folder holding one, would be replaced. */
static enum hm_status output_not_input(const char *output, const struct hm_export_source *src)
{
    const char *ckpt = src->ckpt_path, *cfg = src->cfg_path, *tok = src->tok_path;
    enum hm_status st;
    if ((st = hm_check_output_not_holding("export: -o", output, "-c", &ckpt, 1)) != HM_OK ||
        (st = hm_check_output_not_holding("export: -o", output, "--config", &cfg, 1)) != HM_OK)
        return st;
    return hm_check_output_not_holding("export: -o", output, "-t", &tok, 1);
}

enum hm_status cmd_export(int argc, char **argv)
{
    const char *checkpoint = NULL, *config = NULL, *tokenizer = NULL, *format = NULL,
               *output = NULL, *dtype_name = "auto";
    bool force = false, help = false;
    const struct cli_opt opts[] = {
        {"checkpoint", 'c', CLI_STRING, &checkpoint, "PATH",
         "Run folder or checkpoint (.safetensors)", NULL},
        {"tokenizer", 't', CLI_STRING, &tokenizer, "FILE", "tokenizer.json",
         "tokenizer.json next to the checkpoint"},
        {"config", 0, CLI_STRING, &config, "FILE", "Model config.json",
         "config.json next to the checkpoint"},
        {"format", 'f', CLI_STRING, &format, "FMT",
         "gguf (llama.cpp) or hf (a transformers folder)", "gguf when -o ends in .gguf"},
        {"output", 'o', CLI_STRING, &output, "PATH", "Output .gguf file or Hugging Face folder",
         NULL},
        {"dtype", 0, CLI_STRING, &dtype_name, "TYPE",
         "Weights: f32, f16, bf16, or q8_0 (GGUF only; norms stay f32)",
         "auto: the checkpoint's, f32 when it mixes dtypes"},
        {"force", 0, CLI_FLAG, &force, NULL, "Replace the output if it exists", NULL},
        {0},
    };
    enum hm_status st = cli_parse_usage(
        "export", "-c RUN_DIR|CHECKPOINT -f gguf|hf -o OUT [options]",
        "Export a model: GGUF v3 for llama.cpp (SwiGLU models: the llama-* presets), or a\n"
        "Hugging Face folder for transformers (LlamaForCausalLM for SwiGLU models,\n"
        "ArceeForCausalLM with exact GELU for the GELU presets).",
        opts, argc, argv, &help);
    if (st != HM_OK || help)
        return st;
    if (!checkpoint || !output)
        return hm_fail(HM_ERR_USAGE, "export: --checkpoint and --output are required");
    if (!format && ends_with(output, ".gguf"))
        format = "gguf";
    if (!format || (strcmp(format, "gguf") != 0 && strcmp(format, "hf") != 0))
        return hm_fail(HM_ERR_USAGE, "export: --format: expected gguf or hf, got '%s'",
                       format ? format : "(none)");
    bool gguf = strcmp(format, "gguf") == 0;
    enum hm_export_dtype dt = HM_EXPORT_F32;
    bool auto_dtype = strcmp(dtype_name, "auto") == 0;
    if (!auto_dtype && hm_export_dtype_parse(dtype_name, &dt) != HM_OK)
        return hm_fail(HM_ERR_USAGE,
                       "export: --dtype: expected auto, f32, f16, bf16 or q8_0, got '%s'",
                       dtype_name);
    if (!gguf && dt == HM_EXPORT_Q8_0)
        return hm_fail(
            HM_ERR_USAGE,
            "export: --dtype q8_0 is for GGUF; a Hugging Face folder takes f32, f16 or bf16");
    struct stat sb;
    if (!force && stat(output, &sb) == 0)
        return hm_fail(HM_ERR_USAGE, "export: %s already exists (use --force to replace it)",
                       output);
    struct hm_export_source src;
    if ((st = hm_export_source_open(&src, checkpoint, config, tokenizer)) != HM_OK)
        return st;
    if ((st = output_not_input(output, &src)) != HM_OK) {
        hm_export_source_close(&src);
        return st;
    }
    if (auto_dtype)
        dt = hm_export_source_dtype(&src);
    st = gguf ? hm_export_gguf(&src, dt, output) : hm_export_hf(&src, dt, output, force);
    if (st == HM_OK)
        fprintf(stderr, "wrote %s (%s, %s)\n", output,
                gguf                                  ? "GGUF, architecture llama"
                : src.cfg.activation == HM_ACT_SWIGLU ? "Hugging Face LlamaForCausalLM"
                                                      : "Hugging Face ArceeForCausalLM",
                hm_export_dtype_name(dt));
    hm_export_source_close(&src);
    return st;
}
