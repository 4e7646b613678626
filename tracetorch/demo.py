"""The main job in one run: train an SNN in PyTorch, export it, stream it on the Rust engine.

Two data sets, neither downloaded at run time:

- ``digits``: scikit-learn's handwritten digits (1797 real 8x8 images that ship
  inside the scikit-learn package), streamed row by row: 8 timesteps of 8 pixels.
- ``motion``: synthetic 6-axis motion recordings (accelerometer and gyroscope
  sinusoids of class-specific frequencies plus noise, generated here), 50
  timesteps of 6 readings.

The run prints a table (accuracy in PyTorch and in the engine, how many
timesteps agree within 1e-4 and the largest output difference, per-step
latency of both and their ratio) and writes a
figure: the spike raster and readout membrane traces of one streamed sample,
and the latency distributions.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DATASETS = ("digits", "motion")


@dataclass
class Dataset:
    """Sequences ``[T, N, features]`` and labels, split into train and test."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: int


def load_dataset(name: str) -> Dataset:
    """One of :data:`DATASETS`, as float32 sequences with time first."""
    if name == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError as error:
            raise SystemExit("the digits data set needs scikit-learn: "
                             "pip install 'tracetorch[demo]'") from error  # fmt: skip
        digits = load_digits()
        x = (digits.images / 16.0).astype(np.float32).transpose(1, 0, 2)  # [8 rows, N, 8]
        y = digits.target.astype(np.int64)
        classes = 10
    elif name == "motion":
        rng = np.random.default_rng(0)
        samples, steps, axes, classes = 1200, 50, 6, 4
        y = rng.integers(0, classes, samples)
        t = np.arange(steps)[:, None, None]
        freq = 0.05 + 0.04 * y[None, :, None] * (1 + np.arange(axes)[None, None, :] % 2)
        phase = rng.uniform(0, 2 * np.pi, (1, samples, axes))
        noise = 0.3 * rng.normal(size=(steps, samples, axes))
        x = (np.sin(2 * np.pi * freq * t + phase) + noise).astype(np.float32)
    else:
        raise SystemExit(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    order = np.random.default_rng(1).permutation(len(y))
    x, y = x[:, order], y[order]
    split = int(0.8 * len(y))
    return Dataset(name, x[:, :split], y[:split], x[:, split:], y[split:], classes)


def progress(items: Iterable[Any], total: int, label: str) -> Iterator[Any]:
    """Yields ``items`` while drawing a one-line progress bar on stderr."""
    width, every = 30, max(1, total // 50)  # about 50 redraws, whatever the length
    for done, item in enumerate(items, 1):
        yield item
        if done % every and done != total:
            continue
        filled = width * done // total
        sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        sys.stderr.flush()
    sys.stderr.write("\n")


def build_model(features: int, classes: int) -> Any:
    """Linear -> SRLIB (binary spikes) -> Linear -> LI readout."""
    from torch import nn

    import tracetorch as tt

    class StreamSNN(tt.Model):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(features, 128)
            self.hidden = tt.snn.SRLIB(128, quant_fn=tt.functional.round_ste())
            self.fc2 = nn.Linear(128, classes)
            self.readout = tt.snn.LI(classes)

        def forward(self, x: Any) -> Any:
            return self.readout(self.fc2(self.hidden(self.fc1(x))))

    return StreamSNN()


def train(model: Any, data: Dataset, epochs: int) -> None:
    """BPTT over whole sequences; the loss reads the readout at the last timestep."""
    import torch
    from torch import nn

    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    xs, ys = torch.from_numpy(data.train_x), torch.from_numpy(data.train_y)
    for epoch in progress(range(epochs), epochs, "training"):
        perm = torch.randperm(len(ys))
        for start in range(0, len(ys), 64):
            batch = perm[start : start + 64]
            model.zero_states()
            optimizer.zero_grad()
            for step in xs:
                logits = model(step[batch])
            loss = nn.functional.cross_entropy(logits, ys[batch])
            loss.backward()
            optimizer.step()
        del epoch
    print(f"final training loss {loss.item():.3f}")


@dataclass
class StreamResult:
    torch_pred: list[int]
    engine_pred: list[int]
    worst: float
    close_steps: int  # timesteps whose outputs agree within 1e-4
    torch_times: list[float]
    engine_times: list[float]
    spikes: np.ndarray  # [T, hidden] of the first test sample (engine)
    membranes: np.ndarray  # [T, classes] of the first test sample (engine)


def stream(model: Any, engine: Any, data: Dataset) -> StreamResult:
    """Every test sample, one timestep at a time, through PyTorch and through the engine."""
    import torch

    model.eval()
    result = StreamResult([], [], 0.0, 0, [], [], np.empty(0), np.empty(0))
    spikes, membranes = [], []
    count = data.test_y.shape[0]
    with torch.no_grad():
        for i in progress(range(count), count, "streaming"):
            model.zero_states()
            engine.reset()
            for row in data.test_x[:, i]:
                start = time.perf_counter()
                expected = model(torch.from_numpy(row)[None])[0].numpy()
                result.torch_times.append(time.perf_counter() - start)
                start = time.perf_counter()
                got = engine.step(row)
                result.engine_times.append(time.perf_counter() - start)
                difference = float(np.abs(got - expected).max())
                result.worst = max(result.worst, difference)
                result.close_steps += difference < 1e-4
                if i == 0:
                    states = engine.states()
                    spikes.append(states["hidden.prev_output"][0])
                    membranes.append(states["readout.mem"][0])
            result.torch_pred.append(int(expected.argmax()))
            result.engine_pred.append(int(got.argmax()))
    result.spikes, result.membranes = np.array(spikes), np.array(membranes)
    return result


def plot(result: StreamResult, data: Dataset, path: Path) -> None:
    """Spike raster and membrane traces of one streamed sample; latency distributions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (raster, traces, latency) = plt.subplots(1, 3, figsize=(15, 4.2))
    t, neuron = np.nonzero(result.spikes)
    raster.scatter(t, neuron, s=6, marker="|", color="black")
    title = f"hidden spikes, test sample 0 (label {data.test_y[0]})"
    limits = (-0.5, len(result.spikes) - 0.5)
    raster.set(title=title, xlabel="timestep", ylabel="neuron", xlim=limits)
    for k in range(result.membranes.shape[1]):
        traces.plot(result.membranes[:, k], label=str(k), lw=2 if k == data.test_y[0] else 1)
    traces.set(title="readout membranes (engine)", xlabel="timestep", ylabel="membrane")
    traces.legend(title="class", fontsize=7, ncol=2)
    bins = np.logspace(np.log10(min(result.engine_times) * 1e6 * 0.8),
                       np.log10(max(result.torch_times) * 1e6 * 1.2), 60)  # fmt: skip
    latency.hist(np.array(result.torch_times) * 1e6, bins=bins, alpha=0.7, label="PyTorch eager")
    latency.hist(np.array(result.engine_times) * 1e6, bins=bins, alpha=0.7, label="Rust engine")
    latency.set(xscale="log", title="per-step latency", xlabel="microseconds", ylabel="steps")
    latency.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(dataset: str, epochs: int, out_dir: Path, figure: bool = True) -> int:
    """The whole demo; returns the process exit code (0 when PyTorch and the engine agree)."""
    import torch

    import tracetorch as tt

    torch.manual_seed(0)
    data = load_dataset(dataset)
    steps, _, features = data.train_x.shape
    print(f"data set {dataset}: {data.train_y.size} training and {data.test_y.size} test "
          f"sequences of {steps} timesteps x {features} features")  # fmt: skip
    model = build_model(features, data.classes)
    train(model, data, epochs)

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{dataset}.safetensors"
    tt.export(model, torch.zeros(1, features), path)
    engine = tt.runtime.load(path)
    print(f"exported {path} ({path.stat().st_size} bytes); streaming on the Rust engine")
    result = stream(model, engine, data)

    torch_acc = float(np.mean(np.array(result.torch_pred) == data.test_y))
    engine_acc = float(np.mean(np.array(result.engine_pred) == data.test_y))
    torch_us = statistics.median(result.torch_times) * 1e6
    engine_us = statistics.median(result.engine_times) * 1e6
    print(f"\n{'':<26} | {'PyTorch eager':>13} | {'Rust engine':>11}")
    print("-" * 57)
    print(f"{'test accuracy':<26} | {torch_acc:>13.4f} | {engine_acc:>11.4f}")
    print(f"{'median step latency (us)':<26} | {torch_us:>13.1f} | {engine_us:>11.1f}")
    steps = len(result.engine_times)
    print(
        f"\noutputs within 1e-4 at {result.close_steps} of {steps} timesteps; largest "
        f"difference {result.worst:.2e}; engine speed-up {torch_us / engine_us:.1f}x"
    )
    if result.close_steps < steps:
        # A spike whose membrane sits within float32 rounding of its threshold can
        # go either way; the cross-check tests avoid such ties, long streams may hold one.
        print("(a larger difference means a hard spike decided on a tie, |u| ~ 1e-7)")
    if figure:
        picture = out_dir / f"{dataset}.png"
        plot(result, data, picture)
        print(f"figure: {picture}")
    agree = result.torch_pred == result.engine_pred
    print("PyTorch and the engine agree." if agree else "MISMATCH between PyTorch and the engine.")
    return 0 if agree else 1
