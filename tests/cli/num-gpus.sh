#!/usr/bin/env bash
# num-gpus.sh - `train --num-gpus N` where it cannot run: on a machine without a CUDA device (or a
# build without NCCL) it must fail at once with one clear error line and exit 1, never start
# workers that hang; under mpirun it is a usage error. The launcher's fork/exec/kill/relay logic
# is covered without GPUs by tests/unit/test-launch.c. Skipped (77) where a GPU is visible.
# Args: $1 = hermes-llm binary, $2 = source dir.
. "$(dirname "$0")/lib.sh"

if command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    echo "SKIPPED: a GPU is present; this test covers machines without one"
    exit 77
fi
printf 'hello world, hello there\n' > "$TMP/c.txt"
"$BIN" train-tokenizer -i "$TMP/c.txt" -o "$TMP/tok.json" -v 270 2>/dev/null
ARGS=(train -t "$TMP/tok.json" -d "$TMP/c.txt" -m nano -o "$TMP/out" -b 1 --seq-len 4)
start=$(date +%s)
expect 1 "--num-gpus 2: (no CUDA device found|this hermes-llm was built without NCCL)" -- "${ARGS[@]}" --num-gpus 2
expect 1 "--num-gpus 1: (no CUDA device found|this hermes-llm was built without NCCL)" -- "${ARGS[@]}" --num-gpus 1
one_line_error "${ARGS[@]}" --num-gpus 2
[ $(($(date +%s) - start)) -lt 20 ] || { echo "FAIL: --num-gpus took too long to fail"; FAILS=$((FAILS + 1)); }
[ ! -e "$TMP/out" ] || { echo "FAIL: --num-gpus left an output folder"; FAILS=$((FAILS + 1)); }
OMPI_COMM_WORLD_SIZE=2 expect 2 "under mpirun/srun leave it out" -- "${ARGS[@]}" --num-gpus 2
expect 2 "--num-gpus: expected an integer in" -- "${ARGS[@]}" --num-gpus 0
finish
