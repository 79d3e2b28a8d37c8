#!/usr/bin/env bash
# Writes tests/fixtures/export/: two tiny trained checkpoints (SwiGLU with GQA and a tied head;
# GELU with biases and an untied head), a tokenizer with the ChatML tokens, and what
# `hermes-llm export` makes of them (GGUF in every dtype, Hugging Face folders). test-export
# checks the writers against these bytes; `export_ref.py fixtures` checks the files themselves
# with gguf-py (including an independent Q/K permutation) and transformers.
#   tests/reference/make_export_fixtures.sh build/hermes-llm
set -euo pipefail
BIN=$(realpath "${1:?usage: make_export_fixtures.sh path/to/hermes-llm}")
cd "$(dirname "$0")/../fixtures"
rm -rf export && mkdir -p export/expected
cd export
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$BIN" train-tokenizer -i ../tokenizer/prose-code.txt -o tokenizer.json -v 320 \
    --special-tokens '<pad>,<bos>,<eos>,<unk>,<|im_start|>,<|im_end|>'
common='"vocab_size": 320, "max_seq_len": 32, "hidden_size": 32, "num_layers": 1, "num_heads": 2,
  "intermediate_size": 64, "dropout": 0.0, "layer_norm_eps": 1e-05, "rope_theta": 10000.0'
echo "{$common, \"num_kv_heads\": 1, \"use_bias\": false, \"activation\": \"swiglu\", \"tie_embeddings\": true}" > "$TMP/swiglu.json"
echo "{$common, \"num_kv_heads\": 2, \"use_bias\": true, \"activation\": \"gelu\", \"tie_embeddings\": false}" > "$TMP/gelu.json"
for m in swiglu gelu; do
    "$BIN" train -d ../tokenizer/prose-code.txt -t tokenizer.json -m "$TMP/$m.json" -o "$TMP/$m" \
        -b 4 --seq-len 16 --max-steps 30 --lr 1e-2 --threads 1 --log-every 100 >/dev/null 2>&1
    mkdir -p "$m"
    cp "$TMP/$m/config.json" "$TMP/$m/weights.safetensors" "$m/"
done
for dt in f32 f16 bf16 q8_0; do
    "$BIN" export -c swiglu -t tokenizer.json -o "expected/swiglu-$dt.gguf" --dtype "$dt"
done
"$BIN" export -c swiglu -t tokenizer.json -f hf -o expected/swiglu-hf-f32
"$BIN" export -c gelu -t tokenizer.json -f hf -o expected/gelu-hf-bf16 --dtype bf16
du -sh .
