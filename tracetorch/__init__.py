"""traceTorch: spiking neural networks for PyTorch, streamed on CPU by a Rust engine.

The package imports without PyTorch. The training API (``tt.snn``, ``tt.Model``,
``tt.Layer``, ``tt.functional``) is loaded on first use and needs the ``torch``
extra (``pip install 'tracetorch[torch]'``).

Example:
    >>> import tracetorch as tt
    >>> layer = tt.snn.LIB(4)
    >>> layer.beta.shape
    torch.Size([4])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tracetorch._native import __version__

if TYPE_CHECKING:
    from tracetorch import errors, functional, nir, runtime, snn
    from tracetorch.exporter import export
    from tracetorch.layer import Layer
    from tracetorch.model import Model

__all__ = [
    "Layer", "Model", "__version__", "errors", "export", "functional", "nir", "runtime", "snn",
]  # fmt: skip

# Names served lazily, so that `import tracetorch` never imports torch.
_LAZY_MODULES = {"errors", "functional", "nir", "runtime", "snn"}
_LAZY_ATTRIBUTES = {
    "Layer": "tracetorch.layer",
    "Model": "tracetorch.model",
    "export": "tracetorch.exporter",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES:
        return importlib.import_module(f"tracetorch.{name}")
    if name in _LAZY_ATTRIBUTES:
        return getattr(importlib.import_module(_LAZY_ATTRIBUTES[name]), name)
    raise AttributeError(f"module 'tracetorch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
