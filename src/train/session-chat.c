/*
 * session-chat.c - the chat half of a training session (session-chat.h): `--format chat` data,
 * the ChatML tokens a base model's tokenizer gains for fine-tuning, and their start-up lines.
 */
#include "session-chat.h"
#include "hermes/chat.h"
#include "util/util.h"

#include <stdio.h>

enum hm_status hm_session_chat_format(const struct hm_session_opts *o, int world, enum hm_data_format *out)
{
    enum hm_status st = HM_OK;
    *out = o->format;
    if (*out == HM_DATA_AUTO && (st = hm_data_format_detect(o->data, o->n_data, out)) != HM_OK)
        return st;
    if (*out == HM_DATA_CHAT && (world > 1 || o->train.stride))
        return hm_fail(HM_ERR_USAGE, "train: chat data trains in one process with whole conversations per "
                       "window (%s is not supported with it yet)", o->train.stride ? "--stride" : "data parallelism");
    return HM_OK;
}

enum hm_status hm_session_chat_tokens(struct hm_tokenizer **tok, const char *tok_path, const char *checkpoint,
                                      const char *output, int *n_added)
{
    struct hm_tokenizer *grown = NULL;
    struct hm_chat_ids ids;
    *n_added = 0;
    if (hm_chat_special_ids(*tok, tok_path, &ids) == HM_OK)
        return HM_OK;
    if (!checkpoint)
        return hm_fail(HM_ERR_MISMATCH, "train: tokenizer %s has no %s and %s tokens; retrain it (new tokenizers "
                       "get them) or fine-tune with --checkpoint, which adds them",
                       tok_path, HM_CHAT_IM_START, HM_CHAT_IM_END);
    enum hm_status st = hm_chat_add_tokens(*tok, tok_path, &grown, n_added);
    if (st != HM_OK || !grown)
        return st;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", output);
    if ((st = hm_tokenizer_save(grown, path)) != HM_OK) {
        hm_tokenizer_free(grown);
        *n_added = 0;
        return st;
    }
    uint32_t V = hm_tokenizer_vocab_size(grown);
    hm_log(HM_LOG_INFO, "Chat tokens: %s has no %s and %s; added them as ids %u and %u, wrote the tokenizer "
           "to %s; the embedding (and an untied lm_head) grows by %d rows initialised to the mean row",
           tok_path, HM_CHAT_IM_START, HM_CHAT_IM_END, V - 2, V - 1, path, *n_added);
    hm_tokenizer_free(*tok);
    *tok = grown;
    return HM_OK;
}

enum hm_status hm_session_chat_data(struct hm_tokenizer *tok, const char *tok_path, const char *const *paths,
                                    int n_paths, int seq_len, const char *output, const char *which,
                                    struct hm_token_cache *tokens, struct hm_token_cache *flags)
{
    char cache[4096], fpath[4096];
    snprintf(cache, sizeof cache, "%s/tokens-%s.bin", output, which);
    snprintf(fpath, sizeof fpath, "%s/tokens-%s.flags", output, which);
    struct hm_chat_dataset_opts o = hm_chat_dataset_opts_default();
    o.paths = paths, o.n_paths = n_paths, o.seq_len = seq_len;
    o.cache_path = cache, o.flags_path = fpath, o.tok_name = tok_path;
    struct hm_chat_dataset_info in;
    enum hm_status st = hm_chat_dataset_open(tok, &o, tokens, flags, &in);
    if (st != HM_OK)
        return st;
    double all = (double)HM_MAX(tokens->n_tokens, 1);
    hm_log(HM_LOG_INFO, "Chat data (%s): %llu conversations packed into %llu windows of %d tokens; %llu "
           "assistant tokens trained per epoch (%.1f%% of the windows, %.1f%% padding)",
           which, (unsigned long long)in.n_packed, (unsigned long long)in.n_windows, seq_len + 1,
           (unsigned long long)in.n_target_tokens, 100.0 * (double)in.n_target_tokens / all,
           100.0 * (double)in.n_pad_tokens / all);
    if (in.n_no_reply || in.n_too_long)
        hm_log(HM_LOG_INFO, "Chat data (%s): skipped %llu conversations without an assistant reply; dropped "
               "%llu longer than a window of %d tokens (too-long conversations are dropped, never cut: "
               "raise --seq-len to keep them)", which, (unsigned long long)in.n_no_reply,
               (unsigned long long)in.n_too_long, seq_len + 1);
    return HM_OK;
}
