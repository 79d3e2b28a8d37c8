# lib-serve.sh - helpers for the serve tests (sourced after lib.sh): start a server on a free
# port, call it with curl, check statuses and OpenAI error bodies, wait for events (never for time).
command -v curl >/dev/null && command -v jq >/dev/null ||
    { echo "SKIPPED: curl and jq are needed (scripts/setup-deps.sh installs them)"; exit 77; }

SERVERS=()
trap 'for p in "${SERVERS[@]}"; do kill -KILL "$p" 2>/dev/null; done; rm -rf "$TMP"' EXIT

# start_server LOG CMD...: run CMD (port 0) in the background, its stderr in LOG, until it prints
# its address; sets SPID and URL. Waits as long as loading takes, while the process lives.
start_server() {
    local log=$1 port=""
    shift
    "$@" 2>"$log" &
    SPID=$!
    SERVERS+=("$SPID")
    while [ -z "$port" ]; do
        if ! kill -0 "$SPID" 2>/dev/null; then
            echo "FAIL: the server exited before listening:"; tail -5 "$log"; exit 1
        fi
        sleep 0.1
        port=$(sed -n 's|^serve: listening on http://[^ ]*:\([0-9]*\) .*|\1|p' "$log")
    done
    URL="http://127.0.0.1:$port"
}

# stop_server: SIGTERM, then the exit status in SRC
stop_server() {
    kill -TERM "$SPID"
    wait "$SPID"
    SRC=$?
}

# call METHOD PATH [BODY [curl args...]] (BODY "" for none): STATUS, the body in $TMP/body, headers in $TMP/headers
call() {
    local method=$1 path=$2 body=${3-}
    shift 3 2>/dev/null || shift $#
    local data=()
    [ -n "$body" ] && data=(--data-binary "$body" -H "Content-Type: application/json")
    STATUS=$(curl -s -X "$method" -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' "${data[@]}" \
        "$@" "$URL$path")
}

ok() { PASSES=$((PASSES + 1)); }
bad() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }

# expect_status CODE DESCRIPTION: the last call's status
expect_status() {
    if [ "$STATUS" = "$1" ]; then ok; else bad "$2: status $STATUS, expected $1: $(head -c 300 "$TMP/body")"; fi
}

# expect_error CODE TYPE PARAM DESCRIPTION: status and OpenAI's error body (PARAM "null" for none)
expect_error() {
    expect_status "$1" "$4"
    local got
    got=$(jq -r '[.error.type, (.error.param // "null"), (.error.message | length > 0),
                  (.error | has("code"))] | join(" ")' "$TMP/body" 2>/dev/null)
    if [ "$got" = "$2 $3 true true" ]; then ok; else bad "$4: error body '$(cat "$TMP/body")'"; fi
}

# alive: the server still answers
alive() {
    local s=$STATUS
    call GET /health
    [ "$STATUS" = 200 ] && ok || bad "the server stopped answering (after: $1)"
    STATUS=$s
}

# wait_for FILE PATTERN: until FILE matches PATTERN (while curl or the server writes it)
wait_for() {
    until grep -q -- "$2" "$1" 2>/dev/null; do sleep 0.05; done
}

# sse_text FILE: the concatenated text of an SSE stream (chat deltas or completion texts)
sse_text() {
    sed -n 's/^data: //p' "$1" | grep -v '^\[DONE\]$' |
        jq -j '.choices[0] | select(. != null) | (.delta.content // .text // "")'
}
