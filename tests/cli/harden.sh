#!/usr/bin/env bash
# harden.sh - issue 13's hostile inputs, by class, each with more than the reported example:
# 1 sizes that overflow or cannot fit, 2 inputs that are not regular files (and '-'), 3 output
# safety (resumable runs, the folder lock, outputs that are inputs, failed stdout writes, stale
# temp files), 5 resume consistency, 6 validation and messages. (4, the token cache, is in
# tests/unit/test-dataset.c; 7, dropout under MPI, in mpi.sh.) Nothing here may hang: every
# command runs under `timeout`, and a timeout fails the test.
source "$(dirname "$0")/lib.sh"

D="$TMP/d.txt"
head -c 20000 "$SRC/tests/fixtures/tokenizer/prose-code.txt" > "$D"
"$BIN" train-tokenizer -i "$D" -o "$TMP/tok.json" -v 300 >/dev/null 2>&1 || { echo "FAIL: tokenizer"; exit 1; }
NANO=(-t "$TMP/tok.json" -m nano -b 2 --seq-len 16 --threads 1 --save-every 0 --eval-every 0)
"$BIN" train -d "$D" "${NANO[@]}" --max-steps 3 -o "$TMP/run" >/dev/null 2>&1 || { echo "FAIL: first run"; exit 1; }
cp "$TMP/run/config.json" "$TMP/config.json" # for generate -c $TMP/*
cfg() { # cfg FILE KEY=VALUE...: nano's config with keys replaced
    local f=$1
    shift
    cp "$SRC/configs/nano.json" "$f"
    for kv in "$@"; do sed -i "s/\"${kv%%=*}\": [^,}]*/\"${kv%%=*}\": ${kv#*=}/" "$f"; done
}

# ---- 1. size arithmetic: refused with the figures, before any allocation, never a crash ----
cfg "$TMP/wide.json" hidden_size=1073741824 num_heads=16 num_kv_heads=16
expect 1 "would have .* parameters and need .* bytes to train" -- info -m "$TMP/wide.json"
expect 1 "would have .* parameters" -- train -d "$D" "${NANO[@]}" -m "$TMP/wide.json" -o "$TMP/s1"
cfg "$TMP/deep.json" num_layers=1073741824 hidden_size=4096 intermediate_size=16384 num_heads=32 num_kv_heads=32
expect 1 "would have .* parameters" -- info -m "$TMP/deep.json"
cfg "$TMP/ffn.json" intermediate_size=1073741824 vocab_size=1073741824 hidden_size=65536 num_heads=64 num_kv_heads=64
expect 1 "needs about 4[0-9]{6}\.[0-9] GiB \(.* GiB of parameters, gradients and AdamW moments" -- train -d "$D" "${NANO[@]}" -m "$TMP/ffn.json" -o "$TMP/s2"
cfg "$TMP/ctx.json" max_seq_len=1073741824 num_layers=65536 hidden_size=65536 num_heads=64 num_kv_heads=64
expect 1 "KV cache of max_seq_len 1073741824 positions would need" -- info -m "$TMP/ctx.json"
# Representable but far beyond this machine: refused naming what it needs, nothing allocated.
cfg "$TMP/big.json" hidden_size=32768 num_layers=256 intermediate_size=131072 num_heads=64 num_kv_heads=64
expect 1 "needs about [0-9.]+ GiB .*; this machine has [0-9.]+ GiB" -- train -d "$D" "${NANO[@]}" -m "$TMP/big.json" -o "$TMP/s3"
[ ! -e "$TMP/s3" ] && PASSES=$((PASSES + 1)) || { echo "FAIL: refused run left $TMP/s3"; FAILS=$((FAILS + 1)); }
# A batch whose activations cannot fit (nano's own sizes, huge batch x context).
cfg "$TMP/long.json" max_seq_len=1048576
expect 1 "needs about [0-9.]+ GiB" -- train -d "$D" "${NANO[@]}" -m "$TMP/long.json" -b 65536 --seq-len 1048576 -o "$TMP/s4"
# Values out of range or of the wrong type name the key and the limit.
cfg "$TMP/h.json" hidden_size=99999999999
expect 1 "key 'hidden_size' is 99999999999, outside \[0, 1073741824\]" -- info -m "$TMP/h.json"
cfg "$TMP/f.json" rope_theta=1e300
expect 1 "key 'rope_theta' is 1e\+300, beyond the range of a float" -- info -m "$TMP/f.json"
cfg "$TMP/n.json" num_layers=-3
expect 1 "key 'num_layers' is -3, outside" -- info -m "$TMP/n.json"

