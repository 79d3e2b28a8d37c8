#!/usr/bin/env python3
"""train_torch.py - the PyTorch CPU peers for scripts/bench/train: the same architecture as
hermes-llm's model (the nn.Module in train_gpu_torch.py, which matches tests/reference/model_ref.py:
pre-norm RMSNorm, half-split RoPE, causal SDPA, GELU/SwiGLU MLP, biases, tied head), dropout 0,
denormals flushed, fused AdamW (betas 0.9/0.95, wd 0.1) with clip_grad_norm_(1.0) per step, in one
of three modes:
  eager         f32, eager
  compile       f32, torch.compile (inductor)
  compile-bf16  torch.compile with torch.autocast("cpu", bfloat16) around the forward pass (oneDNN
                runs the matmuls on AMX tiles where the CPU has them)
Each step is timed on its own after WARMUP steps (torch.compile compiles in the first steps, so its
compile time is not counted); medians are reported. Prints one line:
  RESULT torch mode=.. B=.. T=.. V=.. threads=.. tok_s=.. step_ms=.. fwd_ms=.. bwd_ms=.. opt_ms=..
         peak_rss=.. loss=..
Usage: train_torch.py CONFIG_JSON B T V STEPS [WARMUP [MODE]]
  (threads: torch.set_num_threads(OMP_NUM_THREADS); MODE default eager)
"""
import contextlib
import json
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_gpu_torch import GPT  # noqa: E402

MODES = ("eager", "compile", "compile-bf16")


def main():
    cfg_path, B, T, V, steps = sys.argv[1], *map(int, sys.argv[2:6])
    warm = int(sys.argv[6]) if len(sys.argv) > 6 else 2
    mode = sys.argv[7] if len(sys.argv) > 7 else "eager"
    if mode not in MODES:
        sys.exit(f"train_torch.py: MODE: expected one of {', '.join(MODES)}, got '{mode}'")
    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    c = json.load(open(cfg_path))
    c["vocab_size"] = V
    torch.manual_seed(0)
    model = GPT(c, T)
    # hermes-llm's init (src/model): N(0, 0.02) matrices and embedding, o/down scaled by
    # 1/sqrt(2L), biases 0, norm weights 1, so both runs see the same magnitudes.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.fill_(1.0 if name.split(".")[-2].startswith("n") or name == "norm.weight" else 0.0)
            else:
                out_proj = name.split(".")[-2] in ("o", "down")
                std = 0.02 / (2 * c["num_layers"]) ** 0.5 if out_proj else 0.02
                p.normal_(0.0, std)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    fwd = torch.compile(model) if mode.startswith("compile") else model
    if mode.endswith("bf16"):
        def autocast():
            return torch.autocast("cpu", dtype=torch.bfloat16)
    else:
        autocast = contextlib.nullcontext
    ids = torch.randint(0, V, (B, T))
    tgt = torch.randint(0, V, (B, T))
    t_step, t_fwd, t_bwd, t_opt = [], [], [], []
    for i in range(warm + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        with autocast():
            loss = fwd(ids, tgt)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        t3 = time.perf_counter()
        if i >= warm:
            t_step.append(t3 - t0), t_fwd.append(t1 - t0), t_bwd.append(t2 - t1), t_opt.append(t3 - t2)
    step = statistics.median(t_step)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"RESULT torch mode={mode} B={B} T={T} V={V} threads={torch.get_num_threads()} "
          f"tok_s={B * T / step:.1f} step_ms={1e3 * step:.1f} "
          f"fwd_ms={1e3 * statistics.median(t_fwd):.1f} "
          f"bwd_ms={1e3 * statistics.median(t_bwd):.1f} opt_ms={1e3 * statistics.median(t_opt):.1f} "
          f"peak_rss={rss} loss={loss.item():.4f}")


if __name__ == "__main__":
    main()
