/*
 * test-tokenizer.c - byte-level BPE: the byte table, the GPT-2 pre-tokenizer against HF's own
 * splits, trainer parity with HF BpeTrainer (vocab + merges) on the committed corpora including
 * the §1.7.1 reuse case, encoder parity (ids), byte-exact and streaming decode, batch encode,
 * tokenizer.json load/save, and the error paths of load and train.
 * The expected files come from tests/reference/tokenizer_ref.py generate.
 */
#include "testutil.h"

#include "data/reader.h"
#include "hermes/tokenizer.h"
#include "tokenizer/tokenizer-impl.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIX HM_FIXTURES_DIR "/tokenizer/"

static json_t *load_json(const char *path)
{
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    if (!j)
        fail_msg("%s: %s", path, err.text);
    return j;
}

/* The encode texts, in order. */
static size_t read_texts(char ***texts, size_t **lens)
{
    struct hm_reader *r;
    assert_int_equal(hm_reader_open(FIX "encode-texts.jsonl", NULL, &r), HM_OK);
    size_t n = 0, cap = 64;
    *texts = malloc(cap * sizeof **texts);
    *lens = malloc(cap * sizeof **lens);
    const char *t;
    size_t l;
    while (hm_reader_next(r, &t, &l) == HM_OK && t) {
        (*texts)[n] = malloc(l + 1);
        memcpy((*texts)[n], t, l);
        (*lens)[n++] = l;
        assert_true(n < cap);
    }
    hm_reader_free(r);
    return n;
}

static void free_texts(char **texts, size_t *lens, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(texts[i]);
    free(texts);
    free(lens);
}

static struct hm_tokenizer *train_simple(const char *const *docs, size_t n, uint32_t vocab,
                                         uint64_t minf, const char *const *specials, size_t ns)
{
    size_t *lens = malloc(n * sizeof *lens);
    for (size_t i = 0; i < n; i++)
        lens[i] = strlen(docs[i]);
    struct hm_tokenizer_train_opts o = {.vocab_size = vocab, .min_frequency = minf,
                                        .special_tokens = specials, .n_special_tokens = ns};
    struct hm_tokenizer *t = NULL;
    enum hm_status st = hm_tokenizer_train(&o, docs, lens, n, &t);
    free(lens);
    if (st != HM_OK)
        fail_msg("train: %s", hm_last_error());
    return t;
}

static size_t enc(struct hm_tokenizer *t, const char *s, size_t len, hm_token *ids, size_t cap)
{
    size_t n;
    assert_int_equal(hm_tokenizer_encode(t, s, len, ids, cap, &n), HM_OK);
    assert_true(n <= cap);
    return n;
}

static void assert_roundtrip(struct hm_tokenizer *t, const char *s, size_t len)
{
    size_t cap = len + 8, n, m;
    hm_token *ids = malloc(cap * sizeof *ids);
    n = enc(t, s, len, ids, cap);
    char *back = malloc(len + 1);
    assert_int_equal(hm_tokenizer_decode(t, ids, n, false, back, len + 1, &m), HM_OK);
    assert_int_equal(m, len);
    assert_memory_equal(back, s, len);
    free(ids);
    free(back);
}

/* ---- byte table and pre-tokenizer ---------------------------------------------------------- */

static void test_byte_table(void **state)
{
    (void)state;
    assert_int_equal(hm_byte_to_cp[0x00], 0x100);
    assert_int_equal(hm_byte_to_cp['\t'], 0x109);
    assert_int_equal(hm_byte_to_cp['\n'], 0x10A);
    assert_int_equal(hm_byte_to_cp['\r'], 0x10D);
    assert_int_equal(hm_byte_to_cp[' '], 0x120);
    assert_int_equal(hm_byte_to_cp[0x7F], 0x121);
    assert_int_equal(hm_byte_to_cp[0xA0], 0x142);
    assert_int_equal(hm_byte_to_cp[0xAD], 0x143);
    assert_int_equal(hm_byte_to_cp['A'], 'A');
    assert_int_equal(hm_byte_to_cp[0xFF], 0xFF);
    bool seen[0x144] = {0};
    for (int b = 0; b < 256; b++) {
        assert_true(hm_byte_to_cp[b] < 0x144);
        assert_false(seen[hm_byte_to_cp[b]]);
        seen[hm_byte_to_cp[b]] = true;
        assert_int_equal(hm_cp_to_byte(hm_byte_to_cp[b]), b);
    }
    assert_int_equal(hm_cp_to_byte(0x20), -1);
    assert_int_equal(hm_cp_to_byte(0x144), -1);
}

