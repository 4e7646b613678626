"""The release wheel: one abi3 manylinux wheel that streams models in a venv without PyTorch."""

from __future__ import annotations

import json
import subprocess
import textwrap
import venv
from pathlib import Path

import numpy as np
import torch
from torch import nn

import tracetorch as tt

ROOT = Path(__file__).resolve().parents[1]


def run(command: list[str], **options: object) -> str:
    """Runs ``command``; on failure the assertion shows what it printed."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200, **options)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{command[:3]} failed:\n{result.stdout}\n{result.stderr}"
    return str(result.stdout)


def test_wheel_streams_without_torch(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    run(["maturin", "build", "--release", "-o", str(wheels)], cwd=ROOT)
    (wheel,) = wheels.glob("*.whl")
    assert "-abi3-" in wheel.name and "manylinux" in wheel.name, wheel.name

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), tt.snn.RLIB(8, quant_fn=tt.functional.round_ste()),
                          nn.Linear(8, 3), tt.snn.LI(3)).eval()  # fmt: skip
    path = tmp_path / "model.safetensors"
    tt.export(model, torch.zeros(1, 4), path)
    inputs = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    expected = tt.runtime.load(path).run(inputs)
    np.save(tmp_path / "inputs.npy", inputs)

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    run([python, "-m", "pip", "install", "-q", str(wheel)])
    script = textwrap.dedent(
        f"""
        import json, numpy as np, tracetorch as tt
        try:
            import torch
        except ImportError:
            has_torch = False
        else:
            has_torch = True
        try:
            tt.snn
        except ImportError as error:
            message = str(error)
        engine = tt.runtime.load({str(path)!r})
        out = engine.run(np.load({str(tmp_path / "inputs.npy")!r}))
        times = engine.time_steps(np.load({str(tmp_path / "inputs.npy")!r}))
        print(json.dumps({{"torch": has_torch, "message": message, "out": out.tolist(),
                          "times": times.tolist()}}))
        """
    )
    report = json.loads(run([python, "-c", script], cwd=tmp_path))
    assert report["torch"] is False
    assert "pip install 'tracetorch[torch]'" in report["message"]
    np.testing.assert_array_equal(np.array(report["out"], dtype=np.float32), expected)
    assert len(report["times"]) == 20 and all(t > 0 for t in report["times"])
    # The comparison table needs PyTorch, and says so.
    table = subprocess.run([python, "-m", "tracetorch", "bench"], capture_output=True, text=True,
                           timeout=120, cwd=tmp_path)  # fmt: skip
    assert table.returncode == 1 and "pip install 'tracetorch[torch]'" in table.stderr