# ---- 2. not regular files: refused at once, never a blocking open; '-' is standard input ----
mkfifo "$TMP/fifo"
expect 1 "fifo: is a FIFO, not a regular file" -- train -d "$TMP/fifo" "${NANO[@]}" -o "$TMP/f1"
expect 1 "fifo: is a FIFO, not a regular file" -- train -d "$D" "${NANO[@]}" --checkpoint "$TMP/fifo" -o "$TMP/f2"
expect 1 "fifo: is a FIFO, not a regular file" -- train -d "$D" "${NANO[@]}" --val-data "$TMP/fifo" -o "$TMP/f3"
expect 1 "fifo: is a FIFO, not a regular file" -- train -d "$D" -t "$TMP/fifo" -m nano -o "$TMP/f4"
expect 1 "fifo: is a FIFO, not a regular file" -- train-tokenizer -i "$TMP/fifo" -o "$TMP/f5.json"
expect 1 "fifo: is a FIFO, not a regular file" -- generate -c "$TMP/fifo" -t "$TMP/tok.json" -p hi
expect 1 "fifo: is a FIFO, not a regular file" -- info -m "$TMP/fifo"
expect 1 "is a directory, not a regular file" -- train -d "$TMP" "${NANO[@]}" -o "$TMP/f6"
expect 1 "fifo: is a FIFO, not a regular file" -- chat -c "$TMP/fifo" -t "$TMP/tok.json"
expect 1 "fifo: is a FIFO, not a regular file" -- export -c "$TMP/fifo" -t "$TMP/tok.json" -o "$TMP/f8.gguf"
mkdir -p "$TMP/hf-fifo" && mkfifo "$TMP/hf-fifo/config.json"
expect 1 "config.json: is a FIFO, not a regular file" -- import "$TMP/hf-fifo" -o "$TMP/f9"
expect 1 "is a character device, not a regular file" -- train-tokenizer -i /dev/zero -o "$TMP/f7.json"
# '-' reads standard input for train -d, alone or among files (rank 0's content key).
out=$("$BIN" train -d - "${NANO[@]}" --max-steps 2 -o "$TMP/stdin1" <"$D" 2>&1)
grep -q "Done: 2 steps" <<<"$out" && PASSES=$((PASSES + 1)) || { echo "FAIL: train -d -: $out" | tail -2; FAILS=$((FAILS + 1)); }
out=$("$BIN" train -d "$D" - "${NANO[@]}" --max-steps 2 -o "$TMP/stdin2" <"$D" 2>&1)
grep -q "Done: 2 steps" <<<"$out" && PASSES=$((PASSES + 1)) || { echo "FAIL: train -d FILE -: $out" | tail -2; FAILS=$((FAILS + 1)); }
expect 2 "standard input can feed --data or --val-data, not both" -- train -d - --val-data - "${NANO[@]}" -o "$TMP/stdin3"

