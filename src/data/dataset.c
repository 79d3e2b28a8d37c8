/*
 * dataset.c - documents -> token cache (dataset.h). Documents are gathered in chunks of about
 * 64 MB of text, each chunk is encoded in parallel (hm_tokenizer_encode_batch), and <eos> is
 * appended after every document; so memory holds one chunk of text plus the token ids.
 */
#include "hermes/dataset.h"
#include "data/reader.h"
#include "util/util.h"

#include <string.h>
#include <sys/stat.h>

#define CHUNK_BYTES (64u << 20)

struct docs {
    char *text;
    size_t len, cap;
    size_t *starts; /* n + 1 */
    size_t n, ncap;
};

struct ids {
    hm_token *v;
    uint64_t n, cap;
};

static enum hm_status docs_add(struct docs *d, const char *s, size_t len, bool new_doc)
{
    if (d->len + len + 1 > d->cap) {
        size_t cap = HM_MAX(d->cap * 2, d->len + len + 1 + 4096);
        char *t = hm_realloc(d->text, cap);
        if (!t)
            return hm_fail(HM_ERR_NOMEM, "out of memory reading the data");
        d->text = t;
        d->cap = cap;
    }
    if (new_doc) {
        if (d->n + 2 > d->ncap) {
            size_t cap = HM_MAX(d->ncap * 2, 1024);
            size_t *s2 = hm_realloc(d->starts, cap * sizeof *s2);
            if (!s2)
                return hm_fail(HM_ERR_NOMEM, "out of memory reading the data");
            d->starts = s2;
            d->ncap = cap;
        }
        d->starts[d->n++] = d->len;
    }
    memcpy(d->text + d->len, s, len);
    d->len += len;
    d->starts[d->n] = d->len;
    return HM_OK;
}

static enum hm_status flush_chunk(struct hm_tokenizer *tok, struct docs *d, hm_token eos, int threads,
                                  struct ids *out)
{
    if (d->n == 0)
        return HM_OK;
    const char **texts = hm_malloc(d->n * sizeof *texts);
    size_t *lens = hm_malloc(d->n * sizeof *lens);
    enum hm_status st = HM_OK;
    struct hm_token_batch b = {0};
    if (!texts || !lens) {
        st = hm_fail(HM_ERR_NOMEM, "out of memory encoding the data");
        goto out;
    }
    for (size_t i = 0; i < d->n; i++) {
        texts[i] = d->text + d->starts[i];
        lens[i] = d->starts[i + 1] - d->starts[i];
    }
    if ((st = hm_tokenizer_encode_batch(tok, texts, lens, d->n, threads, &b)) != HM_OK)
        goto out;
    uint64_t need = out->n + b.n_ids + b.n_docs;
    if (need > out->cap) {
        uint64_t cap = HM_MAX(out->cap * 2, need);
        hm_token *v = hm_realloc(out->v, cap * sizeof *v);
        if (!v) {
            st = hm_fail(HM_ERR_NOMEM, "out of memory for %llu tokens", (unsigned long long)need);
            goto out;
        }
        out->v = v;
        out->cap = cap;
    }
    for (size_t i = 0; i < b.n_docs; i++) {
        size_t n = b.offsets[i + 1] - b.offsets[i];
        memcpy(out->v + out->n, b.ids + b.offsets[i], n * sizeof *out->v);
        out->n += n;
        out->v[out->n++] = eos;
    }
    d->n = 0;
    d->len = 0;
out:
    hm_token_batch_free(&b);
    hm_free(texts);
    hm_free(lens);
    return st;
}

static bool is_jsonl(const char *path)
{
    return strstr(path, ".jsonl") || strstr(path, ".json.") ||
           (strlen(path) > 5 && strcmp(path + strlen(path) - 5, ".json") == 0);
}

/* Identity of the inputs: the tokenizer, the text field and every file's bytes. */
static enum hm_status data_key(const struct hm_tokenizer *tok, const struct hm_dataset_opts *o, uint64_t *key)
{
    char *js;
    enum hm_status st = hm_tokenizer_to_json(tok, &js);
    if (st != HM_OK)
        return st;
    uint64_t h = hm_hash64(HM_HASH64_INIT, js, strlen(js));
    hm_free(js);
    h = hm_hash64(h, o->text_field, strlen(o->text_field) + 1);
    for (int i = 0; i < o->n_paths; i++) {
        struct hm_mmap m;
        if ((st = hm_mmap_open(o->paths[i], &m)) != HM_OK)
            return st;
        h = hm_hash64(h, o->paths[i], strlen(o->paths[i]) + 1);
        h = hm_hash64(h, &m.size, sizeof m.size);
        h = hm_hash64(h, m.data, m.size);
        hm_mmap_close(&m);
    }
    *key = h;
    return HM_OK;
}

