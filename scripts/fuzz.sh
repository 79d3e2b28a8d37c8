#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz-*.c) with clang and runs each on its seed corpus
# (tests/fuzz/corpus/NAME, copied so the committed seeds stay small) for a bounded time.
#
#   scripts/fuzz.sh                  every target, FUZZ_SECONDS (20) each: what scripts/test.sh runs
#   FUZZ_RUNS=10000000 scripts/fuzz.sh config reader    a fixed number of executions instead
#   FUZZ_MAX_LEN=N overrides the per-target input size cap; FUZZ_TIMEOUT (60 s) is the limit for
#   one input (generous: a loaded shared machine slows the sanitized code many times over).
#
# Prints one "fuzz: NAME: N executions in S s, 0 crashes" line per target; exits 1 on the first
# crash, leak or timeout, leaving the input in $FUZZ_DIR/artifacts/ (make it a regression test).
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_DIR=${FUZZ_DIR:-build-fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
CC=${FUZZ_CC:-$(command -v clang-14 || command -v clang || true)}
if [ -z "$CC" ]; then
    echo "fuzz: clang not found (scripts/setup-deps.sh installs clang-14 and libclang-rt-14-dev)" >&2
    exit 1
fi
cmake -S . -B "$FUZZ_DIR" -DCMAKE_C_COMPILER="$CC" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DHM_FUZZ=ON -DHM_BUILD_TESTS=OFF -DHM_CUDA=OFF -DHM_MPI=OFF -DHM_NATIVE=OFF \
    ${FUZZ_CMAKE_ARGS:-} >/dev/null
mkdir -p "$FUZZ_DIR"
if ! cmake --build "$FUZZ_DIR" -j "$(nproc)" >"$FUZZ_DIR/build.log" 2>&1; then
    tail -n 30 "$FUZZ_DIR/build.log" >&2
    echo "fuzz: build failed (log $FUZZ_DIR/build.log)" >&2
    exit 1
fi

# Input size caps per target: big enough for every seed's structure, small enough to stay fast.
declare -A max_len=([config]=4096 [safetensors]=16384 [tokenizer-json]=8192
                    [bpe-roundtrip]=4096 [reader]=8192 [hf-config]=4096 [hf-index]=4096
                    [hf-names]=256 [chat-record]=4096 [token-cache]=1024 [api-request]=4096)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in tests/fuzz/fuzz-*.c; do n=$(basename "$f" .c); targets+=("${n#fuzz-}"); done
fi
mkdir -p "$FUZZ_DIR/artifacts" "$FUZZ_DIR/tmp"
for t in "${targets[@]}"; do
    corpus="$FUZZ_DIR/corpus/$t"
    mkdir -p "$corpus"
    cp -n tests/fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
    limit=(-max_total_time="$FUZZ_SECONDS")
    [ -n "${FUZZ_RUNS:-}" ] && limit=(-runs="$FUZZ_RUNS")
    log="$FUZZ_DIR/fuzz-$t.log"
    start=$(date +%s)
    if ! TMPDIR="$PWD/$FUZZ_DIR/tmp" ASAN_OPTIONS=detect_leaks=1 \
        "$FUZZ_DIR/tests/fuzz/fuzz-$t" "$corpus" tests/fuzz/corpus/"$t" "${limit[@]}" \
        -max_len="${FUZZ_MAX_LEN:-${max_len[$t]:-4096}}" -timeout="${FUZZ_TIMEOUT:-60}" -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$FUZZ_DIR/artifacts/$t-" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "fuzz: $t: FAILED (input in $FUZZ_DIR/artifacts/, log $log)" >&2
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    echo "fuzz: $t: ${runs:-?} executions in $(( $(date +%s) - start )) s, 0 crashes"
done
