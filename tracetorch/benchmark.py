"""Streaming speed: PyTorch, ONNX Runtime and the Rust engine, five models, one run.

Run it with ``tracetorch bench`` (or ``python benchmarks/bench_streaming.py``,
which calls :func:`main`); ``--steps N`` sets the timesteps, ``--models a,b``
a subset of :data:`CHOICES` (``events`` is the event-driven table) and
``--no-onnx`` skips ONNX Runtime. It needs PyTorch (``pip install
'tracetorch[torch]'``), imported only when the table runs, so that this module
and ``tracetorch bench MODEL`` work without it.

Table 1, batch 1, per timestep (median / p99 microseconds), all on one core:
PyTorch eager, PyTorch after ``TTcompile``, ONNX Runtime (one ``session.run``
per step, the states passed in and out as tensors), the engine's ``step()``
called from Python, its ``run()`` over a whole sequence, and the pure-Rust loop
(:meth:`tracetorch.runtime.Engine.time_steps`: every ``Engine::step`` timed in
Rust, no Python between steps); the speed-up of the engine paths over eager
PyTorch and of ``step()`` over ONNX Runtime; and the roofline of one step,
detailed in the table under it: the larger of the weight bytes over the read
bandwidth (measured here with numpy and with the engine's own batch-1 linear
layer, :func:`best_read`) of the caches that hold them (see :func:`roofline`),
and of the multiply-adds over the peak
float32 FMA rate of one core (measured here with cache-resident matrix
products, by ``torch.mm`` and by the engine, :func:`peak_flops`). For weights
beyond 4 MiB (the ``wide`` models) it also gives the bound at the measured DRAM
bandwidth, which applies when the caches do not keep the weights between steps.

``wide-graded`` is ``wide`` with the default quantizer (graded sigmoid outputs
instead of spikes), so every linear layer runs the dense path.

Table 2: throughput at 256 streams (steps x streams per second): PyTorch eager
at batch 256 on one core, ONNX Runtime at batch 256 on every core, and the
engine with ``streams=256`` on one core and on every core (``set_threads``).

Table 3: batch 1 again, the engine on every core (``set_threads``: a single
stream's linear layers split by output columns), against one core.

Table 4: the Rust loop's p99 / median on one core, against the same ratio for
fixed CPU work of the same length (:func:`spin_iterations`: a Python loop, no
memory traffic, no engine) timed as many times, in turn with it; and a line on
the host's interruptions of a busy loop (:func:`interruptions`): on a shared VM
those set the p99 of any step long enough to be hit by them.

Table 5 (``events``): the event-driven path. A 1024-1024 linear layer fed by
hard spikes at 0% (silent), 5%, 10% and 50% activity (a new random pattern
every step), against the same layer fed by graded values (the dense path),
per step in the pure-Rust loop.

ONNX Runtime needs the ``bench`` extra (onnx, onnxruntime, onnxscript); without
it its columns read n/a. Every exported model is checked against PyTorch over
20 steps before it is timed; up to 1% of the elements may differ (spikes that
a threshold tie flips, see :func:`check_onnx`), and the run prints how many did.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

import tracetorch as tt

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["CHOICES", "MODELS", "main", "parse_models", "read_bandwidth", "table"]

STEPS = 2000  # default timesteps of the Python-side paths
RUST_STEPS = 5000  # the pure-Rust loop and the event-driven table run at least this many
WARMUP = 500  # untimed steps before the Rust loop (caches, page faults), then reset
ROUNDS = 4  # turns the batch-1 paths take (see latency)
STREAMS = 256
CHECK_STEPS = 20  # steps over which each ONNX export is checked against PyTorch
# Fraction of the checked elements allowed off PyTorch by more than 1e-4 (see check_onnx).
MAX_MISMATCH = 0.01
# Bytes of the read-bandwidth measurements: L2, L2/L3, L3 and DRAM on most machines.
LEVELS = (1 << 18, 1 << 22, 1 << 24, 1 << 28)
# Weights beyond this also get the DRAM bound: they leave a core's own caches.
DRAM_SHOWN = 1 << 22
# The engine witnesses reads up to this size (see best_read): beyond, a model file
# of that many weights would be written and loaded for one figure.
WITNESS_MAX = 1 << 24
MODELS = ("mlp", "sensor", "conv", "wide", "wide-graded")
EVENTS = "events"
CHOICES = (*MODELS, EVENTS)
NAME = 11  # width of the model column

NEEDS_TORCH = (
    "tracetorch bench without a model file times PyTorch against the engine and needs "
    "PyTorch: pip install 'tracetorch[torch]' (or 'tracetorch[bench]', which adds ONNX "
    "Runtime for its columns). `tracetorch bench MODEL` times one model file without it."
)


def parse_models(text: str) -> list[str]:
    """``--models``: a comma-separated subset of :data:`CHOICES`, returned in table order."""
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = sorted(names - set(CHOICES))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown model {', '.join(unknown) or repr(text)}; choose from {','.join(CHOICES)}"
        )
    return [name for name in CHOICES if name in names]


def positive(text: str) -> int:
    """``--steps``: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python benchmarks/bench_streaming.py [--steps N] [--models a,b] [--no-onnx]``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--steps",
        type=positive,
        default=STEPS,
        help=f"timesteps (default {STEPS}; the Rust loop at least {RUST_STEPS})",
    )
    parser.add_argument(
        "--models",
        type=parse_models,
        default=list(CHOICES),
        help=f"comma-separated subset of {','.join(CHOICES)} (default: all)",
    )
    parser.add_argument("--no-onnx", action="store_true", help="skip ONNX Runtime")
    args = parser.parse_args(argv)
    return table(args.steps, args.models, onnx=not args.no_onnx)


