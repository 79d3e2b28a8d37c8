#!/usr/bin/env python3
"""PyTorch side of scripts/bench/generate: batch-1 greedy decode with a KV cache, same model.

The architecture is tests/reference/model_ref.py's (pre-norm RMSNorm blocks, half-split RoPE,
grouped-query causal attention, GELU or SwiGLU FFN, tied or untied head), written here with
nn.Linear weights in float32, a preallocated (1, NKV, S, HD) K/V cache per layer and SDPA over
the filled prefix. Random N(0, 0.02) weights: speed does not depend on their values.

    generate-torch.py PRESET_JSON PROMPT NEW REPS THREADS
prints one line:  torch preset=... tok_s=MEDIAN min=... max=...
"""
import json
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F


class Model(torch.nn.Module):
    def __init__(self, c, S):
        super().__init__()
        self.c = c
        C, NH, NKV, I, V = c["hidden_size"], c["num_heads"], c["num_kv_heads"], c["intermediate_size"], c["vocab_size"]
        self.NH, self.NKV, self.HD = NH, NKV, C // NH
        bias = c["use_bias"]
        self.swiglu = c["activation"] == "swiglu"
        self.emb = torch.nn.Embedding(V, C)
        self.layers = torch.nn.ModuleList()
        for _ in range(c["num_layers"]):
            L = torch.nn.Module()
            L.n1 = torch.nn.Parameter(torch.ones(C))
            L.n2 = torch.nn.Parameter(torch.ones(C))
            L.q = torch.nn.Linear(C, C, bias=bias)
            L.k = torch.nn.Linear(C, NKV * self.HD, bias=bias)
            L.v = torch.nn.Linear(C, NKV * self.HD, bias=bias)
            L.o = torch.nn.Linear(C, C, bias=bias)
            if self.swiglu:
                L.gate = torch.nn.Linear(C, I, bias=bias)
            L.up = torch.nn.Linear(C, I, bias=bias)
            L.down = torch.nn.Linear(I, C, bias=bias)
            L.kc = torch.zeros(1, NKV, S, self.HD)
            L.vc = torch.zeros(1, NKV, S, self.HD)
            self.layers.append(L)
        self.norm = torch.nn.Parameter(torch.ones(C))
        self.head = None if c["tie_embeddings"] else torch.nn.Linear(C, V, bias=False)
        for p in self.parameters():
            if p.dim() == 2:
                torch.nn.init.normal_(p, std=0.02)
        inv = 1.0 / c["rope_theta"] ** (torch.arange(0, self.HD, 2).float() / self.HD)
        ang = torch.arange(S).float()[:, None] * inv[None, :]
        self.cos = torch.cat([ang.cos(), ang.cos()], -1)
        self.sin = torch.cat([ang.sin(), ang.sin()], -1)

    def rope(self, x, pos):  # x (1, H, T, HD)
        T = x.shape[2]
        c, s = self.cos[pos:pos + T], self.sin[pos:pos + T]
        h = self.HD // 2
        return x * c + torch.cat([-x[..., h:], x[..., :h]], -1) * s

    def forward(self, ids, pos):  # ids (1, T) -> logits of the last position (V)
        c = self.c
        eps = c["layer_norm_eps"]
        T = ids.shape[1]
        x = self.emb(ids)
        for L in self.layers:
            h = F.rms_norm(x, (x.shape[-1],), L.n1, eps)
            q = L.q(h).view(1, T, self.NH, self.HD).transpose(1, 2)
            k = L.k(h).view(1, T, self.NKV, self.HD).transpose(1, 2)
            v = L.v(h).view(1, T, self.NKV, self.HD).transpose(1, 2)
            q, k = self.rope(q, pos), self.rope(k, pos)
            L.kc[:, :, pos:pos + T] = k
            L.vc[:, :, pos:pos + T] = v
            kk, vv = L.kc[:, :, :pos + T], L.vc[:, :, :pos + T]
            if T == 1:
                y = F.scaled_dot_product_attention(q, kk, vv, enable_gqa=self.NKV != self.NH)
            else:
                mask = torch.ones(T, pos + T, dtype=torch.bool).tril(pos)
                y = F.scaled_dot_product_attention(q, kk, vv, attn_mask=mask, enable_gqa=self.NKV != self.NH)
            x = x + L.o(y.transpose(1, 2).reshape(1, T, -1))
            h = F.rms_norm(x, (x.shape[-1],), L.n2, eps)
            f = F.silu(L.gate(h)) * L.up(h) if self.swiglu else F.gelu(L.up(h))
            x = x + L.down(f)
        x = F.rms_norm(x[:, -1], (x.shape[-1],), self.norm, eps)
        return (self.head(x) if self.head is not None else x @ self.emb.weight.T)[0]


def main():
    cfg_path, P, N, reps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    c = json.load(open(cfg_path))
    m = Model(c, P + N).eval()
    prompt = torch.tensor([[(i * 7919 + 13) % c["vocab_size"] for i in range(P)]])
    rates = []
    with torch.inference_mode():
        for r in range(reps + 1):  # the first run warms up
            logits = m(prompt, 0)
            tok = int(logits.argmax())
            t0 = time.perf_counter()
            for i in range(N - 1):
                logits = m(torch.tensor([[tok]]), P + i)
                tok = int(logits.argmax())
            dt = time.perf_counter() - t0
            if r > 0:
                rates.append((N - 1) / dt)
    print(f"torch preset={c.get('name', cfg_path)} threads={threads} tok_s={statistics.median(rates):.2f} "
          f"min={min(rates):.2f} max={max(rates):.2f}")


if __name__ == "__main__":
    main()
