/* opts.c - the table-driven option parser and usage printer behind every subcommand. */
#include "opts.h"

#include "hermes/backend.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct cli_opt *find_long(const struct cli_opt *opts, const char *name, size_t len)
{
    for (const struct cli_opt *o = opts; o->name; o++)
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
            return o;
    return NULL;
}

static const struct cli_opt *find_short(const struct cli_opt *opts, char c)
{
    for (const struct cli_opt *o = opts; o->name; o++)
        if (o->short_name && o->short_name == c)
            return o;
    return NULL;
}

static void opt_label(const struct cli_opt *o, char *buf, size_t cap)
{
    snprintf(buf, cap, "--%s", o->name);
}

static enum hm_status set_value(const char *cmd, const struct cli_opt *o, const char *val)
{
    char label[80];
    opt_label(o, label, sizeof label);
    bool bounded = o->min != o->max;
    if (o->type == CLI_INT) {
        char *end;
        errno = 0;
        long v = strtol(val, &end, 10);
        if (errno || end == val || *end)
            return hm_fail(HM_ERR_USAGE, "%s: %s: expected an integer, got '%s'", cmd, label, val);
        if (bounded && (v < o->min || v > o->max))
            return hm_fail(HM_ERR_USAGE, "%s: %s: expected an integer in [%.0f, %.0f], got '%s'",
                           cmd, label, o->min, o->max, val);
        *(long *)o->dest = v;
    } else if (o->type == CLI_FLOAT) {
        char *end;
        errno = 0;
        double v = strtod(val, &end);
        if (errno || end == val || *end || !isfinite(v))
            return hm_fail(HM_ERR_USAGE, "%s: %s: expected a number, got '%s'", cmd, label, val);
        if (bounded && (v < o->min || v > o->max))
            return hm_fail(HM_ERR_USAGE, "%s: %s: expected a number in [%g, %g], got '%s'", cmd,
                           label, o->min, o->max, val);
        *(double *)o->dest = v;
    } else if (o->type == CLI_STRING) {
        if (!*val)
            return hm_fail(HM_ERR_USAGE, "%s: %s: expected a value, got an empty string", cmd, label);
        *(const char **)o->dest = val;
    }
    return HM_OK;
}

static bool looks_like_option(const char *s)
{
    /* "-" alone means stdin and "-1.5" is a number, not an option. */
    if (s[0] != '-' || s[1] == 0)
        return false;
    if ((s[1] >= '0' && s[1] <= '9') || s[1] == '.')
        return false;
    return true;
}

enum hm_status cli_parse(const char *cmd, const struct cli_opt *opts, int argc, char **argv,
                         bool *help)
{
    *help = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const struct cli_opt *o = NULL;
        const char *inline_val = NULL;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            *help = true;
            return HM_OK;
        }
        if (strncmp(arg, "--", 2) == 0 && arg[2]) {
            const char *name = arg + 2;
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            o = find_long(opts, name, len);
            if (!o)
                return hm_fail(HM_ERR_USAGE, "%s: unknown option '--%.*s'", cmd, (int)len, name);
            if (eq)
                inline_val = eq + 1;
        } else if (arg[0] == '-' && arg[1] && !arg[2]) {
            o = find_short(opts, arg[1]);
            if (!o)
                return hm_fail(HM_ERR_USAGE, "%s: unknown option '%s'", cmd, arg);
        } else {
            return hm_fail(HM_ERR_USAGE, "%s: unexpected argument '%s'", cmd, arg);
        }
        if (o->seen)
            *o->seen = true;
        if (o->type == CLI_FLAG) {
            if (inline_val)
                return hm_fail(HM_ERR_USAGE, "%s: --%s takes no value", cmd, o->name);
            *(bool *)o->dest = true;
            continue;
        }
        if (o->type == CLI_LIST) {
            struct cli_list *l = o->dest;
            /* A list can hold at most argc values, so each gets argc slots of a static pool the
             * first time it is seen: no heap, nothing to free, and a repeated option appends. */
            static const char *pool[1 << 16];
            static size_t pool_used;
            if (!l->items) {
                if (pool_used + (size_t)argc > sizeof pool / sizeof *pool)
                    return hm_fail(HM_ERR_USAGE, "%s: too many arguments", cmd);
                l->items = pool + pool_used;
                pool_used += (size_t)argc;
            }
            int before = l->n;
            if (inline_val) {
                if (!*inline_val)
                    return hm_fail(HM_ERR_USAGE, "%s: --%s: expected a value", cmd, o->name);
                l->items[l->n++] = inline_val;
            }
            while (i + 1 < argc && !looks_like_option(argv[i + 1]))
                l->items[l->n++] = argv[++i];
            if (l->n == before)
                return hm_fail(HM_ERR_USAGE, "%s: --%s: missing value", cmd, o->name);
            continue;
        }
        const char *val = inline_val;
        if (!val) {
            if (i + 1 >= argc)
                return hm_fail(HM_ERR_USAGE, "%s: --%s: missing value", cmd, o->name);
            val = argv[++i];
        }
        enum hm_status st = set_value(cmd, o, val);
        if (st != HM_OK)
            return st;
    }
    return HM_OK;
}

