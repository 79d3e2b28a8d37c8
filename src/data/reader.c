/*
 * reader.c - corpus reader: file or stdin -> (optional gzip/zstd decompression) -> lines or
 * JSONL text fields. Input is read in 64 KiB blocks, or smaller ones for a small file (so opening
 * one costs a few KiB, not half a MiB of buffers); a line may be any length (the line buffer
 * grows). Invariant: buf[pos..len) holds decompressed bytes not yet returned.
 */
#include "data/reader.h"
#include "util/util.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#define BLOCK (1u << 16)
#define MIN_BLOCK (1u << 12)

enum codec { CODEC_NONE, CODEC_GZIP, CODEC_ZSTD };

struct hm_reader {
    char *path;
    FILE *f;
    bool is_stdin;
    enum codec codec;
    enum hm_reader_format format;
    char *field;
    gzFile gz;
    ZSTD_DCtx *zd;
    size_t block;       /* bytes read at a time: BLOCK, less for a small file */
    uint8_t *zin;       /* compressed input block (zstd), zin_cap bytes */
    size_t zin_cap;
    ZSTD_inBuffer zib;
    size_t zlast;       /* last ZSTD_decompressStream hint: 0 = at a frame end */
    bool zstarted;
    char *buf;          /* decompressed bytes */
    size_t pos, len, cap;
    bool eof;
    uint64_t line;
    uint64_t raw_read;
    uint64_t text_bytes; /* decompressed bytes produced so far */
    uint64_t max_bytes;
    uint64_t file_size;
    json_t *rec;
};

static bool ends_with(const char *s, size_t n, const char *suf)
{
    size_t k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

/* Append the next block of decompressed bytes to buf; sets eof when there are no more. */
static enum hm_status read_more(struct hm_reader *r)
{
    if (r->pos > 0) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->pos = 0;
    }
    if (r->cap - r->len < r->block) {
        size_t cap = r->cap ? r->cap * 2 : 2 * r->block;
        while (cap - r->len < r->block)
            cap *= 2;
        char *b = hm_realloc(r->buf, cap);
        if (!b)
            return hm_fail(HM_ERR_NOMEM, "%s: out of memory (line of %zu bytes)", r->path, r->len);
        r->buf = b;
        r->cap = cap;
    }
    size_t room = r->cap - r->len;
    if (r->codec == CODEC_NONE) {
        size_t got = fread(r->buf + r->len, 1, room, r->f);
        if (got == 0 && ferror(r->f))
            return hm_fail(HM_ERR_IO, "%s: read failed: %s", r->path, strerror(errno));
        if (r->raw_read == 0 && got >= 2 && r->is_stdin &&
            (((uint8_t)r->buf[r->len] == 0x1f && (uint8_t)r->buf[r->len + 1] == 0x8b) ||
             ((uint8_t)r->buf[r->len] == 0x28 && (uint8_t)r->buf[r->len + 1] == 0xb5)))
            return hm_fail(HM_ERR_UNSUPPORTED,
                           "<stdin>: compressed data on stdin is not supported; decompress it first (zcat, zstdcat)");
        r->len += got;
        r->raw_read += got;
        if (got == 0)
            r->eof = true;
        return HM_OK;
    }
    if (r->codec == CODEC_GZIP) {
        int got = gzread(r->gz, r->buf + r->len, (unsigned)HM_MIN(room, (size_t)1 << 30));
        if (got < 0) {
            int err;
            const char *msg = gzerror(r->gz, &err);
            return hm_fail(HM_ERR_IO, "%s: gzip: %s", r->path, msg);
        }
        if (got == 0) {
            int err;
            const char *msg = gzerror(r->gz, &err);
            if (err != Z_OK && err != Z_STREAM_END)
                return hm_fail(HM_ERR_IO, "%s: gzip: %s", r->path, msg);
            r->eof = true;
        }
        r->len += (size_t)got;
        r->raw_read = (uint64_t)gzoffset(r->gz);
        return HM_OK;
    }
    /* zstd */
    size_t produced = 0;
    while (produced == 0) {
        if (r->zib.pos == r->zib.size) {
            size_t got = fread(r->zin, 1, r->zin_cap, r->f);
            if (got == 0 && ferror(r->f))
                return hm_fail(HM_ERR_IO, "%s: read failed: %s", r->path, strerror(errno));
            r->raw_read += got;
            if (got == 0) {
                if (r->zstarted && r->zlast != 0)
                    return hm_fail(HM_ERR_IO, "%s: zstd: truncated file", r->path);
                r->eof = true;
                return HM_OK;
            }
            r->zib = (ZSTD_inBuffer){r->zin, got, 0};
        }
        ZSTD_outBuffer ob = {r->buf + r->len, room, 0};
        size_t ret = ZSTD_decompressStream(r->zd, &ob, &r->zib);
        if (ZSTD_isError(ret))
            return hm_fail(HM_ERR_IO, "%s: zstd: %s", r->path, ZSTD_getErrorName(ret));
        r->zstarted = true;
        r->zlast = ret;
        produced = ob.pos;
        r->len += ob.pos;
    }
    return HM_OK;
}

