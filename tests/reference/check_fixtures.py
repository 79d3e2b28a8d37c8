#!/usr/bin/env python3
"""Reload every tests/fixtures/model/*.safetensors and check that it is internally consistent.

For each fixture: the metadata parses and names every key the README promises; the tensor set is
exactly weights + input_ids/targets + expected.* + grad.* + adamw3.* + gradnorm/lr/losses with the
right dtypes and shapes; token ids are in range and the ignored targets match the metadata; and
recomputing everything in float64 from the STORED float32 weights (with model_ref.py's model and
optimizer) reproduces the stored logits, loss, gradients, schedule, clipping norms and AdamW
parameters to float32 rounding. It also re-runs the pipeline in float32 and asserts the deviation
stays well inside the tolerances the C side is held to. Exit status 0 iff all fixtures pass.

    python3 tests/reference/check_fixtures.py [FILE...]
"""
import glob
import json
import math
import os
import sys

import torch
from safetensors import safe_open

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_ref as M  # noqa: E402

CONFIG_KEYS = ["vocab_size", "max_seq_len", "hidden_size", "num_layers", "num_heads", "num_kv_heads",
               "intermediate_size", "dropout", "layer_norm_eps", "use_bias", "rope_theta", "activation",
               "tie_embeddings"]
TRAIN_KEYS = ["lr", "warmup", "min_lr", "total", "beta1", "beta2", "eps", "weight_decay", "grad_clip",
              "steps"]


def close(a, b, tol, what):
    d = float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
    if not d <= tol:
        raise AssertionError(f"{what}: max abs diff {d:.3e} > {tol:.1e}")


