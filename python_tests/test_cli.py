"""The ``tracetorch`` command: demo (the main job), export, run, inspect, bench."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import tracetorch as tt
from tracetorch import benchmark
from tracetorch.cli import main


@pytest.mark.parametrize("dataset", ["digits", "motion"])
def test_demo_quick_run(dataset: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--dataset", dataset, "--epochs", "1", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "PyTorch and the engine agree." in printed
    assert (tmp_path / f"{dataset}.safetensors").stat().st_size > 0
    figure = tmp_path / f"{dataset}.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 20_000
    accuracy = next(line for line in printed.splitlines() if line.startswith("test accuracy"))
    torch_accuracy, engine_accuracy = accuracy.split("|")[1:]
    assert torch_accuracy.strip() == engine_accuracy.strip()
    close, steps = (int(v) for v in printed.split("within 1e-4 at ")[1].split(" timesteps")[0]
                    .split(" of "))  # fmt: skip
    assert close >= 0.99 * steps


def test_python_dash_m_entry_point() -> None:
    result = subprocess.run([sys.executable, "-m", "tracetorch", "--help"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    for command in ("demo", "export", "run", "inspect", "bench"):
        assert command in result.stdout


@pytest.fixture
def model_file(tmp_path: Path) -> tuple[Path, nn.Module]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), tt.snn.RLIB(5), nn.Linear(5, 2), tt.snn.LI(2)).eval()
    path = tmp_path / "model.safetensors"
    tt.export(model, torch.zeros(1, 3), path)
    return path, model


def test_run_csv_and_npy(model_file: tuple[Path, nn.Module], tmp_path: Path) -> None:
    path, _ = model_file
    inputs = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
    expected = tt.runtime.load(path).run(inputs)
    np.savetxt(tmp_path / "in.csv", inputs, delimiter=",", fmt="%.9g")
    assert main(["run", str(path), str(tmp_path / "in.csv"), "--out", str(tmp_path / "o.csv")]) == 0
    np.testing.assert_allclose(np.loadtxt(tmp_path / "o.csv", delimiter=","), expected, atol=1e-6)
    np.save(tmp_path / "in.npy", inputs)
    assert main(["run", str(path), str(tmp_path / "in.npy"), "--out", str(tmp_path / "o.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), expected)


def test_inspect(model_file: tuple[Path, nn.Module], capsys: pytest.CaptureFixture[str]) -> None:
    path, model = model_file
    assert main(["inspect", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "input [3], output '3'" in printed
    assert "neuron" in printed and "binary recurrent" in printed
    expected = sum(p.numel() for p in model.parameters())  # Linear weights + neuron parameters
    assert f"4 nodes, {expected} parameters" in printed


def test_bench(model_file: tuple[Path, nn.Module], capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = model_file
    assert main(["bench", str(path), "--steps", "300", "--streams", "2"]) == 0
    printed = capsys.readouterr().out
    assert "step() from Python: median" in printed and "run(), one call" in printed
    assert "Rust loop:          median" in printed


def test_bench_table(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a model file, ``bench`` prints the comparison tables (no timing is checked)."""
    assert main(["bench", "--models", "sensor,events", "--steps", "30", "--no-onnx"]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    header = next(line for line in lines if line.startswith("model ") and "Rust loop" in line)
    columns = [cell.strip() for cell in header.split("|")]
    row = next(line for line in lines if line.startswith("sensor ") and line.count("|") == 11)
    cells = dict(zip(columns, (cell.strip() for cell in row.split("|")), strict=True))
    for ratio in ("eager/step", "eager/Rust", "Rust/roof"):
        assert cells[ratio].endswith("x") and float(cells[ratio][:-1]) > 0, ratio
    for timing in ("torch eager", "TTcompile", "engine step()", "Rust loop"):
        median, p99 = (float(v) for v in cells[timing].split("/"))
        assert 0 < median <= p99, timing
    assert float(cells["run()"]) > 0 and float(cells["roofline"]) > 0
    assert cells["ORT"] == "n/a" and cells["ORT/step"] == "n/a"
    at = lines.index(next(x for x in lines if x.startswith("roofline of one step")))
    roof_columns = [cell.strip() for cell in lines[at + 1].split("|")]
    roof = dict(zip(roof_columns, (cell.strip() for cell in lines[at + 2].split("|")), strict=True))
    assert roof["model"] == "sensor" and roof["bound by"] in ("weights", "FMA")
    assert roof["read by"] in ("numpy", "engine") and float(roof["read bw"].split()[0]) > 0
    assert any(line.startswith("sensor ") and line.count("|") == 6 for line in lines)  # 256 streams
    cores = next(i for i, x in enumerate(lines) if x.startswith("batch 1, the engine on"))
    every = [cell.strip() for cell in lines[cores + 2].split("|")]
    assert every[0] == "sensor" and len(every) == 6 and float(every[-1].rstrip("x")) > 0
    for timing in every[1:5]:
        median, p99 = (float(v) for v in timing.split("/"))
        assert 0 < median <= p99, timing
    tails = next(i for i, x in enumerate(lines) if x.startswith("p99 / median of the Rust loop"))
    tail = [cell.strip() for cell in lines[tails + 2].split("|")]
    assert tail[0] == "sensor" and float(tail[1]) > 0
    assert all(float(cell.rstrip("x")) >= 1 for cell in tail[2:]), tail
    assert lines[tails + 3].startswith("host: ")
    for activity in ("0%", "5%", "10%", "50%"):
        event = next(line for line in lines if line.strip().startswith(activity + " |"))
        assert float(event.split("|")[-1].strip().rstrip("x")) > 0
    for name in ("mlp ", "conv ", "wide "):
        assert not any(line.startswith(name) for line in lines)


def test_bench_host_measures() -> None:
    """Fixed CPU work scales with its length; the host's interruptions are real gaps."""
    assert benchmark.spin_iterations(2e-5) > benchmark.spin_iterations(2e-6) >= 1
    seen = benchmark.interruptions(0.05)
    assert seen.seconds >= 0.05 and all(gap > benchmark.GAP for gap in seen.gaps)
    assert 0 <= seen.lost < 1


def test_bench_arguments() -> None:
    with pytest.raises(SystemExit):
        main(["bench", "--models", "sensor,nope"])
    with pytest.raises(SystemExit, match="--streams applies to a model file"):
        main(["bench", "--streams", "2"])
    with pytest.raises(SystemExit, match="apply to the table"):
        main(["bench", "model.safetensors", "--no-onnx"])


def test_export_from_a_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_models.py").write_text(
        "import torch, tracetorch as tt\n"
        "def build():\n"
        "    return torch.nn.Sequential(torch.nn.Linear(4, 3), tt.snn.LIB(3))\n"
    )
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(1)
    weights = {"0.weight": torch.randn(3, 4), "0.bias": torch.randn(3),
               "1.raw_beta": torch.zeros(3), "1.raw_threshold": torch.zeros(3),
               "1.raw_bias": torch.zeros(3)}  # fmt: skip
    torch.save(weights, tmp_path / "w.pt")
    out = tmp_path / "m.safetensors"
    args = ["export", "my_models:build", str(out), "--example-shape", "1,4",
            "--state-dict", str(tmp_path / "w.pt")]  # fmt: skip
    assert main(args) == 0
    engine = tt.runtime.load(out)
    x = np.ones(4, np.float32)
    expected = (weights["0.weight"] @ torch.ones(4) + weights["0.bias"]).numpy()
    # beta = sigmoid(0) = 0.5 is irrelevant at the first step; threshold softplus(0) = ln 2.
    spike = 1 / (1 + np.exp(-4 * (expected - np.log(2))))
    np.testing.assert_allclose(engine.step(x), spike, rtol=1e-5)


@pytest.mark.parametrize(
    ("timing", "decimals", "printed"),
    [((0.64, 0.64), 2, "  0.64 / 0.64"), ((13.04, 13.04), 2, " 13.04 / 13.1"),
     ((68.8, 71.31), 1, "  68.8 / 71.4"), ((54.2, 106.0), 2, " 54.20 /  106")],
)  # fmt: skip
def test_bench_pair_never_prints_p99_below_the_median(
    timing: tuple[float, float], decimals: int, printed: str
) -> None:
    """The p99 keeps the median's decimals where they fit, and is rounded up where not."""
    assert benchmark.pair(timing, decimals) == printed
