#!/usr/bin/env bash
# train.sh - `hermes-llm train` from the command line: flags and their errors, bad input (each a
# one-line error with nothing half-written left behind), the nano seq-len clamp, the missing-
# tokenizer path, SIGINT saving a resumable state, and SIGKILL at a random step followed by
# --resume giving bit-identical weights and losses.
. "$(dirname "$0")/lib.sh"

CORPUS="$SRC/tests/fixtures/tokenizer/prose-code.txt"
D="$TMP/data.txt"
cp "$CORPUS" "$D"
"$BIN" train-tokenizer -i "$D" -o "$TMP/tok.json" -v 400 >/dev/null 2>&1 || { echo "FAIL: tokenizer"; exit 1; }
COMMON=(-t "$TMP/tok.json" -m nano -b 4 --seq-len 32 --threads 1 --log-every 1)

# ---- usage errors (exit 2) ----
expect 2 "--tokenizer is required" -- train -d "$D"
expect 2 "--lr: expected a number, got 'fast'" -- train -d "$D" "${COMMON[@]}" --lr fast
expect 2 "--batch-size: expected an integer in" -- train -d "$D" "${COMMON[@]}" -b 0
expect 2 "unknown model 'huge'" -- train -d "$D" -t "$TMP/tok.json" -m huge
expect 2 "--seq-len 512 exceeds the model's max_seq_len 128" -- train -d "$D" -t "$TMP/tok.json" -m nano --seq-len 512
expect 2 "unknown LR schedule 'linear'" -- train -d "$D" "${COMMON[@]}" --lr-schedule linear
expect 2 "--save-dtype: expected f32 or bf16" -- train -d "$D" "${COMMON[@]}" --save-dtype f16
expect 2 "--epochs: missing value" -- train -d "$D" "${COMMON[@]}" -e
one_line_error train -d "$D" "${COMMON[@]}" --lr fast

expect 2 "--device: expected auto, cpu, cuda or cuda:N, got 'gpu'" -- train -d "$D" "${COMMON[@]}" --device gpu
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    # No GPU here: asking for one is a clear error, not a silent CPU run.
    expect 1 "CUDA" -- train -d "$D" "${COMMON[@]}" --max-steps 1 --device cuda -o "$TMP/gpu"
    [ ! -e "$TMP/gpu" ] && PASSES=$((PASSES + 1)) || { echo "FAIL: gpu folder left behind"; FAILS=$((FAILS + 1)); }
fi

# ---- bf16 mixed precision (on the cpu a reference mode): the f32 losses within 2% ----
expect 2 "--dtype: expected auto, f32 or bf16, got 'f16'" -- train -d "$D" "${COMMON[@]}" --dtype f16
for dt in f32 bf16; do
    "$BIN" train -d "$D" "${COMMON[@]}" --device cpu --max-steps 12 --eval-every 0 --dtype $dt \
        -o "$TMP/dt-$dt" >"$TMP/dt-$dt.log" 2>&1 || { cat "$TMP/dt-$dt.log"; echo "FAIL: --dtype $dt"; FAILS=$((FAILS + 1)); }
done
grep -q "Precision: bf16" "$TMP/dt-bf16.log" && ! grep -q "Precision" "$TMP/dt-f32.log" && PASSES=$((PASSES + 1)) ||
    { echo "FAIL: precision line"; FAILS=$((FAILS + 1)); }
# Losses near 6: 2% is 0.12; the gradient norm (near 1) gets the same absolute bound.
"${HM_TEST_TOOLS:-$(dirname "$BIN")/tests}/hm-compare" metrics "$TMP/dt-f32/metrics.jsonl" "$TMP/dt-bf16/metrics.jsonl" 0.12 \
    && PASSES=$((PASSES + 1)) || { echo "FAIL: bf16 losses differ from f32 by more than 2%"; FAILS=$((FAILS + 1)); }

# ---- bad input (exit 1), nothing left behind ----
expect 1 "/nonexistent.txt: cannot open" -- train -d /nonexistent.txt "${COMMON[@]}" -o "$TMP/o1"
[ ! -e "$TMP/o1" ] && PASSES=$((PASSES + 1)) || { echo "FAIL: o1 left behind"; FAILS=$((FAILS + 1)); }
: > "$TMP/empty.txt"
expect 1 "empty" -- train -d "$TMP/empty.txt" "${COMMON[@]}" -o "$TMP/o2"
[ ! -e "$TMP/o2" ] && PASSES=$((PASSES + 1)) || { echo "FAIL: o2 left behind"; FAILS=$((FAILS + 1)); }
printf 'just a few words\n' > "$TMP/short.txt"
expect 1 "fewer than one window" -- train -d "$TMP/short.txt" "${COMMON[@]}" -o "$TMP/o3"
[ ! -e "$TMP/o3" ] && PASSES=$((PASSES + 1)) || { echo "FAIL: o3 left behind"; FAILS=$((FAILS + 1)); }
printf '{"text": "ok"}\n{"text": 5}\n' > "$TMP/bad.jsonl"
expect 1 "bad.jsonl:2" -- train -d "$TMP/bad.jsonl" "${COMMON[@]}" -o "$TMP/o4"
touch "$TMP/afile"
expect 1 "afile" -- train -d "$D" "${COMMON[@]}" -o "$TMP/afile/out"
expect 2 "tokenizer .*does not exist.*standard input" -- train -t "$TMP/none.json" -o "$TMP/o5" < "$D"

