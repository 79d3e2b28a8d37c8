#!/usr/bin/env bash
# chat.sh - chat data and chat models end to end: `train --format chat` (auto-detection, the
# start-up counts, skipped conversations), fine-tuning a base whose tokenizer lacks the ChatML
# tokens (they are added, the model grows), one clear error line and nothing written for every bad
# input, `generate --chat`, `chat` driven by a script (one message per line, a reply and an empty
# line each), and `chat` on a terminal through tmux: two turns, /reset, Ctrl-C mid-reply, Ctrl-D.
. "$(dirname "$0")/lib.sh"

word_corpus 120 > "$TMP/corpus.txt"
for i in $(seq 1 40); do
    w=${words[$((i % ${#words[@]}))]}
    sys=""; [ $((i % 3)) -eq 0 ] && sys='{"role": "system", "content": "Be brief."}, '
    echo "{\"messages\": [$sys{\"role\": \"user\", \"content\": \"say $w\"}, {\"role\": \"assistant\", \"content\": \"$w $w\"}]}"
done > "$TMP/chat.jsonl"
tiny_config 256 > "$TMP/cfg.json"
"$BIN" train-tokenizer -i "$TMP/corpus.txt" -o "$TMP/tok.json" -v 300 >/dev/null 2>&1 &&
"$BIN" train-tokenizer -i "$TMP/corpus.txt" -o "$TMP/old.json" -v 300 --special-tokens "<pad>,<bos>,<eos>,<unk>" \
    >/dev/null 2>&1 || { echo "FAIL: could not train the tokenizers"; exit 1; }
T=(--threads 1 -b 2 --seq-len 64 --max-steps 6 -m "$TMP/cfg.json")

# new tokenizers have the ChatML tokens right after the original four specials
if grep -q '"<|im_start|>":4' <(tr -d ' \n' < "$TMP/tok.json") && grep -q '"<|im_end|>":5' <(tr -d ' \n' < "$TMP/tok.json"); then
    PASSES=$((PASSES + 1)); else echo "FAIL: tok.json lacks <|im_start|>=4, <|im_end|>=5"; FAILS=$((FAILS + 1)); fi

# auto-detected chat data: the start-up lines count conversations, windows and trained tokens
expect 0 "Chat data \(train\): 40 conversations packed into [0-9]+ windows of 65 tokens; [0-9]+ assistant tokens" -- \
    train -t "$TMP/tok.json" -d "$TMP/chat.jsonl" -o "$TMP/run" "${T[@]}"
expect 0 "dropped [0-9]+ longer than a window of 33 tokens \(too-long conversations are dropped, never cut" -- \
    train -t "$TMP/tok.json" -d "$TMP/chat.jsonl" -o "$TMP/run-short" "${T[@]}" --seq-len 32 -b 1 --max-steps 1 \
    --format chat
CK="$TMP/run/weights.safetensors"

# a conversation without an assistant reply is skipped and counted
{ cat "$TMP/chat.jsonl"; echo '{"messages": [{"role": "user", "content": "no reply"}]}'; } > "$TMP/noreply.jsonl"
expect 0 "skipped 1 conversations without an assistant reply" -- \
    train -t "$TMP/tok.json" -d "$TMP/noreply.jsonl" -o "$TMP/run-noreply" "${T[@]}"

# bad input: one error line naming the file (and line), exit 1 or 2, no output folder left behind
bad() { # bad CODE PATTERN NAME -- train args...
    local code=$1 pat=$2 name=$3
    shift 4
    expect "$code" "$pat" -- train "$@" -o "$TMP/bad-$name" "${T[@]}"
    one_line_error train "$@" -o "$TMP/bad-$name" "${T[@]}"
    if [ -e "$TMP/bad-$name" ]; then echo "FAIL: $name: $TMP/bad-$name was left behind"; FAILS=$((FAILS + 1)); fi
}
printf '{"text": "plain"}\n' > "$TMP/nomsg.jsonl"
bad 1 "nomsg.jsonl:1: a plain record among chat records" nomsg -- -t "$TMP/tok.json" -d "$TMP/nomsg.jsonl" --format chat
{ head -2 "$TMP/chat.jsonl"; echo '{"text": "plain"}'; } > "$TMP/mixed.jsonl"
bad 1 "mixed.jsonl:3: a plain record among chat records" mixed -- -t "$TMP/tok.json" -d "$TMP/mixed.jsonl"
{ head -1 "$TMP/chat.jsonl"; echo '{"messages": [{"role": "tool", "content": "x"}]}'; } > "$TMP/role.jsonl"
bad 1 "role.jsonl:2: messages\[0\]: unknown role 'tool'" role -- -t "$TMP/tok.json" -d "$TMP/role.jsonl"
{ head -1 "$TMP/chat.jsonl"; echo '{"conversations": [{"from": "human", "value": ["x"]}]}'; } > "$TMP/content.jsonl"
bad 1 "content.jsonl:2: conversations\[0\]: \"value\" is not a string" content -- -t "$TMP/tok.json" -d "$TMP/content.jsonl"
bad 1 "tokenizer .*old.json has no <\|im_start\|> and <\|im_end\|> tokens" oldtok -- -t "$TMP/old.json" -d "$TMP/chat.jsonl"
bad 2 "--format: expected auto, text or chat" format -- -t "$TMP/tok.json" -d "$TMP/chat.jsonl" --format yaml
bad 2 "chat data must be .jsonl records" txt -- -t "$TMP/tok.json" -d "$TMP/corpus.txt" --format chat

# fine-tuning a base whose tokenizer lacks the tokens adds them and grows the model
"$BIN" train -t "$TMP/old.json" -d "$TMP/corpus.txt" -o "$TMP/base" "${T[@]}" >/dev/null 2>&1 ||
    { echo "FAIL: could not train the base"; FAILS=$((FAILS + 1)); }
expect 0 "Chat tokens: .*old.json has no <\|im_start\|> and <\|im_end\|>; added them as ids 300 and 301, wrote the tokenizer to .*ft/tokenizer.json; the embedding \(and an untied lm_head\) grows by 2 rows initialised to the mean row" -- \
    train -t "$TMP/old.json" -d "$TMP/chat.jsonl" --checkpoint "$TMP/base/weights.safetensors" -o "$TMP/ft" "${T[@]}"
bad 1 "role.jsonl:2: messages\[0\]: unknown role" grown -- -t "$TMP/old.json" -d "$TMP/role.jsonl" \
    --checkpoint "$TMP/base/weights.safetensors"
expect 0 "Vocab size +302" -- info -m "$TMP/ft/config.json"
expect 0 "" -- generate -c "$TMP/ft/weights.safetensors" -t "$TMP/ft/tokenizer.json" --chat -p "say cat" -m 4 --seed 1 --threads 1

# generate --chat prints the reply only; chat without a terminal: a reply and an empty line per message
out=$("$BIN" generate -c "$CK" -t "$TMP/tok.json" --chat --system "Be brief." -p "say cat" -m 6 --seed 3 --threads 1 2>/dev/null)
if [ $? -eq 0 ] && [[ "$out" != *"say cat"* ]] && [[ "$out" != *"im_start"* ]]; then PASSES=$((PASSES + 1)); else
    echo "FAIL: generate --chat printed '$out'"; FAILS=$((FAILS + 1)); fi
expect 2 "--system needs --chat" -- generate -c "$CK" -t "$TMP/tok.json" -p "x" --system "s"
expect 1 "generate: --chat: tokenizer .*old.json has no <\|im_start\|>" -- \
    generate -c "$TMP/base/weights.safetensors" -t "$TMP/old.json" --chat -p "x"
expect 1 "chat: tokenizer .*old.json has no <\|im_start\|>" -- chat -c "$TMP/base/weights.safetensors" -t "$TMP/old.json"
expect 0 "Usage: hermes-llm chat" -- chat --help
printf 'say cat\n\nsay dog\n/reset\nsay sun\n' | "$BIN" chat -c "$CK" -t "$TMP/tok.json" -m 5 --seed 1 --threads 1 \
    >"$TMP/replies" 2>/dev/null
rc=$?
out=$(cat "$TMP/replies")
n_empty=$(grep -c '^$' "$TMP/replies")
if [ $rc -eq 0 ] && [ "$n_empty" -eq 3 ]; then PASSES=$((PASSES + 1)); else
    echo "FAIL: chat from a pipe: exit $rc, $n_empty empty lines (want 3): '$out'"; FAILS=$((FAILS + 1)); fi
# chat shares generate's loading: q8_0 weights too
out=$(printf 'say cat\n' | "$BIN" chat -c "$CK" -t "$TMP/tok.json" -m 5 --seed 1 --threads 1 --dtype q8_0 2>&1)
rc=$?
if [ $rc -eq 0 ] && [ -n "$out" ]; then PASSES=$((PASSES + 1)); else
    echo "FAIL: chat --dtype q8_0: exit $rc: '$out'"; FAILS=$((FAILS + 1)); fi

# on a terminal (tmux): two turns, /reset, Ctrl-C mid-reply, Ctrl-D
if ! command -v tmux >/dev/null; then
    echo "skipped: the terminal test needs tmux"
else
    S=hmchat$$
    screen() { tmux capture-pane -p -t "$S" -S -200; }
    wait_for() { # wait_for COUNT PATTERN: until the screen has COUNT lines matching PATTERN (10 s)
        for _ in $(seq 1 100); do
            [ "$(screen | grep -cE -- "$2")" -ge "$1" ] && return 0
            sleep 0.1
        done
        echo "FAIL: tty: waited for $1 x /$2/; screen:"; screen | tail -15; FAILS=$((FAILS + 1)); return 1
    }
    tmux new-session -d -s "$S" -x 160 -y 50 \
        "HM_TEST_TOKEN_DELAY_MS=20 '$BIN' chat -c '$CK' -t '$TMP/tok.json' -m 40 --seed 2 --threads 1 --system 'Be brief.'; echo \"EXIT=\$?\"; sleep 30"
    if wait_for 1 "^>( |$)" && { tmux send-keys -t "$S" "say cat" Enter; wait_for 2 "^>( |$)"; } &&
       { tmux send-keys -t "$S" "say dog" Enter; wait_for 3 "^>( |$)"; } &&
       { tmux send-keys -t "$S" "/reset" Enter; wait_for 1 "\[conversation cleared\]"; } &&
       { tmux send-keys -t "$S" "say sun" Enter; sleep 0.3; tmux send-keys -t "$S" C-c; wait_for 1 "^\[stopped\]"; } &&
       wait_for 5 "^>( |$)" && { tmux send-keys -t "$S" C-d; wait_for 1 "^EXIT=0$"; }; then
        PASSES=$((PASSES + 1))
    fi
    tmux kill-session -t "$S" 2>/dev/null
fi
finish
