"""Streaming speed: PyTorch, ONNX Runtime and the Rust engine, four models, one run.

Table 1, batch 1, per timestep (median / p99 microseconds), all on one core:
PyTorch eager, PyTorch after ``TTcompile``, ONNX Runtime (one ``session.run``
per step, the states passed in and out as tensors), the engine's ``step()``
called from Python, its ``run()`` over a whole sequence, and the pure-Rust loop
(the ``bench`` example of tracetorch-core, timing every step); the speed-up of
the engine paths over eager PyTorch and of ``step()`` over ONNX Runtime; and
the roofline of one step, detailed in the table under it: the larger of the
weight bytes over the read bandwidth (measured here with numpy) of the cache
level that holds them, and of the multiply-adds over the peak float32 FMA rate
of one core (measured here with cache-resident matrix products).

Table 2: throughput at 256 streams (steps x streams per second): PyTorch eager
at batch 256 on one core, ONNX Runtime at batch 256 on every core, and the
engine with ``streams=256`` on one core and on every core (``set_threads``).

Table 3: the event-driven path. A 1024-1024 linear layer fed by hard spikes
at 5%, 10% and 50% activity, against the same layer fed by graded values (the
dense path), per step in the pure-Rust loop.

ONNX Runtime needs the ``bench`` extra (onnx, onnxruntime, onnxscript); without
it its columns read n/a. Every exported model is checked against PyTorch over
20 steps before it is timed; up to 1% of the elements may differ (spikes that
a threshold tie flips, see ``check_onnx``), and the run prints how many did.
Run: python benchmarks/bench_streaming.py [--steps N]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import os
import platform
import statistics
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

import tracetorch as tt

STREAMS = 256
CHECK_STEPS = 20  # steps over which each ONNX export is checked against PyTorch
# Fraction of the checked elements allowed off PyTorch by more than 1e-4 (see check_onnx).
MAX_MISMATCH = 0.01


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


def cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


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


def peak_flops() -> float:
    """Float32 FLOP/s of one core: the best of many cache-resident matrix products.

    ``torch.mm`` rather than numpy: torch's threads are set from inside the
    process (``set_num_threads(1)`` in :func:`main`), numpy's BLAS threads only
    before it is imported. At most 768 KiB for the three matrices: they stay in L2.
    """
    best = 0.0
    for n in (128, 192, 256):
        a, b, out = torch.rand(n, n), torch.rand(n, n), torch.empty(n, n)
        inner = max(1, (1 << 26) // n**3)  # ~0.1 GFLOP a timing: far above timer noise
        for _ in range(30):
            start = time.perf_counter()
            for _ in range(inner):
                torch.mm(a, b, out=out)
            best = max(best, 2 * n**3 * inner / (time.perf_counter() - start))
    return best


def weight_bytes(model: nn.Module) -> int:
    return sum(p.numel() * 4 for p in model.parameters())


def macs_per_step(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-adds of one step at batch 1 in the linear and convolution layers.

    The neurons' elementwise updates (a few operations per neuron) are left out:
    these models do 36 (sensor) to 650 (wide) multiply-adds per neuron.
    """
    total = 0

    def count(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
        else:
            assert isinstance(module, nn.Linear)  # the only other layer hooked
            per_output = module.in_features
        total += output.numel() * per_output

    heavy = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    hooks = [m.register_forward_hook(count) for m in heavy]
    with torch.no_grad():
        tt.Model.zero_states(model)  # type: ignore[arg-type]
        model(torch.zeros(1, *shape))
        tt.Model.zero_states(model)  # type: ignore[arg-type]
    for hook in hooks:
        hook.remove()
    return total


@dataclass(frozen=True)
class Roofline:
    """The two lower bounds of one step at batch 1, in microseconds."""

    nbytes: int  # weight bytes
    level: int  # bytes of the bandwidth measurement (cache level) that holds them
    memory: float  # weight bytes / that level's read bandwidth
    macs: int
    compute: float  # 2 * MACs / peak FLOP/s

    @property
    def bound(self) -> float:
        return max(self.memory, self.compute)

    @property
    def binding(self) -> str:
        return "weights" if self.memory >= self.compute else "FMA"


def roofline(
    model: nn.Module, shape: tuple[int, ...], bandwidth: dict[int, float], peak: float
) -> Roofline:
    """Both lower bounds of one step of ``model`` at batch 1 on one core."""
    nbytes = weight_bytes(model)
    level = min((s for s in bandwidth if s >= nbytes), default=max(bandwidth))
    macs = macs_per_step(model, shape)
    return Roofline(nbytes, level, nbytes / bandwidth[level] * 1e6, macs, 2 * macs / peak * 1e6)


def onnx_runtime() -> Optional[ModuleType]:
    """``onnxruntime``, imported only if it and the exporter's needs are installed."""
    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if not importlib.util.find_spec(m)]
    if missing:
        print(f"ONNX Runtime columns skipped: {', '.join(missing)} not installed "
              "(pip install -e '.[bench]')")  # fmt: skip
        return None
    return importlib.import_module("onnxruntime")


