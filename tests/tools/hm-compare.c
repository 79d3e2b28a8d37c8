/*
 * hm-compare.c - test helper for tests/cli/mpi.sh: compare two training runs within a tolerance,
 * since a different world size sums gradients in a different order and is not bit-identical.
 *
 *   hm-compare weights A.safetensors B.safetensors ATOL RTOL   same names, shapes; |a-b| <= atol+rtol*|b|
 *   hm-compare metrics A.jsonl B.jsonl ATOL                    same steps; loss, grad_norm, val_loss
 *
 * Prints the largest difference; exit 0 within tolerance, 1 outside it or on a mismatch, 2 on usage.
 */
#include "hermes/safetensors.h"
#include "hermes/tensor.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float elem(const struct hm_st_tensor *t, uint64_t i)
{
    if (t->dtype == HM_ST_BF16)
        return hm_bf16_to_f32(((const uint16_t *)t->data)[i]);
    float f;
    memcpy(&f, (const char *)t->data + i * 4, 4);
    return f;
}

static int compare_weights(const char *pa, const char *pb, double atol, double rtol)
{
    struct hm_st_file *a, *b;
    if (hm_st_open(pa, &a) != HM_OK || hm_st_open(pb, &b) != HM_OK) {
        fprintf(stderr, "hm-compare: %s\n", hm_last_error());
        return 1;
    }
    if (hm_st_count(a) != hm_st_count(b)) {
        fprintf(stderr, "hm-compare: %zu vs %zu tensors\n", hm_st_count(a), hm_st_count(b));
        return 1;
    }
    double worst = 0;
    const char *bad = NULL;
    for (size_t i = 0; i < hm_st_count(a); i++) {
        const struct hm_st_tensor *ta = hm_st_at(a, i), *tb = hm_st_find(b, ta->name);
        if (!tb || tb->numel != ta->numel || tb->ndim != ta->ndim ||
            (ta->dtype != HM_ST_F32 && ta->dtype != HM_ST_BF16) || tb->dtype != ta->dtype) {
            fprintf(stderr, "hm-compare: tensor %s differs in presence, shape or dtype\n", ta->name);
            return 1;
        }
        for (uint64_t k = 0; k < ta->numel; k++) {
            double x = elem(ta, k), y = elem(tb, k), d = fabs(x - y);
            if (!bad && !(d <= atol + rtol * fabs(y)))
                bad = ta->name;
            if (!(d <= worst))
                worst = d;
        }
    }
    printf("weights: max |a-b| = %.3g over %zu tensors\n", worst, hm_st_count(a));
    if (bad) {
        fprintf(stderr, "hm-compare: %s exceeds atol %g + rtol %g\n", bad, atol, rtol);
        return 1;
    }
    hm_st_close(a);
    hm_st_close(b);
    return 0;
}

/* One metrics.jsonl as an array of rows. */
static json_t *load_rows(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "hm-compare: cannot open %s\n", path);
        return NULL;
    }
    json_t *rows = json_array();
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        json_error_t e;
        json_t *r = json_loads(line, 0, &e);
        if (!r) {
            fprintf(stderr, "hm-compare: %s: bad JSON line\n", path);
            fclose(f);
            json_decref(rows);
            return NULL;
        }
        json_array_append_new(rows, r);
    }
    fclose(f);
    return rows;
}

static int compare_metrics(const char *pa, const char *pb, double atol)
{
    json_t *a = load_rows(pa), *b = load_rows(pb);
    if (!a || !b)
        return 1;
    if (json_array_size(a) != json_array_size(b) || json_array_size(a) == 0) {
        fprintf(stderr, "hm-compare: %zu vs %zu metric rows\n", json_array_size(a), json_array_size(b));
        return 1;
    }
    static const char *const keys[] = {"loss", "grad_norm", "val_loss"};
    double worst = 0;
    int n_vals = 0;
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *ra = json_array_get(a, i), *rb = json_array_get(b, i);
        if (json_integer_value(json_object_get(ra, "step")) != json_integer_value(json_object_get(rb, "step"))) {
            fprintf(stderr, "hm-compare: row %zu: different steps\n", i);
            return 1;
        }
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            json_t *x = json_object_get(ra, keys[k]), *y = json_object_get(rb, keys[k]);
            if (!x && !y)
                continue;
            if (!x || !y) {
                fprintf(stderr, "hm-compare: row %zu: %s in one file only\n", i, keys[k]);
                return 1;
            }
            double d = fabs(json_number_value(x) - json_number_value(y));
            n_vals++;
            if (!(d <= worst))
                worst = d;
            if (!(d <= atol)) {
                fprintf(stderr, "hm-compare: step %lld %s: %.6f vs %.6f\n",
                        (long long)json_integer_value(json_object_get(ra, "step")), keys[k],
                        json_number_value(x), json_number_value(y));
                return 1;
            }
        }
    }
    printf("metrics: %zu rows, %d values, max |a-b| = %.3g\n", json_array_size(a), n_vals, worst);
    json_decref(a);
    json_decref(b);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "weights") == 0)
        return compare_weights(argv[2], argv[3], atof(argv[4]), atof(argv[5]));
    if (argc == 5 && strcmp(argv[1], "metrics") == 0)
        return compare_metrics(argv[2], argv[3], atof(argv[4]));
    fprintf(stderr, "usage: hm-compare weights A B ATOL RTOL | metrics A.jsonl B.jsonl ATOL\n");
    return 2;
}