def check(path):
    with safe_open(path, "pt") as f:
        meta = f.metadata()
        T = {k: f.get_tensor(k) for k in f.keys()}
    name = os.path.basename(path)
    for k in ("format", "config", "train", "batch", "tolerances", "f32_deviation", "generator"):
        assert k in meta, f"{name}: metadata lacks '{k}'"
    assert meta["format"] == "pt"
    cfg = json.loads(meta["config"])
    tr = json.loads(meta["train"])
    batch = json.loads(meta["batch"])
    tol = json.loads(meta["tolerances"])
    assert list(cfg) == CONFIG_KEYS, f"{name}: config keys {list(cfg)}"
    for k in TRAIN_KEYS:
        assert k in tr, f"{name}: train lacks '{k}'"
    assert cfg["dropout"] == 0.0 and cfg["hidden_size"] % cfg["num_heads"] == 0
    assert cfg["num_heads"] % cfg["num_kv_heads"] == 0 and (cfg["hidden_size"] // cfg["num_heads"]) % 2 == 0
    assert (tr["beta1"], tr["beta2"], tr["eps"], tr["weight_decay"], tr["steps"]) == (0.9, 0.95, 1e-8, 0.1, 3)

    # exactly the promised tensors, with the right dtypes and shapes
    specs = M.param_specs(cfg)
    B, Tn, V = batch["B"], batch["T"], cfg["vocab_size"]
    want = {}
    for pname, shape, _ in specs:
        for prefix in ("", "grad.", "adamw3."):
            want[prefix + pname] = (torch.float32, tuple(shape))
    want.update({"input_ids": (torch.int32, (B, Tn)), "targets": (torch.int32, (B, Tn)),
                 "expected.logits": (torch.float32, (B, Tn, V)), "expected.loss": (torch.float32, (1,)),
                 "gradnorm": (torch.float32, (3,)), "lr": (torch.float32, (3,)),
                 "losses": (torch.float32, (4,))})
    assert set(T) == set(want), f"{name}: tensors differ: {sorted(set(T) ^ set(want))}"
    for k, (dt, shape) in want.items():
        assert T[k].dtype == dt and tuple(T[k].shape) == shape, f"{name}: {k} is {T[k].dtype} {tuple(T[k].shape)}"
    ids, targets = T["input_ids"].long(), T["targets"].long()
    assert Tn <= cfg["max_seq_len"] and 0 <= int(ids.min()) and int(ids.max()) < V
    kept = targets[targets != M.IGNORE]
    assert 0 <= int(kept.min()) and int(kept.max()) < V
    assert int((targets == M.IGNORE).sum()) == batch["n_ignored"]
    # targets are the inputs shifted by one (one stream of T+1 tokens per row), except ignored ones
    nxt, tgt = ids[:, 1:], targets[:, :-1]
    assert torch.equal(nxt[tgt != M.IGNORE], tgt[tgt != M.IGNORE]), f"{name}: targets are not ids shifted by one"

    # recompute from the stored f32 weights in f64
    P = {p: T[p] for p, _, _ in specs}
    ref = M.train3(cfg, tr, P, ids, targets, torch.float64)
    close(T["expected.logits"], ref["logits"], 1e-5, f"{name}: expected.logits")
    close(T["expected.loss"], ref["loss"].reshape(1), 1e-6, f"{name}: expected.loss")
    for p in P:
        g = ref["grads"][p]
        close(T["grad." + p], g, 1e-6 * max(1.0, float(g.abs().max())), f"{name}: grad.{p}")
        close(T["adamw3." + p], ref["params"][p], 1e-6, f"{name}: adamw3.{p}")
    close(T["gradnorm"], torch.tensor(ref["gradnorm"]), 1e-5, f"{name}: gradnorm")
    close(T["losses"], torch.tensor(ref["losses"]), 1e-5, f"{name}: losses")
    assert abs(float(T["losses"][0]) - float(T["expected.loss"][0])) < 1e-6

    # the schedule, recomputed from the formula text's definition (independently of lr_at)
    for s in range(3):
        if s < tr["warmup"]:
            lr = tr["lr"] * (s + 1) / tr["warmup"]
        else:
            span = tr["total"] - tr["warmup"]
            p = min(max((s - tr["warmup"]) / span, 0.0), 1.0) if span > 0 else 1.0
            lr = tr["min_lr"] + 0.5 * (tr["lr"] - tr["min_lr"]) * (1 + math.cos(math.pi * p))
        assert abs(float(T["lr"][s]) - lr) <= 1e-7 * lr, f"{name}: lr[{s}] {float(T['lr'][s])} != {lr}"
    # clipping must actually happen at every step, or the fixture would not test it
    assert all(float(n) > tr["grad_clip"] for n in T["gradnorm"]), f"{name}: gradnorm {T['gradnorm'].tolist()}"

    # what float32 achieves, against the tolerances the C side is held to
    f32 = M.train3(cfg, tr, P, ids, targets, torch.float32)
    dev = dict(
        logits_abs=float((f32["logits"].double() - ref["logits"]).abs().max()),
        loss_abs=abs(float(f32["loss"]) - float(ref["loss"])),
        grad_rel_norm=max(M.rel_to_norm(f32["grads"][p], ref["grads"][p]) for p in P),
        adamw3_abs=max(float((f32["params"][p].double() - ref["params"][p]).abs().max()) for p in P),
        adamw3_rel_update=max(float((f32["params"][p].double() - ref["params"][p]).norm()
                                    / (ref["params"][p] - P[p].double()).norm().clamp_min(1e-30)) for p in P),
        losses_abs=max(abs(a - b) for a, b in zip(f32["losses"], ref["losses"])),
    )
    for k, v in dev.items():
        assert v <= tol[k] / 4, f"{name}: float32 deviation {k} = {v:.2e} vs tolerance {tol[k]:.1e}"
    return dev


def main(argv):
    torch.set_num_threads(1)
    paths = argv[1:] or sorted(glob.glob(os.path.join(M.OUT_DIR, "*.safetensors")))
    if not paths:
        print("no fixtures found", file=sys.stderr)
        return 1
    bad = 0
    for p in paths:
        try:
            dev = check(p)
            print(f"ok   {os.path.basename(p)}  " + " ".join(f"{k}={v:.1e}" for k, v in dev.items()))
        except AssertionError as e:
            bad += 1
            print(f"FAIL {os.path.basename(p)}: {e}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
