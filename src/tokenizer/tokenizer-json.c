/*
 * tokenizer-json.c - read and write HF `tokenizers` tokenizer.json for a byte-level BPE.
 *
 * Load accepts any byte-level BPE file (ours, GPT-2's, merges as "a b" or ["a","b"]) and checks
 * everything before use: version "1.0", ids in range and unique, both sides of every merge and
 * their concatenation in the vocab. Added tokens take their vocab id when the content is in the
 * vocab, else the next id after it, as HF's AddedVocabulary does. Anything we cannot reproduce
 * exactly (other models, normalizers, pre-tokenizers, dropout, single_word) is refused with
 * HM_ERR_UNSUPPORTED rather than encoded differently. Save writes the layout of formats.md §1.
 */
#include "tokenizer-impl.h"

#include <jansson.h>
#include <stdlib.h>

#define MAX_ID (1u << 26) /* far above any real vocab; bounds the id table we allocate */

static const char *type_of(json_t *o)
{
    json_t *t = json_is_object(o) ? json_object_get(o, "type") : NULL;
    return json_is_string(t) ? json_string_value(t) : NULL;
}

/* Optional bool field: absent or null gives def; anything else but a bool is an error. */
static enum hm_status get_bool(const char *name, json_t *o, const char *key, bool def, bool *out)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return HM_OK;
    }
    if (!json_is_boolean(v))
        return hm_fail(HM_ERR_FORMAT, "%s: '%s' must be true or false", name, key);
    *out = json_is_true(v);
    return HM_OK;
}

static enum hm_status check_byte_level(const char *name, const char *what, json_t *o,
                                       bool *add_prefix_space, bool *use_regex)
{
    const char *type = type_of(o);
    if (!type)
        return hm_fail(HM_ERR_FORMAT, "%s: %s has no \"type\"", name, what);
    if (strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(o, "pretokenizers");
        if (!list)
            list = json_object_get(o, "decoders");
        if (json_is_array(list) && json_array_size(list) == 1)
            return check_byte_level(name, what, json_array_get(list, 0), add_prefix_space,
                                    use_regex);
    }
    if (strcmp(type, "ByteLevel") != 0)
        return hm_fail(HM_ERR_UNSUPPORTED,
                       "%s: %s '%s' is not supported (only ByteLevel byte-level BPE)", name, what,
                       type);
    enum hm_status st;
    bool dummy;
    if ((st = get_bool(name, o, "add_prefix_space", true,
                       add_prefix_space ? add_prefix_space : &dummy)) != HM_OK)
        return st;
    return get_bool(name, o, "use_regex", true, use_regex ? use_regex : &dummy);
}

/* An optional string field that must be null/absent or one of the accepted values. */
static bool null_or_empty(json_t *v)
{
    return !v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0);
}

static enum hm_status load_model_options(const char *name, json_t *model, struct hm_tokenizer *t,
                                         const char **unk, bool *byte_fallback)
{
    const char *type = type_of(model);
    if (type && strcmp(type, "BPE") != 0)
        return hm_fail(HM_ERR_UNSUPPORTED,
                       "%s: model type '%s' is not supported (only byte-level BPE)", name, type);
    json_t *v = json_object_get(model, "dropout");
    if (v && !json_is_null(v)) {
        if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1)
            return hm_fail(HM_ERR_FORMAT, "%s: model.dropout must be null or in [0, 1]", name);
        if (json_number_value(v) > 0)
            return hm_fail(HM_ERR_UNSUPPORTED, "%s: BPE dropout is not supported", name);
    }
    if (!null_or_empty(json_object_get(model, "continuing_subword_prefix")) ||
        !null_or_empty(json_object_get(model, "end_of_word_suffix")))
        return hm_fail(HM_ERR_UNSUPPORTED,
                       "%s: continuing_subword_prefix / end_of_word_suffix are not supported", name);
    enum hm_status st;
    if ((st = get_bool(name, model, "fuse_unk", false, &t->fuse_unk)) != HM_OK ||
        (st = get_bool(name, model, "byte_fallback", false, byte_fallback)) != HM_OK ||
        (st = get_bool(name, model, "ignore_merges", false, &t->ignore_merges)) != HM_OK)
        return st;
    v = json_object_get(model, "unk_token");
    *unk = NULL;
    if (v && !json_is_null(v)) {
        if (!json_is_string(v))
            return hm_fail(HM_ERR_FORMAT, "%s: model.unk_token must be a string or null", name);
        *unk = json_string_value(v);
    }
    return HM_OK;
}

