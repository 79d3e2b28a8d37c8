#!/usr/bin/env bash
# The README's quickstart: install what is missing, build, then run the main job end to end on
# the default corpus (Debian's fortunes package).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
scripts/build.sh
BIN=build/hermes-llm
OUT=${OUT:-out/quickstart}
mkdir -p "$OUT"
scripts/fortunes-corpus.sh "$OUT/corpus"
"$BIN" info -m tiny
