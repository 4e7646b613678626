"""Spike functions, straight-through quantizers, surrogates and parameter helpers.

Firing layers of family A compute ``quant_fn(spike_fn(u))`` where ``u`` is the
membrane distance from threshold. ``spike_fn`` turns it into a smooth firing
probability (default :func:`sigmoid4x`); ``quant_fn`` keeps it continuous
(``nn.Identity()``) or makes it discrete with a straight-through gradient.

Family B layers fire with a hard Heaviside step whose backward pass uses a
surrogate derivative (:func:`atan_surrogate`, :func:`sigmoid_surrogate`).

Every quantizer and surrogate is a small picklable callable object whose
configuration (``step_size``, ``alpha``, ``slope``) is readable, so that models
using them can be copied, sent to other processes and exported.

Example:
    >>> import torch
    >>> import tracetorch as tt
    >>> q = tt.functional.round_ste(0.5)
    >>> q(torch.tensor([0.2, 0.3, 0.9]))
    tensor([0.0000, 0.5000, 1.0000])
"""

from __future__ import annotations

import math
from typing import Any, Union, overload

from tracetorch._torch import torch

Tensor = torch.Tensor
Number = Union[float, int]

__all__ = [
    "ATanSurrogate",
    "ProbabilisticSTE",
    "RoundSTE",
    "SigmoidSurrogate",
    "StochasticRoundSTE",
    "atan_surrogate",
    "decay_to_halflife",
    "decay_to_timesteps",
    "halflife_to_decay",
    "probabilistic_ste",
    "round_ste",
    "sigmoid4x",
    "sigmoid_inverse",
    "sigmoid_surrogate",
    "softplus_inverse",
    "stochastic_round_ste",
    "timesteps_to_decay",
]


def sigmoid4x(x: Tensor) -> Tensor:
    """The default spike function: ``sigmoid(4 * x)``.

    Example:
        >>> sigmoid4x(torch.tensor([0.0]))
        tensor([0.5000])
    """
    return torch.sigmoid(4.0 * x)


# --- straight-through quantizers -------------------------------------------------------------


class _RoundFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, step: float) -> Tensor:
        return torch.round(x / step) * step

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


class _StochasticRoundFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, step: float) -> Tensor:
        scaled = x / step
        low = torch.floor(scaled)
        up = (torch.rand_like(scaled) < (scaled - low)).to(x.dtype)
        return (low + up) * step

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


class _ProbabilisticFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return x * torch.bernoulli(x.clamp(0.0, 1.0))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        # d/dx E[x * bernoulli(x)] = d/dx x^2.
        return grad * 2.0 * x


def _check_step(step_size: float) -> float:
    step = float(step_size)
    if not math.isfinite(step) or step <= 0.0:
        raise ValueError(f"step_size must be a finite number > 0, got {step_size!r}")
    return step


class RoundSTE:
    """Rounds to multiples of ``step_size`` forward; identity gradient backward.

    Built by :func:`round_ste`.
    """

    def __init__(self, step_size: float = 1.0) -> None:
        self.step_size = _check_step(step_size)

    def __call__(self, x: Tensor) -> Tensor:
        return _RoundFn.apply(x, self.step_size)

    def __repr__(self) -> str:
        return f"round_ste(step_size={self.step_size})"


class StochasticRoundSTE:
    """Rounds down or up at random in proportion to the remainder; identity gradient.

    Built by :func:`stochastic_round_ste`. Uses PyTorch's global generator.
    """

    def __init__(self, step_size: float = 1.0) -> None:
        self.step_size = _check_step(step_size)

    def __call__(self, x: Tensor) -> Tensor:
        return _StochasticRoundFn.apply(x, self.step_size)

    def __repr__(self) -> str:
        return f"stochastic_round_ste(step_size={self.step_size})"


class ProbabilisticSTE:
    """``x * bernoulli(x)`` forward, gradient ``2x`` backward; see :func:`probabilistic_ste`."""

    def __call__(self, x: Tensor) -> Tensor:
        return _ProbabilisticFn.apply(x)

    def __repr__(self) -> str:
        return "probabilistic_ste()"


def round_ste(step_size: float = 1.0) -> RoundSTE:
    """Deterministic rounding quantizer: forward ``round(x / step) * step``, backward identity.

    Example:
        >>> round_ste()(torch.tensor([0.4, 0.6]))
        tensor([0., 1.])
    """
    return RoundSTE(step_size)


def stochastic_round_ste(step_size: float = 1.0) -> StochasticRoundSTE:
    """Stochastic rounding: forward ``(floor(x/step) + (rand < frac)) * step``, backward identity.

    Example:
        >>> q = stochastic_round_ste()
        >>> y = q(torch.full((100,), 0.5))
        >>> bool(((y == 0) | (y == 1)).all())
        True
    """
    return StochasticRoundSTE(step_size)


def probabilistic_ste() -> ProbabilisticSTE:
    """Bernoulli firing: forward ``x * bernoulli(x)``, backward ``grad * 2x``.

    Example:
        >>> probabilistic_ste()(torch.tensor([0.0, 1.0]))
        tensor([0., 1.])
    """
    return ProbabilisticSTE()


# --- Heaviside with surrogate gradients (family B) -------------------------------------------


class _HeavisideFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, u: Tensor, surrogate: _Surrogate) -> Tensor:
        ctx.save_for_backward(u)
        ctx.surrogate = surrogate
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (u,) = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(u), None


