"""Export: the file holds what docs/format.md says, and unsupported models fail cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch import nn

import tracetorch as tt
from tracetorch.errors import ExportError, TraceTorchError


def read(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    with safe_open(str(path), framework="pt") as handle:
        document = json.loads(handle.metadata()["tracetorch"])
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    return document, tensors


def test_document_and_tensors(tmp_path: Path) -> None:
    layer = tt.snn.LIT(4, beta=0.8, pos_threshold=1.5, neg_threshold=0.5, bias=0.1, beta_rank=0)
    model = nn.Sequential(nn.Linear(3, 4), layer)
    path = tmp_path / "m.safetensors"
    tt.export(model, torch.zeros(1, 3), path)
    document, tensors = read(path)
    assert document["format"] == "tracetorch"
    assert document["version"] == 1
    assert document["input_shape"] == [3]
    assert document["output"] == "1"
    linear, neuron = document["nodes"]
    assert linear["op"] == "linear" and linear["shape"] == [4]
    assert neuron["op"] == "neuron" and neuron["inputs"] == ["0"]
    assert neuron["attrs"]["spec"] == layer.spec.to_dict()
    assert neuron["attrs"]["fire"] == {"spike": "sigmoid4x", "quant": {"kind": "identity"}}
    assert neuron["attrs"]["states"] == ["mem"]
    # Parameters are stored transformed, as after TTcompile.
    params = {role: tensors[key] for role, key in neuron["tensors"].items()}
    assert params["beta"].shape == torch.Size([])
    torch.testing.assert_close(params["beta"], torch.tensor(0.8))
    torch.testing.assert_close(params["pos_threshold"], torch.full((4,), 1.5))
    torch.testing.assert_close(params["neg_threshold"], torch.full((4,), 0.5))
    torch.testing.assert_close(params["bias"], torch.full((4,), 0.1))
    assert all(t.dtype == torch.float32 for t in tensors.values())
    used = [key for node in document["nodes"] for key in node["tensors"].values()]
    assert sorted(used) == sorted(tensors)


def test_family_b_negative_threshold_is_stored_as_magnitude(tmp_path: Path) -> None:
    layer = tt.snn.BLIF(3, neg_threshold=0.7)
    path = tmp_path / "b.safetensors"
    tt.export(nn.Sequential(layer), torch.zeros(1, 3), path)
    document, tensors = read(path)
    (neuron,) = document["nodes"]
    torch.testing.assert_close(tensors[neuron["tensors"]["neg_threshold"]], torch.full((3,), 0.7))
    assert neuron["attrs"]["fire"]["spike"] == "heaviside"


def test_export_leaves_states_and_mode_alone(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), tt.snn.RLIB(4)).train()
    model(torch.rand(2, 3))
    before = tt.Model.save_states(model)  # type: ignore[arg-type]
    tt.export(model, torch.zeros(1, 3), tmp_path / "m.safetensors")
    after = tt.Model.save_states(model)  # type: ignore[arg-type]
    assert model.training
    assert before.keys() == after.keys()
    for key in before:
        torch.testing.assert_close(before[key], after[key], rtol=0, atol=0)


class Custom(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.exp()


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (nn.Sequential(nn.Linear(3, 3), nn.GELU()), r"module '1' \(GELU\)"),
        (nn.Sequential(nn.Linear(3, 3), Custom()), r"exp"),
        (nn.Sequential(tt.snn.LIB(3, spike_fn=torch.sigmoid)), r"spike_fn"),
        (nn.Sequential(tt.snn.LIB(3, quant_fn=lambda p: p)), r"quant_fn"),
        (nn.Sequential(tt.snn.LIF(3, surrogate_derivative=lambda u: (u > 0).float())),
         r"surrogate"),
        (nn.Sequential(nn.Conv2d(1, 2, 3, padding="same")), r"zero padding"),
        (nn.Sequential(nn.MaxPool2d(2, ceil_mode=True)), r"ceil_mode"),
    ],
)  # fmt: skip
def test_unsupported_models_fail_with_a_named_culprit_and_no_file(
    model: nn.Module, match: str, tmp_path: Path
) -> None:
    path = tmp_path / "m.safetensors"
    example = torch.zeros(1, 1, 6, 6) if isinstance(model[0], (nn.Conv2d, nn.MaxPool2d)) \
        else torch.zeros(1, 3)  # fmt: skip
    with pytest.raises(ExportError, match=match):
        tt.export(model, example, path)
    assert list(tmp_path.iterdir()) == []


def test_bad_example_input(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 4), tt.snn.LIB(4))
    with pytest.raises(ExportError, match="example_input"):
        tt.export(model, torch.zeros(1, 5), tmp_path / "m.safetensors")
    with pytest.raises(ExportError, match="batch axis"):
        tt.export(model, torch.zeros(3), tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_layer_called_twice_is_refused(tmp_path: Path) -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lif = tt.snn.LIB(3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lif(self.lif(x))

    with pytest.raises(ExportError, match="more than once"):
        tt.export(Twice(), torch.zeros(1, 3), tmp_path / "m.safetensors")


def test_failed_export_keeps_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    good = nn.Sequential(nn.Linear(3, 3))
    tt.export(good, torch.zeros(1, 3), path)
    before = path.read_bytes()
    with pytest.raises(ExportError):
        tt.export(nn.Sequential(nn.GELU()), torch.zeros(1, 3), path)
    assert path.read_bytes() == before


def test_export_error_is_a_tracetorch_error() -> None:
    assert issubclass(ExportError, TraceTorchError)
    assert issubclass(ExportError, ValueError)
