#!/usr/bin/env bash
# export.sh - `hermes-llm export` and `import` on the committed tiny models of
# tests/fixtures/export: the outputs they make, and one clear error line, the right exit code and
# no output at all (not even a temp file) for every bad input: not a checkpoint, no tokenizer, an
# unsupported dtype or architecture, an existing output without --force, truncated or corrupt
# safetensors, config keys of the wrong type or with settings we do not compute.
. "$(dirname "$0")/lib.sh"
FIX="$SRC/tests/fixtures/export"
TOK="$FIX/tokenizer.json"
SW="$FIX/swiglu"

# nothing_at PATH...: none of the paths exists, and no temp file or folder was left beside them
nothing_at() {
    for p in "$@"; do
        if [ -e "$p" ] || compgen -G "$p.tmp.*" >/dev/null || compgen -G "$p.old.*" >/dev/null; then
            echo "FAIL: $p (or a temp file of it) exists after a failed command"; FAILS=$((FAILS + 1)); return
        fi
    done
    PASSES=$((PASSES + 1))
}

# fails CODE PATTERN OUTPUT -- ARGS: the exit code, one error line matching PATTERN, no OUTPUT
fails() {
    local code=$1 pat=$2 out=$3
    shift 4
    expect "$code" "$pat" -- "$@"
    one_line_error "$@"
    nothing_at "$out"
}

expect 0 "Usage: hermes-llm export" -- export --help
expect 0 "Usage: hermes-llm import" -- import --help
expect 0 "export .*GGUF" -- --help

# the outputs: GGUF (format from the extension), a Hugging Face folder, the checkpoint by folder
expect 0 "wrote .*m.gguf \(GGUF, architecture llama, q8_0\)" -- export -c "$SW" -t "$TOK" -o "$TMP/m.gguf" --dtype q8_0
cmp -s "$TMP/m.gguf" "$FIX/expected/swiglu-q8_0.gguf" && PASSES=$((PASSES + 1)) ||
    { echo "FAIL: m.gguf differs from the fixture"; FAILS=$((FAILS + 1)); }
expect 0 "LlamaForCausalLM, f32" -- export -c "$SW/weights.safetensors" -t "$TOK" -f hf -o "$TMP/hf"
expect 0 "LlamaForCausalLM" -- export -c "$SW" -t "$TOK" -f hf -o "$TMP/slash/"
[ -f "$TMP/slash/config.json" ] && PASSES=$((PASSES + 1)) || { echo "FAIL: -o DIR/ did not make DIR"; FAILS=$((FAILS + 1)); }
expect 0 "ArceeForCausalLM, bf16" -- export -c "$FIX/gelu" -t "$TOK" -f hf -o "$TMP/hf-gelu" --dtype bf16

# existing outputs: refused without --force (and left alone), replaced with it
echo keep > "$TMP/exists.gguf"
expect 2 "exists.gguf already exists \(use --force" -- export -c "$SW" -t "$TOK" -o "$TMP/exists.gguf"
[ "$(cat "$TMP/exists.gguf")" = keep ] && PASSES=$((PASSES + 1)) || { echo "FAIL: exists.gguf was touched"; FAILS=$((FAILS + 1)); }
expect 0 "wrote" -- export -c "$SW" -t "$TOK" -o "$TMP/exists.gguf" --force
cmp -s "$TMP/exists.gguf" "$FIX/expected/swiglu-f32.gguf" && PASSES=$((PASSES + 1)) ||
    { echo "FAIL: --force did not replace exists.gguf"; FAILS=$((FAILS + 1)); }
expect 2 "hf already exists" -- export -c "$SW" -t "$TOK" -f hf -o "$TMP/hf"
expect 0 "wrote" -- export -c "$SW" -t "$TOK" -f hf -o "$TMP/hf" --force
compgen -G "$TMP/hf.*" >/dev/null && { echo "FAIL: --force left $(echo "$TMP"/hf.*)"; FAILS=$((FAILS + 1)); } ||
    PASSES=$((PASSES + 1))

# bad inputs to export
fails 2 "--checkpoint and --output are required" "$TMP/a.gguf" -- export -o "$TMP/a.gguf"
fails 2 "--format: expected gguf or hf" "$TMP/a" -- export -c "$SW" -t "$TOK" -o "$TMP/a"
fails 2 "--dtype: expected auto, f32, f16, bf16 or q8_0, got 'q4_0'" "$TMP/a.gguf" -- export -c "$SW" -t "$TOK" -o "$TMP/a.gguf" --dtype q4_0
fails 2 "q8_0 is for GGUF" "$TMP/a" -- export -c "$SW" -t "$TOK" -f hf -o "$TMP/a" --dtype q8_0
fails 1 "tokenizer.json: .*(safetensors|header)" "$TMP/a.gguf" -- export -c "$TOK" --config "$SW/config.json" -t "$TOK" -o "$TMP/a.gguf"
fails 2 "no tokenizer: .*swiglu/tokenizer.json does not exist" "$TMP/a.gguf" -- export -c "$SW" -o "$TMP/a.gguf"
fails 1 "GGUF export needs a SwiGLU model: .*llama-nano, llama-tiny" "$TMP/a.gguf" -- export -c "$FIX/gelu" -t "$TOK" -o "$TMP/a.gguf"
fails 1 "has 703 tokens but .*config.json says vocab_size 320" "$TMP/a.gguf" -- export -c "$SW" -t "$SRC/tests/fixtures/tokenizer/hf-saved.tokenizer.json" -o "$TMP/a.gguf"
fails 1 "does not exist|cannot open" "$TMP/a.gguf" -- export -c "$TMP/nope" -t "$TOK" -o "$TMP/a.gguf"
mkdir -p "$TMP/mixed" && cp "$SW/weights.safetensors" "$TMP/mixed/" && cp "$FIX/gelu/config.json" "$TMP/mixed/"
fails 1 "mixed/weights.safetensors: .*(no tensor|not part|shape)" "$TMP/a.gguf" -- export -c "$TMP/mixed" -t "$TOK" -o "$TMP/a.gguf"

