/*
 * safetensors.c - safetensors reader (mmap + full header validation) and atomic writer.
 *
 * Invariant of a struct hm_st_file: every tensor's [data, data + nbytes) lies inside the mapping,
 * nbytes == numel * dtype size, and the tensors tile the data section with no gap, overlap or
 * trailing byte. Nothing from the file is dereferenced before parse_header has proved that.
 * The file owns the mapping and copies of all names/metadata (the JSON tree is freed after open).
 * Data is little-endian on disk; the build refuses big-endian hosts rather than byte-swapping.
 */
#include "hermes/safetensors.h"
#include "hermes/tensor.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

static const struct {
    const char *name;
    size_t size;
} dtype_info[HM_ST_DTYPE_COUNT] = {
    [HM_ST_BOOL] = {"BOOL", 1},       [HM_ST_U8] = {"U8", 1},     [HM_ST_I8] = {"I8", 1},
    [HM_ST_F8_E4M3] = {"F8_E4M3", 1}, [HM_ST_F8_E5M2] = {"F8_E5M2", 1},
    [HM_ST_I16] = {"I16", 2},         [HM_ST_U16] = {"U16", 2},   [HM_ST_F16] = {"F16", 2},
    [HM_ST_BF16] = {"BF16", 2},       [HM_ST_I32] = {"I32", 4},   [HM_ST_U32] = {"U32", 4},
    [HM_ST_F32] = {"F32", 4},         [HM_ST_I64] = {"I64", 8},   [HM_ST_U64] = {"U64", 8},
    [HM_ST_F64] = {"F64", 8},
};

const char *hm_st_dtype_name(enum hm_st_dtype dt)
{
    return (unsigned)dt < HM_ST_DTYPE_COUNT ? dtype_info[dt].name : "?";
}

size_t hm_st_dtype_size(enum hm_st_dtype dt)
{
    return (unsigned)dt < HM_ST_DTYPE_COUNT ? dtype_info[dt].size : 0;
}

static bool dtype_parse(const char *s, enum hm_st_dtype *out)
{
    for (int i = 0; i < HM_ST_DTYPE_COUNT; i++)
        if (strcmp(s, dtype_info[i].name) == 0) {
            *out = (enum hm_st_dtype)i;
            return true;
        }
    return false;
}

/* ---- element conversions ------------------------------------------------------------------- */

float hm_f32_from_f16(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13); /* Inf / NaN (payload kept) */
    } else if (exp != 0) {
        u = sign | ((exp + 112) << 23) | (man << 13); /* normal: rebias 15 -> 127 */
    } else if (man == 0) {
        u = sign; /* signed zero */
    } else {
        /* subnormal: value = man * 2^-24; normalize into an f32 normal */
        int e = -1;
        do {
            man <<= 1;
            e++;
        } while (!(man & 0x400u));
        u = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* ---- shapes -------------------------------------------------------------------------------- */

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

/* numel and byte count with overflow checks; false on overflow or a negative dim. */
static bool shape_bytes(int ndim, const int64_t *shape, size_t elem, uint64_t *numel, size_t *nbytes)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (uint64_t)shape[i] > SIZE_MAX || !hm_mul_size(n, (size_t)shape[i], &n))
            return false;
    }
    size_t b;
    if (!hm_mul_size(n, elem, &b))
        return false;
    *numel = n;
    *nbytes = b;
    return true;
}

/* ---- writer -------------------------------------------------------------------------------- */

