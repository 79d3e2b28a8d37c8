/* fuzz-reader - the corpus reader (lines, JSONL, gzip, zstd) on arbitrary bytes. The first byte
 * picks the file name suffix, the rest is the file. Every call ends with a status, never a hang
 * or an out-of-bounds read; yielded text is checked in full against ASan's shadow memory.
 *
 * A zstd input of 100 bytes can expand to megabytes (RLE blocks), and under the sanitizers every
 * line costs microseconds: such inputs held the target at ~200 executions/s. The reader's
 * max_bytes limit stops each input at 256 KiB of text, four of the reader's 64 KiB blocks, so a
 * long line still makes the line buffer grow twice; past that a bomb only repeats the same code,
 * and the limit's error path is what ends it. */
#include "data/reader.h"

#include <sanitizer/asan_interface.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const suffixes[] = {".txt", ".jsonl", ".txt.gz", ".jsonl.gz", ".txt.zst",
                                       ".jsonl.zst"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[512];
    snprintf(path, sizeof path, "%s/hm-fuzz-reader-%ld%s", dir, (long)getpid(),
             suffixes[data[0] % (sizeof suffixes / sizeof *suffixes)]);
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (size > 1 && fwrite(data + 1, 1, size - 1, f) != size - 1)
        abort();
    fclose(f);
    struct hm_reader *r;
    struct hm_reader_opts opts = {.max_bytes = 4 * 65536};
    if (hm_reader_open(path, &opts, &r) == HM_OK) {
        const char *text;
        size_t len;
        while (hm_reader_next(r, &text, &len) == HM_OK && text)
            if (__asan_region_is_poisoned((void *)text, len))
                abort(); /* yielded text reaches outside its allocation */
        hm_reader_free(r);
    }
    unlink(path);
    return 0;
}