# import: the folder comes back as a run folder that generate runs
expect 0 "wrote .*run: config.json, weights.safetensors, tokenizer.json" -- import "$TMP/hf" -o "$TMP/run"
expect 0 "" -- generate -c "$TMP/run/weights.safetensors" -t "$TMP/run/tokenizer.json" -p "The" -m 4 --temperature 0 --threads 1
expect 2 "run already exists" -- import "$TMP/hf" -o "$TMP/run"
expect 0 "wrote" -- import -i "$TMP/hf" -o "$TMP/run" --force
fails 2 "a Hugging Face folder and --output are required" "$TMP/r" -- import -o "$TMP/r"

# a bf16 folder imported and exported again (dtype auto: the checkpoint's) is the same folder
expect 0 "wrote" -- import "$FIX/expected/gelu-hf-bf16" -o "$TMP/gelu-run"
expect 0 "ArceeForCausalLM, bf16" -- export -c "$TMP/gelu-run" -f hf -o "$TMP/gelu-back"
cmp -s "$TMP/gelu-back/model.safetensors" "$FIX/expected/gelu-hf-bf16/model.safetensors" &&
    PASSES=$((PASSES + 1)) || { echo "FAIL: bf16 import/export changed model.safetensors"; FAILS=$((FAILS + 1)); }

# bad Hugging Face folders: each refused with one line naming the file or key, no run folder
hf_variant() { # hf_variant NAME: a copy of the good folder to spoil
    rm -rf "$TMP/$1" && cp -r "$TMP/hf" "$TMP/$1"
}
hf_variant trunc && head -c 5000 "$TMP/hf/model.safetensors" > "$TMP/trunc/model.safetensors"
fails 1 "trunc/model.safetensors: " "$TMP/r" -- import "$TMP/trunc" -o "$TMP/r"
hf_variant corrupt && printf '\x10\x00\x00\x00\x00\x00\x00\x00{"a": nonsense}' > "$TMP/corrupt/model.safetensors"
fails 1 "corrupt/model.safetensors: " "$TMP/r" -- import "$TMP/corrupt" -o "$TMP/r"
hf_variant noweights && rm "$TMP/noweights/model.safetensors"
fails 1 "no model.safetensors or model.safetensors.index.json" "$TMP/r" -- import "$TMP/noweights" -o "$TMP/r"
hf_variant notok && rm "$TMP/notok/tokenizer.json"
fails 1 "notok/tokenizer.json: cannot open" "$TMP/r" -- import "$TMP/notok" -o "$TMP/r"
spoil() { # spoil NAME PYTHON-FREE-SED: edit config.json of a fresh copy
    hf_variant "$1" && sed -i "$2" "$TMP/$1/config.json"
}
spoil strsize 's/"hidden_size": 32/"hidden_size": "32"/'
fails 1 "key 'hidden_size' must be a positive integer" "$TMP/r" -- import "$TMP/strsize" -o "$TMP/r"
spoil strtheta 's/"rope_theta": 10000.0/"rope_theta": "10000"/'
fails 1 "key 'rope_theta' must be a positive number" "$TMP/r" -- import "$TMP/strtheta" -o "$TMP/r"
spoil strtie 's/"tie_word_embeddings": true/"tie_word_embeddings": 1/'
fails 1 "key 'tie_word_embeddings' must be true or false" "$TMP/r" -- import "$TMP/strtie" -o "$TMP/r"
spoil scaling 's/"use_cache": true/"use_cache": true, "rope_scaling": {"rope_type": "linear", "factor": 2.0}/'
fails 1 "'rope_scaling' type \"linear\" is not supported" "$TMP/r" -- import "$TMP/scaling" -o "$TMP/r"
spoil sliding 's/"use_cache": true/"use_cache": true, "sliding_window": 4096/'
fails 1 "'sliding_window' .*is not supported" "$TMP/r" -- import "$TMP/sliding" -o "$TMP/r"
spoil mistral 's/LlamaForCausalLM/MistralForCausalLM/'
fails 1 "'architectures' \"MistralForCausalLM\" .*is not supported" "$TMP/r" -- import "$TMP/mistral" -o "$TMP/r"
spoil act 's/"silu"/"gelu_new"/'
fails 1 "'hidden_act' \"gelu_new\" for llama is not supported" "$TMP/r" -- import "$TMP/act" -o "$TMP/r"
spoil headdim 's/"head_dim": 16/"head_dim": 8/'
fails 1 "'head_dim' other than hidden_size / num_attention_heads" "$TMP/r" -- import "$TMP/headdim" -o "$TMP/r"
spoil bias 's/"mlp_bias": false/"mlp_bias": true/'
fails 1 "'mlp_bias' different from attention_bias" "$TMP/r" -- import "$TMP/bias" -o "$TMP/r"
spoil vocab 's/"vocab_size": 320/"vocab_size": 384/'
fails 1 "'vocab_size' 384 differs from the 320 tokens" "$TMP/r" -- import "$TMP/vocab" -o "$TMP/r"
hf_variant wordpiece && sed -i 's/"type": "BPE"/"type": "WordPiece"/' "$TMP/wordpiece/tokenizer.json"
fails 1 "model type 'WordPiece' is not supported" "$TMP/r" -- import "$TMP/wordpiece" -o "$TMP/r"

finish
