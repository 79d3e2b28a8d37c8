/*
 * test-export.c - the exporters without Python: the GGUF and Hugging Face writers reproduce the
 * committed fixtures (tests/fixtures/export/, made by tests/reference/make_export_fixtures.sh and
 * checked by export_ref.py against gguf-py and transformers) byte for byte; importing the HF
 * fixture gives the checkpoint's tensors back bit for bit; f16 and q8_0 conversion against ggml's
 * rules; the Q/K row permutation; refusals (GELU to GGUF, an existing output) leave nothing behind.
 */
#include "testutil.h"

#include "hermes/export.h"
#include "hermes/tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FIX HM_FIXTURES_DIR "/export"

static void assert_same_file(const char *expected, const char *got)
{
    char *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    FILE *fa = fopen(expected, "rb"), *fb = fopen(got, "rb");
    assert_non_null(fa);
    assert_non_null(fb);
    fseek(fa, 0, SEEK_END);
    fseek(fb, 0, SEEK_END);
    na = (size_t)ftell(fa);
    nb = (size_t)ftell(fb);
    rewind(fa);
    rewind(fb);
    if (na != nb)
        fail_msg("%s: %zu bytes, expected %zu (%s)", got, nb, na, expected);
    a = malloc(na + 1);
    b = malloc(nb + 1);
    assert_int_equal(fread(a, 1, na, fa), na);
    assert_int_equal(fread(b, 1, nb, fb), nb);
    for (size_t i = 0; i < na; i++)
        if (a[i] != b[i])
            fail_msg("%s differs from %s at byte %zu", got, expected, i);
    fclose(fa);
    fclose(fb);
    free(a);
    free(b);
}

static void open_source(struct hm_export_source *src, const char *model)
{
    char ckpt[512];
    snprintf(ckpt, sizeof ckpt, FIX "/%s/weights.safetensors", model);
    if (hm_export_source_open(src, ckpt, NULL, FIX "/tokenizer.json") != HM_OK)
        fail_msg("%s", hm_last_error());
}

static void test_gguf_fixtures(void **state)
{
    struct hm_export_source src;
    open_source(&src, "swiglu");
    static const char *const dtypes[] = {"f32", "f16", "bf16", "q8_0"};
    for (size_t i = 0; i < 4; i++) {
        enum hm_export_dtype dt;
        assert_int_equal(hm_export_dtype_parse(dtypes[i], &dt), HM_OK);
        char name[64], expected[512];
        snprintf(name, sizeof name, "swiglu-%s.gguf", dtypes[i]);
        snprintf(expected, sizeof expected, FIX "/expected/%s", name);
        char *out = tu_path(tu_tmpdir, name);
        if (hm_export_gguf(&src, dt, out) != HM_OK)
            fail_msg("%s", hm_last_error());
        assert_same_file(expected, out);
        free(out);
    }
    hm_export_source_close(&src);
}

static void assert_same_folder(const char *expected, const char *got)
{
    static const char *const files[] = {"config.json", "generation_config.json",
                                        "model.safetensors", "tokenizer.json",
                                        "tokenizer_config.json"};
    for (size_t i = 0; i < 5; i++) {
        char *a = tu_path(expected, files[i]), *b = tu_path(got, files[i]);
        assert_same_file(a, b);
        free(a);
        free(b);
    }
}

