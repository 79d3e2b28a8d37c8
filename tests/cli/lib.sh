# lib.sh - shared helpers for the CLI tests (sourced, not run): expect exit codes and output.
BIN=${1:?usage: test.sh path/to/hermes-llm source-dir}
SRC=${2:-.}
FAILS=0
PASSES=0
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# expect CODE PATTERN -- ARGS...: run hermes-llm ARGS, require exit CODE and output matching PATTERN
expect() {
    local code=$1 pat=$2
    shift 3
    local out rc
    out=$("$BIN" "$@" 2>&1)
    rc=$?
    if [ "$rc" -ne "$code" ]; then
        echo "FAIL: hermes-llm $* exited $rc, expected $code"; echo "$out" | head -5
        FAILS=$((FAILS + 1)); return
    fi
    if [ -n "$pat" ] && ! grep -qE -- "$pat" <<<"$out"; then
        echo "FAIL: hermes-llm $*: output lacks /$pat/"; echo "$out" | head -5
        FAILS=$((FAILS + 1)); return
    fi
    PASSES=$((PASSES + 1))
}

# one_line_error ARGS...: the error must be exactly one 'hermes-llm: error:' line
one_line_error() {
    local n
    n=$("$BIN" "$@" 2>&1 >/dev/null | grep -c '^hermes-llm: error:')
    if [ "$n" -ne 1 ]; then
        echo "FAIL: hermes-llm $*: expected one error line, got $n"; FAILS=$((FAILS + 1))
    else
        PASSES=$((PASSES + 1))
    fi
}

# word_corpus N: N lines of 12 words from a small fixed vocabulary (a made-up corpus)
words=(the cat sat on a mat and dog ran to park while birds sang songs of summer rain)
word_corpus() {
    local line
    for i in $(seq 1 "$1"); do
        line=""
        for j in $(seq 1 12); do line+="${words[$(((i * 7 + j * 13 + i * j) % ${#words[@]}))]} "; done
        echo "$line."
    done
}

finish() {
    echo "$PASSES passed, $FAILS failed"
    [ "$FAILS" -eq 0 ]
}
