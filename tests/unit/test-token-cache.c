/* test-token-cache.c - round trips at both widths, stale keys, and damaged files. */
#include "testutil.h"

#include "hermes/token-cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void roundtrip(uint32_t vocab, int width)
{
    char *dir = tu_mkdtemp(), *p = tu_path(dir, "tokens.bin");
    enum { N = 100003 };
    hm_token *ids = malloc(N * 4);
    for (uint32_t i = 0; i < N; i++)
        ids[i] = (i * 2654435761u) % vocab;
    assert_int_equal(hm_token_cache_write(p, 77, vocab, ids, N), HM_OK);
    struct hm_token_cache c;
    bool hit;
    assert_int_equal(hm_token_cache_open(p, 77, &c, &hit), HM_OK);
    assert_true(hit);
    assert_int_equal(c.width, width);
    assert_int_equal(c.n_tokens, N);
    for (uint32_t i = 0; i < N; i++)
        assert_int_equal(hm_token_at(&c, i), ids[i]);
    hm_token_cache_close(&c);
    assert_int_equal(hm_token_cache_open(p, 78, &c, &hit), HM_OK); /* another key: stale */
    assert_false(hit);
    /* Truncate: damaged, a clear error. */
    assert_int_equal(truncate(p, 64 + 10), 0);
    assert_int_equal(hm_token_cache_open(p, 77, &c, &hit), HM_ERR_FORMAT);
    assert_non_null(strstr(hm_last_error(), "tokens.bin"));
    ids[5] = vocab; /* out of range id refused, and no file left behind */
    char *q = tu_path(dir, "bad.bin");
    assert_int_equal(hm_token_cache_write(q, 1, vocab, ids, N), HM_ERR_MISMATCH);
    char *out;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls '%s'", dir);
    tu_run(cmd, &out);
    assert_string_equal(out, "tokens.bin\n");
    free(out);
    tu_rmdir(dir);
    free(ids), free(p), free(q), free(dir);
}

static void test_u16(void **state)
{
    roundtrip(50257, 2);
}

static void test_u32(void **state)
{
    roundtrip(100000, 4);
}

static void test_missing_and_garbage(void **state)
{
    char *dir = tu_mkdtemp(), *p = tu_path(dir, "none.bin");
    struct hm_token_cache c;
    bool hit = true;
    assert_int_equal(hm_token_cache_open(p, 1, &c, &hit), HM_OK);
    assert_false(hit);
    tu_write(p, "this is not a token cache at all, not even close to it, nope, no......", 70);
    assert_int_equal(hm_token_cache_open(p, 1, &c, &hit), HM_ERR_FORMAT);
    tu_rmdir(dir);
    free(p), free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_u16),
        cmocka_unit_test(test_u32),
        cmocka_unit_test(test_missing_and_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