static enum hm_status check_entry(const char *path, const struct hm_st_entry *e, bool filled,
                                  size_t *nbytes)
{
    if (!e->name || !e->name[0])
        return hm_fail(HM_ERR_USAGE, "%s: tensor with an empty name", path);
    if (strcmp(e->name, "__metadata__") == 0)
        return hm_fail(HM_ERR_USAGE, "%s: '__metadata__' is reserved and cannot name a tensor", path);
    if ((unsigned)e->dtype >= HM_ST_DTYPE_COUNT)
        return hm_fail(HM_ERR_USAGE, "%s: tensor '%s': invalid dtype %d", path, e->name, (int)e->dtype);
    if (e->data_is_f32 && e->dtype != HM_ST_F32 && e->dtype != HM_ST_BF16)
        return hm_fail(HM_ERR_USAGE, "%s: tensor '%s': f32 data can be stored as F32 or BF16, not %s",
                       path, e->name, hm_st_dtype_name(e->dtype));
    if (e->ndim < 0 || e->ndim > HM_ST_MAX_DIMS)
        return hm_fail(HM_ERR_USAGE, "%s: tensor '%s': %d dims (0..%d supported)", path, e->name,
                       e->ndim, HM_ST_MAX_DIMS);
    uint64_t numel;
    if (!shape_bytes(e->ndim, e->shape, hm_st_dtype_size(e->dtype), &numel, nbytes)) {
        char s[256];
        shape_str(s, sizeof s, e->ndim, e->shape);
        return hm_fail(HM_ERR_USAGE, "%s: tensor '%s': invalid shape %s", path, e->name, s);
    }
    if (numel > 0 && !e->data && !filled)
        return hm_fail(HM_ERR_USAGE, "%s: tensor '%s': NULL data", path, e->name);
    return HM_OK;
}

static bool json_set(json_t *obj, const char *key, json_t *val)
{
    return val && json_object_set_new(obj, key, val) == 0;
}

/* Builds the header text (unpadded). Caller frees with free() (jansson allocates it). */
static enum hm_status build_header(const char *path, const struct hm_st_entry *entries, size_t n,
                                   const struct hm_st_kv *meta, size_t n_meta, bool filled, char **out)
{
    enum hm_status st = HM_OK;
    json_t *root = json_object();
    if (!root)
        return hm_fail(HM_ERR_NOMEM, "%s: out of memory building the header", path);

    bool has_format = false;
    for (size_t i = 0; i < n_meta; i++)
        has_format |= meta[i].key && strcmp(meta[i].key, "format") == 0;
    {
        json_t *m = json_object();
        if (!json_set(root, "__metadata__", m)) {
            st = hm_fail(HM_ERR_NOMEM, "%s: out of memory building the header", path);
            goto out;
        }
        if (!has_format && !json_set(m, "format", json_string("pt"))) {
            st = hm_fail(HM_ERR_NOMEM, "%s: out of memory building the header", path);
            goto out;
        }
        for (size_t i = 0; i < n_meta; i++) {
            if (!meta[i].key || !meta[i].value) {
                st = hm_fail(HM_ERR_USAGE, "%s: metadata entry %zu has a NULL key or value", path, i);
                goto out;
            }
            if (json_object_get(m, meta[i].key)) {
                st = hm_fail(HM_ERR_USAGE, "%s: duplicate metadata key '%s'", path, meta[i].key);
                goto out;
            }
            if (!json_set(m, meta[i].key, json_string(meta[i].value))) {
                st = hm_fail(HM_ERR_USAGE, "%s: metadata '%s' is not valid UTF-8", path, meta[i].key);
                goto out;
            }
        }
    }

    uint64_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        const struct hm_st_entry *e = &entries[i];
        size_t nbytes = 0;
        if ((st = check_entry(path, e, filled, &nbytes)) != HM_OK)
            goto out;
        if (json_object_get(root, e->name)) {
            st = hm_fail(HM_ERR_USAGE, "%s: duplicate tensor name '%s'", path, e->name);
            goto out;
        }
        json_t *t = json_object(), *shape = json_array(), *offs = json_array();
        bool ok = t && shape && offs && json_set(t, "dtype", json_string(hm_st_dtype_name(e->dtype)));
        for (int d = 0; ok && d < e->ndim; d++)
            ok = json_array_append_new(shape, json_integer(e->shape[d])) == 0;
        ok = ok && json_array_append_new(offs, json_integer((json_int_t)offset)) == 0;
        ok = ok && json_array_append_new(offs, json_integer((json_int_t)(offset + nbytes))) == 0;
        if (ok) {
            ok = json_set(t, "shape", shape) && json_set(t, "data_offsets", offs);
            shape = offs = NULL; /* owned by t (or already released by json_object_set_new) */
        }
        json_decref(shape);
        json_decref(offs);
        if (!ok) {
            json_decref(t);
            st = hm_fail(HM_ERR_NOMEM, "%s: out of memory building the header", path);
            goto out;
        }
        if (!json_set(root, e->name, t)) {
            st = hm_fail(HM_ERR_USAGE, "%s: tensor name '%s' is not valid UTF-8", path, e->name);
            goto out;
        }
        offset += nbytes;
    }
    *out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!*out)
        st = hm_fail(HM_ERR_NOMEM, "%s: out of memory serializing the header", path);
