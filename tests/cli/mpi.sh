#!/usr/bin/env bash
# mpi.sh - CPU data parallelism through MPI (the code path the NCCL workers share): 2 ranks with
# batch B must train like 1 process with batch 2B (same losses, same weights, within float
# tolerance: the sum runs in another order); the bucketed all-reduce that overlaps the backward
# pass, with any bucket size, equals the single blocking one bit for bit (a sum of two is the same
# in any order); ZeRO-1 trains like the unsharded optimizer and its state resumes with or without
# it; resume under MPI continues like an uninterrupted run; a resume that changes the global
# batch is an error; a failing rank ends the job non-zero without hanging. Also: rank 0 trains a
# missing tokenizer and reads data from standard input for everyone. Exits 77 (skipped) when
# mpirun is missing or the binary was built without MPI.
# Args: $1 = hermes-llm binary, $2 = source dir. HM_TEST_TOOLS = folder holding hm-compare.
set -u
BIN=$1
CMP=${HM_TEST_TOOLS:-$(dirname "$BIN")/tests}/hm-compare
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }

if ! command -v mpirun >/dev/null; then
    echo "SKIPPED: mpirun not found, so the MPI data-parallel tests did not run"
    exit 77
fi
[ -x "$CMP" ] || { echo "FAIL: hm-compare not found at $CMP"; exit 1; }

# Open MPI as root in a container on 2 cores: --allow-run-as-root, --oversubscribe, shared
# memory without the ptrace-based single copy (often blocked in containers), one thread per
# rank. Extra flags for other systems can come from HM_TEST_MPIRUN_FLAGS.
export OMP_NUM_THREADS=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
MPIRUN=(mpirun --allow-run-as-root --oversubscribe --mca btl self,vader -x OMP_NUM_THREADS
        -x OMPI_MCA_btl_vader_single_copy_mechanism ${HM_TEST_MPIRUN_FLAGS:-})
mpi() { # mpi NP ARGS...: hermes-llm under mpirun with NP ranks, at most 120 s
    local np=$1
    shift
    timeout -k 5 120 "${MPIRUN[@]}" -np "$np" "$BIN" "$@"
}

# A tiny corpus, a 300-token tokenizer, and nano without dropout for the comparisons of section 1
# (section 1b checks dropout itself: masks are keyed by the global sample index).
awk 'BEGIN { srand(7); split("the quick brown fox jumps over a lazy dog and then sat on the mat", w, " ");
             for (i = 0; i < 12000; i++) printf "%s%s", w[int(rand() * 15) + 1], (i % 17 == 16) ? "\n" : " " }' \
    > "$T/c.txt"
"$BIN" train-tokenizer -i "$T/c.txt" -o "$T/tok.json" -v 300 2>/dev/null || { echo "FAIL: tokenizer"; exit 1; }
sed 's/"dropout": [0-9.]*/"dropout": 0.0/' "$2/configs/nano.json" > "$T/nano0.json"
# f32 unless a run says bf16 (later flags win): the tolerances below are f32's, and --dtype auto
# is bf16 on a CPU with AMX.
COMMON=(-t "$T/tok.json" -d "$T/c.txt" -m "$T/nano0.json" --seq-len 32 --log-every 1 --eval-every 5
        --eval-batches 4 --save-every 0 --dtype f32)

if ! mpi 2 train --help >/dev/null 2>"$T/err"; then
    cat "$T/err"
    echo "FAIL: mpirun cannot start 2 ranks here"
    exit 1
fi

# 1. Equivalence: 1 x batch 4 == 2 ranks x batch 2 == 2 ranks x batch 1 x grad-accum 2.
"$BIN" train "${COMMON[@]}" -o "$T/one" -b 4 --max-steps 12 2>"$T/err" || { cat "$T/err"; fail "1-process run"; }
mpi 2 train "${COMMON[@]}" -o "$T/two" -b 2 --max-steps 12 >"$T/out" 2>&1
rc=$?
if grep -q "built without MPI" "$T/out"; then
    echo "SKIPPED: this hermes-llm was built without MPI"
    exit 77
