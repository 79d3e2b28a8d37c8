/*
 * safetensors.h - read and write safetensors files (8-byte LE header length, JSON header, raw data).
 *
 * The reader mmaps the file read-only and validates the whole header before any pointer into the
 * data is handed out: lengths, JSON types, known dtypes, shape x dtype size == byte span (overflow
 * checked), offsets tiling the data section exactly. Any defect is one HM_ERR_FORMAT line naming
 * the file and the tensor. The writer emits what the reference implementation accepts and goes
 * through a temp file + fsync + rename, so a crash never leaves a half-written checkpoint.
 *
 *     struct hm_st_file *f;
 *     if (hm_st_open("model.safetensors", &f) != HM_OK) return hm_last_error();
 *     int64_t shape[2] = {V, C};
 *     st = hm_st_read_f32(f, "embedding.weight", 2, shape, emb);   // F32/BF16/F16 -> f32
 *     hm_st_close(f);
 */
#ifndef HERMES_SAFETENSORS_H
#define HERMES_SAFETENSORS_H

#include "hermes/hermes.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HM_ST_MAX_DIMS 8                       /* the reader accepts up to 8 dims */
#define HM_ST_MAX_HEADER_BYTES 100000000ull    /* same limit as the reference reader */

/* The dtype strings of the safetensors spec that have a whole number of bytes per element. */
enum hm_st_dtype {
    HM_ST_BOOL = 0,
    HM_ST_U8,
    HM_ST_I8,
    HM_ST_F8_E4M3,
    HM_ST_F8_E5M2,
    HM_ST_I16,
    HM_ST_U16,
    HM_ST_F16,
    HM_ST_BF16,
    HM_ST_I32,
    HM_ST_U32,
    HM_ST_F32,
    HM_ST_I64,
    HM_ST_U64,
    HM_ST_F64,
    HM_ST_DTYPE_COUNT
};

HM_API const char *hm_st_dtype_name(enum hm_st_dtype dt); /* "F32", ...; "?" when out of range */
HM_API size_t hm_st_dtype_size(enum hm_st_dtype dt);      /* bytes per element; 0 when out of range */

/* f16 -> f32, exact (checkpoints from other tools). bf16 conversions are hm_f32_to_bf16 and
 * hm_bf16_to_f32 in tensor.h: round to nearest even, every NaN to the quiet NaN 0x7FC0 as
 * PyTorch's c10::BFloat16 does. */
HM_API float hm_f32_from_f16(uint16_t h);

/* ---- writing ------------------------------------------------------------------------------- */

/* One tensor to write. `data` points to host memory in the stored dtype, except when
 * `data_is_f32` is set: then `data` holds float32 values and they are converted to `dtype`
 * (which must be F32 or BF16) while writing. data may be NULL only for a tensor with no elements. */
struct hm_st_entry {
    const char *name;
    enum hm_st_dtype dtype; /* stored dtype */
    int ndim;               /* 0 (scalar) .. HM_ST_MAX_DIMS */
    int64_t shape[HM_ST_MAX_DIMS];
    const void *data;       /* borrowed */
    bool data_is_f32;
};

struct hm_st_kv {
    const char *key;
    const char *value;
};

/* Writes `path` atomically. Tensors are laid out contiguously in the order given (each gets the
 * next data_offsets); the header is compact JSON in the same order, space-padded so the data
 * starts at an 8-byte aligned offset. `meta` (may be NULL when n_meta is 0) becomes
 * "__metadata__"; "format": "pt" is added first unless the caller gives a "format" key, because
 * transformers rejects files without it. Returns HM_ERR_USAGE for bad entries (empty or duplicate
 * names, bad shape, NULL data), HM_ERR_NOMEM, HM_ERR_IO. */
HM_API enum hm_status hm_st_write(const char *path, const struct hm_st_entry *entries, size_t n_entries,
                                  const struct hm_st_kv *meta, size_t n_meta);