/* Pieces of s joined by '|', as byte-level spellings. */
static void pieces(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t pos = 0; pos < n;) {
        size_t end = hm_pretok_next(s, n, pos);
        assert_true(end > pos && end <= n);
        if (o)
            out[o++] = '|';
        o += hm_bytes_to_spelling((const uint8_t *)s + pos, end - pos, out + o);
        pos = end;
    }
    out[o] = 0;
}

static void test_pretok_spec_cases(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t n;
        const char *want;
    } cases[] = {
        {"Hello  world", 12, "Hello|Ġ|Ġworld"},
        {"a \nb", 4, "a|Ġ|Ċ|b"},
        {"a \n", 3, "a|ĠĊ"},
        {"\n\nfoo", 5, "Ċ|Ċ|foo"},
        {" 's", 3, "Ġ'|s"},
        {"I'm 'S", 6, "I|'m|Ġ'|S"},
        /* Invalid UTF-8 bytes are 'other' characters of one byte. */
        {"a\xff\xfe b\xc3", 6, "a|ÿþ|Ġb|Ã"},
    };
    char out[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pieces(cases[i].in, cases[i].n, out);
        assert_string_equal(out, cases[i].want);
    }
}

static void test_pretok_matches_hf(void **state)
{
    (void)state;
    json_t *cases = load_json(FIX "pretok.expected.json");
    size_t i;
    json_t *c;
    char *buf = malloc(1 << 20), *want = malloc(1 << 20);
    json_array_foreach(cases, i, c) {
        json_t *text = json_object_get(c, "text");
        pieces(json_string_value(text), json_string_length(text), buf);
        size_t o = 0, j;
        json_t *p;
        json_array_foreach(json_object_get(c, "pieces"), j, p) {
            if (o)
                want[o++] = '|';
            memcpy(want + o, json_string_value(p), json_string_length(p));
            o += json_string_length(p);
        }
        want[o] = 0;
        if (strcmp(buf, want) != 0)
            fail_msg("case %zu: got %s, HF %s", i, buf, want);
    }
    free(buf);
    free(want);
    json_decref(cases);
}

/* ---- trainer parity with HF ---------------------------------------------------------------- */

/* Feed every record of the corpus at path to tr. */
static void feed_file(struct hm_tokenizer_trainer *tr, const char *path)
{
    struct hm_reader *r;
    assert_int_equal(hm_reader_open(path, NULL, &r), HM_OK);
    const char *t;
    size_t l;
    while (hm_reader_next(r, &t, &l) == HM_OK && t)
        assert_int_equal(hm_tokenizer_trainer_feed(tr, t, l), HM_OK);
    hm_reader_free(r);
}

