#!/usr/bin/env python3
"""Write the tokenizer parity corpora into tests/fixtures/tokenizer/ (deterministic; committed).

Each corpus stresses one part of the byte-level BPE pipeline: English prose and C code,
whitespace runs / numbers / contractions, non-Latin scripts and emoji, multi-line JSONL
documents, and special-token text for the formats.md §1.7.1 reuse case. The prose is the
GNU GPL v3 preamble (/usr/share/common-licenses/GPL-3, verbatim copying permitted) and this
repository's own tokenizer sources; everything else is written here.
Usage: tests/reference/make_corpora.py [OUTDIR]
"""
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

WORDS = ("the of and to in is that it for was on are as with his they be at one have this from "
         "or had by word but what some we can out other were all there when up use your how said "
         "an each she which do their time if will way about many then them write would like so "
         "these her long make thing see him two has look more day could go come did number sound "
         "no most people my over know water than call first who may down side been now find").split()

CONTRACTIONS = ["I'm", "you're", "they'll", "we've", "she'd", "it's", "don't", "CAN'T", "WON'T",
                "IT'S", "O'Neil", "rock 'n' roll", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d",
                "the cat's toy", "y'all'd've", "''quoted''", "it’s", "'S", "'Re", "L'amour",
                "they 've", "we 'll", "'tis", "ma'am"]

SCRIPTS = [
    "你好，世界！今天天气很好，我们一起去公园散步吧。",
    "机器学习是人工智能的一个分支，它使计算机能够从数据中学习。",
    "東京は日本の首都です。ひらがなとカタカナと漢字を使います。",
    "私はコーヒーが好きです。毎朝一杯飲みます。",
    "안녕하세요, 세계! 한국어는 한글로 씁니다.",
    "Привет, мир! Это пример текста на русском языке, 2024 год.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Γειά σου Κόσμε! Η ελληνική γλώσσα έχει μακρά ιστορία.",
    "مرحبا بالعالم! هذه جملة باللغة العربية.",
    "שלום עולם! זה משפט בעברית.",
    "नमस्ते दुनिया! यह हिंदी में एक वाक्य है।",
    "สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่างระหว่างคำ",
    "Ἐν ἀρχῇ ἦν ὁ λόγος, καὶ ὁ λόγος ἦν πρὸς τὸν θεόν.",
    "Zürich, São Paulo, Kraków, Reykjavík, Ærøskøbing, İstanbul, Đà Nẵng.",
    "café vs cafe\u0301 (combining acute), n\u0303, a\u030a, Z\u0335\u0321a\u0337lgo",
    "emoji: 😀 😂 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷🇯🇵 ❤️ ✨ 🤖 🧠 ⚙️",
    "math: ∀x∈ℝ, x² ≥ 0; ∑ᵢ aᵢ = ½; π ≈ 3.14159; ∞ ≠ ∅; ⅓ + ⅔ = 1",
    "digits: ٠١٢٣٤٥٦٧٨٩ ०१२३४५६७८९ ０１２３ Ⅻ ⑦",
    "spaces:\u00a0nbsp\u3000ideographic\u2009thin\u2003em\u202fnarrow\u205fmath end",
    "controls: a\u001cb\u001dc\u001ed\u001ff (not White_Space) and \u0085next\u2028line\u2029para",
    "fullwidth: ＡＢＣ　ｘｙｚ！ and halfwidth ｶﾀｶﾅ",
    "mixed: hello世界 abc123def 3rd 21st 2nd-order x86_64 UTF-8",
]

CODE_EXTRA = '''
def fib(n: int) -> int:
    """Return the n-th Fibonacci number."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a

if __name__ == "__main__":
\tprint([fib(i) for i in range(10)])  # tabs and spaces
'''


def write(path, text):
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def prose_code(rng):
    gpl = open("/usr/share/common-licenses/GPL-3", encoding="utf-8").read()
    parts = [gpl[:40000]]
    for name in ["pretok.c", "bytes.c", "bpe-encode.c"]:
        p = os.path.join(ROOT, "src", "tokenizer", name)
        parts.append(open(p, encoding="utf-8").read()[:12000])
    parts.append(CODE_EXTRA * 3)
    return "\n".join(parts)


