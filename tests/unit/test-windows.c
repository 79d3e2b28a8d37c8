/* test-windows.c - window counts, the leak-free validation hold-out, and the seeded epoch order. */
#include "testutil.h"

#include "hermes/train-windows.h"

#include <stdlib.h>
#include <string.h>

static void test_counts_and_holdout(void **state)
{
    struct hm_windows w;
    /* 1001 tokens, T=10, stride 10: windows start at 0,10,...,990 -> 100 windows. */
    assert_int_equal(hm_windows_init(&w, 1001, 10, 10, 0.0), HM_OK);
    assert_int_equal(w.n_total, 100);
    assert_int_equal(w.n_train, 100);
    assert_int_equal(w.n_val, 0);
    assert_int_equal(hm_windows_init(&w, 1001, 10, 10, 0.05), HM_OK);
    assert_int_equal(w.n_val, 5);
    assert_int_equal(w.val_first, 95);
    /* No training window may reach the first validation token. */
    uint64_t last_train_end = hm_window_start(&w, w.n_train - 1) + (uint64_t)w.T;
    assert_true(last_train_end < hm_window_start(&w, w.val_first));
    /* Overlapping windows (stride < T): the gap grows. */
    assert_int_equal(hm_windows_init(&w, 1001, 10, 2, 0.1), HM_OK);
    assert_true(hm_window_start(&w, w.n_train - 1) + 10 < hm_window_start(&w, w.val_first));
    assert_true(hm_window_start(&w, w.n_train) + 10 >= hm_window_start(&w, w.val_first));
}

static void test_too_short(void **state)
{
    struct hm_windows w;
    assert_int_equal(hm_windows_init(&w, 10, 10, 10, 0.0), HM_ERR_FORMAT);
    assert_non_null(strstr(hm_last_error(), "10 tokens"));
    assert_int_equal(hm_windows_init(&w, 11, 10, 10, 0.0), HM_OK);
    assert_int_equal(w.n_total, 1);
    assert_int_equal(hm_windows_init(&w, 11, 10, 10, 0.5), HM_ERR_FORMAT); /* nothing left to train */
}

static void test_epoch_order(void **state)
{
    enum { N = 1000 };
    uint32_t *a = malloc(N * 4), *b = malloc(N * 4), *c = malloc(N * 4);
    hm_epoch_order(42, 0, a, N);
    hm_epoch_order(42, 0, b, N);
    hm_epoch_order(42, 1, c, N);
    assert_memory_equal(a, b, N * 4);             /* same (seed, epoch): same order */
    assert_memory_not_equal(a, c, N * 4);         /* another epoch: another order */
    char *seen = calloc(N, 1);
    for (int i = 0; i < N; i++) {
        assert_true(a[i] < N);
        assert_false(seen[a[i]]);
        seen[a[i]] = 1;
    }
    hm_epoch_order(7, 0, c, N);
    assert_memory_not_equal(a, c, N * 4);
    free(a), free(b), free(c), free(seen);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_and_holdout),
        cmocka_unit_test(test_too_short),
        cmocka_unit_test(test_epoch_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
