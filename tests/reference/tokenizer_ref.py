#!/usr/bin/env python3
"""HF `tokenizers` parity for the byte-level BPE (formats.md §1.7 recipe).

  tokenizer_ref.py generate          train HF on each corpus in tests/fixtures/tokenizer/ and
                                     write <corpus>.expected.json (vocab, merges, encodings of
                                     encode-texts.jsonl); the C unit test compares against them.
  tokenizer_ref.py check HERMES_BIN  live check: train with our CLI, load our tokenizer.json in
                                     HF, require the same vocab and merges as HF's own trainer,
                                     and the same encodings and exact decodings on the texts.
Exits 77 (ctest SKIP) with "SKIPPED: ..." when python3 cannot import tokenizers.
Sequences: a .txt corpus is one sequence per line with its '\\n' kept (HF train(files)); a .jsonl
corpus is one sequence per record's "text". Both go through train_from_iterator.
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(os.path.dirname(HERE), "fixtures", "tokenizer")

# corpus -> (vocab_size, min_frequency, special tokens)
CORPORA = {
    "prose-code.txt": (1000, 2, ["<pad>", "<bos>", "<eos>", "<unk>", "<|im_start|>", "<|im_end|>"]),
    "numbers-ws.txt": (700, 2, ["<pad>", "<bos>", "<eos>", "<unk>"]),
    "multilingual.txt": (900, 2, ["<pad>", "<bos>", "<eos>", "<unk>", "<|im_start|>", "<|im_end|>"]),
    "docs.jsonl": (600, 3, ["<|endoftext|>"]),
    "specials-reuse.txt": (300, 1, ["<pad>", "eos", "pad", "<unk>"]),
}

try:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
except ImportError:
    print("SKIPPED: python3 cannot import tokenizers (run scripts/setup-python.sh)")
    sys.exit(77)


def sequences(name):
    path = os.path.join(FIX, name)
    if name.endswith(".jsonl"):
        with open(path, encoding="utf-8") as f:
            return [json.loads(l)["text"] for l in f if l.strip()]
    data = open(path, "rb").read().decode("utf-8")
    out, start = [], 0
    while start < len(data):
        end = data.find("\n", start)
        end = len(data) if end < 0 else end + 1
        out.append(data[start:end])
        start = end
    return out


def texts():
    with open(os.path.join(FIX, "encode-texts.jsonl"), encoding="utf-8") as f:
        return [json.loads(l)["text"] for l in f if l.strip()]


def hf_train(name):
    vocab, minf, specials = CORPORA[name]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tr = trainers.BpeTrainer(vocab_size=vocab, min_frequency=minf, special_tokens=specials,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                             show_progress=False)
    tok.train_from_iterator(sequences(name), tr)
    return tok


def vocab_merges(tok):
    m = json.loads(tok.to_str())["model"]
    inv = sorted((i, t) for t, i in m["vocab"].items())
    assert [i for i, _ in inv] == list(range(len(inv))), "holes in the vocab"
    merges = [x if isinstance(x, str) else " ".join(x) for x in m["merges"]]
    return [t for _, t in inv], merges


def generate():
    for name, (vocab, minf, specials) in CORPORA.items():
        tok = hf_train(name)
        v, m = vocab_merges(tok)
        enc = [tok.encode(t).ids for t in texts()]
        out = {"corpus": name, "vocab_size": vocab, "min_frequency": minf,
               "special_tokens": specials, "vocab": v, "merges": m, "encodings": enc}
        path = os.path.join(FIX, name.split(".")[0] + ".expected.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
            f.write("\n")
        print(f"{path}: {len(v)} tokens, {len(m)} merges")
    # A file written by HF itself (tuple-form merges), with add_prefix_space, a decoder, an
    # appended special token and a non-special added token, to test loading foreign files.
    from tokenizers import AddedToken, decoders
    tok = hf_train("numbers-ws.txt")
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])
    tok.add_tokens([AddedToken("New York", normalized=True), AddedToken(" the", rstrip=True)])
    tok.save(os.path.join(FIX, "hf-saved.tokenizer.json"))
    with open(os.path.join(FIX, "hf-saved.expected.json"), "w", encoding="utf-8") as f:
        json.dump({"encodings": [tok.encode(t).ids for t in texts() + ["I love New York<|endoftext|>the  the end"]]},
                  f, separators=(",", ":"))
        f.write("\n")
    path = os.path.join(FIX, "pretok.expected.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(pretok_cases(), f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"{path}: pre-tokenizer cases")


def pretok_cases():
    """Texts for the pre-tokenizer test: the encode texts, corpus lines, and random mixes of
    the characters whose classes matter (letters, digits, White_Space, apostrophes, marks)."""
    import random
    rng = random.Random(7)
    alphabet = list("aZ09 '\t\n\r.,-_sdtmlrve") + ["\u00a0", "\u3000", "\u2009", "\u0085",
        "\u2028", "\u001c", "\u001f", "\u0301", "é", "ß", "中", "ア", "٣", "Ⅻ", "²", "😀",
        "\u200d", "\ufe0f", "’", "  ", "'s", "'ll", "'Re"]
    cases = list(texts())
    for name in CORPORA:
        seqs = sequences(name)
        cases += [seqs[i] for i in range(0, len(seqs), max(1, len(seqs) // 12))]
    for _ in range(300):
        cases.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24))))
    pt = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    return [{"text": t, "pieces": [p for p, _ in pt.pre_tokenize_str(t)]} for t in cases]


def check(binary):
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, (vocab, minf, specials) in CORPORA.items():
            out = os.path.join(tmp, name + ".tokenizer.json")
            subprocess.run([binary, "train-tokenizer", "-i", os.path.join(FIX, name), "-o", out,
                            "-v", str(vocab), "--min-frequency", str(minf),
                            "--special-tokens", ",".join(specials)], check=True)
            ours = Tokenizer.from_file(out)  # HF must load it as it is
            ref = hf_train(name)
            if vocab_merges(ours) != vocab_merges(ref):
                print(f"FAIL {name}: vocab/merges differ from HF's trainer")
                failures += 1
            for t in texts():
                a, b = ours.encode(t).ids, ref.encode(t).ids
                if a != b:
                    print(f"FAIL {name}: encode({t!r}) {a} != HF {b}")
                    failures += 1
                if ours.decode(a, skip_special_tokens=False) != t:
                    print(f"FAIL {name}: decode(encode({t!r})) is not the text")
                    failures += 1
            print(f"ok {name}")
    if failures:
        sys.exit(1)
    print("tokenizer parity with HF tokenizers: all checks passed")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "generate":
        generate()
    elif len(sys.argv) >= 3 and sys.argv[1] == "check":
        check(sys.argv[2])
    else:
        print(__doc__)
        sys.exit(2)
