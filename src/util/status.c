/* status.c - status strings, the thread-local last-error message, and the internal assert hook. */
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char last_error[1024];

const char *hm_version(void)
{
    return HM_VERSION_STRING;
}

const char *hm_status_str(enum hm_status st)
{
    switch (st) {
    case HM_OK: return "ok";
    case HM_ERR_USAGE: return "usage error";
    case HM_ERR_IO: return "I/O error";
    case HM_ERR_FORMAT: return "format error";
    case HM_ERR_MISMATCH: return "mismatch";
    case HM_ERR_NOMEM: return "out of memory";
    case HM_ERR_DEVICE: return "device error";
    case HM_ERR_UNSUPPORTED: return "unsupported";
    case HM_ERR_NUMERIC: return "numerical error";
    case HM_ERR_INTERRUPTED: return "interrupted";
    case HM_ERR_BUSY: return "busy";
    }
    return "unknown status";
}

const char *hm_last_error(void)
{
    return last_error[0] ? last_error : "no error";
}

enum hm_status hm_fail(enum hm_status st, const char *fmt, ...)
{
    /* Format into a scratch copy first: callers may pass hm_last_error() itself as an argument
     * to add context ("%s: %s", path, hm_last_error()). */
    char buf[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    memcpy(last_error, buf, sizeof buf);
    /* Keep the message on one line: the CLI prints it as "hermes-llm: error: <msg>". */
    for (char *p = last_error; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    return st;
}

void hm_assert_fail(const char *file, int line, const char *cond)
{
    fprintf(stderr, "hermes-llm: internal error: %s:%d: '%s' (please report)\n", file, line, cond);
    fflush(stderr);
    abort();
}
