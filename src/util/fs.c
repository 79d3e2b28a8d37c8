/*
 * fs.c - whole-file reads, mkdir -p, and atomic writes (temp file, fsync, rename) so a crash at any
 * moment leaves the previous file intact.
 */

#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *file_kind(mode_t m)
{
    return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket"
         : S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device" : "not a regular file";
}

enum hm_status hm_open_regular(const char *path, int *fd_out, uint64_t *size_out)
{
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return hm_fail(HM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return hm_fail(HM_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return hm_fail(HM_ERR_IO, "%s: is %s, not a regular file", path, file_kind(sb.st_mode));
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    *fd_out = fd;
    if (size_out)
        *size_out = (uint64_t)sb.st_size;
    return HM_OK;
}

FILE *hm_fopen_regular(const char *path, uint64_t *size_out)
{
    int fd = -1;
    if (hm_open_regular(path, &fd, size_out) != HM_OK)
        return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        hm_fail(HM_ERR_NOMEM, "%s: cannot open: %s", path, strerror(errno));
        close(fd);
    }
    return f;
}

enum hm_status hm_read_file(const char *path, char **data, size_t *len)
{
    FILE *f = hm_fopen_regular(path, NULL);
    if (!f)
        return HM_ERR_IO;
    size_t cap = 1 << 16, n = 0;
    char *buf = hm_malloc(cap);
    if (!buf) {
        fclose(f);
        return hm_fail(HM_ERR_NOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = hm_realloc(buf, cap * 2);
            if (!nb) {
                hm_free(buf);
                fclose(f);
                return hm_fail(HM_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, cap * 2);
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        int e = errno;
        hm_free(buf);
        fclose(f);
        return hm_fail(HM_ERR_IO, "%s: read failed: %s", path, strerror(e));
    }
    fclose(f);
    buf[n] = 0;
    *data = buf;
    if (len)
        *len = n;
    return HM_OK;
}

bool hm_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

enum hm_status hm_mkdir_p(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return hm_fail(HM_ERR_USAGE, "invalid directory path '%s'", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return hm_fail(HM_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
            buf[i] = c;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return hm_fail(HM_ERR_IO, "%s: not a directory", path);
    if (access(path, W_OK) != 0)
        return hm_fail(HM_ERR_IO, "%s: directory is not writable: %s", path, strerror(errno));
    return HM_OK;
}

/* "<prefix>.tmp.<digits>" -> the pid, else 0. */
static long temp_pid(const char *name, const char *prefix)
{
    size_t np = prefix ? strlen(prefix) : 0;
    if (prefix && strncmp(name, prefix, np) != 0)
        return 0;
    const char *p = strstr(name + np, ".tmp."), *next;
    if (!p || (prefix && p != name + np))
        return 0;
    while ((next = strstr(p + 1, ".tmp.")))
        p = next;
    char *end;
    long pid = strtol(p + 5, &end, 10);
    return end != p + 5 && *end == 0 && pid > 0 ? pid : 0;
}

int hm_remove_dead_temps(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int removed = 0;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d))) {
        long pid = temp_pid(e->d_name, prefix);
        if (pid == 0 || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue; /* alive, or alive under another user (EPERM) */
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < (int)sizeof path &&
            unlink(path) == 0) {
            hm_log(HM_LOG_INFO, "removed %s, left by process %ld that no longer runs", path, pid);
            removed++;
        }
    }
    closedir(d);
    return removed;
}

/* The temp files of earlier writers of `path` that died before their rename. */
static void remove_dead_temps_of(const char *path)
{
    char *copy = hm_strdup(path), *copy2 = hm_strdup(path);
    if (copy && copy2)
        hm_remove_dead_temps(dirname(copy), basename(copy2));
    hm_free(copy);
    hm_free(copy2);
}

enum hm_status hm_atomic_open(struct hm_atomic_file *af, const char *path)
{
    memset(af, 0, sizeof *af);
    remove_dead_temps_of(path);
    size_t n = strlen(path) + 64;
    af->path = hm_strdup(path);
    af->tmp_path = hm_malloc(n);
    if (!af->path || !af->tmp_path) {
        hm_atomic_abort(af);
        return hm_fail(HM_ERR_NOMEM, "%s: out of memory", path);
    }
    snprintf(af->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp_path, "wb");
    if (!af->f) {
        enum hm_status st = hm_fail(HM_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        hm_free(af->tmp_path);
        af->tmp_path = NULL;
        hm_atomic_abort(af);
        return st;
    }
    return HM_OK;
}

static void fsync_dir_of(const char *path)
{
    char *copy = hm_strdup(path);
    if (!copy)
        return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    hm_free(copy);
}

enum hm_status hm_atomic_commit(struct hm_atomic_file *af)
{
    enum hm_status st = HM_OK;
    if (fflush(af->f) != 0 || ferror(af->f) || fsync(fileno(af->f)) != 0)
        st = hm_fail(HM_ERR_IO, "%s: write failed: %s", af->path, strerror(errno));
    if (fclose(af->f) != 0 && st == HM_OK)
        st = hm_fail(HM_ERR_IO, "%s: write failed: %s", af->path, strerror(errno));
    af->f = NULL;
    if (st == HM_OK && rename(af->tmp_path, af->path) != 0)
        st = hm_fail(HM_ERR_IO, "%s: rename failed: %s", af->path, strerror(errno));
    if (st == HM_OK)
        fsync_dir_of(af->path);
    else
        unlink(af->tmp_path);
    hm_free(af->path);
    hm_free(af->tmp_path);
    af->path = af->tmp_path = NULL;
    return st;
}

void hm_atomic_abort(struct hm_atomic_file *af)
{
    if (af->f)
        fclose(af->f);
    if (af->tmp_path)
        unlink(af->tmp_path);
    hm_free(af->path);
    hm_free(af->tmp_path);
    memset(af, 0, sizeof *af);
}

enum hm_status hm_write_file_atomic(const char *path, const void *data, size_t len)
{
    struct hm_atomic_file af;
    enum hm_status st = hm_atomic_open(&af, path);
    if (st != HM_OK)
        return st;
    if (len && fwrite(data, 1, len, af.f) != len) {
        st = hm_fail(HM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        hm_atomic_abort(&af);
        return st;
    }
    return hm_atomic_commit(&af);
}

double hm_time_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
