/* fuzz-bpe-roundtrip - decode(encode(x)) == x for arbitrary bytes x (the README's promise), with a
 * tokenizer trained the way train-tokenizer does it (special tokens, 1000 ids) on a multilingual
 * fixture, then saved and loaded again so the tokenizer.json path is the one under test. */
#include "hermes/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct hm_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *path = HM_FIXTURES_DIR "/tokenizer/multilingual.txt";
    static const char *const specials[] = {"<pad>", "<bos>", "<eos>", "<unk>"};
    struct hm_tokenizer_train_opts opts = {.vocab_size = 1000, .min_frequency = 2,
                                           .special_tokens = specials, .n_special_tokens = 4};
    FILE *f = fopen(path, "rb");
    static char text[1 << 16];
    size_t len = f ? fread(text, 1, sizeof text, f) : 0;
    if (f)
        fclose(f);
    const char *texts[] = {text};
    struct hm_tokenizer *trained;
    char *json;
    if (len == 0 || hm_tokenizer_train(&opts, texts, &len, 1, &trained) != HM_OK ||
        hm_tokenizer_to_json(trained, &json) != HM_OK ||
        hm_tokenizer_load_json(json, strlen(json), "trained.json", &tok) != HM_OK) {
        fprintf(stderr, "fuzz-bpe-roundtrip: %s: %s\n", path, hm_last_error());
        abort();
    }
    hm_free(json);
    hm_tokenizer_free(trained);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n = 0;
    if (hm_tokenizer_encode(tok, (const char *)data, size, NULL, 0, &n) != HM_OK)
        abort();
    hm_token *ids = malloc((n ? n : 1) * sizeof *ids);
    char *out = malloc(size + 1);
    size_t n2 = 0, got = 0;
    if (!ids || !out || hm_tokenizer_encode(tok, (const char *)data, size, ids, n, &n2) != HM_OK ||
        n2 != n)
        abort();
    if (hm_tokenizer_decode(tok, ids, n, false, out, size + 1, &got) != HM_OK || got != size ||
        memcmp(out, data, size) != 0)
        abort();
    /* The streaming decoder gives the same bytes. */
    struct hm_decode_stream *s;
    if (hm_decode_stream_new(tok, false, &s) != HM_OK)
        abort();
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        const char *t;
        size_t len;
        if (hm_decode_stream_push(s, ids[i], &t, &len) != HM_OK || at + len > size ||
            memcmp(t, data + at, len) != 0)
            abort();
        at += len;
    }
    const char *t;
    size_t len;
    hm_decode_stream_flush(s, &t, &len);
    if (at + len != size || memcmp(t, data + at, len) != 0)
        abort();
    hm_decode_stream_free(s);
    free(ids);
    free(out);
    return 0;
}
