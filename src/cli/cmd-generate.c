/*
 * cmd-generate.c - `hermes-llm generate`: load a checkpoint, its config and a tokenizer, then
 * stream the prompt and the generated text to stdout at UTF-8 character boundaries. Everything
 * else (the random seed when none was given, the context-limit note, statistics) goes to stderr,
 * after every input has been checked, so an error is the only line a failing run prints.
 * With --chat the prompt is one user message (after an optional --system prompt) rendered as
 * ChatML, and only the assistant's reply is printed.
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

static bool emit(int32_t id, void *user)
{
    struct stream_ctx *c = user;
    const char *text;
    size_t len;
    if ((c->st = hm_decode_stream_push(c->ds, (uint32_t)id, &text, &len)) != HM_OK)
        return false;
    if (len) {
        fwrite(text, 1, len, stdout);
        fflush(stdout);
    }
    return true;
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

enum hm_status cmd_generate(int argc, char **argv)
{
    struct cli_gen_args a = CLI_GEN_ARGS_DEFAULTS;
    const char *prompt = NULL, *system = NULL;
    bool no_eos = false, help = false, chat = false;
    const struct cli_opt opts[] = {
        {"prompt", 'p', CLI_STRING, &prompt, "TEXT", "Prompt text, or - to read it from standard input", NULL},
        CLI_GEN_OPTS(&a, "100"),
        {"no-eos", 0, CLI_FLAG, &no_eos, NULL, "Do not stop at <eos>", NULL},
        {"chat", 0, CLI_FLAG, &chat, NULL, "The prompt is a user message to a chat model: print its reply", NULL},
        {"system", 0, CLI_STRING, &system, "TEXT", "With --chat: the system prompt", "none"},
        {0},
    };
    enum hm_status st = cli_parse("generate", opts, argc, argv, &help);
    if (st != HM_OK)
        return st;
    if (help) {
        cli_usage(stdout, "generate", "-c CHECKPOINT -t tokenizer.json -p PROMPT [--chat] [options]",
                  "Generate text from a trained checkpoint, streaming it to standard output.", opts);
        return HM_OK;
    }
    if (!a.checkpoint || !a.tokenizer || !prompt)
        return hm_fail(HM_ERR_USAGE, "generate: --checkpoint, --tokenizer and --prompt are required");
    if (system && !chat)
        return hm_fail(HM_ERR_USAGE, "generate: --system needs --chat");
    struct cli_gen g;
    struct hm_decode_stream *ds = NULL;
    struct hm_chat_session *session = NULL;
    char *ptext = NULL;
    size_t plen = 0;
    uint32_t *ids = NULL;
    int32_t *prompt_ids = NULL;
    if ((st = cli_gen_load("generate", &a, &g)) != HM_OK)
        return st;
    const struct hm_model_config *cfg = &g.cfg;
    if (strcmp(prompt, "-") == 0) {
        if ((st = read_stdin(&ptext, &plen)) != HM_OK)
            goto out;
    } else {
        ptext = strdup(prompt);
        plen = strlen(prompt);
    }
    size_t n = 0;
    struct hm_chat_ids chat_ids;
    if (chat && (st = hm_chat_special_ids(g.tok, a.tokenizer, &chat_ids)) != HM_OK) {
        st = hm_fail(st, "generate: --chat: %s", hm_last_error());
        goto out;
    }
    if ((st = hm_tokenizer_encode(g.tok, ptext, plen, NULL, 0, &n)) != HM_OK)
        goto out;
    if (n == 0 && !chat) {
        st = hm_fail(HM_ERR_USAGE, "generate: the prompt is empty");
        goto out;
    }
    if (n > (size_t)cfg->max_seq_len) {
        st = hm_fail(HM_ERR_USAGE, "generate: the prompt is %zu tokens, more than the model's max_seq_len %d",
                     n, cfg->max_seq_len);
        goto out;
    }
    ids = malloc((n ? n : 1) * sizeof *ids);
    prompt_ids = malloc((n ? n : 1) * sizeof *prompt_ids);
    if (!ids || !prompt_ids) {
        st = hm_fail(HM_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((st = hm_tokenizer_encode(g.tok, ptext, plen, ids, n, &n)) != HM_OK)
        goto out;
    for (size_t i = 0; i < n; i++)
        prompt_ids[i] = (int32_t)ids[i];
    if ((st = cli_gen_load_model("generate", &a, &g)) != HM_OK ||
        (st = hm_decode_stream_new(g.tok, true, &ds)) != HM_OK)
        goto out;
    struct stream_ctx sc = {ds, HM_OK};
    struct hm_generate_stats gs = {0};
    if (chat) {
        struct hm_chat_session_opts co = {(int)a.max_tokens};
        struct hm_chat_reply_stats rs;
        if ((st = hm_chat_session_new(g.model, g.tok, a.tokenizer, g.sampler, &co, &session)) != HM_OK ||
            (st = hm_chat_session_set_system(session, system)) != HM_OK)
            goto out;
        st = hm_chat_reply(session, ptext, plen, emit, &sc, &rs);
    } else {
        int64_t eos = hm_tokenizer_token_to_id(g.tok, "<eos>");
        if (eos < 0)
            eos = hm_tokenizer_token_to_id(g.tok, "<|endoftext|>");
        struct hm_generate_opts go = {(int)a.max_tokens, no_eos ? -1 : (int32_t)eos};
        fwrite(ptext, 1, plen, stdout);
        fflush(stdout);
        st = hm_generate(g.model, prompt_ids, (int)n, &go, g.sampler, emit, &sc, &gs);
    }
    if (st == HM_OK && sc.st != HM_OK)
        st = sc.st;
    const char *rest;
    size_t rlen;
    hm_decode_stream_flush(ds, &rest, &rlen);
    fwrite(rest, 1, rlen, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    if (st == HM_OK && !chat && gs.stop == HM_STOP_CONTEXT_FULL)
        fprintf(stderr, "note: stopped after %d of %ld new tokens: the model's context limit is "
                "max_seq_len %d tokens\n", gs.new_tokens, a.max_tokens, cfg->max_seq_len);
    if (st == HM_OK && !chat)
        fprintf(stderr, "prompt tokens: %d, prefill %.1f tok/s, time to first token %.1f ms, "
                "decode %.1f tok/s (%d new tokens)%s\n", gs.prompt_tokens,
                gs.prefill_s > 0 ? gs.prompt_tokens / gs.prefill_s : 0.0, gs.prefill_s * 1000.0,
                gs.decode_s > 0 ? gs.decode_steps / gs.decode_s : 0.0, gs.new_tokens,
                gs.stop == HM_STOP_EOS ? ", stopped at <eos>" : "");
out:
    hm_chat_session_free(session);
    hm_decode_stream_free(ds);
    cli_gen_free(&g);
    free(ptext);
    free(ids);
    free(prompt_ids);
    return st;
}
