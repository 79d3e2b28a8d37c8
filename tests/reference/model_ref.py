#!/usr/bin/env python3
"""PyTorch reference of the hermes-llm transformer, and the parity fixtures the C model must match.

The model is written out by hand (functional, float64) so every convention is visible: pre-norm
RMSNorm blocks, half-split RoPE, grouped-query causal attention, GELU or SwiGLU FFN, tied or untied
head, mean cross-entropy with ignore index -100. It is cross-checked against an independent
formulation built from torch library pieces (nn.Linear, F.rms_norm, complex RoPE, SDPA, F.cross_entropy),
and the hand-written AdamW is cross-checked against torch.optim.AdamW. A float32 run of the same
pipeline measures what an f32 implementation can achieve; those numbers justify the tolerances
in tests/reference/README.md and are stored in each fixture. Format: see the README.

    python3 tests/reference/model_ref.py            # self-tests, then tests/fixtures/model/*.safetensors
    python3 tests/reference/model_ref.py --check    # self-tests only, write nothing
"""
import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.normpath(os.path.join(HERE, "..", "fixtures", "model"))
IGNORE = -100

# The fixtures. Sizes are odd on purpose (V, T, I) so an off-by-one in a stride cannot hide.
# "train": 3 AdamW steps on the same batch; the schedules differ per fixture so that warmup
# fractions, the cosine part and lr_min are all exercised somewhere.
FIXTURES = {
    # (a) GPT-style, nano-like, biases, GELU, tied
    "gpt_bias": dict(
        config=dict(vocab_size=97, max_seq_len=32, hidden_size=64, num_layers=2, num_heads=2,
                    num_kv_heads=2, intermediate_size=256, dropout=0.0, layer_norm_eps=1e-5,
                    use_bias=True, rope_theta=10000.0, activation="gelu", tie_embeddings=True),
        B=2, T=16, seed=1,
        train=dict(lr=1e-2, warmup=2, min_lr=1e-3, total=10, grad_clip=0.5)),
    # (b) LLaMA-style: no biases, SwiGLU, eps 1e-6, tied, 3 heads
    "llama_swiglu": dict(
        config=dict(vocab_size=101, max_seq_len=24, hidden_size=48, num_layers=2, num_heads=3,
                    num_kv_heads=3, intermediate_size=80, dropout=0.0, layer_norm_eps=1e-6,
                    use_bias=False, rope_theta=10000.0, activation="swiglu", tie_embeddings=True),
        B=2, T=13, seed=2,
        train=dict(lr=1e-2, warmup=1, min_lr=1e-3, total=4, grad_clip=0.5)),
    # (c) grouped-query attention (NH=4, NKV=2) with biases on k/v of width NKV*HD, SwiGLU,
    #     a large rope_theta, B=3, and one ignored target (-100)
    "gqa": dict(
        config=dict(vocab_size=89, max_seq_len=16, hidden_size=64, num_layers=2, num_heads=4,
                    num_kv_heads=2, intermediate_size=96, dropout=0.0, layer_norm_eps=1e-5,
                    use_bias=True, rope_theta=500000.0, activation="swiglu", tie_embeddings=True),
        B=3, T=11, seed=3, ignore=[(1, 4)],
        train=dict(lr=5e-3, warmup=0, min_lr=5e-4, total=3, grad_clip=0.5)),
    # (d) untied head, 3 layers, multi-query attention (NKV=1), GELU without biases
    "untied": dict(
        config=dict(vocab_size=67, max_seq_len=12, hidden_size=32, num_layers=3, num_heads=2,
                    num_kv_heads=1, intermediate_size=64, dropout=0.0, layer_norm_eps=1e-5,
                    use_bias=False, rope_theta=10000.0, activation="gelu", tie_embeddings=False),
        B=2, T=9, seed=4, ignore=[(0, 0), (1, 8)],
        train=dict(lr=1e-2, warmup=1, min_lr=1e-3, total=2, grad_clip=0.5)),
}
ADAM = dict(beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1)

