#!/usr/bin/env bash
# main.sh - the top-level command line and `info`: help, version, every flag, every error path
# and the exit codes (0 ok, 2 usage).
. "$(dirname "$0")/lib.sh"

expect 0 "Usage: hermes-llm <command>" -- --help
expect 0 "train-tokenizer" -- -h
expect 0 "^hermes-llm [0-9]+\.[0-9]+\.[0-9]+" -- --version
expect 0 "^hermes-llm [0-9]" -- -V
expect 2 "Usage" --
expect 2 "unknown command 'frobnicate'" -- frobnicate
one_line_error frobnicate
for c in train-tokenizer train generate info; do
    expect 0 "Usage: hermes-llm $c" -- $c --help
    expect 2 "unknown option '--no-such-flag'" -- $c --no-such-flag
done

# info: defaults, every flag, and its errors
expect 0 "Model: gpt2-small" -- info
expect 0 "Parameters: 123634176 " -- info
expect 0 "Parameters: 163776 " -- info -m nano
expect 0 "Parameters: 920192 " -- info --model tiny
expect 0 "Parameters: 353724416 " -- info -m gpt2-medium
expect 0 "Parameters: 772625920 " -- info -m gpt2-large
expect 0 "Parameters: 235176960 " -- info -m llama-small
expect 0 "Vocab size +32000" -- info -m nano --vocab-size 32000
expect 0 "Parameters: 2147776 " -- info -m nano -v 32000
expect 0 "batch 8 x seq 64" -- info -m nano -b 8 --seq-len 64
expect 0 "batch 4 x seq 32" -- info -m nano --batch-size=4 --seq-len=32
expect 0 "\"parameters\": 163776," -- info -m nano --json
expect 0 "\"kv_cache_bf16\"" -- info -m nano --json
expect 0 "SwiGLU" -- info -m "$SRC/configs/llama-small.json"
expect 2 "unknown model 'gpt5' \(presets: nano, tiny, gpt2-small, gpt2-medium, gpt2-large, llama-nano, llama-tiny, llama-small" -- info -m gpt5
one_line_error info -m gpt5
expect 2 "--seq-len: expected an integer, got 'abc'" -- info --seq-len abc
expect 2 "--seq-len: expected an integer in" -- info --seq-len 0
expect 2 "--batch-size: expected an integer, got '1.5'" -- info -b 1.5
expect 2 "--model: missing value" -- info -m
expect 2 "--json takes no value" -- info --json=1
expect 2 "unexpected argument 'extra'" -- info extra
expect 2 "exceeds the model's max_seq_len 128" -- info -m nano --seq-len 256
expect 1 "/nonexistent.json: cannot open" -- info -m /nonexistent.json
printf '{"vocab_size": 10,' > "$TMP/bad.json"
expect 1 "bad.json: invalid JSON at line" -- info -m "$TMP/bad.json"
one_line_error info -m "$TMP/bad.json"
finish
