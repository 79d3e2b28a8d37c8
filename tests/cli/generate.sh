#!/usr/bin/env bash
# generate.sh - `hermes-llm generate` end to end on a checkpoint built here (train-tokenizer, then
# 20 steps of `train` on a made-up corpus, a 1-layer model with max_seq_len 32): streaming to
# stdout with statistics on stderr, seeds, greedy decoding, -p -, the context-limit note, and one
# clear error line with a non-zero exit for every bad input (mismatched config or tokenizer,
# missing or corrupt files, empty or too long prompts, bad flag values).
. "$(dirname "$0")/lib.sh"

word_corpus 200 > "$TMP/corpus.txt"
tiny_config 32 > "$TMP/cfg.json"
"$BIN" train-tokenizer -i "$TMP/corpus.txt" -o "$TMP/tok.json" -v 300 >/dev/null 2>&1 &&
"$BIN" train-tokenizer -i "$TMP/corpus.txt" -o "$TMP/tok280.json" -v 280 >/dev/null 2>&1 &&
"$BIN" train -d "$TMP/corpus.txt" -t "$TMP/tok.json" -m "$TMP/cfg.json" -o "$TMP/run" --max-steps 20 \
    -b 4 --seq-len 32 --threads 1 >/dev/null 2>&1 || { echo "FAIL: could not build the test checkpoint"; exit 1; }
CK="$TMP/run/weights.safetensors"
G=(generate -c "$CK" -t "$TMP/tok.json" --threads 1)

# help and required flags
expect 0 "Usage: hermes-llm generate" -- generate --help
expect 2 "--checkpoint, --tokenizer and --prompt are required" -- generate -c "$CK" -t "$TMP/tok.json"
expect 2 "unknown option '--no-such-flag'" -- generate --no-such-flag

# a run: the prompt and the text on stdout, the statistics (and nothing else) on stderr
out=$("$BIN" "${G[@]}" -p "the cat" -m 8 --seed 1 2>"$TMP/err")
rc=$?
if [ $rc -ne 0 ] || [[ "$out" != "the cat"* ]] || grep -q "tok/s" <<<"$out"; then
    echo "FAIL: generate: exit $rc, stdout '$out'"; FAILS=$((FAILS + 1)); else PASSES=$((PASSES + 1)); fi
if grep -qE "^prompt tokens: [0-9]+, prefill [0-9.]+ tok/s, time to first token [0-9.]+ ms, decode [0-9.]+ tok/s \([0-9]+ new tokens\)" "$TMP/err" &&
   ! grep -q "^seed:" "$TMP/err"; then PASSES=$((PASSES + 1)); else
    echo "FAIL: generate: stderr lacks the statistics line or prints a seed it was given"; cat "$TMP/err"; FAILS=$((FAILS + 1)); fi
expect 0 "\(5 new tokens\)" -- "${G[@]}" -p "the cat" -m 5 --temperature 0 --no-eos
expect 0 "\(5 new tokens\)" -- "${G[@]}" -p "the cat" -m 5 --temperature 0 --no-eos --device cpu --dtype bf16
expect 0 "\(5 new tokens\)" -- "${G[@]}" -p "the cat" -m 5 --temperature 0 --no-eos --dtype q8_0
expect 0 "^memory: weights [0-9.]+ MiB \(q8_0\)" -- "${G[@]}" -p "the cat" -m 2 --dtype q8_0
expect 2 "--dtype: expected auto, f32, bf16 or q8_0" -- "${G[@]}" -p "the cat" --dtype fp8
expect 2 "--dtype q8_0 runs on the cpu only, not on cuda" -- "${G[@]}" -p "the cat" --device cuda --dtype q8_0

# seeds: printed when chosen at random; the same seed gives the same text; temperature 0 is greedy
expect 0 "^seed: [0-9]+$" -- "${G[@]}" -p "the cat" -m 4
same() { # same DESCRIPTION ARGS1 -- ARGS2: both runs must print the same text
    local what=$1 a b; shift
    local -a x=() y=()
    while [ "$1" != "--" ]; do x+=("$1"); shift; done; shift; y=("$@")
    a=$("$BIN" "${G[@]}" "${x[@]}" 2>/dev/null); b=$("$BIN" "${G[@]}" "${y[@]}" 2>/dev/null)
    if [ -n "$a" ] && [ "$a" == "$b" ]; then PASSES=$((PASSES + 1)); else
        echo "FAIL: $what: '$a' vs '$b'"; FAILS=$((FAILS + 1)); fi
}
same "same seed, same text" -p "the dog" -m 20 --temperature 1.2 --top-k 50 --top-p 0.95 --seed 42 \
    -- -p "the dog" -m 20 --temperature 1.2 --top-k 50 --top-p 0.95 --seed 42