class OneStep(nn.Module):
    """One timestep as a function ``(x, *states) -> (y, *new_states)``, for export.

    traceTorch layers hold their states as tensor attributes, which an exported
    graph would freeze as constants; setting them from the inputs
    (``load_states``) and returning them (``save_states``) makes them plain
    inputs and outputs instead.
    """

    def __init__(self, model: nn.Module, keys: list[str]) -> None:
        super().__init__()
        self.model = model
        self.keys = keys

    def forward(self, x: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        tt.Model.load_states(self.model, dict(zip(self.keys, states)))  # type: ignore[arg-type]
        y = self.model(x)
        new = tt.Model.save_states(self.model)  # type: ignore[arg-type]
        return (y, *(new[key] for key in self.keys))


def export_onnx(model: nn.Module, shape: tuple[int, ...], batch: int, path: Path) -> list[str]:
    """Writes one timestep of ``model`` at ``batch`` to ``path``; returns the state names.

    Shapes are static (one file per batch size), which gives ONNX Runtime its
    best plan, and the parameter transforms are baked in (``TTcompile``), as for
    inference. The dynamo exporter, because the TorchScript one (``dynamo=False``)
    writes a negative Transpose permutation for the ``movedim`` of conv's
    ``LIB(dim=-3)``, which ONNX Runtime refuses to load.
    """
    x = torch.zeros(batch, *shape)
    with torch.no_grad():
        tt.Model.TTcompile(model)  # type: ignore[arg-type]
        tt.Model.zero_states(model)  # type: ignore[arg-type]
        model(x)  # creates every state, at its shape
        states = tt.Model.save_states(model)  # type: ignore[arg-type]
        keys = list(states)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # notes on the traced shape checks of the layers
            torch.onnx.export(OneStep(model, keys).eval(), (x, *states.values()), path,
                              dynamo=True, verbose=False, input_names=["x", *keys],
                              output_names=["y", *(f"{key}.next" for key in keys)])  # fmt: skip
        tt.Model.zero_states(model)  # type: ignore[arg-type]
        tt.Model.TTdecompile(model)  # type: ignore[arg-type]
    return keys


class OnnxStep:
    """Steps an exported timestep with ONNX Runtime, feeding its new states back."""

    def __init__(self, ort: ModuleType, path: Path, keys: list[str], threads: int) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.shapes = {i.name: i.shape for i in self.session.get_inputs()}
        self.keys = keys
        self.feed: dict[str, np.ndarray] = {}
        self.reset()

    def reset(self) -> None:
        self.feed = {key: np.zeros(self.shapes[key], np.float32) for key in self.keys}

    def step(self, x: np.ndarray) -> np.ndarray:
        # One feed dict for every step; the output arrays become the next inputs as they
        # are. (IOBinding, re-bound each step to swap state buffers, was slower here.)
        self.feed["x"] = x
        y, *states = self.session.run(None, self.feed)
        self.feed.update(zip(self.keys, states))
        return y

    def run(self, xs: np.ndarray) -> None:
        for x in xs:
            self.step(x)


def onnx_step(
    ort: ModuleType,
    model: nn.Module,
    shape: tuple[int, ...],
    xs: np.ndarray,
    threads: int,
    path: Path,
) -> tuple[OnnxStep, float]:
    """Exports ``model`` at the batch of ``xs`` ([T, batch, ...]) and checks it on ``xs``.

    Returns the stepper and the fraction of elements off PyTorch (:func:`check_onnx`).
    """
    keys = export_onnx(model, shape, xs.shape[1], path)
    stepper = OnnxStep(ort, path, keys, threads)
    return stepper, check_onnx(stepper, model, xs[:CHECK_STEPS])


def check_onnx(stepper: OnnxStep, model: nn.Module, xs: np.ndarray) -> float:
    """Steps ONNX Runtime and PyTorch side by side, each feeding back its own states.

    Returns the fraction of all output and state elements that differ by more
    than 1e-4 (absolute and relative), and asserts it is at most MAX_MISMATCH.
    It is not always 0: a membrane on its threshold to the last bit can fire on
    one side only (the weighted sums are added in another order), and that
    stream then differs from there on. One such spike, at batch 256 in the wide
    model, made 0.2% of the elements differ; states not fed back make half to
    all of them differ.
    """
    stepper.reset()
    off = total = 0
    with torch.no_grad():
        tt.Model.zero_states(model)  # type: ignore[arg-type]
        for x in xs:
            pairs = [(stepper.step(x), model(torch.from_numpy(x)).numpy())]
            for key, state in tt.Model.save_states(model).items():  # type: ignore[arg-type]
                pairs.append((stepper.feed[key], state.numpy()))
            for got, expected in pairs:
                assert got.shape == expected.shape, (got.shape, expected.shape)
                off += int(np.count_nonzero(~np.isclose(got, expected, rtol=1e-4, atol=1e-4)))
                total += got.size
        tt.Model.zero_states(model)  # type: ignore[arg-type]
    stepper.reset()
    assert off <= MAX_MISMATCH * total, f"ONNX Runtime differs from PyTorch on {off}/{total}"
    return off / total


def timed(step: Callable[[Any], object], xs: Iterable[Any]) -> list[float]:
    times = []
    for x in xs:
        start = time.perf_counter()
        step(x)
        times.append(time.perf_counter() - start)
    return times


def summary(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered) * 1e6, ordered[int(0.99 * (len(ordered) - 1))] * 1e6


def rate(run: Callable[[np.ndarray], object], batch: np.ndarray, repeats: int = 5) -> float:
    """Median steps x streams per second of ``run`` over ``batch`` [T, streams, ...]."""
    run(batch[:2])  # states, scratch buffers and thread pools exist before the timing
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(batch)
        times.append(time.perf_counter() - start)
    return batch.shape[0] * batch.shape[1] / statistics.median(times)


def torch_run(model: nn.Module) -> Callable[[np.ndarray], None]:
    """Steps ``model`` through a sequence, starting from fresh states."""
    tt.Model.zero_states(model)  # type: ignore[arg-type]

    def run(xs: np.ndarray) -> None:
        with torch.no_grad():
            for x in torch.from_numpy(xs):
                model(x)

    return run


Timing = tuple[float, float]  # median, p99 microseconds


@dataclass(frozen=True)
class Latency:
    """Per-step times of one model at batch 1 (see the module docstring)."""

    eager: Timing
    compiled: Timing
    onnx: Optional[Timing]  # None without onnxruntime
    onnx_off: Optional[float]  # fraction of elements off PyTorch in the check
    step: Timing
    run: float  # median only: one call for the whole sequence
    rust: Timing


def latency(
    model: nn.Module,
    shape: tuple[int, ...],
    xs: np.ndarray,
    path: Path,
    binary: Path,
    ort: Optional[ModuleType],
) -> Latency:
    """Times every path on the sequence ``xs`` [T, 1, *shape]; ``path`` is the exported model."""
    tensors = torch.from_numpy(xs)
    with torch.no_grad():
        tt.Model.zero_states(model)  # type: ignore[arg-type]
        eager = summary(timed(model, tensors))
        tt.Model.TTcompile(model)  # type: ignore[arg-type]
        tt.Model.zero_states(model)  # type: ignore[arg-type]
        compiled = summary(timed(model, tensors))
        tt.Model.TTdecompile(model)  # type: ignore[arg-type]
    onnx = onnx_off = None
    if ort:  # one thread at batch 1, like torch
        single, onnx_off = onnx_step(ort, model, shape, xs, 1, path.with_suffix(".onnx"))
        onnx = summary(timed(single.step, xs))
    engine = tt.runtime.load(path)
    stepped = summary(timed(engine.step, xs))
    engine.reset()
    start = time.perf_counter()
    engine.run(xs)
    per_run = (time.perf_counter() - start) / len(xs) * 1e6
    rust = rust_loop(binary, path, max(len(xs), 5000))
    return Latency(eager, compiled, onnx, onnx_off, stepped, per_run, rust[:2])


def latency_row(name: str, t: Latency, roof: Roofline) -> str:
    onnx = f"{t.onnx[0]:>6.1f} / {t.onnx[1]:>4.0f}" if t.onnx else f"{'n/a':>13}"
    onnx_ratio = f"{t.onnx[0] / t.step[0]:>7.1f}x" if t.onnx else f"{'n/a':>8}"
    return (f"{name:<7} | {t.eager[0]:>6.1f} / {t.eager[1]:>4.0f} | "
            f"{t.compiled[0]:>6.1f} / {t.compiled[1]:>4.0f} | {onnx} | "
            f"{t.step[0]:>6.2f} / {t.step[1]:>4.1f} | {t.run:>6.2f} | "
            f"{t.rust[0]:>6.2f} / {t.rust[1]:>4.1f} | {t.eager[0] / t.step[0]:>9.1f}x | "
            f"{onnx_ratio} | {t.eager[0] / t.rust[0]:>9.1f}x | {roof.bound:>8.2f} | "
            f"{t.rust[0] / roof.bound:>8.1f}x")  # fmt: skip


@dataclass(frozen=True)
class Rates:
    """Steps x streams per second at STREAMS streams."""

    torch: float  # batch STREAMS, one core
    onnx: Optional[float]  # batch STREAMS, every core; None without onnxruntime
    onnx_off: Optional[float]  # fraction of elements off PyTorch in the check
    engine_one: float  # streams=STREAMS, one core
    engine_all: float  # streams=STREAMS, every core


def throughput(
    model: nn.Module,
    shape: tuple[int, ...],
    batch: np.ndarray,
    path: Path,
    ort: Optional[ModuleType],
) -> Rates:
    """Rates over ``batch`` [T, STREAMS, *shape]; ``path`` is the exported model."""
    torch_rate = rate(torch_run(model), batch)
    engine = tt.runtime.load(path, streams=STREAMS)
    engine.set_threads(1)
    one = rate(engine.run, batch)
    engine.set_threads(cores())
    many = rate(engine.run, batch)
    onnx = onnx_off = None
    if ort:
        onnx, onnx_off = onnx_rate(ort, model, shape, batch, path.with_suffix(".batch.onnx"))
    return Rates(torch_rate, onnx, onnx_off, one, many)


def onnx_rate(
    ort: ModuleType, model: nn.Module, shape: tuple[int, ...], batch: np.ndarray, path: Path
) -> tuple[float, float]:
    """ONNX Runtime's rate on every core (and its check), its session ended on return.

    Its worker threads spin waiting for work after each run: while the session
    lives they take a core from whatever is timed next.
    """
    stepper, off = onnx_step(ort, model, shape, batch, cores(), path)
    return rate(stepper.run, batch), off


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    binary = rust_bench()
    ort = onnx_runtime()
    onnx = f"onnxruntime {ort.__version__}, " if ort else ""
    print(f"{platform.processor() or platform.machine()}, {time.strftime('%Y-%m-%d')}, "
          f"torch {torch.__version__}, {onnx}tracetorch {tt.__version__}, {cores()} cores, "
          f"{args.steps} steps")  # fmt: skip
    bandwidth = {size: read_bandwidth(size) for size in (1 << 18, 1 << 22, 1 << 24, 1 << 28)}
    print("read bandwidth (numpy dot): " + ", ".join(
        f"{size >> 10} KiB {bw / 1e9:.0f} GB/s" for size, bw in bandwidth.items()))  # fmt: skip
    peak = peak_flops()
    print(f"peak float32 FMA rate, one core (torch.mm, 1 thread): {peak / 1e9:.0f} GFLOP/s")
    print()
    print("batch 1, one core (1 torch thread, 1 ORT thread), us per step: median / p99")
    header = (f"{'model':<7} | {'torch eager':>13} | {'TTcompile':>13} | {'ORT':>13} | "
              f"{'engine step()':>13} | {'run()':>6} | {'Rust loop':>13} | "
              f"{'eager/step':>10} | {'ORT/step':>8} | {'eager/Rust':>10} | {'roofline':>8} | "
              f"{'Rust/roof':>9}")  # fmt: skip
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    roofs = {}
    latencies = {}
    rates = {}
    with tempfile.TemporaryDirectory() as folder:
        simd = None
        for name, (model, shape) in models().items():
            model.eval()
            xs = rng.normal(size=(args.steps, 1, *shape)).astype(np.float32)
            path = Path(folder) / f"{name}.safetensors"
            tt.export(model, torch.zeros(1, *shape), path)
            simd = tt.runtime.load(path).simd
            roofs[name] = roofline(model, shape, bandwidth, peak)
            latencies[name] = latency(model, shape, xs, path, binary, ort)
            print(latency_row(name, latencies[name], roofs[name]))
            batch = rng.normal(size=(20, STREAMS, *shape)).astype(np.float32)
            rates[name] = throughput(model, shape, batch, path, ort)
        print(f"(engine kernels: {simd})")
        print()
        print_roofline(roofs)
        print()
        print_throughput(rates)
        print()
        if ort:
            print_onnx_check(latencies, rates)
            print()
        event_driven(binary, Path(folder), max(args.steps, 5000))


def print_roofline(roofs: dict[str, Roofline]) -> None:
    print("roofline of one step, batch 1, one core: the larger of the two bounds")
    print(f"{'model':<7} | {'weights':>9} | {'read from':>9} | {'weights/bw':>10} | "
          f"{'MACs':>9} | {'2*MACs/peak':>11} | {'roofline':>8} | bound by")  # fmt: skip
    for name, r in roofs.items():
        print(f"{name:<7} | {r.nbytes / 1024:>5.0f} KiB | {r.level >> 10:>5} KiB | "
              f"{r.memory:>7.2f} us | {r.macs:>9} | {r.compute:>8.2f} us | {r.bound:>8.2f} | "
              f"{r.binding}")  # fmt: skip


def print_throughput(rates: dict[str, Rates]) -> None:
    n = cores()
    print(f"{STREAMS} streams, steps x streams per second")
    print(f"{'model':<7} | {'torch b256, 1 core':>18} | {f'ORT b256, {n} cores':>19} | "
          f"{'engine, 1 core':>14} | {f'engine, {n} cores':>15} | {'engine/torch, 1 core':>20} | "
          f"{f'engine/ORT, {n} cores':>21}")  # fmt: skip
    for name, r in rates.items():
        onnx = f"{r.onnx:>19.0f}" if r.onnx else f"{'n/a':>19}"
        versus = f"{r.engine_all / r.onnx:>20.1f}x" if r.onnx else f"{'n/a':>21}"
        print(f"{name:<7} | {r.torch:>18.0f} | {onnx} | {r.engine_one:>14.0f} | "
              f"{r.engine_all:>15.0f} | {r.engine_one / r.torch:>19.1f}x | {versus}")  # fmt: skip


def print_onnx_check(latencies: dict[str, Latency], rates: dict[str, Rates]) -> None:
    print(f"ONNX Runtime against PyTorch, {CHECK_STEPS} steps, states fed back: elements off by "
          f"> 1e-4 (spikes on a threshold tie; at most {MAX_MISMATCH:.0%} allowed)")  # fmt: skip
    for name, t in latencies.items():
        print(f"  {name:<7} batch 1: {t.onnx_off or 0:.4%}, "
              f"batch {STREAMS}: {rates[name].onnx_off or 0:.4%}")  # fmt: skip


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