static enum hm_status merge_sides(const char *name, json_t *m, size_t i, const char **a,
                                  size_t *na, const char **b, size_t *nb, bool *skip)
{
    *skip = false;
    if (json_is_string(m)) {
        const char *s = json_string_value(m);
        size_t n = json_string_length(m);
        if (n >= 8 && strncmp(s, "#version", 8) == 0) {
            *skip = true;
            return HM_OK;
        }
        const char *sp = memchr(s, ' ', n);
        if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s)))
            return hm_fail(HM_ERR_FORMAT, "%s: merge %zu \"%s\" is not two tokens separated by a space",
                           name, i, s);
        *a = s;
        *na = (size_t)(sp - s);
        *b = sp + 1;
        *nb = n - *na - 1;
        return HM_OK;
    }
    if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
        json_is_string(json_array_get(m, 1))) {
        *a = json_string_value(json_array_get(m, 0));
        *na = json_string_length(json_array_get(m, 0));
        *b = json_string_value(json_array_get(m, 1));
        *nb = json_string_length(json_array_get(m, 1));
        return HM_OK;
    }
    return hm_fail(HM_ERR_FORMAT, "%s: merge %zu must be \"a b\" or [\"a\", \"b\"]", name, i);
}

static enum hm_status load_root(json_t *root, const char *name, struct hm_tokenizer **out)
{
    if (!json_is_object(root))
        return hm_fail(HM_ERR_FORMAT, "%s: not a JSON object", name);
    json_t *ver = json_object_get(root, "version");
    if (!json_is_string(ver) || strcmp(json_string_value(ver), "1.0") != 0)
        return hm_fail(HM_ERR_FORMAT, "%s: \"version\" must be \"1.0\"", name);
    json_t *norm = json_object_get(root, "normalizer");
    if (norm && !json_is_null(norm)) {
        const char *nt = type_of(norm);
        json_t *list = json_object_get(norm, "normalizers");
        if (!(nt && strcmp(nt, "Sequence") == 0 && json_is_array(list) && json_array_size(list) == 0))
            return hm_fail(HM_ERR_UNSUPPORTED, "%s: normalizer '%s' is not supported", name,
                           nt ? nt : "?");
    }
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model))
        return hm_fail(HM_ERR_FORMAT, "%s: missing \"model\" object", name);
    const char *mtype = type_of(model);
    if (mtype && strcmp(mtype, "BPE") != 0)
        return hm_fail(HM_ERR_UNSUPPORTED,
                       "%s: model type '%s' is not supported (only byte-level BPE)", name, mtype);
    json_t *pre = json_object_get(root, "pre_tokenizer");
    if (!pre || json_is_null(pre))
        return hm_fail(HM_ERR_UNSUPPORTED,
                       "%s: a null pre_tokenizer is not supported (only ByteLevel byte-level BPE)",
                       name);
    bool add_prefix_space, use_regex;
    enum hm_status st = check_byte_level(name, "pre_tokenizer", pre, &add_prefix_space, &use_regex);
    if (st != HM_OK)
        return st;
    json_t *dec = json_object_get(root, "decoder");
    if (dec && !json_is_null(dec) &&
        (st = check_byte_level(name, "decoder", dec, NULL, NULL)) != HM_OK)
        return st;
    json_t *vocab = json_object_get(model, "vocab");
    json_t *merges = json_object_get(model, "merges");
    if (!json_is_object(vocab))
        return hm_fail(HM_ERR_FORMAT, "%s: model.vocab must be an object", name);
    if (!json_is_array(merges))
        return hm_fail(HM_ERR_FORMAT, "%s: model.merges must be an array", name);
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_null(added) && !json_is_array(added))
        return hm_fail(HM_ERR_FORMAT, "%s: added_tokens must be an array", name);
    size_t n_added = json_is_array(added) ? json_array_size(added) : 0;

    /* Ids: check range, find the max. */
    uint32_t max_id = 0;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 ||
            json_integer_value(val) >= MAX_ID)
            return hm_fail(HM_ERR_FORMAT, "%s: vocab entry \"%s\" has an invalid id", name, key);
        max_id = HM_MAX(max_id, (uint32_t)json_integer_value(val) + 1);
    }
    size_t n_vocab = json_object_size(vocab);
    if (n_vocab == 0)
        return hm_fail(HM_ERR_FORMAT, "%s: model.vocab is empty", name);
    /* Checked before the id table is allocated, so a stray huge id costs nothing. */
    if (max_id != n_vocab)
        return hm_fail(HM_ERR_FORMAT, "%s: model.vocab has %zu tokens but ids up to %u: ids must "
                       "run from 0 without gaps or repeats", name, n_vocab, max_id - 1);
    struct hm_tokenizer *t;
    if ((st = hm_tok_new(max_id + (uint32_t)n_added, &t)) != HM_OK)
        return st;
    t->add_prefix_space = add_prefix_space;
    t->use_regex = use_regex;
    t->n_model_vocab = (uint32_t)n_vocab;
    const char *unk = NULL;
    bool byte_fallback = false; /* harmless: every byte has a token (checked below) */
    if ((st = load_model_options(name, model, t, &unk, &byte_fallback)) != HM_OK)
        goto fail;
    json_object_foreach(vocab, key, val) {
        uint32_t id = (uint32_t)json_integer_value(val);
        if (t->tokens[id].present) {
            st = hm_fail(HM_ERR_FORMAT, "%s: vocab id %u is used by both \"%s\" and \"%s\"", name,
                         id, t->tokens[id].spelling, key);
            goto fail;
        }
        /* jansson object keys are NUL-terminated; keys with an embedded NUL cannot be tokens. */
        if ((st = hm_tok_set(t, id, key, strlen(key), false)) != HM_OK)
            goto fail;
        t->tokens[id].in_vocab = true;
    }
    uint32_t used = max_id; /* t->n_ids stays the table size until the added tokens are in */
    if ((st = hm_smap_init(&t->spelling_to_id, t->n_ids)) != HM_OK)
        goto fail;
    for (uint32_t id = 0; id < max_id; id++)
        if (t->tokens[id].present &&
            (st = hm_smap_put(&t->spelling_to_id, t->tokens[id].spelling,
                              t->tokens[id].n_spelling, id)) != HM_OK)
            goto fail;

    /* Added tokens, as AddedVocabulary::add_tokens assigns them. */
    t->added = hm_calloc(n_added ? n_added : 1, sizeof *t->added);
    if (!t->added) {
        st = hm_fail(HM_ERR_NOMEM, "out of memory (added tokens)");
        goto fail;
    }
    int64_t max_added = -1;
    for (size_t i = 0; i < n_added; i++) {
        json_t *a = json_array_get(added, i);
        json_t *content = json_object_get(a, "content");
        json_t *jid = json_object_get(a, "id");
        if (!json_is_object(a) || !json_is_string(content) || !json_is_integer(jid) ||
            json_integer_value(jid) < 0 || json_integer_value(jid) >= MAX_ID) {
            st = hm_fail(HM_ERR_FORMAT, "%s: added_tokens[%zu] needs a string \"content\" and an id",
                         name, i);
            goto fail;
        }
        bool special, lstrip, rstrip, single_word, normalized;
        if ((st = get_bool(name, a, "special", false, &special)) != HM_OK ||
            (st = get_bool(name, a, "lstrip", false, &lstrip)) != HM_OK ||
            (st = get_bool(name, a, "rstrip", false, &rstrip)) != HM_OK ||
            (st = get_bool(name, a, "single_word", false, &single_word)) != HM_OK ||
            (st = get_bool(name, a, "normalized", !special, &normalized)) != HM_OK)
            goto fail;
        if (single_word) {
            st = hm_fail(HM_ERR_UNSUPPORTED, "%s: added token \"%s\" uses single_word, which is not supported",
                         name, json_string_value(content));
            goto fail;
        }
        const char *c = json_string_value(content);
        size_t cl = json_string_length(content);
        if (cl == 0) {
            st = hm_fail(HM_ERR_FORMAT, "%s: added_tokens[%zu] has empty content", name, i);
            goto fail;
        }
        bool dup = false;
        for (size_t j = 0; j < t->n_added; j++)
            if (t->tokens[t->added[j].id].n_spelling == cl &&
                memcmp(t->tokens[t->added[j].id].spelling, c, cl) == 0)
                dup = true;
        if (dup)
            continue;
        int64_t id = hm_smap_get(&t->spelling_to_id, c, cl);
        if (id >= 0) {
            t->tokens[id].special = special;
        } else {
            if (max_added < 0)
                id = (int64_t)n_vocab;
            else
                id = max_added >= (int64_t)n_vocab ? max_added + 1 : (int64_t)n_vocab;
            if ((uint64_t)id >= max_id + n_added || t->tokens[id].present) {
                st = hm_fail(HM_ERR_FORMAT, "%s: added token \"%s\" collides with vocab id %lld",
                             name, c, (long long)id);
                goto fail;
            }
            if ((st = hm_tok_set(t, (uint32_t)id, c, cl, special)) != HM_OK ||
                (st = hm_smap_put(&t->spelling_to_id, t->tokens[id].spelling, cl, (uint32_t)id)))
                goto fail;
            used = HM_MAX(used, (uint32_t)id + 1);
        }
        max_added = HM_MAX(max_added, id);
        struct hm_added_token *e = &t->added[t->n_added++];
        e->id = (uint32_t)id;
        e->lstrip = lstrip;
        e->rstrip = rstrip;
        e->normalized = normalized;
    }
    if (unk) {
        t->unk_id = hm_smap_get(&t->spelling_to_id, unk, strlen(unk));
        if (t->unk_id < 0) {
            st = hm_fail(HM_ERR_FORMAT, "%s: unk_token \"%s\" is not in the vocab", name, unk);
            goto fail;
        }
    }

    /* Merges: rank = position; a repeated pair keeps its later rank, as HF's HashMap does. */
    size_t n_merges = json_array_size(merges);
    if ((st = hm_pmap_init(&t->merges, n_merges)) != HM_OK)
        goto fail;
    char *cat = NULL;
    size_t cat_cap = 0;
    uint32_t rank = 0;
    for (size_t i = 0; i < n_merges; i++) {
        const char *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        bool skip;
        if ((st = merge_sides(name, json_array_get(merges, i), i, &a, &na, &b, &nb, &skip)))
            break;
        if (skip)
            continue;
        int64_t ia = hm_smap_get(&t->spelling_to_id, a, na);
        int64_t ib = hm_smap_get(&t->spelling_to_id, b, nb);
        if (na + nb + 1 > cat_cap) {
            cat_cap = 2 * (na + nb + 1);
            char *c = hm_realloc(cat, cat_cap);
            if (!c) {
                st = hm_fail(HM_ERR_NOMEM, "out of memory (merges)");
                break;
            }
            cat = c;
        }
        memcpy(cat, a, na);
        memcpy(cat + na, b, nb);
        int64_t ic = hm_smap_get(&t->spelling_to_id, cat, na + nb);
        if (ia < 0 || ib < 0 || ic < 0) {
            st = hm_fail(HM_ERR_FORMAT, "%s: merge %zu (\"%.*s\" + \"%.*s\") uses a token that is not in the vocab",
                         name, i, (int)na, a, (int)nb, b);
            break;
        }
        if ((st = hm_pmap_put(&t->merges, (uint32_t)ia, (uint32_t)ib, rank++, (uint32_t)ic)))
            break;
    }
    hm_free(cat);
    if (st != HM_OK)
        goto fail;
    t->n_merges = rank;
    t->n_ids = used;
    if ((st = hm_tok_finalize(t)) != HM_OK)
        goto fail;
    /* A missing byte symbol would drop (or turn into <unk>) every byte it stands for, and an id
     * with no token cannot be decoded when a model samples it: both are refused here, once. */
    for (int b = 0; b < 256; b++)
        if (t->byte_id[b] < 0) {
            st = hm_fail(HM_ERR_FORMAT, "%s: the vocab has no token for byte 0x%02X, so text with "
                         "that byte could not round-trip (byte-level BPE needs all 256)", name, b);
            goto fail;
        }
    for (uint32_t id = 0; id < t->n_ids; id++)
        if (!t->tokens[id].present) {
            st = hm_fail(HM_ERR_FORMAT, "%s: no token has id %u, but ids run to %u (ids must be "
                         "contiguous)", name, id, t->n_ids - 1);
            goto fail;
        }
    *out = t;
    return HM_OK;
