/*
 * gen-setup.c - load a checkpoint, its config, a tokenizer and a sampler for `generate` and `chat`
 * (gen-setup.h).
 */
#include "gen-setup.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct cli_gen_args cli_gen_args_default(void)
{
    struct hm_sampler_opts sd = hm_sampler_opts_default();
    return (struct cli_gen_args){.device = "auto", .dtype = "auto",
                                 .max_tokens = hm_generate_opts_default().max_new_tokens, .top_k = sd.top_k,
                                 .temperature = sd.temperature, .top_p = sd.top_p, .rep = sd.repetition_penalty};
}

void cli_gen_free(struct cli_gen *g)
{
    hm_sampler_free(g->sampler);
    hm_model_free(g->model);
    hm_backend_free(g->be);
    hm_tokenizer_free(g->tok);
    memset(g, 0, sizeof *g);
}

enum hm_status cli_gen_load(const char *cmd, struct cli_gen_args *a, struct cli_gen *g)
{
    memset(g, 0, sizeof *g);
    char device[32];
    enum hm_dtype dtype;
    enum hm_status st;
    if (!a->checkpoint || !a->tokenizer)
        return hm_fail(HM_ERR_USAGE, "%s: --checkpoint and --tokenizer are required", cmd);
    if ((st = cli_resolve_device(cmd, a->device, device, sizeof device)) != HM_OK ||
        (st = cli_resolve_gen_dtype(cmd, a->dtype, device, &dtype)) != HM_OK)
        return st;
    char flag[64];
    snprintf(flag, sizeof flag, "%s: --threads", cmd);
    if (a->threads && (st = hm_check_threads(flag, a->threads)) != HM_OK)
        return st;
    if (a->threads)
        hm_set_threads((int)a->threads);
    if (a->config) {
        snprintf(g->cfg_path, sizeof g->cfg_path, "%s", a->config);
    } else {
        char *copy = strdup(a->checkpoint);
        if (!copy)
            return hm_fail(HM_ERR_NOMEM, "out of memory");
        snprintf(g->cfg_path, sizeof g->cfg_path, "%s/config.json", dirname(copy));
        free(copy);
    }
    if ((st = hm_config_load(g->cfg_path, &g->cfg)) != HM_OK ||
        (st = hm_tokenizer_load(a->tokenizer, &g->tok)) != HM_OK)
        goto fail;
    if (hm_tokenizer_vocab_size(g->tok) != (uint32_t)g->cfg.vocab_size) {
        st = hm_fail(HM_ERR_MISMATCH, "%s: tokenizer %s has %u tokens but %s says vocab_size %d",
                     cmd, a->tokenizer, hm_tokenizer_vocab_size(g->tok), g->cfg_path,
                     g->cfg.vocab_size);
        goto fail;
    }
    return HM_OK;
fail:
    cli_gen_free(g);
    return st;
}

enum hm_status cli_gen_load_model(const char *cmd, struct cli_gen_args *a, struct cli_gen *g)
{
    char device[32];
    enum hm_dtype dtype;
    enum hm_status st;
    if ((st = cli_resolve_device(cmd, a->device, device, sizeof device)) != HM_OK ||
        (st = cli_resolve_gen_dtype(cmd, a->dtype, device, &dtype)) != HM_OK)
        goto fail;
    /* On the CPU a model that cannot fit is refused before allocating, with its figures. */
    if ((st = hm_backend_new_from_string(device, &g->be)) != HM_OK ||
        (strcmp(hm_backend_name(g->be), "cpu") == 0 &&
         (st = hm_model_memory_check(&g->cfg, 1, g->cfg.max_seq_len, false)) != HM_OK) ||
        (st = hm_model_new_infer(&g->cfg, g->be, &g->model)) != HM_OK)
        goto fail;
    if ((st = hm_model_load_weights(g->model, a->checkpoint)) != HM_OK) {
        if (st == HM_ERR_MISMATCH) { /* hm_fail formats into the buffer hm_last_error returns */
            char why[512];
            snprintf(why, sizeof why, "%s", hm_last_error());
            hm_fail(st, "%s: checkpoint does not match %s: %s", cmd, g->cfg_path, why);
        }
        goto fail;
    }
    /* On the CPU, bf16 and q8_0 weights are packed for f32 compute; on a GPU bf16 is the model's
     * dtype (activations and KV cache too). */
    bool pack = dtype == HM_DTYPE_Q8_0 || (dtype == HM_DTYPE_BF16 && strcmp(device, "cpu") == 0);
    st = pack ? hm_model_pack_weights(g->model, dtype) : hm_model_set_dtype(g->model, dtype);
    if (st != HM_OK)
        goto fail;
    if (!a->seed_given) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        a->seed = (long)(((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid()) &
                         ((1ull << 62) - 1));
        fprintf(stderr, "seed: %ld\n", a->seed);
    }
    struct hm_sampler_opts so = hm_sampler_opts_default();
    so.temperature = (float)a->temperature, so.top_k = (int)a->top_k, so.top_p = (float)a->top_p;
    so.repetition_penalty = (float)a->rep, so.seed = (uint64_t)a->seed;
    if ((st = hm_sampler_new(g->cfg.vocab_size, &so, &g->sampler)) == HM_OK)
        return HM_OK;
fail:
    cli_gen_free(g);
    return st;
}

bool cli_stream_token(const char *cmd, struct hm_decode_stream *ds, hm_token id, enum hm_status *st)
{
    const char *text;
    size_t len;
    if ((*st = hm_decode_stream_push(ds, id, &text, &len)) != HM_OK)
        return false;
    if (len && (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0)) {
        *st = hm_fail(HM_ERR_IO, "%s: standard output: write failed: %s", cmd, strerror(errno));
        return false;
    }
    return true;
}