static void test_hf_fixtures(void **state)
{
    struct hm_export_source src;
    char *out = tu_path(tu_tmpdir, "swiglu-hf");
    open_source(&src, "swiglu");
    if (hm_export_hf(&src, HM_EXPORT_F32, out, false) != HM_OK)
        fail_msg("%s", hm_last_error());
    assert_same_folder(FIX "/expected/swiglu-hf-f32", out);
    /* An existing folder is refused without replace, and left as it is. */
    assert_int_equal(hm_export_hf(&src, HM_EXPORT_F32, out, false), HM_ERR_USAGE);
    assert_non_null(strstr(hm_last_error(), "already exists"));
    assert_same_folder(FIX "/expected/swiglu-hf-f32", out);
    assert_int_equal(hm_export_hf(&src, HM_EXPORT_F32, out, true), HM_OK);
    assert_same_folder(FIX "/expected/swiglu-hf-f32", out);
    hm_export_source_close(&src);
    free(out);

    out = tu_path(tu_tmpdir, "gelu-hf");
    open_source(&src, "gelu");
    if (hm_export_hf(&src, HM_EXPORT_BF16, out, false) != HM_OK)
        fail_msg("%s", hm_last_error());
    assert_same_folder(FIX "/expected/gelu-hf-bf16", out);
    /* GELU has no exact llama.cpp architecture: refused, and no file appears. */
    char *gguf = tu_path(tu_tmpdir, "gelu.gguf");
    assert_int_equal(hm_export_gguf(&src, HM_EXPORT_F32, gguf), HM_ERR_UNSUPPORTED);
    assert_non_null(strstr(hm_last_error(), "llama-tiny"));
    struct stat sb;
    assert_int_not_equal(stat(gguf, &sb), 0);
    hm_export_source_close(&src);
    free(out);
    free(gguf);
}

/* HF folder -> run folder -> the same tensors as the checkpoint that made the folder. */
static void test_import_roundtrip(void **state)
{
    char *run = tu_path(tu_tmpdir, "imported");
    if (hm_import_hf(FIX "/expected/swiglu-hf-f32", run, false) != HM_OK)
        fail_msg("%s", hm_last_error());
    char *w = tu_path(run, "weights.safetensors");
    struct hm_st_file *a, *b;
    assert_int_equal(hm_st_open(FIX "/swiglu/weights.safetensors", &a), HM_OK);
    assert_int_equal(hm_st_open(w, &b), HM_OK);
    assert_int_equal(hm_st_count(a), hm_st_count(b));
    for (size_t i = 0; i < hm_st_count(a); i++) {
        const struct hm_st_tensor *ta = hm_st_at(a, i), *tb = hm_st_find(b, ta->name);
        assert_non_null(tb);
        assert_int_equal(ta->dtype, tb->dtype);
        assert_int_equal(ta->nbytes, tb->nbytes);
        assert_memory_equal(ta->data, tb->data, ta->nbytes);
    }
    hm_st_close(a);
    hm_st_close(b);
    struct hm_model_config want, got;
    char *cfg = tu_path(run, "config.json");
    assert_int_equal(hm_config_load(FIX "/swiglu/config.json", &want), HM_OK);
    assert_int_equal(hm_config_load(cfg, &got), HM_OK);
    assert_int_equal(want.num_kv_heads, got.num_kv_heads);
    assert_int_equal(want.tie_embeddings, got.tie_embeddings);
    assert_true(want.rope_theta == got.rope_theta && want.layer_norm_eps == got.layer_norm_eps);
    free(w);
    free(cfg);
    free(run);
}

static uint16_t f16_of(float x)
{
    return hm_f32_to_f16(x);
}

static void test_f16(void **state)
{
    /* Every finite half survives half -> f32 -> half; NaN stays NaN. */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = hm_f32_from_f16((uint16_t)h);
        uint16_t back = hm_f32_to_f16(f);
        if (isnan(f))
            assert_true((back & 0x7c00) == 0x7c00 && (back & 0x3ff));
        else if (back != h)
            fail_msg("half 0x%04x -> %g -> 0x%04x", h, (double)f, back);
    }
    assert_int_equal(f16_of(65504.0f), 0x7bff);
    assert_int_equal(f16_of(65519.0f), 0x7bff); /* below the halfway point to 2^16 */
    assert_int_equal(f16_of(65520.0f), 0x7c00); /* the tie rounds to even: Inf */
    assert_int_equal(f16_of(1e9f), 0x7c00);
    assert_int_equal(f16_of(-INFINITY), 0xfc00);
    assert_int_equal(f16_of(1.0f + 0x1p-11f), 0x3c00);     /* tie to even: down */
    assert_int_equal(f16_of(1.0f + 3 * 0x1p-11f), 0x3c02); /* tie to even: up */
    assert_int_equal(f16_of(0x1p-24f), 0x0001);            /* smallest subnormal */
    assert_int_equal(f16_of(0x1p-25f), 0x0000);            /* its half: tie to even, zero */
    assert_int_equal(f16_of(0x1.8p-25f), 0x0001);
    assert_int_equal(f16_of(-0.0f), 0x8000);
}

