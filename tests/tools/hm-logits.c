/*
 * hm-logits.c - test helper for the export parity checks (tests/reference/export_ref.py): our
 * logits for a prompt, position by position, and our greedy continuation.
 *
 *   hm-logits CHECKPOINT CONFIG IDS_FILE OUT.f32 N_GREEDY
 *
 * IDS_FILE holds whitespace-separated token ids. OUT.f32 receives n_prompt x V float32 logits
 * (row t predicts token t+1), computed one token at a time over the KV cache. The N_GREEDY ids
 * that follow by argmax (lowest id on ties) go to stdout, space-separated. Exit 1 on any error.
 */
#include "hermes/model.h"

#include <stdio.h>
#include <stdlib.h>

static int fail(const char *what)
{
    fprintf(stderr, "hm-logits: %s: %s\n", what, hm_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: hm-logits CHECKPOINT CONFIG IDS_FILE OUT.f32 N_GREEDY\n");
        return 2;
    }
    int n_greedy = atoi(argv[5]), n = 0, cap = 0;
    int32_t *ids = NULL;
    FILE *f = fopen(argv[3], "r");
    if (!f)
        return perror(argv[3]), 1;
    for (int id; fscanf(f, "%d", &id) == 1;) {
        if (n == cap && !(ids = realloc(ids, (size_t)(cap = cap ? 2 * cap : 256) * sizeof *ids)))
            return 1;
        ids[n++] = id;
    }
    fclose(f);
    struct hm_model_config cfg;
    struct hm_backend *be;
    struct hm_model *m;
    struct hm_kv_cache *kv;
    struct hm_infer_graph g;
    if (hm_config_load(argv[2], &cfg) != HM_OK || hm_backend_cpu_new(&be) != HM_OK ||
        hm_model_new_infer(&cfg, be, &m) != HM_OK || hm_model_load_weights(m, argv[1]) != HM_OK)
        return fail("load");
    int ctx = n + (n_greedy > 0 ? n_greedy - 1 : 0);
    if (n == 0 || ctx > cfg.max_seq_len || hm_kv_cache_new(m, ctx, &kv) != HM_OK ||
        hm_model_build_infer_graph(m, kv, 1, &g) != HM_OK)
        return fail("prompt length or graph");
    int V = cfg.vocab_size;
    float *logits = malloc((size_t)V * sizeof *logits);
    FILE *out = fopen(argv[4], "wb");
    if (!logits || !out)
        return perror(argv[4]), 1;
    int32_t cur = ids[0];
    int last = n_greedy > 0 ? n + n_greedy - 1 : n;
    for (int pos = 0; pos < last; pos++) {
        if (hm_infer_run(&g, &cur, pos) != HM_OK ||
            hm_tensor_get_f32(g.logits, logits, (size_t)V) != HM_OK)
            return fail("forward");
        int best = 0;
        for (int v = 1; v < V; v++)
            best = logits[v] > logits[best] ? v : best;
        if (pos < n)
            fwrite(logits, sizeof *logits, (size_t)V, out);
        if (n_greedy > 0 && pos >= n - 1)
            printf("%s%d", pos > n - 1 ? " " : "", best);
        cur = pos + 1 < n ? ids[pos + 1] : best;
    }
    printf("\n");
    fclose(out);
    hm_infer_graph_free(&g);
    hm_kv_cache_free(kv);
    hm_model_free(m);
    hm_backend_free(be);
    free(ids);
    free(logits);
    return 0;
}
