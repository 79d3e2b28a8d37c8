#!/usr/bin/env python3
"""HF `tokenizers` side of scripts/bench/tokenizer.
  tokenizer-hf.py train CORPUS OUT VOCAB      BpeTrainer with the formats.md §1.7 recipe,
                                              HF's own file reader (train(files)); prints seconds
  tokenizer-hf.py encode TOKENIZER CORPUS N   encode_batch over documents of N lines; prints the
                                              same JSON line as tokenizer-encode.c
"""
import json
import sys
import time

from tokenizers import Tokenizer, models, pre_tokenizers, trainers

if sys.argv[1] == "train":
    corpus, out, vocab = sys.argv[2], sys.argv[3], int(sys.argv[4])
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tr = trainers.BpeTrainer(vocab_size=vocab, min_frequency=2,
                             special_tokens=["<pad>", "<bos>", "<eos>", "<unk>"],
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    t0 = time.time()
    tok.train([corpus], tr)
    dt = time.time() - t0
    tok.save(out)
    print(json.dumps({"seconds": round(dt, 4)}))
else:
    tok = Tokenizer.from_file(sys.argv[2])
    data = open(sys.argv[3], encoding="utf-8", newline="").read()
    per = int(sys.argv[4])
    docs, pos, n = [], 0, len(data)
    while pos < n:
        end = pos
        for _ in range(per):
            if end >= n:
                break
            nl = data.find("\n", end)
            end = n if nl < 0 else nl + 1
        docs.append(data[pos:end])
        pos = end
    t0 = time.time()
    encs = tok.encode_batch(docs, add_special_tokens=False)
    dt = time.time() - t0
    h, ntok, mask = 1469598103934665603, 0, (1 << 64) - 1
    for e in encs:
        for i in e.ids:
            h = ((h ^ i) * 1099511628211) & mask
        ntok += len(e.ids)
    print(json.dumps({"seconds": round(dt, 4), "mb": round(len(data.encode()) / 1e6, 3),
                      "docs": len(docs), "tokens": ntok, "checksum": "%016x" % h}))