static void test_q8_0(void **state)
{
    float x[64];
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j - 16) * 0.25f; /* amax 4: d = 4/127 */
    for (int j = 32; j < 64; j++)
        x[j] = 0.0f; /* an all-zero block: d 0, q 0 */
    uint8_t q[2 * HM_Q8_0_BYTES];
    hm_quantize_q8_0(x, 64, q);
    uint16_t d = (uint16_t)(q[0] | q[1] << 8);
    assert_int_equal(d, hm_f32_to_f16(4.0f / 127.0f));
    for (int j = 0; j < 32; j++) {
        int want = (int)roundf(x[j] * (1.0f / (4.0f / 127.0f)));
        assert_int_equal((int8_t)q[2 + j], want);
    }
    assert_int_equal((int8_t)q[2], -127);
    for (int j = 0; j < HM_Q8_0_BYTES; j++)
        assert_int_equal(q[HM_Q8_0_BYTES + j], 0);
}

/* The GGUF Q rows are the rotate-half rows regrouped in adjacent pairs, per head (formats.md
 * §3.5): check against the fixture itself, reading its f32 attn_q tensor by offset. */
static void test_qk_permutation(void **state)
{
    struct hm_st_file *f;
    assert_int_equal(hm_st_open(FIX "/swiglu/weights.safetensors", &f), HM_OK);
    const struct hm_st_tensor *q = hm_st_find(f, "layers.0.attention.q_proj.weight");
    assert_non_null(q);
    int64_t rows = q->shape[0], cols = q->shape[1], hd = rows / 2; /* 2 heads */
    FILE *g = fopen(FIX "/expected/swiglu-f32.gguf", "rb");
    assert_non_null(g);
    fseek(g, 0, SEEK_END);
    size_t n = (size_t)ftell(g);
    rewind(g);
    uint8_t *bytes = malloc(n);
    assert_int_equal(fread(bytes, 1, n, g), n);
    fclose(g);
    /* Find our first row's permuted image: GGUF row 1 is source row hd/2 (pair (x0, x_hd/2)). */
    const float *src = q->data;
    size_t row_bytes = (size_t)cols * 4;
    const uint8_t *hit = memmem(bytes, n, src + (hd / 2) * cols, row_bytes);
    assert_non_null(hit);
    for (int64_t r = 0; r < rows; r++) {
        int64_t h = r / hd, j = r % hd, from = h * hd + (j % 2) * (hd / 2) + j / 2;
        const uint8_t *row0 = hit - row_bytes; /* GGUF row 0 = source row 0 */
        assert_memory_equal(row0 + r * row_bytes, src + from * cols, row_bytes);
    }
    free(bytes);
    hm_st_close(f);
}

static void test_dtype_names(void **state)
{
    enum hm_export_dtype dt;
    assert_int_equal(hm_export_dtype_parse("q4_0", &dt), HM_ERR_USAGE);
    assert_non_null(strstr(hm_last_error(), "q4_0"));
    assert_int_equal(hm_export_dtype_parse("bf16", &dt), HM_OK);
    assert_string_equal(hm_export_dtype_name(dt), "bf16");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf_fixtures),
        cmocka_unit_test(test_hf_fixtures),
        cmocka_unit_test(test_import_roundtrip),
        cmocka_unit_test(test_f16),
        cmocka_unit_test(test_q8_0),
        cmocka_unit_test(test_qk_permutation),
        cmocka_unit_test(test_dtype_names),
    };
    return cmocka_run_group_tests(tests, tu_tmpdir_setup, tu_tmpdir_teardown);
}