static void check_parity(const char *expected_name)
{
    char path[512];
    snprintf(path, sizeof path, FIX "%s", expected_name);
    json_t *exp = load_json(path);
    const char *corpus = json_string_value(json_object_get(exp, "corpus"));
    json_t *specials = json_object_get(exp, "special_tokens");
    const char *sp[16];
    size_t ns = json_array_size(specials);
    for (size_t i = 0; i < ns; i++)
        sp[i] = json_string_value(json_array_get(specials, i));
    struct hm_tokenizer_train_opts o = {
        .vocab_size = (uint32_t)json_integer_value(json_object_get(exp, "vocab_size")),
        .min_frequency = (uint64_t)json_integer_value(json_object_get(exp, "min_frequency")),
        .special_tokens = sp,
        .n_special_tokens = ns,
    };
    struct hm_tokenizer_trainer *tr;
    assert_int_equal(hm_tokenizer_trainer_new(&o, &tr), HM_OK);
    snprintf(path, sizeof path, FIX "%s", corpus);
    feed_file(tr, path);
    struct hm_tokenizer *tok;
    if (hm_tokenizer_trainer_finish(tr, &tok) != HM_OK)
        fail_msg("%s", hm_last_error());
    hm_tokenizer_trainer_free(tr);

    /* Vocab: the same spelling for every id. */
    json_t *vocab = json_object_get(exp, "vocab");
    assert_int_equal(hm_tokenizer_vocab_size(tok), json_array_size(vocab));
    for (size_t i = 0; i < json_array_size(vocab); i++)
        if (strcmp(hm_tokenizer_id_to_token(tok, (uint32_t)i),
                   json_string_value(json_array_get(vocab, i))) != 0)
            fail_msg("%s: id %zu is '%s', HF has '%s'", corpus, i,
                     hm_tokenizer_id_to_token(tok, (uint32_t)i),
                     json_string_value(json_array_get(vocab, i)));
    /* Merges, as written to tokenizer.json. */
    char *js;
    assert_int_equal(hm_tokenizer_to_json(tok, &js), HM_OK);
    json_t *ours = json_loads(js, 0, NULL);
    hm_free(js);
    json_t *om = json_object_get(json_object_get(ours, "model"), "merges");
    json_t *em = json_object_get(exp, "merges");
    assert_int_equal(json_array_size(om), json_array_size(em));
    for (size_t i = 0; i < json_array_size(em); i++)
        if (strcmp(json_string_value(json_array_get(om, i)), json_string_value(json_array_get(em, i))))
            fail_msg("%s: merge %zu is '%s', HF has '%s'", corpus, i,
                     json_string_value(json_array_get(om, i)), json_string_value(json_array_get(em, i)));
    json_decref(ours);

    /* Encodings of the test texts, and their byte-exact decodings. */
    char **texts;
    size_t *lens;
    size_t nt = read_texts(&texts, &lens);
    json_t *encs = json_object_get(exp, "encodings");
    assert_int_equal(nt, json_array_size(encs));
    hm_token ids[4096];
    for (size_t i = 0; i < nt; i++) {
        size_t n = enc(tok, texts[i], lens[i], ids, 4096);
        json_t *e = json_array_get(encs, i);
        if (n != json_array_size(e))
            fail_msg("%s: text %zu: %zu ids, HF %zu", corpus, i, n, json_array_size(e));
        for (size_t j = 0; j < n; j++)
            assert_int_equal(ids[j], json_integer_value(json_array_get(e, j)));
        assert_roundtrip(tok, texts[i], lens[i]);
    }
    free_texts(texts, lens, nt);
    hm_tokenizer_free(tok);
    json_decref(exp);
}

static void test_parity_prose_code(void **state) { (void)state; check_parity("prose-code.expected.json"); }
static void test_parity_numbers_ws(void **state) { (void)state; check_parity("numbers-ws.expected.json"); }
static void test_parity_multilingual(void **state) { (void)state; check_parity("multilingual.expected.json"); }
static void test_parity_docs_jsonl(void **state) { (void)state; check_parity("docs.expected.json"); }

/* §1.7.1: special tokens "eos" and "pad" are also corpus words, so merges produce strings that
 * already have ids. Like HF we reuse the id (the vocab does not grow), record the merge, and
 * the result is identical to HF's (checked against its fixture). */
static void test_parity_specials_reuse(void **state)
{
    (void)state;
    check_parity("specials-reuse.expected.json");
    const char *docs[] = {"eos eos eos pad pad pad"};
    const char *sp[] = {"eos", "pad"};
    struct hm_tokenizer *t = train_simple(docs, 1, 2 + 256 + 10, 1, sp, 2);
    /* e+o, eo+s -> "eos" (id 0, reused), p+a, pa+d -> "pad" (id 1), then Ġ+eos, Ġ+pad ... */
    assert_int_equal(hm_tokenizer_token_to_id(t, "eos"), 0);
    assert_int_equal(hm_tokenizer_token_to_id(t, "pad"), 1);
    hm_token ids[16];
    size_t n = enc(t, "eos", 3, ids, 16);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 0); /* special "eos" also matches as an added token */
    n = enc(t, "xeos", 4, ids, 16);
    assert_int_equal(n, 2);
    assert_int_equal(ids[1], 0);
    hm_tokenizer_free(t);
}

/* ---- trainer semantics --------------------------------------------------------------------- */

