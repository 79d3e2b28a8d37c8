/*
 * test-reader.c - the corpus reader: lines keep their newline (CRLF too, last line without one),
 * JSONL yields the text field (any field name), .gz and .zst decompress transparently (a small
 * compressed file of one long line too), and bad input gives errors that name the file and line;
 * max_bytes stops a file whose text outgrows it.
 */
#include "testutil.h"

#include "data/reader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *collect(const char *path, const struct hm_reader_opts *o, enum hm_status *st)
{
    struct hm_reader *r;
    *st = hm_reader_open(path, o, &r);
    if (*st != HM_OK)
        return NULL;
    char *out = calloc(1, 1 << 16);
    size_t n = 0;
    const char *t;
    size_t l;
    while ((*st = hm_reader_next(r, &t, &l)) == HM_OK && t) {
        memcpy(out + n, t, l);
        n += l;
        out[n++] = '|';
    }
    hm_reader_free(r);
    return out;
}

/* Reading path yields exactly `want`: the records, each followed by '|'. */
static void expect_records(const char *path, const struct hm_reader_opts *o, const char *want)
{
    enum hm_status st;
    char *got = collect(path, o, &st);
    assert_int_equal(st, HM_OK);
    assert_string_equal(got, want);
    free(got);
}

/* Reading path fails with `want`, and the error names `needle`. */
static void expect_error(const char *path, const struct hm_reader_opts *o, enum hm_status want,
                         const char *needle)
{
    enum hm_status st;
    free(collect(path, o, &st));
    assert_int_equal(st, want);
    assert_non_null(strstr(hm_last_error(), needle));
}

static void test_lines_and_compression(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp();
    char *txt = tu_path(dir, "a.txt");
    const char *body = "one\ntwo\r\n\nlast";
    tu_write(txt, body, strlen(body));
    expect_records(txt, NULL, "one\n|two\r\n|\n|last|");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cd '%s' && gzip -k a.txt && zstd -q -k a.txt", dir);
    if (tu_run(cmd, NULL) == 0) {
        char *gz = tu_path(dir, "a.txt.gz"), *zs = tu_path(dir, "a.txt.zst");
        expect_records(gz, NULL, "one\n|two\r\n|\n|last|");
        expect_records(zs, NULL, "one\n|two\r\n|\n|last|");
        /* Truncated compressed files are errors, not short corpora. */
        snprintf(cmd, sizeof cmd, "cd '%s' && head -c 20 a.txt.gz > t.gz && head -c 12 a.txt.zst > t.zst", dir);
        assert_int_equal(tu_run(cmd, NULL), 0);
        char *tg = tu_path(dir, "t.gz"), *tz = tu_path(dir, "t.zst");
        expect_error(tg, NULL, HM_ERR_IO, "t.gz");
        expect_error(tz, NULL, HM_ERR_IO, "t.zst");
        free(gz);
        free(zs);
        free(tg);
        free(tz);
    }
    expect_error("/nonexistent/x.txt", NULL, HM_ERR_IO, "/nonexistent/x.txt");
    tu_rmdir(dir);
    free(txt);
    free(dir);
}

static void test_jsonl(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp();
    char *p = tu_path(dir, "d.jsonl");
    const char *body = "{\"text\":\"a\\nb\",\"x\":1}\n\n  \n{\"text\":\"\",\"body\":\"B\"}\n{\"text\":\"\\u00e9\"}";
    tu_write(p, body, strlen(body));
    expect_records(p, NULL, "a\nb||\xc3\xa9|");
    struct hm_reader_opts o = {.text_field = "body"};
    expect_error(p, &o, HM_ERR_FORMAT, "d.jsonl:1");
    assert_non_null(strstr(hm_last_error(), "body"));
    const char *bad[] = {"{\"text\":1}\n", "{\"text\":\"a\"} x\n", "[1]\n", "{\"text\":\"a\"\n"};
    for (size_t i = 0; i < 4; i++) {
        tu_write(p, bad[i], strlen(bad[i]));
        expect_error(p, NULL, HM_ERR_FORMAT, "d.jsonl:1:");
    }
    /* --format overrides the extension. */
    o = (struct hm_reader_opts){.format = HM_READER_LINES};
    tu_write(p, "{\"text\":1}\n", 11);
    expect_records(p, &o, "{\"text\":1}\n|");
    tu_rmdir(dir);
    free(p);
    free(dir);
}

static void test_long_line(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp();
    char *p = tu_path(dir, "long.txt");
    size_t n = 3u << 20;
    char *big = malloc(n);
    memset(big, 'x', n);
    big[n - 1] = '\n';
    tu_write(p, big, n);
    struct hm_reader *r;
    assert_int_equal(hm_reader_open(p, NULL, &r), HM_OK);
    const char *t;
    size_t l;
    assert_int_equal(hm_reader_next(r, &t, &l), HM_OK);
    assert_int_equal(l, n);
    assert_int_equal(hm_reader_next(r, &t, &l), HM_OK);
    assert_null(t);
    assert_int_equal(hm_reader_file_size(r), n);
    hm_reader_free(r);
    /* Compressed to a few KiB, the file is read in small blocks; the line still comes whole. */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cd '%s' && gzip -k long.txt && zstd -q -k long.txt", dir);
    if (tu_run(cmd, NULL) == 0) {
        static const char *const names[] = {"long.txt.gz", "long.txt.zst"};
        for (size_t i = 0; i < 2; i++) {
            char *z = tu_path(dir, names[i]);
            assert_int_equal(hm_reader_open(z, NULL, &r), HM_OK);
            assert_true(hm_reader_file_size(r) < 65536);
            assert_int_equal(hm_reader_next(r, &t, &l), HM_OK);
            assert_int_equal(l, n);
            assert_true(t[0] == 'x' && t[n - 2] == 'x' && t[n - 1] == '\n');
            assert_int_equal(hm_reader_next(r, &t, &l), HM_OK);
            assert_null(t);
            hm_reader_free(r);
            free(z);
        }
    }
    free(big);
    tu_rmdir(dir);
    free(p);
    free(dir);
}

/* max_bytes stops a file whose text outgrows it, counted before decompression ends and across
 * blank JSONL lines that never reach the caller; a file of exactly max_bytes reads in full. */
static void test_max_bytes(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp();
    char *p = tu_path(dir, "blank.jsonl");
    size_t n = 1u << 20;
    char *blank = malloc(n);
    memset(blank, '\n', n);
    tu_write(p, blank, n);
    struct hm_reader_opts o = {.max_bytes = n - 1};
    expect_error(p, &o, HM_ERR_FORMAT, "blank.jsonl: more than 1048575 bytes");
    o.max_bytes = n;
    expect_records(p, &o, "");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cd '%s' && gzip -k blank.jsonl", dir);
    if (tu_run(cmd, NULL) == 0) {
        char *gz = tu_path(dir, "blank.jsonl.gz");
        o.max_bytes = 1000; /* ~1 KB of gzip expands to 1 MiB */
        expect_error(gz, &o, HM_ERR_FORMAT, "blank.jsonl.gz: more than 1000 bytes");
        free(gz);
    }
    free(blank);
    tu_rmdir(dir);
    free(p);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_and_compression),
        cmocka_unit_test(test_jsonl),
        cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_max_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
