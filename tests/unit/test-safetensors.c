/*
 * test-safetensors.c - the safetensors reader and writer: round trips (F32/BF16/I32 + metadata),
 * a file written by Python's `safetensors` (tests/reference/make_safetensors_fixture.py), a table
 * of handcrafted corrupt files that must each give one HM_ERR_FORMAT line naming the file (and the
 * tensor), every truncation and random header bit flips (no crash under ASan), and bit-exact
 * f32 -> bf16 rounding (ties to even, Inf, NaN, overflow, subnormals).
 */
#include "testutil.h"

#include "hermes/config.h"
#include "hermes/safetensors.h"
#include "hermes/tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t f32_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float bits_f32(uint32_t u)
{
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(*len ? *len : 1);
    assert_int_equal(fread(buf, 1, *len, f), *len);
    fclose(f);
    return buf;
}

/* ---- round trips --------------------------------------------------------------------------- */

static void test_roundtrip(void **state)
{
    float a[2 * 3] = {1.0f, -2.0f, 3.5f, 1e-30f, -INFINITY, 0.1f};
    float b[5] = {1.0f, 0.1f, -3.0f, 65504.0f, 1e38f};
    int32_t c[4] = {0, -1, 2147483647, -2147483647 - 1};
    float s = 7.25f;
    struct hm_st_entry e[] = {
        {.name = "layers.0.w", .dtype = HM_ST_F32, .ndim = 2, .shape = {2, 3}, .data = a},
        {.name = "b16", .dtype = HM_ST_BF16, .ndim = 1, .shape = {5}, .data = b, .data_is_f32 = true},
        {.name = "ids", .dtype = HM_ST_I32, .ndim = 4, .shape = {1, 2, 1, 2}, .data = c},
        {.name = "scalar", .dtype = HM_ST_F32, .ndim = 0, .data = &s},
        {.name = "empty", .dtype = HM_ST_F32, .ndim = 2, .shape = {0, 7}, .data = NULL},
    };
    struct hm_st_kv meta[] = {{"config", "{\"hidden_size\": 64}"}, {"step", "12"}};
    char *path = tu_path(tu_tmpdir, "rt.safetensors");
    assert_int_equal(hm_st_write(path, e, sizeof e / sizeof e[0], meta, 2), HM_OK);

    /* layout: 8-byte length, header multiple of 8, starts with '{', data packed */
    size_t len;
    unsigned char *raw = slurp(path, &len);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)raw[i] << (8 * i);
    assert_int_equal(hlen % 8, 0);
    assert_int_equal(raw[8], '{');
    assert_int_equal(len, 8 + hlen + sizeof a + 5 * 2 + sizeof c + 4);
    free(raw);

    struct hm_st_file *f;
    assert_int_equal(hm_st_open(path, &f), HM_OK);
    assert_int_equal(hm_st_count(f), 5);
    const char *order[] = {"layers.0.w", "b16", "ids", "scalar", "empty"};
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(hm_st_at(f, i)->name, order[i]);
    assert_string_equal(hm_st_meta(f, "format"), "pt"); /* added by the writer */
    assert_string_equal(hm_st_meta(f, "config"), "{\"hidden_size\": 64}");
    assert_string_equal(hm_st_meta(f, "step"), "12");
    assert_null(hm_st_meta(f, "nope"));
    assert_int_equal(hm_st_meta_count(f), 3);
    const char *k, *v;
    hm_st_meta_at(f, 0, &k, &v);
    assert_string_equal(k, "format");

    const struct hm_st_tensor *t = hm_st_find(f, "layers.0.w");
    assert_non_null(t);
    assert_int_equal(t->dtype, HM_ST_F32);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 2);
    assert_int_equal(t->shape[1], 3);
    assert_int_equal(t->numel, 6);
    assert_int_equal(t->nbytes, 24);
    assert_memory_equal(t->data, a, sizeof a);
    assert_int_equal((uintptr_t)t->data % 8, 0);

    float got[6];
    int64_t sh[2] = {2, 3};
    assert_int_equal(hm_st_read_f32(f, "layers.0.w", 2, sh, got), HM_OK);
    assert_memory_equal(got, a, sizeof a);

    float gb[5];
    int64_t sh5[1] = {5};
    assert_int_equal(hm_st_read_f32(f, "b16", 1, sh5, gb), HM_OK);
    for (int i = 0; i < 5; i++)
        assert_int_equal(f32_bits(gb[i]), f32_bits(hm_bf16_to_f32(hm_f32_to_bf16(b[i]))));
    assert_true(gb[0] == 1.0f && gb[2] == -3.0f);
    assert_true(fabsf(gb[1] - 0.1f) < 1e-3f);
    assert_true(gb[3] == 65536.0f); /* 65504 rounds up to 2^16 in bf16 */

    int32_t gc[4];
    int64_t shc[4] = {1, 2, 1, 2};
    assert_int_equal(hm_st_read_i32(f, "ids", 4, shc, gc), HM_OK);
    assert_memory_equal(gc, c, sizeof c);

    float gs;
    assert_int_equal(hm_st_read_f32(f, "scalar", 0, NULL, &gs), HM_OK);
    assert_true(gs == 7.25f);
    t = hm_st_find(f, "empty");
    assert_int_equal(t->numel, 0);
    assert_int_equal(t->nbytes, 0);

    /* mismatches */
    int64_t bad[2] = {3, 2};
    assert_int_equal(hm_st_read_f32(f, "layers.0.w", 2, bad, got), HM_ERR_MISMATCH);
    assert_non_null(strstr(hm_last_error(), "'layers.0.w'"));
    assert_non_null(strstr(hm_last_error(), "expected shape [3, 2], got [2, 3]"));
    assert_non_null(strstr(hm_last_error(), path));
    assert_int_equal(hm_st_read_f32(f, "ids", 4, shc, got), HM_ERR_MISMATCH);
    assert_non_null(strstr(hm_last_error(), "I32"));
    assert_int_equal(hm_st_read_f32(f, "missing", 2, sh, got), HM_ERR_MISMATCH);
    assert_non_null(strstr(hm_last_error(), "no tensor 'missing'"));
    assert_null(hm_st_find(f, "missing"));
    const struct hm_st_tensor *tt;
    assert_int_equal(hm_st_get(f, "ids", &tt), HM_OK);
    assert_string_equal(tt->name, "ids");
    hm_st_close(f);
    hm_st_close(NULL);

    /* a caller-given "format" is kept and not duplicated */
    struct hm_st_kv meta2[] = {{"format", "mlx"}};
    assert_int_equal(hm_st_write(path, e, 1, meta2, 1), HM_OK);
    assert_int_equal(hm_st_open(path, &f), HM_OK);
    assert_int_equal(hm_st_meta_count(f), 1);
    assert_string_equal(hm_st_meta(f, "format"), "mlx");
    hm_st_close(f);

    /* nothing but metadata */
    assert_int_equal(hm_st_write(path, NULL, 0, NULL, 0), HM_OK);
    assert_int_equal(hm_st_open(path, &f), HM_OK);
    assert_int_equal(hm_st_count(f), 0);
    hm_st_close(f);
    free(path);
}