/* What says a file was not written to: device, inode, size and modification time. */
static uint64_t file_stamp(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return 0;
    uint64_t v[5] = {(uint64_t)sb.st_dev, (uint64_t)sb.st_ino, (uint64_t)sb.st_size,
                     (uint64_t)sb.st_mtim.tv_sec, (uint64_t)sb.st_mtim.tv_nsec};
    return hm_hash64(HM_HASH64_INIT, v, sizeof v);
}

static bool is_stdin(const char *path)
{
    return strcmp(path, "-") == 0;
}

struct hm_dataset_opts hm_dataset_opts_default(void)
{
    return (struct hm_dataset_opts){.text_field = "text"};
}

enum hm_status hm_dataset_open(struct hm_tokenizer *tok, const struct hm_dataset_opts *o,
                               struct hm_token_cache *out, struct hm_dataset_info *info)
{
    memset(info, 0, sizeof *info);
    double t0 = hm_time_s();
    hm_token eos = hm_tokenizer_eos_id(tok);
    if (eos < 0)
        return hm_fail(HM_ERR_MISMATCH, "the tokenizer has no <eos> (or <|endoftext|>) token to end documents with");
    uint64_t key = 0;
    enum hm_status st;
    bool hit = false;
    /* With standard input among the inputs the key can only be the content read (no lookup). */
    bool reads_stdin = o->n_paths == 0;
    for (int i = 0; i < o->n_paths; i++)
        reads_stdin |= is_stdin(o->paths[i]);
    const char *flag = o->flag ? o->flag : "--data";
    if (!reads_stdin) {
        if ((st = data_key(tok, o, &key)) != HM_OK)
            return st;
        if ((st = hm_token_cache_open(o->cache_path, key, out, &hit)) != HM_OK)
            return st;
        if (hit) {
            info->cache_hit = true;
            info->seconds = hm_time_s() - t0;
            return HM_OK;
        }
    }
    struct docs d = {0};
    struct ids ids = {0};
    int n_inputs = o->n_paths > 0 ? o->n_paths : 1;
    uint64_t h = HM_HASH64_INIT; /* stdin: the key is the content's hash */
    for (int i = 0; i < n_inputs; i++) {
        const char *path = o->n_paths > 0 ? o->paths[i] : "-";
        if (reads_stdin)
            h = hm_hash64(h, path, strlen(path) + 1);
        /* The key hashed the bytes before reading; an unchanged stamp after reading proves the
         * tokens come from those bytes, so a file written meanwhile never leaves a cache. */
        uint64_t stamp = is_stdin(path) ? 0 : file_stamp(path);
        bool jsonl = is_jsonl(path);
        struct hm_reader_opts ro = {jsonl ? HM_READER_JSONL : HM_READER_LINES, o->text_field};
        struct hm_reader *r;
        if ((st = hm_reader_open(path, &ro, &r)) != HM_OK)
            goto fail;
        const char *text;
        size_t len;
        bool first = true;
        while ((st = hm_reader_next(r, &text, &len)) == HM_OK && text) {
            if (jsonl && len == 0) /* an empty record is no document (as the original skipped it) */
                continue;
            info->n_bytes += len;
            if (reads_stdin)
                h = hm_hash64(h, text, len);
            /* .txt: the whole file is one document; .jsonl: one per record. */
            if ((st = docs_add(&d, text, len, jsonl || first)) != HM_OK)
                break;
            if (jsonl || first)
                info->n_docs++;
            first = false;
            if (jsonl && d.len >= CHUNK_BYTES && (st = flush_chunk(tok, &d, eos, o->n_threads, &ids)) != HM_OK)
                break;
        }
        hm_reader_free(r);
        if (st != HM_OK)
            goto fail;
        if (o->after_read)
            o->after_read(path);
        if (!is_stdin(path) && file_stamp(path) != stamp) {
            st = hm_fail(HM_ERR_IO, "%s %s: the file changed while it was being read; nothing was "
                         "cached: run again once it is complete", flag, path);
            goto fail;
        }
        if (d.len >= CHUNK_BYTES && (st = flush_chunk(tok, &d, eos, o->n_threads, &ids)) != HM_OK)
            goto fail;
    }
    if ((st = flush_chunk(tok, &d, eos, o->n_threads, &ids)) != HM_OK)
        goto fail;
    if (info->n_bytes == 0) {
        st = hm_fail(HM_ERR_FORMAT, "%s %s%s: no text in it", flag,
                     o->n_paths > 0 ? o->paths[0] : "(standard input)",
                     o->n_paths > 1 ? " and the others" : "");
        goto fail;
    }
    if (reads_stdin)
        key = h;
    if ((st = hm_token_cache_write(o->cache_path, key, hm_tokenizer_vocab_size(tok), ids.v, ids.n)) != HM_OK ||
        (st = hm_token_cache_open(o->cache_path, key, out, &hit)) != HM_OK)
        goto fail;
    HM_ASSERT(hit);
    info->seconds = hm_time_s() - t0;
fail:
    hm_free(d.text);
    hm_free(d.starts);
    hm_free(ids.v);
    return st;
}