fail:
    hm_tokenizer_free(t);
    return st;
}

enum hm_status hm_tokenizer_load_json(const char *json, size_t len, const char *name,
                                      struct hm_tokenizer **out)
{
    json_error_t err;
    json_t *root = json_loadb(json, len, 0, &err);
    if (!root)
        return hm_fail(HM_ERR_FORMAT, "%s: invalid JSON at line %d, column %d: %s", name, err.line,
                       err.column, err.text);
    enum hm_status st = load_root(root, name, out);
    json_decref(root);
    return st;
}

enum hm_status hm_tokenizer_load(const char *path, struct hm_tokenizer **out)
{
    char *data;
    size_t len;
    enum hm_status st = hm_read_file(path, &data, &len);
    if (st != HM_OK)
        return st;
    st = hm_tokenizer_load_json(data, len, path, out);
    hm_free(data);
    return st;
}

/* ---- save --------------------------------------------------------------------------------- */

static json_t *byte_level(bool add_prefix_space, bool trim_offsets, bool use_regex)
{
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string("ByteLevel"));
    json_object_set_new(o, "add_prefix_space", json_boolean(add_prefix_space));
    json_object_set_new(o, "trim_offsets", json_boolean(trim_offsets));
    json_object_set_new(o, "use_regex", json_boolean(use_regex));
    return o;
}

