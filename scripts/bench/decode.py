#!/usr/bin/env python3
"""Batch-1 decode: hermes-llm (f32 / bf16 / q8_0) against llama.cpp (f32 / f16 / q8_0 GGUF of the
same weights, written by our exporter), interleaved in one run. Driven by scripts/bench/decode,
which builds the binaries; see there for what is measured."""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "reference"))
from export_ref import load_llama as export_ref_load_llama, need  # noqa: E402 (after the path)
PROMPT = ("The old lighthouse keeper climbed the stairs every evening, counting the steps as his "
          "father had taught him, and at the top he")
PAIRS = [("f32", "f32"), ("bf16", "f16"), ("q8_0", "q8_0")]  # ours, llama.cpp's


def run(*args):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, errors="replace")
    if r.returncode != 0:
        sys.exit(f"FAIL: {' '.join(map(str, args))} exited {r.returncode}:\n{r.stderr}{r.stdout}")
    return r.stdout + r.stderr


def kv(line):
    return dict(x.split("=", 1) for x in line.split() if "=" in x)


def make_model(a, work):
    """llama-small with vocab = our tokenizer's, random N(0, 0.02) weights; GGUF f32/f16/q8_0."""
    import numpy as np
    from safetensors.numpy import save_file
    tok, ck = f"{work}/tokenizer.json", f"{work}/weights.safetensors"
    if not os.path.exists(tok):
        corpus = f"{SRC}/tests/fixtures/tokenizer/prose-code.txt"
        run(a.bin, "train-tokenizer", "-i", corpus, "-o", tok, "-v", "4096")
    j = json.load(open(tok))
    V = max(list(j["model"]["vocab"].values()) + [t["id"] for t in j.get("added_tokens", [])]) + 1
    cfg = json.load(open(f"{SRC}/configs/llama-small.json"))
    cfg["vocab_size"] = V
    json.dump(cfg, open(f"{work}/config.json", "w"), indent=2)
    C, I, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_layers"]
    KV = cfg["num_kv_heads"] * C // cfg["num_heads"]
    shapes = {"embedding.weight": (V, C), "norm.weight": (C,)}
    for i in range(L):
        p = f"layers.{i}."
        shapes.update({p + "attention.q_proj.weight": (C, C), p + "attention.k_proj.weight": (KV, C),
                       p + "attention.v_proj.weight": (KV, C), p + "attention.o_proj.weight": (C, C),
                       p + "feed_forward.gate_proj.weight": (I, C), p + "feed_forward.up_proj.weight": (I, C),
                       p + "feed_forward.down_proj.weight": (C, I),
                       p + "input_layernorm.weight": (C,), p + "post_attention_layernorm.weight": (C,)})
    if not os.path.exists(ck):
        rng = np.random.default_rng(1234)
        t = {n: (np.ones(s, np.float32) if len(s) == 1 else
                 (rng.standard_normal(s, dtype=np.float32) * 0.02)) for n, s in shapes.items()}
        save_file(t, ck + ".tmp")
        os.replace(ck + ".tmp", ck)
    for dt in ("f32", "f16", "q8_0"):
        out = f"{work}/model-{dt}.gguf"
        if not os.path.exists(out):
            run(a.bin, "export", "-c", ck, "-t", tok, "--config", f"{work}/config.json", "-o", out,
                "--dtype", dt)
    # bytes one decode step reads: every matrix once (the tied embedding as the head), vectors f32
    mat = sum(np.prod(s) for s in shapes.values() if len(s) == 2)
    vec = sum(np.prod(s) for s in shapes.values() if len(s) == 1)
    per_weight = {"f32": 4, "bf16": 2, "f16": 2, "q8_0": 34 / 32}
    wbytes = {dt: float(mat * b + vec * 4) for dt, b in per_weight.items()}
    return tok, ck, wbytes


def load_llama(path, plain_cpu_buffers):
    """tests/reference/export_ref.py's llama.cpp set-up (2 threads, an f32 KV cache and no flash
    attention, as ours; q8_0 on plain CPU buffers, since llama.cpp 0.3.36 segfaults on this machine
    with its repacked AMX ones)."""
    return export_ref_load_llama(path, 256, plain_cpu_buffers)


