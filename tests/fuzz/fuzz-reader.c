/* fuzz-reader - the corpus reader (lines, JSONL, gzip, zstd) on arbitrary bytes. The first byte
 * picks the file name suffix, the rest is the file. Every call ends with a status, never a hang
 * or an out-of-bounds read; yielded text is read in full so ASan sees any overrun. */
#include "data/reader.h"

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
    if (hm_reader_open(path, NULL, &r) == HM_OK) {
        const char *text;
        size_t len;
        unsigned sum = 0;
        while (hm_reader_next(r, &text, &len) == HM_OK && text)
            for (size_t i = 0; i < len; i++)
                sum += (unsigned char)text[i];
        (void)sum;
        hm_reader_free(r);
    }
    unlink(path);
    return 0;
}