def numbers_ws(rng):
    lines = []
    for i in range(700):
        kind = i % 7
        w = [rng.choice(WORDS) for _ in range(rng.randint(2, 8))]
        if kind == 0:
            line = " ".join(w) + " " + rng.choice(CONTRACTIONS) + " " + rng.choice(CONTRACTIONS)
        elif kind == 1:
            line = (" " * rng.randint(1, 6)).join(w) + " " * rng.randint(0, 3)
        elif kind == 2:
            line = "\t".join(w) + "\t" * rng.randint(0, 2)
        elif kind == 3:
            line = "%d-%02d-%02d %d.%0*d %s %d,%03d,%03d" % (
                rng.randint(1900, 2100), rng.randint(1, 12), rng.randint(1, 28),
                rng.randint(0, 999), rng.randint(1, 6), rng.randint(0, 99999),
                rng.choice(["0x1F", "1e-9", "-42", "+7", "3/4", "100%", "$19.99", "v2.0.1"]),
                rng.randint(1, 999), rng.randint(0, 999), rng.randint(0, 999))
        elif kind == 4:
            line = " ".join(w) + "  \n\n   " + " ".join(reversed(w)) + "\r"
        elif kind == 5:
            line = "".join(str(rng.randint(0, 9)) for _ in range(rng.randint(1, 40))) + " " + \
                rng.choice(CONTRACTIONS)
        else:
            line = " " * rng.randint(0, 4) + "  ".join(w) + " \t \t" + rng.choice(CONTRACTIONS)
        lines.append(line + ("\r\n" if i % 11 == 0 else "\n"))
    return "".join(lines)


def multilingual(rng):
    lines = []
    for i in range(260):
        a, b = rng.choice(SCRIPTS), rng.choice(SCRIPTS)
        sep = rng.choice([" ", "  ", "\u00a0", "\u3000", " — ", "\t"])
        lines.append(a + sep + b + "\n")
    return "".join(lines)


def docs_jsonl(rng):
    out = []
    for i in range(220):
        paras = []
        for _ in range(rng.randint(1, 4)):
            src = rng.random()
            if src < 0.5:
                paras.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 25))).capitalize() + ".")
            elif src < 0.75:
                paras.append(rng.choice(SCRIPTS))
            else:
                paras.append(rng.choice(CONTRACTIONS) + " " + str(rng.randint(0, 10**6)))
        text = rng.choice(["\n", "\n\n", " \n", "\r\n"]).join(paras)
        out.append(json.dumps({"id": i, "text": text}, ensure_ascii=(i % 2 == 0)) + "\n")
    return "".join(out)


def specials_reuse(rng):
    # "eos" and "pad" are special tokens in this corpus's config, and are also plain words here,
    # so a merge produces a string that already has an id (formats.md §1.7.1).
    lines = []
    for i in range(300):
        w = [rng.choice(["eos", "pad", "eos pad", "the eos", "padding", "eosin", "a", "e", "os"])
             for _ in range(rng.randint(1, 6))]
        lines.append(" ".join(w) + "\n")
    return "".join(lines)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures", "tokenizer")
    os.makedirs(out, exist_ok=True)
    rng = random.Random(1234)
    write(os.path.join(out, "prose-code.txt"), prose_code(rng))
    write(os.path.join(out, "numbers-ws.txt"), numbers_ws(rng))
    write(os.path.join(out, "multilingual.txt"), multilingual(rng))
    write(os.path.join(out, "docs.jsonl"), docs_jsonl(rng))
    write(os.path.join(out, "specials-reuse.txt"), specials_reuse(rng))
    texts = [
        "Hello world", "Hello  world", "a \nb", "a \n", "\n\nfoo", " 's", "I'm here, you're there.",
        "don't DON'T 'S 's", "x = 1;\n\tif (x) { return y; }  \n", "   leading and trailing   ",
        "3.14159 2024-01-15 1,000,000 0x1F", "你好，世界！", "Привет, мир!", "👨‍👩‍👧‍👦 👍🏽 🇫🇷",
        "a\u00a0b\u3000c\u2009d", "e\u0301 n\u0303", "a\u001cb\u001fc", "line\r\nbreak\r\n",
        "<pad>hello<eos> <bos>world<unk>", "<eos><eos>", "text with <eos> inside and <unk>",
        "eos pad eosin padding", "The GNU General Public License is a free, copyleft license.",
        "for (size_t i = 0; i < n; i++) sum += a[i] * b[i];", "", " ", "\t\t\t", "\n",
        "supercalifragilisticexpialidocious" * 3, "=" * 300, "ab" * 150,
        "mixed: hello世界 abc123def 3rd 21st", "Γειά σου Κόσμε! मेरा नाम", "'''", "''s",
    ]
    write(os.path.join(out, "encode-texts.jsonl"),
          "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts))


if __name__ == "__main__":
    main()
