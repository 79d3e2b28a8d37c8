#!/usr/bin/env bash
# scripts/gpu/bundle.sh - package a CUDA build for a GPU machine that has the CUDA libraries
# (cudart, cuBLAS, NCCL) but not ours (OpenBLAS, Jansson, zstd, cmocka) and no package registry,
# such as the lent H100 (/work/.library/device). Builds build-gpu here (portable -march=x86-64-v3,
# sm_80 + sm_90, no MPI), then writes .gpu/bundle.tgz: the programs the GPU checks and benchmarks
# run, under their build-gpu/ paths, plus the non-CUDA shared libraries they load.
# On the GPU machine, scripts/gpu/remote.sh unpacks it and runs a command with the right paths.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=build-gpu
cmake -S . -B $build -DCMAKE_BUILD_TYPE=Release -DHM_CUDA=ON -DHM_NCCL=ON -DHM_MPI=OFF -DHM_NATIVE=OFF \
  -DCMAKE_C_FLAGS=-march=x86-64-v3 "-DCMAKE_CUDA_ARCHITECTURES=80-real;90-real;90-virtual" \
  ${CMAKE_LAUNCHERS:-} >/dev/null
mkdir -p $build
if ! cmake --build $build -j "$(nproc)" >$build/bundle-build.log 2>&1; then
  grep -E "error|Error" $build/bundle-build.log | head -n 30 >&2
  echo "gpu bundle: the build failed (log: $build/bundle-build.log); nothing was packed" >&2
  exit 1
fi
grep -E "warning" $build/bundle-build.log | head -n 30 || true # warnings are shown, not fatal

progs=(hermes-llm tests/bench-train-gpu tests/test-cuda-host tests/test-cuda-ops tests/test-cuda-model tests/hm-compare)
rm -rf .gpu && mkdir -p .gpu/stage/$build/tests .gpu/stage/lib
for p in "${progs[@]}"; do cp "$build/$p" ".gpu/stage/$build/$p"; done
# Every library outside the C runtime and outside CUDA's own (the GPU machine has those,
# and cuBLAS alone is larger than what may travel); cudart is small and pins our version.
for p in "${progs[@]}"; do ldd "$build/$p"; done | awk '$3 ~ /^\// {print $3}' | sort -u |
  grep -Ev '/(libc|libm|libdl|librt|libpthread|ld-linux[^/]*|libstdc\+\+|libgcc_s|libcublas|libcublasLt|libnccl)\.so' |
  while read -r lib; do cp -L "$lib" .gpu/stage/lib/; done
pwd > .gpu/stage/build-gpu/source-dir # the absolute path compiled into the tests
tar -C .gpu/stage -czf .gpu/bundle.tgz .
rm -rf .gpu/stage
echo "gpu bundle: .gpu/bundle.tgz ($(du -h .gpu/bundle.tgz | cut -f1)); carry .gpu, run scripts/gpu/remote.sh CMD"
