#!/usr/bin/env bash
# Installs the Python packages used only by reference tests and benchmarks (never at run time):
# HF tokenizers; for the export/import checks (tests/reference/export_ref.py) also torch (the CPU
# is enough), transformers, safetensors, gguf and llama-cpp-python, which pip builds from source
# (about 10 minutes on 2 cores the first time, then pip's cache); gguf and numpy write the q8_0
# fixture (tests/reference/make_q8_0_fixture.py); scripts/bench/decode needs numpy, safetensors
# and llama-cpp-python. For `serve`: the official openai client (tests/reference/serve_ref.py)
# and llama-cpp-python's [server] extras, the benchmark peer (scripts/bench/serve). Missing ones
# only are installed.
set -uo pipefail
pip_install() {
    python3 -m pip install -q "$@" 2>/dev/null || python3 -m pip install -q --break-system-packages "$@"
}
want=()
for pair in tokenizers:tokenizers torch:torch transformers:transformers safetensors:safetensors \
            gguf:gguf numpy:numpy llama_cpp:llama-cpp-python openai:openai \
            starlette_context:llama-cpp-python[server]; do
    python3 -c "import ${pair%%:*}" 2>/dev/null || want+=("${pair#*:}")
done
[ ${#want[@]} -eq 0 ] && exit 0
echo "setup-python: installing ${want[*]}"
CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} pip_install "${want[@]}" ||
    echo "setup-python: could not install ${want[*]}; the checks that need them will be skipped"