/* Fill buf with more decompressed bytes, within the caller's limit. */
static enum hm_status fill(struct hm_reader *r)
{
    size_t before = r->len - r->pos;
    enum hm_status st = read_more(r);
    if (st != HM_OK)
        return st;
    r->text_bytes += r->len - before;
    if (r->max_bytes && r->text_bytes > r->max_bytes)
        return hm_fail(HM_ERR_FORMAT, "%s: more than %llu bytes of text (the reader's limit)",
                       r->path, (unsigned long long)r->max_bytes);
    return HM_OK;
}

enum hm_status hm_reader_open(const char *path, const struct hm_reader_opts *opts,
                              struct hm_reader **out)
{
    struct hm_reader *r = hm_calloc(1, sizeof *r);
    if (!r)
        return hm_fail(HM_ERR_NOMEM, "out of memory (reader)");
    r->is_stdin = strcmp(path, "-") == 0;
    r->path = hm_strdup(r->is_stdin ? "<stdin>" : path);
    r->field = hm_strdup(opts && opts->text_field ? opts->text_field : "text");
    r->max_bytes = opts ? opts->max_bytes : 0;
    enum hm_status st = HM_OK;
    if (!r->path || !r->field) {
        st = hm_fail(HM_ERR_NOMEM, "out of memory (reader)");
        goto fail;
    }
    r->f = r->is_stdin ? stdin : hm_fopen_regular(path, &r->file_size);
    if (!r->f) {
        st = HM_ERR_IO;
        goto fail;
    }
    /* The smallest power of two above a small file's size (stdin's is unknown). */
    r->block = BLOCK;
    if (!r->is_stdin && r->file_size < BLOCK) {
        r->block = MIN_BLOCK;
        while (r->block <= r->file_size)
            r->block *= 2;
    }
    size_t n = strlen(path);
    size_t base = n;
    if (ends_with(path, n, ".gz") || ends_with(path, n, ".gzip")) {
        r->codec = CODEC_GZIP;
        base = n - (ends_with(path, n, ".gz") ? 3 : 5);
    } else if (ends_with(path, n, ".zst") || ends_with(path, n, ".zstd")) {
        r->codec = CODEC_ZSTD;
        base = n - (ends_with(path, n, ".zst") ? 4 : 5);
    }
    if (opts && opts->format != HM_READER_AUTO)
        r->format = opts->format;
    else
        r->format = (ends_with(path, base, ".jsonl") || ends_with(path, base, ".json"))
                        ? HM_READER_JSONL : HM_READER_LINES;
    if (r->codec == CODEC_GZIP) {
        int fd = dup(fileno(r->f));
        r->gz = fd >= 0 ? gzdopen(fd, "rb") : NULL;
        if (!r->gz) {
            st = hm_fail(HM_ERR_IO, "%s: cannot open gzip stream", r->path);
            goto fail;
        }
        gzbuffer(r->gz, (unsigned)HM_MAX(2 * r->block, 8192)); /* zlib's default: 8 KiB */
    } else if (r->codec == CODEC_ZSTD) {
        r->zd = ZSTD_createDCtx();
        r->zin_cap = HM_MIN(ZSTD_DStreamInSize(), r->block);
        r->zin = hm_malloc(r->zin_cap);
        if (!r->zd || !r->zin) {
            st = hm_fail(HM_ERR_NOMEM, "out of memory (zstd)");
            goto fail;
        }
    }
    *out = r;
    return HM_OK;
fail:
    hm_reader_free(r);
    return st;
}

