/* test-schedule.c - LR schedules against their closed forms, at the boundaries that matter. */
#include "testutil.h"

#include "hermes/schedule.h"

#include <math.h>
#include <string.h>

static void test_warmup_then_cosine(void **state)
{
    struct hm_lr_schedule s = {HM_LR_COSINE, 1e-3, 1e-4, 10, 110, 0};
    assert_true(fabs(hm_lr_at(&s, 0) - 1e-4) < 1e-15);       /* (0+1)/10 of lr_max */
    assert_true(fabs(hm_lr_at(&s, 9) - 1e-3) < 1e-15);       /* end of warmup */
    assert_true(fabs(hm_lr_at(&s, 10) - 1e-3) < 1e-15);      /* cosine p = 0 */
    assert_true(fabs(hm_lr_at(&s, 60) - 5.5e-4) < 1e-12);    /* p = 0.5: midpoint */
    assert_true(fabs(hm_lr_at(&s, 110) - 1e-4) < 1e-15);     /* p = 1: lr_min */
    assert_true(fabs(hm_lr_at(&s, 500) - 1e-4) < 1e-15);     /* clamped past the end */
    for (long t = 11; t < 110; t++)
        assert_true(hm_lr_at(&s, t) < hm_lr_at(&s, t - 1)); /* strictly decreasing */
}

static void test_constant_and_wsd(void **state)
{
    struct hm_lr_schedule c = {HM_LR_CONSTANT, 3e-4, 0, 0, 100, 0};
    assert_true(hm_lr_at(&c, 0) == 3e-4 && hm_lr_at(&c, 99) == 3e-4);
    struct hm_lr_schedule w = {HM_LR_WSD, 1.0, 0.0, 10, 110, 0.2};
    assert_true(hm_lr_at(&w, 50) == 1.0);
    assert_true(hm_lr_at(&w, 89) == 1.0);               /* stable until the last 20 steps */
    assert_true(fabs(hm_lr_at(&w, 100) - 0.5) < 1e-12); /* halfway through the decay */
    assert_true(hm_lr_at(&w, 110) == 0.0);
}

static void test_parse(void **state)
{
    enum hm_lr_kind k;
    assert_int_equal(hm_lr_kind_parse("wsd", &k), HM_OK);
    assert_int_equal(k, HM_LR_WSD);
    assert_int_equal(hm_lr_kind_parse("linear", &k), HM_ERR_USAGE);
    assert_non_null(strstr(hm_last_error(), "constant, cosine or wsd"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_warmup_then_cosine),
        cmocka_unit_test(test_constant_and_wsd),
        cmocka_unit_test(test_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
