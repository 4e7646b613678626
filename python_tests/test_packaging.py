"""The package imports without PyTorch and says what to install when the training API is used."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import tracetorch as tt


def run_without_torch(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where ``import torch`` fails."""
    prelude = "import sys\nsys.modules['torch'] = None  # makes `import torch` raise ImportError\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_without_torch() -> None:
    result = run_without_torch(
        """
        import tracetorch as tt
        print(tt.__version__)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == tt.__version__


def test_training_api_without_torch_says_what_to_install() -> None:
    for expression in ("tt.snn", "tt.Model", "tt.functional", "tt.Layer"):
        result = run_without_torch(
            f"""
            import tracetorch as tt
            try:
                {expression}
            except ImportError as error:
                print(error)
            else:
                raise SystemExit("no ImportError")
            """
        )
        assert result.returncode == 0, result.stderr
        assert "pip install 'tracetorch[torch]'" in result.stdout, expression


def test_bench_without_torch(tmp_path: Path) -> None:
    """``tracetorch bench`` says what to install; ``tracetorch bench MODEL`` needs no PyTorch."""
    result = run_without_torch("from tracetorch.cli import main\nmain(['bench'])")
    assert result.returncode == 1, result.stderr
    assert "pip install 'tracetorch[torch]'" in result.stderr
    assert "tracetorch[bench]" in result.stderr

    import torch

    path = tmp_path / "model.safetensors"
    tt.export(torch.nn.Sequential(torch.nn.Linear(4, 3), tt.snn.LIB(3)), torch.zeros(1, 4), path)
    result = run_without_torch(
        f"from tracetorch.cli import main\nmain(['bench', {str(path)!r}, '--steps', '200'])"
    )
    assert result.returncode == 0, result.stderr
    assert "step() from Python: median" in result.stdout


def test_public_names() -> None:
    assert set(tt.__all__) >= {"snn", "Model", "Layer", "functional", "__version__"}
    assert len(tt.snn.FAMILY_A) == 32
    assert len(tt.snn.FAMILY_B) == 12
    for name in tt.snn.__all__:
        assert hasattr(tt.snn, name), name