void hm_reader_free(struct hm_reader *r)
{
    if (!r)
        return;
    if (r->gz)
        gzclose(r->gz);
    if (r->zd)
        ZSTD_freeDCtx(r->zd);
    hm_free(r->zin);
    if (r->f && !r->is_stdin)
        fclose(r->f);
    if (r->rec)
        json_decref(r->rec);
    hm_free(r->buf);
    hm_free(r->path);
    hm_free(r->field);
    hm_free(r);
}

/* Next raw line, newline kept; *line == NULL at the end. */
static enum hm_status next_line(struct hm_reader *r, const char **line, size_t *len)
{
    size_t scanned = r->pos;
    for (;;) {
        char *nl = r->len > scanned ? memchr(r->buf + scanned, '\n', r->len - scanned) : NULL;
        if (nl) {
            *line = r->buf + r->pos;
            *len = (size_t)(nl + 1 - (r->buf + r->pos));
            r->pos += *len;
            r->line++;
            return HM_OK;
        }
        if (r->eof) {
            if (r->pos == r->len) {
                *line = NULL;
                *len = 0;
                return HM_OK;
            }
            *line = r->buf + r->pos;
            *len = r->len - r->pos;
            r->pos = r->len;
            r->line++;
            return HM_OK;
        }
        size_t pending = r->len - r->pos;
        enum hm_status st = fill(r);
        if (st != HM_OK)
            return st;
        scanned = r->pos + pending;
    }
}

enum hm_status hm_reader_next(struct hm_reader *r, const char **text, size_t *len)
{
    if (r->rec) {
        json_decref(r->rec);
        r->rec = NULL;
    }
    for (;;) {
        const char *line;
        size_t n;
        enum hm_status st = next_line(r, &line, &n);
        if (st != HM_OK)
            return st;
        if (!line || r->format == HM_READER_LINES) {
            *text = line;
            *len = n;
            return HM_OK;
        }
        size_t i = 0;
        while (i < n && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r' || line[i] == '\n'))
            i++;
        if (i == n)
            continue; /* blank line */
        json_error_t err;
        json_t *o = json_loadb(line, n, JSON_DISABLE_EOF_CHECK | JSON_ALLOW_NUL, &err);
        if (!o)
            return hm_fail(HM_ERR_FORMAT, "%s:%llu: invalid JSON: %s", r->path,
                           (unsigned long long)r->line, err.text);
        /* Anything after the record other than whitespace is an error. */
        for (size_t k = (size_t)err.position; k < n; k++)
            if (line[k] != ' ' && line[k] != '\t' && line[k] != '\r' && line[k] != '\n') {
                json_decref(o);
                return hm_fail(HM_ERR_FORMAT, "%s:%llu: invalid JSON: extra data after the record",
                               r->path, (unsigned long long)r->line);
            }
        json_t *f = json_is_object(o) ? json_object_get(o, r->field) : NULL;
        if (!json_is_object(o) || !f) {
            json_decref(o);
            return hm_fail(HM_ERR_FORMAT, "%s:%llu: record has no \"%s\" field", r->path,
                           (unsigned long long)r->line, r->field);
        }
        if (!json_is_string(f)) {
            json_decref(o);
            return hm_fail(HM_ERR_FORMAT, "%s:%llu: \"%s\" is not a string", r->path,
                           (unsigned long long)r->line, r->field);
        }
        r->rec = o;
        *text = json_string_value(f);
        *len = json_string_length(f);
        return HM_OK;
    }
}

uint64_t hm_reader_bytes_read(const struct hm_reader *r)
{
    return r->raw_read;
}

uint64_t hm_reader_file_size(const struct hm_reader *r)
{
    return r->file_size;
}

uint64_t hm_reader_line(const struct hm_reader *r)
{
    return r->line;
}

enum hm_status hm_reader_foreach(const char *path, const struct hm_reader_opts *opts,
                                 hm_reader_fn fn, void *user)
{
    struct hm_reader *r;
    enum hm_status st = hm_reader_open(path, opts, &r);
    if (st != HM_OK)
        return st;
    const char *text;
    size_t len;
    while ((st = hm_reader_next(r, &text, &len)) == HM_OK && text)
        if ((st = fn(user, text, len)) != HM_OK)
            break;
    hm_reader_free(r);
    return st;
}
