/*
 * cmd-chat.c - `hermes-llm chat`: talk to a chat model (a hm_chat_session: the KV cache is kept
 * across turns). On a terminal: a prompt, streamed replies, /reset, /system TEXT, Ctrl-C stops
 * the reply being written, Ctrl-D ends. Otherwise each input line is one user message and each
 * reply is printed followed by an empty line, so scripts can drive it.
 */
#include "commands.h"
#include "gen-setup.h"
#include "hermes/chat.h"
#include "hermes/interrupt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct chat_out {
    struct hm_decode_stream *ds;
    enum hm_status st;
    long delay_us; /* test-only (tests/cli/chat.sh): HM_TEST_TOKEN_DELAY_MS slows replies down */
};

/* Stream one reply token; a Ctrl-C (SIGINT) stops the reply, not the program. */
static bool on_token(hm_token id, void *user)
{
    struct chat_out *o = user;
    if (!cli_stream_token("chat", o->ds, id, &o->st))
        return false;
    if (o->delay_us)
        usleep((useconds_t)o->delay_us);
    return !hm_interrupt_requested();
}

static void end_reply(struct chat_out *o)
{
    const char *rest;
    size_t len;
    hm_decode_stream_flush(o->ds, &rest, &len);
    fwrite(rest, 1, len, stdout);
}

/* One user message: the reply streamed, then a newline (and an empty line when not interactive). */
static enum hm_status answer(struct hm_chat_session *s, const struct hm_tokenizer *tok,
                             const char *msg, size_t len, bool tty)
{
    const char *delay = getenv("HM_TEST_TOKEN_DELAY_MS");
    struct chat_out o = {NULL, HM_OK, delay ? 1000 * strtol(delay, NULL, 10) : 0};
    struct hm_chat_reply_stats rs;
    enum hm_status st = hm_decode_stream_new(tok, true, &o.ds);
    if (st != HM_OK)
        return st;
    hm_interrupt_reset();
    st = hm_chat_reply(s, msg, len, on_token, &o, &rs);
    end_reply(&o);
    hm_decode_stream_free(o.ds);
    if (st == HM_OK)
        st = o.st;
    fputs(tty ? "\n" : "\n\n", stdout);
    fflush(stdout);
    if (rs.dropped_turns)
        fprintf(stderr,
                "[context full: dropped the %d oldest turn%s and re-read the rest (%d tokens)]\n",
                rs.dropped_turns, rs.dropped_turns == 1 ? "" : "s", rs.prefill_tokens);
    if (rs.stop == HM_STOP_CALLBACK && hm_interrupt_requested())
        fprintf(stderr, "[stopped]\n");
    else if (rs.stop == HM_STOP_CONTEXT_FULL)
        fprintf(stderr,
                "[the reply filled the context; the next message drops the oldest turns]\n");
    hm_interrupt_reset();
    return st;
}

/* /reset and /system TEXT; true when the line was a command. */
static bool command(struct hm_chat_session *s, const char *line, bool tty, enum hm_status *st)
{
    *st = HM_OK;
    if (strcmp(line, "/reset") == 0) {
        hm_chat_session_reset(s);
        if (tty)
            fprintf(stderr, "[conversation cleared]\n");
        return true;
    }
    if (strncmp(line, "/system", 7) == 0 && (line[7] == ' ' || line[7] == '\0')) {
        const char *text = line[7] ? line + 8 : "";
        *st = hm_chat_session_set_system(s, text);
        if (tty && *st == HM_OK)
            fprintf(stderr, *text ? "[system prompt set; conversation cleared]\n"
                                  : "[system prompt removed; conversation cleared]\n");
        return true;
    }
    return false;
}

static enum hm_status loop(struct hm_chat_session *s, const struct hm_tokenizer *tok, bool tty)
{
    char *line = NULL;
    size_t cap = 0;
    enum hm_status st = HM_OK;
    for (;;) {
        if (tty) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        errno = 0;
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0) {
            if (errno == EINTR && tty) { /* Ctrl-C at the prompt: a fresh prompt */
                clearerr(stdin);
                hm_interrupt_reset();
                fputc('\n', stdout);
                continue;
            }
            if (tty)
                fputc('\n', stdout);
            break; /* Ctrl-D or the end of the input */
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0)
            continue;
        if (command(s, line, tty, &st)) {
            if (st != HM_OK)
                break;
            continue;
        }
        if ((st = answer(s, tok, line, (size_t)n, tty)) != HM_OK) {
            if (!tty || st != HM_ERR_USAGE)
                break;
            fprintf(stderr, "hermes-llm: %s\n",
                    hm_last_error()); /* a too-long message: say so, go on */
            st = HM_OK;
        }
    }
    free(line);
    return st;
}

enum hm_status cmd_chat(int argc, char **argv)
{
    struct cli_gen_args a = cli_gen_args_default();
    const char *system = NULL;
    bool help = false;
    a.max_tokens = 0;
    const struct cli_opt opts[] = {
        CLI_GEN_OPTS(&a, "up to the context, per reply"),
        {"system", 0, CLI_STRING, &system, "TEXT",
         "System prompt (kept when old turns are dropped)", "none"},
        {0},
    };
    enum hm_status st = cli_parse_usage(
        "chat", "-c CHECKPOINT -t tokenizer.json [--system TEXT] [options]",
        "Talk to a chat model. On a terminal: /reset clears the conversation, /system TEXT sets\n"
        "the system prompt, Ctrl-C stops a reply, Ctrl-D ends. Otherwise every input line is one\n"
        "user message and every reply is followed by an empty line.",
        opts, argc, argv, &help);
    if (st != HM_OK || help)
        return st;
    struct cli_gen g;
    struct hm_chat_session *s = NULL;
    struct hm_chat_ids ids;
    if ((st = cli_gen_load("chat", &a, &g)) != HM_OK)
        return st;
    if ((st = hm_chat_special_ids(g.tok, a.tokenizer, &ids)) != HM_OK) {
        st = hm_fail(st, "chat: %s", hm_last_error());
        goto out;
    }
    struct hm_chat_session_opts co = hm_chat_session_opts_default();
    co.max_new_tokens = (int)a.max_tokens;
    if ((st = cli_gen_load_model("chat", &a, &g)) != HM_OK ||
        (st = hm_chat_session_new(g.model, g.tok, a.tokenizer, g.sampler, &co, &s)) != HM_OK ||
        (st = hm_chat_session_set_system(s, system)) != HM_OK)
        goto out;
    bool tty = isatty(0);
    if (tty)
        fprintf(stderr,
                "Chatting with %s (context %d tokens). /reset, /system TEXT, Ctrl-C stops a reply, "
                "Ctrl-D ends.\n",
                a.checkpoint, g.cfg.max_seq_len);
    hm_interrupt_install();
    st = loop(s, g.tok, tty);
out:
    hm_chat_session_free(s);
    cli_gen_free(&g);
    return st;
}