SCHEDULE_DOC = ("step s = 0,1,2 (0-based optimizer step); if s < warmup: lr_s = lr * (s + 1) / warmup; "
                "else p = clamp((s - warmup) / (total - warmup), 0, 1) (p = 1 when total <= warmup), "
                "lr_s = min_lr + 0.5 * (lr - min_lr) * (1 + cos(pi * p))")

# ---- parameters --------------------------------------------------------------------------------


def param_specs(cfg):
    """[(name, shape, kind)] in checkpoint order. kind: emb, w (matrix), wres (residual-output
    matrix: o_proj, down_proj), bias, norm, head."""
    V, C, L = cfg["vocab_size"], cfg["hidden_size"], cfg["num_layers"]
    NH, NKV, I = cfg["num_heads"], cfg["num_kv_heads"], cfg["intermediate_size"]
    HD = C // NH
    bias = cfg["use_bias"]
    specs = [("embedding.weight", (V, C), "emb")]
    for i in range(L):
        p = f"layers.{i}."
        specs.append((p + "input_layernorm.weight", (C,), "norm"))
        for proj, out, kind in (("q", C, "w"), ("k", NKV * HD, "w"), ("v", NKV * HD, "w"), ("o", C, "wres")):
            specs.append((p + f"attention.{proj}_proj.weight", (out, C), kind))
            if bias:
                specs.append((p + f"attention.{proj}_proj.bias", (out,), "bias"))
        specs.append((p + "post_attention_layernorm.weight", (C,), "norm"))
        ffn = (["gate"] if cfg["activation"] == "swiglu" else []) + ["up"]
        for proj in ffn:
            specs.append((p + f"feed_forward.{proj}_proj.weight", (I, C), "w"))
            if bias:
                specs.append((p + f"feed_forward.{proj}_proj.bias", (I,), "bias"))
        specs.append((p + "feed_forward.down_proj.weight", (C, I), "wres"))
        if bias:
            specs.append((p + "feed_forward.down_proj.bias", (C,), "bias"))
    specs.append(("norm.weight", (C,), "norm"))
    if not cfg["tie_embeddings"]:
        specs.append(("lm_head.weight", (V, C), "head"))
    return specs


def init_params_rule(cfg, gen):
    """The init rule the C model implements (documented; the fixtures do not use it):
    N(0, 0.02) for every matrix and the embedding, o_proj/down_proj scaled by 1/sqrt(2L),
    norm weights 1, biases 0."""
    L = cfg["num_layers"]
    out = {}
    for name, shape, kind in param_specs(cfg):
        if kind == "norm":
            out[name] = torch.ones(shape)
        elif kind == "bias":
            out[name] = torch.zeros(shape)
        else:
            std = 0.02 / math.sqrt(2 * L) if kind == "wres" else 0.02
            out[name] = torch.randn(shape, generator=gen) * std
    return out


def init_params_fixture(cfg, gen):
    """Weights for the fixtures: larger than the init rule so attention is far from uniform and
    logits are spread (a wrong mask, RoPE sign or head mapping then changes the numbers a lot);
    biases and norm weights are random around 0 and 1 so neither can hide behind a constant."""
    L = cfg["num_layers"]
    out = {}
    for name, shape, kind in param_specs(cfg):
        if kind == "norm":
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif kind == "bias":
            t = 0.05 * torch.randn(shape, generator=gen)
        elif kind in ("emb", "head"):
            t = 0.3 * torch.randn(shape, generator=gen)
        else:
            fan_in = shape[1]
            std = 1.0 / math.sqrt(fan_in) / (math.sqrt(2 * L) if kind == "wres" else 1.0)
            t = std * torch.randn(shape, generator=gen)
        out[name] = t.float()
    return out


# ---- the reference model (hand-written, functional) ---------------------------------------------


def rope_tables(T, HD, theta, dtype):
    """cos, sin of shape [T, HD/2]. inv_freq is computed in float32 exactly as specified, angles
    and cos/sin in float64 from those float32 frequencies."""
    inv_freq = 1.0 / theta ** (torch.arange(0, HD, 2).float() / HD)  # f32, [HD/2]
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq.double()[None, :]
    return ang.cos().to(dtype), ang.sin().to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def apply_rope(x, cos, sin):
    """x: (B, heads, T, HD); cos/sin: (T, HD/2), repeated as [cos, cos]."""
    c = torch.cat([cos, cos], dim=-1)
    s = torch.cat([sin, sin], dim=-1)
    return x * c + rotate_half(x) * s