# ---- nano's default seq-len is clamped, with a note ----
expect 0 "using 128" -- train -d "$D" -t "$TMP/tok.json" -m nano -b 2 --max-steps 2 -o "$TMP/clamp" --threads 1

# ---- a missing tokenizer is trained from the data, and said so ----
expect 0 "training a 300-token byte-level BPE" -- train -d "$D" -t "$TMP/new-tok.json" -v 300 -m nano -b 2 --seq-len 16 --max-steps 2 -o "$TMP/newtok" --threads 1
[ -s "$TMP/new-tok.json" ] && PASSES=$((PASSES + 1)) || { echo "FAIL: tokenizer not written"; FAILS=$((FAILS + 1)); }

# ---- a checkpoint whose vocab differs from the tokenizer ----
"$BIN" train-tokenizer -i "$D" -o "$TMP/tok2.json" -v 350 >/dev/null 2>&1
expect 1 "does not match tokenizer" -- train -d "$D" -t "$TMP/tok2.json" -m nano -b 2 --seq-len 16 --max-steps 1 -o "$TMP/ft" --checkpoint "$TMP/clamp/weights.safetensors"
# ---- truncated and corrupted checkpoints ----
head -c 1000 "$TMP/clamp/weights.safetensors" > "$TMP/trunc.safetensors"
expect 1 "trunc.safetensors" -- train -d "$D" "${COMMON[@]}" --max-steps 1 -o "$TMP/ft2" --checkpoint "$TMP/trunc.safetensors"
printf '\xff\xff\xff\xff\xff\xff\xff\x7f garbage' > "$TMP/garbage.safetensors"
expect 1 "garbage.safetensors" -- train -d "$D" "${COMMON[@]}" --max-steps 1 -o "$TMP/ft3" --checkpoint "$TMP/garbage.safetensors"
# ---- fine-tuning from a matching checkpoint works ----
expect 0 "MiB planned for activations" -- train -d "$D" -t "$TMP/tok.json" -m nano -b 2 --seq-len 32 --max-steps 2 -o "$TMP/ft5" --threads 1
expect 0 "Done: 2 steps" -- train -d "$D" -t "$TMP/tok.json" -m nano -b 2 --seq-len 32 --max-steps 2 -o "$TMP/ft4" --checkpoint "$TMP/clamp/weights.safetensors" --threads 1
# ---- --resume without a saved state ----
expect 1 "no training state" -- train -d "$D" "${COMMON[@]}" --resume -o "$TMP/nostate"

# ---- exact resume after SIGKILL at a random step ----
RUN=(train -d "$D" "${COMMON[@]}" --max-steps 60 --save-every 5 --seed 7 --eval-every 20)
"$BIN" "${RUN[@]}" -o "$TMP/full" >/dev/null 2>&1
"$BIN" "${RUN[@]}" -o "$TMP/killed" >/dev/null 2>&1 &
pid=$!
# wait until a few checkpoints exist, then kill without warning
for _ in $(seq 1 400); do
    n=$(grep -c '"step"' "$TMP/killed/metrics.jsonl" 2>/dev/null)
    n=${n:-0}
    [ "$n" -ge $((10 + RANDOM % 30)) ] && break
    sleep 0.02
done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
expect 0 "Done: 60 steps" -- "${RUN[@]}" -o "$TMP/killed" --resume
if cmp -s "$TMP/full/weights.safetensors" "$TMP/killed/weights.safetensors"; then
    PASSES=$((PASSES + 1))
else
    echo "FAIL: weights after SIGKILL + resume differ from the uninterrupted run"; FAILS=$((FAILS + 1))
fi
losses() { grep -o '"loss": [0-9.]*' "$1/metrics.jsonl"; }
if [ "$(losses "$TMP/full")" = "$(losses "$TMP/killed")" ] && [ "$(losses "$TMP/full" | wc -l)" -eq 60 ]; then
    PASSES=$((PASSES + 1))
else
    echo "FAIL: losses after SIGKILL + resume differ"; FAILS=$((FAILS + 1))
fi

# ---- SIGINT: finish the step, save, print the resume command, exit 0 ----
# The output folder has a space: the printed command is shell-quoted, so it runs as printed.
"$BIN" train -d "$D" "${COMMON[@]}" --max-steps 100000 -e 1000 -o "$TMP/my int" > "$TMP/int.log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do [ -s "$TMP/my int/metrics.jsonl" ] && break; sleep 0.05; done
kill -INT $pid
wait $pid
rc=$?
if [ $rc -eq 0 ] && grep -qF -- "-o '$TMP/my int' --resume" "$TMP/int.log" &&
    [ -s "$TMP/my int/state.safetensors" ]; then
    PASSES=$((PASSES + 1))
else
    echo "FAIL: SIGINT (rc $rc)"; cat "$TMP/int.log" | tail -3; FAILS=$((FAILS + 1))
fi
finish
