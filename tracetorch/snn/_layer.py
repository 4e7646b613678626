"""``tt.snn.Layer`` (constrained parameter helpers) and ``Neuron``, the layer that runs the core."""

from __future__ import annotations

from typing import Any, Union

from tracetorch import functional
from tracetorch._torch import torch
from tracetorch.layer import Layer as _BaseLayer
from tracetorch.neuron import NeuronSpec, neuron_step

nn = torch.nn
Tensor = torch.Tensor
ParameterValue = Union[float, int, Tensor]

__all__ = ["Layer", "Neuron"]


def _negative_softplus(raw: Tensor) -> Tensor:
    return -nn.functional.softplus(raw)


def _softplus_inverse_of_negative(value: Tensor) -> Tensor:
    return functional.softplus_inverse(-value)


class Layer(_BaseLayer):
    """Base of SNN layers: registers decays in (0, 1), thresholds > 0 and smooth biases.

    Subclass it to write a custom layer that works with ``tt.Model`` state
    management and ``TTcompile``.

    Example:
        >>> import torch
        >>> import tracetorch as tt
        >>> class Leaky(tt.snn.Layer):
        ...     def __init__(self, n, beta=0.5):
        ...         super().__init__(n)
        ...         self._register_decay("beta", beta, rank=1, learnable=True)
        ...         self._initialize_state("mem")
        ...     def forward(self, x):
        ...         x = self._to_working_dim(x)
        ...         self._ensure_states(x)
        ...         self.mem = self.beta * self.mem + x
        ...         return self._from_working_dim(self.mem)
        >>> layer = Leaky(2)
        >>> _ = layer(torch.ones(2))
        >>> layer(torch.ones(2))
        tensor([1.5000, 1.5000], grad_fn=<AddBackward0>)
    """

    def _register_decay(self, name: str, value: ParameterValue, rank: int, learnable: bool) -> None:
        """A decay in (0, 1): stored as ``logit(value)``, read through ``sigmoid``."""
        self._register_parameter(
            name,
            value,
            rank,
            learnable,
            init_fn=functional.sigmoid_inverse,
            inverse_fn=functional.sigmoid_inverse,
            activation_fn=torch.sigmoid,
        )

    def _register_threshold(
        self, name: str, value: ParameterValue, rank: int, learnable: bool
    ) -> None:
        """A threshold > 0: stored as ``log(expm1(value))``, read through ``softplus``."""
        self._register_parameter(
            name,
            value,
            rank,
            learnable,
            init_fn=functional.softplus_inverse,
            inverse_fn=functional.softplus_inverse,
            activation_fn=nn.functional.softplus,
        )

    def _register_negative_threshold(
        self, name: str, magnitude: ParameterValue, rank: int, learnable: bool
    ) -> None:
        """A threshold < 0 given by its magnitude: read as ``-softplus(raw)`` (family B)."""
        self._register_parameter(
            name,
            magnitude,
            rank,
            learnable,
            init_fn=functional.softplus_inverse,
            inverse_fn=_softplus_inverse_of_negative,
            activation_fn=_negative_softplus,
        )

    def _register_bias(self, name: str, value: ParameterValue, rank: int, learnable: bool) -> None:
        """An unconstrained bias: stored as ``sinh(value)``, read through ``asinh``."""
        self._register_parameter(
            name,
            value,
            rank,
            learnable,
            init_fn=torch.sinh,
            inverse_fn=torch.sinh,
            activation_fn=torch.asinh,
        )


# How a layer parameter reaches the core: (core name, layer parameter name, negate).
CoreBinding = tuple[str, str, bool]


class Neuron(Layer):
    """A layer whose forward is one step of the shared neuron core (:mod:`tracetorch.neuron`).

    Subclasses register their parameters, then call :meth:`_set_dynamics` with
    their :class:`~tracetorch.neuron.NeuronSpec` and the binding of their
    parameter names to the core's.
    """

    spec: NeuronSpec

    def _set_dynamics(
        self,
        spec: NeuronSpec,
        bindings: tuple[CoreBinding, ...],
        constants: dict[str, float] | None = None,
    ) -> None:
        missing = set(spec.parameter_names()) - {b[0] for b in bindings} - set(constants or {})
        if missing:
            raise ValueError(f"{self._describe()}: no value for core parameters {sorted(missing)}")
        self.spec = spec
        self._bindings = bindings
        self._constants = dict(constants or {})
        for name in spec.state_names():
            self._initialize_state(name)

    def _core_parameters(self) -> dict[str, Any]:
        """Values of the core parameters, in the core's names and conventions."""
        params: dict[str, Any] = dict(self._constants)
        for core_name, layer_name, negate in self._bindings:
            value = self._parameter_value(layer_name)
            params[core_name] = -value if negate else value
        return params

    def _fire_pos(self, u: Tensor) -> Tensor:
        raise NotImplementedError

    def _fire_neg(self, u: Tensor) -> Tensor:
        return self._fire_pos(u)

    def forward(self, x: Tensor) -> Tensor:
        """One timestep: ``x`` has ``num_neurons`` entries along ``dim``; returns the same shape.

        States are shaped like ``x``; the core sees them, like ``x``, with ``dim`` moved last.
        """
        work = self._to_working_dim(x)
        first = self.__dict__[self._state_names[0]]
        if first is None:
            self._ensure_states(x)
        elif first.shape != x.shape:
            raise ValueError(
                f"{self._describe()}: input shape {tuple(x.shape)} does not match the states "
                f"held from earlier steps {tuple(first.shape)}; call zero_states() before "
                "changing the batch size"
            )
        params = self._core_parameters()
        if work is x:  # neuron axis already last: the core updates the attributes directly
            return neuron_step(self.spec, x, self.__dict__, params, self._fire_pos, self._fire_neg)
        # States share x's (already checked) shape: move them without validating again.
        states = {name: self.__dict__[name].movedim(self.dim, -1) for name in self._state_names}
        out = neuron_step(self.spec, work, states, params, self._fire_pos, self._fire_neg)
        for name, state in states.items():
            self.__dict__[name] = self._from_working_dim(state)
        return self._from_working_dim(out)
