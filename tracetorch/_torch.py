"""Imports PyTorch for the training API, with an actionable message when it is missing."""

try:
    import torch
except ImportError as error:  # pragma: no cover - exercised in a torch-free venv
    raise ImportError(
        "this part of tracetorch needs PyTorch, which is not installed; "
        "install it with: pip install 'tracetorch[torch]' "
        "(the streaming runtime, tracetorch.runtime, works without it)"
    ) from error

__all__ = ["torch"]