out:
    json_decref(root);
    return st;
}

static bool write_tensor_data(FILE *f, const struct hm_st_entry *e, size_t nbytes)
{
    if (nbytes == 0)
        return true;
    if (!e->data_is_f32 || e->dtype == HM_ST_F32)
        return fwrite(e->data, 1, nbytes, f) == nbytes;
    /* f32 -> bf16 in chunks, so a big tensor needs no big temporary */
    uint16_t buf[4096];
    const float *src = e->data;
    size_t n = nbytes / 2;
    for (size_t i = 0; i < n;) {
        size_t k = HM_MIN(n - i, HM_ARRAY_LEN(buf));
        for (size_t j = 0; j < k; j++)
            buf[j] = hm_f32_to_bf16(src[i + j]);
        if (fwrite(buf, 2, k, f) != k)
            return false;
        i += k;
    }
    return true;
}

/* Bytes of a tensor with NULL data, from the caller in chunks: no whole-tensor buffer. False
 * on a write error; *st is the caller's status when it failed. */
static bool fill_tensor_data(FILE *f, size_t index, size_t nbytes, hm_st_fill_fn fill, void *user,
                             enum hm_status *st)
{
    uint64_t buf[8192]; /* 64 KiB, a multiple of every element size */
    for (size_t off = 0; off < nbytes && *st == HM_OK;) {
        size_t k = HM_MIN(nbytes - off, sizeof buf);
        if ((*st = fill(user, index, off, buf, k)) != HM_OK)
            return true;
        if (fwrite(buf, 1, k, f) != k)
            return false;
        off += k;
    }
    return true;
}

