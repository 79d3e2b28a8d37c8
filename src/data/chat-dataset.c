/*
 * chat-dataset.c - chat conversations -> packed training windows (dataset.h): ChatML tokens with
 * the loss mask, whole conversations per window, padding for the rest.
 */
#include "hermes/chat.h"
#include "hermes/dataset.h"
#include "data/reader.h"
#include "util/util.h"

#include <string.h>

struct hm_chat_dataset_opts hm_chat_dataset_opts_default(void)
{
    return (struct hm_chat_dataset_opts){.seq_len = 256, .tok_name = "tokenizer"};
}

enum hm_status hm_data_format_parse(const char *s, enum hm_data_format *out)
{
    static const char *const names[] = {"auto", "text", "chat"};
    for (int i = 0; i < 3; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (enum hm_data_format)i;
            return HM_OK;
        }
    return hm_fail(HM_ERR_USAGE, "--format: expected auto, text or chat, got '%s'", s);
}

static bool is_jsonl(const char *path)
{
    return strstr(path, ".jsonl") != NULL;
}

/* The first non-blank line of `path`; *text NULL when there is none. */
static enum hm_status first_record(const char *path, struct hm_reader **r, const char **text,
                                   size_t *len)
{
    struct hm_reader_opts ro = {HM_READER_LINES, NULL};
    enum hm_status st = hm_reader_open(path, &ro, r);
    while (st == HM_OK && (st = hm_reader_next(*r, text, len)) == HM_OK && *text)
        if (strspn(*text, " \t\r\n") < *len)
            break;
    return st;
}

enum hm_status hm_data_format_detect(const char *const *paths, int n_paths,
                                     enum hm_data_format *out)
{
    *out = HM_DATA_TEXT;
    if (n_paths == 0 || !is_jsonl(paths[0]))
        return HM_OK;
    struct hm_reader *r = NULL;
    const char *text = NULL;
    size_t len = 0;
    enum hm_status st = first_record(paths[0], &r, &text, &len);
    if (st == HM_OK && text) {
        struct hm_chat_conv c = {0};
        enum hm_chat_record kind;
        /* a malformed record is reported, with its line, by the reader that takes it later */
        if (hm_chat_parse_record(text, len, &c, &kind) == HM_OK && kind == HM_RECORD_CHAT)
            *out = HM_DATA_CHAT;
        hm_chat_conv_clear(&c);
    }
    hm_reader_free(r);
    return st;
}

struct packer {
    struct hm_chat_tokens all; /* the packed stream */
    size_t W;                  /* window: seq_len + 1 tokens */
    size_t fill;               /* tokens in the current window */
    hm_token pad;
    struct hm_chat_dataset_info *info;
};

static enum hm_status pad_window(struct packer *p)
{
    if (p->fill == 0)
        return HM_OK;
    size_t n = p->W - p->fill;
    struct hm_chat_tokens *a = &p->all;
    enum hm_status st = hm_chat_tokens_reserve(a, n);
    if (st != HM_OK)
        return st;
    for (size_t i = 0; i < n; i++) {
        a->ids[a->n + i] = p->pad;
        a->flags[a->n + i] = i == 0 ? HM_TOKEN_DOC_START : 0; /* pads see only pads */
    }
    a->n += n;
    p->info->n_pad_tokens += n;
    p->fill = 0;
    p->info->n_windows++;
    return HM_OK;
}

/* Append one conversation's tokens (conv) whole, starting a new window when it does not fit. */
static enum hm_status pack(struct packer *p, const struct hm_chat_tokens *conv)
{
    enum hm_status st;
    if (conv->n > p->W) {
        p->info->n_too_long++;
        return HM_OK;
    }
    if (p->fill + conv->n > p->W && (st = pad_window(p)) != HM_OK)
        return st;
    struct hm_chat_tokens *a = &p->all;
    if ((st = hm_chat_tokens_reserve(a, conv->n)) != HM_OK)
        return st;
    memcpy(a->ids + a->n, conv->ids, conv->n * sizeof *a->ids);
    memcpy(a->flags + a->n, conv->flags, conv->n);
    a->flags[a->n] |= HM_TOKEN_DOC_START;
    for (size_t i = 0; i < conv->n; i++)
        p->info->n_target_tokens += (conv->flags[i] & HM_TOKEN_TARGET) != 0;
    a->n += conv->n;
    p->info->n_packed++;
    p->fill += conv->n;
    if (p->fill == p->W)
        p->info->n_windows++, p->fill = 0;
    return HM_OK;
}

