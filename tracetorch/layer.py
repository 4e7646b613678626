"""``tt.Layer``: the base of every stateful traceTorch layer.

A layer owns transformed parameters (stored raw, read through an activation so
that constraints hold during training) and lazily created states (plain tensor
attributes, not buffers: they are per-replica and never in ``state_dict``).

Example:
    >>> import torch
    >>> import tracetorch as tt
    >>> class Accumulator(tt.Layer):
    ...     def __init__(self, num_neurons):
    ...         super().__init__(num_neurons)
    ...         self._register_parameter("gain", 2.0, rank=0, learnable=False)
    ...         self._initialize_state("total")
    ...     def forward(self, x):
    ...         self._ensure_states(x)
    ...         self.total = self.total + self.gain * x
    ...         return self.total
    >>> acc = Accumulator(3)
    >>> _ = acc(torch.ones(3))
    >>> acc(torch.ones(3))
    tensor([4., 4., 4.])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Union

from tracetorch._torch import torch

nn = torch.nn
Tensor = torch.Tensor
Transform = Callable[[Tensor], Tensor]
ParameterValue = Union[float, int, Tensor]

__all__ = ["Layer"]


def _identity(x: Tensor) -> Tensor:
    return x


class _Registration:
    """How one parameter is stored: ``raw = init_fn(value)``, ``value = activation_fn(raw)``."""

    __slots__ = ("activation_fn", "inverse_fn", "learnable")

    def __init__(self, learnable: bool, inverse_fn: Transform, activation_fn: Transform) -> None:
        self.learnable = learnable
        self.inverse_fn = inverse_fn
        self.activation_fn = activation_fn


class Layer(nn.Module):
    """Base class of stateful layers acting on ``num_neurons`` entries of axis ``dim``.

    Args:
        num_neurons: size of the axis the layer acts on.
        dim: that axis; any dimension, counted from the end when negative.
    """

    num_neurons: int
    dim: int

    def __init__(self, num_neurons: int, dim: int = -1) -> None:
        super().__init__()
        name = type(self).__name__
        if isinstance(num_neurons, bool) or not isinstance(num_neurons, int) or num_neurons < 1:
            raise ValueError(f"{name}: num_neurons must be a positive int, got {num_neurons!r}")
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise ValueError(f"{name}: dim must be an int, got {dim!r}")
        self.num_neurons = num_neurons
        self.dim = dim
        self._registrations: dict[str, _Registration] = {}
        self._state_names: list[str] = []
        # Raw parameters set aside by TTcompile, restored as the same objects by TTdecompile.
        self._compiled_raw: dict[str, Tensor] = {}

    # --- parameters --------------------------------------------------------------------------

    def _register_parameter(
        self,
        name: str,
        value: ParameterValue,
        rank: int,
        learnable: bool,
        init_fn: Transform = _identity,
        inverse_fn: Transform = _identity,
        activation_fn: Transform = _identity,
    ) -> None:
        """Register ``raw_<name> = init_fn(value)``, read back as ``activation_fn(raw)``.

        ``rank`` 0 makes a scalar and 1 a vector of ``num_neurons``; a tensor
        ``value`` decides by itself (0-d scalar, 1-d of ``num_neurons``).
        Learnable parameters are ``nn.Parameter``s, the others buffers.
        ``inverse_fn`` maps a value back to raw (used by ``TTdecompile``).
        """
        tensor = self._parameter_tensor(name, value, rank)
        try:
            raw = init_fn(tensor)
        except ValueError as error:
            raise ValueError(f"{self._describe()}: parameter {name!r}: {error}") from None
        raw = raw.detach().clone()
        if learnable:
            self.register_parameter(f"raw_{name}", nn.Parameter(raw))
        else:
            self.register_buffer(f"raw_{name}", raw)
        self._registrations[name] = _Registration(bool(learnable), inverse_fn, activation_fn)

    def _parameter_tensor(self, name: str, value: ParameterValue, rank: int) -> Tensor:
        where = f"{self._describe()}: parameter {name!r}"
        if rank not in (0, 1) or isinstance(rank, bool):
            raise ValueError(f"{where}: rank must be 0 (scalar) or 1 (per neuron), got {rank!r}")
        dtype = torch.get_default_dtype()
        if isinstance(value, torch.Tensor):
            tensor = value.detach().to(dtype if not value.is_floating_point() else value.dtype)
            if tensor.ndim == 1 and tensor.shape[0] != self.num_neurons:
                raise ValueError(
                    f"{where}: a vector must have num_neurons={self.num_neurons} elements, "
                    f"got shape {tuple(tensor.shape)}"
                )
            if tensor.ndim > 1:
                raise ValueError(
                    f"{where}: expected a 0-d (scalar) or 1-d tensor of {self.num_neurons} "
                    f"elements, got shape {tuple(tensor.shape)}"
                )
            return tensor.clone()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a float or a tensor, got {type(value).__name__}")
        if rank == 0:
            return torch.tensor(float(value), dtype=dtype)
        return torch.full((self.num_neurons,), float(value), dtype=dtype)

    def _parameter_value(self, name: str) -> Tensor:
        """The transformed value of parameter ``name`` (the compiled buffer once compiled)."""
        compiled = self._buffers.get(name)
        if compiled is not None:
            return compiled
        raw: Tensor | None = self._parameters.get(f"raw_{name}")
        if raw is None:
            raw = self._buffers.get(f"raw_{name}")
        if raw is None:  # between TTcompile's removal of raw_<name> and its buffer <name>
            raise AttributeError(f"{type(self).__name__} has no value for {name!r} right now")
        return self._registrations[name].activation_fn(raw)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in self.__dict__.get("_registrations", ()):
                return self._parameter_value(name)
            raise

    def TTcompile(self) -> None:
        """Replace each ``raw_<name>`` by a buffer ``<name>`` holding its transformed value.

        Forward then skips the transforms; outputs are unchanged. Idempotent.
        """
        for name in self._registrations:
            if name in self._compiled_raw:
                continue
            raw_name = f"raw_{name}"
            raw: Tensor | None = self._parameters.pop(raw_name, None)
            if raw is None:
                raw = self._buffers.pop(raw_name)
            assert raw is not None  # registered by _register_parameter
            with torch.no_grad():
                value = self._registrations[name].activation_fn(raw).detach().clone()
            self._compiled_raw[name] = raw
            self.register_buffer(name, value)

    def TTdecompile(self) -> None:
        """Undo :meth:`TTcompile`, restoring the raw parameters (learnable ones as Parameters).

        If the compiled value is unchanged (same device, same numbers), the very
        same raw tensor comes back, so optimizers holding it keep working;
        otherwise the raw value is recomputed with ``inverse_fn``. Idempotent.
        """
        for name, registration in self._registrations.items():
            if name not in self._compiled_raw:
                continue
            value = self._buffers.pop(name)
            assert value is not None  # registered by TTcompile
            raw = self._compiled_raw.pop(name)
            with torch.no_grad():
                unchanged = raw.device == value.device and torch.equal(
                    registration.activation_fn(raw), value
                )
                restored = raw if unchanged else registration.inverse_fn(value).detach().clone()
            raw_name = f"raw_{name}"
            if registration.learnable:
                parameter = (
                    restored if isinstance(restored, nn.Parameter) else nn.Parameter(restored)
                )
                self.register_parameter(raw_name, parameter)
            else:
                self.register_buffer(raw_name, restored.detach())

    # --- states ------------------------------------------------------------------------------

    def _initialize_state(self, name: str) -> None:
        """Declare a state; it stays ``None`` until the first input creates it."""
        if name in self._state_names:
            raise ValueError(f"{self._describe()}: state {name!r} is already declared")
        self._state_names.append(name)
        self.__dict__[name] = None

    @property
    def state_names(self) -> tuple[str, ...]:
        """Names of this layer's states, in declaration order."""
        return tuple(self._state_names)

    def zero_states(self) -> None:
        """Reset every state to ``None``; the next input recreates them as zeros."""
        for name in self._state_names:
            self.__dict__[name] = None

    def detach_states(self) -> None:
        """Cut every state from the autograd graph (truncated BPTT)."""
        for name in self._state_names:
            state = self.__dict__[name]
            if state is not None:
                self.__dict__[name] = state.detach()

    def _ensure_states(self, reference: Tensor) -> None:
        """Create missing states as zeros shaped like ``reference``."""
        for name in self._state_names:
            if self.__dict__[name] is None:
                self.__dict__[name] = torch.zeros_like(reference)

    # --- layout ------------------------------------------------------------------------------

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self._describe()}: expected a torch.Tensor, got {type(x).__name__}")
        if not -x.ndim <= self.dim < x.ndim or x.shape[self.dim] != self.num_neurons:
            raise ValueError(
                f"{self._describe()}: expected an input with {self.num_neurons} entries along "
                f"dim {self.dim}, got shape {tuple(x.shape)}"
            )

    def _to_working_dim(self, x: Tensor) -> Tensor:
        """Move the neuron axis last (validating the input)."""
        self._check_input(x)
        return x if self.dim in (-1, x.ndim - 1) else x.movedim(self.dim, -1)

    def _from_working_dim(self, x: Tensor) -> Tensor:
        """Move the neuron axis from last back to ``dim``."""
        return x if self.dim in (-1, x.ndim - 1) else x.movedim(-1, self.dim)

    def _describe(self) -> str:
        return f"{type(self).__name__}(num_neurons={self.num_neurons}, dim={self.dim})"

    def extra_repr(self) -> str:
        return f"num_neurons={self.num_neurons}, dim={self.dim}"
