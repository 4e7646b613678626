"""Builds layer classes from declarations: a real signature, a docstring, one configure step.

Every family-A and family-B layer is a declaration (its parameters, in
positional order, and its :class:`~tracetorch.neuron.NeuronSpec`); this module
turns a declaration into an ordinary, picklable ``nn.Module`` subclass whose
``__init__`` has the documented signature.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

Configure = Callable[[Any, dict[str, Any]], None]

__all__ = ["declare_layer"]

_P = inspect.Parameter


def declare_layer(
    name: str,
    base: type,
    arguments: list[tuple[str, Any]],
    configure: Configure,
    doc: str,
    module: str = "tracetorch.snn",
) -> type:
    """A subclass ``name`` of ``base`` whose ``__init__(self, *arguments)`` calls ``configure``.

    ``arguments`` are ``(name, default)`` pairs, in positional order;
    ``inspect._empty`` marks a required argument. ``configure(self, values)``
    receives every argument by name, defaults applied.
    """
    parameters = [_P("self", _P.POSITIONAL_OR_KEYWORD)]
    parameters += [_P(arg, _P.POSITIONAL_OR_KEYWORD, default=default) for arg, default in arguments]
    signature = inspect.Signature(parameters)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{name}(): {error}") from None
        bound.apply_defaults()
        values = dict(bound.arguments)
        del values["self"]
        configure(self, values)

    __init__.__signature__ = signature  # type: ignore[attr-defined]
    __init__.__qualname__ = f"{name}.__init__"
    __init__.__doc__ = doc
    cls = type(name, (base,), {"__init__": __init__, "__doc__": doc, "__module__": module})
    cls.__qualname__ = name
    return cls
