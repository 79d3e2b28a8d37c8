/*
 * cmd-train-tokenizer.c - `hermes-llm train-tokenizer`: read text or JSONL corpora (optionally
 * gzip/zstd compressed), train a byte-level BPE exactly as HF's BpeTrainer would, and write a
 * tokenizer.json that HF `tokenizers` loads as it is. The output is written atomically: on any
 * error no output file appears. Progress goes to stderr when it is a terminal.
 */
#include "commands.h"
#include "data/reader.h"
#include "hermes/run-dir.h"
#include "hermes/tokenizer.h"
#include "opts.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct progress {
    bool tty;
    double t0, t_merge;
    uint64_t total_bytes;  /* sum of the input file sizes, 0 if unknown */
    uint64_t done_bytes;   /* raw bytes of the files already finished */
    struct hm_reader *cur;
    bool drawn;
};

static void fmt_eta(double s, char *buf, size_t cap)
{
    if (s < 0 || s > 1e7)
        snprintf(buf, cap, "?");
    else if (s >= 3600)
        snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    else if (s >= 60)
        snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else
        snprintf(buf, cap, "%.0fs", s);
}

static void on_progress(void *user, enum hm_tokenizer_phase phase, uint64_t done, uint64_t total)
{
    struct progress *p = user;
    if (!p->tty)
        return;
    double now = hm_time_s();
    char eta[32] = "?";
    if (phase == HM_TOKENIZER_PHASE_COUNT) {
        uint64_t raw = p->done_bytes + (p->cur ? hm_reader_bytes_read(p->cur) : 0);
        if (p->total_bytes && raw) {
            double frac = (double)raw / (double)p->total_bytes;
            fmt_eta((now - p->t0) * (1 - frac) / frac, eta, sizeof eta);
            fprintf(stderr, "\rcounting words: %.1f MB of text, %llu distinct words (%.0f%%, %s left)   ",
                    (double)done / 1e6, (unsigned long long)total, 100 * HM_MIN(frac, 1.0), eta);
        } else {
            fprintf(stderr, "\rcounting words: %.1f MB of text, %llu distinct words   ",
                    (double)done / 1e6, (unsigned long long)total);
        }
    } else {
        if (p->t_merge == 0)
            p->t_merge = now;
        if (done)
            fmt_eta((now - p->t_merge) / (double)done * (double)(total - HM_MIN(done, total)), eta,
                    sizeof eta);
        fprintf(stderr, "\rmerges: %llu/%llu (%.1f%%), %s left                              ",
                (unsigned long long)done, (unsigned long long)total,
                total ? 100.0 * (double)done / (double)total : 100.0, eta);
    }
    p->drawn = true;
}

/* Split "a,b,c" into tokens (in place in a copy). Empty names and repeats are usage errors. */
static enum hm_status split_specials(char *s, const char ***out, size_t *n)
{
    size_t cap = 1;
    for (char *c = s; *c; c++)
        cap += *c == ',';
    const char **v = hm_calloc(cap, sizeof *v);
    if (!v)
        return hm_fail(HM_ERR_NOMEM, "out of memory");
    size_t k = 0;
    for (char *tok = s;; ) {
        char *comma = strchr(tok, ',');
        if (comma)
            *comma = 0;
        if (!*tok) {
            hm_free(v);
            return hm_fail(HM_ERR_USAGE, "train-tokenizer: --special-tokens: empty token name");
        }
        for (size_t j = 0; j < k; j++)
            if (strcmp(v[j], tok) == 0) {
                hm_free(v);
                return hm_fail(HM_ERR_USAGE,
                               "train-tokenizer: --special-tokens: '%s' is given twice", tok);
            }
        v[k++] = tok;
        if (!comma)
            break;
        tok = comma + 1;
    }
    *out = v;
    *n = k;
    return HM_OK;
}

struct tt_args {
    struct cli_list inputs;
    const char *output, *specials, *text_field, *format;
    long vocab, min_freq, threads;
    bool help;
    char default_specials[256]; /* the library's defaults, comma-joined */
};

