#!/usr/bin/env bash
# The README's quickstart: install what is missing, build, then run the main job end to end on the
# default corpus (Debian's fortunes package): train a tokenizer, train the `tiny` preset for a
# minute or two, and generate text from it. Outputs go to out/quickstart (OUT=... to change).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
scripts/build.sh
BIN=build/hermes-llm
OUT=${OUT:-out/quickstart}
STEPS=${STEPS:-600}
mkdir -p "$OUT"

echo "== corpus: Debian fortunes -> $OUT/corpus"
scripts/fortunes-corpus.sh "$OUT/corpus"

echo "== train-tokenizer (byte-level BPE, 4096 tokens)"
"$BIN" train-tokenizer -i "$OUT"/corpus/*.txt -o "$OUT/tokenizer.json" -v 4096

echo "== train tiny for $STEPS steps"
"$BIN" info -m tiny --vocab-size 4096 --batch-size 16 --seq-len 128
"$BIN" train -d "$OUT"/corpus/*.txt -t "$OUT/tokenizer.json" -m tiny -o "$OUT/run" \
    -b 16 --seq-len 128 --lr 2e-3 --max-steps "$STEPS" -e 100 --eval-every 200 --log-every 50

echo "== generate"
"$BIN" generate -c "$OUT/run/weights.safetensors" -t "$OUT/tokenizer.json" \
    -p "The secret of life is" -m 80 --temperature 0.8 --top-k 40 --seed 42
echo "== done: checkpoints, metrics.jsonl and loss.svg are in $OUT/run"
