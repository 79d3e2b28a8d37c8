/* test-util.c - see testutil.h. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

char *tu_mkdtemp(void)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char *p = malloc(strlen(base) + 32);
    sprintf(p, "%s/hermes-test-XXXXXX", base);
    if (!mkdtemp(p))
        fail_msg("mkdtemp failed");
    return p;
}

void tu_rmdir(const char *path)
{
    char *cmd = malloc(strlen(path) + 16);
    sprintf(cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", path);
    free(cmd);
}

char *tu_tmpdir;

int tu_tmpdir_setup(void **state)
{
    (void)state;
    tu_tmpdir = tu_mkdtemp();
    return 0;
}

int tu_tmpdir_teardown(void **state)
{
    (void)state;
    tu_rmdir(tu_tmpdir);
    free(tu_tmpdir);
    tu_tmpdir = NULL;
    return 0;
}

char *tu_path(const char *dir, const char *name)
{
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

void tu_write(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

int tu_run(const char *cmd, char **out)
{
    char *full = malloc(strlen(cmd) + 16);
    sprintf(full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    free(full);
    assert_non_null(p);
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (n + 1 >= cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[n] = 0;
    int status = pclose(p);
    if (out)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int tu_cli(const char *args, char **out)
{
    char *cmd = malloc(strlen(HM_CLI_BIN) + strlen(args) + 8);
    sprintf(cmd, "'%s' %s", HM_CLI_BIN, args);
    int rc = tu_run(cmd, out);
    free(cmd);
    return rc;
}
