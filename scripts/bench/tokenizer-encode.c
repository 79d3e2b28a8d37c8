/*
 * tokenizer-encode.c - benchmark helper for scripts/bench/tokenizer: loads a tokenizer.json,
 * reads a corpus into memory, cuts it into documents of N lines, and times
 * hm_tokenizer_encode_batch over them. Prints one JSON line: seconds, MB, tokens and an FNV-1a
 * checksum of the id stream (the script compares it with HF's). Built by the script.
 */
#include "hermes/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s TOKENIZER CORPUS LINES_PER_DOC THREADS\n", argv[0]);
        return 2;
    }
    struct hm_tokenizer *tok;
    if (hm_tokenizer_load(argv[1], &tok) != HM_OK) {
        fprintf(stderr, "error: %s\n", hm_last_error());
        return 1;
    }
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        perror(argv[2]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    size_t n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = malloc(n + 1);
    if (!data || fread(data, 1, n, f) != n)
        return 1;
    fclose(f);
    long per = atol(argv[3]);
    size_t cap = n / 16 + 16, nd = 0;
    const char **docs = malloc(cap * sizeof *docs);
    size_t *lens = malloc(cap * sizeof *lens);
    for (size_t pos = 0; pos < n;) {
        size_t end = pos;
        for (long k = 0; k < per && end < n; k++) {
            char *nl = memchr(data + end, '\n', n - end);
            end = nl ? (size_t)(nl - data) + 1 : n;
        }
        docs[nd] = data + pos;
        lens[nd++] = end - pos;
        pos = end;
    }
    struct hm_token_batch b;
    double t0 = now();
    if (hm_tokenizer_encode_batch(tok, docs, lens, nd, atoi(argv[4]), &b) != HM_OK) {
        fprintf(stderr, "error: %s\n", hm_last_error());
        return 1;
    }
    double dt = now() - t0;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < b.n_ids; i++)
        h = (h ^ b.ids[i]) * 1099511628211ull;
    printf("{\"seconds\": %.4f, \"mb\": %.3f, \"docs\": %zu, \"tokens\": %zu, \"checksum\": \"%016llx\"}\n",
           dt, (double)n / 1e6, nd, b.n_ids, (unsigned long long)h);
    hm_token_batch_free(&b);
    hm_tokenizer_free(tok);
    free(docs);
    free(lens);
    free(data);
    return 0;
}
