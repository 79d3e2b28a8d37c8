/*
 * source.c - what an export reads: a checkpoint (mapped, never copied whole), its config and its
 * tokenizer, with every tensor the config declares checked for presence, shape and a float dtype
 * before any output is opened, so a bad input fails before anything is written.
 */
#include "export-impl.h"

#include <libgen.h>
#include <string.h>
#include <sys/stat.h>

static void beside(const char *file, const char *name, char *out, size_t cap)
{
    char *copy = hm_strdup(file);
    snprintf(out, cap, "%s/%s", copy ? dirname(copy) : ".", name);
    hm_free(copy);
}

static enum hm_status check_tensors(const struct hm_export_source *src)
{
    struct hm_param_list pl;
    enum hm_status st = hm_param_list_new(&src->cfg, &pl);
    if (st != HM_OK)
        return st;
    for (int i = 0; i < pl.n && st == HM_OK; i++) {
        const struct hm_tensor *p = hm_param_at(&pl, i);
        const struct hm_st_tensor *t;
        if ((st = hm_st_get(src->weights, p->name, &t)) != HM_OK)
            break;
        bool same = t->ndim == p->n_dims;
        for (int d = 0; same && d < p->n_dims; d++)
            same = t->shape[d] == p->shape[d];
        if (!same)
            st =
                hm_fail(HM_ERR_MISMATCH, "%s: tensor '%s' does not have the shape its config gives",
                        src->ckpt_path, p->name);
        else if (t->dtype != HM_ST_F32 && t->dtype != HM_ST_BF16 && t->dtype != HM_ST_F16)
            st = hm_fail(HM_ERR_UNSUPPORTED,
                         "%s: tensor '%s' has dtype %s (F32, BF16 or F16 expected)", src->ckpt_path,
                         p->name, hm_st_dtype_name(t->dtype));
    }
    /* A tensor in the model's namespace that the config lacks (an untied head, biases, another
     * layer) would be dropped silently: the config and checkpoint do not belong together. */
    for (size_t i = 0; i < hm_st_count(src->weights) && st == HM_OK; i++) {
        const char *name = hm_st_at(src->weights, i)->name;
        char mapped[128];
        if (hm_name_to_hf(name, mapped, sizeof mapped) && !hm_model_param(pl.decl, name))
            st = hm_fail(HM_ERR_MISMATCH,
                         "%s: tensor '%s' is not part of the model its config "
                         "describes",
                         src->ckpt_path, name);
    }
    hm_param_list_free(&pl);
    return st;
}

enum hm_status hm_export_source_open(struct hm_export_source *src, const char *ckpt,
                                     const char *config, const char *tokenizer)
{
    memset(src, 0, sizeof *src);
    struct stat sb;
    if (stat(ckpt, &sb) == 0 && S_ISDIR(sb.st_mode))
        snprintf(src->ckpt_path, sizeof src->ckpt_path, "%s/weights.safetensors", ckpt);
    else
        snprintf(src->ckpt_path, sizeof src->ckpt_path, "%s", ckpt);
    char *cfg_path = src->cfg_path, *tok_path = src->tok_path;
    size_t cap = sizeof src->cfg_path;
    if (config)
        snprintf(cfg_path, cap, "%s", config);
    else
        beside(src->ckpt_path, "config.json", cfg_path, cap);
    if (tokenizer)
        snprintf(tok_path, cap, "%s", tokenizer);
    else
        beside(src->ckpt_path, "tokenizer.json", tok_path, cap);
    if (!tokenizer && !hm_file_exists(tok_path))
        return hm_fail(HM_ERR_USAGE,
                       "no tokenizer: %s does not exist (give the tokenizer.json "
                       "with -t)",
                       tok_path);
    enum hm_status st;
    if ((st = hm_st_open(src->ckpt_path, &src->weights)) != HM_OK ||
        (st = hm_config_load(cfg_path, &src->cfg)) != HM_OK ||
        (st = hm_tokenizer_load(tok_path, &src->tok)) != HM_OK)
        goto fail;
    if (hm_tokenizer_vocab_size(src->tok) != (uint32_t)src->cfg.vocab_size) {
        st = hm_fail(HM_ERR_MISMATCH, "tokenizer %s has %u tokens but %s says vocab_size %d",
                     tok_path, hm_tokenizer_vocab_size(src->tok), cfg_path, src->cfg.vocab_size);
        goto fail;
    }
    if ((st = check_tensors(src)) != HM_OK)
        goto fail;
    return HM_OK;
fail:
    hm_export_source_close(src);
    return st;
}

void hm_export_source_close(struct hm_export_source *src)
{
    hm_st_close(src->weights);
    hm_tokenizer_free(src->tok);
    src->weights = NULL;
    src->tok = NULL;
}

enum hm_export_dtype hm_export_source_dtype(const struct hm_export_source *src)
{
    enum hm_st_dtype first = hm_st_at(src->weights, 0)->dtype;
    for (size_t i = 1; i < hm_st_count(src->weights); i++)
        if (hm_st_at(src->weights, i)->dtype != first)
            return HM_EXPORT_F32;
    return first == HM_ST_F16    ? HM_EXPORT_F16
           : first == HM_ST_BF16 ? HM_EXPORT_BF16
                                 : HM_EXPORT_F32;
}
