#!/usr/bin/env python3
"""Writes tests/fixtures/quant/q8_0.bin: f32 rows and what the `gguf` package's q8_0 quantiser
(gguf.quants, a copy of ggml's quantize_row_q8_0_ref) and dequantiser make of them. test-packed
checks hm_quantize_q8_0 / hm_dequantize_q8_0 against it byte for byte.

Layout (little-endian): u32 n (a multiple of 32), n f32 inputs, n/32 * 34 q8_0 bytes, n f32
dequantised values. The blocks cover the awkward cases: all zeros, exact .5 ties (ggml rounds half
away from zero), a lone large value, tiny values whose scale is an f16 subnormal, one that
underflows to a zero scale, mixed signs and ordinary N(0, 0.02) weights.
"""
import os
import struct
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

rng = np.random.default_rng(17)
blocks = [
    np.zeros(32),
    (np.arange(32) - 16) * 0.25,                  # amax 4: q = x * 127/4 has .5 ties
    np.where(np.arange(32) == 5, 3.0, 0.001),     # one large value, the rest round to 0 or 1
    np.linspace(-1e-6, 1e-6, 32),                 # d = 1e-6/127: an f16 subnormal
    np.full(32, 1e-12),                           # d underflows to 0 in f16
    rng.uniform(-127.4, 127.4, 32),
    np.array([(-1) ** i * (i + 0.5) for i in range(32)]),
] + [rng.normal(0, 0.02, 32) for _ in range(9)]
x = np.concatenate(blocks).astype(np.float32)
q = quants.quantize(x.reshape(-1, 32), T.Q8_0).reshape(-1)
dq = quants.dequantize(q.reshape(-1, 34), T.Q8_0).reshape(-1).astype(np.float32)
out = os.path.join(os.path.dirname(__file__), "..", "fixtures", "quant", "q8_0.bin")
with open(out, "wb") as f:
    f.write(struct.pack("<I", x.size) + x.tobytes() + q.tobytes() + dq.tobytes())
print(f"wrote {out}: {x.size} values, {q.size} q8_0 bytes", file=sys.stderr)