# ---- 3. output safety ----
sum=$(md5sum <"$TMP/run/state.safetensors")
expect 2 "holds a resumable run .*--resume.*--overwrite" -- train -d "$D" "${NANO[@]}" --max-steps 3 -o "$TMP/run"
expect 2 "holds a resumable run" -- train -d "$D" "${NANO[@]}" -m tiny --max-steps 3 -o "$TMP/run"
[ "$(md5sum <"$TMP/run/state.safetensors")" = "$sum" ] && PASSES=$((PASSES + 1)) || { echo "FAIL: resumable run replaced"; FAILS=$((FAILS + 1)); }
expect 0 "Done: 3 steps" -- train -d "$D" "${NANO[@]}" --max-steps 3 -o "$TMP/run" --overwrite
expect 2 "give one of them" -- train -d "$D" "${NANO[@]}" -o "$TMP/run" --resume --overwrite
# The lock: a second run into a folder in use refuses and names the holder.
echo "pid 4242 on testhost, \`hermes-llm train -o run\`" > "$TMP/run/.hermes.lock"
exec 9<"$TMP/run/.hermes.lock" # this shell holds the lock, as a running train would
flock -n 9 || { echo "FAIL: cannot take the lock for the test"; FAILS=$((FAILS + 1)); }
expect 1 "in use by another run \(pid 4242 on testhost, .hermes-llm train -o run.\)" -- train -d "$D" "${NANO[@]}" --max-steps 4 -o "$TMP/run" --resume
expect 1 "in use by another run" -- train -d "$D" "${NANO[@]}" --max-steps 3 -o "$TMP/run" --overwrite
exec 9<&-
expect 0 "Done: 4 steps" -- train -d "$D" "${NANO[@]}" --max-steps 4 -o "$TMP/run" --resume
# Outputs that are inputs: the same path, another spelling, a hard link; the corpus survives.
cp "$D" "$TMP/c.txt"
ln "$TMP/c.txt" "$TMP/c-link.txt"
csum=$(md5sum <"$TMP/c.txt")
expect 2 "-o .*c.txt is also an input \(-i .*c.txt\): refusing to overwrite it" -- train-tokenizer -i "$TMP/c.txt" -o "$TMP/c.txt" -v 300
expect 2 "is also an input" -- train-tokenizer -i "$D" "$TMP/c.txt" -o "$TMP/./c.txt" -v 300
expect 2 "is also an input" -- train-tokenizer -i "$TMP/c-link.txt" -o "$TMP/c.txt" -v 300
[ "$(md5sum <"$TMP/c.txt")" = "$csum" ] && PASSES=$((PASSES + 1)) || { echo "FAIL: corpus replaced"; FAILS=$((FAILS + 1)); }
cp "$TMP/run/metrics.jsonl" "$TMP/m.jsonl"
expect 2 "--data .*metrics.jsonl is a file this run writes" -- train -d "$TMP/run/metrics.jsonl" "${NANO[@]}" -o "$TMP/run" --resume
expect 2 "--val-data .*config.json is a file this run writes" -- train -d "$D" --val-data "$TMP/run/config.json" "${NANO[@]}" -o "$TMP/run" --resume
# A failed write to stdout is an error, exit 1, for every command that prints there.
for args in "--help" "info -m nano" "train --help" "generate --help" "train-tokenizer --help"; do
    # shellcheck disable=SC2086
    "$BIN" $args >/dev/full 2>"$TMP/full.err"
    rc=$?
    if [ $rc -eq 1 ] && grep -q "standard output: write failed" "$TMP/full.err"; then
        PASSES=$((PASSES + 1))
    else
        echo "FAIL: hermes-llm $args > /dev/full exited $rc"; FAILS=$((FAILS + 1))
    fi
