/* access-log.c - one stderr line per request (serve.h). */
#include "serve.h"

#include <stdio.h>
#include <unistd.h>

size_t hm_access_format(const struct hm_access_entry *e, char *buf, size_t cap)
{
    int n;
    if (e->prompt_tokens >= 0)
        n = snprintf(buf, cap, "serve: %s %s %d prompt=%d completion=%d %.1f ms\n", e->method,
                     e->path, e->status, e->prompt_tokens, e->completion_tokens, e->ms);
    else
        n = snprintf(buf, cap, "serve: %s %s %d %.1f ms\n", e->method, e->path, e->status, e->ms);
    if (n < 0 || cap < 2)
        return 0;
    size_t len = (size_t)n < cap ? (size_t)n : cap - 1; /* a long path was cut */
    for (size_t i = 0; i + 1 < len; i++) /* a decoded path may hold %0A: one entry, one line */
        if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
            buf[i] = '?';
    buf[len - 1] = '\n';
    return len;
}

void hm_access_log(const struct hm_access_entry *e)
{
    char line[512];
    size_t n = hm_access_format(e, line, sizeof line);
    ssize_t w = write(2, line, n); /* one write: concurrent lines never interleave */
    (void)w;
}