static void test_write_errors(void **state)
{
    float a[2] = {1, 2};
    char *path = tu_path(tu_tmpdir, "bad-write.safetensors");
    struct hm_st_entry dup[] = {
        {.name = "x", .dtype = HM_ST_F32, .ndim = 1, .shape = {2}, .data = a},
        {.name = "x", .dtype = HM_ST_F32, .ndim = 1, .shape = {2}, .data = a},
    };
    assert_int_equal(hm_st_write(path, dup, 2, NULL, 0), HM_ERR_USAGE);
    assert_non_null(strstr(hm_last_error(), "duplicate tensor name 'x'"));
    struct hm_st_entry e[] = {{.name = "x", .dtype = HM_ST_I32, .ndim = 1, .shape = {2}, .data = a,
                               .data_is_f32 = true}};
    assert_int_equal(hm_st_write(path, e, 1, NULL, 0), HM_ERR_USAGE);
    e[0] = (struct hm_st_entry){.name = "x", .dtype = HM_ST_F32, .ndim = 1, .shape = {-1}, .data = a};
    assert_int_equal(hm_st_write(path, e, 1, NULL, 0), HM_ERR_USAGE);
    e[0] = (struct hm_st_entry){.name = "x", .dtype = HM_ST_F32, .ndim = 1, .shape = {2}, .data = NULL};
    assert_int_equal(hm_st_write(path, e, 1, NULL, 0), HM_ERR_USAGE);
    e[0] = (struct hm_st_entry){.name = "__metadata__", .dtype = HM_ST_F32, .ndim = 1, .shape = {2},
                                .data = a};
    assert_int_equal(hm_st_write(path, e, 1, NULL, 0), HM_ERR_USAGE);
    e[0] = (struct hm_st_entry){.name = "x", .dtype = HM_ST_F32, .ndim = 3,
                                .shape = {1LL << 40, 1LL << 40, 1LL << 40}, .data = a};
    assert_int_equal(hm_st_write(path, e, 1, NULL, 0), HM_ERR_USAGE);
    assert_int_equal(hm_st_write("/nonexistent-dir/x.safetensors", dup, 1, NULL, 0), HM_ERR_IO);
    /* failed writes leave neither the file nor a temp file behind */
    char *cmd = malloc(strlen(tu_tmpdir) + 64);
    sprintf(cmd, "test -z \"$(ls '%s' | grep bad-write)\"", tu_tmpdir);
    assert_int_equal(tu_run(cmd, NULL), 0);
    free(cmd);
    free(path);
}

