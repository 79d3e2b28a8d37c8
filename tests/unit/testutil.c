/* test-util.c - see testutil.h. */
#include "testutil.h"

#include "hermes/backend.h"
#include "hermes/model.h"

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

int tu_cuda_device(void)
{
    const char *dev = getenv("HM_CUDA_DEVICE");
    int device = dev ? atoi(dev) : 0;
    struct hm_backend *probe = NULL;
    if (hm_backend_cuda_new(device, &probe) != HM_OK) {
        printf("SKIPPED: no CUDA device (%s)\n", hm_last_error());
        return -1;
    }
    hm_backend_free(probe);
    return device;
}

void tu_cpu_model(const struct hm_model_config *c, uint64_t seed, struct hm_backend **be,
                  struct hm_model **m)
{
    assert_int_equal(hm_backend_cpu_new(be), HM_OK);
    assert_int_equal(hm_model_new(c, *be, m), HM_OK);
    assert_int_equal(hm_model_init_weights(*m, seed), HM_OK);
}