static void test_trainer_ties_and_overlaps(void **state)
{
    (void)state;
    /* Equal counts: (a, b) beats (c, d) because id(a) < id(c). */
    const char *docs[] = {"ab", "cd"};
    struct hm_tokenizer *t = train_simple(docs, 2, 257, 1, NULL, 0);
    assert_int_equal(hm_tokenizer_vocab_size(t), 257);
    assert_string_equal(hm_tokenizer_id_to_token(t, 256), "ab");
    /* Byte ids by code point: '!' is 0, space (Ġ) is 220, newline (Ċ) is 198. */
    assert_int_equal(hm_tokenizer_token_to_id(t, "!"), 0);
    assert_int_equal(hm_tokenizer_token_to_id(t, "Ġ"), 220);
    assert_int_equal(hm_tokenizer_token_to_id(t, "Ċ"), 198);
    hm_tokenizer_free(t);

    /* "aaaa": (a, a) counts 3 overlapping windows; merged left to right it gives "aa aa". */
    const char *docs2[] = {"aaaa"};
    t = train_simple(docs2, 1, 300, 1, NULL, 0);
    assert_int_equal(hm_tokenizer_vocab_size(t), 258); /* aa, then aaaa; nothing more */
    assert_string_equal(hm_tokenizer_id_to_token(t, 256), "aa");
    assert_string_equal(hm_tokenizer_id_to_token(t, 257), "aaaa");
    hm_token ids[8];
    assert_int_equal(enc(t, "aaa", 3, ids, 8), 2);
    assert_int_equal(ids[0], 256);
    assert_int_equal(ids[1], 'a' - '!');
    hm_tokenizer_free(t);

    /* min_frequency: pairs seen once are not merged at 2. */
    const char *docs3[] = {"xy", "xy", "zw"};
    t = train_simple(docs3, 3, 1000, 2, NULL, 0);
    assert_int_equal(hm_tokenizer_vocab_size(t), 257);
    assert_string_equal(hm_tokenizer_id_to_token(t, 256), "xy");
    hm_tokenizer_free(t);

    /* Special tokens take ids 0..k-1 and are special. */
    const char *sp[] = {"<pad>", "<bos>", "<eos>", "<unk>"};
    t = train_simple(docs, 2, 261, 1, sp, 4);
    assert_int_equal(hm_tokenizer_token_to_id(t, "<eos>"), 2);
    assert_true(hm_tokenizer_is_special(t, 3));
    assert_false(hm_tokenizer_is_special(t, 4));
    assert_int_equal(hm_tokenizer_token_to_id(t, "!"), 4);
    assert_int_equal(hm_tokenizer_token_to_id(t, "nope"), -1);
    assert_null(hm_tokenizer_id_to_token(t, 9999));
    hm_tokenizer_free(t);
}

static void test_trainer_errors(void **state)
{
    (void)state;
    struct hm_tokenizer_trainer *tr;
    const char *sp[] = {"<pad>", "<pad>"};
    struct hm_tokenizer_train_opts o = {.vocab_size = 1000, .special_tokens = sp,
                                        .n_special_tokens = 2};
    assert_int_equal(hm_tokenizer_trainer_new(&o, &tr), HM_ERR_USAGE);
    assert_non_null(strstr(hm_last_error(), "twice"));
    o.n_special_tokens = 1;
    o.vocab_size = 256;
    assert_int_equal(hm_tokenizer_trainer_new(&o, &tr), HM_ERR_USAGE);
    o.vocab_size = 257;
    assert_int_equal(hm_tokenizer_trainer_new(&o, &tr), HM_OK);
    struct hm_tokenizer *t = NULL;
    assert_int_equal(hm_tokenizer_trainer_feed(tr, "", 0), HM_OK);
    assert_int_equal(hm_tokenizer_trainer_finish(tr, &t), HM_ERR_FORMAT);
    assert_non_null(strstr(hm_last_error(), "empty"));
    assert_null(t);
    hm_tokenizer_trainer_free(tr);
}

/* ---- encoding and decoding ----------------------------------------------------------------- */

/* Trained on a corpus; no prefix space, so decode(encode(x)) == x. */
static struct hm_tokenizer *corpus_tokenizer(void)
{
    const char *sp[] = {"<pad>", "<bos>", "<eos>", "<unk>"};
    struct hm_tokenizer_train_opts o = {.vocab_size = 1000, .min_frequency = 2,
                                        .special_tokens = sp, .n_special_tokens = 4};
    struct hm_tokenizer_trainer *tr;
    assert_int_equal(hm_tokenizer_trainer_new(&o, &tr), HM_OK);
    feed_file(tr, FIX "prose-code.txt");
    struct hm_tokenizer *tok;
    assert_int_equal(hm_tokenizer_trainer_finish(tr, &tok), HM_OK);
    hm_tokenizer_trainer_free(tr);
    return tok;
}

