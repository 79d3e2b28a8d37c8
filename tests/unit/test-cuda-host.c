/*
 * test-cuda-host.c - the parts of the CUDA backend that run on the host and need no GPU: the
 * --device parser and backend selection, the out-of-memory message, the workspace / reduction /
 * attention-tiling arithmetic the kernels rely on, and the bf16 bit conversion shared by host and
 * device. Runs everywhere (CPU-only builds included); the GPU tests are test-cuda-ops and
 * test-cuda-model.
 */
#include "testutil.h"

#include "backend/cuda/cuda-host.h"
#include "core/core-impl.h"
#include "hermes/backend.h"

#include <stdio.h>
#include <string.h>

static void test_device_parse(void **state)
{
    struct hm_device_spec d;
    assert_int_equal(hm_device_parse("cpu", &d), HM_OK);
    assert_int_equal(d.kind, HM_DEVICE_CPU);
    assert_int_equal(hm_device_parse("cuda", &d), HM_OK);
    assert_int_equal(d.kind, HM_DEVICE_CUDA);
    assert_int_equal(d.index, 0);
    assert_int_equal(hm_device_parse("cuda:0", &d), HM_OK);
    assert_int_equal(d.index, 0);
    assert_int_equal(hm_device_parse("cuda:7", &d), HM_OK);
    assert_int_equal(d.kind, HM_DEVICE_CUDA);
    assert_int_equal(d.index, 7);
    assert_int_equal(hm_device_parse("cuda:12", &d), HM_OK);
    assert_int_equal(d.index, 12);
    static const char *bad[] = {"", "gpu", "CUDA", "Cpu", "cpu:0", "cuda:", "cuda:-1", "cuda:+1", "cuda: 1",
                                "cuda:1x", "cuda:0x1", "cuda1", "cudax", "cuda:99999999999", " cuda"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        d.kind = HM_DEVICE_CPU;
        d.index = 42;
        if (hm_device_parse(bad[i], &d) != HM_ERR_USAGE)
            fail_msg("'%s' should be rejected", bad[i]);
        assert_non_null(strstr(hm_last_error(), "expected cpu, cuda or cuda:N"));
        char quoted[64];
        snprintf(quoted, sizeof quoted, "'%s'", bad[i]);
        assert_non_null(strstr(hm_last_error(), quoted));
        assert_int_equal(d.index, 42); /* out-params untouched on failure */
    }
    assert_int_equal(hm_device_parse(NULL, &d), HM_ERR_USAGE);
}

static void test_backend_from_string(void **state)
{
    struct hm_backend *be = NULL;
    assert_int_equal(hm_backend_new_from_string("cpu", &be), HM_OK);
    assert_string_equal(hm_backend_name(be), "cpu");
    hm_backend_free(be);
    be = NULL;
    assert_int_equal(hm_backend_new_from_string("tpu", &be), HM_ERR_USAGE);
    assert_null(be);
    if (hm_cuda_device_count() > 0) {
        printf("note: %d CUDA device(s) visible; checking cuda:0 and an out-of-range index\n",
               hm_cuda_device_count());
        assert_int_equal(hm_backend_new_from_string("cuda:0", &be), HM_OK);
        assert_string_equal(hm_backend_name(be), "cuda");
        hm_backend_free(be);
        be = NULL;
        assert_int_equal(hm_backend_new_from_string("cuda:999", &be), HM_ERR_UNSUPPORTED);
        assert_non_null(strstr(hm_last_error(), "no such device"));
        return;
    }
    /* CPU-only build or no GPU: a clear HM_ERR_UNSUPPORTED, never a crash. */
    assert_int_equal(hm_backend_new_from_string("cuda", &be), HM_ERR_UNSUPPORTED);
    assert_null(be);
    printf("no GPU: cuda -> %s\n", hm_last_error());
    assert_true(strstr(hm_last_error(), "no CUDA device found") || strstr(hm_last_error(), "no CUDA support"));
    assert_non_null(strstr(hm_last_error(), "cuda:0"));
    assert_int_equal(hm_backend_new_from_string("cuda:3", &be), HM_ERR_UNSUPPORTED);
    assert_non_null(strstr(hm_last_error(), "cuda:3"));
}

