#!/usr/bin/env python3
"""train_gpu_torch.py - the PyTorch baseline for scripts/bench/train_gpu: the same architecture as
hermes-llm's model (src/model/gpt.c: pre-norm RMSNorm, RoPE half-split, causal attention with GQA,
GELU or SwiGLU MLP, optional biases, tied embeddings) trained with bf16 autocast, torch.compile,
SDPA (flash) attention and fused AdamW. Prints one line:
  RESULT torch preset=.. B=.. T=.. tok_s=.. step_ms=.. peak_bytes=..
Usage: train_gpu_torch.py CONFIG_JSON B T V STEPS   (exit 3 on CUDA out of memory)
"""
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(s, c):
        super().__init__()
        C, H, KV, I, b = c["hidden_size"], c["num_heads"], c["num_kv_heads"], c["intermediate_size"], c["use_bias"]
        s.H, s.KV, s.D = H, KV, C // H
        s.n1, s.n2 = nn.RMSNorm(C, eps=c["layer_norm_eps"]), nn.RMSNorm(C, eps=c["layer_norm_eps"])
        s.q, s.k, s.v = nn.Linear(C, C, b), nn.Linear(C, KV * s.D, b), nn.Linear(C, KV * s.D, b)
        s.o = nn.Linear(C, C, b)
        s.swiglu = c["activation"] == "swiglu"
        s.up, s.down = nn.Linear(C, I, b), nn.Linear(I, C, b)
        s.gate = nn.Linear(C, I, b) if s.swiglu else None

    def forward(s, x, cos, sin):
        B, T, C = x.shape
        h = s.n1(x)
        q = s.q(h).view(B, T, s.H, s.D).transpose(1, 2)
        k = s.k(h).view(B, T, s.KV, s.D).transpose(1, 2)
        v = s.v(h).view(B, T, s.KV, s.D).transpose(1, 2)

        def rope(t):
            a, b = t[..., : s.D // 2], t[..., s.D // 2 :]
            return torch.cat([a * cos - b * sin, b * cos + a * sin], -1)

        y = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True, enable_gqa=s.KV != s.H)
        x = x + s.o(y.transpose(1, 2).reshape(B, T, C))
        h = s.n2(x)
        f = F.silu(s.gate(h)) * s.up(h) if s.swiglu else F.gelu(s.up(h))
        return x + s.down(f)


class GPT(nn.Module):
    def __init__(s, c, T):
        super().__init__()
        s.emb = nn.Embedding(c["vocab_size"], c["hidden_size"])
        s.blocks = nn.ModuleList(Block(c) for _ in range(c["num_layers"]))
        s.norm = nn.RMSNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        D = c["hidden_size"] // c["num_heads"]
        inv = c["rope_theta"] ** (-torch.arange(0, D // 2, dtype=torch.float64) * 2 / D)
        ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None]
        s.register_buffer("cos", ang.cos().float(), persistent=False)
        s.register_buffer("sin", ang.sin().float(), persistent=False)

    def forward(s, ids, tgt):
        x = s.emb(ids)
        for b in s.blocks:
            x = b(x, s.cos, s.sin)
        logits = s.norm(x) @ s.emb.weight.t()
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), tgt.view(-1))


def main():
    cfg_path, B, T, V, steps = sys.argv[1], *map(int, sys.argv[2:6])
    c = json.load(open(cfg_path))
    c["vocab_size"] = V
    torch.manual_seed(0)
    dev = "cuda"
    model = GPT(c, T).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    step_fn = torch.compile(model)
    ids = torch.randint(0, V, (B, T), device=dev)
    tgt = torch.randint(0, V, (B, T), device=dev)
    try:
        for i in range(steps + 5):
            if i == 5:
                torch.cuda.synchronize()
                t0 = time.time()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = step_fn(ids, tgt)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
    except torch.OutOfMemoryError:
        print("train_gpu_torch: out of memory", file=sys.stderr)
        sys.exit(3)
    dt = time.time() - t0
    tok_s = B * T * steps / dt
    print(f"RESULT torch B={B} T={T} V={V} tok_s={tok_s:.0f} step_ms={1e3 * dt / steps:.2f} "
          f"peak_bytes={torch.cuda.max_memory_allocated()} loss={loss.item():.4f}")


if __name__ == "__main__":
    main()
