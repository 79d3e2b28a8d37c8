#!/usr/bin/env bash
# scripts/gpu/device-run.sh [STAGES] - the one prepared call on a lent GPU machine (issue 18, part 4).
# Run from the repository root there, with the bundle that scripts/gpu/bundle.sh made here carried
# along (.gpu/bundle.tgz: the lent machine has CUDA, PyTorch and compute-sanitizer but not OpenBLAS,
# Jansson, zstd or cmocka). With the device tool:
#   run(command="bash scripts/gpu/device-run.sh", carry=[".gpu"], timeout_s=420)
# STAGES (default all, in this order, most important first; name some to re-run only those):
#   info      nvidia-smi, driver, torch version, compute-sanitizer version
#   tests     test-cuda-host, test-cuda-ops (flash vs reference included), test-cuda-model (curves)
#   sanitize  compute-sanitizer memcheck on test-cuda-ops, racecheck on the flash-attention cases
#   nccl      scripts/gpu/nccl-launch.sh: --num-gpus 1 == a plain run; two ranks sharing the GPU
#   peak      the bf16 GEMM rate and the copy bandwidth through PyTorch (the ceilings for MFU)
#   bench     bench-train-gpu gpt2-small (vocab 50257 and 50304) and llama-small (kernel by kernel
#             and as CUDA graphs), B 16, T 1024, bf16
#   torch     the PyTorch baseline (torch.compile, bf16 autocast, flash SDPA, fused AdamW) for the
#             same two presets, each with its own timeout (a cold compile is most of it)
# Every stage has its own timeout and the whole run a deadline (DEADLINE seconds, default 360):
# a first call costs about 2 minutes of start plus 6 of run, which leaves a session's 15 minutes
# room for a second, fresh call (after fixes) of the stages that failed or were skipped (summary
# lines SKIP), e.g. `DEADLINE=240 bash scripts/gpu/device-run.sh torch`.
# Logs: $OUT/summary.txt and $OUT/logs.tgz (the tool brings back at most 8 files), or ./device-out
# when OUT is unset.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-$PWD/device-out}
logs=$out/logs
mkdir -p "$logs"
summary=$out/summary.txt
: >"$summary"
stages=${*:-info tests sanitize nccl peak bench torch}
t_start=$(date +%s)
deadline=$((t_start + ${DEADLINE:-360}))
build=build-gpu

say() { echo "$*" | tee -a "$summary"; }
# step NAME LIMIT COMMAND...: runs within min(LIMIT, time left), logs to $logs/NAME.log
step() {
  local name=$1 limit=$2; shift 2
  local left=$((deadline - $(date +%s)))
  if [ "$left" -lt 10 ]; then say "SKIP  $name (deadline reached)"; return 1; fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$(date +%s)
  timeout -k 5 "$limit" "$@" >"$logs/$name.log" 2>&1
  local rc=$? dt=$(( $(date +%s) - t0 ))
  case $rc in
    0) say "PASS  $name (${dt}s)" ;;
    124|137) say "FAIL  $name: timed out after ${limit}s" ;;
    77) say "FAIL  $name: skipped ($(grep -m1 SKIPPED "$logs/$name.log"))" ;;
    *) say "FAIL  $name: exit $rc (${dt}s)" ;;
  esac
  return $rc
}
finish() {
  say "total $(( $(date +%s) - t_start ))s"
  tar -C "$out" -czf "$out/logs.tgz" logs && rm -rf "$logs"
}
trap finish EXIT

if [ ! -f .gpu/bundle.tgz ]; then
  say "FAIL  no .gpu/bundle.tgz: run scripts/gpu/bundle.sh here first and carry .gpu"
  exit 1
fi
# remote.sh unpacks the bundle and sets the library path; every program below runs through it.
R=scripts/gpu/remote.sh
export OMP_NUM_THREADS=8 CMOCKA_MESSAGE_OUTPUT=stdout PYTHONUNBUFFERED=1

for s in $stages; do
  case $s in
  info)
    step info 30 bash -c 'nvidia-smi; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv;
      python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))";
      compute-sanitizer --version | tail -1; date -u'
    grep -m1 -E "H200|H100|A100" "$logs/info.log" >>"$summary" ;;
  tests)
    step test-cuda-host 30 $R $build/tests/test-cuda-host
    step test-cuda-ops 120 $R $build/tests/test-cuda-ops
    grep -E "flash_|rel err" "$logs/test-cuda-ops.log" | grep -E "flash_|attention" >>"$summary"
    step test-cuda-model 200 $R $build/tests/test-cuda-model
    grep -E "curve|rel" "$logs/test-cuda-model.log" | tail -n 6 >>"$summary" ;;
  sanitize)
    step memcheck-ops 150 $R compute-sanitizer --tool memcheck --error-exitcode 9 $build/tests/test-cuda-ops
    grep -m3 "ERROR SUMMARY\|Invalid" "$logs/memcheck-ops.log" >>"$summary"
    step racecheck-flash 90 env HM_TEST_OP=flash $R compute-sanitizer --tool racecheck --error-exitcode 9 \
      $build/tests/test-cuda-ops
    grep -m3 "RACECHECK SUMMARY\|hazard" "$logs/racecheck-flash.log" >>"$summary" ;;
  nccl)
    step nccl-launch 240 env SHARED_TIMEOUT=45 RUN_TIMEOUT=90 BUILD_DIR=$build $R scripts/gpu/nccl-launch.sh
    grep -E "^[0-9]\. |FAIL|passed" "$logs/nccl-launch.log" >>"$summary" ;;
  peak)
    step peak 60 python3 -c '
import torch
n = 8192; a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
for _ in range(3): a @ b
s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
s.record(); [a @ b for _ in range(10)]; e.record(); torch.cuda.synchronize()
print(f"PEAK gemm_bf16_tflops={2 * n**3 * 10 / (s.elapsed_time(e) / 1e3) / 1e12:.0f}")
x = torch.empty(2**31, device="cuda", dtype=torch.uint8); y = torch.empty_like(x)
for _ in range(3): y.copy_(x)
s.record(); [y.copy_(x) for _ in range(10)]; e.record(); torch.cuda.synchronize()
print(f"PEAK copy_tb_s={2 * x.numel() * 10 / (s.elapsed_time(e) / 1e3) / 1e12:.2f} (read + write)")'
    grep PEAK "$logs/peak.log" >>"$summary" ;;
  bench)
    # gpt2-small at vocab 50257 and at 50304 (llm.c's padding): the difference is the cost of
    # 2-byte-aligned logit rows, which decides whether the LM head gets padded (docs/performance.md).
    # The last run replays the step as CUDA graphs (HM_CUDA_GRAPH=1) against the one before it.
    for run in "gpt2-small 50257 0" "gpt2-small 50304 0" "llama-small 32000 0" "llama-small 32000 1"; do
      set -- $run
      step "bench-$1-$2-graph$3" 90 env HM_CUDA_GRAPH=$3 $R $build/tests/bench-train-gpu "$1" 16 1024 "$2" 20 \
        cuda:0 bf16
      sed -n "s/^RESULT/RESULT graphs=$3/p" "$logs/bench-$1-$2-graph$3.log" >>"$summary"
    done ;;
  torch)
    for run in "gpt2-small 50257" "llama-small 32000"; do
      set -- $run
      step "torch-$1" 180 python3 scripts/bench/train_gpu_torch.py "configs/$1.json" 16 1024 "$2" 20
      grep -h RESULT "$logs/torch-$1.log" >>"$summary"
    done ;;
  *) say "unknown stage '$s'" ;;
  esac
done
