/* progress.c - the terminal progress line (progress.h). */
#include "progress.h"

#include "util/util.h"

#include <stdio.h>
#include <unistd.h>

void cli_progress_begin(struct cli_progress *p, const char *label, uint64_t total)
{
    p->label = label;
    p->total = total;
    p->start = hm_time_s();
    p->last_draw = 0;
    p->tty = isatty(2);
    p->drawn = false;
}

void cli_progress_set_total(struct cli_progress *p, uint64_t total)
{
    p->total = total;
}

static void fmt_time(double s, char *buf, size_t cap)
{
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

void cli_progress_update(struct cli_progress *p, uint64_t done, const char *msg)
{
    if (!p->tty)
        return;
    double now = hm_time_s();
    if (now - p->last_draw < 0.1 && done < p->total)
        return;
    p->last_draw = now;
    enum { WIDTH = 24 };
    char bar[WIDTH + 1];
    double frac = p->total ? (double)done / (double)p->total : 0;
    if (frac > 1)
        frac = 1;
    int fill = (int)(frac * WIDTH);
    for (int i = 0; i < WIDTH; i++)
        bar[i] = i < fill ? '#' : '-';
    bar[WIDTH] = 0;
    char eta[32] = "?", el[32];
    double elapsed = now - p->start;
    if (done > 0 && p->total)
        fmt_time(elapsed * (double)(p->total - (done < p->total ? done : p->total)) / (double)done, eta,
                 sizeof eta);
    fmt_time(elapsed, el, sizeof el);
    fprintf(stderr, "\r\033[K%s [%s] %llu/%llu %s  %s<%s", p->label, bar, (unsigned long long)done,
            (unsigned long long)p->total, msg ? msg : "", el, eta);
    fflush(stderr);
    p->drawn = true;
}

void cli_progress_end(struct cli_progress *p)
{
    if (p->drawn)
        fputc('\n', stderr);
    p->drawn = false;
}
