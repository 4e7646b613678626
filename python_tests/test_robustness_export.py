"""Export errors: clear ExportError messages, and never a partial or stray file.

(Unsupported modules, custom spike_fn/quant_fn/surrogates and ceil_mode are
covered by test_export.py; this adds the cases it does not.)
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import tracetorch as tt
from tracetorch.errors import ExportError


class CallCounter(nn.Module):
    """A forward whose structure depends on how often it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.lif = tt.snn.LIB(3)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls % 2:
            x = torch.relu(x)
        return self.lif(self.fc(x))


class FirstCallDiffers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.warm = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.warm:
            self.warm = True
            return self.fc(x)
        return self.fc(x) * 2.0


class TrainingBranch(nn.Module):
    """Branches on ``self.training``: export must trace the eval branch."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        return torch.erf(y) if self.training else torch.tanh(y)


class ValueBranch(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.sum() > 0 else -x


class TwoInputs(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + y


class TupleOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fc(x), x


class Broadcast(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x)


def no_file_left(tmp_path: Path) -> None:
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("model", "example", "match"),
    [
        (CallCounter(), torch.zeros(1, 3), "changed structure between two traces"),
        (FirstCallDiffers(), torch.zeros(1, 3), "changed structure between two traces"),
        (ValueBranch(), torch.zeros(1, 3), "could not trace the model with torch.fx"),
        (TwoInputs(), torch.zeros(1, 3), r"takes 2 inputs \(x, y\); export supports one"),
        (TupleOutput(), torch.zeros(1, 3), "must return one tensor"),
        (Broadcast(), torch.zeros(1, 3), "broadcasting is not supported"),
        (nn.Sequential(nn.Linear(3, 3), nn.Softmax(dim=1)), torch.zeros(1, 3),
         r"module '1' \(Softmax\) is not supported"),
        (nn.Sequential(nn.Linear(3, 3)), torch.zeros(1, 4), "rejected example_input of shape"),
        (nn.Sequential(nn.Linear(3, 3)), torch.zeros(3), "leading batch axis"),
        (nn.Sequential(nn.Linear(3, 3)), [[0.0, 0.0, 0.0]], "must be a tensor"),
        (nn.Sequential(nn.Linear(3, 3)), None, "must be a tensor"),
        (nn.Sequential(tt.snn.BLIF(3, neg_surrogate_derivative=lambda u: u)), torch.zeros(1, 3),
         "surrogate"),
        (nn.Sequential(tt.snn.DSLIB(3, spike_fn=lambda u: u)), torch.zeros(1, 3), "spike_fn"),
        (nn.Sequential(tt.snn.LIT(3, quant_fn=nn.Hardtanh())), torch.zeros(1, 3), "quant_fn"),
    ],
)  # fmt: skip
def test_export_errors_are_clear_and_leave_no_file(
    model: nn.Module, example: Any, match: str, tmp_path: Path
) -> None:
    with pytest.raises(ExportError, match=match):
        tt.export(model, example, tmp_path / "m.safetensors")
    no_file_left(tmp_path)


def test_training_branch_exports_the_eval_branch(tmp_path: Path) -> None:
    model = TrainingBranch().train()
    path = tmp_path / "m.safetensors"
    tt.export(model, torch.zeros(1, 3), path)  # erf is unsupported: eval (tanh) was traced
    assert model.training
    engine = tt.runtime.load(path)
    x = torch.linspace(-1, 1, 3).reshape(1, 3)
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    assert abs(engine.step(x.numpy()) - expected).max() < 1e-6


def test_write_failure_leaves_no_partial_file(tmp_path: Path, monkeypatch: Any) -> None:
    path = tmp_path / "m.safetensors"
    tt.export(nn.Sequential(nn.Linear(3, 3)), torch.zeros(1, 3), path)
    before = path.read_bytes()

    def fail(*_: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        tt.export(nn.Sequential(nn.Linear(3, 4)), torch.zeros(1, 3), path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
    assert path.read_bytes() == before


def test_exported_file_has_ordinary_permissions(tmp_path: Path) -> None:
    """The temporary file's 0600 does not leak into the result."""
    path = tmp_path / "m.safetensors"
    umask = os.umask(0o022)
    try:
        tt.export(nn.Sequential(nn.Linear(3, 3)), torch.zeros(1, 3), path)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_export_into_a_missing_directory_is_an_ordinary_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        tt.export(nn.Sequential(nn.Linear(3, 3)), torch.zeros(1, 3), tmp_path / "no" / "m.st")
    no_file_left(tmp_path)