void cli_usage(FILE *out, const char *cmd, const char *synopsis, const char *description,
               const struct cli_opt *opts)
{
    fprintf(out, "Usage: hermes-llm %s %s\n\n%s\n\nOptions:\n", cmd, synopsis, description);
    for (const struct cli_opt *o = opts; o->name; o++) {
        char left[64];
        if (o->short_name)
            snprintf(left, sizeof left, "-%c, --%s%s%s", o->short_name, o->name,
                     o->metavar ? " " : "", o->metavar ? o->metavar : "");
        else
            snprintf(left, sizeof left, "    --%s%s%s", o->name, o->metavar ? " " : "",
                     o->metavar ? o->metavar : "");
        fprintf(out, "  %-30s %s", left, o->help);
        if (o->defval)
            fprintf(out, " (default: %s)", o->defval);
        fputc('\n', out);
    }
    fprintf(out, "  %-30s %s\n", "-h, --help", "Print this help and exit");
}

bool cli_stderr_is_tty(void)
{
    return isatty(2);
}

enum hm_status cli_resolve_dtype(const char *cmd, const char *spec, const char *device, enum hm_dtype *out)
{
    if (strcmp(spec, "auto") == 0)
        *out = strncmp(device, "cuda", 4) == 0 ? HM_DTYPE_BF16 : HM_DTYPE_F32;
    else if (strcmp(spec, "f32") == 0)
        *out = HM_DTYPE_F32;
    else if (strcmp(spec, "bf16") == 0)
        *out = HM_DTYPE_BF16;
    else
        return hm_fail(HM_ERR_USAGE, "%s: --dtype: expected auto, f32 or bf16, got '%s'", cmd, spec);
    return HM_OK;
}

enum hm_status cli_resolve_gen_dtype(const char *cmd, const char *spec, const char *device,
                                     enum hm_dtype *out)
{
    bool cpu = strcmp(device, "cpu") == 0;
    if (strcmp(spec, "q8_0") == 0) {
        if (!cpu)
            return hm_fail(HM_ERR_USAGE, "%s: --dtype q8_0 runs on the cpu only, not on %s", cmd,
                           device);
        *out = HM_DTYPE_Q8_0;
        return HM_OK;
    }
    if (strcmp(spec, "auto") != 0 && strcmp(spec, "f32") != 0 && strcmp(spec, "bf16") != 0)
        return hm_fail(HM_ERR_USAGE, "%s: --dtype: expected auto, f32, bf16 or q8_0, got '%s'", cmd,
                       spec);
    return cli_resolve_dtype(cmd, spec, device, out);
}

enum hm_status cli_resolve_device(const char *cmd, const char *spec, char *out, size_t cap)
{
    if (strcmp(spec, "auto") == 0) {
        snprintf(out, cap, "%s", hm_cuda_device_count() > 0 ? "cuda" : "cpu");
        return HM_OK;
    }
    struct hm_device_spec d;
    if (hm_device_parse(spec, &d) != HM_OK)
        return hm_fail(HM_ERR_USAGE, "%s: --device: expected auto, cpu, cuda or cuda:N, got '%s'", cmd, spec);
    snprintf(out, cap, "%s", spec);
    return HM_OK;
}

void cli_print_quoted(FILE *out, const char *arg)
{
    bool plain = *arg != 0;
    for (const char *c = arg; *c && plain; c++)
        plain = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-",
                       *c) != NULL;
    if (plain) {
        fprintf(out, " %s", arg);
        return;
    }
    fputs(" '", out);
    for (const char *c = arg; *c; c++) {
        if (*c == '\'')
            fputs("'\\''", out); /* close, escaped quote, reopen */
        else
            fputc(*c, out);
    }
    fputc('\'', out);
}

enum hm_status cli_parse_usage(const char *cmd, const char *synopsis, const char *description,
                               const struct cli_opt *opts, int argc, char **argv, bool *help)
{
    enum hm_status st = cli_parse(cmd, opts, argc, argv, help);
    if (st == HM_OK && *help)
        cli_usage(stdout, cmd, synopsis, description, opts);
    return st;
}