static void test_oom_message(void **state)
{
    char buf[512];
    hm_cuda_oom_message(buf, sizeof buf, 1, (size_t)1610612736, (size_t)858993459, (size_t)85899345920ull);
    printf("%s\n", buf);
    assert_non_null(strstr(buf, "cuda:1: out of device memory"));
    assert_non_null(strstr(buf, "requested 1.50 GiB (1610612736 bytes)"));
    assert_non_null(strstr(buf, "with 819.2 MiB free of 80.0 GiB"));
    assert_non_null(strstr(buf, "--batch-size (-b)"));
    assert_non_null(strstr(buf, "--seq-len"));
    assert_null(strchr(buf, '\n'));
    char small[24];
    hm_cuda_oom_message(small, sizeof small, 0, 1, 2, 3);
    assert_int_equal(strlen(small), sizeof small - 1); /* truncated, terminated */
    char b[32];
    assert_string_equal(hm_cuda_fmt_bytes(b, sizeof b, 512), "512 B");
    assert_string_equal(hm_cuda_fmt_bytes(b, sizeof b, 1536), "1.50 KiB");
    assert_string_equal(hm_cuda_fmt_bytes(b, sizeof b, 12.0 * 1024 * 1024), "12.0 MiB");
    assert_string_equal(hm_cuda_fmt_bytes(b, sizeof b, 80.0 * 1024 * 1024 * 1024), "80.0 GiB");
}

static void test_colsum_chunks(void **state)
{
    static const int64_t rows[] = {1, 2, 63, 64, 65, 128, 129, 300, 1023, 16384, 16385, 1000003};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int c = hm_cuda_colsum_chunks(rows[i]);
        int64_t rpc = hm_cuda_colsum_rows_per_chunk(rows[i], c);
        assert_true(c >= 1 && c <= HM_CUDA_COLSUM_MAX_CHUNKS);
        assert_true((int64_t)c * rpc >= rows[i]);  /* every row is in a chunk */
        assert_true((int64_t)c * (rpc - 1) < rows[i]); /* rpc is the smallest that covers */
        if (rows[i] <= HM_CUDA_COLSUM_ROWS)
            assert_int_equal(c, 1);
        if (rows[i] <= HM_CUDA_COLSUM_ROWS * HM_CUDA_COLSUM_MAX_CHUNKS)
            assert_true(rpc <= HM_CUDA_COLSUM_ROWS);
    }
}

static void test_attn_plan(void **state)
{
    struct hm_cuda_attn_plan p;
    static const struct { int hd, dpl; } want[] = {{1, 1}, {5, 1}, {32, 1}, {33, 2}, {64, 2}, {65, 4},
                                                   {96, 4}, {128, 4}, {129, 8}, {256, 8}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_int_equal(hm_cuda_attn_plan(want[i].hd, &p), HM_OK);
        assert_int_equal(p.dpl, want[i].dpl);
        assert_true(p.dpl * 32 >= p.hd); /* every output dim has an owning lane */
        assert_int_equal(p.ld, want[i].hd + 1);
        assert_int_equal(p.smem_fwd, (size_t)(2 * 32 * p.ld + 8 * p.hd) * 4);
        assert_int_equal(p.smem_bwd_kv, (size_t)(4 * 32 * p.ld + 2 * p.hd) * 4);
        assert_int_equal(p.smem_bwd_q, (size_t)(2 * 32 * p.ld + 16 * p.hd) * 4);
    }
    /* head dims of the shipped presets fit the opt-in shared memory of A100 (163 KiB) */
    assert_int_equal(hm_cuda_attn_plan(128, &p), HM_OK);
    assert_true(p.smem_bwd_kv <= 166912 && p.smem_fwd <= 166912 && p.smem_bwd_q <= 166912);
    /* and HD = 256 fits H100 (227 KiB) */
    assert_int_equal(hm_cuda_attn_plan(256, &p), HM_OK);
    assert_true(p.smem_bwd_kv <= 232448);
    assert_int_equal(hm_cuda_attn_plan(0, &p), HM_ERR_UNSUPPORTED);
    assert_int_equal(hm_cuda_attn_plan(257, &p), HM_ERR_UNSUPPORTED);
    assert_non_null(strstr(hm_last_error(), "head dim 257"));
}

static struct hm_tensor mk(int n_dims, int64_t a, int64_t b, int64_t c, int64_t d)
{
    struct hm_tensor t;
    memset(&t, 0, sizeof t);
    t.type = HM_DTYPE_F32;
    t.n_dims = n_dims;
    int64_t s[4] = {a, b, c, d};
    for (int i = 0; i < 4; i++)
        t.shape[i] = i < n_dims ? s[i] : 1;
    return t;
}

