#!/usr/bin/env bash
# scripts/gpu/remote.sh CMD... - on the GPU machine: unpack .gpu/bundle.tgz (scripts/gpu/bundle.sh)
# into build-gpu/, put its libraries and the machine's cuBLAS/NCCL on the library path, make the
# build's absolute source path (fixtures, HM_CLI_BIN) resolve here, then run CMD.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
tar -xzf .gpu/bundle.tgz -C "$root" || { echo "remote: no .gpu/bundle.tgz (carry .gpu)" >&2; exit 1; }
libdirs="$root/lib"
for name in libcublasLt.so.13 libnccl.so.2; do
  f=$(find /usr/local /usr/lib /opt -name "$name" 2>/dev/null | head -n 1)
  [ -n "$f" ] && libdirs="$libdirs:$(dirname "$f")" || echo "remote: $name not found" >&2
done
export LD_LIBRARY_PATH="$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# The tests were compiled with HM_SOURCE_DIR=<where bundle.sh ran>: point it here.
src=$(cat "$root/build-gpu/source-dir")
if [ -n "$src" ] && [ "$src" != "$root" ] && [ ! -e "$src" ]; then
  mkdir -p "$(dirname "$src")" && ln -s "$root" "$src"
fi
exec "$@"
