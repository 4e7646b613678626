"""Per-timestep streaming latency at batch 1: PyTorch against the Rust engine, four models.

Columns, all from one run on this machine: PyTorch eager, PyTorch after
``TTcompile``, the engine's ``step()`` called from Python, and the engine's
``run()`` (the Rust loop, per step). Medians and p99 in microseconds, and the
ratio of PyTorch eager to each engine path. The models are the four of the
performance issue (mlp, sensor, conv, wide). ONNX Runtime, the sparse path and
the roofline bound are not measured yet.

Run: python benchmarks/bench_streaming.py [--steps N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

import tracetorch as tt


def models() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    """The benchmark models and the sample shape of one timestep."""
    torch.manual_seed(0)
    spike = tt.functional.round_ste
    return {
        "mlp": (nn.Sequential(nn.Linear(784, 128), tt.snn.LIB(128, quant_fn=spike()),
                              nn.Linear(128, 128), tt.snn.LIB(128, quant_fn=spike()),
                              nn.Linear(128, 10), tt.snn.LI(10)), (784,)),
        "sensor": (nn.Sequential(nn.Linear(6, 64), tt.snn.SRLIB(64, quant_fn=spike()),
                                 nn.Linear(64, 64), tt.snn.RLIB(64, quant_fn=spike()),
                                 nn.Linear(64, 4), tt.snn.LI(4)), (6,)),
        "conv": (nn.Sequential(nn.Conv2d(3, 16, 3), tt.snn.LIB(16, dim=-3, quant_fn=spike()),
                               nn.Flatten(), nn.Linear(16 * 8 * 8, 16),
                               tt.snn.RLIB(16, quant_fn=spike()), nn.Linear(16, 10),
                               tt.snn.LI(10)), (3, 10, 10)),
        "wide": (nn.Sequential(nn.Linear(256, 1024), tt.snn.LIB(1024, quant_fn=spike()),
                               nn.Linear(1024, 1024), tt.snn.LIB(1024, quant_fn=spike()),
                               nn.Linear(1024, 32), tt.snn.LI(32)), (256,)),
    }  # fmt: skip


def timed(step: Callable[[np.ndarray], object], xs: np.ndarray) -> list[float]:
    times = []
    for x in xs:
        start = time.perf_counter()
        step(x)
        times.append(time.perf_counter() - start)
    return times


def summary(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered) * 1e6, ordered[int(0.99 * (len(ordered) - 1))] * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, tracetorch {tt.__version__}, batch 1, 1 torch thread, "
          f"{args.steps} steps; median / p99 in microseconds per timestep")  # fmt: skip
    header = (f"{'model':<7} | {'torch eager':>15} | {'torch TTcompile':>15} | "
              f"{'engine step()':>15} | {'engine run()':>12} | {'eager/step':>10} | "
              f"{'eager/run':>9}")  # fmt: skip
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        for name, (model, shape) in models().items():
            model.eval()
            xs = rng.normal(size=(args.steps, 1, *shape)).astype(np.float32)
            path = Path(folder) / f"{name}.safetensors"
            tt.export(model, torch.zeros(1, *shape), path)
            engine = tt.runtime.load(path)
            tensors = torch.from_numpy(xs)
            with torch.no_grad():
                tt.Model.zero_states(model)  # type: ignore[arg-type]
                eager = summary(timed(model, tensors))
                tt.Model.TTcompile(model)  # type: ignore[arg-type]
                tt.Model.zero_states(model)  # type: ignore[arg-type]
                compiled = summary(timed(model, tensors))
                tt.Model.TTdecompile(model)  # type: ignore[arg-type]
            engine.reset()
            stepped = summary(timed(engine.step, xs))
            engine.reset()
            start = time.perf_counter()
            engine.run(xs)
            per_run = (time.perf_counter() - start) / args.steps * 1e6
            print(f"{name:<7} | {eager[0]:>7.1f} / {eager[1]:>5.0f} | "
                  f"{compiled[0]:>7.1f} / {compiled[1]:>5.0f} | "
                  f"{stepped[0]:>7.2f} / {stepped[1]:>5.1f} | {per_run:>12.2f} | "
                  f"{eager[0] / stepped[0]:>9.1f}x | {eager[0] / per_run:>8.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