done
"$BIN" generate -c "$TMP/run/weights.safetensors" -t "$TMP/tok.json" -p "The" -m 5 --seed 1 >/dev/full 2>"$TMP/full.err"
rc=$?
[ $rc -eq 1 ] && [ "$(grep -c "^hermes-llm: error: .*write failed" "$TMP/full.err")" = 1 ] && PASSES=$((PASSES + 1)) || { echo "FAIL: generate > /dev/full exited $rc"; FAILS=$((FAILS + 1)); }
echo "Hi" | "$BIN" chat -c "$TMP/run/weights.safetensors" -t "$TMP/tok.json" -m 5 --seed 1 >/dev/full 2>"$TMP/full.err"
rc=$?
[ $rc -eq 1 ] && [ "$(grep -c "^hermes-llm: error: .*write failed" "$TMP/full.err")" = 1 ] && PASSES=$((PASSES + 1)) || { echo "FAIL: chat > /dev/full exited $rc"; cat "$TMP/full.err"; FAILS=$((FAILS + 1)); }
# export and import with --force replace their output: one that is an input, or a folder that
# holds one, is refused and left as it was.
cp "$TMP/tok.json" "$TMP/run/tokenizer.json"
wsum=$(md5sum <"$TMP/run/weights.safetensors")
expect 2 "-o .*weights.safetensors is the input -c .*weights.safetensors: refusing to replace it" -- export -c "$TMP/run" -f gguf -o "$TMP/run/weights.safetensors" --force
expect 2 "-o .*config.json is the input --config" -- export -c "$TMP/run" -f gguf -o "$TMP/run/config.json" --force
expect 2 "-o .*run holds the input -c .*weights.safetensors: refusing to replace it" -- export -c "$TMP/run" -f hf -o "$TMP/run" --force
mkdir -p "$TMP/w" && cp "$TMP/run/weights.safetensors" "$TMP/run/config.json" "$TMP/w/"
expect 2 "-o .*run holds the input -t .*tokenizer.json" -- export -c "$TMP/w" -t "$TMP/run/tokenizer.json" -f hf -o "$TMP/run" --force
[ "$(md5sum <"$TMP/run/weights.safetensors")" = "$wsum" ] && PASSES=$((PASSES + 1)) || { echo "FAIL: export replaced its input"; FAILS=$((FAILS + 1)); }
expect 0 "wrote" -- export -c "$TMP/run" -f hf -o "$TMP/hf" --force
expect 2 "import: -o .*hf is the input -i .*hf: refusing to replace it" -- import "$TMP/hf" -o "$TMP/hf" --force
expect 2 "import: -o .* holds the input -i" -- import "$TMP/hf" -o "$TMP" --force
[ -e "$TMP/hf/config.json" ] && PASSES=$((PASSES + 1)) || { echo "FAIL: import replaced its input"; FAILS=$((FAILS + 1)); }
rm "$TMP/run/tokenizer.json"
# Temp files of dead processes go at the next start; a live process's temp file stays.
sleep 0 & dead=$!; wait $dead
for f in weights.safetensors state.safetensors metrics.jsonl tokens-train.bin; do echo x > "$TMP/run/$f.tmp.$dead"; done
echo x > "$TMP/run/weights.safetensors.tmp.$$"
echo x > "$TMP/tokx.json.tmp.$dead"
expect 0 "Done: 5 steps" -- train -d "$D" "${NANO[@]}" --max-steps 5 -o "$TMP/run" --resume
left=$(ls "$TMP/run" | grep -c "\.tmp\.$dead$")
[ "$left" = 0 ] && [ -e "$TMP/run/weights.safetensors.tmp.$$" ] && PASSES=$((PASSES + 1)) ||
    { echo "FAIL: stale temps: $left left, or the live one removed"; FAILS=$((FAILS + 1)); }
expect 0 "" -- train-tokenizer -i "$D" -o "$TMP/tokx.json" -v 300
[ ! -e "$TMP/tokx.json.tmp.$dead" ] && PASSES=$((PASSES + 1)) || { echo "FAIL: tokenizer temp of a dead process kept"; FAILS=$((FAILS + 1)); }

