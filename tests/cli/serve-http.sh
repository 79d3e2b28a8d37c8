#!/usr/bin/env bash
# serve-http.sh - the HTTP/API layer of `serve` with curl, over the engine's test double
# (tests/tools/hm-serve-fake: every request echoes its own prompt's tokens, so each output is
# known): the routes and OpenAI bodies, streaming, stop strings, every error status with its body
# (the server answering after each), 429 when the queue is full, a dropped client's slot freed
# without disturbing others, and SIGTERM: new requests 503, those in flight finish, exit 0.
# tests/cli/serve-e2e.sh runs the same kinds of checks against `hermes-llm serve` and a model.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-serve.sh"
FAKE=${HM_TEST_TOOLS:?}/hm-serve-fake

word_corpus 60 > "$TMP/corpus.txt"
"$BIN" train-tokenizer -i "$TMP/corpus.txt" -o "$TMP/tok.json" -v 300 >/dev/null 2>&1 ||
    { echo "FAIL: could not train the tokenizer"; exit 1; }
start_server "$TMP/log" "$FAKE" -t "$TMP/tok.json" --port 0 --max-body 4000

# ---- routes and bodies ------------------------------------------------------------------------
call GET /health; expect_status 200 "GET /health"
call GET /v1/models; expect_status 200 "GET /v1/models"
[ "$(jq -r '.object + " " + .data[0].id + " " + .data[0].object' "$TMP/body")" = "list fake model" ] && ok ||
    bad "models body: $(cat "$TMP/body")"
call GET /v1/models/fake; expect_status 200 "GET /v1/models/fake"

# a completion echoes the prompt's 4 tokens ("t" "he" " cat" " sat") cyclically: 6 tokens, length
call POST /v1/completions '{"model": "fake", "prompt": "the cat sat", "max_tokens": 6, "temperature": 0}'
expect_status 200 "completion"
[ "$(jq -r '.object + "|" + .choices[0].text + "|" + .choices[0].finish_reason' "$TMP/body")" = \
  "text_completion|the cat satthe|length" ] && ok || bad "completion body: $(cat "$TMP/body")"
[ "$(jq -r '.usage | "\(.prompt_tokens) \(.completion_tokens) \(.total_tokens)"' "$TMP/body")" = "4 6 10" ] &&
    ok || bad "completion usage: $(cat "$TMP/body")"

# stop strings: across a token boundary ("t sa" spans " cat" and " sat"), never sent, finish stop
call POST /v1/completions '{"prompt": "the cat sat", "max_tokens": 20, "stop": ["zzz", "t sa"]}'
[ "$(jq -r '.choices[0].text + "|" + .choices[0].finish_reason' "$TMP/body")" = "the ca|stop" ] && ok ||
    bad "stop string: $(cat "$TMP/body")"
curl -sN "$URL/v1/completions" -d '{"prompt": "the cat sat", "max_tokens": 20, "stop": "t sa", "stream": true}' \
    > "$TMP/stop.sse"
[ "$(sse_text "$TMP/stop.sse")" = "the ca" ] && ok || bad "streamed stop string: $(cat "$TMP/stop.sse")"
grep -q '"finish_reason":"stop"' "$TMP/stop.sse" && ok || bad "streamed stop: no finish_reason stop"

# a stream that ends before its first token (the echo starts with the stop token <|im_end|>)
curl -sN "$URL/v1/completions" -d '{"prompt": "<|im_end|> the", "stream": true}' > "$TMP/empty.sse"
[ "$(grep -c '^data: ' "$TMP/empty.sse")" = 3 ] && grep -q '"finish_reason":"stop"' "$TMP/empty.sse" &&
    [ "$(tail -2 "$TMP/empty.sse" | head -1)" = "data: [DONE]" ] && ok || bad "an empty stream: $(cat "$TMP/empty.sse")"
# ignore_eos (an extension): the stop token is generated like any other
call POST /v1/completions '{"prompt": "<|im_end|> the", "max_tokens": 3, "ignore_eos": true}'
[ "$(jq -r '"\(.usage.completion_tokens) " + .choices[0].finish_reason' "$TMP/body")" = "3 length" ] && ok ||
    bad "ignore_eos: $(cat "$TMP/body")"