enum hm_status hm_st_write_fill(const char *path, const struct hm_st_entry *entries, size_t n_entries,
                                const struct hm_st_kv *meta, size_t n_meta, hm_st_fill_fn fill,
                                void *user)
{
    char *header = NULL;
    enum hm_status st = build_header(path, entries, n_entries, meta, n_meta, fill != NULL, &header);
    if (st != HM_OK)
        return st;
    size_t hlen = strlen(header);
    size_t padded = (hlen + 7) & ~(size_t)7; /* 8 + padded is a multiple of 8 */

    struct hm_atomic_file af;
    if ((st = hm_atomic_open(&af, path)) != HM_OK) {
        free(header);
        return st;
    }
    uint8_t len_le[8];
    for (int i = 0; i < 8; i++)
        len_le[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    bool ok = fwrite(len_le, 1, 8, af.f) == 8 && fwrite(header, 1, hlen, af.f) == hlen;
    for (size_t i = hlen; ok && i < padded; i++)
        ok = fputc(' ', af.f) != EOF;
    free(header);
    for (size_t i = 0; ok && i < n_entries; i++) {
        size_t nbytes;
        uint64_t numel;
        const struct hm_st_entry *e = &entries[i];
        HM_ASSERT(shape_bytes(e->ndim, e->shape, hm_st_dtype_size(e->dtype), &numel, &nbytes));
        if (e->data || !nbytes)
            ok = write_tensor_data(af.f, e, nbytes);
        else
            ok = fill_tensor_data(af.f, i, nbytes, fill, user, &st);
        if (st != HM_OK) { /* the caller's own failure, already described */
            hm_atomic_abort(&af);
            return st;
        }
    }
    if (!ok) {
        st = hm_fail(HM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        hm_atomic_abort(&af);
        return st;
    }
    return hm_atomic_commit(&af);
}

enum hm_status hm_st_write(const char *path, const struct hm_st_entry *entries, size_t n_entries,
                           const struct hm_st_kv *meta, size_t n_meta)
{
    return hm_st_write_fill(path, entries, n_entries, meta, n_meta, NULL, NULL);
}

/* ---- reader -------------------------------------------------------------------------------- */

struct hm_st_file {
    char *path;
    const uint8_t *map;
    size_t map_size;
    bool owns_map; /* false for hm_st_open_buffer: the caller's bytes */
    size_t n;
    struct hm_st_tensor *tensors; /* file order */
    size_t *by_name;              /* indices into tensors, sorted by name */
    size_t n_meta;
    char **meta_keys;
    char **meta_values;
};

/* Scratch per tensor while validating: offsets and the header position (tie-break for sort). */
struct span {
    uint64_t begin, end;
    size_t idx; /* index in header order */
};

static int span_cmp(const void *a, const void *b)
{
    const struct span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int name_cmp(const void *a, const void *b, void *tensors)
{
    const struct hm_st_tensor *t = tensors;
    return strcmp(t[*(const size_t *)a].name, t[*(const size_t *)b].name);
}

static enum hm_status parse_meta(struct hm_st_file *f, json_t *m)
{
    if (!json_is_object(m))
        return hm_fail(HM_ERR_FORMAT, "%s: __metadata__ is not a JSON object", f->path);
    size_t n = json_object_size(m);
    f->meta_keys = hm_calloc(n ? n : 1, sizeof(char *));
    f->meta_values = hm_calloc(n ? n : 1, sizeof(char *));
    if (!f->meta_keys || !f->meta_values)
        return hm_fail(HM_ERR_NOMEM, "%s: out of memory reading __metadata__", f->path);
    const char *key;
    json_t *v;
    json_object_foreach(m, key, v) {
        if (!json_is_string(v))
            return hm_fail(HM_ERR_FORMAT, "%s: __metadata__ value of '%s' is not a string", f->path, key);
        f->meta_keys[f->n_meta] = hm_strdup(key);
        f->meta_values[f->n_meta] = hm_strdup(json_string_value(v));
        f->n_meta++;
        if (!f->meta_keys[f->n_meta - 1] || !f->meta_values[f->n_meta - 1])
            return hm_fail(HM_ERR_NOMEM, "%s: out of memory reading __metadata__", f->path);
    }
    return HM_OK;
}

static bool get_u64(json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* Validates one header entry (types, dtype, shape vs byte span) and fills t (minus data/name). */
static enum hm_status parse_entry(const struct hm_st_file *f, const char *name, json_t *v,
                                  struct hm_st_tensor *t, struct span *sp)
{
    const char *p = f->path;
    if (!json_is_object(v))
        return hm_fail(HM_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", p, name);
    json_t *dt = json_object_get(v, "dtype");
    json_t *shape = json_object_get(v, "shape");
    json_t *offs = json_object_get(v, "data_offsets");
    if (!dt || !shape || !offs)
        return hm_fail(HM_ERR_FORMAT, "%s: tensor '%s': missing \"%s\"", p, name,
                       !dt ? "dtype" : !shape ? "shape" : "data_offsets");
    if (!json_is_string(dt))
        return hm_fail(HM_ERR_FORMAT, "%s: tensor '%s': dtype is not a string", p, name);
    if (!dtype_parse(json_string_value(dt), &t->dtype))
        return hm_fail(HM_ERR_FORMAT, "%s: tensor '%s': unknown or unsupported dtype '%s'", p, name,
                       json_string_value(dt));
    if (!json_is_array(shape))
        return hm_fail(HM_ERR_FORMAT, "%s: tensor '%s': shape is not an array", p, name);
    if (json_array_size(shape) > HM_ST_MAX_DIMS)
        return hm_fail(HM_ERR_FORMAT, "%s: tensor '%s': %zu dims, at most %d supported", p, name,
                       json_array_size(shape), HM_ST_MAX_DIMS);
    t->ndim = (int)json_array_size(shape);
    for (int d = 0; d < t->ndim; d++) {
        uint64_t x;
        if (!get_u64(json_array_get(shape, (size_t)d), &x))
            return hm_fail(HM_ERR_FORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer",
                           p, name, d);
        t->shape[d] = (int64_t)x;
    }
    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        !get_u64(json_array_get(offs, 0), &sp->begin) || !get_u64(json_array_get(offs, 1), &sp->end))
        return hm_fail(HM_ERR_FORMAT, "%s: tensor '%s': data_offsets is not [begin, end] of "
                       "non-negative integers", p, name);
    if (sp->begin > sp->end)
        return hm_fail(HM_ERR_FORMAT, "%s: tensor '%s': data_offsets begin %llu > end %llu", p, name,
                       (unsigned long long)sp->begin, (unsigned long long)sp->end);
    char s[256];
    if (!shape_bytes(t->ndim, t->shape, hm_st_dtype_size(t->dtype), &t->numel, &t->nbytes)) {
        shape_str(s, sizeof s, t->ndim, t->shape);
        return hm_fail(HM_ERR_FORMAT, "%s: tensor '%s': shape %s overflows the size computation", p,
                       name, s);
    }
    if ((uint64_t)t->nbytes != sp->end - sp->begin) {
        shape_str(s, sizeof s, t->ndim, t->shape);
        return hm_fail(HM_ERR_FORMAT, "%s: tensor '%s': shape %s of %s needs %zu bytes but "
                       "data_offsets [%llu, %llu) span %llu", p, name, s, hm_st_dtype_name(t->dtype),
                       t->nbytes, (unsigned long long)sp->begin, (unsigned long long)sp->end,
                       (unsigned long long)(sp->end - sp->begin));
    }
    return HM_OK;
}

/* The header JSON -> tensors (file order) with validated, tiling offsets. */
static enum hm_status parse_header(struct hm_st_file *f, json_t *root, uint64_t data_size,
                                   const uint8_t *data)
{
    const char *p = f->path;
    enum hm_status st = HM_OK;
    if (!json_is_object(root))
        return hm_fail(HM_ERR_FORMAT, "%s: header is not a JSON object", p);
    size_t n = json_object_size(root) - (json_object_get(root, "__metadata__") ? 1 : 0);
    struct hm_st_tensor *tmp = hm_calloc(n ? n : 1, sizeof *tmp);
    struct span *spans = hm_calloc(n ? n : 1, sizeof *spans);
    const char **names = hm_calloc(n ? n : 1, sizeof *names);
    f->tensors = hm_calloc(n ? n : 1, sizeof *f->tensors);
    f->by_name = hm_calloc(n ? n : 1, sizeof *f->by_name);
    if (!tmp || !spans || !names || !f->tensors || !f->by_name) {
        st = hm_fail(HM_ERR_NOMEM, "%s: out of memory reading the header (%zu tensors)", p, n);
        goto out;
    }
    const char *key;
    json_t *v;
    size_t i = 0;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            if ((st = parse_meta(f, v)) != HM_OK)
                goto out;
            continue;
        }
        HM_ASSERT(i < n);
        if ((st = parse_entry(f, key, v, &tmp[i], &spans[i])) != HM_OK)
            goto out;
        spans[i].idx = i;
        names[i] = key;
        i++;
    }
    HM_ASSERT(i == n);

    /* Sorted by begin, the spans must tile [0, data_size) exactly (the spec's "contiguous"). */
    qsort(spans, n, sizeof *spans, span_cmp);
    uint64_t pos = 0;
    for (size_t k = 0; k < n; k++) {
        const struct span *s = &spans[k];
        const char *nm = names[s->idx];
        if (s->end > data_size) {
            st = hm_fail(HM_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu) exceed the data "
                         "section of %llu bytes", p, nm, (unsigned long long)s->begin,
                         (unsigned long long)s->end, (unsigned long long)data_size);
            goto out;
        }
        if (s->begin < pos) {
            st = hm_fail(HM_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu) overlap tensor "
                         "'%s' ending at %llu", p, nm, (unsigned long long)s->begin,
                         (unsigned long long)s->end, names[spans[k - 1].idx], (unsigned long long)pos);
            goto out;
        }
        if (s->begin > pos) {
            st = hm_fail(HM_ERR_FORMAT, "%s: tensor '%s': data_offsets begin %llu leaves a gap of "
                         "%llu bytes after offset %llu (tensors must be contiguous)", p, nm,
                         (unsigned long long)s->begin, (unsigned long long)(s->begin - pos),
                         (unsigned long long)pos);
            goto out;
        }
        pos = s->end;
    }
    if (pos != data_size) {
        st = hm_fail(HM_ERR_FORMAT, "%s: %llu bytes after the last tensor (data section %llu bytes, "
                     "tensors cover %llu)", p, (unsigned long long)(data_size - pos),
                     (unsigned long long)data_size, (unsigned long long)pos);
        goto out;
    }

    /* Only now do pointers into the mapping exist. */
    for (size_t k = 0; k < n; k++) {
        struct hm_st_tensor *t = &f->tensors[k];
        *t = tmp[spans[k].idx];
        t->data = data + spans[k].begin;
        t->name = hm_strdup(names[spans[k].idx]);
        f->n = k + 1;
        if (!t->name) {
            st = hm_fail(HM_ERR_NOMEM, "%s: out of memory reading the header", p);
            goto out;
        }
        f->by_name[k] = k;
    }
    qsort_r(f->by_name, n, sizeof *f->by_name, name_cmp, f->tensors);
out:
    hm_free(tmp);
    hm_free(spans);
    hm_free(names);
    return st;
}