static struct hm_tokenizer *fixture_tokenizer(void)
{
    struct hm_tokenizer *t;
    if (hm_tokenizer_load(FIX "hf-saved.tokenizer.json", &t) != HM_OK)
        fail_msg("%s", hm_last_error());
    return t;
}

/* A file HF saved (tuple merges, add_prefix_space, added tokens with rstrip/normalized). */
static void test_load_hf_saved(void **state)
{
    (void)state;
    struct hm_tokenizer *t = fixture_tokenizer();
    json_t *exp = load_json(FIX "hf-saved.expected.json");
    json_t *encs = json_object_get(exp, "encodings");
    char **texts;
    size_t *lens;
    size_t nt = read_texts(&texts, &lens);
    assert_int_equal(json_array_size(encs), nt + 1);
    hm_token ids[4096];
    for (size_t i = 0; i <= nt; i++) {
        const char *s = i < nt ? texts[i] : "I love New York<|endoftext|>the  the end";
        size_t len = i < nt ? lens[i] : strlen(s);
        size_t n = enc(t, s, len, ids, 4096);
        json_t *e = json_array_get(encs, i);
        if (n != json_array_size(e))
            fail_msg("text %zu: %zu ids, HF %zu", i, n, json_array_size(e));
        for (size_t j = 0; j < n; j++)
            assert_int_equal(ids[j], json_integer_value(json_array_get(e, j)));
    }
    assert_int_equal(hm_tokenizer_token_to_id(t, "<|endoftext|>"), 700);
    assert_int_equal(hm_tokenizer_vocab_size(t), 703);
    free_texts(texts, lens, nt);
    json_decref(exp);
    hm_tokenizer_free(t);
}