/* hm_tokenizer_train_opts_default()'s special tokens as the --special-tokens list. */
static void join_specials(const struct hm_tokenizer_train_opts *d, char *buf, size_t cap)
{
    buf[0] = 0;
    for (size_t i = 0; i < d->n_special_tokens; i++)
        snprintf(buf + strlen(buf), cap - strlen(buf), "%s%s", i ? "," : "", d->special_tokens[i]);
}

static enum hm_status parse_args(int argc, char **argv, struct tt_args *a)
{
    struct hm_tokenizer_train_opts d = hm_tokenizer_train_opts_default();
    *a = (struct tt_args){.text_field = "text", .format = "auto", .vocab = (long)d.vocab_size,
                          .min_freq = (long)d.min_frequency};
    join_specials(&d, a->default_specials, sizeof a->default_specials);
    a->specials = a->default_specials;
    const struct cli_opt opts[] = {
        {"input", 'i', CLI_LIST, &a->inputs, "FILE...", "Corpus files (.txt lines, .jsonl records; .gz/.zst ok; - = stdin)", NULL},
        {"output", 'o', CLI_STRING, &a->output, "FILE", "Where to write tokenizer.json", NULL},
        {"vocab-size", 'v', CLI_INT, &a->vocab, "N", "Vocabulary size, special tokens and 256 bytes included", "32000", 1, 1 << 24},
        {"min-frequency", 0, CLI_INT, &a->min_freq, "N", "Stop when the best pair occurs fewer times", "2", 0, 1e15},
        {"special-tokens", 0, CLI_STRING, &a->specials, "LIST", "Comma-separated special tokens, ids 0..n-1", a->default_specials},
        {"text-field", 0, CLI_STRING, &a->text_field, "NAME", "JSONL field that holds the text", "text"},
        {"format", 0, CLI_STRING, &a->format, "FMT", "auto (by extension), text or jsonl", "auto"},
        {"threads", 't', CLI_INT, &a->threads, "N", "Threads for word counting", "all cores", 1, 4096},
        {0},
    };
    enum hm_status st = cli_parse_usage(
        "train-tokenizer", "-i FILE... -o tokenizer.json [options]",
        "Train a byte-level BPE tokenizer (the same vocab and merges as HF tokenizers'\n"
        "BpeTrainer) and write it as an HF tokenizer.json.",
        opts, argc, argv, &a->help);
    if (st != HM_OK || a->help)
        return st;
    if (a->inputs.n == 0)
        return hm_fail(HM_ERR_USAGE, "train-tokenizer: --input is required");
    if (!a->output)
        return hm_fail(HM_ERR_USAGE, "train-tokenizer: --output is required");
    if ((st = hm_check_output_not_input("train-tokenizer: -o", a->output, "-i", a->inputs.items,
                                        (size_t)a->inputs.n)) != HM_OK)
        return st;
    int n_stdin = 0;
    for (int i = 0; i < a->inputs.n; i++)
        n_stdin += strcmp(a->inputs.items[i], "-") == 0;
    if (n_stdin > 1)
        return hm_fail(HM_ERR_USAGE, "train-tokenizer: --input: '-' (stdin) is given twice");
    return HM_OK;
}

static enum hm_status reader_opts(const struct tt_args *a, struct hm_reader_opts *ro)
{
    *ro = (struct hm_reader_opts){.text_field = a->text_field};
    if (strcmp(a->format, "auto") == 0)
        ro->format = HM_READER_AUTO;
    else if (strcmp(a->format, "text") == 0)
        ro->format = HM_READER_LINES;
    else if (strcmp(a->format, "jsonl") == 0)
        ro->format = HM_READER_JSONL;
    else
        return hm_fail(HM_ERR_USAGE, "train-tokenizer: --format: expected auto, text or jsonl, got '%s'",
                       a->format);
    return HM_OK;
}