static enum hm_status read_file(struct hm_tokenizer *tok, const struct hm_chat_ids *sp,
                                const char *path, struct packer *p)
{
    struct hm_reader_opts ro = {HM_READER_LINES, NULL};
    struct hm_reader *r;
    enum hm_status st = hm_reader_open(path, &ro, &r);
    if (st != HM_OK)
        return st;
    struct hm_chat_conv conv = {0};
    struct hm_chat_tokens toks = {0};
    const char *text;
    size_t len;
    while ((st = hm_reader_next(r, &text, &len)) == HM_OK && text) {
        if (strspn(text, " \t\r\n") == len)
            continue;
        enum hm_chat_record kind;
        unsigned long long line = (unsigned long long)hm_reader_line(r);
        if ((st = hm_chat_parse_record(text, len, &conv, &kind)) != HM_OK) {
            st = hm_fail(st, "%s:%llu: %s", path, line, hm_last_error());
            break;
        }
        if (kind != HM_RECORD_CHAT) {
            st = hm_fail(
                HM_ERR_FORMAT,
                "%s:%llu: a plain record among chat records: every record needs "
                "\"messages\" or \"conversations\" (train text and chat data in separate runs)",
                path, line);
            break;
        }
        p->info->n_records++;
        if (!hm_chat_has_reply(&conv)) {
            p->info->n_no_reply++;
            continue;
        }
        toks.n = 0;
        if ((st = hm_chat_encode(tok, sp, &conv, 0, false, &toks)) != HM_OK ||
            (st = pack(p, &toks)) != HM_OK)
            break;
    }
    hm_chat_conv_clear(&conv);
    hm_chat_tokens_free(&toks);
    hm_reader_free(r);
    return st;
}

enum hm_status hm_chat_dataset_open(struct hm_tokenizer *tok, const struct hm_chat_dataset_opts *o,
                                    struct hm_token_cache *tokens, struct hm_token_cache *flags,
                                    struct hm_chat_dataset_info *info)
{
    memset(info, 0, sizeof *info);
    double t0 = hm_time_s();
    struct hm_chat_ids sp;
    enum hm_status st = hm_chat_special_ids(tok, o->tok_name, &sp);
    if (st != HM_OK)
        return st;
    hm_token pad = hm_tokenizer_token_to_id(tok, "<pad>");
    struct packer p = {
        .W = (size_t)o->seq_len + 1, .pad = pad >= 0 ? pad : sp.im_end, .info = info};
    int n_inputs = o->n_paths > 0 ? o->n_paths : 1;
    for (int i = 0; i < n_inputs && st == HM_OK; i++) {
        const char *path = o->n_paths > 0 ? o->paths[i] : "-";
        if (o->n_paths > 0 && !is_jsonl(path))
            st = hm_fail(HM_ERR_USAGE,
                         "%s: chat data must be .jsonl records with \"messages\" or "
                         "\"conversations\"",
                         path);
        else
            st = read_file(tok, &sp, path, &p);
    }
    if (st == HM_OK)
        st = pad_window(&p);
    if (st == HM_OK && info->n_target_tokens == 0)
        st = hm_fail(HM_ERR_USAGE,
                     "the chat data has no assistant reply to train on (%llu conversations: "
                     "%llu without a reply, %llu longer than --seq-len %d + 1 tokens)",
                     (unsigned long long)info->n_records, (unsigned long long)info->n_no_reply,
                     (unsigned long long)info->n_too_long, o->seq_len);
    /* The key only has to tell the two files of one run apart from a stale pair. */
    uint64_t key = hm_hash64(HM_HASH64_INIT, p.all.ids, p.all.n * sizeof *p.all.ids);
    key = hm_hash64(key, p.all.flags, p.all.n);
    hm_token *fl = st == HM_OK ? hm_malloc(HM_MAX(p.all.n, 1) * sizeof *fl) : NULL;
    if (st == HM_OK && !fl)
        st = hm_fail(HM_ERR_NOMEM, "out of memory for %zu chat tokens", p.all.n);
    for (size_t i = 0; fl && i < p.all.n; i++)
        fl[i] = p.all.flags[i];
    bool hit = false;
    if (st == HM_OK && ((st = hm_token_cache_write(o->cache_path, key, hm_tokenizer_vocab_size(tok),
                                                   p.all.ids, p.all.n)) != HM_OK ||
                        (st = hm_token_cache_write(o->flags_path, key, 4, fl, p.all.n)) != HM_OK ||
                        (st = hm_token_cache_open(o->cache_path, key, tokens, &hit)) != HM_OK ||
                        (st = hm_token_cache_open(o->flags_path, key, flags, &hit)) != HM_OK))
        hm_token_cache_close(tokens);
    if (st == HM_OK)
        tokens->flags = flags;
    hm_free(fl);
    hm_chat_tokens_free(&p.all);
    info->seconds = hm_time_s() - t0;
    return st;
}