static void test_invalid_utf8_roundtrip(void **state)
{
    (void)state;
    struct hm_tokenizer *t = corpus_tokenizer();
    const char *cases[] = {"\xff", "\xc0\x80", "abc\xe4\xbd", "\xed\xa0\x80 x", "\x80\x80\x80",
                           "ok \xf4\x90\x80\x80 ok", "\xe4\xbd\xa0\xe5", "\0nul\0 bytes"};
    size_t lens[] = {1, 2, 5, 5, 3, 10, 4, 11};
    for (size_t i = 0; i < HM_ARRAY_LEN(cases); i++)
        assert_roundtrip(t, cases[i], lens[i]);
    struct hm_rng rng;
    hm_rng_seed(&rng, 42);
    char buf[512];
    for (int it = 0; it < 300; it++) {
        size_t n = (size_t)hm_rng_below(&rng, sizeof buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = (char)hm_rng_below(&rng, 256);
        assert_roundtrip(t, buf, n);
    }
    /* A long pre-token takes the heap path (HF parity for it: the 102- and 300-char texts of
     * encode-texts.jsonl in the parity tests). */
    char *big = malloc(5000);
    for (int i = 0; i < 5000; i++)
        big[i] = "the"[i % 3];
    assert_roundtrip(t, big, 5000);
    free(big);
    hm_tokenizer_free(t);
}

static void test_encode_snprintf_and_specials(void **state)
{
    (void)state;
    struct hm_tokenizer *t = fixture_tokenizer();
    const char *s = "<pad>hello<eos> <|endoftext|>";
    size_t n;
    assert_int_equal(hm_tokenizer_encode(t, s, strlen(s), NULL, 0, &n), HM_OK);
    hm_token *ids = malloc(n * sizeof *ids);
    hm_token small[2];
    size_t n2;
    assert_int_equal(hm_tokenizer_encode(t, s, strlen(s), small, 2, &n2), HM_OK);
    assert_int_equal(n2, n);
    assert_int_equal(hm_tokenizer_encode(t, s, strlen(s), ids, n, &n2), HM_OK);
    assert_int_equal(ids[0], 0);
    assert_int_equal(small[0], 0);
    assert_int_equal(ids[n - 1], 700);
    char out[64];
    size_t m;
    assert_int_equal(hm_tokenizer_decode(t, ids, n, true, out, sizeof out, &m), HM_OK);
    assert_string_equal(out, " hello ");
    assert_int_equal(hm_tokenizer_decode(t, ids, n, false, out, 5, &m), HM_OK);
    assert_int_equal(m, strlen(s) + 1); /* add_prefix_space added one before "hello" */
    assert_string_equal(out, "<pad");
    hm_token bad = 5000;
    assert_int_equal(hm_tokenizer_decode(t, &bad, 1, false, out, sizeof out, &m), HM_ERR_USAGE);
    free(ids);
    hm_tokenizer_free(t);
}

static void test_leftmost_longest_added(void **state)
{
    (void)state;
    const char *docs[] = {"plain text"};
    const char *sp[] = {"<a>", "<a><b>", "b>"};
    struct hm_tokenizer *t = train_simple(docs, 1, 259, 1, sp, 3);
    hm_token ids[16];
    size_t n = enc(t, "x<a><b>b>", 9, ids, 16);
    assert_int_equal(n, 3);
    assert_int_equal(ids[1], 1);
    assert_int_equal(ids[2], 2);
    hm_tokenizer_free(t);
}

static void test_stream_decoder(void **state)
{
    (void)state;
    struct hm_tokenizer *t = corpus_tokenizer();
    const char *s = "h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x98\x80! \xff end";
    size_t len = strlen(s);
    hm_token ids[256];
    size_t n = enc(t, s, len, ids, 256);
    struct hm_decode_stream *ds;
    assert_int_equal(hm_decode_stream_new(t, false, &ds), HM_OK);
    char out[256];
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p;
        size_t l;
        assert_int_equal(hm_decode_stream_push(ds, ids[i], &p, &l), HM_OK);
        /* Every chunk is whole characters (the stray 0xff passes through as it is). */
        char chunk[64];
        size_t k = 0;
        for (size_t j = 0; j < l; j++)
            if ((uint8_t)p[j] != 0xff)
                chunk[k++] = p[j];
        assert_true(hm_utf8_valid(chunk, k));
        memcpy(out + o, p, l);
        o += l;
    }
    const char *p;
    size_t l;
    hm_decode_stream_flush(ds, &p, &l);
    memcpy(out + o, p, l);
    o += l;
    assert_int_equal(o, len);
    assert_memory_equal(out, s, len);
    /* An incomplete character at the end comes out on flush. */
    enc(t, "\xe4\xb8", 2, ids, 256);
    assert_int_equal(hm_decode_stream_push(ds, ids[0], &p, &l), HM_OK);
    assert_int_equal(l, 0);
    hm_decode_stream_flush(ds, &p, &l);
    assert_int_equal(l, 1);
    hm_decode_stream_free(ds);
    hm_tokenizer_free(t);
}

static void test_encode_batch(void **state)
{
    (void)state;
    struct hm_tokenizer *t = fixture_tokenizer();
    struct hm_reader *r;
    assert_int_equal(hm_reader_open(FIX "multilingual.txt", NULL, &r), HM_OK);
    size_t n = 0;
    char *docs[600];
    size_t lens[600];
    const char *s;
    size_t l;
    while (n < 600 && hm_reader_next(r, &s, &l) == HM_OK && s) {
        docs[n] = malloc(l + 1);
        memcpy(docs[n], s, l);
        lens[n++] = l;
    }
    hm_reader_free(r);
    struct hm_token_batch b;
    assert_int_equal(hm_tokenizer_encode_batch(t, (const char *const *)docs, lens, n, 2, &b), HM_OK);
    assert_int_equal(b.n_docs, n);
    hm_token ids[8192];
    for (size_t i = 0; i < n; i++) {
        size_t k = enc(t, docs[i], lens[i], ids, 8192);
        assert_int_equal(b.offsets[i + 1] - b.offsets[i], k);
        assert_memory_equal(b.ids + b.offsets[i], ids, k * sizeof *ids);
        free(docs[i]);
    }
    assert_int_equal(b.offsets[n], b.n_ids);
    hm_token_batch_free(&b);
    assert_int_equal(hm_tokenizer_encode_batch(t, NULL, NULL, 0, 0, &b), HM_OK);
    assert_int_equal(b.n_ids, 0);
    hm_token_batch_free(&b);
    hm_tokenizer_free(t);
}

/* ---- load / save ----------------------------------------------------------------------------- */