def rms_norm(x, w, eps):
    return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps) * w


def linear(x, P, name):
    y = x @ P[name + ".weight"].T
    b = P.get(name + ".bias")
    return y + b if b is not None else y


def gelu_erf(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def forward(cfg, P, ids):
    """logits (B, T, V) for input ids (B, T). P: name -> tensor (any float dtype)."""
    B, T = ids.shape
    C, NH, NKV = cfg["hidden_size"], cfg["num_heads"], cfg["num_kv_heads"]
    HD = C // NH
    eps = cfg["layer_norm_eps"]
    dtype = P["embedding.weight"].dtype
    cos, sin = rope_tables(T, HD, cfg["rope_theta"], dtype)
    kv_of_head = torch.arange(NH) // (NH // NKV)  # query head h reads kv head h // (NH/NKV)
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)  # True where key j > query i
    x = P["embedding.weight"][ids]  # (B, T, C)
    for i in range(cfg["num_layers"]):
        p = f"layers.{i}."
        h = rms_norm(x, P[p + "input_layernorm.weight"], eps)
        q = linear(h, P, p + "attention.q_proj").view(B, T, NH, HD).transpose(1, 2)
        k = linear(h, P, p + "attention.k_proj").view(B, T, NKV, HD).transpose(1, 2)
        v = linear(h, P, p + "attention.v_proj").view(B, T, NKV, HD).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k, v = k[:, kv_of_head], v[:, kv_of_head]  # (B, NH, T, HD)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(HD)
        att = att.masked_fill(causal, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + linear(y, P, p + "attention.o_proj")
        h = rms_norm(x, P[p + "post_attention_layernorm.weight"], eps)
        if cfg["activation"] == "swiglu":
            g = linear(h, P, p + "feed_forward.gate_proj")
            a = g * torch.sigmoid(g) * linear(h, P, p + "feed_forward.up_proj")
        else:
            a = gelu_erf(linear(h, P, p + "feed_forward.up_proj"))
        x = x + linear(a, P, p + "feed_forward.down_proj")
    x = rms_norm(x, P["norm.weight"], eps)
    head = P["embedding.weight"] if cfg["tie_embeddings"] else P["lm_head.weight"]
    return x @ head.T


def loss_fn(logits, targets):
    """Mean over the targets that are not IGNORE of -log softmax(logits)[target]."""
    V = logits.shape[-1]
    lp = logits.reshape(-1, V).log_softmax(dim=-1)
    t = targets.reshape(-1)
    keep = t != IGNORE
    nll = -lp[keep].gather(1, t[keep][:, None])[:, 0]
    return nll.sum() / keep.sum()


def loss_and_grads(cfg, P, ids, targets):
    Q = {k: v.detach().clone().requires_grad_(True) for k, v in P.items()}
    logits = forward(cfg, Q, ids)
    loss = loss_fn(logits, targets)
    loss.backward()
    return logits.detach(), loss.detach(), {k: v.grad.detach() for k, v in Q.items()}


# ---- independent formulation (cross-check of the reference itself) -----------------------------


class IndependentModel(torch.nn.Module):
    """Built from library pieces only: nn.Embedding/nn.Linear, F.rms_norm, RoPE as a complex
    rotation of (x_i, x_{i+HD/2}) pairs, SDPA(is_causal) with repeat_interleave for GQA,
    F.gelu / F.silu and F.cross_entropy(ignore_index)."""

    def __init__(self, cfg, P):
        super().__init__()
        self.cfg = cfg
        dt = P["embedding.weight"].dtype
        C, NH, NKV, I = cfg["hidden_size"], cfg["num_heads"], cfg["num_kv_heads"], cfg["intermediate_size"]
        HD = C // NH
        bias = cfg["use_bias"]

        def lin(name, i, o):
            m = torch.nn.Linear(i, o, bias=bias, dtype=dt)
            with torch.no_grad():
                m.weight.copy_(P[name + ".weight"])
                if bias:
                    m.bias.copy_(P[name + ".bias"])
            return m

        def vec(name):
            return torch.nn.Parameter(P[name].clone())

        self.emb = torch.nn.Embedding(cfg["vocab_size"], C, dtype=dt)
        with torch.no_grad():
            self.emb.weight.copy_(P["embedding.weight"])
        self.layers = torch.nn.ModuleList()
        for i in range(cfg["num_layers"]):
            p = f"layers.{i}."
            m = torch.nn.Module()
            m.n1 = vec(p + "input_layernorm.weight")
            m.n2 = vec(p + "post_attention_layernorm.weight")
            m.q = lin(p + "attention.q_proj", C, C)
            m.k = lin(p + "attention.k_proj", C, NKV * HD)
            m.v = lin(p + "attention.v_proj", C, NKV * HD)
            m.o = lin(p + "attention.o_proj", C, C)
            if cfg["activation"] == "swiglu":
                m.gate = lin(p + "feed_forward.gate_proj", C, I)
            m.up = lin(p + "feed_forward.up_proj", C, I)
            m.down = lin(p + "feed_forward.down_proj", I, C)
            self.layers.append(m)
        self.norm = vec("norm.weight")
        if not cfg["tie_embeddings"]:
            self.head = torch.nn.Parameter(P["lm_head.weight"].clone())

    def named_grads(self):
        out = {"embedding.weight": self.emb.weight.grad, "norm.weight": self.norm.grad}
        if not self.cfg["tie_embeddings"]:
            out["lm_head.weight"] = self.head.grad
        for i, m in enumerate(self.layers):
            p = f"layers.{i}."
            out[p + "input_layernorm.weight"] = m.n1.grad
            out[p + "post_attention_layernorm.weight"] = m.n2.grad
            mods = [("attention.q_proj", m.q), ("attention.k_proj", m.k), ("attention.v_proj", m.v),
                    ("attention.o_proj", m.o), ("feed_forward.up_proj", m.up),
                    ("feed_forward.down_proj", m.down)]
            if hasattr(m, "gate"):
                mods.append(("feed_forward.gate_proj", m.gate))
            for n, mod in mods:
                out[p + n + ".weight"] = mod.weight.grad
                if mod.bias is not None:
                    out[p + n + ".bias"] = mod.bias.grad
        return out

    def rope(self, x):
        B, H, T, HD = x.shape
        inv_freq = 1.0 / self.cfg["rope_theta"] ** (torch.arange(0, HD, 2).float() / HD)
        ang = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq.double())
        rot = torch.polar(torch.ones_like(ang), ang)  # e^{i angle}, (T, HD/2)
        z = torch.complex(x[..., : HD // 2].double(), x[..., HD // 2:].double()) * rot
        return torch.cat([z.real, z.imag], dim=-1).to(x.dtype)

    def forward(self, ids, targets):
        cfg = self.cfg
        B, T = ids.shape
        C, NH, NKV = cfg["hidden_size"], cfg["num_heads"], cfg["num_kv_heads"]
        HD, eps = C // NH, cfg["layer_norm_eps"]
        x = self.emb(ids)
        for m in self.layers:
            h = F.rms_norm(x, (C,), m.n1, eps)
            q = self.rope(m.q(h).view(B, T, NH, HD).transpose(1, 2))
            k = self.rope(m.k(h).view(B, T, NKV, HD).transpose(1, 2))
            v = m.v(h).view(B, T, NKV, HD).transpose(1, 2)
            k = k.repeat_interleave(NH // NKV, dim=1)
            v = v.repeat_interleave(NH // NKV, dim=1)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + m.o(y.transpose(1, 2).reshape(B, T, C))
            h = F.rms_norm(x, (C,), m.n2, eps)
            if cfg["activation"] == "swiglu":
                a = F.silu(m.gate(h)) * m.up(h)
            else:
                a = F.gelu(m.up(h), approximate="none")
            x = x + m.down(a)
        x = F.rms_norm(x, (C,), self.norm, eps)
        logits = x @ (self.emb.weight if cfg["tie_embeddings"] else self.head).T
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=IGNORE)
        return logits, loss


# ---- optimizer -----------------------------------------------------------------------------------


def lr_at(tr, s):
    """The schedule (SCHEDULE_DOC); s is the 0-based optimizer step."""
    lr, warmup, min_lr, total = tr["lr"], tr["warmup"], tr["min_lr"], tr["total"]
    if s < warmup:
        return lr * (s + 1) / warmup
    span = total - warmup
    p = (s - warmup) / span if span > 0 else 1.0
    p = min(max(p, 0.0), 1.0)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * p))


def decays(name, t):
    """Decoupled weight decay applies to 2-D tensors only: matrices, embedding, untied head."""
    return t.dim() == 2


def clip_grads(grads, clip):
    """Global-norm clipping: norm = sqrt(sum of all squared grads); if norm > clip every grad is
    multiplied by clip / norm. Returns the pre-clip norm."""
    norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads.values()))
    if norm > clip:
        scale = clip / norm
        for k in grads:
            grads[k] = grads[k] * scale
    return norm


