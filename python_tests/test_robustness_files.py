"""Hostile model files: every load either succeeds and streams, or raises ModelFileError.

Real exported files are damaged in many ways (random bytes, truncation, the
safetensors header entry by entry, the graph document field by field) and
each result is loaded. A panic would surface as ``PanicException`` (a
``BaseException``), a crash would kill the test run; both fail here, as does
any exception other than :class:`ModelFileError`. The named cases of
``docs/errors.md`` are then checked one by one for a clear message.
"""

from __future__ import annotations

import copy
import json
import random
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors
from torch import nn

import tracetorch as tt
from tracetorch.errors import ModelFileError
from tracetorch.exporter import export_bytes


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.lif = tt.snn.RLIF(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lif(self.fc(x))
        return torch.cat([y + x, 2.0 - x * y], dim=1).tanh()


def _models() -> dict[str, bytes]:
    torch.manual_seed(0)
    return {
        "mlp": export_bytes(nn.Sequential(nn.Linear(4, 3), tt.snn.LIB(3)), torch.zeros(1, 4)),
        "conv": export_bytes(
            nn.Sequential(
                nn.Conv2d(1, 2, 3, padding=1),
                nn.BatchNorm2d(2),
                tt.snn.LIF(2, dim=-3),
                nn.AvgPool2d(2),
                nn.Flatten(),
                nn.Linear(8, 2),
                tt.snn.Readout(2),
            ),
            torch.zeros(1, 1, 4, 4),
        ),
        "conv1d": export_bytes(
            nn.Sequential(
                nn.Conv1d(2, 2, 3, groups=2),
                nn.MaxPool1d(2),
                nn.Flatten(),
                tt.snn.DSRLIT(4, quant_fn=tt.functional.round_ste(0.5)),
                nn.LeakyReLU(0.1),
            ),
            torch.zeros(1, 2, 6),
        ),
        "residual": export_bytes(_Residual(), torch.zeros(1, 3)),
    }


MODELS = _models()


def split(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The safetensors header (as JSON) and the data section."""
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def join(header: Any, body: bytes, length: int | None = None) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + body


def with_document(data: bytes, document: Any) -> bytes:
    """The file with its tensors and another `tracetorch` metadata value."""
    text = document if isinstance(document, str) else json.dumps(document)
    return save_tensors(load_tensors(data), metadata={"tracetorch": text})


def document(data: bytes) -> dict[str, Any]:
    header, _ = split(data)
    return json.loads(header["__metadata__"]["tracetorch"])


OUTCOMES = {"loaded": 0, "refused": 0}


def outcome(data: bytes) -> str:
    """Load ``data``; a loaded engine must stream. Anything but ModelFileError fails."""
    try:
        engine = tt.runtime.loads(data)
    except ModelFileError as error:
        assert str(error), "an error without a message"
        OUTCOMES["refused"] += 1
        return "refused"
    except BaseException as error:  # PanicException is a BaseException
        pytest.fail(f"loading raised {type(error).__module__}.{type(error).__name__}: {error}")
    x = np.full(engine.input_shape, 0.25, np.float32)
    y = engine.step(x)
    assert list(y.shape) == engine.output_shape
    ys = engine.run(np.stack([x, -x, x]))
    assert list(ys.shape) == [3, *engine.output_shape]
    engine.load_states(engine.states())
    OUTCOMES["loaded"] += 1
    return "loaded"


def refused(data: bytes, match: str) -> None:
    with pytest.raises(ModelFileError, match=match):
        tt.runtime.loads(data)


# --- random damage ---------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_random_byte_damage(name: str) -> None:
    data = MODELS[name]
    assert outcome(data) == "loaded"
    rng = random.Random(name)
    results = []
    for _ in range(400):
        damaged = bytearray(data)
        kind = rng.randrange(4)
        if kind == 0:  # overwrite a few bytes
            for _ in range(rng.randint(1, 4)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        elif kind == 1:  # overwrite one byte with a digit (numbers in the JSON grow)
            damaged[rng.randrange(len(damaged))] = ord(rng.choice("0123456789"))
        elif kind == 2:  # delete a range
            start = rng.randrange(len(damaged))
            del damaged[start : start + rng.randint(1, 16)]
        else:  # insert bytes
            at = rng.randrange(len(damaged))
            damaged[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        results.append(outcome(bytes(damaged)))
    assert "refused" in results


@pytest.mark.parametrize("name", MODELS)
def test_every_truncation_is_refused(name: str) -> None:
    data = MODELS[name]
    for n in range(0, len(data), 7):
        refused(data[:n], "not a valid safetensors file")
    refused(data[:-1], "not a valid safetensors file")


# --- the safetensors header, entry by entry ---------------------------------------


def header_mutations(header: dict[str, Any], body: bytes) -> Iterator[bytes]:
    text_len = len(json.dumps(header).encode())
    for length in (0, 1, 7, text_len - 1, text_len + 1, text_len + len(body) + 1, 2**31, 2**64 - 1):
        yield join(header, body, length=length)  # a lying header length
    names = [k for k in header if k != "__metadata__"]
    hostile_dtypes = ["F64", "F16", "BF16", "I32", "U8", "BOOL", "F8_E4M3", "X", 3, None]
    hostile_shapes = [[], [0], [2**40], [2**62, 4], [-1], "3", [1.5], None, [1, 1, 1, 1, 1, 1]]
    for name in names:
        entry = header[name]
        start, end = entry["data_offsets"]
        hostile_offsets = [
            [end, start], [start, start], [0, end - start], [start, end + 4],
            [start + 4, end + 4], [len(body), len(body) + 4], [start, 2**64 - 1],
            [2**63, 2**63 + 4], [-4, end], [start], None, "0",
        ]  # fmt: skip
        edits = (
            [("dtype", v) for v in hostile_dtypes]
            + [("shape", v) for v in hostile_shapes]
            + [("data_offsets", v) for v in hostile_offsets]
        )
        for key, value in edits:
            h = copy.deepcopy(header)
            h[name][key] = value
            yield join(h, body)
        h = copy.deepcopy(header)
        del h[name]  # a tensor missing from the header, its bytes still there
        yield join(h, body)
    h = copy.deepcopy(header)
    h["extra"] = {"dtype": "F32", "shape": [1], "data_offsets": [len(body), len(body) + 4]}
    yield join(h, body + b"\0\0\0\0")  # an extra tensor
    h = copy.deepcopy(header)
    h["__metadata__"] = {"tracetorch": 5}
    yield join(h, body)
    yield join([1, 2], body)
    yield join("text", body)


@pytest.mark.parametrize("name", MODELS)
def test_header_mutations(name: str) -> None:
    header, body = split(MODELS[name])
    results = [outcome(m) for m in header_mutations(header, body)]
    assert results.count("refused") > 0.9 * len(results)


# --- the graph document, field by field -------------------------------------------


HOSTILE_VALUES: list[Any] = [
    None, True, -1, 0, 1, 3, 2**31, 2**63, 2**64, -(2**63), 1e308, 0.5, "", "input", "x" * 300,
    [], [0], [2**40, 2**40], [-1], [None], {}, {"a": 1}, [[1]],
]  # fmt: skip


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key and index path inside a JSON value (containers and leaves)."""
    if prefix:
        yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*prefix, index))