/* ---- a file written by Python -------------------------------------------------------------- */

static void test_python_written(void **state)
{
    const char *path = HM_FIXTURES_DIR "/safetensors/py_written.safetensors";
    struct hm_st_file *f;
    assert_int_equal(hm_st_open(path, &f), HM_OK);
    assert_int_equal(hm_st_count(f), 8);
    assert_string_equal(hm_st_meta(f, "format"), "pt");
    assert_string_equal(hm_st_meta(f, "producer"), "make_safetensors_fixture.py");
    /* the Python writer sorts by dtype size, then name; file order is by offset, ties by header */
    const char *order[] = {"e.i64", "a.f32", "g.scalar", "h.empty", "d.i32", "b.bf16", "c.f16", "f.u8"};
    for (size_t i = 0; i < 8; i++)
        assert_string_equal(hm_st_at(f, i)->name, order[i]);

    float a[6];
    int64_t sa[2] = {2, 3};
    assert_int_equal(hm_st_read_f32(f, "a.f32", 2, sa, a), HM_OK);
    for (int i = 0; i < 6; i++)
        assert_true(a[i] == i * 0.5f - 1.0f);
    float b[4];
    int64_t sb[1] = {4};
    assert_int_equal(hm_st_read_f32(f, "b.bf16", 1, sb, b), HM_OK);
    assert_true(b[0] == 1.0f && b[1] == -2.5f && b[2] == 3.140625f && isinf(b[3]) && b[3] > 0);
    float c[4];
    int64_t sc[2] = {2, 2};
    assert_int_equal(hm_st_read_f32(f, "c.f16", 2, sc, c), HM_OK);
    assert_true(c[0] == 0.5f && c[1] == -1.0f && c[2] == 65504.0f && c[3] == ldexpf(1.0f, -24));
    int32_t d[3];
    int64_t sd[1] = {3};
    assert_int_equal(hm_st_read_i32(f, "d.i32", 1, sd, d), HM_OK);
    assert_true(d[0] == -1 && d[1] == 0 && d[2] == 2147483647);
    int32_t e[2];
    int64_t se[1] = {2};
    assert_int_equal(hm_st_read_i32(f, "e.i64", 1, se, e), HM_OK);
    assert_true(e[0] == 5 && e[1] == -7);
    const struct hm_st_tensor *u8 = hm_st_find(f, "f.u8");
    assert_int_equal(u8->dtype, HM_ST_U8);
    for (int i = 0; i < 5; i++)
        assert_int_equal(((const uint8_t *)u8->data)[i], i);
    float g;
    assert_int_equal(hm_st_read_f32(f, "g.scalar", 0, NULL, &g), HM_OK);
    assert_true(g == 42.0f);
    const struct hm_st_tensor *h = hm_st_find(f, "h.empty");
    assert_int_equal(h->ndim, 2);
    assert_int_equal(h->shape[0], 0);
    assert_int_equal(h->shape[1], 3);
    hm_st_close(f);
}