def adamw_step(P, grads, state, t, lr):
    """One AdamW step, t = 1-based step count (bias correction). In place on P and state."""
    b1, b2, eps, wd = ADAM["beta1"], ADAM["beta2"], ADAM["eps"], ADAM["weight_decay"]
    for k in P:
        g = grads[k]
        m, v = state.setdefault(k, (torch.zeros_like(P[k]), torch.zeros_like(P[k])))
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        state[k] = (m, v)
        mhat = m / (1 - b1 ** t)
        vhat = v / (1 - b2 ** t)
        p = P[k]
        if decays(k, p):
            p = p - lr * wd * p
        P[k] = p - lr * mhat / (torch.sqrt(vhat) + eps)


def train3(cfg, tr, P0, ids, targets, dtype):
    """3 steps on the same batch in `dtype`. Returns dict with per-step losses (4: before each
    step and after the last), pre-clip grad norms, lrs, first-step logits/loss/grads, final P."""
    P = {k: v.to(dtype) for k, v in P0.items()}
    state, out = {}, dict(losses=[], gradnorm=[], lr=[])
    for s in range(3):
        logits, loss, grads = loss_and_grads(cfg, P, ids, targets)
        if s == 0:
            out.update(logits=logits, loss=loss, grads={k: g.clone() for k, g in grads.items()})
        out["losses"].append(float(loss))
        out["gradnorm"].append(clip_grads(grads, tr["grad_clip"]))
        lr = lr_at(tr, s)
        out["lr"].append(lr)
        adamw_step(P, grads, state, s + 1, lr)
    with torch.no_grad():
        out["losses"].append(float(loss_fn(forward(cfg, P, ids), targets)))
    out["params"] = P
    return out