/* Validates the header of f->map (f->map_size >= 8 bytes) and fills the tensor table. */
static enum hm_status parse_file(struct hm_st_file *f)
{
    uint64_t size = f->map_size;
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)f->map[i] << (8 * i);
    if (hlen > HM_ST_MAX_HEADER_BYTES)
        return hm_fail(HM_ERR_FORMAT, "%s: header length %llu exceeds the limit of %llu bytes",
                       f->path, (unsigned long long)hlen, HM_ST_MAX_HEADER_BYTES);
    if (hlen > size - 8)
        return hm_fail(HM_ERR_FORMAT, "%s: header length %llu exceeds the %llu bytes after the "
                       "length field (truncated file?)", f->path, (unsigned long long)hlen,
                       (unsigned long long)(size - 8));
    json_error_t jerr;
    json_t *root = json_loadb((const char *)f->map + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return hm_fail(HM_ERR_FORMAT, "%s: header is not valid JSON: %s (byte %d)", f->path,
                       jerr.text, jerr.position);
    enum hm_status st = parse_header(f, root, size - 8 - hlen, f->map + 8 + hlen);
    json_decref(root);
    return st;
}

enum hm_status hm_st_open_buffer(const void *data, size_t size, const char *name,
                                 struct hm_st_file **out)
{
    struct hm_st_file *f = hm_calloc(1, sizeof *f);
    if (!f || !(f->path = hm_strdup(name))) {
        hm_free(f);
        return hm_fail(HM_ERR_NOMEM, "%s: out of memory", name);
    }
    enum hm_status st = HM_OK;
    if (size < 8)
        st = hm_fail(HM_ERR_FORMAT, "%s: %zu bytes, too short for the 8-byte header length", name,
                     size);
    f->map = data;
    f->map_size = size;
    if (st == HM_OK)
        st = parse_file(f);
    if (st != HM_OK) {
        hm_st_close(f);
        return st;
    }
    *out = f;
    return HM_OK;
}

