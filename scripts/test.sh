#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, and runs every test twice,
# once in the release build (CUDA parts compiled when the toolkit is present) and once under
# AddressSanitizer + UndefinedBehaviorSanitizer, then every libFuzzer target for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
# Live parity checks need the reference Python packages; skipped with a message where pip cannot.
scripts/setup-python.sh || echo "test: python reference packages unavailable; live parity checks will be skipped"

jobs=$(nproc)
echo "== release build"
BUILD_DIR=build scripts/build.sh
(cd build && ctest --output-on-failure -j "$jobs")

echo "== sanitizer build (ASan + UBSan)"
BUILD_DIR=build-asan scripts/build.sh -DHM_SANITIZE=ON -DHM_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
# Open MPI's own allocations live until exit by design: suppressed (tests/lsan.supp), ours are not.
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j "$jobs" -LE slow)

echo "== fuzzing (libFuzzer + ASan + UBSan, bounded: FUZZ_SECONDS per target)"
# Every target in tests/fuzz runs on its seed corpus for a bounded time; a crash fails the run.
FUZZ_SECONDS=${FUZZ_SECONDS:-20} scripts/fuzz.sh