# ---- 5. resume consistency ----
expect 2 "--checkpoint .* conflicts with --resume" -- train -d "$D" "${NANO[@]}" --checkpoint "$TMP/run/weights.safetensors" -o "$TMP/run" --resume
expect 0 "-m tiny is ignored" -- train -d "$D" "${NANO[@]}" -m tiny --max-steps 6 -o "$TMP/run" --resume
# Other bytes of the same size (and the same window count) are another data stream.
sed '1{h;d};2{G}' "$D" >"$TMP/d2.txt" # lines 1 and 2 swapped: same bytes, same window count
"$BIN" train -d "$D" "${NANO[@]}" --max-steps 2 -o "$TMP/r2" >/dev/null 2>&1
expect 1 "training data \(--data\) or the tokenizer differ from the run being resumed" -- train -d "$TMP/d2.txt" "${NANO[@]}" --max-steps 4 -o "$TMP/r2" --resume
expect 1 "differ from the run being resumed" -- train -d "$D" --val-data "$D" "${NANO[@]}" --max-steps 4 -o "$TMP/r2" --resume

# ---- 6. validation and messages ----
expect 2 "--min-lr 0.01 is above --lr 0.001" -- train -d "$D" "${NANO[@]}" --lr 1e-3 --min-lr 1e-2 -o "$TMP/v1"
expect 2 "--threads 1024: this build supports 1 to [0-9]+ threads" -- train -d "$D" "${NANO[@]}" --threads 1024 -o "$TMP/v2"
expect 2 "--threads 1000: this build supports" -- generate -c "$TMP/run/weights.safetensors" -t "$TMP/tok.json" -p hi --threads 1000
: >"$TMP/empty.txt"
expect 1 "--val-data .*empty.txt: no text in it" -- train -d "$D" --val-data "$TMP/empty.txt" "${NANO[@]}" -o "$TMP/v3"
expect 1 "--data .*empty.txt: no text in it" -- train -d "$TMP/empty.txt" "${NANO[@]}" -o "$TMP/v4"
# A tokenizer missing byte tokens, or with an id gap, is refused at load by every command.
python3 - "$TMP/tok.json" "$TMP" <<'PY' 2>/dev/null || sed 's/"A": *[0-9]*,//' "$TMP/tok.json" > "$TMP/nobyte.json"
import json, sys
t = json.load(open(sys.argv[1]))
v = t["model"]["vocab"]
json.dump(dict(t, model=dict(t["model"], vocab={k: i for i, k in enumerate(x for x in v if x != "A")},
                             merges=[m for m in t["model"]["merges"] if "A" not in (m if isinstance(m, list) else m.split(" "))])),
          open(sys.argv[2] + "/nobyte.json", "w"))
v2 = dict(v); top = max(v2.values()); v2["zzgap"] = top + 5
json.dump(dict(t, model=dict(t["model"], vocab=v2)), open(sys.argv[2] + "/gap.json", "w"))
PY
expect 1 "no token for byte 0x41" -- train -d "$D" -t "$TMP/nobyte.json" -m nano -o "$TMP/v5"
expect 1 "no token for byte 0x41" -- generate -c "$TMP/run/weights.safetensors" -t "$TMP/nobyte.json" -p hi
if [ -e "$TMP/gap.json" ]; then
    expect 1 "ids must run from 0 without gaps" -- generate -c "$TMP/run/weights.safetensors" -t "$TMP/gap.json" -p hi
fi
# NaN weights: refused at load, naming the tensor, instead of generating text.
python3 - "$TMP/run/weights.safetensors" "$TMP/nan.safetensors" <<'PY' || cp "$TMP/run/weights.safetensors" "$TMP/nan.safetensors"
import json, struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
name = sorted(k for k in h if k != "__metadata__")[0]
off = 8 + n + h[name]["data_offsets"][0] + 4 * 3
b[off:off + 4] = struct.pack("<f", float("nan"))
open(sys.argv[2], "wb").write(b)
PY
cp "$TMP/run/config.json" "$TMP/config.json"
expect 1 "tensor '.*' holds a non-finite value \(nan at element 3\)" -- generate -c "$TMP/nan.safetensors" -t "$TMP/tok.json" -p hi -m 3
expect 1 "holds a non-finite value" -- train -d "$D" "${NANO[@]}" --checkpoint "$TMP/nan.safetensors" -o "$TMP/v6"
finish
