"""Streaming speed: PyTorch against the Rust engine, four models, one run.

Table 1, batch 1, per timestep (median / p99 microseconds): PyTorch eager,
PyTorch after ``TTcompile``, the engine's ``step()`` called from Python, its
``run()`` over a whole sequence, and the pure-Rust loop (the ``bench`` example
of tracetorch-core, timing every step); the speed-up of each engine path over
eager PyTorch; and a memory roofline: the weight bytes of one step over the
read bandwidth (measured here with numpy) of the cache level that holds them.

Table 2: throughput at 256 streams (steps x streams per second), PyTorch eager
at batch 256 against the engine with ``streams=256`` (one core).

Table 3: the event-driven path. A 1024-1024 linear layer fed by hard spikes
at 5%, 10% and 50% activity, against the same layer fed by graded values (the
dense path), per step in the pure-Rust loop.

Not measured yet: ONNX Runtime, and the compute (FMA) side of the roofline.
Run: python benchmarks/bench_streaming.py [--steps N]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
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


ROOT = Path(__file__).resolve().parents[1]


def rust_bench() -> Path:
    """Builds the pure-Rust timing loop (``examples/bench.rs``) and returns its path."""
    subprocess.run(["cargo", "build", "--quiet", "--release", "-p", "tracetorch-core",
                    "--example", "bench"], cwd=ROOT, check=True)  # fmt: skip
    return ROOT / "target" / "release" / "examples" / "bench"


def rust_loop(binary: Path, model: Path, steps: int, *extra: str) -> tuple[float, float, float]:
    """(median us, p99 us, steps per second) of the Rust loop."""
    out = subprocess.run([str(binary), str(model), str(steps), *extra], capture_output=True,
                         text=True, check=True).stdout.split()  # fmt: skip
    return float(out[0]), float(out[1]), float(out[2])


def read_bandwidth(nbytes: int) -> float:
    """Bytes per second a BLAS dot product reads from two arrays of ``nbytes`` in all."""
    a = np.ones(max(nbytes // 8, 1024), np.float32)
    b = np.ones_like(a)
    repeats = max(5, min(2000, (1 << 28) // (2 * a.nbytes)))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a.dot(b)
        times.append(time.perf_counter() - start)
    return 2 * a.nbytes / statistics.median(times)


def weight_bytes(model: nn.Module) -> int:
    return sum(p.numel() * 4 for p in model.parameters())


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
    binary = rust_bench()
    print(f"{platform.processor() or platform.machine()}, {time.strftime('%Y-%m-%d')}, "
          f"torch {torch.__version__}, tracetorch {tt.__version__}, 1 torch thread, "
          f"{args.steps} steps")  # fmt: skip
    bandwidth = {size: read_bandwidth(size) for size in (1 << 18, 1 << 22, 1 << 24, 1 << 28)}
    print("read bandwidth (numpy dot): " + ", ".join(
        f"{size >> 10} KiB {bw / 1e9:.0f} GB/s" for size, bw in bandwidth.items()))  # fmt: skip
    print()
    header = (f"{'model':<7} | {'torch eager':>13} | {'TTcompile':>13} | {'engine step()':>13} | "
              f"{'run()':>6} | {'Rust loop':>13} | {'eager/step':>10} | {'eager/Rust':>10} | "
              f"{'roofline':>8} | {'Rust/roof':>9}")  # fmt: skip
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    throughput = []
    with tempfile.TemporaryDirectory() as folder:
        engines = None
        for name, (model, shape) in models().items():
            model.eval()
            xs = rng.normal(size=(args.steps, 1, *shape)).astype(np.float32)
            path = Path(folder) / f"{name}.safetensors"
            tt.export(model, torch.zeros(1, *shape), path)
            engine = tt.runtime.load(path)
            engines = engine.simd
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
            rust = rust_loop(binary, path, max(args.steps, 5000))
            nbytes = weight_bytes(model)
            level = min((s for s in bandwidth if s >= nbytes), default=max(bandwidth))
            roof = nbytes / bandwidth[level] * 1e6
            print(f"{name:<7} | {eager[0]:>6.1f} / {eager[1]:>4.0f} | "
                  f"{compiled[0]:>6.1f} / {compiled[1]:>4.0f} | "
                  f"{stepped[0]:>6.2f} / {stepped[1]:>4.1f} | {per_run:>6.2f} | "
                  f"{rust[0]:>6.2f} / {rust[1]:>4.1f} | {eager[0] / stepped[0]:>9.1f}x | "
                  f"{eager[0] / rust[0]:>9.1f}x | {roof:>8.2f} | "
                  f"{rust[0] / roof:>8.1f}x")  # fmt: skip

            # Throughput with 256 streams.
            streams = 256
            batch = rng.normal(size=(20, streams, *shape)).astype(np.float32)
            with torch.no_grad():
                tt.Model.zero_states(model)  # type: ignore[arg-type]
                start = time.perf_counter()
                for x in torch.from_numpy(batch):
                    model(x)
                torch_rate = batch.shape[0] * streams / (time.perf_counter() - start)
            many = tt.runtime.load(path, streams=streams)
            many.run(batch[:2])
            start = time.perf_counter()
            many.run(batch)
            engine_rate = batch.shape[0] * streams / (time.perf_counter() - start)
            throughput.append((name, torch_rate, engine_rate))
        print(f"(engine kernels: {engines})")
        print()
        print(
            f"{'model':<7} | {'torch eager, batch 256':>22} | {'engine, 256 streams':>19} | ratio"
        )
        for name, torch_rate, engine_rate in throughput:
            print(f"{name:<7} | {torch_rate:>16.0f} st/s | {engine_rate:>13.0f} st/s | "
                  f"{engine_rate / torch_rate:>4.1f}x")  # fmt: skip
        print()
        event_driven(binary, Path(folder), max(args.steps, 5000))


def event_driven(binary: Path, folder: Path, steps: int) -> None:
    """A 1024-1024 layer fed by spikes at set activities, against graded inputs."""
    torch.manual_seed(0)
    spiking = nn.Sequential(
        tt.snn.LIF(1024, beta=0.01, pos_threshold=0.5), nn.Linear(1024, 1024), tt.snn.LI(1024)
    )
    graded = nn.Sequential(tt.snn.LI(1024, beta=0.01), nn.Linear(1024, 1024), tt.snn.LI(1024))
    paths = {}
    for name, model in (("spiking", spiking), ("graded", graded)):
        paths[name] = folder / f"events-{name}.safetensors"
        tt.export(model.eval(), torch.zeros(1, 1024), paths[name])
    dense = rust_loop(binary, paths["graded"], steps)
    print(f"event-driven 1024-1024 layer, Rust loop: dense (graded inputs) {dense[0]:.2f} us")
    print(f"{'activity':>8} | {'median us':>9} | {'p99 us':>7} | speed-up over dense")
    for activity in (0.05, 0.10, 0.50):
        sparse = rust_loop(binary, paths["spiking"], steps, "1", str(activity))
        print(f"{activity:>8.0%} | {sparse[0]:>9.2f} | {sparse[1]:>7.2f} | "
              f"{dense[0] / sparse[0]:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
