/* test-metrics.c - metrics.jsonl keys, rewinding on resume, and a loss.svg a browser can open. */
#include "testutil.h"

#include "hermes/metrics.h"
#include "util/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_log_rewind_and_svg(void **state)
{
    char *dir = tu_mkdtemp();
    char *p = tu_path(dir, "metrics.jsonl"), *svg = tu_path(dir, "loss.svg");
    struct hm_metrics *m;
    assert_int_equal(hm_metrics_open(p, -1, 16, &m), HM_OK);
    for (long s = 1; s <= 10; s++) {
        struct hm_metric_row r = {s, 0, 5.0 / (double)s, 1e-3, 0.5, 1234.5, s % 5 == 0 ? 4.0 / (double)s : NAN};
        assert_int_equal(hm_metrics_append(m, &r), HM_OK);
    }
    assert_int_equal(hm_metrics_write_svg(m, svg), HM_OK);
    hm_metrics_free(m);

    char *text;
    assert_int_equal(hm_read_file(p, &text, NULL), HM_OK);
    assert_non_null(strstr(text, "{\"step\": 1, \"epoch\": 0, \"loss\": 5.000000, \"lr\": 1.000000e-03, "
                                 "\"grad_norm\": 0.500000, \"tokens_per_s\": 1234.5}"));
    assert_non_null(strstr(text, "\"val_loss\": 0.800000}"));
    hm_free(text);
    assert_int_equal(hm_read_file(svg, &text, NULL), HM_OK);
    assert_non_null(strstr(text, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert_int_equal(strstr(text, "<polyline") != NULL, 1);
    assert_non_null(strstr(strstr(text, "<polyline") + 1, "<polyline")); /* train and val */
    assert_non_null(strstr(text, "</svg>") ? text : NULL);
    hm_free(text);

    /* Resume from step 6: rows 7..10 disappear, then the run continues. */
    assert_int_equal(hm_metrics_open(p, 6, 16, &m), HM_OK);
    assert_int_equal(hm_metrics_count(m), 6);
    struct hm_metric_row r = {7, 0, 0.7, 1e-3, 0.5, 1.0, NAN};
    assert_int_equal(hm_metrics_append(m, &r), HM_OK);
    hm_metrics_free(m);
    assert_int_equal(hm_read_file(p, &text, NULL), HM_OK);
    int lines = 0;
    for (char *q = text; *q; q++)
        lines += *q == '\n';
    assert_int_equal(lines, 7);
    assert_null(strstr(text, "\"step\": 8"));
    hm_free(text);
    tu_rmdir(dir);
    free(p), free(svg), free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_log_rewind_and_svg)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