class _Surrogate:
    """A Heaviside step ``(u > 0)`` whose backward pass uses :meth:`derivative`."""

    def __call__(self, u: Tensor) -> Tensor:
        return _HeavisideFn.apply(u, self)

    def derivative(self, u: Tensor) -> Tensor:
        raise NotImplementedError


class ATanSurrogate(_Surrogate):
    """Heaviside forward; ``(alpha/2) / (1 + (pi/2 * alpha * u)^2)`` backward."""

    def __init__(self, alpha: float = 2.0) -> None:
        self.alpha = float(alpha)

    def derivative(self, u: Tensor) -> Tensor:
        return (self.alpha / 2.0) / (1.0 + (math.pi / 2.0 * self.alpha * u) ** 2)

    def __repr__(self) -> str:
        return f"atan_surrogate({self.alpha})"


class SigmoidSurrogate(_Surrogate):
    """Heaviside forward; ``k * s * (1 - s)`` with ``s = sigmoid(k * u)`` backward."""

    def __init__(self, slope: float = 25.0) -> None:
        self.slope = float(slope)

    def derivative(self, u: Tensor) -> Tensor:
        s = torch.sigmoid(self.slope * u)
        return self.slope * s * (1.0 - s)

    def __repr__(self) -> str:
        return f"sigmoid_surrogate({self.slope})"


def atan_surrogate(alpha: float = 2.0) -> ATanSurrogate:
    """Hard spike ``(u > 0)`` with the arctangent surrogate gradient.

    Example:
        >>> atan_surrogate(2.0)(torch.tensor([-0.5, 0.0, 0.5]))
        tensor([0., 0., 1.])
    """
    return ATanSurrogate(alpha)


def sigmoid_surrogate(slope: float = 25.0) -> SigmoidSurrogate:
    """Hard spike ``(u > 0)`` with the sigmoid surrogate gradient.

    Example:
        >>> sigmoid_surrogate()(torch.tensor([-0.5, 0.5]))
        tensor([0., 1.])
    """
    return SigmoidSurrogate(slope)


# --- parameter transforms and decay helpers --------------------------------------------------

TensorOrNumber = Union[Tensor, Number]


def _as_tensor(x: TensorOrNumber) -> Tensor:
    return x if isinstance(x, torch.Tensor) else torch.tensor(float(x))


def sigmoid_inverse(x: TensorOrNumber) -> Tensor:
    """``logit(x)``, the raw value whose sigmoid is ``x``; ``x`` must lie in (0, 1).

    Example:
        >>> sigmoid_inverse(torch.tensor(0.5))
        tensor(0.)
    """
    t = _as_tensor(x)
    if not bool(((t > 0) & (t < 1)).all()):
        raise ValueError(f"sigmoid_inverse needs values in (0, 1), got {_describe(t)}")
    return torch.logit(t)


def softplus_inverse(x: TensorOrNumber) -> Tensor:
    """``log(expm1(x))``, the raw value whose softplus is ``x``; ``x`` must be > 0.

    Example:
        >>> torch.nn.functional.softplus(softplus_inverse(torch.tensor(2.0)))
        tensor(2.)
    """
    t = _as_tensor(x)
    if not bool((t > 0).all()) or not bool(torch.isfinite(t).all()):
        raise ValueError(f"softplus_inverse needs finite values > 0, got {_describe(t)}")
    # x + log(1 - exp(-x)) equals log(expm1(x)) without overflow for large x.
    return t + torch.log(-torch.expm1(-t))


def _describe(t: Tensor) -> str:
    if t.numel() == 1:
        return repr(t.item())
    return f"a tensor with min {t.min().item():.6g} and max {t.max().item():.6g}"


@overload
def halflife_to_decay(n: Tensor) -> Tensor: ...
@overload
def halflife_to_decay(n: Number) -> float: ...
def halflife_to_decay(n: TensorOrNumber) -> TensorOrNumber:
    """Decay whose trace halves after ``n`` steps: ``exp(-ln 2 / n)``.

    Example:
        >>> round(halflife_to_decay(1.0), 6)
        0.5
    """
    if isinstance(n, torch.Tensor):
        return torch.exp(-math.log(2.0) / n)
    return math.exp(-math.log(2.0) / n)


@overload
def decay_to_halflife(d: Tensor) -> Tensor: ...
@overload
def decay_to_halflife(d: Number) -> float: ...
def decay_to_halflife(d: TensorOrNumber) -> TensorOrNumber:
    """Steps for a trace of decay ``d`` to halve: ``-ln 2 / ln d``.

    Example:
        >>> round(decay_to_halflife(0.5), 6)
        1.0
    """
    if isinstance(d, torch.Tensor):
        return -math.log(2.0) / torch.log(d)
    return -math.log(2.0) / math.log(d)


@overload
def timesteps_to_decay(t: Tensor) -> Tensor: ...
@overload
def timesteps_to_decay(t: Number) -> float: ...
def timesteps_to_decay(t: TensorOrNumber) -> TensorOrNumber:
    """Decay of an average over about ``t`` steps: ``1 - 1/t``.

    Example:
        >>> timesteps_to_decay(10)
        0.9
    """
    return 1.0 - 1.0 / t


@overload
def decay_to_timesteps(d: Tensor) -> Tensor: ...
@overload
def decay_to_timesteps(d: Number) -> float: ...
def decay_to_timesteps(d: TensorOrNumber) -> TensorOrNumber:
    """Steps a trace of decay ``d`` averages over: ``1 / (1 - d)``.

    Example:
        >>> round(decay_to_timesteps(0.9), 6)
        10.0
    """
    return 1.0 / (1.0 - d)