fi
[ "$rc" = 0 ] || { cat "$T/out"; fail "2-rank run"; }
grep -q "Global batch: 4 windows (batch 2 x grad-accum 1 x 2 processes)" "$T/out" || fail "global batch not printed"
[ "$(grep -c '^Model:' "$T/out")" = 1 ] || fail "only rank 0 should log"
grep -Eq "^Gradient all-reduce: [0-9.]+ s exposed of .* 2 processes, [0-9]+ buckets per step" "$T/out" ||
    { cat "$T/out"; fail "overlapped all-reduce summary"; }
mpi 2 train "${COMMON[@]}" -o "$T/acc" -b 1 --grad-accum 2 --max-steps 12 >"$T/out" 2>&1 || { cat "$T/out"; fail "accum run"; }
# Overlap off (one blocking all-reduce), and nano in many small buckets with accumulation.
mpi 2 train "${COMMON[@]}" -o "$T/noov" -b 2 --max-steps 12 --no-overlap >"$T/out" 2>&1 || { cat "$T/out"; fail "--no-overlap run"; }
grep -Eq "^Gradient all-reduce: [0-9.]+ s exposed .*--no-overlap" "$T/out" || { cat "$T/out"; fail "--no-overlap summary"; }
mpi 2 train "${COMMON[@]}" -o "$T/accb" -b 1 --grad-accum 2 --max-steps 12 --bucket-mb 0.01 >"$T/out" 2>&1 ||
    { cat "$T/out"; fail "small-bucket run"; }
buckets=$(sed -n 's/.* \([0-9]*\) buckets per step/\1/p' "$T/out")
[ "${buckets:-0}" -ge 10 ] || { cat "$T/out"; fail "--bucket-mb 0.01 gave ${buckets:-no} buckets"; }
# ZeRO-1: moments sharded, gradients reduce-scattered in the same small buckets.
mpi 2 train "${COMMON[@]}" -o "$T/z1" -b 2 --max-steps 12 --zero1 --bucket-mb 0.01 >"$T/out" 2>&1 || { cat "$T/out"; fail "--zero1 run"; }
grep -q "^Optimizer state (ZeRO-1): .* per process (1/2 of" "$T/out" || { cat "$T/out"; fail "--zero1 memory line"; }
for run in two acc noov accb z1; do
    "$CMP" metrics "$T/one/metrics.jsonl" "$T/$run/metrics.jsonl" 1e-4 || fail "$run: losses differ from 1 process"
    "$CMP" weights "$T/one/weights.safetensors" "$T/$run/weights.safetensors" 1e-5 0 || fail "$run: weights differ"
done
"$CMP" metrics "$T/two/metrics.jsonl" "$T/noov/metrics.jsonl" 0 || fail "overlap: losses not bit-identical to --no-overlap"
"$CMP" weights "$T/two/state.safetensors" "$T/noov/state.safetensors" 0 0 || fail "overlap: state not bit-identical to --no-overlap"
"$CMP" weights "$T/acc/state.safetensors" "$T/accb/state.safetensors" 0 0 || fail "small buckets: state not bit-identical"
# The gathered moments in z1's state.safetensors are the unsharded run's (the norm is summed per
# shard, so allow float rounding).
"$CMP" weights "$T/two/state.safetensors" "$T/z1/state.safetensors" 1e-6 0 || fail "--zero1 state differs"
# bf16 mixed precision under ZeRO-1: the bf16 weight copies are refreshed after the all-gather,
# so 2 ranks follow 1 process (bf16 rounding differs with the micro-batch: 1e-2 on losses near 6).
mpi 2 train "${COMMON[@]}" -o "$T/z16" -b 2 --max-steps 12 --zero1 --dtype bf16 >"$T/out" 2>&1 || { cat "$T/out"; fail "--zero1 bf16 run"; }
"$BIN" train "${COMMON[@]}" -o "$T/one16" -b 4 --max-steps 12 --dtype bf16 2>"$T/err" || { cat "$T/err"; fail "1-process bf16 run"; }
"$CMP" metrics "$T/one16/metrics.jsonl" "$T/z16/metrics.jsonl" 1e-2 || fail "--zero1 bf16: losses differ from 1 process"
grep -q val_loss "$T/two/metrics.jsonl" || fail "no validation loss under MPI"

