/* mmap.c - read-only file mappings (checkpoints, token caches) and the FNV-1a hash for cache keys. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum hm_status hm_mmap_open(const char *path, struct hm_mmap *m)
{
    m->data = NULL;
    m->size = 0;
    int fd;
    uint64_t size;
    enum hm_status st = hm_open_regular(path, &fd, &size);
    if (st != HM_OK)
        return st;
    if (size > SIZE_MAX) {
        close(fd);
        return hm_fail(HM_ERR_IO, "%s: file too large to map", path);
    }
    m->size = (size_t)size;
    if (m->size == 0) {
        close(fd);
        return HM_OK;
    }
    void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) {
        m->size = 0;
        return hm_fail(HM_ERR_IO, "%s: cannot map: %s", path, strerror(e));
    }
    m->data = p;
    return HM_OK;
}

void hm_mmap_close(struct hm_mmap *m)
{
    if (m->data)
        munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

uint64_t hm_hash64(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