enum hm_status hm_st_open(const char *path, struct hm_st_file **out)
{
    enum hm_status st = HM_OK;
    struct hm_st_file *f = hm_calloc(1, sizeof *f);
    if (!f || !(f->path = hm_strdup(path))) {
        hm_free(f);
        return hm_fail(HM_ERR_NOMEM, "%s: out of memory", path);
    }
    int fd;
    uint64_t size;
    st = hm_open_regular(path, &fd, &size);
    if (st != HM_OK)
        goto fail;
    if (size < 8) {
        st = hm_fail(HM_ERR_FORMAT, "%s: file is %llu bytes, too short for the 8-byte header length",
                     path, (unsigned long long)size);
        close(fd);
        goto fail;
    }
    if (size > SIZE_MAX) {
        st = hm_fail(HM_ERR_IO, "%s: file too large to map", path);
        close(fd);
        goto fail;
    }
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        st = hm_fail(HM_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
        goto fail;
    }
    f->map = map;
    f->map_size = (size_t)size;
    f->owns_map = true;
    st = parse_file(f);
    if (st != HM_OK)
        goto fail;
    *out = f;
    return HM_OK;
fail:
    hm_st_close(f);
    return st;
}

void hm_st_close(struct hm_st_file *f)
{
    if (!f)
        return;
    if (f->map && f->owns_map)
        munmap((void *)f->map, f->map_size);
    for (size_t i = 0; i < f->n; i++)
        hm_free((void *)f->tensors[i].name);
    for (size_t i = 0; i < f->n_meta; i++) {
        hm_free(f->meta_keys[i]);
        hm_free(f->meta_values[i]);
    }
    hm_free(f->meta_keys);
    hm_free(f->meta_values);
    hm_free(f->tensors);
    hm_free(f->by_name);
    hm_free(f->path);
    hm_free(f);
}