# 1b. Dropout on (nano's default 0.1): masks keyed by the sample's index in the global batch, so
# 2 ranks (or micro-batches) draw 1 process's masks: losses within 1e-5 over 20 steps, and a
# dropout run stopped at step 7 resumes exactly.
D=(-t "$T/tok.json" -d "$T/c.txt" -m nano --seq-len 32 --log-every 1 --eval-every 7 --save-every 0
   --lr-schedule constant --warmup 0 --dtype f32)
"$BIN" train "${D[@]}" -o "$T/d1" -b 4 --max-steps 20 2>"$T/err" || { cat "$T/err"; fail "dropout: 1 process"; }
mpi 2 train "${D[@]}" -o "$T/d2" -b 2 --max-steps 20 >"$T/out" 2>&1 || { cat "$T/out"; fail "dropout: 2 ranks"; }
mpi 2 train "${D[@]}" -o "$T/d2a" -b 1 --grad-accum 2 --max-steps 20 >"$T/out" 2>&1 ||
    { cat "$T/out"; fail "dropout: 2 ranks x grad-accum 2"; }
for run in d2 d2a; do
    [ "$(grep -c '"loss"' "$T/$run/metrics.jsonl")" = 20 ] || fail "dropout $run: not 20 logged steps"
    "$CMP" metrics "$T/d1/metrics.jsonl" "$T/$run/metrics.jsonl" 1e-5 || fail "dropout $run: losses differ from 1 process"
done
mpi 2 train "${D[@]}" -o "$T/dpart" -b 2 --max-steps 7 >/dev/null 2>&1 || fail "dropout: first part"
mpi 2 train "${D[@]}" -o "$T/dpart" -b 2 --max-steps 20 --resume >"$T/out" 2>&1 || { cat "$T/out"; fail "dropout: resume"; }
"$CMP" metrics "$T/d2/metrics.jsonl" "$T/dpart/metrics.jsonl" 0 || fail "dropout: resumed losses differ"
"$CMP" weights "$T/d2/state.safetensors" "$T/dpart/state.safetensors" 0 0 || fail "dropout: resumed state differs"

