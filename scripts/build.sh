#!/usr/bin/env bash
# Configures and builds hermes-llm into build/ (Release, CUDA/NCCL/MPI auto-detected).
# Extra arguments go to cmake, e.g. scripts/build.sh -DHM_CUDA=OFF
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)"
