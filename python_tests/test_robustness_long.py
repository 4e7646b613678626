"""Long streams: a million steps keep memory flat; 10,000+ steps stay within 1e-5 of PyTorch."""

from __future__ import annotations

import os
import resource

import numpy as np
import torch
from test_engine_crosscheck import TOLERANCE, clear_draw, randomize_parameters
from torch import nn

import tracetorch as tt
from tracetorch.exporter import export_bytes


def resident_bytes() -> int:
    """Current resident set size, from /proc/self/statm (pages) on Linux."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_million_steps_keep_memory_flat() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), tt.snn.LIF(16), nn.Linear(16, 4), tt.snn.LIB(4))
    engine = tt.runtime.loads(export_bytes(model, torch.zeros(1, 8)))
    chunk = np.random.default_rng(0).normal(size=(20_000, 1, 8)).astype(np.float32)
    total, spikes = 0, 0.0
    for _ in range(3):  # warm up: the allocator settles on the chunk sizes
        spikes += float(engine.run(chunk).sum())
        total += len(chunk)
    before = resident_bytes()
    while total < 1_000_000:
        out = engine.run(chunk)
        total += len(chunk)
        spikes += float(out.sum())
        assert np.isfinite(out).all()
    after = resident_bytes()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"\n{total} steps: RSS {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB "
          f"(peak {peak / 2**20:.1f} MiB)")  # fmt: skip
    assert total == 1_000_000
    assert after - before < 2 * 2**20, (before, after)
    assert spikes > 0  # the model did something
    for name, state in engine.states().items():
        assert np.isfinite(state).all(), name


def test_ten_thousand_steps_match_pytorch() -> None:
    """Engine and PyTorch agree over 10,000 steps, outputs and final states, at 1e-5.

    The spikes of the recurrent LIF layer feed a leaky integrator whose
    membrane is the output, so one flipped spike anywhere in the stream shows.
    """
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 4), tt.snn.RLIF(4), nn.Linear(4, 3), tt.snn.LI(3)).eval()
    randomize_parameters(model, torch.Generator().manual_seed(3))
    steps = 10_000
    xs, expected = clear_draw(
        model,
        lambda seed: 1.5 * torch.randn(steps, 1, 5, generator=torch.Generator().manual_seed(seed)),
    )
    engine = tt.runtime.loads(export_bytes(model, xs[0]))
    got = engine.run(xs.numpy())
    largest = float(np.abs(got - expected).max())
    print(f"\n{steps} steps: largest |engine - PyTorch| = {largest:.2e}")
    np.testing.assert_allclose(got, expected, rtol=TOLERANCE, atol=TOLERANCE)
    assert expected[:, 0, :].std(axis=0).min() > 0.05  # every output moves: a real comparison
    want = tt.Model.save_states(model)  # type: ignore[arg-type]
    for name, state in engine.states().items():
        np.testing.assert_allclose(state, want[name].numpy(), rtol=TOLERANCE, atol=TOLERANCE)