# ---- self-tests ----------------------------------------------------------------------------------


def make_batch(fx, gen):
    cfg = fx["config"]
    V, B, T = cfg["vocab_size"], fx["B"], fx["T"]
    ids = torch.randint(0, V, (B, T + 1), generator=gen)
    inputs, targets = ids[:, :T].clone(), ids[:, 1:].clone()
    for b, t in fx.get("ignore", []):
        targets[b, t] = IGNORE
    return inputs, targets


def selftest_independent(name, fx, P, ids, targets, ref):
    model = IndependentModel(fx["config"], {k: v.double() for k, v in P.items()})
    logits, loss = model(ids, targets)
    loss.backward()
    g = model.named_grads()
    assert set(g) == set(ref["grads"]), (name, set(g) ^ set(ref["grads"]))
    dl = float((logits.detach() - ref["logits"]).abs().max())
    dloss = abs(float(loss.detach()) - float(ref["loss"]))
    dg = max(float((g[k] - ref["grads"][k]).abs().max() / ref["grads"][k].norm().clamp_min(1e-30))
             for k in g)
    assert dl < 1e-10 and dloss < 1e-12 and dg < 1e-9, (name, dl, dloss, dg)
    # causality: changing the last input token must not change earlier logits
    ids2 = ids.clone()
    ids2[:, -1] = (ids2[:, -1] + 1) % fx["config"]["vocab_size"]
    with torch.no_grad():
        l2 = forward(fx["config"], {k: v.double() for k, v in P.items()}, ids2)
    assert float((l2[:, :-1] - ref["logits"][:, :-1]).abs().max()) < 1e-12, name
    assert float((l2[:, -1] - ref["logits"][:, -1]).abs().max()) > 1e-6, name
    return dl, dloss, dg


