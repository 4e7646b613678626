"""Every example runs (in a quick mode) and does what it says."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_sensor_stream_example(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sensor_stream.py"), "--epochs", "2",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    assert (tmp_path / "sensor.safetensors").exists()
    last = result.stdout.strip().splitlines()[-1]
    torch_acc = last.split("PyTorch ")[1].split(",")[0]
    engine_acc = last.split("engine ")[1].split(";")[0]
    assert torch_acc == engine_acc, last


def run_checked(*command: str) -> str:
    """Runs a command and returns its output; on failure, the error shows what it printed."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (
        f"{command} exited with {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def run_example(name: str, *args: str) -> str:
    return run_checked(sys.executable, str(ROOT / "examples" / name), *args)


def test_online_learning_example_learns_while_streaming() -> None:
    printed = run_example("online_learning.py", "--steps", "4000")
    first, last = (float(v.split()[-1]) for v in printed.strip().split(", "))
    assert last > 0.75 and last >= first - 0.05, printed


def test_custom_layer_example() -> None:
    printed = run_example("custom_layer.py")
    assert "states: ['net.1.adapt', 'net.1.mem', 'net.3.mem']" in printed
    assert "gradient reaches beta: True" in printed
    assert "TTcompile keeps outputs: True" in printed
    early, late = (
        float(v) for v in printed.split("firing early ")[1].split("\n")[0].split(", late ")
    )
    assert late < early


def test_distributed_example_spawned() -> None:
    printed = run_example("distributed.py", "--epochs", "3")
    assert "replicas with weights identical to rank 0: 2 of 2" in printed


def test_distributed_example_under_torchrun() -> None:
    # An explicit loopback rendezvous: `--standalone` resolves the host name,
    # which bare CI machines do not always route.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    printed = run_checked(
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(port),
        str(ROOT / "examples" / "distributed.py"), "--epochs", "3",
    )  # fmt: skip
    assert "replicas with weights identical to rank 0: 2 of 2" in printed