# chat: the ChatML prompt is echoed up to its first <|im_end|>, a stop token (finish "stop")
CHAT='{"model": "fake", "messages": [{"role": "user", "content": "say cat"}]}'
call POST /v1/chat/completions "$CHAT"
expect_status 200 "chat"
[ "$(jq -r '.object + "|" + .choices[0].message.role + "|" + .choices[0].message.content + "|" + .choices[0].finish_reason' \
    "$TMP/body")" = "chat.completion|assistant|user
say cat|stop" ] && ok || bad "chat body: $(cat "$TMP/body")"
whole=$(jq -r '.choices[0].message.content' "$TMP/body")
usage=$(jq -c .usage "$TMP/body")

# streamed: role first, the same text, the finish chunk, usage when asked, then [DONE]
curl -sN "$URL/v1/chat/completions" -H "Content-Type: application/json" \
    -d '{"messages": [{"role": "user", "content": "say cat"}], "stream": true, "stream_options": {"include_usage": true}}' \
    > "$TMP/chat.sse"
grep -q '^Content-Type: text/event-stream' <(curl -sN -D - -o /dev/null "$URL/v1/chat/completions" \
    -d '{"messages": [{"role": "user", "content": "x"}], "stream": true}') && ok || bad "stream content type"
[ "$(sse_text "$TMP/chat.sse")" = "$whole" ] && ok || bad "streamed text differs: $(cat "$TMP/chat.sse")"
[ "$(sed -n 's/^data: //p' "$TMP/chat.sse" | head -1 | jq -r '.object + " " + .choices[0].delta.role')" = \
  "chat.completion.chunk assistant" ] && ok || bad "first chunk: $(head -1 "$TMP/chat.sse")"
[ "$(grep '^data: ' "$TMP/chat.sse" | tail -1)" = "data: [DONE]" ] && ok || bad "no final [DONE]"
[ "$(sed -n 's/^data: //p' "$TMP/chat.sse" | grep -v DONE | tail -1 | jq -c .usage)" = "$usage" ] && ok ||
    bad "usage chunk differs from the whole reply's $usage"

check_errors fake
stop_server
[ "$SRC" = 0 ] && ok || bad "the server exited $SRC after SIGTERM"
n_req=$(grep -c '^serve: [A-Z]* /' "$TMP/log")
[ "$n_req" -ge 29 ] && ok || bad "access log: $n_req lines"
grep -q '^serve: POST /v1/completions 200 prompt=4 completion=6 [0-9.]* ms$' "$TMP/log" && ok ||
    bad "access log line: $(grep 'completion=' "$TMP/log" | head -1)"

# ---- 401: --api-key ---------------------------------------------------------------------------
start_server "$TMP/log-key" "$FAKE" -t "$TMP/tok.json" --port 0 --api-key sk-test
call POST /v1/completions '{"prompt": "the"}'; expect_error 401 authentication_error null "no key"
call POST /v1/completions '{"prompt": "the"}' -H "Authorization: Bearer sk-tesT"; expect_error 401 authentication_error null "wrong key"
call GET /v1/models "" -H "Authorization: Bearer sk-test-longer"; expect_error 401 authentication_error null "longer key"
call GET /v1/models "" -H "Authorization: Bearer sk-test"; expect_status 200 "right key"
call GET /health; expect_status 200 "health needs no key"
stop_server

# ---- 429, and a dropped stream frees its slot: one slot, no queue ------------------------------
start_server "$TMP/log-busy" "$FAKE" -t "$TMP/tok.json" --port 0 --max-batch 1 --max-queue 0 --step-ms 20
curl -sN "$URL/v1/completions" -d '{"prompt": "the cat", "max_tokens": 100000, "stream": true}' > "$TMP/a.sse" &
A=$!
wait_for "$TMP/a.sse" '^data: '
call POST /v1/completions '{"prompt": "the"}'; expect_error 429 rate_limit_error null "queue full"
grep -qi '^Retry-After: [0-9]' "$TMP/headers" && ok || bad "429 without Retry-After"
kill "$A"; wait "$A" 2>/dev/null
call POST /v1/completions '{"prompt": "the", "max_tokens": 2}' # the slot is free again (cancelled)
while [ "$STATUS" = 429 ]; do sleep 0.05; call POST /v1/completions '{"prompt": "the", "max_tokens": 2}'; done
expect_status 200 "after the dropped client"
stop_server
grep -q '^serve: POST /v1/completions 499 ' "$TMP/log-busy" && ok || bad "the dropped stream is not logged 499"

# ---- a client dropped mid-stream does not disturb the others ----------------------------------
start_server "$TMP/log-drop" "$FAKE" -t "$TMP/tok.json" --port 0 --max-batch 4 --step-ms 5
check_dropped_client '{"prompt": "the cat sat on", "max_tokens": 300}'
stop_server

# ---- SIGTERM: stop accepting (503 on an open connection), finish the stream, exit 0 -------------
start_server "$TMP/log-term" "$FAKE" -t "$TMP/tok.json" --port 0 --step-ms 10
check_drain '{"prompt": "the cat", "max_tokens": 200}'
finish
