/*
 * export.h - models out to other tools and back: GGUF for llama.cpp, Hugging Face folders for
 * transformers, and LlamaForCausalLM folders in.
 *
 * A source is a checkpoint (safetensors under our names), its config and its tokenizer. Writers
 * stream: each tensor is converted from the mapped checkpoint a chunk at a time, so memory stays
 * near the size of one chunk, not the model. Every output is atomic: a file goes through a temp
 * file + fsync + rename, a folder is written as "<out>.tmp.<pid>" and renamed into place.
 *
 *     struct hm_export_source src;
 *     if (hm_export_source_open(&src, "run/weights.safetensors", NULL, "tok.json") != HM_OK) ...
 *     hm_export_gguf(&src, HM_EXPORT_F16, "model.gguf");
 *     hm_export_hf(&src, HM_EXPORT_F32, "model-hf");
 *     hm_export_source_close(&src);
 *     hm_import_hf("model-hf", "run2", false);  // config.json, weights.safetensors, tokenizer.json
 *
 * What maps where (docs in README.md, "Export and import"):
 *   SwiGLU models  -> GGUF `llama` (Q/K rows permuted to llama.cpp's adjacent-pair RoPE) and
 *                     transformers LlamaForCausalLM (unchanged: both use half-split RoPE).
 *   GELU models    -> transformers ArceeForCausalLM with hidden_act "gelu" (RMSNorm, RoPE and a
 *                     non-gated up/down MLP with exact erf GELU: our block, term for term). GGUF is
 *                     refused: no llama.cpp architecture has RMSNorm + RoPE + a non-gated GELU FFN.
 */
#ifndef HERMES_EXPORT_H
#define HERMES_EXPORT_H

#include "hermes/config.h"
#include "hermes/safetensors.h"
#include "hermes/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

enum hm_export_dtype { HM_EXPORT_F32 = 0, HM_EXPORT_F16, HM_EXPORT_BF16, HM_EXPORT_Q8_0 };

/* "f32", "f16", "bf16", "q8_0" <-> the enum; HM_ERR_USAGE naming the choices otherwise. */
HM_API enum hm_status hm_export_dtype_parse(const char *name, enum hm_export_dtype *out);
HM_API const char *hm_export_dtype_name(enum hm_export_dtype dt);

/* A checkpoint with its config and tokenizer, every tensor checked against the config. */
struct hm_export_source {
    struct hm_model_config cfg;
    struct hm_st_file *weights; /* owned */
    struct hm_tokenizer *tok;   /* owned */
    char ckpt_path[4096];
    char cfg_path[4096], tok_path[4096]; /* the config and tokenizer read */
};

/* `ckpt` is a .safetensors file or a run folder (its weights.safetensors). `config` and
 * `tokenizer` default (NULL) to config.json and tokenizer.json beside the checkpoint. Errors:
 * HM_ERR_IO / HM_ERR_FORMAT (not a checkpoint), HM_ERR_USAGE (no tokenizer found),
 * HM_ERR_MISMATCH (a tensor or the vocab disagrees with the config). */
HM_API enum hm_status hm_export_source_open(struct hm_export_source *src, const char *ckpt,
                                            const char *config, const char *tokenizer);
HM_API void hm_export_source_close(struct hm_export_source *src);
/* The checkpoint's own dtype: F16 or BF16 when every tensor has it, else f32. Exporting in it
 * copies every tensor's bytes as they are. */
HM_API enum hm_export_dtype hm_export_source_dtype(const struct hm_export_source *src);

/* GGUF v3, general.architecture "llama": SwiGLU models only (HM_ERR_UNSUPPORTED with the reason
 * otherwise). 1-D tensors stay f32; q8_0 needs every matrix row a multiple of 32 wide. */
HM_API enum hm_status hm_export_gguf(const struct hm_export_source *src, enum hm_export_dtype dt,
                                     const char *path);

/* Hugging Face folder: config.json, model.safetensors, tokenizer.json, tokenizer_config.json
 * (a ChatML chat_template when the tokenizer has <|im_start|> and <|im_end|>),
 * generation_config.json. dt is f32, f16 or bf16. `dir` must not exist unless `replace`. */
HM_API enum hm_status hm_export_hf(const struct hm_export_source *src, enum hm_export_dtype dt,
                                   const char *dir, bool replace);

/* A LlamaForCausalLM folder (config.json, model.safetensors or model.safetensors.index.json with
 * its shards, a byte-level BPE tokenizer.json) becomes a run folder: config.json,
 * weights.safetensors (tensors byte for byte, in their dtype) and tokenizer.json. Anything we do
 * not compute exactly is HM_ERR_UNSUPPORTED naming the config key. */
HM_API enum hm_status hm_import_hf(const char *hf_dir, const char *run_dir, bool replace);

/* ---- element formats (used by the writers; public for tests) ------------------------------- */

/* f32 -> IEEE half, round to nearest even; overflow to +-Inf, NaN stays NaN. */
HM_API uint16_t hm_f32_to_f16(float x);

/* ggml's q8_0 (quantize_row_q8_0_ref): per block d = amax/127 stored as f16, q = round(x/d).
 * n is a multiple of HM_Q8_0_BLOCK; out holds n/32 * 34 bytes. */
HM_API void hm_quantize_q8_0(const float *x, size_t n, uint8_t *out);
/* ggml's dequantize_row_q8_0: x = q * d, exact in f32. n is a multiple of HM_Q8_0_BLOCK. */
HM_API void hm_dequantize_q8_0(const uint8_t *q, size_t n, float *out);

#ifdef __cplusplus
}
#endif
#endif