def selftest_adamw_vs_torch(name, fx, P, ids, targets, ref):
    """torch.optim.AdamW (two param groups: 2-D tensors decay, the rest don't), lr set per step,
    grads computed and clipped by us, all in float64: must equal the hand-written optimizer."""
    cfg, tr = fx["config"], fx["train"]
    Q = {k: torch.nn.Parameter(v.double().clone()) for k, v in P.items()}
    groups = [dict(params=[q for k, q in Q.items() if decays(k, q)], weight_decay=ADAM["weight_decay"]),
              dict(params=[q for k, q in Q.items() if not decays(k, q)], weight_decay=0.0)]
    opt = torch.optim.AdamW(groups, lr=tr["lr"], betas=(ADAM["beta1"], ADAM["beta2"]), eps=ADAM["eps"],
                            foreach=False, fused=False)
    for s in range(3):
        _, _, grads = loss_and_grads(cfg, {k: q.detach() for k, q in Q.items()}, ids, targets)
        clip_grads(grads, tr["grad_clip"])
        for k, q in Q.items():
            q.grad = grads[k]
        for grp in opt.param_groups:
            grp["lr"] = lr_at(tr, s)
        opt.step()
    d = max(float((Q[k].detach() - ref["params"][k]).abs().max()) for k in Q)
    assert d < 1e-12, (name, d)
    return d