static void test_save_load_roundtrip(void **state)
{
    (void)state;
    struct hm_tokenizer *t = fixture_tokenizer();
    char *dir = tu_mkdtemp();
    char *path = tu_path(dir, "tok.json");
    assert_int_equal(hm_tokenizer_save(t, path), HM_OK);
    struct hm_tokenizer *u;
    assert_int_equal(hm_tokenizer_load(path, &u), HM_OK);
    char *a, *b;
    assert_int_equal(hm_tokenizer_to_json(t, &a), HM_OK);
    assert_int_equal(hm_tokenizer_to_json(u, &b), HM_OK);
    assert_string_equal(a, b);
    assert_non_null(strstr(a, "\"Ġ Ġ\"")); /* legacy "a b" merges */
    hm_free(a);
    hm_free(b);
    hm_tokenizer_free(u);
    hm_tokenizer_free(t);
    tu_rmdir(dir);
    free(path);
    free(dir);
}

static enum hm_status load_str(const char *json)
{
    struct hm_tokenizer *t = NULL;
    enum hm_status st = hm_tokenizer_load_json(json, strlen(json), "t.json", &t);
    hm_tokenizer_free(t);
    return st;
}

#define PRE "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false}"

/* A byte-level BPE tokenizer.json: the 256 byte tokens (ids 0-255) minus the chars in `skip`,
 * numbered from 0 in byte order, then `extra` vocab entries and the `merges` array. Caller frees. */
static char *byte_vocab_json(const char *extra, const char *merges, const char *skip)
{
    size_t cap = 16384, n = 0;
    char *s = malloc(cap);
    n += (size_t)snprintf(s + n, cap - n, "{\"version\":\"1.0\"," PRE ",\"model\":{\"vocab\":{");
    int id = 0;
    for (int b = 0; b < 256; b++) {
        if (b && strchr(skip, b))
            continue;
        char sp[8];
        size_t k = hm_bytes_to_spelling((const uint8_t[]){(uint8_t)b}, 1, sp);
        sp[k] = 0;
        bool esc = sp[0] == '"' || sp[0] == '\\'; /* JSON escapes */
        n += (size_t)snprintf(s + n, cap - n, "%s\"%s%s\":%d", id ? "," : "", esc ? "\\" : "",
                              sp, id);
        id++;
    }
    n += (size_t)snprintf(s + n, cap - n, "%s%s},\"merges\":%s}}", *extra ? "," : "", extra, merges);
    return s;
}

static void test_load_errors(void **state)
{
    (void)state;
    struct hm_tokenizer *t = NULL;
    assert_int_equal(hm_tokenizer_load("/nonexistent/tokenizer.json", &t), HM_ERR_IO);
    assert_int_equal(load_str("{\"version\":\"1.0\",\"model\":"), HM_ERR_FORMAT);
    assert_non_null(strstr(hm_last_error(), "t.json"));
    assert_int_equal(load_str("[1,2]"), HM_ERR_FORMAT);
    assert_int_equal(load_str("{\"version\":\"2.0\"," PRE ",\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}"),
                     HM_ERR_FORMAT);
    assert_int_equal(load_str("{\"version\":\"1.0\"," PRE ",\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}"),
                     HM_ERR_UNSUPPORTED);
    assert_non_null(strstr(hm_last_error(), "WordPiece"));
    assert_int_equal(load_str("{\"version\":\"1.0\"," PRE ",\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}"),
                     HM_ERR_UNSUPPORTED);
    assert_int_equal(load_str("{\"version\":\"1.0\",\"normalizer\":{\"type\":\"NFC\"}," PRE
                              ",\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}"),
                     HM_ERR_UNSUPPORTED);
    assert_non_null(strstr(hm_last_error(), "NFC"));
    assert_int_equal(load_str("{\"version\":\"1.0\",\"pre_tokenizer\":{\"type\":\"Metaspace\"},"
                              "\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}"),
                     HM_ERR_UNSUPPORTED);
    assert_int_equal(load_str("{\"version\":\"1.0\"," PRE ",\"model\":{\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}"),
                     HM_ERR_FORMAT); /* "ab" is not in the vocab */
    assert_int_equal(load_str("{\"version\":\"1.0\"," PRE ",\"model\":{\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}"),
                     HM_ERR_FORMAT); /* id used twice */
    assert_int_equal(load_str("{\"version\":\"1.0\"," PRE ",\"model\":{\"vocab\":{\"a\":-1},\"merges\":[]}}"),
                     HM_ERR_FORMAT);
    assert_int_equal(load_str("{\"version\":\"1.0\"," PRE ",\"model\":{\"vocab\":{\"a\":0},\"merges\":[\"a\"]}}"),
                     HM_ERR_FORMAT);
    assert_int_equal(load_str("{\"version\":\"1.0\"," PRE ",\"model\":{\"vocab\":{\"a\":0},\"merges\":[]},"
                              "\"added_tokens\":[{\"id\":1,\"content\":\"x\",\"single_word\":true}]}"),
                     HM_ERR_UNSUPPORTED);
    char *full = byte_vocab_json("\"ab\":256", "[[\"a\",\"b\"],\"#version: 0.2\"]", "");
    assert_int_equal(load_str(full), HM_OK);
    free(full);
    /* Truncated copies of a real file fail cleanly at every length tried. */
    char *data;
    size_t len;
    assert_int_equal(hm_read_file(FIX "hf-saved.tokenizer.json", &data, &len), HM_OK);
    for (size_t cut = 0; cut < len; cut += 997) {
        struct hm_tokenizer *u = NULL;
        assert_int_equal(hm_tokenizer_load_json(data, cut, "cut.json", &u), HM_ERR_FORMAT);
        assert_null(u);
    }
    hm_free(data);
}

