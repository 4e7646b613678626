"""The documentation is generated from the code and stays in step with it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_layer_reference_and_stub_are_current() -> None:
    spec = importlib.util.spec_from_file_location("generate", ROOT / "tools" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (ROOT / "docs" / "layers.md").read_text()
    assert committed == module.render(), "run: python tools/generate.py"
    stub = (ROOT / "tracetorch" / "snn" / "__init__.pyi").read_text()
    assert stub == module.render_stub(), "run: python tools/generate.py"
    for name in ("LIB", "DSRLITS", "LIF", "SRReadout"):
        assert f"### `{name}`" in committed
