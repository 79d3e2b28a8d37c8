#!/usr/bin/env bash
# scripts/gpu/nccl-launch.sh - the --num-gpus launcher on a GPU machine (issue 9). Needs a CUDA +
# NCCL build ($BUILD_DIR, default build-gpu) and at least one GPU.
#   1. --num-gpus 1 (launcher, secret pipe, NCCL world of 1) trains exactly like a plain run on
#      the same GPU: same losses, same weights;
#   2. --num-gpus 2 with the 2 workers sharing GPU 0 (HM_SHARE_GPU=1) and batch B/2 trains like
#      1 process with batch B, within float tolerance; if NCCL refuses two ranks on one GPU,
#      the launcher must fail cleanly (non-zero, the worker's error, no hang), and we say so;
#      there too: the bucketed all-reduce overlapping the backward pass equals --no-overlap bit
#      for bit (a sum of two), and --zero1 in small buckets (grouped ncclReduce / ncclBroadcast,
#      moments gathered with ncclSend / ncclRecv) trains like the plain run;
#      Each shared-GPU run is limited to $SHARED_TIMEOUT seconds (default 90), the others to
#      $RUN_TIMEOUT (default 240).
#   3. with N GPUs present, --num-gpus N against 1 process with N times the batch, with and
#      without --zero1.
set -u
cd "$(dirname "$0")/../.."
build=${BUILD_DIR:-build-gpu}
BIN=$build/hermes-llm
CMP=$build/tests/hm-compare
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
run() { timeout -k 5 "${RUN_TIMEOUT:-240}" "$@"; }
# Two ranks on one GPU either work within seconds or hang in NCCL's init: a short limit keeps the
# four shared-GPU runs from taking 16 minutes of a lent machine.
run_shared() { timeout -k 5 "${SHARED_TIMEOUT:-90}" "$@"; }

awk 'BEGIN { srand(7); split("the quick brown fox jumps over a lazy dog and then sat on the mat", w, " ");
             for (i = 0; i < 40000; i++) printf "%s%s", w[int(rand() * 15) + 1], (i % 17 == 16) ? "\n" : " " }' \
    > "$T/c.txt"
"$BIN" train-tokenizer -i "$T/c.txt" -o "$T/tok.json" -v 300 2>/dev/null || { echo "FAIL: tokenizer"; exit 1; }
sed 's/"dropout": [0-9.]*/"dropout": 0.0/' configs/nano.json > "$T/nano0.json"
COMMON=(-t "$T/tok.json" -d "$T/c.txt" -m "$T/nano0.json" --seq-len 64 --log-every 1 --eval-every 10
        --eval-batches 4 --save-every 0 --device cuda --max-steps 20)

run "$BIN" train "${COMMON[@]}" -o "$T/plain" -b 8 >"$T/plain.log" 2>&1 || { cat "$T/plain.log"; fail "plain run"; }
run "$BIN" train "${COMMON[@]}" -o "$T/one" -b 8 --num-gpus 1 >"$T/one.log" 2>&1 || { cat "$T/one.log"; fail "--num-gpus 1"; }
grep -q "Starting 1 worker" "$T/one.log" || fail "--num-gpus 1 did not go through the launcher"
"$CMP" metrics "$T/plain/metrics.jsonl" "$T/one/metrics.jsonl" 0 || fail "--num-gpus 1 losses differ from the plain run"
"$CMP" weights "$T/plain/weights.safetensors" "$T/one/weights.safetensors" 0 0 || fail "--num-gpus 1 weights differ"
echo "1. --num-gpus 1 == plain run: $( [ $FAILS = 0 ] && echo yes || echo NO)"
tail -n 3 "$T/one.log"

HM_SHARE_GPU=1 run_shared "$BIN" train "${COMMON[@]}" -o "$T/two" -b 4 --num-gpus 2 >"$T/two.log" 2>&1
rc=$?
if [ $rc = 0 ]; then
  grep -q "Global batch: 8 windows (batch 4 x grad-accum 1 x 2 processes)" "$T/two.log" || fail "global batch not printed"
  "$CMP" metrics "$T/plain/metrics.jsonl" "$T/two/metrics.jsonl" 1e-4 || fail "2 ranks on one GPU: losses differ"
  "$CMP" weights "$T/plain/weights.safetensors" "$T/two/weights.safetensors" 1e-5 0 || fail "2 ranks: weights differ"
  grep -E "Gradient all-reduce: .* exposed" "$T/two.log" || fail "no all-reduce summary"
  HM_SHARE_GPU=1 run_shared "$BIN" train "${COMMON[@]}" -o "$T/two-noov" -b 4 --num-gpus 2 --no-overlap >"$T/noov.log" 2>&1 ||
      { tail "$T/noov.log"; fail "--no-overlap"; }
  "$CMP" metrics "$T/two/metrics.jsonl" "$T/two-noov/metrics.jsonl" 0 || fail "overlap differs from --no-overlap"
  "$CMP" weights "$T/two/state.safetensors" "$T/two-noov/state.safetensors" 0 0 || fail "overlap: state differs"
  HM_SHARE_GPU=1 run_shared "$BIN" train "${COMMON[@]}" -o "$T/two-z1" -b 4 --num-gpus 2 --zero1 --bucket-mb 0.01 \
      >"$T/z1.log" 2>&1 || { tail "$T/z1.log"; fail "--zero1"; }
  "$CMP" metrics "$T/plain/metrics.jsonl" "$T/two-z1/metrics.jsonl" 1e-4 || fail "--zero1: losses differ"
  "$CMP" weights "$T/two/state.safetensors" "$T/two-z1/state.safetensors" 1e-5 0 || fail "--zero1: state differs"
  echo "2. two NCCL ranks sharing GPU 0 == 1 process with the double batch (overlap, --no-overlap, --zero1)"
elif [ $rc = 124 ] || [ $rc = 137 ]; then
  fail "2 ranks on one GPU hung (timeout)"
else
  grep -q "error" "$T/two.log" || fail "2 ranks on one GPU failed without an error line"
  echo "2. NCCL refused two ranks on one GPU (exit $rc); the launcher stopped cleanly:"
  grep -E "error|NCCL" "$T/two.log" | head -n 5
fi

ngpu=$(nvidia-smi -L | wc -l)
if [ "$ngpu" -ge 2 ]; then
  run "$BIN" train "${COMMON[@]}" -o "$T/n" -b 2 --num-gpus "$ngpu" >"$T/n.log" 2>&1 || { tail "$T/n.log"; fail "--num-gpus $ngpu"; }
  run "$BIN" train "${COMMON[@]}" -o "$T/n1" -b $((2 * ngpu)) >/dev/null 2>&1 || fail "1-process run"
  "$CMP" metrics "$T/n1/metrics.jsonl" "$T/n/metrics.jsonl" 1e-4 || fail "--num-gpus $ngpu losses differ"
  run "$BIN" train "${COMMON[@]}" -o "$T/nz" -b 2 --num-gpus "$ngpu" --zero1 >"$T/nz.log" 2>&1 || { tail "$T/nz.log"; fail "--zero1"; }
  "$CMP" metrics "$T/n1/metrics.jsonl" "$T/nz/metrics.jsonl" 1e-4 || fail "--num-gpus $ngpu --zero1 losses differ"
  echo "3. --num-gpus $ngpu == 1 process with $ngpu x the batch (also with --zero1)"
else
  echo "3. skipped: one GPU"
fi
[ $FAILS = 0 ] && echo "nccl-launch: passed" || echo "nccl-launch: $FAILS failure(s)"
exit $((FAILS > 0))
