#!/usr/bin/env bash
# The README's quickstart: install what is missing, build, then run the main job end to end on the
# default corpus (Debian's fortunes package): train a tokenizer, train the `llama-tiny` preset
# (SwiGLU, so it exports everywhere) for a minute or two, generate text from it, and export it to
# GGUF for llama.cpp and to a Hugging Face folder. Outputs go to out/quickstart (OUT=... to change).
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

echo "== train llama-tiny for $STEPS steps"
"$BIN" info -m llama-tiny --vocab-size 4096 --batch-size 16 --seq-len 128
# --overwrite: a second quickstart starts a fresh run instead of refusing the first one's folder.
"$BIN" train -d "$OUT"/corpus/*.txt -t "$OUT/tokenizer.json" -m llama-tiny -o "$OUT/run" \
    -b 16 --seq-len 128 --lr 2e-3 --max-steps "$STEPS" -e 100 --eval-every 200 --log-every 50 \
    --overwrite

echo "== generate"
"$BIN" generate -c "$OUT/run/weights.safetensors" -t "$OUT/tokenizer.json" \
    -p "The secret of life is" -m 80 --temperature 0.8 --top-k 40 --seed 42

echo "== export: GGUF for llama.cpp, a Hugging Face folder for transformers"
"$BIN" export -c "$OUT/run" -t "$OUT/tokenizer.json" -o "$OUT/model.gguf" --dtype f16 --force
"$BIN" export -c "$OUT/run" -t "$OUT/tokenizer.json" -f hf -o "$OUT/hf" --force
echo "== done: checkpoints, metrics.jsonl and loss.svg are in $OUT/run"
cat <<EOF
Run the model with llama.cpp:
  llama-cli -m $OUT/model.gguf -p "The secret of life is" -n 80 --temp 0.8 --top-k 40 -no-cnv
or llama-cpp-python:
  python3 -c "from llama_cpp import Llama; print(Llama('$OUT/model.gguf', verbose=False)('The secret of life is', max_tokens=80, temperature=0.8, top_k=40)['choices'][0]['text'])"
or transformers:
  python3 -c "from transformers import pipeline; print(pipeline('text-generation', '$OUT/hf')('The secret of life is', max_new_tokens=80)[0]['generated_text'])"
EOF