/* The model parity fixtures (tests/reference/model_ref.py) open with this reader, and their
 * "config" metadata is a config.json our parser accepts, with shapes that agree. */
static void test_model_fixtures(void **state)
{
    const char *names[] = {"gpt_bias", "llama_swiglu", "gqa", "untied"};
    for (size_t i = 0; i < 4; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/model/%s.safetensors", HM_FIXTURES_DIR, names[i]);
        struct hm_st_file *f;
        if (hm_st_open(path, &f) != HM_OK)
            fail_msg("%s", hm_last_error());
        const char *cj = hm_st_meta(f, "config");
        assert_non_null(cj);
        assert_non_null(hm_st_meta(f, "train"));
        struct hm_model_config cfg;
        if (hm_config_parse(cj, path, &cfg) != HM_OK || hm_config_validate(&cfg) != HM_OK)
            fail_msg("%s", hm_last_error());
        const struct hm_st_tensor *ids, *logits, *emb;
        assert_int_equal(hm_st_get(f, "input_ids", &ids), HM_OK);
        assert_int_equal(ids->dtype, HM_ST_I32);
        assert_int_equal(hm_st_get(f, "expected.logits", &logits), HM_OK);
        assert_int_equal(logits->ndim, 3);
        assert_int_equal(logits->shape[0], ids->shape[0]);
        assert_int_equal(logits->shape[1], ids->shape[1]);
        assert_int_equal(logits->shape[2], cfg.vocab_size);
        assert_int_equal(hm_st_get(f, "embedding.weight", &emb), HM_OK);
        assert_int_equal(emb->shape[1], cfg.hidden_size);
        assert_true((hm_st_find(f, "lm_head.weight") != NULL) == !cfg.tie_embeddings);
        /* every parameter has its gradient and its post-AdamW value */
        size_t n_params = 0;
        for (size_t k = 0; k < hm_st_count(f); k++) {
            const char *nm = hm_st_at(f, k)->name;
            if (strncmp(nm, "layers.", 7) && strcmp(nm, "embedding.weight") && strcmp(nm, "norm.weight") &&
                strcmp(nm, "lm_head.weight"))
                continue;
            char g[256], a[256];
            snprintf(g, sizeof g, "grad.%s", nm);
            snprintf(a, sizeof a, "adamw3.%s", nm);
            assert_non_null(hm_st_find(f, g));
            assert_non_null(hm_st_find(f, a));
            n_params += hm_st_at(f, k)->numel;
        }
        assert_int_equal(n_params, hm_config_param_count(&cfg));
        hm_st_close(f);
    }
}

/* ---- corrupt files ------------------------------------------------------------------------- */

/* Writes 8-byte length (hlen, or strlen(header) when hlen is UINT64_MAX), the header and
 * data_len bytes of data. */
static void write_raw(const char *path, uint64_t hlen, const char *header, size_t data_len)
{
    size_t n = strlen(header);
    if (hlen == UINT64_MAX)
        hlen = n;
    unsigned char *buf = calloc(1, 8 + n + data_len + 1);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(buf + 8, header, n);
    tu_write(path, buf, 8 + n + data_len);
    free(buf);
}