struct rank_pair {
    uint32_t rank, a, b;
};

static int cmp_rank(const void *x, const void *y)
{
    const struct rank_pair *p = x, *q = y;
    return (p->rank > q->rank) - (p->rank < q->rank);
}

static json_t *to_json(const struct hm_tokenizer *t)
{
    json_t *root = json_object();
    json_object_set_new(root, "version", json_string("1.0"));
    json_object_set_new(root, "truncation", json_null());
    json_object_set_new(root, "padding", json_null());
    json_t *added = json_array();
    /* Sorted by ascending id, as HF writes them. */
    for (uint32_t id = 0; id < t->n_ids; id++)
        for (size_t i = 0; i < t->n_added; i++) {
            const struct hm_added_token *a = &t->added[i];
            if (a->id != id)
                continue;
            json_t *o = json_object();
            json_object_set_new(o, "id", json_integer(id));
            json_object_set_new(o, "content", json_stringn(a->content, a->len));
            json_object_set_new(o, "single_word", json_false());
            json_object_set_new(o, "lstrip", json_boolean(a->lstrip));
            json_object_set_new(o, "rstrip", json_boolean(a->rstrip));
            json_object_set_new(o, "normalized", json_boolean(a->normalized));
            json_object_set_new(o, "special", json_boolean(t->tokens[id].special));
            json_array_append_new(added, o);
        }
    json_object_set_new(root, "added_tokens", added);
    json_object_set_new(root, "normalizer", json_null());
    json_object_set_new(root, "pre_tokenizer", byte_level(t->add_prefix_space, true, t->use_regex));
    json_object_set_new(root, "post_processor", byte_level(true, false, true));
    json_object_set_new(root, "decoder", byte_level(true, true, true));
    json_t *model = json_object();
    json_object_set_new(model, "type", json_string("BPE"));
    json_object_set_new(model, "dropout", json_null());
    json_object_set_new(model, "unk_token",
                        t->unk_id >= 0 ? json_string(t->tokens[t->unk_id].spelling) : json_null());
    json_object_set_new(model, "continuing_subword_prefix", json_null());
    json_object_set_new(model, "end_of_word_suffix", json_null());
    json_object_set_new(model, "fuse_unk", json_boolean(t->fuse_unk));
    json_object_set_new(model, "byte_fallback", json_false());
    json_object_set_new(model, "ignore_merges", json_boolean(t->ignore_merges));
    json_t *vocab = json_object();
    for (uint32_t id = 0; id < t->n_ids; id++)
        if (t->tokens[id].present && t->tokens[id].in_vocab)
            json_object_set_new(vocab, t->tokens[id].spelling, json_integer(id));
    json_object_set_new(model, "vocab", vocab);
    json_t *merges = json_array();
    struct rank_pair *rp = hm_malloc((t->merges.n ? t->merges.n : 1) * sizeof *rp);
    if (!rp) {
        json_decref(root);
        json_decref(model);
        json_decref(merges);
        return NULL;
    }
    size_t n = 0;
    bool tuple = false;
    for (size_t i = 0; i < t->merges.cap; i++) {
        const struct hm_pair_slot *s = &t->merges.slots[i];
        if (!s->key)
            continue;
        uint64_t k = s->key - 1;
        rp[n++] = (struct rank_pair){s->rank, (uint32_t)(k >> 32), (uint32_t)k};
        if (strchr(t->tokens[(uint32_t)(k >> 32)].spelling, ' ') ||
            strchr(t->tokens[(uint32_t)k].spelling, ' '))
            tuple = true; /* the "a b" form cannot hold a token with a space */
    }
    qsort(rp, n, sizeof *rp, cmp_rank);
    for (size_t i = 0; i < n; i++) {
        const struct hm_tok_entry *a = &t->tokens[rp[i].a], *b = &t->tokens[rp[i].b];
        if (tuple) {
            json_t *pair = json_array();
            json_array_append_new(pair, json_stringn(a->spelling, a->n_spelling));
            json_array_append_new(pair, json_stringn(b->spelling, b->n_spelling));
            json_array_append_new(merges, pair);
        } else {
            char *s = hm_malloc((size_t)a->n_spelling + b->n_spelling + 2);
            if (!s) {
                hm_free(rp);
                json_decref(root);
                json_decref(model);
                json_decref(merges);
                return NULL;
            }
            memcpy(s, a->spelling, a->n_spelling);
            s[a->n_spelling] = ' ';
            memcpy(s + a->n_spelling + 1, b->spelling, b->n_spelling);
            json_array_append_new(merges, json_stringn(s, (size_t)a->n_spelling + b->n_spelling + 1));
            hm_free(s);
        }
    }
    hm_free(rp);
    json_object_set_new(model, "merges", merges);
    json_object_set_new(root, "model", model);
    return root;
}

enum hm_status hm_tokenizer_to_json(const struct hm_tokenizer *tok, char **json)
{
    json_t *root = to_json(tok);
    if (!root)
        return hm_fail(HM_ERR_NOMEM, "out of memory (tokenizer JSON)");
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!s)
        return hm_fail(HM_ERR_NOMEM, "out of memory (tokenizer JSON)");
    *json = s;
    return HM_OK;
}

enum hm_status hm_tokenizer_save(const struct hm_tokenizer *tok, const char *path)
{
    char *s;
    enum hm_status st = hm_tokenizer_to_json(tok, &s);
    if (st != HM_OK)
        return st;
    size_t n = strlen(s);
    s[n] = 0;
    char *withnl = realloc(s, n + 2);
    if (!withnl) {
        free(s);
        return hm_fail(HM_ERR_NOMEM, "out of memory (tokenizer JSON)");
    }
    withnl[n] = '\n';
    withnl[n + 1] = 0;
    st = hm_write_file_atomic(path, withnl, n + 1);
    free(withnl);
    return st;
}
