"""Training-step cost of a traceTorch layer against a direct PyTorch implementation.

One training step = zero_states, T timesteps forward through a 128-neuron LIB
layer at batch 128, backward through time, optimizer step. The direct version
writes the same equation by hand (same parameter transforms). Both run
interleaved, many times; the table gives medians and the ratio.

Run: python benchmarks/bench_training.py [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import tracetorch as tt


class DirectLIB(nn.Module):
    """LIB written out by hand: the equation of the spec, nothing else."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.raw_beta = nn.Parameter(torch.full((n,), 0.9).logit())
        self.raw_threshold = nn.Parameter(torch.full((n,), 1.0).expm1().log())
        self.raw_bias = nn.Parameter(torch.zeros(n))
        self.mem: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = torch.sigmoid(self.raw_beta)
        threshold = nn.functional.softplus(self.raw_threshold)
        bias = torch.asinh(self.raw_bias)
        if self.mem is None:
            self.mem = torch.zeros_like(x)
        mem = beta * self.mem + x
        spikes = torch.sigmoid(4.0 * (mem - threshold + bias))
        self.mem = mem - spikes * threshold
        return spikes


def train_step(layer: nn.Module, reset, optimizer, inputs: torch.Tensor) -> None:
    reset()
    optimizer.zero_grad()
    loss = sum(layer(x).sum() for x in inputs)
    loss.backward()
    optimizer.step()


def measure(repeats: int, timesteps: int, batch: int = 128, n: int = 128) -> tuple[float, float]:
    torch.manual_seed(0)
    inputs = torch.randn(timesteps, batch, n)
    ours = tt.snn.LIB(n)
    direct = DirectLIB(n)
    runs = {
        "tracetorch": (ours, ours.zero_states, torch.optim.SGD(ours.parameters(), lr=1e-3)),
        "direct": (
            direct,
            lambda: setattr(direct, "mem", None),
            torch.optim.SGD(direct.parameters(), lr=1e-3),
        ),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(max(5, repeats // 10)):  # warm-up
        for layer, reset, opt in runs.values():
            train_step(layer, reset, opt, inputs)
    for _ in range(repeats):
        for name, (layer, reset, opt) in runs.items():
            start = time.perf_counter()
            train_step(layer, reset, opt, inputs)
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["tracetorch"]), statistics.median(times["direct"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, tracetorch {tt.__version__}, 1 thread, batch 128, "
        f"128 neurons, median of {args.repeats} interleaved runs"
    )
    print(f"{'timesteps':>9} | {'tracetorch (us)':>15} | {'direct (us)':>11} | {'ratio':>5}")
    print("-" * 50)
    for timesteps in (1, 10, 50):
        ours, direct = measure(args.repeats, timesteps)
        print(
            f"{timesteps:>9} | {ours * 1e6:>15.1f} | {direct * 1e6:>11.1f} | {ours / direct:>5.2f}"
        )


if __name__ == "__main__":
    main()
