/*
 * export-impl.h - private to src/export/: element conversion, tensor naming across formats, the
 * GGUF writer, output folders written atomically, and the list of a config's tensors.
 */
#ifndef HERMES_EXPORT_IMPL_H
#define HERMES_EXPORT_IMPL_H

#include "hermes/export.h"
#include "hermes/model.h"
#include "util/util.h"

#include <stdio.h>

/* ---- conversion (convert.c) ---------------------------------------------------------------- */

/* Elements [first, first + n) of a F32, BF16 or F16 tensor, widened to f32 (exact). */
void hm_export_read_f32(const struct hm_st_tensor *t, size_t first, size_t n, float *dst);
/* Bytes that n elements take in `dt` (n a multiple of 32 for q8_0). */
size_t hm_export_row_bytes(enum hm_export_dtype dt, size_t n);
/* n floats to `dt` (q8_0: n a multiple of 32). */
void hm_export_encode(enum hm_export_dtype dt, const float *x, size_t n, void *out);

/* ---- names (names.c) ---------------------------------------------------------------------- */

/* Our checkpoint name -> GGUF llama name / Hugging Face name; false when it has none. */
bool hm_name_to_gguf(const char *ours, char *out, size_t cap);
bool hm_name_to_hf(const char *ours, char *out, size_t cap);
/* Hugging Face name -> ours; false for a name outside the Llama layout. */
bool hm_name_from_hf(const char *hf, char *out, size_t cap);

/* ---- the tensors of a config (params.c) ---------------------------------------------------- */

struct hm_param_list {
    struct hm_model *decl; /* declare-only model: names and shapes, no memory */
    int n;
};
enum hm_status hm_param_list_new(const struct hm_model_config *cfg, struct hm_param_list *out);
const struct hm_tensor *hm_param_at(const struct hm_param_list *l, int i);
void hm_param_list_free(struct hm_param_list *l);

/* ---- growable byte buffer (gguf-writer.c) ------------------------------------------------- */

struct hm_bytes {
    uint8_t *data;
    size_t len, cap;
    bool oom; /* sticky: an append failed; checked once at the end */
};
void hm_bytes_put(struct hm_bytes *b, const void *p, size_t n);
void hm_bytes_free(struct hm_bytes *b);

/* ---- GGUF v3 writer (gguf-writer.c) ------------------------------------------------------- */

enum hm_gguf_type {
    HM_GGUF_UINT32 = 4,
    HM_GGUF_INT32 = 5,
    HM_GGUF_FLOAT32 = 6,
    HM_GGUF_BOOL = 7,
    HM_GGUF_STRING = 8,
    HM_GGUF_ARRAY = 9
};
enum hm_ggml_type { HM_GGML_F32 = 0, HM_GGML_F16 = 1, HM_GGML_Q8_0 = 8, HM_GGML_BF16 = 30 };
#define HM_GGUF_ALIGNMENT 32

/* Metadata and tensor infos are built in memory (counts go first in the file), then the header is
 * written and the tensors' bytes follow in the order they were added, each padded. */
struct hm_gguf {
    struct hm_bytes kv, info;
    uint64_t n_kv, n_tensors;
    uint64_t data_size; /* sum of the padded tensor sizes so far */
};
void hm_gguf_kv_str(struct hm_gguf *g, const char *key, const char *value);
void hm_gguf_kv_u32(struct hm_gguf *g, const char *key, uint32_t value);
void hm_gguf_kv_f32(struct hm_gguf *g, const char *key, float value);
void hm_gguf_kv_bool(struct hm_gguf *g, const char *key, bool value);
/* Array headers: the caller then appends `n` elements with hm_gguf_arr_str / hm_gguf_arr_i32. */
void hm_gguf_kv_array(struct hm_gguf *g, const char *key, enum hm_gguf_type elem, uint64_t n);
void hm_gguf_arr_str(struct hm_gguf *g, const char *s, size_t len);
void hm_gguf_arr_i32(struct hm_gguf *g, int32_t v);
/* ne in GGUF order (ne[0] fastest); returns the tensor's unpadded byte size. */
uint64_t hm_gguf_add_tensor(struct hm_gguf *g, const char *name, int n_dims, const uint64_t *ne,
                            enum hm_ggml_type type);
/* Header, metadata, tensor infos and the padding before the data. */
enum hm_status hm_gguf_write_header(struct hm_gguf *g, FILE *f, const char *path);
/* Zeros after a tensor of `nbytes` up to the alignment. */
bool hm_gguf_write_pad(FILE *f, uint64_t nbytes);
void hm_gguf_free(struct hm_gguf *g);

/* ---- output folders (out-dir.c) ----------------------------------------------------------- */

/* A folder built at "<path>.tmp.<pid>" and renamed over `path` on commit. Without `replace` an
 * existing `path` is refused (HM_ERR_USAGE) before anything is written. */
struct hm_out_dir {
    char path[4096];
    char tmp[4160];
};
enum hm_status hm_out_dir_open(struct hm_out_dir *d, const char *path, bool replace);
/* "<tmp>/<name>" into buf. */
const char *hm_out_dir_file(const struct hm_out_dir *d, const char *name, char *buf, size_t cap);
enum hm_status hm_out_dir_commit(struct hm_out_dir *d);
void hm_out_dir_abort(struct hm_out_dir *d); /* removes the temp folder and what it holds */

/* ---- Hugging Face import: the parsers, on bytes (hf-import.c) ----------------------------- */

/* config.json of a LlamaForCausalLM folder -> our config; `name` goes into the messages.
 * HM_ERR_FORMAT for bad JSON or values, HM_ERR_UNSUPPORTED naming a setting we cannot honour. */
enum hm_status hm_hf_config_parse(const char *json, size_t len, const char *name,
                                  struct hm_model_config *out);
/* model.safetensors.index.json -> the distinct shard file names of its weight_map, in order of
 * first appearance (each non-empty, without '/'). Free with hm_hf_shard_names_free. */
struct hm_hf_shard_names {
    char **names;
    size_t n;
};
enum hm_status hm_hf_index_parse(const char *json, size_t len, const char *name,
                                 struct hm_hf_shard_names *out);
void hm_hf_shard_names_free(struct hm_hf_shard_names *s);

/* ---- shared by the Hugging Face writer and reader ----------------------------------------- */

/* "<|im_start|>role\ncontent<|im_end|>\n" per message, then the assistant prompt. */
extern const char hm_chatml_template[];
/* Id of the first of `names` (NULL-terminated) the tokenizer has, or -1. */
int64_t hm_tokenizer_find(const struct hm_tokenizer *tok, const char *const *names);
extern const char *const hm_eos_names[]; /* "<eos>", "<|endoftext|>" */
extern const char *const hm_bos_names[]; /* "<bos>", "<|endoftext|>" */
extern const char *const hm_pad_names[]; /* "<pad>" */
bool hm_tokenizer_has_chatml(const struct hm_tokenizer *tok);

#endif
