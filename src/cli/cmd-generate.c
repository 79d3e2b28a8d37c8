/*
 * cmd-generate.c - `hermes-llm generate`: load a checkpoint, its config and a tokenizer (gen-setup.h,
 * shared with `chat`), then stream the prompt and the generated text to stdout at UTF-8 character
 * boundaries; with --chat the prompt is one user message to a chat model and only its reply is
 * printed. Everything
 * else (the random seed when none was given, the context-limit note, statistics) goes to stderr,
 * after every input has been checked, so an error is the only line a failing run prints.
 */
#include "commands.h"
#include "gen-setup.h"
#include "hermes/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct stream_ctx {
    struct hm_decode_stream *ds;
    enum hm_status st;
};

static bool emit(hm_token id, void *user)
{
    struct stream_ctx *c = user;
    return cli_stream_token("generate", c->ds, id, &c->st);
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

struct gen_args {
    struct cli_gen_args g;
    const char *prompt, *system;
    bool no_eos, chat, help;
};

static enum hm_status parse_args(int argc, char **argv, struct gen_args *a)
{
    *a = (struct gen_args){.g = cli_gen_args_default()};
    const struct cli_opt opts[] = {
        {"prompt", 'p', CLI_STRING, &a->prompt, "TEXT", "Prompt text, or - to read it from standard input", NULL},
        CLI_GEN_OPTS(&a->g, "100"),
        {"no-eos", 0, CLI_FLAG, &a->no_eos, NULL, "Do not stop at <eos>", NULL},
        {"chat", 0, CLI_FLAG, &a->chat, NULL, "The prompt is a user message to a chat model: print its reply", NULL},
        {"system", 0, CLI_STRING, &a->system, "TEXT", "With --chat: the system prompt", "none"},
        {0},
    };
    enum hm_status st = cli_parse_usage(
        "generate", "-c CHECKPOINT -t tokenizer.json -p PROMPT [--chat] [options]",
        "Generate text from a trained checkpoint, streaming it to standard output.",
        opts, argc, argv, &a->help);
    if (st != HM_OK || a->help)
        return st;
    if (!a->g.checkpoint || !a->g.tokenizer || !a->prompt)
        return hm_fail(HM_ERR_USAGE, "generate: --checkpoint, --tokenizer and --prompt are required");
    if (a->system && !a->chat)
        return hm_fail(HM_ERR_USAGE, "generate: --system needs --chat");
    return HM_OK;
}

/* The prompt text, from the flag or standard input. */
static enum hm_status read_prompt(const struct gen_args *a, char **ptext, size_t *plen)
{
    if (strcmp(a->prompt, "-") == 0)
        return read_stdin(ptext, plen);
    if (!(*ptext = strdup(a->prompt)))
        return hm_fail(HM_ERR_NOMEM, "out of memory");
    *plen = strlen(a->prompt);
    return HM_OK;
}

/* The prompt's ids, which must fit the model's context. A chat message may be empty (the chat
 * template still makes a prompt of it). */
static enum hm_status encode_prompt(struct hm_tokenizer *tok, int max_seq_len, bool chat, const char *ptext,
                                    size_t plen, hm_token **ids, size_t *n)
{
    enum hm_status st;
    if ((st = hm_tokenizer_encode(tok, ptext, plen, NULL, 0, n)) != HM_OK)
        return st;
    if (*n == 0 && !chat)
        return hm_fail(HM_ERR_USAGE, "generate: the prompt is empty");
    if (*n > (size_t)max_seq_len)
        return hm_fail(HM_ERR_USAGE, "generate: the prompt is %zu tokens, more than the model's max_seq_len %d",
                       *n, max_seq_len);
    if (!(*ids = malloc((*n ? *n : 1) * sizeof **ids)))
        return hm_fail(HM_ERR_NOMEM, "out of memory");
    return hm_tokenizer_encode(tok, ptext, plen, *ids, *n, n);
}

static void print_stats(const struct gen_args *a, const struct hm_generate_stats *gs, int max_seq_len)
{
    if (gs->stop == HM_STOP_CONTEXT_FULL)
        fprintf(stderr, "note: stopped after %d of %ld new tokens: the model's context limit is "
                "max_seq_len %d tokens\n", gs->new_tokens, a->g.max_tokens, max_seq_len);
    fprintf(stderr, "prompt tokens: %d, prefill %.1f tok/s, time to first token %.1f ms, "
            "decode %.1f tok/s (%d new tokens)%s\n", gs->prompt_tokens,
            gs->prefill_s > 0 ? gs->prompt_tokens / gs->prefill_s : 0.0, gs->prefill_s * 1000.0,
            gs->decode_s > 0 ? gs->decode_steps / gs->decode_s : 0.0, gs->new_tokens,
            gs->stop == HM_STOP_EOS ? ", stopped at <eos>" : "");
    fprintf(stderr, "memory: weights %.1f MiB (%s), KV cache %.1f MiB\n",
            (double)gs->weight_bytes / (1 << 20), hm_dtype_name(gs->weight_dtype),
            (double)gs->kv_cache_bytes / (1 << 20));
}

/* The prompt, then the new text (or, with --chat, the reply alone), streamed to stdout. */
static enum hm_status run_generation(const struct gen_args *a, struct cli_gen *g, const char *ptext, size_t plen,
                                     const hm_token *ids, size_t n)
{
    struct hm_decode_stream *ds = NULL;
    struct hm_chat_session *session = NULL;
    enum hm_status st;
    if ((st = hm_decode_stream_new(g->tok, true, &ds)) != HM_OK)
        return st;
    struct stream_ctx sc = {ds, HM_OK};
    struct hm_generate_stats gs;
    if (a->chat) {
        struct hm_chat_session_opts co = hm_chat_session_opts_default();
        struct hm_chat_reply_stats rs;
        co.max_new_tokens = (int)a->g.max_tokens;
        if ((st = hm_chat_session_new(g->model, g->tok, a->g.tokenizer, g->sampler, &co, &session)) == HM_OK &&
            (st = hm_chat_session_set_system(session, a->system)) == HM_OK)
            st = hm_chat_reply(session, ptext, plen, emit, &sc, &rs);
    } else {
        struct hm_generate_opts go = hm_generate_opts_default();
        go.max_new_tokens = (int)a->g.max_tokens;
        go.eos_id = a->no_eos ? -1 : hm_tokenizer_eos_id(g->tok);
        fwrite(ptext, 1, plen, stdout);
        fflush(stdout);
        st = hm_generate(g->model, ids, (int)n, &go, g->sampler, emit, &sc, &gs);
    }
    if (st == HM_OK && sc.st != HM_OK)
        st = sc.st;
    const char *rest;
    size_t rlen;
    hm_decode_stream_flush(ds, &rest, &rlen);
    fwrite(rest, 1, rlen, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    if (st == HM_OK && !a->chat)
        print_stats(a, &gs, g->cfg.max_seq_len);
    hm_chat_session_free(session);
    hm_decode_stream_free(ds);
    return st;
}

enum hm_status cmd_generate(int argc, char **argv)
{
    struct gen_args a;
    enum hm_status st = parse_args(argc, argv, &a);
    if (st != HM_OK || a.help)
        return st;
    struct cli_gen g;
    struct hm_chat_ids chat_ids;
    char *ptext = NULL;
    size_t plen = 0, n = 0;
    hm_token *ids = NULL;
    if ((st = cli_gen_load("generate", &a.g, &g)) != HM_OK)
        return st;
    if (a.chat && (st = hm_chat_special_ids(g.tok, a.g.tokenizer, &chat_ids)) != HM_OK) {
        st = hm_fail(st, "generate: --chat: %s", hm_last_error());
        goto out;
    }
    if ((st = read_prompt(&a, &ptext, &plen)) != HM_OK ||
        (st = encode_prompt(g.tok, g.cfg.max_seq_len, a.chat, ptext, plen, &ids, &n)) != HM_OK)
        goto out;
    if ((st = cli_gen_load_model("generate", &a.g, &g)) != HM_OK)
        goto out;
    st = run_generation(&a, &g, ptext, plen, ids, n);
out:
    cli_gen_free(&g);
    free(ptext);
    free(ids);
    return st;
}
