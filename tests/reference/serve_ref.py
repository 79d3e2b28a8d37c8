#!/usr/bin/env python3
"""Live check of `hermes-llm serve` with the official `openai` Python client.

  serve_ref.py HERMES_BIN

Trains a small chat model (a tokenizer with the ChatML tokens, 4 steps on chat records, as
tests/cli/chat.sh does), serves it on 127.0.0.1 with an API key, and through the client: lists
the model; chat and completion, whole and streamed (the same text and usage); the chat prompt is
transformers' ChatML rendering (its token count is the usage's prompt_tokens, counted by HF
tokenizers on our tokenizer.json); completion prompt_tokens likewise; `stop` cuts the text before
the stop string (streamed too); the same `seed` gives the same sampled text, another seed another;
a wrong key, n=2 and an unknown model raise the client's own errors. Exits 77 (ctest SKIP) with
"SKIPPED: ..." when openai, tokenizers or transformers is missing, or serve is not built.
"""
import json
import os
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from export_ref import need, run  # noqa: E402  (the same helpers, stdlib only)
WORDS = "the cat sat on a mat and dog ran to park while birds sang songs of summer rain".split()
KEY = "sk-serve-ref"


def chat_model(hm, tmp):
    """A tokenizer with <|im_start|>/<|im_end|> and a 1-layer model trained 4 steps on chat data."""
    with open(f"{tmp}/corpus.txt", "w") as f:
        for i in range(1, 121):
            f.write(" ".join(WORDS[(i * 7 + j * 13 + i * j) % len(WORDS)] for j in range(1, 13)) + " .\n")
    with open(f"{tmp}/chat.jsonl", "w") as f:
        for i in range(40):
            w = WORDS[i % len(WORDS)]
            f.write(json.dumps({"messages": [{"role": "user", "content": f"say {w}"},
                                             {"role": "assistant", "content": f"{w} {w}"}]}) + "\n")
    with open(f"{tmp}/cfg.json", "w") as f:
        json.dump({"vocab_size": 300, "max_seq_len": 512, "hidden_size": 32, "num_layers": 1,
                   "num_heads": 2, "num_kv_heads": 2, "intermediate_size": 64, "dropout": 0.0,
                   "layer_norm_eps": 1e-5, "use_bias": True, "rope_theta": 10000.0,
                   "activation": "gelu", "tie_embeddings": True}, f)
    run(hm, "train-tokenizer", "-i", f"{tmp}/corpus.txt", "-o", f"{tmp}/tok.json", "-v", "300")
    run(hm, "train", "-t", f"{tmp}/tok.json", "-d", f"{tmp}/chat.jsonl", "-o", f"{tmp}/hermes-tiny",
        "-m", f"{tmp}/cfg.json", "--threads", "1", "-b", "2", "--seq-len", "64", "--max-steps", "4")
    return f"{tmp}/hermes-tiny/weights.safetensors", f"{tmp}/tok.json"


