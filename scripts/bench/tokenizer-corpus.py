#!/usr/bin/env python3
"""Assemble the tokenizer benchmark corpus from Debian package text: every fortunes file
(/usr/share/games/fortunes, package `fortunes`), /usr/share/common-licenses, then the text
files of /usr/share/doc (gzip-compressed ones decompressed), in sorted path order, until
TARGET bytes. Invalid UTF-8 is replaced (HF's train(files) needs valid UTF-8), NUL and
other C0 controls except \\t\\n\\r are dropped. Usage: tokenizer-corpus.py OUT [TARGET_MB]
"""
import gzip
import os
import re
import sys

out, target = sys.argv[1], int(sys.argv[2] if len(sys.argv) > 2 else 64) << 20
ctrl = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def files():
    roots = ["/usr/share/games/fortunes", "/usr/share/common-licenses", "/usr/share/doc"]
    for root in roots:
        for d, _, names in sorted(os.walk(root)):
            for n in sorted(names):
                p = os.path.join(d, n)
                if n.endswith(".dat") or n.endswith(".u8") or os.path.islink(p):
                    continue
                yield p


total = 0
with open(out, "w", encoding="utf-8") as f:
    for p in files():
        try:
            raw = gzip.open(p).read() if p.endswith(".gz") else open(p, "rb").read()
        except (OSError, EOFError):
            continue
        if b"\0" in raw[:4096]:
            continue  # binary
        text = ctrl.sub("", raw.decode("utf-8", errors="replace"))
        if not text.endswith("\n"):
            text += "\n"
        f.write(text)
        total += len(text.encode("utf-8"))
        if total >= target:
            break
print(f"{out}: {total / 1e6:.1f} MB")
