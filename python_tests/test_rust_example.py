"""The pure-Rust streaming example gives the same rows as the engine (and so as PyTorch)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import torch
from torch import nn

import tracetorch as tt

ROOT = Path(__file__).resolve().parents[1]


def test_stream_example_matches_engine(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), tt.snn.RLIB(8, quant_fn=tt.functional.round_ste()),
                          nn.Linear(8, 2), tt.snn.LI(2)).eval()  # fmt: skip
    path = tmp_path / "model.safetensors"
    tt.export(model, torch.zeros(1, 3), path)
    inputs = np.random.default_rng(0).normal(size=(25, 3)).astype(np.float32)
    csv = "\n".join(",".join(repr(float(v)) for v in row) for row in inputs) + "\n"
    result = subprocess.run(
        ["cargo", "run", "-q", "-p", "tracetorch-core", "--example", "stream", "--", str(path)],
        input=csv, capture_output=True, text=True, cwd=ROOT, timeout=600, check=True,
    )  # fmt: skip
    rows = np.array([[float(v) for v in line.split(",")] for line in result.stdout.split()])
    expected = tt.runtime.load(path).run(inputs)
    assert rows.shape == expected.shape == (25, 2)
    np.testing.assert_allclose(rows, expected, rtol=1e-6, atol=1e-6)