# 2. Resume under MPI: stop at step 5, resume to 12 == 12 uninterrupted (constant LR, so the
# schedule does not depend on where the first run stopped). Same world size: same sums.
R=("${COMMON[@]}" --lr-schedule constant --warmup 0 -b 2)
mpi 2 train "${R[@]}" -o "$T/full" --max-steps 12 >/dev/null 2>&1 || fail "uninterrupted run"
mpi 2 train "${R[@]}" -o "$T/part" --max-steps 5 >/dev/null 2>&1 || fail "first half"
mpi 2 train "${R[@]}" -o "$T/part" --max-steps 12 --resume >"$T/out" 2>&1 || { cat "$T/out"; fail "resume"; }
"$CMP" metrics "$T/full/metrics.jsonl" "$T/part/metrics.jsonl" 0 || fail "resumed losses differ"
"$CMP" weights "$T/full/state.safetensors" "$T/part/state.safetensors" 0 0 || fail "resumed state differs"
# Another world size with the same global batch resumes too (the data order depends only on it).
cp -r "$T/part" "$T/part1"
"$BIN" train "${R[@]}" -o "$T/part1" -b 4 --max-steps 14 --resume 2>"$T/err" || { cat "$T/err"; fail "1-process resume of a 2-rank run"; }
# ZeRO-1: rank 0 gathers the moments into the same state file, so a ZeRO-1 run resumes exactly,
# and its state resumes without --zero1 in one process as well.
mpi 2 train "${R[@]}" -o "$T/zfull" --max-steps 12 --zero1 >/dev/null 2>&1 || fail "uninterrupted --zero1 run"
mpi 2 train "${R[@]}" -o "$T/zpart" --max-steps 5 --zero1 >/dev/null 2>&1 || fail "first half, --zero1"
cp -r "$T/zpart" "$T/zpart1"
mpi 2 train "${R[@]}" -o "$T/zpart" --max-steps 12 --zero1 --resume >"$T/out" 2>&1 || { cat "$T/out"; fail "--zero1 resume"; }
"$CMP" metrics "$T/zfull/metrics.jsonl" "$T/zpart/metrics.jsonl" 0 || fail "--zero1: resumed losses differ"
"$CMP" weights "$T/zfull/state.safetensors" "$T/zpart/state.safetensors" 0 0 || fail "--zero1: resumed state differs"
"$CMP" weights "$T/full/state.safetensors" "$T/zfull/state.safetensors" 1e-6 0 || fail "--zero1 and unsharded states differ"
"$BIN" train "${R[@]}" -o "$T/zpart1" -b 4 --max-steps 12 --resume 2>"$T/err" || { cat "$T/err"; fail "1-process resume of a --zero1 run"; }
"$CMP" weights "$T/zfull/state.safetensors" "$T/zpart1/state.safetensors" 1e-5 0 || fail "1-process resume of --zero1 differs"
# A different global batch cannot continue the same data order: one clear error, exit 1.
mpi 2 train "${R[@]}" -o "$T/part" -b 4 --max-steps 14 --resume >"$T/out" 2>&1
rc=$?
[ "$rc" -ne 0 ] || fail "resume with another global batch should fail"
grep -q "global batch of 4 windows (world size 2), this run has 8" "$T/out" || { cat "$T/out"; fail "global batch message"; }

# 3. A failing rank ends the whole job, non-zero, with its error, and nobody hangs.
for r in 1 0; do
    start=$(date +%s)
    HM_TEST_FAIL_RANK=$r timeout -k 5 120 "${MPIRUN[@]}" -x HM_TEST_FAIL_RANK -np 2 \
        "$BIN" train "${COMMON[@]}" -o "$T/fail$r" -b 2 --max-steps 12 >"$T/out" 2>&1
    rc=$?
    took=$(($(date +%s) - start))
    [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || { cat "$T/out"; fail "rank $r failure: exit $rc"; }
    [ "$took" -lt 60 ] || fail "rank $r failure took $took s"
    grep -q "hermes-llm: error: rank $r: HM_TEST_FAIL_RANK=$r" "$T/out" || { cat "$T/out"; fail "rank $r error line"; }
done

# 4. Rank 0 trains a missing tokenizer for everyone; data from standard input reaches rank 0 only.
mpi 2 train -t "$T/new-tok.json" -v 300 -d "$T/c.txt" -m "$T/nano0.json" --seq-len 32 -b 2 --max-steps 2 \
    -o "$T/newtok" >"$T/out" 2>&1 || { cat "$T/out"; fail "tokenizer trained under MPI"; }
[ -s "$T/new-tok.json" ] || fail "no tokenizer written"
mpi 2 train -t "$T/tok.json" -m "$T/nano0.json" --seq-len 32 -b 2 --max-steps 2 -o "$T/stdin" \
    <"$T/c.txt" >"$T/out" 2>&1 || { cat "$T/out"; fail "data from standard input under MPI"; }

echo "$FAILS failed"
[ "$FAILS" -eq 0 ]
