#!/usr/bin/env python3
"""Write tests/fixtures/safetensors/py_written.safetensors with the `safetensors` package.

test-safetensors.c reads it back and checks every value below, so the C reader is tested against
files it did not write (the Python writer orders data by dtype size, then name, and pads the
header). Needs torch (for BF16) and safetensors. Run from anywhere:
    python3 tests/reference/make_safetensors_fixture.py
"""
import os

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "safetensors", "py_written.safetensors")


def main():
    tensors = {
        "a.f32": torch.arange(6, dtype=torch.float32).reshape(2, 3) * 0.5 - 1.0,
        "b.bf16": torch.tensor([1.0, -2.5, 3.140625, float("inf")], dtype=torch.bfloat16),
        "c.f16": torch.tensor([[0.5, -1.0], [65504.0, 2.0**-24]], dtype=torch.float16),
        "d.i32": torch.tensor([-1, 0, 2**31 - 1], dtype=torch.int32),
        "e.i64": torch.tensor([5, -7], dtype=torch.int64),
        "f.u8": torch.arange(5, dtype=torch.uint8),
        "g.scalar": torch.tensor(42.0, dtype=torch.float32),
        "h.empty": torch.zeros(0, 3, dtype=torch.float32),
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(tensors, OUT, metadata={"format": "pt", "producer": "make_safetensors_fixture.py"})
    print("wrote", os.path.normpath(OUT), os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
