/*
 * testutil.h - helpers shared by the cmocka tests: temporary folders, writing files, and running
 * the hermes-llm binary with its exit code and captured output.
 */
#ifndef HERMES_TESTUTIL_H
#define HERMES_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hermes/hermes.h"
#include "hermes/model.h"

/* A fresh folder under $TMPDIR, removed by tu_rmdir. Returns a static-lifetime heap string. */
char *tu_mkdtemp(void);
void tu_rmdir(const char *path);
/* cmocka group setup/teardown: tu_tmpdir is a fresh folder for the group's tests, removed after. */
extern char *tu_tmpdir;
int tu_tmpdir_setup(void **state);
int tu_tmpdir_teardown(void **state);
/* Join dir and name into a heap string (free with free()). */
char *tu_path(const char *dir, const char *name);
void tu_write(const char *path, const void *data, size_t len);
/* Run a shell command; returns its exit code, and its stdout+stderr in *out (free()) if out. */
int tu_run(const char *cmd, char **out);
/* Run the hermes-llm binary with the given argument string. */
int tu_cli(const char *args, char **out);
/* The CUDA device the GPU tests use ($HM_CUDA_DEVICE, default 0), or -1 after printing the
 * SKIPPED line when it cannot be opened: main() then returns 77, ctest's skip code. */
int tu_cuda_device(void);
struct hm_backend;
struct hm_model_config;
struct hm_model;
/* A small model config: dropout 0.1 (which inference must switch off), eps 1e-5. */
struct hm_model_config tu_model_cfg(int V, int T, int C, int L, int NH, int NKV, int I,
                                    enum hm_activation act, bool bias, bool tied, float theta);
/* A 24-bit pseudo-random number from an LCG state. */
uint32_t tu_lcg(uint32_t *s);
/* Weights uniform with std 0.15 and norm gains 1 + that noise, larger than the init rule: attention
 * is far from uniform and logits are spread, so a wrong position or cache row changes them. */
void tu_randomise_weights(struct hm_model *m, uint32_t seed);
/* A training model of config cfg on be with tu_randomise_weights(seed). */
struct hm_model *tu_random_model(struct hm_backend *be, const struct hm_model_config *cfg,
                                 uint32_t seed);
/* The logits (L, V) of a full forward over ids[0..L): the training graph, dropout off, no cache. */
void tu_full_logits(struct hm_model *m, const int32_t *ids, int L, float *out);
/* A CPU backend and a training model of config c with weights initialised from seed. */
void tu_cpu_model(const struct hm_model_config *c, uint64_t seed, struct hm_backend **be,
                  struct hm_model **m);

#endif
