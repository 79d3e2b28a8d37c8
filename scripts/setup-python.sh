#!/usr/bin/env bash
# Installs the Python packages used only by reference tests and benchmarks (never at run time):
# HF tokenizers. PyTorch is installed on demand by the scripts that need it.
set -uo pipefail
python3 -c "import tokenizers" 2>/dev/null && exit 0
python3 -m pip install -q tokenizers 2>/dev/null || python3 -m pip install -q --break-system-packages tokenizers
