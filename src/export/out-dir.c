/*
 * out-dir.c - output folders written atomically: every file goes into "<path>.tmp.<pid>" (each
 * itself through a temp file + fsync), then one rename puts the folder in place. Replacing an
 * existing folder moves it aside first and deletes it only after the new one is in place, so a
 * crash leaves either the old folder or the new one under `path`, never a mix.
 */
#include "export-impl.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <string.h>
#include <unistd.h>

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void remove_tree(const char *path)
{
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

enum hm_status hm_out_dir_open(struct hm_out_dir *d, const char *path, bool replace)
{
    memset(d, 0, sizeof *d);
    if ((size_t)snprintf(d->path, sizeof d->path, "%s", path) >= sizeof d->path)
        return hm_fail(HM_ERR_USAGE, "%s: path too long", path);
    for (size_t n = strlen(d->path); n > 1 && d->path[n - 1] == '/'; n--)
        d->path[n - 1] = 0; /* "out/" names the folder, not a place inside it */
    if (hm_file_exists(d->path) && !replace)
        return hm_fail(HM_ERR_USAGE, "%s already exists (use --force to replace it)", d->path);
    snprintf(d->tmp, sizeof d->tmp, "%s.tmp.%ld", d->path, (long)getpid());
    remove_tree(d->tmp); /* a leftover of an earlier process with our pid */
    enum hm_status st = hm_mkdir_p(d->tmp);
    if (st != HM_OK)
        d->tmp[0] = 0;
    return st;
}

const char *hm_out_dir_file(const struct hm_out_dir *d, const char *name, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s", d->tmp, name);
    return buf;
}

static void fsync_parent(const char *path)
{
    char *copy = hm_strdup(path);
    int fd = copy ? open(dirname(copy), O_RDONLY | O_DIRECTORY) : -1;
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    hm_free(copy);
}

enum hm_status hm_out_dir_commit(struct hm_out_dir *d)
{
    char old[4200] = "";
    if (hm_file_exists(d->path)) {
        snprintf(old, sizeof old, "%s.old.%ld", d->path, (long)getpid());
        if (rename(d->path, old) != 0) {
            enum hm_status st = hm_fail(HM_ERR_IO, "%s: cannot move the old output aside: %s",
                                        d->path, strerror(errno));
            hm_out_dir_abort(d);
            return st;
        }
    }
    if (rename(d->tmp, d->path) != 0) {
        enum hm_status st = hm_fail(HM_ERR_IO, "%s: rename failed: %s", d->path, strerror(errno));
        if (old[0])
            rename(old, d->path);
        hm_out_dir_abort(d);
        return st;
    }
    fsync_parent(d->path);
    if (old[0])
        remove_tree(old);
    d->tmp[0] = 0;
    return HM_OK;
}

void hm_out_dir_abort(struct hm_out_dir *d)
{
    if (d->tmp[0])
        remove_tree(d->tmp);
    d->tmp[0] = 0;
}
