"""The golden file: PyTorch's outputs for the Rust tests, which run without Python.

``rust/tracetorch-core/tests/golden.safetensors`` holds, per case, an exported
model (``CASE/model``, the file's bytes), inputs ``CASE/inputs``
``[T, streams, ...]`` and PyTorch's outputs ``CASE/outputs``. The core's test
``tests/golden.rs`` streams each case on every instruction set the CPU runs,
NEON included when ``make test-neon`` runs it on aarch64 under qemu, where no
PyTorch exists. The cases: every layer of both families (per-neuron
parameters), and the three whole models of the cross-checks.

This test rebuilds the cases and checks the committed file still holds what
PyTorch computes. After a change to the layers, rewrite it with
``python python_tests/test_golden.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from test_engine_crosscheck import (
    MLP,
    TOLERANCE,
    ConvSNN,
    Residual,
    _trained_like,
    clear_draw,
    layer_model,
)
from torch import nn

import tracetorch as tt
from tracetorch.exporter import export_bytes
from tracetorch.snn import FAMILY_A, FAMILY_B

GOLDEN = Path(__file__).resolve().parents[1] / "rust/tracetorch-core/tests/golden.safetensors"
STEPS = 16
STREAMS = 2
Case = dict[str, np.ndarray]  # model, inputs, outputs


def _case(model: nn.Module, shape: tuple[int, ...], seed: int) -> Case:
    """A case's tensors: the first input draw whose firing decisions all clear ties."""
    model.eval()

    def draw(attempt: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed + 1000 * attempt)
        return 2.0 * torch.randn(STEPS, STREAMS, *shape, generator=generator)

    xs, expected = clear_draw(model, draw)
    model_bytes = export_bytes(model, xs[0, :1])
    return {
        "model": np.frombuffer(model_bytes, dtype=np.uint8),
        "inputs": xs.numpy(),
        "outputs": expected,
    }


def cases() -> dict[str, Callable[[], Case]]:
    """Every case, by name, each built on demand."""

    def layer(name: str, index: int) -> Callable[[], Case]:
        def build() -> Case:
            torch.manual_seed(index)
            return _case(_trained_like(layer_model(name, rank=1), index), (5,), seed=index)

        return build

    built: dict[str, Callable[[], Case]] = {
        name: layer(name, i) for i, name in enumerate(FAMILY_A + FAMILY_B)
    }

    def model(cls: type[nn.Module], shape: tuple[int, ...], seed: int) -> Callable[[], Case]:
        def build() -> Case:
            torch.manual_seed(seed)
            return _case(_trained_like(cls(), seed), shape, seed=seed)

        return build

    built["model_mlp"] = model(MLP, (64,), 100)
    built["model_conv"] = model(ConvSNN, (3, 8, 8), 101)
    built["model_residual"] = model(Residual, (2, 10), 102)
    return built


def build() -> dict[str, np.ndarray]:
    """The golden file's tensors."""
    return {
        f"{case}/{key}": value for case, make in cases().items() for key, value in make().items()
    }


def test_golden_file_holds_what_pytorch_computes() -> None:
    committed = load_file(GOLDEN)
    fresh = build()
    assert sorted(committed) == sorted(fresh), "cases changed: rewrite the golden file"
    for key, value in fresh.items():
        if key.endswith("/model"):
            continue  # the exporter's bytes may change; its outputs may not
        np.testing.assert_allclose(
            committed[key],
            value,
            rtol=TOLERANCE,
            atol=TOLERANCE,
            err_msg=f"{key}: rewrite with python {__file__}",
        )


def test_engine_reproduces_every_golden_case() -> None:
    """The same check as tests/golden.rs, here on the Python side of the engine."""
    committed = load_file(GOLDEN)
    names = sorted({key.split("/")[0] for key in committed})
    assert len(names) == len(FAMILY_A + FAMILY_B) + 3
    for name in names:
        xs = committed[f"{name}/inputs"]
        engine = tt.runtime.loads(committed[f"{name}/model"].tobytes(), streams=xs.shape[1])
        for isa in tt.runtime.simd_available():
            engine.set_simd(isa)
            engine.reset()
            np.testing.assert_allclose(
                engine.run(xs),
                committed[f"{name}/outputs"],
                rtol=TOLERANCE,
                atol=TOLERANCE,
                err_msg=f"{name} {isa}",
            )


if __name__ == "__main__":
    save_file(build(), GOLDEN)
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size // 1024} KiB)", file=sys.stderr)
