#!/usr/bin/env python3
"""ChatML rendering reference: transformers' apply_chat_template with the ChatML template.

    chat_ref.py generate   write tests/fixtures/chat/render.jsonl (cases + transformers' text)
    chat_ref.py check      render the cases again with the installed transformers and compare
                           them with the committed fixture (exit 77 when transformers is missing)

tests/unit/test-chat.c renders the same cases with hermes and compares byte for byte.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(os.path.dirname(HERE), "fixtures", "chat", "render.jsonl")

# The ChatML template as transformers documents it (and as Hermes models ship it).
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
          "{% endif %}")

S = {"role": "system", "content": "You are Hermes, a helpful assistant."}
CASES = [
    ([S, {"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi. How can I help?"}], False),
    ([{"role": "user", "content": "No system prompt here."}], True),
    ([S, {"role": "user", "content": "one"}, {"role": "assistant", "content": "two"},
      {"role": "user", "content": "three"}, {"role": "assistant", "content": "four"},
      {"role": "user", "content": "five"}], True),
    ([{"role": "user", "content": "Ünïcödé: 日本語, emoji 😀, Ελληνικά"},
      {"role": "assistant", "content": "ok ✓"}], False),
    ([S, {"role": "user", "content": ""}, {"role": "assistant", "content": ""}], False),
    ([{"role": "system", "content": "multi\nline\n\nsystem"}, {"role": "user", "content": "  spaces  \n"},
      {"role": "assistant", "content": "\ttab and <|im_end|> text"}], True),
]


def render_all():
    try:
        from tokenizers import Tokenizer, models
        from transformers import PreTrainedTokenizerFast
    except ImportError:
        print("SKIPPED: python3 cannot import transformers and tokenizers (run scripts/setup-python.sh)")
        sys.exit(77)
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()))
    tok.chat_template = CHATML
    out = []
    for msgs, gen in CASES:
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
        out.append({"messages": msgs, "add_generation_prompt": gen, "rendered": text})
    return out


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "generate":
        os.makedirs(os.path.dirname(FIX), exist_ok=True)
        with open(FIX, "w", encoding="utf-8") as f:
            for c in render_all():
                f.write(json.dumps(c, ensure_ascii=False) + "\n")
        print(f"{FIX}: {len(CASES)} cases")
    elif cmd == "check":
        live = render_all()
        with open(FIX, encoding="utf-8") as f:
            fixed = [json.loads(l) for l in f if l.strip()]
        if live != fixed:
            for a, b in zip(live, fixed):
                if a != b:
                    print(f"differs: transformers {a['rendered']!r}, fixture {b['rendered']!r}")
            print("FAIL: the committed fixture is not what transformers renders")
            sys.exit(1)
        print(f"ok: {len(live)} conversations render identically in transformers and the fixture")
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
