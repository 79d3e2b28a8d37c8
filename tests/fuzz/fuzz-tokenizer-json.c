/* fuzz-tokenizer-json - tokenizer.json loading on arbitrary bytes. A tokenizer that loads must be
 * usable: encoding text and decoding it gives the text back, no byte dropped. Spaces are left out
 * of the comparison: add_prefix_space and added tokens' lstrip/rstrip add or eat them, as in HF. */
#include "hermes/tokenizer.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static bool same_without_spaces(const char *a, size_t na, const char *b, size_t nb)
{
    size_t i = 0, j = 0;
    for (;;) {
        while (i < na && a[i] == ' ')
            i++;
        while (j < nb && b[j] == ' ')
            j++;
        if (i == na || j == nb)
            return i == na && j == nb;
        if (a[i++] != b[j++])
            return false;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hm_tokenizer *tok;
    if (hm_tokenizer_load_json((const char *)data, size, "fuzz.json", &tok) != HM_OK)
        return 0;
    static const char text[] = "Hello, world! <eos> caf\xc3\xa9 \xff\x00 12345\n\t  x";
    size_t len = sizeof text - 1;
    hm_token ids[256];
    size_t n;
    if (hm_tokenizer_encode(tok, text, len, ids, 256, &n) != HM_OK || n > 256)
        abort();
    char out[512];
    size_t got;
    if (hm_tokenizer_decode(tok, ids, n, false, out, sizeof out, &got) != HM_OK ||
        got >= sizeof out || !same_without_spaces(out, got, text, len))
        abort();
    char *json;
    if (hm_tokenizer_to_json(tok, &json) == HM_OK) {
        struct hm_tokenizer *again;
        if (hm_tokenizer_load_json(json, strlen(json), "fuzz-again.json", &again) != HM_OK)
            abort(); /* what we save must load */
        hm_tokenizer_free(again);
        hm_free(json);
    }
    hm_tokenizer_free(tok);
    return 0;
}
