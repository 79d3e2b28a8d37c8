#!/usr/bin/env bash
# tests/cuda/check-arch.sh LIB ELF_ARCHS PTX_ARCHS - the CUDA library carries machine code (SASS)
# for every architecture in ELF_ARCHS and PTX for every one in PTX_ARCHS (space-separated numbers,
# e.g. "80 90" and "90"), in every object that has device code. Runs without a GPU: it reads
# the fat binaries with cuobjdump. A build for sm_75 only (nvcc's default) fails here.
set -euo pipefail
lib=$1
elf_want=$2
ptx_want=$3
elf=$(cuobjdump --list-elf "$lib")
ptx=$(cuobjdump --list-ptx "$lib")
objects=$(grep -c "\.sm_" <<<"$elf" || true)
echo "$objects SASS images; architectures: $(grep -o 'sm_[0-9a-z]*' <<<"$elf" | sort | uniq -c | tr '\n' ' ')"
echo "PTX: $(grep -o 'sm_[0-9a-z]*' <<<"$ptx" | sort | uniq -c | tr '\n' ' ')"
fail=0
# Every object with device code must have each architecture: count per architecture must match.
n_first=""
for a in $elf_want; do
  n=$(grep -c "\.sm_$a\.cubin" <<<"$elf" || true)
  [ "$n" -gt 0 ] || { echo "FAIL: no sm_$a SASS in $lib"; fail=1; }
  if [ -n "$n_first" ] && [ "$n" != "$n_first" ]; then
    echo "FAIL: sm_$a SASS in $n objects, another architecture in $n_first"; fail=1
  fi
  n_first=$n
done
for a in $ptx_want; do
  grep -q "\.sm_$a\.ptx" <<<"$ptx" || { echo "FAIL: no compute_$a PTX in $lib"; fail=1; }
done
# Nothing else: an unexpected architecture means the default was not applied.
for a in $(grep -o '\.sm_[0-9a-z]*\.cubin' <<<"$elf" | sed 's/\.sm_\(.*\)\.cubin/\1/' | sort -u); do
  case " $elf_want " in *" $a "*) ;; *) echo "FAIL: unexpected sm_$a SASS"; fail=1 ;; esac
done
[ $fail = 0 ] && echo "cuda-arch: passed"
exit $fail
