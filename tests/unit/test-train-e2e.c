/*
 * test-train-e2e.c - the whole pipeline through the CLI: train a tokenizer, train nano on a small
 * real text for a few hundred steps (600), and require the validation loss to fall clearly below the
 * unigram entropy of the text (what a model that ignores context would reach). The text is
 * Debian's fortunes `computers` file when installed (scripts/setup-deps.sh installs it), else the
 * committed prose-and-code corpus.
 */
#include "testutil.h"

#include "hermes/metrics.h"
#include "hermes/token-cache.h"
#include "util/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_nano_learns(void **state)
{
    const char *text = "/usr/share/games/fortunes/computers";
    if (!hm_file_exists(text)) {
        printf("note: %s missing; using the committed corpus\n", text);
        text = HM_FIXTURES_DIR "/tokenizer/prose-code.txt";
    }
    char *dir = tu_mkdtemp();
    char cmd[2048], *out;
    /* .txt: the trainer treats one file as one document. */
    snprintf(cmd, sizeof cmd, "cp '%s' '%s/corpus.txt'", text, dir);
    assert_int_equal(tu_run(cmd, NULL), 0);
    snprintf(cmd, sizeof cmd, "train-tokenizer -i %s/corpus.txt -o %s/tok.json -v 512", dir, dir);
    assert_int_equal(tu_cli(cmd, &out), 0);
    free(out);
    double t0 = hm_time_s();
    snprintf(cmd, sizeof cmd,
             "train -d %s/corpus.txt -t %s/tok.json -m nano -o %s/run -b 16 --seq-len 64 --max-steps 600 -e 20 "
             "--lr 3e-3 --warmup 20 --eval-every 100 --eval-batches 8 --val-split 0.05 --threads 2",
             dir, dir, dir);
    int rc = tu_cli(cmd, &out);
    if (rc != 0)
        fail_msg("train failed (%d): %s", rc, out);
    printf("%s", strstr(out, "Done:") ? strstr(out, "Done:") : out);
    free(out);
    printf("training took %.1f s\n", hm_time_s() - t0);

    /* Unigram entropy of the token stream, in nats. */
    char *cache = tu_path(dir, "run/tokens-train.bin");
    struct hm_mmap mm;
    assert_int_equal(hm_mmap_open(cache, &mm), HM_OK);
    const uint16_t *tok = (const uint16_t *)((const char *)mm.data + 64);
    size_t n = (mm.size - 64) / 2;
    static double count[65536];
    memset(count, 0, sizeof count);
    for (size_t i = 0; i < n; i++)
        count[tok[i]]++;
    double H = 0;
    for (int i = 0; i < 65536; i++)
        if (count[i] > 0)
            H -= count[i] / n * log(count[i] / n);
    hm_mmap_close(&mm);

    char *mp = tu_path(dir, "run/metrics.jsonl");
    struct hm_metrics *m;
    assert_int_equal(hm_metrics_open(mp, 1L << 40, 0, &m), HM_OK);
    double val = NAN;
    for (long i = 0; i < hm_metrics_count(m); i++)
        if (!isnan(hm_metrics_rows(m)[i].val_loss))
            val = hm_metrics_rows(m)[i].val_loss;
    hm_metrics_free(m);
    printf("unigram entropy %.3f nats/token over %zu tokens; final validation loss %.3f\n", H, n, val);
    assert_false(isnan(val));
    assert_true(val < 0.85 * H);
    for (const char *f = "config.json\0weights.safetensors\0state.safetensors\0loss.svg\0"; *f; f += strlen(f) + 1) {
        snprintf(cmd, sizeof cmd, "run/%s", f);
        char *p = tu_path(dir, cmd);
        assert_true(hm_file_exists(p));
        free(p);
    }
    tu_rmdir(dir);
    free(dir), free(cache), free(mp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_nano_learns)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
