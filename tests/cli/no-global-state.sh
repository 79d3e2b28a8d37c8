#!/usr/bin/env bash
# no-global-state.sh - the library keeps no mutable state at file scope (or in function-level
# statics): everything lives in the objects callers hold, so two samplers, tokenizers or models
# in two threads never share anything. Constant tables are fine (every `const` that makes the
# variable itself read-only); the process-wide things below are allowed by name, with the reason.
# Scans every C/CUDA source under src/. Args: $1 = hermes-llm binary (unused), $2 = source dir.
set -u
SRC=${2:-.}/src
ALLOWED=(
    "util/interrupt.c:got_signal"      # the signal flag: a handler can only reach a global
    "parallel/launch.c:got_term"       # the launcher's SIGTERM flag, same reason
    "util/log.c:log_fn"                # process-wide log sink and level (hm_log_set, hermes.h)
    "util/log.c:log_user"
    "util/log.c:log_level"
    "util/alloc.c:n_allocs"            # process-wide allocation counter (atomic, hm_alloc_count)
    "core/plan.c:plans"                # plan ids (atomic): never reused in the process, so a backend
                                       # never replays a CUDA graph recorded for another graph
    "util/status.c:last_error"         # thread-local last error (hm_last_error)
    "backend/cpu/backend-cpu.c:warned" # warn once per process about a non-OpenMP OpenBLAS
    "backend/cpu/bf16.c:fast_paths"    # the tests' switch to the widening oracle (hm_cpu_bf16_set_fast)
    "backend/cpu/matmul-onednn.c:g"    # oneDNN's engine and the matmul primitives, made
                                       # once per shape for the process (oneDNN's own caches are
                                       # process-wide too); behind a mutex
    "backend/cuda/backend-cuda.cu:cuda_kernels" # filled once, identically, before first use
    "backend/cuda/backend-cuda.cu:cuda_iface"
    "cli/opts.c:pool"                  # the program's argv pool (the CLI parses once), not library
    "cli/opts.c:pool_used"
)
# One line per mutable declaration: path:line:name. A declaration is a line at column 0 (file
# scope) or a `static` line inside a function, with no '(' before its '=' or ';' (not a
# function), not a type declaration, and whose last '*' is not followed by a `const` (so the
# variable itself, not just what it points to, may change).
found=$(cd "$SRC" && find . -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' | sort |
    xargs awk '
    FNR == 1 { in_comment = 0 }
    {
        line = $0
        if (in_comment) { if (line ~ /\*\//) in_comment = 0; next }
        if (line ~ /^[ \t]*\/\*/ && line !~ /\*\//) { in_comment = 1; next }
        if (line ~ /^[ \t]*(\/\/|\/\*|\*|#)/) next
        sub(/[ \t]*\/\*.*\*\/[ \t]*/, "", line)
        file_scope = line ~ /^[A-Za-z_]/
        if (!file_scope && line !~ /^[ \t]+static[ \t]/) next
        if (line ~ /^(typedef|extern|return|else|case|default)[ \t:]/) next
        if (line ~ /^[ \t]*(struct|enum|union)[ \t]+[A-Za-z_0-9]+[ \t]*(\{.*)?;?[ \t]*$/) next
        if (line ~ /^(struct|enum|union)[ \t]*\{/) next
        head = line
        sub(/[=;].*/, "", head)
        if (line !~ /[=;]/ || head ~ /\(/) next
        if (head ~ /^[ \t]*(enum|struct|union)[ \t]*\{/) next
        # The variable is read-only when a const follows the last *, or there is no * and a const.
        nstar = split(head, parts, "*")
        last = parts[nstar]
        if ((nstar == 1 && head ~ /(^|[ \t])const[ \t]/) || last ~ /(^|[ \t])const([ \t]|$)/) next
        if (head ~ /constexpr/) next
        name = head
        sub(/[ \t]*(\[[^]]*\][ \t]*)*$/, "", name)
        sub(/.*[ \t*]/, "", name)
        if (name == "") next
        f = FILENAME
        sub(/^\.\//, "", f)
        print f ":" FNR ":" name
    }')
bad=0
while IFS= read -r hit; do
    [ -n "$hit" ] || continue
    key="${hit%%:*}:${hit##*:}"
    ok=0
    for a in "${ALLOWED[@]}"; do
        [ "$a" = "$key" ] && ok=1
    done
    if [ "$ok" = 0 ]; then
        echo "FAIL: src/$hit: mutable state outside an object (make it const, move it into the object that uses it, or allow it here with the reason)"
        bad=$((bad + 1))
    fi
done <<<"$found"
echo "$bad mutable globals outside the allow-list"
[ "$bad" -eq 0 ]
