#!/usr/bin/env bash
# Installs what hermes-llm needs on Debian/Ubuntu, skipping what is already there.
# Idempotent and non-interactive. Run as root, or with sudo available.
set -euo pipefail

PKGS=(build-essential cmake pkg-config libopenblas-openmp-dev libcmocka-dev libjansson-dev
      zlib1g-dev libzstd-dev libopenmpi-dev openmpi-bin fortunes python3 python3-pip
      clang-14 libclang-rt-14-dev libomp-14-dev util-linux libmicrohttpd-dev libdnnl-dev curl jq)
# clang-14 + libclang-rt-14-dev (libFuzzer's runtime) + libomp-14-dev: scripts/fuzz.sh;
# util-linux: flock(1), used by tests/cli/harden.sh; libmicrohttpd-dev: the HTTP server of `serve`;
# libdnnl-dev (oneDNN): bf16 matmuls on the CPU's AMX / AVX512-BF16 units and the small f32 ones
# (optional; CMake warns);
# curl + jq: the serve tests (tests/cli/serve-*.sh) call the server and read its JSON

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "setup-deps: all packages present"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup-deps: installing ${missing[*]}"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
