"""The ONNX Runtime reference of ``tracetorch bench`` exports and agrees.

The benchmark (:mod:`tracetorch.benchmark`) exports one timestep of each of
its models as ``(x, *states) -> (y, *new_states)`` and times it with ONNX
Runtime. These tests run that very code at a batch of 64, so that a change to
the layers' state handling that breaks the export, or freezes a state into the
graph, fails here rather than in a benchmark run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

import tracetorch as tt
from tracetorch import benchmark as bench


@pytest.mark.parametrize("name", list(bench.models()))
def test_onnx_step_follows_pytorch_with_states_as_inputs(name: str, tmp_path: Path) -> None:
    model, shape = bench.models()[name]
    model.eval()
    # 64 streams: a spike flipped on a threshold tie (summation order) changes one stream,
    # under the 1% of elements check_onnx tolerates; a broken export changes most of them.
    xs = np.random.default_rng(0).normal(size=(bench.CHECK_STEPS, 64, *shape)).astype(np.float32)
    stepper, _ = bench.onnx_step(onnxruntime, model, shape, xs, 1, tmp_path / f"{name}.onnx")
    with torch.no_grad():
        tt.Model.zero_states(model)
        model(torch.from_numpy(xs[0]))
        states = tt.Model.save_states(model)
    inputs = [i.name for i in stepper.session.get_inputs()]
    assert inputs == ["x", *states], "every state must be a graph input, none a constant"
    assert {key: stepper.shapes[key] for key in states} == {
        key: list(state.shape) for key, state in states.items()
    }