/* Class 6 of issue 13: tokenizers that load must round-trip every byte and decode every id. */
static void test_load_refuses_lossy_tokenizers(void **state)
{
    (void)state;
    /* A byte-level vocab missing byte 0x41 ('A'): 'A' would be dropped. */
    char *json = byte_vocab_json("", "[]", "A");
    assert_int_equal(load_str(json), HM_ERR_FORMAT);
    assert_non_null(strstr(hm_last_error(), "no token for byte 0x41"));
    free(json);
    /* Only a handful of tokens: most bytes missing. */
    assert_int_equal(load_str("{\"version\":\"1.0\"," PRE ",\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}"),
                     HM_ERR_FORMAT);
    /* An id gap (no token 256, one at 300), and a stray huge id: refused before allocating. */
    json = byte_vocab_json("\"ab\":300", "[]", "");
    assert_int_equal(load_str(json), HM_ERR_FORMAT);
    assert_non_null(strstr(hm_last_error(), "without gaps"));
    free(json);
    json = byte_vocab_json("\"ab\":60000000", "[]", "");
    assert_int_equal(load_str(json), HM_ERR_FORMAT);
    free(json);
    /* Complete: loads, and every byte round-trips. */
    json = byte_vocab_json("\"ab\":256", "[\"a b\"]", "");
    struct hm_tokenizer *t;
    assert_int_equal(hm_tokenizer_load_json(json, strlen(json), "t.json", &t), HM_OK);
    uint8_t all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    hm_token ids[600];
    size_t n, got;
    char back[300];
    assert_int_equal(hm_tokenizer_encode(t, (const char *)all, 256, ids, 600, &n), HM_OK);
    assert_int_equal(hm_tokenizer_decode(t, ids, n, false, back, sizeof back, &got), HM_OK);
    assert_int_equal(got, 256);
    assert_memory_equal(back, all, 256);
    hm_tokenizer_free(t);
    free(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_byte_table),
        cmocka_unit_test(test_load_refuses_lossy_tokenizers),
        cmocka_unit_test(test_pretok_spec_cases),
        cmocka_unit_test(test_pretok_matches_hf),
        cmocka_unit_test(test_parity_prose_code),
        cmocka_unit_test(test_parity_numbers_ws),
        cmocka_unit_test(test_parity_multilingual),
        cmocka_unit_test(test_parity_docs_jsonl),
        cmocka_unit_test(test_parity_specials_reuse),
        cmocka_unit_test(test_trainer_ties_and_overlaps),
        cmocka_unit_test(test_trainer_errors),
        cmocka_unit_test(test_load_hf_saved),
        cmocka_unit_test(test_invalid_utf8_roundtrip),
        cmocka_unit_test(test_encode_snprintf_and_specials),
        cmocka_unit_test(test_leftmost_longest_added),
        cmocka_unit_test(test_stream_decoder),
        cmocka_unit_test(test_encode_batch),
        cmocka_unit_test(test_save_load_roundtrip),
        cmocka_unit_test(test_load_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