static void expect_format(const char *path, const char *needle, const char *what)
{
    struct hm_st_file *f = (struct hm_st_file *)0x1;
    enum hm_status st = hm_st_open(path, &f);
    if (st != HM_ERR_FORMAT)
        fail_msg("%s: expected HM_ERR_FORMAT, got %s (%s)", what, hm_status_str(st), hm_last_error());
    assert_true(f == (struct hm_st_file *)0x1); /* out-param untouched on failure */
    const char *msg = hm_last_error();
    if (!strstr(msg, path))
        fail_msg("%s: message does not name the file: %s", what, msg);
    if (needle && !strstr(msg, needle))
        fail_msg("%s: message lacks '%s': %s", what, needle, msg);
    if (strchr(msg, '\n'))
        fail_msg("%s: message has a newline", what);
}

struct bad_case {
    const char *what;
    const char *header;
    size_t data_len;
    const char *needle; /* must appear in the message, e.g. the tensor name */
};

#define T1(extra) "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}" extra "}"

static const struct bad_case bad_cases[] = {
    {"not json", "hello", 0, "not valid JSON"},
    {"unterminated", "{\"w\":{\"dtype\":\"F32\"", 0, "not valid JSON"},
    {"array header", "[1,2]", 0, "not a JSON object"},
    {"string header", "\"x\"", 0, "JSON"},
    {"empty header", "", 0, "not valid JSON"},
    {"trailing garbage", T1("") "x", 8, "not valid JSON"},
    {"invalid utf-8", "{\"w\xff\":{}}", 0, "not valid JSON"},
    {"duplicate key", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "not valid JSON"},
    {"entry not object", "{\"w\":[1]}", 0, "'w': entry is not a JSON object"},
    {"missing dtype", "{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "'w': missing \"dtype\""},
    {"missing shape", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "'w': missing \"shape\""},
    {"missing offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "'w': missing \"data_offsets\""},
    {"dtype not string", "{\"w\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "'w': dtype"},
    {"unknown dtype", "{\"w\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     "'w': unknown or unsupported dtype 'F33'"},
    {"sub-byte dtype", "{\"w\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 1, "'F4'"},
    {"shape not array", "{\"w\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8, "'w': shape"},
    {"negative dim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "'w': shape[0]"},
    {"float dim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8, "'w': shape[0]"},
    {"too many dims", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8,
     "'w': 9 dims"},
    {"offsets not array", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":8}}", 8, "'w': data_offsets"},
    {"offsets length 3", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 8, "'w': data_offsets"},
    {"offset negative", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8, "'w': data_offsets"},
    {"offset string", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[\"0\",8]}}", 8, "'w': data_offsets"},
    {"begin > end", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8, "'w': data_offsets begin 8 > end 0"},
    {"shape-size mismatch", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
     "'w': shape [3] of F32 needs 12 bytes"},
    {"size overflow", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,8]}}",
     8, "'w': shape [4294967296, 4294967296, 4] overflows"},
    {"numel wraps to fit", "{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}",
     0, "'w'"},
    {"offsets past data", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
     "'w': data_offsets [0, 8) exceed the data section of 4 bytes"},
    {"huge offsets", "{\"w\":{\"dtype\":\"U8\",\"shape\":[7],\"data_offsets\":[9223372036854775800,"
                     "9223372036854775807]}}", 8, "'w'"},
    {"overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "'b': data_offsets [4, 12) overlap tensor 'a'"},
    {"same range twice", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "'b'"},
    {"gap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 20, "'b': data_offsets begin 12 leaves a gap of 4"},
    {"not starting at 0", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "'w'"},
    {"trailing bytes", T1(""), 12, "4 bytes after the last tensor"},
    {"metadata not object", T1(",\"__metadata__\":\"pt\""), 8, "__metadata__ is not a JSON object"},
    {"metadata value not string", T1(",\"__metadata__\":{\"format\":\"pt\",\"step\":3}"), 8,
     "__metadata__ value of 'step' is not a string"},
    {"metadata nested", T1(",\"__metadata__\":{\"a\":{}}"), 8, "value of 'a'"},
};

static void test_corrupt_table(void **state)
{
    char *path = tu_path(tu_tmpdir, "bad.safetensors");
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        write_raw(path, UINT64_MAX, bad_cases[i].header, bad_cases[i].data_len);
        expect_format(path, bad_cases[i].needle, bad_cases[i].what);
    }
    /* and the untouched header of the same shape is accepted (the table tests what it says) */
    write_raw(path, UINT64_MAX, T1(",\"__metadata__\":{\"format\":\"pt\"}"), 8);
    struct hm_st_file *f;
    assert_int_equal(hm_st_open(path, &f), HM_OK);
    hm_st_close(f);
    /* leading/trailing JSON whitespace is accepted, like the reference reader */
    write_raw(path, UINT64_MAX, "  " T1("") "   ", 8);
    assert_int_equal(hm_st_open(path, &f), HM_OK);
    hm_st_close(f);
    free(path);
}

static void test_bad_lengths(void **state)
{
    char *path = tu_path(tu_tmpdir, "len.safetensors");
    tu_write(path, "", 0);
    expect_format(path, "too short", "empty file");
    tu_write(path, "\x10\0\0\0\0\0\0", 7);
    expect_format(path, "too short", "7-byte file");
    write_raw(path, 1ull << 62, T1(""), 8);
    expect_format(path, "exceeds the limit", "huge header length");
    write_raw(path, UINT64_MAX - 1, T1(""), 8);
    expect_format(path, "exceeds the limit", "length near 2^64");
    write_raw(path, 100000001, T1(""), 8);
    expect_format(path, "exceeds the limit", "length just over 100 MB");
    write_raw(path, strlen(T1("")) + 9, T1(""), 8);
    expect_format(path, "exceeds the", "length past end of file");
    write_raw(path, 0, T1(""), 8);
    expect_format(path, "not valid JSON", "zero header length");
    write_raw(path, 5, T1(""), 8);
    expect_format(path, "not valid JSON", "header length cuts the JSON");
    /* a directory and a missing file are I/O errors, not format errors */
    struct hm_st_file *f;
    assert_int_equal(hm_st_open(tu_tmpdir, &f), HM_ERR_IO);
    char *missing = tu_path(tu_tmpdir, "missing.safetensors");
    assert_int_equal(hm_st_open(missing, &f), HM_ERR_IO);
    assert_non_null(strstr(hm_last_error(), missing));
    free(missing);
    free(path);
}

/* Every proper prefix of a valid file must be rejected cleanly. */
static void test_truncated(void **state)
{
    float a[6] = {1, 2, 3, 4, 5, 6};
    int32_t c[3] = {7, 8, 9};
    struct hm_st_entry e[] = {
        {.name = "a", .dtype = HM_ST_F32, .ndim = 2, .shape = {2, 3}, .data = a},
        {.name = "c", .dtype = HM_ST_I32, .ndim = 1, .shape = {3}, .data = c},
    };
    char *good = tu_path(tu_tmpdir, "good.safetensors");
    char *path = tu_path(tu_tmpdir, "trunc.safetensors");
    assert_int_equal(hm_st_write(good, e, 2, NULL, 0), HM_OK);
    size_t len;
    unsigned char *raw = slurp(good, &len);
    for (size_t n = 0; n < len; n++) {
        tu_write(path, raw, n);
        char what[64];
        snprintf(what, sizeof what, "truncated to %zu of %zu bytes", n, len);
        expect_format(path, NULL, what);
    }
    /* one byte too many is rejected as well */
    unsigned char *more = calloc(1, len + 1);
    memcpy(more, raw, len);
    tu_write(path, more, len + 1);
    expect_format(path, "1 bytes after the last tensor", "one trailing byte");
    free(more);
    free(raw);
    free(good);
    free(path);
}

/* Random byte flips in the length and header: success or HM_ERR_FORMAT, never a crash. */
static void test_header_flips(void **state)
{
    float a[6] = {1, 2, 3, 4, 5, 6};
    int32_t c[3] = {7, 8, 9};
    struct hm_st_entry e[] = {
        {.name = "a", .dtype = HM_ST_F32, .ndim = 2, .shape = {2, 3}, .data = a},
        {.name = "c", .dtype = HM_ST_I32, .ndim = 1, .shape = {3}, .data = c},
    };
    char *good = tu_path(tu_tmpdir, "good2.safetensors");
    char *path = tu_path(tu_tmpdir, "flip.safetensors");
    struct hm_st_kv meta[] = {{"k", "v"}};
    assert_int_equal(hm_st_write(good, e, 2, meta, 1), HM_OK);
    size_t len;
    unsigned char *raw = slurp(good, &len);
    size_t hend = 8 + (size_t)raw[0] + ((size_t)raw[1] << 8);
    unsigned char *buf = malloc(len);
    uint64_t seed = 12345;
    int n_ok = 0, n_bad = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, raw, len);
        int flips = 1 + it % 3;
        for (int k = 0; k < flips; k++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            size_t pos = (size_t)(seed >> 33) % hend;
            const char repl[] = "0123456789[]{},:\" -.eE\\x";
            buf[pos] = (seed >> 20) & 1 ? (unsigned char)(seed >> 40)
                                        : (unsigned char)repl[(seed >> 45) % (sizeof repl - 1)];
        }
        tu_write(path, buf, len);
        struct hm_st_file *f;
        enum hm_status st = hm_st_open(path, &f);
        if (st == HM_OK) {
            /* whatever was accepted must be internally consistent */
            for (size_t i = 0; i < hm_st_count(f); i++) {
                const struct hm_st_tensor *t = hm_st_at(f, i);
                volatile unsigned char sink = 0;
                for (size_t b = 0; b < t->nbytes; b++)
                    sink ^= ((const unsigned char *)t->data)[b];
                (void)sink;
            }
            hm_st_close(f);
            n_ok++;
        } else {
            assert_int_equal(st, HM_ERR_FORMAT);
            n_bad++;
        }
    }
    assert_true(n_bad > 1000);
    free(buf);
    free(raw);
    free(good);
    free(path);
}

/* ---- bf16 / f16 conversions ---------------------------------------------------------------- */

static void test_bf16_exact(void **state)
{
    static const struct {
        uint32_t in;
        uint16_t out;
    } cases[] = {
        {0x3f800000, 0x3f80}, /* 1.0 */
        {0x80000000, 0x8000}, /* -0.0 */
        {0x00000000, 0x0000},
        {0x3f807fff, 0x3f80}, /* below half: down */
        {0x3f808000, 0x3f80}, /* tie, kept lsb even: stays */
        {0x3f808001, 0x3f81}, /* above half: up */
        {0x3f818000, 0x3f82}, /* tie, kept lsb odd: up to even */
        {0xbf818000, 0xbf82}, /* negative tie: same rule on magnitude */
        {0x3f80ffff, 0x3f81},
        {0x3fffffff, 0x4000}, /* carry into exponent */
        {0x7f800000, 0x7f80}, /* +Inf */
        {0xff800000, 0xff80}, /* -Inf */
        {0x7f7fffff, 0x7f80}, /* FLT_MAX rounds to Inf */
        {0x7f7f7fff, 0x7f7f}, /* just below the rounding point stays finite */
        {0x7f7f8000, 0x7f80}, /* tie with odd lsb 0x7f7f -> Inf */
        {0x00008000, 0x0000}, /* subnormal tie, even */
        {0x00018000, 0x0002}, /* subnormal tie, odd */
        {0x00000001, 0x0000}, /* smallest subnormal -> +0 */
        {0x807fffff, 0x8080}, /* largest negative subnormal -> smallest negative normal */
        {0x7fc00000, 0x7fc0}, /* qNaN */
        {0xffc00000, 0x7fc0}, /* negative NaN -> canonical */
        {0x7f800001, 0x7fc0}, /* sNaN with low payload stays NaN (not Inf) */
        {0x7fffffff, 0x7fc0}, /* NaN that would carry past the exponent */
        {0x40490fdb, 0x4049}, /* pi */
        {0x3dcccccd, 0x3dcd}, /* 0.1 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = hm_f32_to_bf16(bits_f32(cases[i].in));
        if (got != cases[i].out)
            fail_msg("bf16(0x%08x) = 0x%04x, want 0x%04x", cases[i].in, got, cases[i].out);
    }
    assert_int_equal(f32_bits(hm_bf16_to_f32(0x3f81)), 0x3f810000u);
    assert_true(isnan(hm_bf16_to_f32(0x7fc0)));
}

/* Property check over many random bit patterns: the result is the nearer of the two neighbours,
 * ties go to the even one. Uses double arithmetic as an independent reference. */
static void test_bf16_property(void **state)
{
    uint64_t s = 99;
    for (int it = 0; it < 2000000; it++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        uint32_t u = (uint32_t)s;
        float x = bits_f32(u);
        uint16_t h = hm_f32_to_bf16(x);
        if (isnan(x)) {
            assert_int_equal(h, 0x7fc0);
            continue;
        }
        uint16_t lo = (uint16_t)(u >> 16);
        double xd = fabs((double)x);
        double a = fabs((double)hm_bf16_to_f32(lo));
        uint16_t hi = (uint16_t)(lo + 1); /* next magnitude; may be Inf */
        double b = (hi & 0x7fff) == 0x7f80 ? ldexp(1.0, 128) : fabs((double)hm_bf16_to_f32(hi));
        uint16_t want;
        if (isinf(x) || xd - a < b - xd)
            want = lo;
        else if (xd - a > b - xd)
            want = hi;
        else
            want = (lo & 1) ? hi : lo;
        if (h != want)
            fail_msg("bf16(0x%08x) = 0x%04x, want 0x%04x", u, h, want);
    }
}

static void test_f16(void **state)
{
    assert_true(hm_f32_from_f16(0x3c00) == 1.0f);
    assert_true(hm_f32_from_f16(0xc000) == -2.0f);
    assert_true(hm_f32_from_f16(0x7bff) == 65504.0f);
    assert_true(hm_f32_from_f16(0x0001) == ldexpf(1.0f, -24));
    assert_true(hm_f32_from_f16(0x03ff) == ldexpf(1023.0f, -24));
    assert_true(hm_f32_from_f16(0x0400) == ldexpf(1.0f, -14));
    assert_int_equal(f32_bits(hm_f32_from_f16(0x8000)), 0x80000000u);
    assert_true(isinf(hm_f32_from_f16(0x7c00)) && hm_f32_from_f16(0x7c00) > 0);
    assert_true(isinf(hm_f32_from_f16(0xfc00)) && hm_f32_from_f16(0xfc00) < 0);
    assert_true(isnan(hm_f32_from_f16(0x7e00)));
    /* every finite half equals mantissa * 2^exponent computed independently */
    for (uint32_t h = 0; h < 0x10000; h++) {
        uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
        if (e == 0x1f)
            continue;
        double v = e ? ldexp(1024.0 + m, (int)e - 25) : ldexp((double)m, -24);
        if (h & 0x8000)
            v = -v;
        assert_true((double)hm_f32_from_f16((uint16_t)h) == v);
    }
}

static void test_dtype_names(void **state)
{
    assert_string_equal(hm_st_dtype_name(HM_ST_BF16), "BF16");
    assert_int_equal(hm_st_dtype_size(HM_ST_BF16), 2);
    assert_int_equal(hm_st_dtype_size(HM_ST_I64), 8);
    assert_string_equal(hm_st_dtype_name(HM_ST_DTYPE_COUNT), "?");
    assert_int_equal(hm_st_dtype_size(HM_ST_DTYPE_COUNT), 0);
    for (int i = 0; i < HM_ST_DTYPE_COUNT; i++)
        assert_true(hm_st_dtype_size((enum hm_st_dtype)i) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),       cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_python_written),  cmocka_unit_test(test_model_fixtures),
        cmocka_unit_test(test_corrupt_table),
        cmocka_unit_test(test_bad_lengths),     cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_header_flips),    cmocka_unit_test(test_bf16_exact),
        cmocka_unit_test(test_bf16_property),   cmocka_unit_test(test_f16),
        cmocka_unit_test(test_dtype_names),
    };
    return cmocka_run_group_tests(tests, tu_tmpdir_setup, tu_tmpdir_teardown);
}
