"""``tt.Model``: an ``nn.Module`` that manages the states of every traceTorch layer inside it.

Layers are found wherever they sit: registered submodules, and plain Python
lists, tuples, dicts and attributes (which ``nn.Module`` itself does not see).

Example:
    >>> import torch, tracetorch as tt
    >>> class Net(tt.Model):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.net = torch.nn.Sequential(torch.nn.Linear(3, 4), tt.snn.LIB(4))
    ...     def forward(self, x):
    ...         return self.net(x)
    >>> model = Net()
    >>> _ = model(torch.rand(2, 3))
    >>> sorted(model.save_states())
    ['net.1.mem']
    >>> model.zero_states()
    >>> model.save_states()
    {}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Optional, Union

from tracetorch._torch import torch
from tracetorch.layer import Layer

nn = torch.nn
Tensor = torch.Tensor

__all__ = ["Model", "named_layers"]

# Attributes every nn.Module has; never searched for layers.
_MODULE_INTERNALS = frozenset(vars(nn.Module()))


def named_layers(root: Any, prefix: str = "") -> Iterator[tuple[str, Layer]]:
    """Every traceTorch layer reachable from ``root``, with its dotted path, each once."""
    seen: set[int] = set()

    def walk(obj: Any, path: str) -> Iterator[tuple[str, Layer]]:
        if id(obj) in seen:
            return
        if isinstance(obj, nn.Module):
            seen.add(id(obj))
            if isinstance(obj, Layer):
                yield path, obj
            for name, child in obj._modules.items():
                if child is not None:
                    yield from walk(child, _join(path, name))
            for name, value in vars(obj).items():
                searchable = isinstance(value, (list, tuple, dict, nn.Module))
                if searchable and name not in _MODULE_INTERNALS:
                    yield from walk(value, _join(path, name))
        elif isinstance(obj, (list, tuple)):
            seen.add(id(obj))
            for index, item in enumerate(obj):
                yield from walk(item, _join(path, str(index)))
        elif isinstance(obj, dict):
            seen.add(id(obj))
            for key, item in obj.items():
                yield from walk(item, _join(path, str(key)))

    yield from walk(root, prefix)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class Model(nn.Module):
    """Base class for models built from traceTorch layers (use it like ``nn.Module``)."""

    def zero_states(self) -> None:
        """Reset the states of every layer in the model to ``None`` (start of a sequence)."""
        for _, layer in named_layers(self):
            layer.zero_states()

    def detach_states(self) -> None:
        """Cut every state from the autograd graph (truncated BPTT, online learning)."""
        for _, layer in named_layers(self):
            layer.detach_states()

    def save_states(self) -> dict[str, Tensor]:
        """A snapshot ``{"<layer path>.<state>": tensor}`` of every state that exists.

        Each state is shaped like its layer's input. The tensors are detached copies.
        """
        snapshot: dict[str, Tensor] = {}
        for path, layer in named_layers(self):
            for name in layer.state_names:
                state = layer.__dict__[name]
                if state is not None:
                    snapshot[_join(path, name)] = state.detach().clone()
        return snapshot

    def load_states(
        self,
        states: Mapping[str, Tensor],
        strict: bool = True,
        device: Optional[Union[str, torch.device]] = None,
    ) -> None:
        """Restore a :meth:`save_states` snapshot; nothing changes unless all of it is valid.

        Args:
            states: the snapshot.
            strict: every state of every layer must be given and no other key.
            device: where to put the states (default: where each layer's parameters are).

        Raises:
            ValueError: unknown or missing keys (strict), or a state whose shape
                does not fit its layer.
        """
        layers = dict(named_layers(self))
        plan: list[tuple[Layer, str, Tensor]] = []
        expected: set[str] = set()
        errors: list[str] = []
        for path, layer in layers.items():
            shapes = set()
            for name in layer.state_names:
                key = _join(path, name)
                expected.add(key)
                if key not in states:
                    continue
                value = states[key]
                if not isinstance(value, torch.Tensor):
                    errors.append(f"{key}: expected a tensor, got {type(value).__name__}")
                    continue
                dim = layer.dim
                if not -value.ndim <= dim < value.ndim or value.shape[dim] != layer.num_neurons:
                    errors.append(
                        f"{key}: expected num_neurons={layer.num_neurons} entries along dim "
                        f"{dim}, got shape {tuple(value.shape)}"
                    )
                    continue
                shapes.add(tuple(value.shape))
                plan.append((layer, name, value))
            if len(shapes) > 1:
                errors.append(
                    f"{path}: states of one layer must share a shape, got {sorted(shapes)}"
                )
        if strict:
            unexpected = sorted(set(states) - expected)
            missing = sorted(expected - set(states))
            if unexpected:
                errors.append(f"unexpected states {unexpected}")
            if missing:
                errors.append(f"missing states {missing}")
        if errors:
            raise ValueError("load_states: " + "; ".join(errors))
        for layer, name, value in plan:
            target = device if device is not None else _device_of(layer, value)
            layer.__dict__[name] = value.detach().to(target).clone()

    def TTcompile(self) -> None:
        """Bake every layer's parameter transforms into buffers for fast inference. Idempotent."""
        for _, layer in named_layers(self):
            layer.TTcompile()

    def TTdecompile(self) -> None:
        """Undo :meth:`TTcompile`: learnable parameters become trainable again. Idempotent."""
        for _, layer in named_layers(self):
            layer.TTdecompile()


def _device_of(layer: Layer, fallback: Tensor) -> torch.device:
    for parameter in layer.parameters():
        return parameter.device
    for buffer in layer.buffers():
        return buffer.device
    return fallback.device
