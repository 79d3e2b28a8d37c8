# lib-serve.sh - helpers for the serve tests (sourced after lib.sh): start a server on a free
# port, call it with curl, check statuses and OpenAI error bodies, wait for events (never for time).
command -v curl >/dev/null && command -v jq >/dev/null ||
    { echo "SKIPPED: curl and jq are needed (scripts/setup-deps.sh installs them)"; exit 77; }

SERVERS=()
trap 'for p in "${SERVERS[@]}"; do kill -KILL "$p" 2>/dev/null; done; rm -rf "$TMP"' EXIT

# start_server LOG CMD...: run CMD (port 0) in the background, its stderr in LOG, until it prints
# its address; sets SPID, URL and LOG. Waits as long as loading takes, while the process lives.
start_server() {
    local log=$1 port=""
    shift
    "$@" 2>"$log" &
    SPID=$!
    LOG=$log
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

# wait_for FILE PATTERN: until FILE matches PATTERN (while curl or the server writes it); a
# generous bound only turns a hang into a failure
wait_for() {
    local i
    for i in $(seq 1 3000); do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "FAIL: $1 never matched /$2/:"; tail -3 "$1"; exit 1
}

# sse_text FILE: the concatenated text of an SSE stream (chat deltas or completion texts)
sse_text() {
    sed -n 's/^data: //p' "$1" | grep -v '^\[DONE\]$' |
        jq -j '.choices[0] | select(. != null) | (.delta.content // .text // "")'
}

# check_errors MODEL: every 400/404/405/413 with OpenAI's error body, the server answering after
# each (the server's body limit must be under 5000 bytes and its context under 400 tokens)
check_errors() {
    M='"messages": [{"role": "user", "content": "x"}]'
    call POST /v1/chat/completions '{"messages": [' ; expect_error 400 invalid_request_error null "malformed JSON"; alive json
    call POST /v1/chat/completions '{"messages": "hi"}'; expect_error 400 invalid_request_error messages "messages a string"
    call POST /v1/chat/completions "{$M, \"n\": 2}"; expect_error 400 invalid_request_error n "n = 2"
    call POST /v1/chat/completions "{$M, \"temperature\": \"hot\"}"; expect_error 400 invalid_request_error temperature "temperature a string"
    call POST /v1/chat/completions "{$M, \"max_tokens\": 0}"; expect_error 400 invalid_request_error max_tokens "max_tokens 0"
    call POST /v1/completions '{"prompt": 5}'; expect_error 400 invalid_request_error prompt "prompt a number"
    call POST /v1/completions "{\"prompt\": \"$(printf 'the cat %.0s' $(seq 1 200))\"}"
    expect_error 400 invalid_request_error prompt "prompt longer than the context"; alive 400
    call POST /v1/chat/completions "{$M, \"model\": \"gpt-4\"}"; expect_error 404 invalid_request_error model "unknown model"
    [ "$(jq -r .error.code "$TMP/body")" = model_not_found ] && ok || bad "unknown model code"
    call GET /v1/models/gpt-4; expect_error 404 invalid_request_error model "unknown model (GET)"
    call GET /v2/nothing; expect_error 404 invalid_request_error null "unknown route"; alive 404
    call GET /v1/chat/completions; expect_error 405 invalid_request_error null "GET on chat"
    grep -qi '^Allow: POST' "$TMP/headers" && ok || bad "405 without Allow: POST"
    call DELETE /v1/models; expect_error 405 invalid_request_error null "DELETE on models"; alive 405
    big=$(printf '{"prompt": "%05000d"}' 0)
    call POST /v1/completions "$big"; expect_error 413 invalid_request_error null "body over the limit"; alive 413
    call POST /v1/completions "$big" -H "Transfer-Encoding: chunked"
    expect_error 413 invalid_request_error null "chunked body over the limit"; alive "413 chunked"
    call POST /v1/completions "{\"model\": \"$1\", \"prompt\": \"the\", \"max_tokens\": 1}"
    expect_status 200 "the server's own model name"
}

# check_dropped_client REQUEST: two streams of the same completion REQUEST (a JSON object without
# "stream"); one client leaves after its first event; the other's text and count are those of
# the request run alone, and the server logs the dropped one as 499
check_dropped_client() {
    local rq d k
    rq=$(jq -c '. + {stream: true, stream_options: {include_usage: true}}' <<<"$1")
    curl -sN "$URL/v1/completions" -d "$rq" > "$TMP/drop.sse" & d=$!
    curl -sN "$URL/v1/completions" -d "$rq" > "$TMP/keep.sse" & k=$!
    wait_for "$TMP/drop.sse" '^data: '
    wait_for "$TMP/keep.sse" '^data: '
    kill "$d"; wait "$d" 2>/dev/null
    wait "$k"
    call POST /v1/completions "$1"
    [ "$(sse_text "$TMP/keep.sse")" = "$(jq -r '.choices[0].text' "$TMP/body")" ] && ok ||
        bad "the other stream's text changed when a client dropped"
    grep -q "\"completion_tokens\":$(jq .usage.completion_tokens "$TMP/body")," "$TMP/keep.sse" &&
        grep -q '^data: \[DONE\]' "$TMP/keep.sse" && ok ||
        bad "the other stream did not finish: $(tail -3 "$TMP/keep.sse")"
    wait_for "$LOG" '^serve: POST /v1/completions 499 '
    ok
}

# check_drain REQUEST: SIGTERM while a stream of REQUEST (as above) is in flight: a request on a
# connection opened before gets 503, the stream finishes with [DONE], the server exits 0
check_drain() {
    local rq c line rc
    rq=$(jq -c '. + {stream: true}' <<<"$1")
    exec 3<>"/dev/tcp/127.0.0.1/${URL##*:}" # a kept-alive connection, opened before the signal
    curl -sN "$URL/v1/completions" -d "$rq" > "$TMP/inflight.sse" & c=$!
    wait_for "$TMP/inflight.sse" '^data: '
    kill -TERM "$SPID"
    wait_for "$LOG" '^serve: draining'
    printf 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n' >&3
    read -r -t 60 line <&3
    [[ "$line" == "HTTP/1.1 503"* ]] && ok || bad "a request while draining got '$line'"
    exec 3<&-
    wait "$c"
    grep -q '"finish_reason":"length"' "$TMP/inflight.sse" &&
        [ "$(grep '^data: ' "$TMP/inflight.sse" | tail -1)" = "data: [DONE]" ] &&
        ok || bad "the stream in flight did not finish: $(tail -2 "$TMP/inflight.sse")"
    wait "$SPID"; rc=$?
    [ "$rc" = 0 ] && ok || bad "SIGTERM with a request in flight: exit $rc"
}
