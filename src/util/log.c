/* log.c - leveled logging through a replaceable callback; the default writes to stderr. */
#include "util.h"

#include <stdio.h>

static void log_stderr(enum hm_log_level level, const char *msg, void *user)
{
    (void)user;
    if (level >= HM_LOG_WARN)
        fprintf(stderr, "hermes-llm: %s: %s\n", level == HM_LOG_WARN ? "warning" : "error", msg);
    else
        fprintf(stderr, "%s\n", msg);
}

static hm_log_fn log_fn = log_stderr;
static void *log_user;
static enum hm_log_level log_level = HM_LOG_INFO;

void hm_log_set(hm_log_fn fn, void *user)
{
    log_fn = fn ? fn : log_stderr;
    log_user = user;
}

void hm_log_set_level(enum hm_log_level level)
{
    log_level = level;
}

void hm_log(enum hm_log_level level, const char *fmt, ...)
{
    if (level < log_level)
        return;
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    log_fn(level, buf, log_user);
}