def selftest_schedule():
    tr = dict(lr=1.0, warmup=4, min_lr=0.1, total=8)
    assert [lr_at(tr, s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert abs(lr_at(tr, 6) - (0.1 + 0.45 * (1 + math.cos(math.pi * 0.5)))) < 1e-15
    assert lr_at(tr, 8) == lr_at(tr, 100) == 0.1
    assert lr_at(dict(lr=1.0, warmup=0, min_lr=0.0, total=0), 0) == 0.0


# ---- fixtures ------------------------------------------------------------------------------------


def rel_to_norm(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().norm().clamp_min(1e-30))


def build(name, fx):
    cfg, tr = fx["config"], fx["train"]
    gen = torch.Generator().manual_seed(1000 + fx["seed"])
    P = init_params_fixture(cfg, gen)
    ids, targets = make_batch(fx, gen)

    ref = train3(cfg, tr, P, ids, targets, torch.float64)
    indep = selftest_independent(name, fx, P, ids, targets, ref)
    adam_d = selftest_adamw_vs_torch(name, fx, P, ids, targets, ref)
    assert all(n > tr["grad_clip"] for n in ref["gradnorm"]), (name, ref["gradnorm"])

    # What a float32 implementation of the same math achieves (PyTorch f32 on CPU).
    f32 = train3(cfg, tr, P, ids, targets, torch.float32)
    dev = dict(
        logits_abs=float((f32["logits"].double() - ref["logits"]).abs().max()),
        loss_abs=abs(float(f32["loss"]) - float(ref["loss"])),
        grad_rel_norm=max(rel_to_norm(f32["grads"][k], ref["grads"][k]) for k in P),
        adamw3_abs=max(float((f32["params"][k].double() - ref["params"][k]).abs().max()) for k in P),
        adamw3_rel_update=max(
            float((f32["params"][k].double() - ref["params"][k]).norm()
                  / (ref["params"][k] - P[k].double()).norm().clamp_min(1e-30)) for k in P),
        losses_abs=max(abs(a - b) for a, b in zip(f32["losses"], ref["losses"])),
    )

    tensors = {k: v.contiguous() for k, v in P.items()}
    tensors["input_ids"] = ids.to(torch.int32).contiguous()
    tensors["targets"] = targets.to(torch.int32).contiguous()
    tensors["expected.logits"] = ref["logits"].float().contiguous()
    tensors["expected.loss"] = ref["loss"].float().reshape(1)
    for k in P:
        tensors["grad." + k] = ref["grads"][k].float().contiguous()
        tensors["adamw3." + k] = ref["params"][k].float().contiguous()
    tensors["gradnorm"] = torch.tensor(ref["gradnorm"], dtype=torch.float32)
    tensors["lr"] = torch.tensor(ref["lr"], dtype=torch.float32)
    tensors["losses"] = torch.tensor(ref["losses"], dtype=torch.float32)

    train_meta = dict(tr, steps=3, batches="same batch (input_ids, targets) every step",
                      **ADAM, schedule=SCHEDULE_DOC,
                      clip="norm = sqrt(sum over all params of sum(g^2)) before clipping; "
                           "if norm > grad_clip: g *= grad_clip / norm",
                      weight_decay_applies_to="2-D tensors only (matrices, embedding, lm_head); "
                                              "not norm weights or biases",
                      adamw="m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; mhat = m/(1-b1^t); "
                            "vhat = v/(1-b2^t); if 2-D: p -= lr*wd*p; p -= lr*mhat/(sqrt(vhat)+eps); "
                            "t = 1,2,3; m = v = 0 initially")
    meta = {
        "format": "pt",
        "generator": "tests/reference/model_ref.py",
        "fixture": name,
        "config": json.dumps(cfg),
        "train": json.dumps(train_meta),
        "batch": json.dumps(dict(B=fx["B"], T=fx["T"], ignore_index=IGNORE,
                                 n_ignored=len(fx.get("ignore", [])))),
        "tolerances": json.dumps(TOLERANCES),
        "f32_deviation": json.dumps(dev),
        "torch_version": torch.__version__,
    }
    return tensors, meta, dict(indep=indep, adam=adam_d, dev=dev, gradnorm=ref["gradnorm"],
                               lr=ref["lr"], losses=ref["losses"])


# The C side must meet these (see README for the reasoning); check_fixtures.py asserts that a float32
# PyTorch run of the same math meets them with a margin.
TOLERANCES = dict(logits_abs=1e-4, loss_abs=1e-4, grad_rel_norm=1e-3, adamw3_rel_update=2e-2,
                  adamw3_abs=3e-3, losses_abs=1e-4)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="run the self-tests only")
    ap.add_argument("--out", default=OUT_DIR)
    ap.add_argument("--only", help="comma-separated fixture names")
    args = ap.parse_args()
    torch.set_num_threads(1)  # deterministic reductions, reproducible fixtures
    selftest_schedule()
    names = args.only.split(",") if args.only else list(FIXTURES)
    if not args.check:
        os.makedirs(args.out, exist_ok=True)
    for name in names:
        tensors, meta, info = build(name, FIXTURES[name])
        for k, v in info["dev"].items():
            assert v <= TOLERANCES[k] / 4, f"{name}: float32 deviation {k}={v:g} too close to the tolerance"
        print(f"{name}: loss {info['losses'][0]:.6f} -> {info['losses'][3]:.6f}, "
              f"gradnorm {', '.join(f'{g:.3f}' for g in info['gradnorm'])}, "
              f"lr {', '.join(f'{x:g}' for x in info['lr'])}")
        print(f"  independent model: logits {info['indep'][0]:.1e} loss {info['indep'][1]:.1e} "
              f"grad {info['indep'][2]:.1e}; torch AdamW {info['adam']:.1e}")
        print("  float32 deviation: " + ", ".join(f"{k} {v:.2e}" for k, v in info["dev"].items()))
        if not args.check:
            path = os.path.join(args.out, name + ".safetensors")
            save_file(tensors, path, metadata=meta)
            print(f"  wrote {path} ({os.path.getsize(path)} bytes, {len(tensors)} tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