def llama_decode(llm, n_new):
    """Decode tok/s from the first token on (as our generate reports it)."""
    llm.reset()
    toks = llm.tokenize(PROMPT.encode(), add_bos=False)
    t1, got = None, 0
    for _ in llm.generate(toks, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
        got += 1
        if got == 1:
            t1 = time.perf_counter()
        if got == n_new:
            break
    return (got - 1) / (time.perf_counter() - t1), len(toks)


def ours_decode(a, ck, tok, dt):
    out = run(a.bin, "generate", "-c", ck, "-t", tok, "-p", PROMPT, "-m", a.new, "--temperature", "0",
              "--no-eos", "--dtype", dt, "--device", "cpu", "--threads", a.threads)
    m = re.search(r"prompt tokens: (\d+),.*decode ([0-9.]+) tok/s", out)
    mem = re.search(r"memory: weights ([0-9.]+) MiB", out)
    return float(m.group(2)), int(m.group(1)), float(mem.group(1))


def cpu_line():
    info = open("/proc/cpuinfo").read()
    model = re.search(r"model name\s*:\s*(.*)", info).group(1)
    flags = set(re.search(r"flags\s*:\s*(.*)", info).group(1).split())
    feats = [f for f in ("avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
                         "amx_bf16", "amx_int8") if f in flags]
    return f"{model}, {os.cpu_count()} CPUs; {' '.join(feats) or 'no AVX-512'}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--new", default="64")
    ap.add_argument("--threads", default="2")
    a = ap.parse_args()
    need("numpy", "safetensors", "llama_cpp")
    work = os.path.join(os.path.dirname(os.path.abspath(a.bin)), "bench-decode")
    os.makedirs(work, exist_ok=True)
    tok, ck, wbytes = make_model(a, work)
    n_new = int(a.new)
    llms = {dt: load_llama(f"{work}/model-{dt}.gguf", dt == "q8_0") for _, dt in PAIRS}
    load0 = os.getloadavg()
    res = {k: [] for k in ["bw"] + [f"ours-{o}" for o, _ in PAIRS] + [f"llama-{l}" for _, l in PAIRS] +
           [f"matvec-{o}" for o, _ in PAIRS]}
    mem = {}
    for r in range(a.reps):
        res["bw"].append(float(kv(run(a.bench, "bandwidth", "1024"))["read_gbs"]))
        for ours, theirs in PAIRS:
            order = [0, 1] if r % 2 == 0 else [1, 0]  # alternate who goes first
            for who in order:
                if who == 0:
                    tps, n_prompt, mib = ours_decode(a, ck, tok, ours)
                    res[f"ours-{ours}"].append(tps)
                    mem[ours] = mib
                else:
                    tps, _ = llama_decode(llms[theirs], n_new)
                    res[f"llama-{theirs}"].append(tps)
            res[f"matvec-{ours}"].append(float(kv(run(a.bench, "matvec", ours, "1024", "2048", "5"))["gbs"]))
        print(f"rep {r + 1}/{a.reps}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in res.items()), file=sys.stderr)
    load1 = os.getloadavg()
    med = {k: statistics.median(v) for k, v in res.items()}
    bw = med["bw"]
    print(f"CPU: {cpu_line()}")
    print(f"threads {a.threads}, {a.reps} interleaved reps, medians; load average {load0[0]:.1f} before, "
          f"{load1[0]:.1f} after; read bandwidth {bw:.2f} GB/s (1 GiB read, {a.threads} threads)")
    print(f"{'ours':<6} {'tok/s':>7} {'weights MiB':>11} {'of bound':>8} {'matvec GB/s':>11} {'of bw':>6} | "
          f"{'llama.cpp':<9} {'tok/s':>7} {'of bound':>8} | {'ours/llama':>10}")
    for ours, theirs in PAIRS:
        o, t, mv = med[f"ours-{ours}"], med[f"llama-{theirs}"], med[f"matvec-{ours}"]
        ob, tb = o * wbytes[ours] / 1e9 / bw, t * wbytes[theirs] / 1e9 / bw
        print(f"{ours:<6} {o:7.2f} {mem.get(ours, 0):11.1f} {100 * ob:7.0f}% {mv:11.2f} {100 * mv / bw:5.0f}% | "
              f"{theirs:<9} {t:7.2f} {100 * tb:7.0f}% | {o / t:9.2f}x")


if __name__ == "__main__":
    main()