def _import_torch() -> ModuleType:
    try:
        import torch
    except ImportError as error:
        raise SystemExit(NEEDS_TORCH) from error
    return torch


def models(names: Iterable[str] = MODELS) -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    """The benchmark models named (all built, so the weights do not depend on the subset)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    spike = tt.functional.round_ste
    built = {
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
        # Graded outputs (sigmoid, no quantizer): every linear layer runs the dense path.
        "wide-graded": (nn.Sequential(nn.Linear(256, 1024), tt.snn.LIB(1024),
                                      nn.Linear(1024, 1024), tt.snn.LIB(1024),
                                      nn.Linear(1024, 32), tt.snn.LI(32)), (256,)),
    }  # fmt: skip
    return {name: built[name] for name in names}


def cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def read_bandwidth(nbytes: int) -> float:
    """Bytes per second one core reads from a buffer of ``nbytes``: the best of several ways.

    The roofline divides the weight bytes by it, so a low figure gives a
    lenient bound; every choice here errs high. A BLAS dot product of two
    arrays (the earlier measure) does two loads per multiply-add and pays a
    Python call per pass over the buffer, a large share of the 2-3 us a
    256 KiB pass takes: it read 97 GB/s where a streaming AVX-512 read in C
    reads 118 GB/s on the same core. Here each timing is one numpy call that
    reads the buffer many times over (a stride-0 broadcast view: the data stays
    in the cache level under test, and the call's overhead is paid once per
    16 MiB read), with reductions that do one load per element and one cheap
    operation (maximum and bitwise or, over uint64 and float32 views). The
    highest bandwidth over the reductions and the timings is kept: noise only
    slows a timing down. They are numpy's own loops, so one thread reads (a
    BLAS call may use several); they may still read slower than the core can,
    which :func:`best_read` checks against the engine.
    """
    nbytes = max(64, -(-nbytes // 64) * 64)  # whole cache lines, and uint64 words
    buffer = np.ones(nbytes, np.uint8)  # written: untouched pages would all read one zero page
    passes = max(1, (1 << 24) // nbytes)
    timings = max(5, min(100, (1 << 30) // (passes * nbytes)))
    words = buffer.view(np.uint64)
    floats = buffer.view(np.float32)  # 0x01010101: a normal float, no slow denormals
    reductions: list[tuple[np.ufunc, np.ndarray]] = [
        (np.maximum, np.broadcast_to(words, (passes, words.size))),
        (np.bitwise_or, np.broadcast_to(words, (passes, words.size))),
        (np.maximum, np.broadcast_to(floats, (passes, floats.size))),
    ]
    best = math.inf
    for ufunc, view in reductions:
        for _ in range(timings):
            start = time.perf_counter()
            ufunc.reduce(view, axis=1)
            best = min(best, time.perf_counter() - start)
    return passes * nbytes / best


def engine_read_bandwidth(nbytes: int, folder: Path) -> float:
    """Bytes per second the engine reads the weights of a batch-1 linear layer of ``nbytes``.

    A witness for :func:`read_bandwidth`, as the engine's product is for
    :func:`peak_flops`: numpy's reductions need not read at the rate the core
    can (on a Xeon whose 2 MiB L2 they read at 77 GB/s, the engine streamed
    the mlp's 465 KiB of weights at 116 GB/s, below its "bound"). Each step of
    ``Linear(n, 256)`` reads every weight once with one multiply-add, so a run
    of steps reads ``nbytes`` per step at most as fast as the machine can: the
    rate only errs low (a step's fixed cost, the FMAs, noise).
    """
    out = 256
    inp = max(1, nbytes // (4 * out))
    steps = max(4, min(256, (1 << 26) // (inp * out * 4)))  # ~64 MiB a timing
    seconds = fastest_linear_run(folder / f"read-{nbytes}.safetensors", inp, out, 1, steps)
    return inp * out * 4 * steps / seconds


def fastest_linear_run(path: Path, inp: int, out: int, streams: int, steps: int) -> float:
    """The best of 30 timings of ``engine.run`` over ``steps`` random steps of a
    ``Linear(inp, out)`` layer without bias at ``streams`` streams, on one thread,
    exported to ``path``: the engine's own product, for :func:`peak_flops` and
    :func:`engine_read_bandwidth`."""
    import torch
    from torch import nn

    tt.export(nn.Sequential(nn.Linear(inp, out, bias=False)), torch.zeros(1, inp), path)
    engine = tt.runtime.load(path, streams=streams)
    engine.set_threads(1)
    xs = np.random.default_rng(0).normal(size=(steps, streams, inp)).astype(np.float32)
    engine.run(xs[:1])  # the weights reach the cache level under test
    best = math.inf
    for _ in range(30):
        start = time.perf_counter()
        engine.run(xs)
        best = min(best, time.perf_counter() - start)
    return best


def best_read(nbytes: int, folder: Path) -> tuple[float, str]:
    """The higher read bandwidth of :func:`read_bandwidth` and, up to
    :data:`WITNESS_MAX` bytes, :func:`engine_read_bandwidth`, and which read it."""
    rates = {"numpy": read_bandwidth(nbytes)}
    if nbytes <= WITNESS_MAX:
        rates["engine"] = engine_read_bandwidth(nbytes, folder)
    source = max(rates, key=rates.__getitem__)
    return rates[source], source


def peak_flops(folder: Path) -> tuple[float, str]:
    """Float32 FLOP/s of one core, and what reached it: the best of many
    cache-resident matrix products, by ``torch.mm`` and by the engine.

    ``torch.mm`` rather than numpy: torch's threads are set from inside the
    process (``set_num_threads(1)`` in :func:`table`), numpy's BLAS threads only
    before it is imported. At most 768 KiB for the three matrices: they stay in
    L2. The engine's own product (a 256-256 linear layer at 256 streams) is
    timed too, because a BLAS may not use every instruction set of the CPU (MKL
    keeps AMD CPUs on AVX2: 100 GFLOP/s on a Zen 5 whose AVX-512 FMAs reach
    220): the bound must be a rate this machine was seen to reach, never below.
    """
    import torch

    best = {"torch.mm": 0.0, "engine": 0.0}
    for n in (128, 192, 256):
        a, b, out = torch.rand(n, n), torch.rand(n, n), torch.empty(n, n)
        inner = max(1, (1 << 26) // n**3)  # ~0.1 GFLOP a timing: far above timer noise
        for _ in range(30):
            start = time.perf_counter()
            for _ in range(inner):
                torch.mm(a, b, out=out)
            best["torch.mm"] = max(
                best["torch.mm"], 2 * n**3 * inner / (time.perf_counter() - start)
            )
    n, steps = 256, 4
    seconds = fastest_linear_run(folder / "peak.safetensors", n, n, STREAMS, steps)
    best["engine"] = 2 * n * n * STREAMS * steps / seconds
    source = max(best, key=best.__getitem__)
    return best[source], source


def weight_bytes(model: nn.Module) -> int:
    return sum(p.numel() * 4 for p in model.parameters())


def macs_per_step(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-adds of one step at batch 1 in the linear and convolution layers.

    The neurons' elementwise updates (a few operations per neuron) are left out:
    these models do 36 (sensor) to 650 (wide) multiply-adds per neuron.
    """
    import torch
    from torch import nn

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
    """The lower bounds of one step at batch 1, in microseconds."""

    nbytes: int  # weight bytes
    source: int  # bytes of the read whose bandwidth bounds the weights' (see roofline)
    bandwidth: float  # its bytes per second
    reader: str  # what read at that bandwidth: numpy or the engine (see best_read)
    memory: float  # weight bytes / that bandwidth
    dram: float  # weight bytes / the DRAM read bandwidth (the largest measurement)
    macs: int
    compute: float  # 2 * MACs / peak FLOP/s

    @property
    def bound(self) -> float:
        """The roofline: the weights read from the caches that hold them, or the FMAs."""
        return max(self.memory, self.compute)

    @property
    def dram_bound(self) -> float:
        """The roofline if every step read the weights from DRAM."""
        return max(self.dram, self.compute)

    @property
    def binding(self) -> str:
        return "weights" if self.memory >= self.compute else "FMA"


def roofline(
    model: nn.Module,
    shape: tuple[int, ...],
    bandwidth: dict[int, tuple[float, str]],
    peak: float,
    folder: Path,
) -> Roofline:
    """The bounds of one step of ``model`` at batch 1 on one core.

    The weights' read bandwidth is the higher of two reads (:func:`best_read`):
    the smallest of the ``bandwidth`` levels that holds them, and a buffer of
    the weights' own size. The levels bracket the weights loosely: 465 KiB
    (mlp) fits the 1 MiB L2 that the 4 MiB read overflows, and the 5.2 MiB of
    the wide models read about 25% faster than the 16 MiB level here. The
    lower figure alone would make the bound lenient (the engine ran below it).
    """
    nbytes = weight_bytes(model)
    level = min((s for s in bandwidth if s >= nbytes), default=max(bandwidth))
    reads = {level: bandwidth[level], nbytes: best_read(nbytes, folder)}
    source = max(reads, key=lambda size: reads[size][0])
    rate, reader = reads[source]
    macs = macs_per_step(model, shape)
    memory = nbytes / rate * 1e6
    dram = nbytes / bandwidth[max(bandwidth)][0] * 1e6
    compute = 2 * macs / peak * 1e6
    return Roofline(nbytes, source, rate, reader, memory, dram, macs, compute)


def onnx_runtime() -> Optional[ModuleType]:
    """``onnxruntime``, imported only if it and the exporter's needs are installed."""
    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if not importlib.util.find_spec(m)]
    if missing:
        print(f"ONNX Runtime columns skipped: {', '.join(missing)} not installed "
              "(pip install 'tracetorch[bench]', or -e '.[bench]' in a checkout)")  # fmt: skip
        return None
    return importlib.import_module("onnxruntime")


def export_onnx(model: nn.Module, shape: tuple[int, ...], batch: int, path: Path) -> list[str]:
    """Writes one timestep of ``model`` at ``batch`` to ``path``; returns the state names.

    The timestep is exported as a function ``(x, *states) -> (y, *new_states)``:
    traceTorch layers hold their states as tensor attributes, which an exported
    graph would freeze as constants; setting them from the inputs
    (``load_states``) and returning them (``save_states``) makes them plain
    inputs and outputs instead.

    Shapes are static (one file per batch size), which gives ONNX Runtime its
    best plan, and the parameter transforms are baked in (``TTcompile``), as for
    inference. The dynamo exporter, because the TorchScript one (``dynamo=False``)
    writes a negative Transpose permutation for the ``movedim`` of conv's
    ``LIB(dim=-3)``, which ONNX Runtime refuses to load.
    """
    import torch
    from torch import nn

    class OneStep(nn.Module):
        def __init__(self, model: nn.Module, keys: list[str]) -> None:
            super().__init__()
            self.model = model
            self.keys = keys

        def forward(self, x: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
            tt.Model.load_states(self.model, dict(zip(self.keys, states, strict=True)))  # type: ignore[arg-type]
            y = self.model(x)
            new = tt.Model.save_states(self.model)  # type: ignore[arg-type]
            return (y, *(new[key] for key in self.keys))

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
        self.feed.update(zip(self.keys, states, strict=True))
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
    import torch

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


Timing = tuple[float, float]  # median, p99 microseconds


def summary(times: Iterable[float]) -> Timing:
    ordered = sorted(float(t) for t in times)
    return statistics.median(ordered) * 1e6, ordered[int(0.99 * (len(ordered) - 1))] * 1e6


def _spin(n: int) -> None:
    for _ in range(n):
        pass


def spin_iterations(seconds: float) -> int:
    """The iterations of an empty Python loop that take about ``seconds`` (best of
    5 timings): fixed CPU work with no memory traffic, timed by :func:`latency`
    beside the Rust loop to show what the host's interruptions alone make of the
    p99 of a step that long.

    >>> spin_iterations(1e-5) > spin_iterations(1e-6) >= 1
    True
    """
    n = 1
    while True:  # doubling until it takes ``seconds``
        took = min(timed(_spin, [n] * 5))
        if took >= seconds or n >= 1 << 30:
            break
        n *= 2
    return max(1, round(n * seconds / took))


@dataclass(frozen=True)
class Interruptions:
    """Gaps over ``GAP`` in a busy loop that reads the clock (see :func:`interruptions`)."""

    seconds: float  # of the loop
    gaps: list[float]  # seconds each

    @property
    def lost(self) -> float:
        """The fraction of the loop's time in gaps."""
        return sum(self.gaps) / self.seconds


GAP = 5e-6  # longer than any pause of the loop itself between two readings


def interruptions(seconds: float = 1.0) -> Interruptions:
    """Reads the clock in a loop for ``seconds`` and keeps the gaps between two
    readings longer than :data:`GAP`: the times the host took this core away.

    >>> interruptions(0.01).seconds >= 0.01
    True
    """
    gaps = []
    gap = int(GAP * 1e9)
    start = last = time.perf_counter_ns()
    end = start + int(seconds * 1e9)
    while last < end:
        now = time.perf_counter_ns()
        if now - last > gap:
            gaps.append((now - last) / 1e9)
        last = now
    return Interruptions((last - start) / 1e9, gaps)


def rust_loop(engine: tt.runtime.Engine, xs: np.ndarray) -> list[float]:
    """The seconds of every step of ``xs`` timed in Rust (``time_steps``), after an
    untimed warm-up, from fresh states."""
    engine.time_steps(xs[:WARMUP])
    engine.reset()
    times = engine.time_steps(xs)
    engine.reset()
    return list(times)


def rate(
    run: Callable[[np.ndarray], object], batch: np.ndarray, repeats: int = 5, least: float = 0.25
) -> float:
    """Median steps x streams per second of ``run`` over ``batch`` [T, streams, ...].

    At least ``repeats`` runs and ``least`` seconds: one run of the mlp takes
    3 ms, and a few runs alone caught a busy moment of a shared host (one
    median of 5 on 2 cores came out at 0.6x the next).
    """
    run(batch[:2])  # states, scratch buffers and thread pools exist before the timing
    times: list[float] = []
    while len(times) < repeats or sum(times) < least:
        start = time.perf_counter()
        run(batch)
        times.append(time.perf_counter() - start)
    return batch.shape[0] * batch.shape[1] / statistics.median(times)


def torch_run(model: nn.Module) -> Callable[[np.ndarray], None]:
    """Steps ``model`` through a sequence, starting from fresh states."""
    import torch

    tt.Model.zero_states(model)  # type: ignore[arg-type]

    def run(xs: np.ndarray) -> None:
        with torch.no_grad():
            for x in torch.from_numpy(xs):
                model(x)

    return run


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
    step_all: Timing  # step() with set_threads(cores())
    rust_all: Timing  # the Rust loop with set_threads(cores())
    host: Timing  # fixed CPU work as long as the Rust loop's steps (see spin_iterations)


def latency(
    model: nn.Module,
    shape: tuple[int, ...],
    xs: np.ndarray,
    rust_xs: np.ndarray,
    path: Path,
    ort: Optional[ModuleType],
) -> Latency:
    """Times every path on ``xs`` [T, 1, *shape], the Rust loop on ``rust_xs``.

    ``path`` is the exported model. The paths take turns, in :data:`ROUNDS`
    rounds over a part of the steps each, every round from fresh states, and
    each path's times are pooled: a busy spell of a shared host then slows
    every path a little rather than one a lot (one path at a time, a median
    of the conv model's ``step()`` came out at 1.5x the same run's others).
    """
    import torch

    onnx = onnx_off = single = None
    if ort:  # one thread at batch 1, like torch
        single, onnx_off = onnx_step(ort, model, shape, xs, 1, path.with_suffix(".onnx"))
    engine = tt.runtime.load(path)
    times: dict[str, list[float]] = {
        k: [] for k in ("eager", "compiled", "onnx", "step", "step_all", "rust", "rust_all", "host")
    }
    spin = 0
    run_seconds = 0.0
    rounds = zip(np.array_split(xs, ROUNDS), np.array_split(rust_xs, ROUNDS), strict=True)
    for part, rust_part in rounds:
        tensors = torch.from_numpy(part)
        with torch.no_grad():
            tt.Model.zero_states(model)  # type: ignore[arg-type]
            times["eager"] += timed(model, tensors)
            tt.Model.TTcompile(model)  # type: ignore[arg-type]
            tt.Model.zero_states(model)  # type: ignore[arg-type]
            times["compiled"] += timed(model, tensors)
            tt.Model.TTdecompile(model)  # type: ignore[arg-type]
        if single:
            single.reset()
            times["onnx"] += timed(single.step, part)
        engine.set_threads(1)
        engine.reset()
        times["step"] += timed(engine.step, part)
        engine.reset()
        start = time.perf_counter()
        engine.run(part)
        run_seconds += time.perf_counter() - start
        engine.reset()
        times["rust"] += rust_loop(engine, rust_part)
        spin = spin or spin_iterations(statistics.median(times["rust"]))
        times["host"] += timed(_spin, [spin] * len(rust_part))
        engine.set_threads(cores())  # one stream's linear layers split by columns
        times["step_all"] += timed(engine.step, part)
        engine.reset()
        times["rust_all"] += rust_loop(engine, rust_part)
    tt.Model.zero_states(model)  # type: ignore[arg-type]
    if single:
        onnx = summary(times["onnx"])
    return Latency(
        summary(times["eager"]),
        summary(times["compiled"]),
        onnx,
        onnx_off,
        summary(times["step"]),
        run_seconds / len(xs) * 1e6,
        summary(times["rust"]),
        summary(times["step_all"]),
        summary(times["rust_all"]),
        summary(times["host"]),
    )


LATENCY_HEADER = (
    f"{'model':<{NAME}} | {'torch eager':>13} | {'TTcompile':>13} | {'ORT':>13} | "
    f"{'engine step()':>13} | {'run()':>6} | {'Rust loop':>13} | "
    f"{'eager/step':>10} | {'ORT/step':>8} | {'eager/Rust':>10} | {'roofline':>8} | "
    f"{'Rust/roof':>9}"
)


def pair(t: Timing, decimals: int) -> str:
    """``median / p99`` in 13 characters: the median with ``decimals``, the p99
    with as many of them as fit in 4 characters.

    The p99 is rounded up, so that with fewer decimals it never prints below
    the median (``13.04 / 13.0`` for two equal figures).
    """
    for places in range(decimals, -1, -1):
        scale = 10**places
        tail = f"{math.ceil(round(t[1] * scale, 6)) / scale:.{places}f}"
        if len(tail) <= 4:
            break
    return f"{t[0]:>6.{decimals}f} / {tail:>4}"


def latency_row(name: str, t: Latency, roof: Roofline) -> str:
    onnx = pair(t.onnx, 1) if t.onnx else f"{'n/a':>13}"
    onnx_ratio = f"{t.onnx[0] / t.step[0]:>7.1f}x" if t.onnx else f"{'n/a':>8}"
    return (f"{name:<{NAME}} | {pair(t.eager, 1)} | {pair(t.compiled, 1)} | {onnx} | "
            f"{pair(t.step, 2)} | {t.run:>6.2f} | "
            f"{pair(t.rust, 2)} | {t.eager[0] / t.step[0]:>9.1f}x | "
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


def table(steps: int = STEPS, names: Sequence[str] = CHOICES, onnx: bool = True) -> int:
    """Runs and prints the tables of ``names`` (see the module docstring); returns 0.

    Raises :class:`SystemExit` with what to install when PyTorch is missing.
    """
    torch = _import_torch()
    torch.set_num_threads(1)
    ort = onnx_runtime() if onnx else None
    if not onnx:
        print("ONNX Runtime columns skipped (--no-onnx)")
    rust_steps = max(steps, RUST_STEPS)
    version = f"onnxruntime {ort.__version__}, " if ort else ""
    print(f"{platform.processor() or platform.machine()}, {time.strftime('%Y-%m-%d')}, "
          f"torch {torch.__version__}, {version}tracetorch {tt.__version__}, {cores()} cores, "
          f"{steps} steps (Rust loop {rust_steps})")  # fmt: skip
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        chosen = [name for name in names if name in MODELS]
        if chosen:
            model_tables(models(chosen), steps, rust_steps, Path(folder), ort, rng)
        if EVENTS in names:
            event_driven(Path(folder), rust_steps, rng)
    return 0


def model_tables(
    chosen: dict[str, tuple[nn.Module, tuple[int, ...]]],
    steps: int,
    rust_steps: int,
    folder: Path,
    ort: Optional[ModuleType],
    rng: np.random.Generator,
) -> None:
    """Tables 1 and 2, the roofline and the ONNX Runtime check, for the ``chosen`` models."""
    import torch

    bandwidth = {size: best_read(size, folder) for size in LEVELS}
    print("read bandwidth, one core (best of numpy reductions and, up to "
          f"{WITNESS_MAX >> 20} MiB, the engine's batch-1 linear layer): " + ", ".join(
        f"{size >> 10} KiB {bw / 1e9:.0f} GB/s by {by}"
        for size, (bw, by) in bandwidth.items()))  # fmt: skip
    peak, source = peak_flops(folder)
    print(f"peak float32 FMA rate, one core (best of torch.mm and the engine, 1 thread): "
          f"{peak / 1e9:.0f} GFLOP/s by {source}")  # fmt: skip
    print()
    print("batch 1, one core (1 torch thread, 1 ORT thread), us per step: median / p99")
    print(LATENCY_HEADER)
    print("-" * len(LATENCY_HEADER))
    roofs = {}
    latencies = {}
    rates = {}
    simd = None
    for name, (model, shape) in chosen.items():
        model.eval()
        rust_xs = rng.normal(size=(rust_steps, 1, *shape)).astype(np.float32)
        xs = rust_xs[:steps]
        path = folder / f"{name}.safetensors"
        tt.export(model, torch.zeros(1, *shape), path)
        simd = tt.runtime.load(path).simd
        roofs[name] = roofline(model, shape, bandwidth, peak, folder)
        latencies[name] = latency(model, shape, xs, rust_xs, path, ort)
        print(latency_row(name, latencies[name], roofs[name]), flush=True)
        batch = rng.normal(size=(20, STREAMS, *shape)).astype(np.float32)
        rates[name] = throughput(model, shape, batch, path, ort)
    seen = interruptions()  # once every model is timed: nothing else runs meanwhile
    print(f"(engine kernels: {simd})")
    print()
    print_roofline(roofs, latencies, bandwidth)
    print()
    print_throughput(rates)
    print()
    print_all_cores(latencies)
    print()
    print_tails(latencies, seen)
    print()
    if ort:
        print_onnx_check(latencies, rates)
        print()


def print_roofline(
    roofs: dict[str, Roofline],
    latencies: dict[str, Latency],
    bandwidth: dict[int, tuple[float, str]],
) -> None:
    dram = max(bandwidth)
    print("roofline of one step, batch 1, one core: the larger of the two bounds")
    print(f"{'model':<{NAME}} | {'weights':>9} | {'read from':>9} | {'read bw':>8} | "
          f"{'read by':>7} | {'weights/bw':>10} | {'MACs':>9} | {'2*MACs/peak':>11} | "
          f"{'roofline':>8} | {'bound by':>8} | {'DRAM bound':>10} | {'Rust/DRAM':>9}")  # fmt: skip
    for name, r in roofs.items():
        if r.nbytes > DRAM_SHOWN:
            versus = f"{r.dram_bound:>7.2f} us | {latencies[name].rust[0] / r.dram_bound:>8.2f}x"
        else:
            versus = f"{'-':>10} | {'-':>9}"
        print(f"{name:<{NAME}} | {r.nbytes / 1024:>5.0f} KiB | {r.source >> 10:>5} KiB | "
              f"{r.bandwidth / 1e9:>3.0f} GB/s | {r.reader:>7} | {r.memory:>7.2f} us | "
              f"{r.macs:>9} | {r.compute:>8.2f} us | {r.bound:>8.2f} | {r.binding:>8} | "
              f"{versus}")  # fmt: skip
    print("read from: the read (the smallest level above that holds the weights, or a buffer "
          "of their own size) with the higher bandwidth; the roofline assumes that the weights "
          "stay there between steps")  # fmt: skip
    if any(r.nbytes > DRAM_SHOWN for r in roofs.values()):
        print(f"DRAM bound: the weights read every step at the {dram >> 10} KiB bandwidth "
              f"({bandwidth[dram][0] / 1e9:.0f} GB/s), shown for weights beyond "
              f"{DRAM_SHOWN >> 20} MiB")  # fmt: skip


def print_throughput(rates: dict[str, Rates]) -> None:
    n = cores()
    print(f"{STREAMS} streams, steps x streams per second")
    print(f"{'model':<{NAME}} | {'torch b256, 1 core':>18} | {f'ORT b256, {n} cores':>19} | "
          f"{'engine, 1 core':>14} | {f'engine, {n} cores':>15} | {'engine/torch, 1 core':>20} | "
          f"{f'engine/ORT, {n} cores':>21}")  # fmt: skip
    for name, r in rates.items():
        onnx = f"{r.onnx:>19.0f}" if r.onnx else f"{'n/a':>19}"
        versus = f"{r.engine_all / r.onnx:>20.1f}x" if r.onnx else f"{'n/a':>21}"
        print(f"{name:<{NAME}} | {r.torch:>18.0f} | {onnx} | {r.engine_one:>14.0f} | "
              f"{r.engine_all:>15.0f} | {r.engine_one / r.torch:>19.1f}x | {versus}")  # fmt: skip


def print_all_cores(latencies: dict[str, Latency]) -> None:
    n = cores()
    print(f"batch 1, the engine on {n} cores (set_threads({n}): a stream's linear layers "
          "split by output columns; its workers spin between steps), us per step: "
          "median / p99")  # fmt: skip
    print(f"{'model':<{NAME}} | {'step(), 1 core':>14} | {f'step(), {n} cores':>15} | "
          f"{'Rust, 1 core':>13} | {f'Rust, {n} cores':>14} | "
          f"{f'eager/step, {n} cores':>20}")  # fmt: skip
    for name, t in latencies.items():
        print(f"{name:<{NAME}} | {pair(t.step, 2):>14} | {pair(t.step_all, 2):>15} | "
              f"{pair(t.rust, 2):>13} | {pair(t.rust_all, 2):>14} | "
              f"{t.eager[0] / t.step_all[0]:>19.1f}x")  # fmt: skip


def print_tails(latencies: dict[str, Latency], seen: Interruptions) -> None:
    print("p99 / median of the Rust loop, one core, against the host's: fixed CPU work as "
          "long as each median (a Python loop, no memory traffic), timed as often, in turn "
          "with it")  # fmt: skip
    print(f"{'model':<{NAME}} | {'Rust median us':>14} | {'Rust p99/median':>15} | "
          f"{'host p99/median':>15}")  # fmt: skip
    for name, t in latencies.items():
        print(f"{name:<{NAME}} | {t.rust[0]:>14.2f} | {t.rust[1] / t.rust[0]:>14.2f}x | "
              f"{t.host[1] / t.host[0]:>14.2f}x")  # fmt: skip
    gaps = seen.gaps
    if not gaps:
        print(f"host: no gap over {GAP * 1e6:.0f} us in {seen.seconds:.1f} s of a busy loop")
        return
    median, p99 = summary(gaps)
    print(f"host: a busy loop lost {seen.lost:.1%} of {seen.seconds:.1f} s to {len(gaps)} gaps "
          f"over {GAP * 1e6:.0f} us (one every {seen.seconds / len(gaps) * 1e3:.2f} ms; "
          f"median {median:.0f} us, p99 {p99:.0f}, longest {max(gaps) * 1e6:.0f})")  # fmt: skip


def print_onnx_check(latencies: dict[str, Latency], rates: dict[str, Rates]) -> None:
    print(f"ONNX Runtime against PyTorch, {CHECK_STEPS} steps, states fed back: elements off by "
          f"> 1e-4 (spikes on a threshold tie; at most {MAX_MISMATCH:.0%} allowed)")  # fmt: skip
    for name, t in latencies.items():
        print(f"  {name:<{NAME}} batch 1: {t.onnx_off or 0:.4%}, "
              f"batch {STREAMS}: {rates[name].onnx_off or 0:.4%}")  # fmt: skip


def event_driven(folder: Path, steps: int, rng: np.random.Generator) -> None:
    """A 1024-1024 layer fed by spikes at set activities, against graded inputs."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    spiking = nn.Sequential(
        tt.snn.LIF(1024, beta=0.01, pos_threshold=0.5), nn.Linear(1024, 1024), tt.snn.LI(1024)
    )
    graded = nn.Sequential(tt.snn.LI(1024, beta=0.01), nn.Linear(1024, 1024), tt.snn.LI(1024))
    engines = {}
    for name, model in (("spiking", spiking), ("graded", graded)):
        path = folder / f"events-{name}.safetensors"
        tt.export(model.eval(), torch.zeros(1, 1024), path)
        engines[name] = tt.runtime.load(path)
    shape = (steps, 1, 1024)
    dense = summary(rust_loop(engines["graded"], rng.normal(size=shape).astype(np.float32)))
    print(f"event-driven 1024-1024 layer, Rust loop: dense (graded inputs) {dense[0]:.2f} us")
    print(f"{'activity':>8} | {'median us':>9} | {'p99 us':>7} | speed-up over dense")
    for activity in (0.0, 0.05, 0.10, 0.50):
        spikes = (rng.random(shape) < activity).astype(np.float32)  # a new pattern every step
        sparse = summary(rust_loop(engines["spiking"], spikes))
        print(f"{activity:>8.0%} | {sparse[0]:>9.2f} | {sparse[1]:>7.2f} | "
              f"{dense[0] / sparse[0]:.1f}x")  # fmt: skip
