#!/usr/bin/env bash
# scripts/gpu/check.sh - the one command to run on a GPU machine for the CUDA backend (issue 8):
# shows the GPU, builds with CUDA for this GPU's architecture (plus sm_80 and sm_90), runs every
# CUDA test and prints a summary. With --prebuilt it runs what scripts/gpu/bundle.sh built
# (through scripts/gpu/remote.sh) and skips the build and the CPU suite. On a GPU machine a skipped GPU test is a failure (it means the
# backend could not start), so this exits non-zero unless every CUDA test ran and passed.
#
#   scripts/gpu/check.sh [--quick] [--bench] [--prebuilt]
#     --quick   HM_CURVE_STEPS=10 (shorter training-curve test)
#     --prebuilt  use the binaries in $BUILD_DIR as they are (no cmake, no ctest)
#     --bench   also run scripts/bench/train_gpu --quick afterwards
# Environment: BUILD_DIR (default build-gpu), HM_CUDA_DEVICE (default 0), JOBS (default nproc),
#   TEST_TIMEOUT (seconds per test, default 300), LOG_DIR (default $OUT/gpu-check when OUT is set,
#   else $BUILD_DIR/gpu-check).
# Logs: $LOG_DIR/<test>.log
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD_DIR:-build-gpu}
jobs=${JOBS:-$(nproc)}
quick=0
bench=0
prebuilt=0
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    --bench) bench=1 ;;
    --prebuilt) prebuilt=1 ;;
    *) echo "gpu-check: unknown option '$a'" >&2; exit 2 ;;
  esac
done

echo "== GPU"
if ! nvidia-smi --query-gpu=index,name,compute_cap,memory.total,driver_version --format=csv; then
  echo "gpu-check: nvidia-smi failed: no usable GPU on this machine" >&2
  exit 1
fi
cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
archs="80-real;90-real;90-virtual"
case ";$archs;" in *";$cap-real;"*) ;; *) archs="$archs;$cap-real" ;; esac

# A bare GPU machine (the lent H200) has CUDA but not OpenBLAS, Jansson, zstd or cmocka, and no
# registry to fetch them: there, run what scripts/gpu/bundle.sh built here instead of failing.
if [ $prebuilt = 0 ] && ! pkg-config --exists openblas jansson libzstd cmocka 2>/dev/null; then
  if [ -f .gpu/bundle.tgz ]; then
    echo "gpu-check: OpenBLAS/Jansson/zstd/cmocka missing here: using the bundle (.gpu/bundle.tgz)"
    exec scripts/gpu/remote.sh scripts/gpu/check.sh --prebuilt "$@"
  fi
  echo "gpu-check: cannot build here: OpenBLAS, Jansson, zstd or cmocka is missing (pkg-config)." >&2
  echo "  Build on a machine that has them with scripts/gpu/bundle.sh, carry .gpu, and run" >&2
  echo "  scripts/gpu/check.sh again (it then uses the bundle), or install them and retry." >&2
  exit 2
fi

if [ $prebuilt = 0 ]; then
echo "== build ($build, CUDA architectures $archs)"
if ! cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHM_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=$archs" >/dev/null; then
  echo "gpu-check: cmake configure failed" >&2
  exit 1
fi
if ! cmake --build "$build" -j "$jobs" 2>&1 | tail -n 20; then
  echo "gpu-check: build failed" >&2
  exit 1
fi
fi

logs=${LOG_DIR:-${OUT:+$OUT/gpu-check}}   # under $OUT on a lent machine: the logs come back
logs=${logs:-$build/gpu-check}
mkdir -p "$logs"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( jobs < 8 ? jobs : 8 ))}
export CMOCKA_MESSAGE_OUTPUT=stdout
[ $quick = 1 ] && export HM_CURVE_STEPS=10

declare -a names results times
run() { # name command...
  local name=$1; shift
  local t0=$(date +%s)
  echo "== $name"
  timeout -k 5 "${TEST_TIMEOUT:-300}" "$@" >"$logs/$name.log" 2>&1
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  local r
  case $rc in
    0) r=PASS ;;
    124|137) r="FAIL (timed out)" ;;
    77) r="FAIL (skipped: $(grep -m1 SKIPPED "$logs/$name.log"))" ;;
    *) r="FAIL (exit $rc)" ;;
  esac
  grep -E "^\[  (FAILED|PASSED)|rel err|cuda\)|training curve|greedy|SKIPPED|error|FAIL|^[0-9]\. |passed" "$logs/$name.log" | tail -n 60
  names+=("$name"); results+=("$r"); times+=("${dt}s")
}

run test-cuda-host "$build/tests/test-cuda-host"
run test-cuda-ops "$build/tests/test-cuda-ops"
run test-cuda-model "$build/tests/test-cuda-model"
run nccl-launch env BUILD_DIR="$build" scripts/gpu/nccl-launch.sh
# The rest of the suite with the CUDA build (CPU tests must still pass when CUDA is linked in).
[ $prebuilt = 1 ] || run ctest-all bash -c "cd '$build' && ctest --output-on-failure -j '$jobs' -LE cuda"

echo
echo "== summary (logs in $logs/)"
fail=0
for i in "${!names[@]}"; do
  printf '  %-18s %-8s %s\n' "${names[$i]}" "${times[$i]}" "${results[$i]}"
  [ "${results[$i]}" = PASS ] || fail=1
done
if [ $bench = 1 ]; then
  echo "== benchmark"
  # No overall limit here: train_gpu limits each PyTorch run itself (TORCH_TIMEOUT), and the two
  # cold torch.compile runs must not share one.
  PREBUILT=$prebuilt BUILD_DIR="$build" scripts/bench/train_gpu --quick 2>&1 |
    tee "$logs/bench.log" || fail=1
fi
if [ $fail = 0 ]; then echo "gpu-check: all CUDA tests passed"; else echo "gpu-check: FAILURES above"; fi
exit $fail
