/* test-dataset.c - the token cache is used only when it was built from exactly the bytes on disk:
 * a file written while it is tokenized leaves no cache (issue 13, class 4), other bytes of the
 * same size rebuild it, and an unchanged file reuses it. */
#include "testutil.h"

#include "hermes/dataset.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void append_to(const char *path)
{
    FILE *f = fopen(path, "ab");
    assert_non_null(f);
    fputs(" and a late line written by another process\n", f);
    fclose(f);
}

static struct hm_tokenizer *small_tokenizer(void)
{
    static const char *const specials[] = {"<pad>", "<bos>", "<eos>", "<unk>"};
    struct hm_tokenizer_train_opts o = {.vocab_size = 300, .min_frequency = 2,
                                        .special_tokens = specials, .n_special_tokens = 4};
    const char *text = "the cat sat on the mat and the dog sat on the log\n";
    size_t len = strlen(text);
    struct hm_tokenizer *t;
    assert_int_equal(hm_tokenizer_train(&o, &text, &len, 1, &t), HM_OK);
    return t;
}

static void test_cache_only_from_the_bytes_read(void **state)
{
    char *dir = tu_mkdtemp(), *data = tu_path(dir, "d.txt"), *cache = tu_path(dir, "tok.bin");
    const char *text = "the cat sat on the mat\nthe dog sat on the log\n";
    tu_write(data, text, strlen(text));
    struct hm_tokenizer *tok = small_tokenizer();
    const char *paths[] = {data};
    struct hm_dataset_opts o = hm_dataset_opts_default();
    o.paths = paths;
    o.n_paths = 1;
    o.cache_path = cache;
    o.n_threads = 1;
    struct hm_token_cache c;
    struct hm_dataset_info info;

    /* Written while being read: an error naming the file, and no cache. */
    o.after_read = append_to;
    assert_int_equal(hm_dataset_open(tok, &o, &c, &info), HM_ERR_IO);
    assert_non_null(strstr(hm_last_error(), "d.txt: the file changed while it was being read"));
    assert_false(access(cache, F_OK) == 0);
    o.after_read = NULL;

    /* Unchanged from now on: built once, then reused. */
    assert_int_equal(hm_dataset_open(tok, &o, &c, &info), HM_OK);
    assert_false(info.cache_hit);
    uint64_t n = c.n_tokens;
    hm_token_cache_close(&c);
    assert_int_equal(hm_dataset_open(tok, &o, &c, &info), HM_OK);
    assert_true(info.cache_hit);
    assert_int_equal(c.n_tokens, n);
    hm_token_cache_close(&c);

    /* Other bytes of the same size: rebuilt, not reused. */
    char *now;
    size_t len;
    assert_int_equal(hm_read_file(data, &now, &len), HM_OK);
    now[0] = now[0] == 't' ? 'T' : 't';
    tu_write(data, now, len);
    hm_free(now);
    assert_int_equal(hm_dataset_open(tok, &o, &c, &info), HM_OK);
    assert_false(info.cache_hit);
    hm_token_cache_close(&c);

    hm_tokenizer_free(tok);
    tu_rmdir(dir);
    free(data);
    free(cache);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_only_from_the_bytes_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
