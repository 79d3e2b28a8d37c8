/*
 * metrics.c - metrics.jsonl (append-only, fsync'ed per row so a kill loses at most the row being
 * written) and loss.svg (a self-contained SVG line chart with axes, written atomically).
 */
#include "hermes/metrics.h"
#include "util/util.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

struct hm_metrics {
    FILE *f;
    char *path;
    struct hm_metric_row *rows;
    long n, cap;
};

static bool parse_row(const char *line, struct hm_metric_row *r)
{
    json_t *o = json_loads(line, 0, NULL);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return false;
    }
    json_t *v;
    r->step = (v = json_object_get(o, "step")) && json_is_integer(v) ? (long)json_integer_value(v) : -1;
    r->epoch = (v = json_object_get(o, "epoch")) && json_is_integer(v) ? (long)json_integer_value(v) : 0;
#define NUM(key) ((v = json_object_get(o, key)) && json_is_number(v) ? json_number_value(v) : NAN)
    r->loss = NUM("loss");
    r->lr = NUM("lr");
    r->grad_norm = NUM("grad_norm");
    r->tokens_per_s = NUM("tokens_per_s");
    r->val_loss = NUM("val_loss");
#undef NUM
    json_decref(o);
    return r->step >= 0;
}

static enum hm_status push(struct hm_metrics *m, const struct hm_metric_row *r)
{
    if (m->n == m->cap) {
        long cap = m->cap ? m->cap * 2 : 1024;
        struct hm_metric_row *rows = hm_realloc(m->rows, (size_t)cap * sizeof *rows);
        if (!rows)
            return hm_fail(HM_ERR_NOMEM, "%s: out of memory", m->path);
        m->rows = rows;
        m->cap = cap;
    }
    m->rows[m->n++] = *r;
    return HM_OK;
}

static void write_row_text(const struct hm_metric_row *r, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "{\"step\": %ld, \"epoch\": %ld", r->step, r->epoch);
    if (!isnan(r->loss))
        n += snprintf(buf + n, cap - n, ", \"loss\": %.6f, \"lr\": %.6e, \"grad_norm\": %.6f, "
                      "\"tokens_per_s\": %.1f", r->loss, r->lr, r->grad_norm, r->tokens_per_s);
    if (!isnan(r->val_loss))
        n += snprintf(buf + n, cap - n, ", \"val_loss\": %.6f", r->val_loss);
    snprintf(buf + n, cap - n, "}\n");
}

enum hm_status hm_metrics_open(const char *path, long keep_upto_step, long capacity,
                               struct hm_metrics **out)
{
    struct hm_metrics *m = hm_calloc(1, sizeof *m);
    if (!m || !(m->path = hm_strdup(path))) {
        hm_free(m);
        return hm_fail(HM_ERR_NOMEM, "%s: out of memory", path);
    }
    enum hm_status st = HM_OK;
    if (capacity > 0) {
        m->rows = hm_malloc((size_t)capacity * sizeof *m->rows);
        m->cap = m->rows ? capacity : 0;
    }
    if (keep_upto_step >= 0 && hm_file_exists(path)) {
        char *text;
        if ((st = hm_read_file(path, &text, NULL)) != HM_OK)
            goto fail;
        char *save = NULL;
        for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            struct hm_metric_row r;
            if (parse_row(line, &r) && r.step <= keep_upto_step && (st = push(m, &r)) != HM_OK)
                break;
        }
        hm_free(text);
        if (st != HM_OK)
            goto fail;
    }
    /* Rewrite what is kept, atomically, then append from there. */
    struct hm_atomic_file af;
    if ((st = hm_atomic_open(&af, path)) != HM_OK)
        goto fail;
    char buf[512];
    for (long i = 0; i < m->n; i++) {
        write_row_text(&m->rows[i], buf, sizeof buf);
        fputs(buf, af.f);
    }
    if ((st = hm_atomic_commit(&af)) != HM_OK)
        goto fail;
    if (!(m->f = fopen(path, "a"))) {
        st = hm_fail(HM_ERR_IO, "%s: cannot append: %s", path, strerror(errno));
        goto fail;
    }
    *out = m;
    return HM_OK;
fail:
    hm_metrics_free(m);
    return st;
}