/* Stream every input into the trainer, tracking the bytes read for the progress line. */
static enum hm_status feed_inputs(struct hm_tokenizer_trainer *tr, const struct cli_list *inputs,
                                  const struct hm_reader_opts *ropts, struct progress *prog)
{
    for (int i = 0; i < inputs->n; i++) {
        struct hm_reader *r = NULL;
        enum hm_status st = hm_reader_open(inputs->items[i], ropts, &r);
        if (st != HM_OK)
            return st;
        prog->total_bytes += hm_reader_file_size(r);
        prog->cur = r;
        const char *text;
        size_t len;
        while ((st = hm_reader_next(r, &text, &len)) == HM_OK && text)
            if ((st = hm_tokenizer_trainer_feed(tr, text, len)) != HM_OK)
                break;
        prog->done_bytes += hm_reader_bytes_read(r);
        prog->cur = NULL;
        hm_reader_free(r);
        if (st != HM_OK)
            return st;
    }
    return HM_OK;
}

static enum hm_status write_tokenizer(const struct hm_tokenizer *tok, struct hm_atomic_file *af,
                                      const char *output)
{
    char *json = NULL;
    enum hm_status st = hm_tokenizer_to_json(tok, &json);
    if (st == HM_OK && (fputs(json, af->f) == EOF || fputc('\n', af->f) == EOF))
        st = hm_fail(HM_ERR_IO, "%s: write failed", output);
    hm_free(json);
    if (st != HM_OK)
        return st;
    st = hm_atomic_commit(af);
    af->f = NULL;
    return st;
}

enum hm_status cmd_train_tokenizer(int argc, char **argv)
{
    struct tt_args a;
    struct hm_reader_opts ropts;
    enum hm_status st = parse_args(argc, argv, &a);
    if (st != HM_OK || a.help || (st = reader_opts(&a, &ropts)) != HM_OK)
        return st;
    char *spec_copy = hm_strdup(a.specials);
    if (!spec_copy)
        return hm_fail(HM_ERR_NOMEM, "out of memory");
    const char **specials = NULL;
    size_t n_specials = 0;
    struct hm_tokenizer_trainer *tr = NULL;
    struct hm_tokenizer *tok = NULL;
    struct hm_atomic_file af = {0};
    struct progress prog = {.tty = cli_stderr_is_tty(), .t0 = hm_time_s()};
    if ((st = split_specials(spec_copy, &specials, &n_specials)) != HM_OK)
        goto out;
    struct hm_tokenizer_train_opts topts = hm_tokenizer_train_opts_default();
    topts.vocab_size = (uint32_t)a.vocab;
    topts.min_frequency = (uint64_t)a.min_freq;
    topts.special_tokens = specials;
    topts.n_special_tokens = n_specials;
    topts.n_threads = (int)a.threads;
    topts.progress = on_progress;
    topts.progress_user = &prog;
    /* Fail on an unwritable output before spending time on training. */
    if ((st = hm_tokenizer_trainer_new(&topts, &tr)) != HM_OK || (st = hm_atomic_open(&af, a.output)) != HM_OK ||
        (st = feed_inputs(tr, &a.inputs, &ropts, &prog)) != HM_OK ||
        (st = hm_tokenizer_trainer_finish(tr, &tok)) != HM_OK)
        goto out;
    if (prog.drawn)
        fputc('\n', stderr);
    prog.drawn = false;
    if ((st = write_tokenizer(tok, &af, a.output)) == HM_OK)
        hm_log(HM_LOG_INFO, "wrote %s: %u tokens (%zu special) in %.1f s", a.output,
               hm_tokenizer_vocab_size(tok), n_specials, hm_time_s() - prog.t0);
out:
    if (prog.drawn)
        fputc('\n', stderr);
    if (af.f)
        hm_atomic_abort(&af);
    hm_tokenizer_free(tok);
    hm_tokenizer_trainer_free(tr);
    hm_free(specials);
    hm_free(spec_copy);
    return st;
}
