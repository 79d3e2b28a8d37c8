/*
 * testutil.h - helpers shared by the cmocka tests: temporary folders, writing files, and running
 * the hermes-llm binary with its exit code and captured output.
 */
#ifndef HERMES_TESTUTIL_H
#define HERMES_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hermes/hermes.h"

/* A fresh folder under $TMPDIR, removed by tu_rmdir. Returns a static-lifetime heap string. */
char *tu_mkdtemp(void);
void tu_rmdir(const char *path);
/* cmocka group setup/teardown: tu_tmpdir is a fresh folder for the group's tests, removed after. */
extern char *tu_tmpdir;
int tu_tmpdir_setup(void **state);
int tu_tmpdir_teardown(void **state);
/* Join dir and name into a heap string (free with free()). */
char *tu_path(const char *dir, const char *name);
void tu_write(const char *path, const void *data, size_t len);
/* Run a shell command; returns its exit code, and its stdout+stderr in *out (free()) if out. */
int tu_run(const char *cmd, char **out);
/* Run the hermes-llm binary with the given argument string. */
int tu_cli(const char *args, char **out);

#endif
