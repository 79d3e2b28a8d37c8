/*
 * run-dir.h - the rules that keep a training run's output folder safe: one run at a time (a lock
 * naming its holder), a resumable run never replaced by accident, no temp files of dead processes
 * left behind, and no output that is one of the inputs.
 *
 *     struct hm_run_lock *lk;
 *     if (hm_run_dir_open("checkpoints", resume, overwrite, &lk) != HM_OK) ...   // refuses, names why
 *     ... train ...
 *     hm_run_lock_release(lk);
 */
#ifndef HERMES_RUN_DIR_H
#define HERMES_RUN_DIR_H

#include "hermes/hermes.h"

#ifdef __cplusplus
extern "C" {
#endif

struct hm_run_lock;

/* Take the folder's lock (<dir>/.hermes.lock, flock: released by the kernel when the holder dies,
 * so a crash never leaves a stale lock). HM_ERR_IO "<dir>: in use by another run (pid P on HOST,
 * `COMMAND`)" when another process holds it. The folder must exist. */
HM_API enum hm_status hm_run_lock_acquire(const char *dir, struct hm_run_lock **out);
HM_API void hm_run_lock_release(struct hm_run_lock *lk); /* NULL is a no-op */

/* A new run (resume false) into a folder holding state.safetensors is refused with HM_ERR_USAGE
 * unless overwrite: continuing it needs --resume, starting over needs --overwrite. */
HM_API enum hm_status hm_run_dir_check_new(const char *dir, bool resume, bool overwrite);

/* Everything a run starts with: create the folder when missing, lock it, refuse to replace a
 * resumable run, and remove temp files of dead processes. *lock is NULL on failure. */
HM_API enum hm_status hm_run_dir_open(const char *dir, bool resume, bool overwrite,
                                      struct hm_run_lock **lock);

/* Remove "<name>.tmp.<pid>" files in `dir` whose process is gone (atomic writes cut short by a
 * crash or SIGKILL). Files of live processes are kept. Returns how many were removed. */
HM_API int hm_remove_stale_temps(const char *dir);

/* HM_ERR_USAGE "<flag> PATH is also an input (<in_flag> PATH): refusing to overwrite it" when
 * `output` names the same file as one of the inputs (same device and inode, or the same path
 * for a file that does not exist yet). */
HM_API enum hm_status hm_check_output_not_input(const char *flag, const char *output,
                                                const char *in_flag, const char *const *inputs,
                                                size_t n_inputs);

/* The same, and also when `output` is a folder that holds one of the inputs (at any depth): for
 * outputs that replace a whole folder (export -f hf --force, import --force). */
HM_API enum hm_status hm_check_output_not_holding(const char *flag, const char *output,
                                                  const char *in_flag, const char *const *inputs,
                                                  size_t n_inputs);

/* The same for a run's inputs against the files a run writes in `dir` (config.json, the
 * checkpoints, metrics.jsonl, the token caches, ...). */
HM_API enum hm_status hm_run_dir_check_inputs(const char *dir, const char *in_flag,
                                              const char *const *inputs, size_t n_inputs);

#ifdef __cplusplus
}
#endif
#endif
