"""Checks shared by the family-A and family-B layer tests (state management, compile, errors).

Each check drives a layer through the public API only and states, in its
docstring, what it proves; the test modules call them per layer.
"""

from __future__ import annotations

import copy
import re
import zlib
from collections.abc import Sequence
from typing import Any

import pytest
import torch
from reference import Result
from torch import nn

import tracetorch as tt

Tensor = torch.Tensor

# Float32 layers against the float64 reference.
TOL: dict[str, float] = {"rtol": 1e-5, "atol": 1e-5}

__all__ = [
    "TOL",
    "Holder",
    "assert_stream_matches",
    "check_compile_roundtrip",
    "check_detach_states",
    "check_load_states_errors",
    "check_save_load_continues",
    "check_zero_states",
    "mentions",
    "run",
    "seed_of",
]


class Holder(tt.Model):
    """A model around one layer, so that the model-level API can be exercised."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)


def seed_of(*parts: object) -> int:
    """A stable seed for a test case."""
    return zlib.crc32("/".join(map(str, parts)).encode())


def run(layer: nn.Module, inputs: Sequence[Tensor]) -> list[Tensor]:
    """The layer's output for each step."""
    return [layer(x) for x in inputs]


def mentions(text: str, word: str) -> bool:
    """``word`` appears in ``text`` as a whole identifier (``beta`` not inside ``pos_beta``)."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])", text) is not None


def assert_stream_matches(
    layer: nn.Module, outputs: Sequence[Tensor], expected: Result, state_names: Sequence[str]
) -> None:
    """Each output and each named state of ``layer`` equals the reference (1e-5)."""
    assert len(outputs) == len(expected.outputs)
    for t, (y, e) in enumerate(zip(outputs, expected.outputs, strict=True)):
        torch.testing.assert_close(
            y.detach().double(), e.detach(), **TOL, msg=lambda m, t=t: f"step {t}: {m}"
        )
    for state in state_names:
        actual = getattr(layer, state)
        assert actual is not None, f"{state} is None after {len(outputs)} steps"
        torch.testing.assert_close(
            actual.detach().double(), expected.states[state].detach(), **TOL,
            msg=lambda m, s=state: f"{s}: {m}",
        )  # fmt: skip


def _states(layer: nn.Module, names: Sequence[str]) -> dict[str, Any]:
    return {s: getattr(layer, s) for s in names}


def check_zero_states(
    layer: nn.Module, state_names: Sequence[str], inputs: Sequence[Tensor]
) -> None:
    """``zero_states`` (layer and model) sets every state to None; the stream restarts."""
    fresh = copy.deepcopy(layer)
    assert all(v is None for v in _states(layer, state_names).values()), "states before a step"
    run(layer, inputs)
    assert all(v is not None for v in _states(layer, state_names).values())
    layer.zero_states()
    assert all(v is None for v in _states(layer, state_names).values())
    assert torch.equal(layer(inputs[0]), fresh(inputs[0]))
    Holder(layer).zero_states()
    assert all(v is None for v in _states(layer, state_names).values())
    layer(torch.zeros(7, *inputs[0].shape[1:]))  # a new batch size is fine after zero_states


def check_detach_states(
    layer: nn.Module, state_names: Sequence[str], inputs: Sequence[Tensor]
) -> None:
    """``detach_states`` keeps every value, drops autograd history, and the stream continues."""
    twin = copy.deepcopy(layer)
    half = len(inputs) // 2
    run(layer, inputs[:half])
    run(twin, inputs[:half])
    before = _states(layer, state_names)
    assert any(v.requires_grad for v in before.values()), "no state carries a graph"
    Holder(layer).detach_states()
    for s, v in _states(layer, state_names).items():
        assert not v.requires_grad and v.grad_fn is None, s
        assert torch.equal(v, before[s].detach()), s
    for x in inputs[half:]:
        assert torch.equal(layer(x), twin(x))
    layer(inputs[0]).sum().backward()  # the graph now starts at the detached states


def check_compile_roundtrip(
    layer: nn.Module, parameter_names: Sequence[str], inputs: Sequence[Tensor]
) -> None:
    """TTcompile bakes each ``raw_<p>`` into a buffer ``<p>`` with identical outputs;
    TTdecompile restores the raw tensors (learnable ones as trainable Parameters). Both are
    idempotent."""
    model = Holder(layer)
    twin = copy.deepcopy(model)
    raw_before = {k: v.clone() for k, v in layer.state_dict().items()}
    learnable = {n for n, _ in layer.named_parameters()}
    third = len(inputs) // 3
    for x in inputs[:third]:
        assert torch.equal(model(x), twin(x))

    model.TTcompile()
    model.TTcompile()
    assert not any(k.startswith("raw_") for k in layer.state_dict()), list(layer.state_dict())
    assert list(layer.parameters()) == []
    buffers = dict(layer.named_buffers())
    for p in parameter_names:
        assert torch.equal(buffers[p], getattr(twin.layer, p).detach()), p
        assert torch.equal(getattr(layer, p), buffers[p]), p
    for x in inputs[third : 2 * third]:
        assert torch.equal(model(x), twin(x))

    model.TTdecompile()
    model.TTdecompile()
    assert {n for n, _ in layer.named_parameters()} == learnable
    assert all(isinstance(t, nn.Parameter) and t.requires_grad for t in layer.parameters())
    assert set(layer.state_dict()) == set(raw_before)
    for k, v in layer.state_dict().items():
        torch.testing.assert_close(v, raw_before[k], rtol=1e-6, atol=1e-6)
    outputs = [model(x) for x in inputs[2 * third :]]
    for y, x in zip(outputs, inputs[2 * third :], strict=True):
        assert torch.equal(y, twin(x))
    torch.stack(outputs).sum().backward()
    assert all(t.grad is not None for t in layer.parameters())


def check_save_load_continues(
    layer: nn.Module, state_names: Sequence[str], inputs: Sequence[Tensor], ordered: bool
) -> None:
    """Run 5, save, run 5 (y1); load, run the same 5: identical, also in a fresh model.

    Keys are ``layer.<state>`` for every state (in ``state_names`` order if ``ordered``).
    """
    model = Holder(layer)
    fresh = copy.deepcopy(model)
    assert model.save_states() == {}
    run(model, inputs[:5])
    snapshot = model.save_states()
    keys = [f"layer.{s}" for s in state_names]
    assert (list(snapshot) == keys) if ordered else (set(snapshot) == set(keys)), list(snapshot)
    y1 = run(model, inputs[5:10])
    model.load_states(snapshot)
    for a, b in zip(run(model, inputs[5:10]), y1, strict=True):
        assert torch.equal(a, b)
    fresh.load_states(snapshot)
    for a, b in zip(run(fresh, inputs[5:10]), y1, strict=True):
        assert torch.equal(a, b)
    model.zero_states()
    assert model.save_states() == {}


def check_load_states_errors(layer: nn.Module, inputs: Sequence[Tensor], num_neurons: int) -> None:
    """A wrong shape, a missing key or an unknown key (strict) raise ValueError and change
    nothing; a non-strict partial load applies what it is given."""
    model = Holder(layer)
    run(model, inputs)
    snapshot = model.save_states()
    shifted = {k: v + 1.0 for k, v in snapshot.items()}
    last = list(shifted)[-1]
    batch = inputs[0].shape[:-1]

    def unchanged() -> None:
        for k, v in model.save_states().items():
            assert torch.equal(v, snapshot[k]), f"{k} changed by a failed load"

    wrong_shape = {**shifted, last: torch.zeros(*batch, num_neurons + 1)}
    with pytest.raises(ValueError):
        model.load_states(wrong_shape)
    unchanged()
    missing = {k: v for k, v in shifted.items() if k != last}
    with pytest.raises(ValueError):
        model.load_states(missing, strict=True)
    unchanged()
    with pytest.raises(ValueError):
        model.load_states({**shifted, "layer.not_a_state": torch.zeros(*batch, num_neurons)})
    unchanged()
    model.load_states(missing, strict=False)
    for k, v in model.save_states().items():
        assert torch.equal(v, shifted[k] if k != last else snapshot[k]), k