/* Like hm_st_write, but an entry with NULL data gets its bytes from `fill`, in order, a chunk
 * at a time: fill(user, entry index, byte offset in the tensor, buf, nbytes) writes nbytes of
 * the stored dtype into buf (chunks are at most 64 KiB and whole elements). So a converted or
 * permuted tensor never needs a buffer of its own size. A status fill returns aborts the write
 * (the temp file is removed) and is returned as it is. */
typedef enum hm_status (*hm_st_fill_fn)(void *user, size_t entry, uint64_t offset, void *buf,
                                        size_t nbytes);
HM_API enum hm_status hm_st_write_fill(const char *path, const struct hm_st_entry *entries,
                                       size_t n_entries, const struct hm_st_kv *meta, size_t n_meta,
                                       hm_st_fill_fn fill, void *user);

/* ---- reading ------------------------------------------------------------------------------- */

struct hm_st_file; /* opaque: the mapping plus the parsed header */

/* A tensor of an open file. All pointers are borrowed and valid until hm_st_close. */
struct hm_st_tensor {
    const char *name;
    enum hm_st_dtype dtype;
    int ndim;
    int64_t shape[HM_ST_MAX_DIMS];
    uint64_t numel;
    const void *data; /* read-only, into the mapping; only as aligned as the writer made it */
    size_t nbytes;
};

/* Maps and validates `path`. On success *out owns the mapping (close with hm_st_close).
 * HM_ERR_IO (cannot open/stat/mmap), HM_ERR_FORMAT (anything wrong in the file), HM_ERR_NOMEM. */
HM_API enum hm_status hm_st_open(const char *path, struct hm_st_file **out);
/* The same validation for `size` bytes in memory (borrowed: keep them until hm_st_close);
 * `name` stands for the path in messages. */
HM_API enum hm_status hm_st_open_buffer(const void *data, size_t size, const char *name,
                                        struct hm_st_file **out);
HM_API void hm_st_close(struct hm_st_file *f); /* NULL is a no-op */

HM_API const char *hm_st_path(const struct hm_st_file *f);
HM_API size_t hm_st_count(const struct hm_st_file *f);
/* The i-th tensor in file order (ascending data offset). i < hm_st_count(f). */
HM_API const struct hm_st_tensor *hm_st_at(const struct hm_st_file *f, size_t i);
/* Lookup by name; NULL when absent (not an error by itself). */
HM_API const struct hm_st_tensor *hm_st_find(const struct hm_st_file *f, const char *name);
/* Lookup that fails with HM_ERR_MISMATCH "<path>: no tensor 'name'" when absent. */
HM_API enum hm_status hm_st_get(const struct hm_st_file *f, const char *name,
                                const struct hm_st_tensor **out);

/* __metadata__ access: value by key (NULL when absent), count, and the i-th pair in file order. */
HM_API const char *hm_st_meta(const struct hm_st_file *f, const char *key);
HM_API size_t hm_st_meta_count(const struct hm_st_file *f);
HM_API void hm_st_meta_at(const struct hm_st_file *f, size_t i, const char **key, const char **value);

/* Copies tensor `name` into `dst` (numel floats) converting from F32, BF16 or F16. The tensor must
 * have exactly `ndim` dims equal to `shape`; otherwise HM_ERR_MISMATCH naming the tensor, the
 * expected and the actual shape. A missing tensor or another dtype is HM_ERR_MISMATCH too. */
HM_API enum hm_status hm_st_read_f32(const struct hm_st_file *f, const char *name, int ndim,
                                     const int64_t *shape, float *dst);
/* The same for integer tensors: I32 is copied, I64 is narrowed with a range check (HM_ERR_FORMAT
 * naming the tensor when a value does not fit). */
HM_API enum hm_status hm_st_read_i32(const struct hm_st_file *f, const char *name, int ndim,
                                     const int64_t *shape, int32_t *dst);

#ifdef __cplusplus
}
#endif
#endif
