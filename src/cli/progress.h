/*
 * progress.h - a one-line progress display for long work on a terminal: a bar, done/total, a
 * caller message and the time left, redrawn at most ten times a second on stderr. When stderr is
 * not a terminal it prints nothing; callers log plain lines instead.
 */
#ifndef HERMES_CLI_PROGRESS_H
#define HERMES_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

struct cli_progress {
    const char *label;
    uint64_t total;
    double start, last_draw;
    bool tty, drawn;
};

void cli_progress_begin(struct cli_progress *p, const char *label, uint64_t total);
void cli_progress_set_total(struct cli_progress *p, uint64_t total);
void cli_progress_update(struct cli_progress *p, uint64_t done, const char *msg);
void cli_progress_end(struct cli_progress *p); /* finish the line, if one was drawn */

#endif