def replaced(doc: Any, path: tuple[Any, ...], value: Any, delete: bool = False) -> Any:
    doc = copy.deepcopy(doc)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


@pytest.mark.parametrize("name", MODELS)
def test_document_field_by_field(name: str) -> None:
    data = MODELS[name]
    tensors = load_tensors(data)
    doc = document(data)
    results = []
    all_paths = list(paths(doc))
    assert len(all_paths) > 30
    for path in all_paths:
        results.append(outcome(save_tensors(tensors, {"tracetorch": json.dumps(
            replaced(doc, path, None, delete=True))})))  # fmt: skip
        for value in HOSTILE_VALUES:
            mutated = json.dumps(replaced(doc, path, value))
            results.append(outcome(save_tensors(tensors, {"tracetorch": mutated})))
    # Some edits are harmless (a slope of 0, an unused attribute): most are not.
    assert results.count("refused") > 0.8 * len(results), results.count("refused")
    assert "loaded" in results


# --- the named cases, each with a clear message -----------------------------------


def test_named_file_problems_have_clear_messages() -> None:
    data = MODELS["mlp"]
    header, body = split(data)
    doc = document(data)
    names = sorted(k for k in header if k != "__metadata__")

    refused(data[:5], "not a valid safetensors file")
    refused(data[: len(data) // 2], "not a valid safetensors file")
    refused(join(header, body, length=2**40), "not a valid safetensors file")
    overlapping = copy.deepcopy(header)
    start, end = overlapping[names[1]]["data_offsets"]
    overlapping[names[1]]["data_offsets"] = [start - 4, end - 4]
    refused(join(overlapping, body), "not a valid safetensors file")
    outside = copy.deepcopy(header)
    outside[names[0]]["data_offsets"] = [len(body), len(body) + 2**40]
    refused(join(outside, body), "not a valid safetensors file")

    tensors = load_tensors(data)
    as_f64 = dict(tensors, **{"1.beta": tensors["1.beta"].astype(np.float64)})
    refused(save_tensors(as_f64, {"tracetorch": json.dumps(doc)}), "expected dtype F32, found F64")
    nan = dict(tensors, **{"0.weight": np.full_like(tensors["0.weight"], np.nan)})
    refused(save_tensors(nan, {"tracetorch": json.dumps(doc)}), "expected finite values")
    missing = {k: v for k, v in tensors.items() if k != "0.bias"}
    refused(save_tensors(missing, {"tracetorch": json.dumps(doc)}), "`0.bias`.*is not in the file")
    extra = dict(tensors, stray=np.zeros(2, np.float32))
    refused(save_tensors(extra, {"tracetorch": json.dumps(doc)}), "`stray` is not used by any node")
    wrong = dict(tensors, **{"0.weight": np.zeros((3, 5), np.float32)})
    refused(save_tensors(wrong, {"tracetorch": json.dumps(doc)}), "weight's in size 5")
    wrong = dict(tensors, **{"0.bias": np.zeros(4, np.float32)})
    refused(save_tensors(wrong, {"tracetorch": json.dumps(doc)}), r"`bias` should have shape \[3\]")

    refused(save_tensors(tensors), "no `tracetorch` metadata")
    refused(with_document(data, "{not json"), "invalid `tracetorch` metadata")
    refused(with_document(data, dict(doc, version=2)), "expected 1, found 2")
    refused(with_document(data, dict(doc, format="onnx")), 'expected format "tracetorch"')
    bad_op = replaced(doc, ("nodes", 0, "op"), "gelu")
    refused(with_document(data, bad_op), "unknown op `gelu`")
    bad_shape = replaced(doc, ("nodes", 0, "shape"), [4])
    refused(with_document(data, bad_shape), r"declared shape \[4\] differs from the computed")
    cycle = replaced(doc, ("nodes", 0, "inputs"), [doc["nodes"][1]["name"]])
    refused(with_document(data, cycle), "not defined by an earlier node")
    self_loop = replaced(doc, ("nodes", 0, "inputs"), [doc["nodes"][0]["name"]])
    refused(with_document(data, self_loop), "not defined by an earlier node")
    huge = dict(doc, input_shape=[2**31, 2**31])
    refused(with_document(data, huge), "too large")
    huge = dict(doc, input_shape=[2**40])
    refused(with_document(data, huge), "too large")


def test_outcomes_cover_both_sides() -> None:
    """The mutation tests above saw both refusals and files that still load."""
    if OUTCOMES["refused"] == 0:  # run alone: exercise a little of each
        test_header_mutations("mlp")
        test_document_field_by_field("mlp")
    assert OUTCOMES["refused"] > 0
    assert OUTCOMES["loaded"] > 0
