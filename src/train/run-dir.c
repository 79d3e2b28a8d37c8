/*
 * run-dir.c - output folder safety (run-dir.h): an advisory flock on <dir>/.hermes.lock whose
 * file also holds the holder's pid, host and command line for the refusal message; the
 * resumable-run check; stale temp file removal; output-is-an-input refusal.
 */
#include "hermes/run-dir.h"
#include "util/util.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOCK_NAME ".hermes.lock"

struct hm_run_lock {
    int fd;
};

/* "pid 123 on host, `hermes-llm train ...`" from /proc/self, for the lock file. */
static void describe_self(char *buf, size_t cap)
{
    char host[256] = "?", cmd[512] = "";
    gethostname(host, sizeof host - 1);
    FILE *f = fopen("/proc/self/cmdline", "rb");
    if (f) {
        size_t n = fread(cmd, 1, sizeof cmd - 1, f);
        fclose(f);
        for (size_t i = 0; i + 1 < n; i++)
            if (cmd[i] == 0)
                cmd[i] = ' ';
        cmd[n] = 0;
    }
    snprintf(buf, cap, "pid %ld on %s, `%s`", (long)getpid(), host, cmd);
}

enum hm_status hm_run_lock_acquire(const char *dir, struct hm_run_lock **out)
{
    *out = NULL;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, LOCK_NAME) >= (int)sizeof path)
        return hm_fail(HM_ERR_USAGE, "%s: path too long", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return hm_fail(HM_ERR_IO, "%s: cannot create the lock file: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char holder[600] = "";
        ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
        holder[n > 0 ? n : 0] = 0;
        holder[strcspn(holder, "\n")] = 0;
        close(fd);
        if (e == EWOULDBLOCK)
            return hm_fail(HM_ERR_IO, "%s: in use by another run (%s); wait for it or use another "
                           "--output", dir, holder[0] ? holder : "holder unknown");
        return hm_fail(HM_ERR_IO, "%s: cannot lock: %s", path, strerror(e));
    }
    char me[600];
    describe_self(me, sizeof me);
    size_t len = strlen(me);
    me[len++] = '\n';
    /* Should this fail, the lock still holds; only a refusal message would be vaguer. */
    (void)!ftruncate(fd, 0);
    (void)!pwrite(fd, me, len, 0);
    struct hm_run_lock *lk = hm_malloc(sizeof *lk);
    if (!lk) {
        close(fd);
        return hm_fail(HM_ERR_NOMEM, "out of memory");
    }
    lk->fd = fd;
    *out = lk;
    return HM_OK;
}

void hm_run_lock_release(struct hm_run_lock *lk)
{
    if (!lk)
        return;
    /* The file stays (unlinking it would let a third run lock a new inode while a second holds
     * the old one); emptying it drops the stale description. */
    (void)!ftruncate(lk->fd, 0);
    close(lk->fd);
    hm_free(lk);
}

enum hm_status hm_run_dir_check_new(const char *dir, bool resume, bool overwrite)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/state.safetensors", dir);
    if (resume || overwrite || !hm_file_exists(path))
        return HM_OK;
    return hm_fail(HM_ERR_USAGE, "%s holds a resumable run (state.safetensors): continue it with "
                   "--resume, or pass --overwrite to start over and replace it", dir);
}

int hm_remove_stale_temps(const char *dir)
{
    return hm_remove_dead_temps(dir, NULL);
}

enum hm_status hm_run_dir_open(const char *dir, bool resume, bool overwrite,
                               struct hm_run_lock **lock)
{
    *lock = NULL;
    enum hm_status st = hm_mkdir_p(dir);
    if (st != HM_OK)
        return st;
    if ((st = hm_run_lock_acquire(dir, lock)) != HM_OK)
        return st;
    if ((st = hm_run_dir_check_new(dir, resume, overwrite)) != HM_OK) {
        hm_run_lock_release(*lock);
        *lock = NULL;
        return st;
    }
    hm_remove_stale_temps(dir);
    return HM_OK;
}

/* What a run writes into its folder (the trainer's and the CLI's outputs). */
static const char *const run_outputs[] = {
    "config.json", "state.safetensors", "weights.safetensors", "metrics.jsonl", "loss.svg",
    "tokens-train.bin", "tokens-val.bin", "tokens-train.flags", "tokens-val.flags",
};

static bool same_file(const char *a, const char *b);

enum hm_status hm_run_dir_check_inputs(const char *dir, const char *in_flag,
                                       const char *const *inputs, size_t n_inputs)
{
    char path[4096];
    for (size_t i = 0; i < HM_ARRAY_LEN(run_outputs); i++) {
        snprintf(path, sizeof path, "%s/%s", dir, run_outputs[i]);
        for (size_t k = 0; k < n_inputs; k++)
            if (strcmp(inputs[k], "-") != 0 && same_file(path, inputs[k]))
                return hm_fail(HM_ERR_USAGE, "%s %s is a file this run writes in --output %s: "
                               "refusing to overwrite it", in_flag, inputs[k], dir);
    }
    for (size_t k = 0; k < n_inputs; k++) { /* checkpoint_*.safetensors */
        const char *base = strrchr(inputs[k], '/');
        base = base ? base + 1 : inputs[k];
        snprintf(path, sizeof path, "%s/%s", dir, base);
        if (strncmp(base, "checkpoint_", 11) == 0 && same_file(path, inputs[k]))
            return hm_fail(HM_ERR_USAGE, "%s %s is a file this run writes in --output %s: "
                           "refusing to overwrite it", in_flag, inputs[k], dir);
    }
    return HM_OK;
}

static bool same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) == 0 && stat(b, &sb) == 0)
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    return strcmp(a, b) == 0;
}

enum hm_status hm_check_output_not_input(const char *flag, const char *output,
                                         const char *in_flag, const char *const *inputs,
                                         size_t n_inputs)
{
    for (size_t i = 0; i < n_inputs; i++)
        if (strcmp(inputs[i], "-") != 0 && same_file(output, inputs[i]))
            return hm_fail(HM_ERR_USAGE, "%s %s is also an input (%s %s): refusing to overwrite it",
                           flag, output, in_flag, inputs[i]);
    return HM_OK;
}

enum hm_status hm_check_output_not_holding(const char *flag, const char *output,
                                           const char *in_flag, const char *const *inputs,
                                           size_t n_inputs)
{
    struct stat so;
    if (stat(output, &so) != 0) /* a new output holds nothing yet */
        return hm_check_output_not_input(flag, output, in_flag, inputs, n_inputs);
    for (size_t i = 0; i < n_inputs; i++) {
        char real[PATH_MAX];
        if (!inputs[i] || strcmp(inputs[i], "-") == 0 || !realpath(inputs[i], real))
            continue;
        /* The input itself, then each folder above it up to the root. */
        for (bool self = true;; self = false) {
            struct stat sa;
            if (stat(real, &sa) == 0 && sa.st_dev == so.st_dev && sa.st_ino == so.st_ino)
                return hm_fail(HM_ERR_USAGE, "%s %s %s the input %s %s: refusing to replace it",
                               flag, output, self ? "is" : "holds", in_flag, inputs[i]);
            char *slash = strrchr(real, '/');
            if (!slash || (slash == real && real[1] == 0))
                break;
            slash[slash == real] = 0; /* "/a" -> "/", "/a/b" -> "/a" */
        }
    }
    return HM_OK;
}