const char *hm_st_path(const struct hm_st_file *f)
{
    return f->path;
}

size_t hm_st_count(const struct hm_st_file *f)
{
    return f->n;
}

const struct hm_st_tensor *hm_st_at(const struct hm_st_file *f, size_t i)
{
    HM_ASSERT(i < f->n);
    return &f->tensors[i];
}

const struct hm_st_tensor *hm_st_find(const struct hm_st_file *f, const char *name)
{
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct hm_st_tensor *t = &f->tensors[f->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0)
            return t;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

enum hm_status hm_st_get(const struct hm_st_file *f, const char *name, const struct hm_st_tensor **out)
{
    const struct hm_st_tensor *t = hm_st_find(f, name);
    if (!t)
        return hm_fail(HM_ERR_MISMATCH, "%s: no tensor '%s'", f->path, name);
    *out = t;
    return HM_OK;
}

const char *hm_st_meta(const struct hm_st_file *f, const char *key)
{
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0)
            return f->meta_values[i];
    return NULL;
}

size_t hm_st_meta_count(const struct hm_st_file *f)
{
    return f->n_meta;
}

void hm_st_meta_at(const struct hm_st_file *f, size_t i, const char **key, const char **value)
{
    HM_ASSERT(i < f->n_meta);
    *key = f->meta_keys[i];
    *value = f->meta_values[i];
}

static enum hm_status check_shape(const struct hm_st_file *f, const struct hm_st_tensor *t, int ndim,
                                  const int64_t *shape)
{
    bool same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++)
        same = t->shape[d] == shape[d];
    if (same)
        return HM_OK;
    char want[256], got[256];
    shape_str(want, sizeof want, ndim, shape);
    shape_str(got, sizeof got, t->ndim, t->shape);
    return hm_fail(HM_ERR_MISMATCH, "%s: tensor '%s': expected shape %s, got %s", f->path, t->name,
                   want, got);
}

enum hm_status hm_st_read_f32(const struct hm_st_file *f, const char *name, int ndim,
                              const int64_t *shape, float *dst)
{
    const struct hm_st_tensor *t;
    enum hm_status st;
    if ((st = hm_st_get(f, name, &t)) != HM_OK || (st = check_shape(f, t, ndim, shape)) != HM_OK)
        return st;
    const uint8_t *src = t->data; /* possibly unaligned: go through memcpy */
    switch (t->dtype) {
    case HM_ST_F32:
        memcpy(dst, src, t->nbytes);
        return HM_OK;
    case HM_ST_BF16:
    case HM_ST_F16:
        for (size_t i = 0; i < t->numel; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = t->dtype == HM_ST_BF16 ? hm_bf16_to_f32(h) : hm_f32_from_f16(h);
        }
        return HM_OK;
    default:
        return hm_fail(HM_ERR_MISMATCH, "%s: tensor '%s': dtype %s cannot be read as floats (F32, "
                       "BF16 or F16 expected)", f->path, name, hm_st_dtype_name(t->dtype));
    }
}

enum hm_status hm_st_read_i32(const struct hm_st_file *f, const char *name, int ndim,
                              const int64_t *shape, int32_t *dst)
{
    const struct hm_st_tensor *t;
    enum hm_status st;
    if ((st = hm_st_get(f, name, &t)) != HM_OK || (st = check_shape(f, t, ndim, shape)) != HM_OK)
        return st;
    const uint8_t *src = t->data;
    switch (t->dtype) {
    case HM_ST_I32:
        memcpy(dst, src, t->nbytes);
        return HM_OK;
    case HM_ST_I64:
        for (size_t i = 0; i < t->numel; i++) {
            int64_t x;
            memcpy(&x, src + 8 * i, 8);
            if (x < INT32_MIN || x > INT32_MAX)
                return hm_fail(HM_ERR_FORMAT, "%s: tensor '%s': element %zu = %lld does not fit in "
                               "int32", f->path, name, i, (long long)x);
            dst[i] = (int32_t)x;
        }
        return HM_OK;
    default:
        return hm_fail(HM_ERR_MISMATCH, "%s: tensor '%s': dtype %s cannot be read as int32 (I32 or "
                       "I64 expected)", f->path, name, hm_st_dtype_name(t->dtype));
    }
}
