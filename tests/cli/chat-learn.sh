#!/usr/bin/env bash
# chat-learn.sh - chat fine-tuning learns, end to end (about 1 minute of CPU on 2 cores): a made-up
# table of 24 keys -> colours, asked in 8 phrasings; the colours appear only in the assistant
# replies. A small base model is pretrained on text with the same words (never a key with its
# colour), then fine-tuned on 7 phrasings per key; the 8th phrasing of every key is held out and
# must be answered exactly (greedy `chat`, one question per conversation) in >= 90% of cases. The
# same fine-tuning without the loss mask (--no-loss-mask) is run and reported next to it.
. "$(dirname "$0")/lib.sh"

keys=(zib kor vap lun mef tas rog pim dex wul nab sid fop gur hek jov lam mir nox pev quz raf sul tiv)
cols=(red blue green amber violet white black olive)
# Every phrasing puts a space before the key: byte-level BPE gives a word at the start of a message
# other tokens than after a space, so a held-out "%s colour?" asked for a key whose replies were
# only ever trained after a space (3 of the 24) tested the tokenizer, not the fine-tuning, and the
# result hung on those 3 (18-22 of 24, moved by last-bit differences in the matmuls).
ph=("What colour is %s?" "Tell me the colour of %s." "Colour of %s?" "Which colour does %s have?" "Name %s's colour."
    "And %s, what colour?" "The colour of %s is?" "Say the colour for %s.")
: > "$TMP/train.jsonl"; : > "$TMP/heldout.txt"; : > "$TMP/answers.txt"
for i in "${!keys[@]}"; do
    k=${keys[$i]}; v=${cols[$(( (i * 5 + i / 8) % 8 ))]}
    for p in "${!ph[@]}"; do
        q=$(printf "${ph[$p]}" "$k")
        if [ "$p" -eq $((i % 8)) ]; then echo "$q" >> "$TMP/heldout.txt"; echo "$v" >> "$TMP/answers.txt"; continue; fi
        s=""; [ $(( (i + p) % 3 )) -eq 0 ] && s='{"role": "system", "content": "Answer in one word."}, '
        echo "{\"messages\": [$s{\"role\": \"user\", \"content\": \"$q\"}, {\"role\": \"assistant\", \"content\": \"$v\"}]}"
    done >> "$TMP/train.jsonl"
done
for r in 1 2 3 4; do
    for i in "${!keys[@]}"; do
        for p in "${!ph[@]}"; do printf "${ph[$p]} " "${keys[$i]}"; done
        echo "Colours are ${cols[$(( (i + r) % 8 ))]}, ${cols[$(( (i + 3 * r) % 8 ))]} and more."
    done
done > "$TMP/text.txt"
cat > "$TMP/cfg.json" <<'JSON'
{"vocab_size": 512, "max_seq_len": 64, "hidden_size": 64, "num_layers": 2, "num_heads": 2, "num_kv_heads": 2,
 "intermediate_size": 256, "dropout": 0.0, "layer_norm_eps": 1e-5, "use_bias": true, "rope_theta": 10000.0,
 "activation": "gelu", "tie_embeddings": true}
JSON
run() { "$BIN" "$@" >"$TMP/log" 2>&1 || { echo "FAIL: hermes-llm $*"; tail -3 "$TMP/log"; exit 1; }; }
run train-tokenizer -i "$TMP/text.txt" -o "$TMP/tok.json" -v 512
# f32 throughout: the 90% bar was set for f32 training, and --dtype auto is bf16 on a CPU with AMX
run train -t "$TMP/tok.json" -d "$TMP/text.txt" -m "$TMP/cfg.json" --seq-len 64 -b 8 -o "$TMP/base" --epochs 6 --threads 2 \
    --dtype f32

# accuracy DIR: exact answers to the held-out questions, one conversation each (/reset between)
accuracy() {
    sed 's|$|\n/reset|' "$TMP/heldout.txt" |
        "$BIN" chat -c "$1/weights.safetensors" -t "$TMP/tok.json" --temperature 0 -m 8 --threads 2 2>/dev/null |
        awk 'NF' > "$1/replies.txt"
    paste "$1/replies.txt" "$TMP/answers.txt" | awk '$1 == $2 {c++} END {print c + 0}'
}
FT=(-t "$TMP/tok.json" -d "$TMP/train.jsonl" -m "$TMP/cfg.json" --checkpoint "$TMP/base/weights.safetensors"
    --seq-len 64 -b 8 --epochs 40 --lr 5e-3 --warmup 10 --val-split 0 --threads 2 --dtype f32)
run train "${FT[@]}" -o "$TMP/masked"
grep "Chat data" "$TMP/log"
masked=$(accuracy "$TMP/masked")
run train "${FT[@]}" -o "$TMP/unmasked" --no-loss-mask
unmasked=$(accuracy "$TMP/unmasked")
n=$(wc -l < "$TMP/heldout.txt")
echo "held-out questions answered exactly: $masked/$n with the loss on the replies, $unmasked/$n on every token"
if [ $((masked * 10)) -ge $((n * 9)) ]; then PASSES=$((PASSES + 1)); else
    echo "FAIL: $masked/$n held-out answers, fewer than 90%"; paste "$TMP/masked/replies.txt" "$TMP/answers.txt"
    FAILS=$((FAILS + 1)); fi
finish
