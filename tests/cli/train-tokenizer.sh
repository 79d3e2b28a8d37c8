#!/usr/bin/env bash
# train-tokenizer CLI contract: usage errors exit 2, runtime errors exit 1 with exactly one
# "hermes-llm: error: ..." line, and no output file is left behind on any error.
# Args: $1 = hermes-llm binary, $2 = source dir.
set -u
BIN=$1
SRC=$2
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# expect CODE ARGS...: run, check exit code, one error line, and no $T/out.json.
expect() {
    local want=$1; shift
    rm -f "$T/out.json"
    "$BIN" train-tokenizer "$@" >"$T/stdout" 2>"$T/stderr"
    local rc=$?
    [ "$rc" = "$want" ] || { cat "$T/stderr"; fail "'$*' exited $rc, wanted $want"; }
    [ "$(grep -c '^hermes-llm: error: ' "$T/stderr")" = 1 ] || { cat "$T/stderr"; fail "'$*': not one error line"; }
    [ ! -e "$T/out.json" ] || fail "'$*' left an output file"
    ls "$T" | grep -q '\.tmp\.' && fail "'$*' left a temp file"
    return 0
}

printf 'hello world\nhello there\n' > "$T/c.txt"
: > "$T/empty.txt"
printf '{"text": "a"}\n{"text": 5}\n' > "$T/bad.jsonl"
printf '{"text": "hello"}\n' > "$T/good.jsonl"

expect 2 -o "$T/out.json"                                       # no input
expect 2 -i "$T/c.txt"                                          # no output
expect 2 -i "$T/c.txt" -o "$T/out.json" --bogus                 # unknown flag
expect 2 -i "$T/c.txt" -o "$T/out.json" -v abc                  # not a number
expect 2 -i "$T/c.txt" -o "$T/out.json" -v 259                  # below 256 + 4 specials
expect 2 -i "$T/c.txt" -o "$T/out.json" --special-tokens '<a>,<b>,<a>'
grep -q "given twice" "$T/stderr" || fail "duplicate special token message"
expect 2 -i "$T/c.txt" -o "$T/out.json" --special-tokens 'a,,b'
expect 2 -i "$T/c.txt" -o "$T/out.json" --format xml
expect 1 -i "$T/missing.txt" -o "$T/out.json"
grep -q "missing.txt" "$T/stderr" || fail "unreadable file message names the file"
expect 1 -i "$T/empty.txt" -o "$T/out.json"
grep -q "empty" "$T/stderr" || fail "empty corpus message"
expect 1 -i "$T/bad.jsonl" -o "$T/out.json"
grep -q "bad.jsonl:2" "$T/stderr" || fail "JSONL error names file:line"
expect 1 -i "$T/c.txt" -o "$T/nodir/out.json"

# Success paths: text, JSONL, stdin, gzip; HF-style output with 4 specials.
"$BIN" train-tokenizer -i "$T/c.txt" "$T/good.jsonl" -o "$T/out.json" -v 270 --min-frequency 1 2>"$T/stderr" \
    || { cat "$T/stderr"; fail "training failed"; }
grep -q '"type": "BPE"' "$T/out.json" || fail "no BPE model in the output"
grep -q '"content": "<eos>"' "$T/out.json" || fail "no <eos> special token"
grep -q '"h e"' "$T/out.json" || fail "merges not in \"a b\" form"
printf 'hello hello\n' | "$BIN" train-tokenizer -i - -o "$T/stdin.json" -v 262 --special-tokens '<eos>' 2>/dev/null \
    || fail "stdin input"
if command -v gzip >/dev/null; then
    gzip -k "$T/c.txt"
    "$BIN" train-tokenizer -i "$T/c.txt" -o "$T/plain.json" -v 270 --min-frequency 1 2>/dev/null || fail "text input"
    "$BIN" train-tokenizer -i "$T/c.txt.gz" -o "$T/gz.json" -v 270 --min-frequency 1 2>/dev/null || fail "gzip input"
    cmp -s "$T/plain.json" "$T/gz.json" || fail "gzip and plain inputs give different tokenizers"
fi
"$BIN" train-tokenizer --help | grep -q -- "--vocab-size" || fail "--help"
echo "ok"