enum hm_status hm_metrics_append(struct hm_metrics *m, const struct hm_metric_row *row)
{
    char buf[512];
    write_row_text(row, buf, sizeof buf);
    if (fputs(buf, m->f) < 0 || fflush(m->f) != 0)
        return hm_fail(HM_ERR_IO, "%s: write failed: %s", m->path, strerror(errno));
    fsync(fileno(m->f));
    return push(m, row);
}

long hm_metrics_count(const struct hm_metrics *m)
{
    return m->n;
}

const struct hm_metric_row *hm_metrics_rows(const struct hm_metrics *m)
{
    return m->rows;
}

void hm_metrics_free(struct hm_metrics *m)
{
    if (!m)
        return;
    if (m->f)
        fclose(m->f);
    hm_free(m->rows);
    hm_free(m->path);
    hm_free(m);
}

/* ---- loss.svg ------------------------------------------------------------------------------ */

static double nice_step(double range)
{
    double e = pow(10.0, floor(log10(range / 5.0)));
    double f = range / 5.0 / e;
    return e * (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10);
}

enum hm_status hm_metrics_write_svg(const struct hm_metrics *m, const char *svg_path)
{
    const double W = 800, H = 480, L = 70, R = 20, Tm = 40, B = 50;
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (long i = 0; i < m->n; i++) {
        const struct hm_metric_row *r = &m->rows[i];
        double ys[2] = {r->loss, r->val_loss};
        for (int k = 0; k < 2; k++) {
            if (!isfinite(ys[k]))
                continue;
            xmin = fmin(xmin, (double)r->step);
            xmax = fmax(xmax, (double)r->step);
            ymin = fmin(ymin, ys[k]);
            ymax = fmax(ymax, ys[k]);
        }
    }
    if (!isfinite(xmin)) {
        xmin = 0, xmax = 1, ymin = 0, ymax = 1;
    }
    if (xmax <= xmin)
        xmax = xmin + 1;
    if (ymax <= ymin)
        ymax = ymin + 1;
    double pad = 0.05 * (ymax - ymin);
    ymin -= pad;
    ymax += pad;
#define PX(x) (L + ((x) - xmin) / (xmax - xmin) * (W - L - R))
#define PY(y) (H - B - ((y) - ymin) / (ymax - ymin) * (H - Tm - B))
    struct hm_atomic_file af;
    enum hm_status st = hm_atomic_open(&af, svg_path);
    if (st != HM_OK)
        return st;
    FILE *f = af.f;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%.0f\" y=\"24\" font-size=\"16\" text-anchor=\"middle\">hermes-llm training loss</text>\n", W / 2);
    double ys = nice_step(ymax - ymin);
    for (double y = ceil(ymin / ys) * ys; y <= ymax; y += ys)
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                L, W - R, PY(y), PY(y), L - 6, PY(y) + 4, y);
    double xs = nice_step(xmax - xmin);
    if (xs < 1)
        xs = 1;
    for (double x = ceil(xmin / xs) * xs; x <= xmax; x += xs)
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n",
                PX(x), PX(x), Tm, H - B, PX(x), H - B + 18, x);
    fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#333\"/>\n",
            L, Tm, W - L - R, H - Tm - B);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">step</text>\n", (W + L - R) / 2, H - 12);
    fprintf(f, "<text x=\"16\" y=\"%.0f\" text-anchor=\"middle\" transform=\"rotate(-90 16 %.0f)\">loss</text>\n",
            (H - B + Tm) / 2, (H - B + Tm) / 2);
    const char *color[2] = {"#1f77b4", "#d62728"};
    const char *label[2] = {"train", "val"};
    for (int k = 0; k < 2; k++) {
        int pts = 0;
        for (long i = 0; i < m->n; i++) {
            double y = k ? m->rows[i].val_loss : m->rows[i].loss;
            if (!isfinite(y))
                continue;
            if (pts++ == 0)
                fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"",
                        color[k]);
            fprintf(f, "%.1f,%.1f ", PX((double)m->rows[i].step), PY(y));
        }
        if (pts)
            fprintf(f, "\"/>\n");
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" fill=\"%s\">%s</text>\n", W - R - 60, Tm + 18 + 16.0 * k,
                color[k], label[k]);
    }
#undef PX
#undef PY
    fprintf(f, "</svg>\n");
    if (ferror(f)) {
        hm_atomic_abort(&af);
        return hm_fail(HM_ERR_IO, "%s: write failed", svg_path);
    }
    return hm_atomic_commit(&af);
}