same "temperature 0 ignores the seed" -p "a bird" -m 20 --temperature 0 --seed 1 -- -p "a bird" -m 20 --temperature 0 --seed 2
same "-p - reads the prompt from stdin" -p "sang songs" -m 6 --temperature 0 -- -p - -m 6 --temperature 0 < <(printf %s "sang songs")
same "--config defaults to config.json next to the checkpoint" -p "the" -m 6 --temperature 0 \
    -- -p "the" -m 6 --temperature 0 --config "$TMP/run/config.json"

# the context limit: a clear note on stderr, exit 0, no wrap
expect 0 "note: stopped after [0-9]+ of 100 new tokens: the model's context limit is max_seq_len 32" -- \
    "${G[@]}" -p "the cat sat" -m 100 --no-eos --temperature 0

# bad input: one error line, non-zero exit
long=$(printf 'the cat sat on a mat %.0s' $(seq 1 10))
expect 2 "the prompt is [0-9]+ tokens, more than the model's max_seq_len 32" -- "${G[@]}" -p "$long"
expect 2 "--prompt: expected a value, got an empty string" -- "${G[@]}" -p ""
n=$("$BIN" "${G[@]}" -p - </dev/null 2>&1 >/dev/null | grep -c "^hermes-llm: error: generate: the prompt is empty$")
"$BIN" "${G[@]}" -p - </dev/null >/dev/null 2>&1; rc=$?
if [ "$n" -eq 1 ] && [ $rc -eq 2 ]; then PASSES=$((PASSES + 1)); else
    echo "FAIL: empty prompt on stdin: exit $rc, $n error lines"; FAILS=$((FAILS + 1)); fi

sed 's/"hidden_size": 32/"hidden_size": 64/' "$TMP/cfg.json" > "$TMP/wide.json"
sed 's/"use_bias": true/"use_bias": false/' "$TMP/cfg.json" > "$TMP/nobias.json"
sed 's/"num_layers": 1/"num_layers": 2/' "$TMP/cfg.json" > "$TMP/deep.json"
sed 's/"tie_embeddings": true/"tie_embeddings": false/' "$TMP/cfg.json" > "$TMP/untied.json"
sed 's/"vocab_size": 300/"vocab_size": 280/' "$TMP/cfg.json" > "$TMP/v280.json"
expect 1 "checkpoint does not match .*wide.json: .*'embedding.weight': expected shape \[300, 64\], got \[300, 32\]" -- \
    "${G[@]}" -p "the" --config "$TMP/wide.json"
one_line_error "${G[@]}" -p "the" --config "$TMP/wide.json"
expect 1 "checkpoint does not match .*nobias.json: .*tensor 'layers.0.attention.q_proj.bias' is not part of this model" -- \
    "${G[@]}" -p "the" --config "$TMP/nobias.json"
expect 1 "checkpoint does not match .*deep.json: .*layers.1" -- "${G[@]}" -p "the" --config "$TMP/deep.json"
expect 1 "checkpoint does not match .*untied.json: .*lm_head.weight" -- "${G[@]}" -p "the" --config "$TMP/untied.json"
one_line_error "${G[@]}" -p "the" --config "$TMP/untied.json"
expect 1 "tokenizer .*tok280.json has 280 tokens but .*config.json says vocab_size 300" -- \
    generate -c "$CK" -t "$TMP/tok280.json" -p "the"
one_line_error generate -c "$CK" -t "$TMP/tok280.json" -p "the"
expect 1 "checkpoint does not match .*v280.json: .*embedding.weight" -- \
    generate -c "$CK" -t "$TMP/tok280.json" -p "the" --config "$TMP/v280.json"
expect 1 "nope.safetensors: cannot open" -- generate -c "$TMP/run/nope.safetensors" -t "$TMP/tok.json" -p "the"
one_line_error generate -c "$TMP/run/nope.safetensors" -t "$TMP/tok.json" -p "the"
expect 1 "nope.json: cannot open" -- "${G[@]}" -p "the" --config "$TMP/nope.json"
expect 1 "no-tok.json: cannot open" -- generate -c "$CK" -t "$TMP/no-tok.json" -p "the"
mkdir -p "$TMP/alone" && cp "$CK" "$TMP/alone/w.safetensors"
expect 1 "alone/config.json: cannot open" -- generate -c "$TMP/alone/w.safetensors" -t "$TMP/tok.json" -p "the"
expect 1 "corpus.txt" -- generate -c "$TMP/corpus.txt" -t "$TMP/tok.json" -p "the" --config "$TMP/run/config.json"
one_line_error generate -c "$TMP/corpus.txt" -t "$TMP/tok.json" -p "the" --config "$TMP/run/config.json"
expect 2 "--top-p: expected a number in" -- "${G[@]}" -p "the" --top-p 0
expect 2 "--temperature: expected a number in" -- "${G[@]}" -p "the" --temperature -1
expect 2 "--max-tokens: expected an integer in" -- "${G[@]}" -p "the" -m 0
expect 2 "--repetition-penalty: expected a number in" -- "${G[@]}" -p "the" --repetition-penalty 0
expect 2 "--top-k: expected an integer, got 'x'" -- "${G[@]}" -p "the" --top-k x
finish