def start(hm, ck, tok, log):
    p = subprocess.Popen([hm, "serve", "-c", ck, "-t", tok, "--port", "0", "--threads", "1",
                          "--api-key", KEY], stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        log.append(line)
        if line.startswith("serve: listening on http://"):
            # keep reading: a full pipe would block the server's access log
            threading.Thread(target=lambda: log.extend(p.stderr), daemon=True).start()
            return p, int(line.split()[3].rsplit(":", 1)[1])
    sys.exit(f"FAIL: serve exited before listening:\n{''.join(log)}")


class Check:
    failures = 0

    def __call__(self, cond, what):
        print(("ok    " if cond else "FAIL  ") + what)
        self.failures += not cond


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    need("openai", "tokenizers", "transformers")
    import openai
    import tokenizers
    import transformers
    from chat_ref import CHATML

    hm = sys.argv[1]
    if subprocess.run([hm, "serve", "--help"], capture_output=True).returncode != 0:
        print("SKIPPED: this hermes-llm has no serve command")
        sys.exit(77)
    check = Check()
    with tempfile.TemporaryDirectory() as tmp:
        ck, tok_path = chat_model(hm, tmp)
        hf = tokenizers.Tokenizer.from_file(tok_path)
        tmpl = transformers.PreTrainedTokenizerFast(tokenizer_file=tok_path)
        tmpl.chat_template = CHATML
        log = []
        server, port = start(hm, ck, tok_path, log)
        try:
            c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0)
            models = [m.id for m in c.models.list()]
            check(models == ["hermes-tiny"], f"models.list() = {models}")
            model = models[0]

            # chat: the prompt is transformers' ChatML rendering; streamed = whole
            msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "say cat"}]
            r = c.chat.completions.create(model=model, messages=msgs, max_tokens=24, temperature=0)
            text = r.choices[0].message.content
            rendered = tmpl.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            n_prompt = len(hf.encode(rendered).ids)
            check(r.usage.prompt_tokens == n_prompt,
                  f"chat prompt_tokens {r.usage.prompt_tokens} = tokens of transformers' ChatML {n_prompt}")
            fin = r.choices[0].finish_reason
            check(fin == "stop" or (fin == "length" and r.usage.completion_tokens == 24),
                  f"chat finish_reason {fin}, completion_tokens {r.usage.completion_tokens}")
            check(r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens,
                  "chat total_tokens")
            chunks = list(c.chat.completions.create(model=model, messages=msgs, max_tokens=24,
                                                    temperature=0, stream=True,
                                                    stream_options={"include_usage": True}))
            streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
            check(streamed == text, f"streamed chat = whole ({text!r})")
            check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens ==
                  r.usage.completion_tokens, "streamed chat usage")

            # completion: prompt_tokens by our tokenizer (through HF, proven equal elsewhere)
            prompt = "the cat sat on the"
            r = c.completions.create(model=model, prompt=prompt, max_tokens=32, temperature=0)
            text = r.choices[0].text
            check(r.usage.prompt_tokens == len(hf.encode(prompt).ids),
                  f"completion prompt_tokens {r.usage.prompt_tokens} = {len(hf.encode(prompt).ids)}")
            streamed = "".join(ch.choices[0].text for ch in c.completions.create(
                model=model, prompt=prompt, max_tokens=32, temperature=0, stream=True))
            check(streamed == text, f"streamed completion = whole ({text!r})")

            # seed: the same seed, the same sampled text; another seed, another
            def sample(seed, **kw):
                return c.completions.create(model=model, prompt=prompt, max_tokens=32,
                                            temperature=1.0, seed=seed, **kw)
            a, b, other = sample(7).choices[0].text, sample(7).choices[0].text, sample(8).choices[0].text
            check(a == b, f"seed 7 twice: {a!r}")
            check(a != other, "seed 8 differs from seed 7")

            # stop: 3 plain characters first seen after the start of the seeded text
            at = next((i for i in range(1, len(a) - 2) if a[i:i + 3].isascii() and
                       a[i:i + 3].isprintable() and a.find(a[i:i + 3]) == i), None)
            if at is None:
                check(False, f"no stop string to take from {a!r}")
            else:
                stop = a[at:at + 3]
                r = sample(7, stop=[stop])
                check(r.choices[0].text == a[:at] and r.choices[0].finish_reason == "stop",
                      f"stop {stop!r}: {r.choices[0].text!r} = {a[:at]!r}, finish stop")
                streamed = "".join(ch.choices[0].text for ch in sample(7, stop=stop, stream=True))
                check(streamed == a[:at], f"streamed stop {stop!r}: {streamed!r}")

            # the client's own errors
            for exc, what, call in [
                (openai.BadRequestError, "n=2", lambda: c.completions.create(
                    model=model, prompt=prompt, n=2)),
                (openai.NotFoundError, "unknown model", lambda: c.completions.create(
                    model="gpt-4", prompt=prompt)),
                (openai.AuthenticationError, "wrong key", lambda: openai.OpenAI(
                    base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-wrong",
                    max_retries=0).models.list()),
            ]:
                try:
                    call()
                    check(False, f"{what}: no error")
                except exc:
                    check(True, f"{what}: {exc.__name__}")
        finally:
            server.terminate()
            rc = server.wait(timeout=120)
        check(rc == 0, f"serve exited {rc} on SIGTERM")
    if check.failures:
        sys.exit(f"{check.failures} failed")
    print("all passed")


if __name__ == "__main__":
    main()
