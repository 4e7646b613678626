"""The exceptions of traceTorch: one hierarchy, rooted at :class:`TraceTorchError`.

| exception | raised when |
|---|---|
| ``TraceTorchError`` | base of every traceTorch error |
| ``ModelFileError`` | a model file is malformed, inconsistent or too large (engine load) |
| ``EngineInputError`` | a step input (shape, dtype, NaN/inf) or a state snapshot does not fit |
| ``ExportError`` | a model cannot be exported (unsupported op or callable, bad example, ...) |

``ModelFileError``, ``EngineInputError`` and ``ExportError`` are also
``ValueError``s. Layer construction errors are plain ``ValueError``s. A bare
``TraceTorchError`` means an internal error of the engine (a bug). What each
error covers, the input policy (NaN and infinite inputs are refused, other
dtypes converted) and the guarantees (a refused call changes nothing; no
partial export file) are in ``docs/errors.md``.
"""

from __future__ import annotations

from tracetorch import _native

TraceTorchError = _native.TraceTorchError
ModelFileError = _native.ModelFileError
EngineInputError = _native.EngineInputError


class ExportError(TraceTorchError, ValueError):
    """A model cannot be exported; the message names the module or function and where it sits."""


__all__ = ["EngineInputError", "ExportError", "ModelFileError", "TraceTorchError"]