static void test_workspace(void **state)
{
    struct hm_tensor x = mk(2, 300, 768, 0, 0), dst = mk(1, 768, 0, 0, 0);
    dst.op = HM_OP_REDUCE_ROWS;
    dst.src[0] = &x;
    size_t chunks = (size_t)hm_cuda_colsum_chunks(300);
    assert_int_equal(hm_cuda_workspace_bytes(&dst, 0), hm_cuda_align(chunks * 768 * 4));
    struct hm_tensor same = mk(1, 768, 0, 0, 0);
    dst.src[0] = &same; /* rows == 1: an elementwise scale, no scratch */
    assert_int_equal(hm_cuda_workspace_bytes(&dst, 0), 0);

    struct hm_tensor dy = mk(3, 4, 75, 13, 0), xin = mk(3, 4, 75, 13, 0), w = mk(1, 13, 0, 0, 0);
    struct hm_tensor dw = mk(1, 13, 0, 0, 0), rb = mk(3, 4, 75, 13, 0);
    rb.op = HM_OP_RMS_NORM_BACK;
    rb.src[0] = &dy, rb.src[1] = &xin, rb.src[2] = &w;
    assert_int_equal(hm_cuda_workspace_bytes(&rb, 0), hm_cuda_align(300 * 4));
    rb.src[3] = &dw;
    assert_int_equal(hm_cuda_workspace_bytes(&rb, 0),
                     hm_cuda_align(300 * 4) + hm_cuda_align((size_t)hm_cuda_colsum_chunks(300) * 13 * 4));

    struct hm_tensor g = mk(2, 1000, 64, 0, 0), ids = mk(2, 4, 33, 0, 0), eb = mk(2, 1000, 64, 0, 0);
    ids.type = HM_DTYPE_I32;
    eb.op = HM_OP_EMBEDDING_BACK;
    eb.src[0] = &g, eb.src[1] = &ids;
    assert_int_equal(hm_cuda_workspace_bytes(&eb, 1000), 3 * hm_cuda_align(132 * 4) + hm_cuda_align(1000));

    struct hm_tensor q = mk(4, 2, 70, 6, 64), ab = mk(4, 2, 70, 6, 64);
    ab.op = HM_OP_ATTENTION_BACK;
    ab.src[1] = &q;
    assert_int_equal(hm_cuda_workspace_bytes(&ab, 0), hm_cuda_align(2 * 6 * 70 * 4));

    struct hm_tensor logits = mk(2, 77, 1000, 0, 0), ce = mk(1, 1, 0, 0, 0);
    ce.op = HM_OP_CROSS_ENTROPY;
    ce.src[0] = &logits;
    assert_int_equal(hm_cuda_workspace_bytes(&ce, 0), hm_cuda_align(77 * 8) + hm_cuda_align(8));
    ce.op = HM_OP_CROSS_ENTROPY_BACK;
    assert_int_equal(hm_cuda_workspace_bytes(&ce, 0), hm_cuda_align(8));
    ce.op = HM_OP_GELU;
    assert_int_equal(hm_cuda_workspace_bytes(&ce, 0), 0);
    for (size_t v = 0; v < 5000; v += 37)
        assert_int_equal(hm_cuda_align(v) % HM_CUDA_ALIGN, 0);
}

static void test_bf16_bits(void **state)
{
    static const uint32_t low[] = {0x0000, 0x0001, 0x7fff, 0x8000, 0x8001, 0xc000, 0xffff};
    uint64_t n = 0;
    for (uint32_t hi = 0; hi < 0x10000u; hi++)
        for (size_t k = 0; k < sizeof low / sizeof low[0]; k++) {
            uint32_t u = hi << 16 | low[k];
            float f;
            memcpy(&f, &u, 4);
            uint16_t want = hm_f32_to_bf16(f), got = hm_cuda_f32_to_bf16_bits(u);
            if (want != got)
                fail_msg("bf16 of 0x%08x: device helper 0x%04x, core 0x%04x", u, got, want);
            uint32_t back = hm_cuda_bf16_bits_to_f32(got);
            float fb;
            memcpy(&fb, &back, 4);
            assert_true(fb == hm_bf16_to_f32(got) || (fb != fb && hm_bf16_to_f32(got) != hm_bf16_to_f32(got)));
            n++;
        }
    /* the cases that matter most, spelled out */
    assert_int_equal(hm_cuda_f32_to_bf16_bits(0x3f808000u), 0x3f80); /* tie -> even */
    assert_int_equal(hm_cuda_f32_to_bf16_bits(0x3f818000u), 0x3f82); /* tie -> even (up) */
    assert_int_equal(hm_cuda_f32_to_bf16_bits(0x7f800000u), 0x7f80); /* +inf */
    assert_int_equal(hm_cuda_f32_to_bf16_bits(0xff800001u), 0x7fc0); /* any NaN: canonical quiet NaN */
    assert_int_equal(hm_cuda_f32_to_bf16_bits(0x7f7fffffu), 0x7f80); /* FLT_MAX rounds to inf */
    printf("bf16: %llu bit patterns agree with hm_f32_to_bf16\n", (unsigned long long)n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_device_parse),  cmocka_unit_test(test_backend_from_string),
        cmocka_unit_test(test_oom_message),   cmocka_unit_test(test_colsum_chunks),
        cmocka_unit_test(test_attn_plan),     cmocka_unit_test(test_workspace),
        cmocka_unit_test(test_bf16_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
