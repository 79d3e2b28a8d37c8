/*
 * reader.h - internal: read a text corpus file as a stream of sequences. Used by the tokenizer
 * trainer and the training data pipeline.
 *
 * A path (or "-" for stdin) is opened, decompressed by extension (.gz/.gzip: zlib, .zst/.zstd:
 * zstd; compressed data on stdin is refused with a clear error), and yields either lines (newline kept, as HF's
 * train(files) reads them) or the text field of each JSONL record. Errors name the file and
 * line. The yielded text is borrowed and valid until the next call.
 *
 *     struct hm_reader *r;
 *     if (hm_reader_open("corpus.jsonl.zst", NULL, &r) != HM_OK) ...
 *     const char *text; size_t len;
 *     while ((st = hm_reader_next(r, &text, &len)) == HM_OK && text) use(text, len);
 *     hm_reader_free(r);
 */
#ifndef HERMES_DATA_READER_H
#define HERMES_DATA_READER_H

#include "hermes/hermes.h"

enum hm_reader_format {
    HM_READER_AUTO = 0, /* by extension: .jsonl/.json (before any compression suffix) = JSONL */
    HM_READER_LINES,
    HM_READER_JSONL,
};

struct hm_reader_opts {
    enum hm_reader_format format;
    const char *text_field; /* JSONL: the field holding the text; NULL = "text" */
    /* Stop with HM_ERR_FORMAT once the (decompressed) text exceeds this many bytes; 0 = no
     * limit. A guard against decompression bombs where the caller wants one (the fuzz target). */
    uint64_t max_bytes;
};

struct hm_reader;

/* HM_ERR_IO when the file cannot be opened. opts may be NULL. */
enum hm_status hm_reader_open(const char *path, const struct hm_reader_opts *opts,
                              struct hm_reader **out);
/* Next sequence: HM_OK with *text set, or HM_OK with *text == NULL at the end.
 * Errors: HM_ERR_IO (read or decompression failure, truncated file), HM_ERR_FORMAT (bad JSON,
 * missing or non-string field), with "path:line: ..." in the message. Blank JSONL lines are
 * skipped; a record whose text is empty yields len 0. */
enum hm_status hm_reader_next(struct hm_reader *r, const char **text, size_t *len);
/* Bytes consumed from the underlying file so far (compressed bytes for .gz/.zst). */
uint64_t hm_reader_bytes_read(const struct hm_reader *r);
/* Size of the underlying file, or 0 when unknown (stdin, pipes). */
uint64_t hm_reader_file_size(const struct hm_reader *r);
/* 1-based number of the line last read. */
uint64_t hm_reader_line(const struct hm_reader *r);
void hm_reader_free(struct hm_reader *r);

/* Call fn for every sequence of the file; stops at the first non-OK status (fn's or the reader's). */
typedef enum hm_status (*hm_reader_fn)(void *user, const char *text, size_t len);
enum hm_status hm_reader_foreach(const char *path, const struct hm_reader_opts *opts,
                                 hm_reader_fn fn, void *user);

#endif
