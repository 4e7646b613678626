"""An independent reference of every traceTorch layer, written from ``shared/spec/layers.md``.

Nothing here imports tracetorch: each feature of the spec's per-timestep
equations is written out by hand with plain float64 torch operations, so that
tests can compare the library against the spec rather than against itself.

The reference takes *transformed* parameter values (``beta=0.8``, a positive
``threshold``, family B's negative ``neg_threshold``) as floats or tensors
broadcasting over the last (neuron) axis, and a sequence of inputs with the
neurons last. Parameters given as tensors that require grad receive gradients,
so the reference also yields expected gradients (family A through the smooth
spike function and the straight-through round, family B through hand-written
surrogate derivatives).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

import torch

Tensor = torch.Tensor
Value = Union[float, Tensor]
SpikeFn = Callable[[Tensor], Tensor]

DTYPE = torch.float64

__all__ = [
    "FAMILY_A",
    "FAMILY_A_DEFAULTS",
    "FAMILY_A_PARAMETERS",
    "FAMILY_B",
    "FAMILY_B_DEFAULTS",
    "FAMILY_B_EMA_DEFAULTS",
    "FAMILY_B_EMAS",
    "FAMILY_B_PARAMETERS",
    "Result",
    "Surrogate",
    "a_raw_from_value",
    "a_value_from_raw",
    "b_raw_from_value",
    "b_value_from_raw",
    "VALUE_RANGES",
    "crossing_inputs",
    "draw_value",
    "family_a_states",
    "family_b_states",
    "is_firing_a",
    "kind",
    "run_family_a",
    "run_family_b",
    "run_leaky_integrator",
]


# --- the spec's tables ------------------------------------------------------------------------

_LI_ROWS: dict[str, tuple[str, ...]] = {
    "LI": ("beta",),
    "DLI": ("pos_beta", "neg_beta"),
    "SLI": ("alpha", "beta"),
    "DSLI": ("pos_alpha", "neg_alpha", "pos_beta", "neg_beta"),
}

_LIB_ROWS: dict[str, tuple[str, ...]] = {
    "LIB": ("beta", "threshold", "bias"),
    "DLIB": ("pos_beta", "neg_beta", "threshold", "bias"),
    "SLIB": ("alpha", "beta", "threshold", "bias"),
    "RLIB": ("beta", "gamma", "threshold", "bias", "rec_weight"),
    "DSLIB": ("pos_alpha", "neg_alpha", "pos_beta", "neg_beta", "threshold", "bias"),
    "DRLIB": ("pos_beta", "neg_beta", "pos_gamma", "neg_gamma", "threshold", "bias",
              "pos_rec_weight", "neg_rec_weight"),
    "SRLIB": ("alpha", "beta", "gamma", "threshold", "bias", "rec_weight"),
    "DSRLIB": ("pos_alpha", "neg_alpha", "pos_beta", "neg_beta", "pos_gamma", "neg_gamma",
               "threshold", "bias", "pos_rec_weight", "neg_rec_weight"),
}  # fmt: skip


def _lit_row(lib_row: tuple[str, ...]) -> tuple[str, ...]:
    """The spec's rule: a LIT row is the LIB row with ``threshold`` -> ``pos_, neg_threshold``."""
    out: list[str] = []
    for p in lib_row:
        out += ["pos_threshold", "neg_threshold"] if p == "threshold" else [p]
    return tuple(out)


def _lits_row(lit_row: tuple[str, ...]) -> tuple[str, ...]:
    """The spec's rule: a LITS row is the LIT row with ``pos_scale, neg_scale`` after ``bias``."""
    out: list[str] = []
    for p in lit_row:
        out += [p, "pos_scale", "neg_scale"] if p == "bias" else [p]
    return tuple(out)


FAMILY_A_PARAMETERS: dict[str, tuple[str, ...]] = {}
FAMILY_A_PARAMETERS.update(_LI_ROWS)
FAMILY_A_PARAMETERS.update({n.replace("LI", "LIEMA"): row for n, row in _LI_ROWS.items()})
FAMILY_A_PARAMETERS.update(_LIB_ROWS)
FAMILY_A_PARAMETERS.update({n[:-1] + "T": _lit_row(row) for n, row in _LIB_ROWS.items()})
FAMILY_A_PARAMETERS.update(
    {n[:-1] + "TS": _lits_row(_lit_row(row)) for n, row in _LIB_ROWS.items()}
)
FAMILY_A: tuple[str, ...] = tuple(FAMILY_A_PARAMETERS)

FAMILY_A_DEFAULTS: dict[str, float] = {
    "alpha": 0.5, "beta": 0.9, "gamma": 0.9, "threshold": 1.0, "bias": 0.0,
    "scale": 1.0, "rec_weight": 0.0,
}  # fmt: skip

FAMILY_B_PARAMETERS: dict[str, tuple[str, ...]] = {
    "LIF": ("beta", "pos_threshold"),
    "BLIF": ("beta", "pos_threshold", "neg_threshold", "pos_scale", "neg_scale"),
    "SLIF": ("alpha", "beta", "pos_threshold"),
    "RLIF": ("beta", "gamma", "pos_threshold", "rec_weight", "bias"),
    "BSLIF": ("alpha", "beta", "pos_threshold", "neg_threshold", "pos_scale", "neg_scale"),
    "BRLIF": ("beta", "gamma", "pos_threshold", "neg_threshold", "pos_scale", "neg_scale",
              "rec_weight", "bias"),
    "SRLIF": ("alpha", "beta", "gamma", "pos_threshold", "rec_weight", "bias"),
    "BSRLIF": ("alpha", "beta", "gamma", "pos_threshold", "neg_threshold", "pos_scale",
               "neg_scale", "rec_weight", "bias"),
    "Readout": ("beta",),
    "SReadout": ("alpha", "beta"),
    "RReadout": ("beta", "gamma", "rec_weight", "bias"),
    "SRReadout": ("alpha", "beta", "gamma", "rec_weight", "bias"),
}  # fmt: skip
FAMILY_B: tuple[str, ...] = tuple(FAMILY_B_PARAMETERS)

FAMILY_B_DEFAULTS: dict[str, float] = {
    "alpha": 0.5, "beta": 0.9, "gamma": 0.5, "pos_threshold": 1.0, "neg_threshold": 1.0,
    "pos_scale": 1.0, "neg_scale": 1.0, "rec_weight": 0.0, "bias": 0.0,
}  # fmt: skip
FAMILY_B_EMA_DEFAULTS: dict[str, bool] = {"alpha": True, "beta": False, "gamma": True}


def _is_readout(name: str) -> bool:
    return name.endswith("Readout")


# Decays with a ``<p>_ema`` argument, in order (a readout always averages beta).
FAMILY_B_EMAS: dict[str, tuple[str, ...]] = {
    name: tuple(
        p for p in params if p in FAMILY_B_EMA_DEFAULTS and not (_is_readout(name) and p == "beta")
    )
    for name, params in FAMILY_B_PARAMETERS.items()
}


def kind(parameter: str) -> str:
    """``pos_beta`` -> ``beta``, ``neg_scale`` -> ``scale``, ``rec_weight`` -> ``rec_weight``."""
    for prefix in ("pos_", "neg_"):
        if parameter.startswith(prefix):
            return parameter[len(prefix) :]
    return parameter


_DECAYS = ("alpha", "beta", "gamma")


# --- parameter transforms ---------------------------------------------------------------------


def _sigmoid(r: Tensor) -> Tensor:
    return 1.0 / (1.0 + torch.exp(-r))


def _softplus(r: Tensor) -> Tensor:
    return torch.log1p(torch.exp(r))


def a_value_from_raw(parameter: str, raw: Tensor) -> Tensor:
    """Family A: the value a layer sees for ``raw_<parameter>``."""
    k = kind(parameter)
    if k in _DECAYS:
        return _sigmoid(raw)
    if k == "threshold":
        return _softplus(raw)
    if k == "bias":
        return torch.asinh(raw)
    return raw


def a_raw_from_value(parameter: str, value: Tensor) -> Tensor:
    """Family A: the documented raw storage of a value."""
    k = kind(parameter)
    if k in _DECAYS:
        return torch.log(value / (1.0 - value))
    if k == "threshold":
        return torch.log(torch.expm1(value))
    if k == "bias":
        return torch.sinh(value)
    return value


def b_value_from_raw(parameter: str, raw: Tensor) -> Tensor:
    """Family B: decays sigmoid, thresholds +-softplus, everything else plain."""
    if parameter in _DECAYS:
        return _sigmoid(raw)
    if parameter == "pos_threshold":
        return _softplus(raw)
    if parameter == "neg_threshold":
        return -_softplus(raw)
    return raw


def b_raw_from_value(parameter: str, value: Tensor) -> Tensor:
    """Family B: inverse of :func:`b_value_from_raw` (``neg_threshold`` value is negative)."""
    if parameter in _DECAYS:
        return torch.log(value / (1.0 - value))
    if parameter == "pos_threshold":
        return torch.log(torch.expm1(value))
    if parameter == "neg_threshold":
        return torch.log(torch.expm1(-value))
    return value


# --- helpers ----------------------------------------------------------------------------------


def _pos(v: Tensor) -> Tensor:
    """``P(v) = where(v >= 0, v, 0)``."""
    return torch.where(v >= 0, v, torch.zeros_like(v))


def _neg(v: Tensor) -> Tensor:
    """``N(v) = where(v <= 0, v, 0)``."""
    return torch.where(v <= 0, v, torch.zeros_like(v))


def _as64(value: Value) -> Tensor:
    if isinstance(value, Tensor):
        return value if value.dtype == DTYPE else value.to(DTYPE)
    return torch.tensor(float(value), dtype=DTYPE)


@dataclass
class Result:
    """What a reference run produces.

    Attributes:
        outputs: one output per step (float64, neurons last).
        states: final states by the spec's names.
        margin: smallest distance of any hard decision from its switching point
            (``|p - 0.5|`` for a rounded probability, ``|u|`` for a Heaviside);
            ``inf`` when nothing was decided. Tests require it to be comfortably
            positive, so float32 rounding cannot flip a decision.
        spikes: count of positive and negative events (hard decisions only).
    """

    outputs: list[Tensor]
    states: dict[str, Tensor]
    margin: float = math.inf
    spikes: dict[str, int] = field(default_factory=lambda: {"pos": 0, "neg": 0})


# Ranges of the test values drawn for each kind of parameter (neg_threshold: its magnitude).
VALUE_RANGES: dict[str, tuple[float, float]] = {
    "alpha": (0.2, 0.8), "beta": (0.5, 0.95), "gamma": (0.3, 0.9), "threshold": (0.6, 1.4),
    "bias": (-0.3, 0.3), "scale": (0.5, 2.0), "rec_weight": (-0.8, 0.8),
}  # fmt: skip


def draw_value(parameter: str, rank: int, g: torch.Generator, num_neurons: int) -> Value:
    """A valid test value: a 4-digit float (rank 0) or a float32 vector of distinct values."""
    lo, hi = VALUE_RANGES[kind(parameter)]
    if rank == 0:
        return round(lo + (hi - lo) * float(torch.rand((), generator=g)), 4)
    return lo + (hi - lo) * torch.rand(num_neurons, generator=g)


def crossing_inputs(
    steps: int, shape: Sequence[int], seed: int, scale: float = 1.0
) -> list[Tensor]:
    """Float32 inputs (neurons last) that push membranes over both thresholds.

    Strongly positive for the first third of the steps, strongly negative for
    the second, random afterwards; per-neuron noise on top.
    """
    g = torch.Generator().manual_seed(seed)
    out = []
    for t in range(steps):
        drive = 2.0 if t < steps // 3 else -2.0 if t < 2 * steps // 3 else 0.0
        noise = torch.randn(*shape, generator=g, dtype=torch.float32)
        out.append(scale * (drive + 1.2 * noise))
    return out


# --- family A ---------------------------------------------------------------------------------

_A_NAME = re.compile(r"(D?)(S?)(R?)(LIEMA|LITS|LIT|LIB|LI)")


def _parse_a(name: str) -> tuple[bool, bool, bool, str]:
    match = _A_NAME.fullmatch(name)
    if match is None or name not in FAMILY_A_PARAMETERS:
        raise ValueError(f"not a family-A layer: {name!r}")
    return bool(match[1]), bool(match[2]), bool(match[3]), match[4]


def is_firing_a(name: str) -> bool:
    """Whether a family-A layer fires (takes ``spike_fn`` and ``quant_fn``)."""
    return _parse_a(name)[3] not in ("LI", "LIEMA")


def family_a_states(name: str) -> tuple[str, ...]:
    """The spec's state names of a family-A layer, in registration order."""
    dual, syn, rec, _ = _parse_a(name)
    names: list[str] = []
    if syn:
        names += ["pos_syn", "neg_syn"] if dual else ["syn"]
    names += ["pos_mem", "neg_mem"] if dual else ["mem"]
    if rec:
        names += ["pos_rec", "neg_rec"] if dual else ["rec"]
        names.append("prev_output")
    return tuple(names)


def sigmoid4x(u: Tensor) -> Tensor:
    """The spec's default spike function, written out: ``1 / (1 + exp(-4u))``."""
    return 1.0 / (1.0 + torch.exp(-4.0 * u))


def _round_ste(p: Tensor) -> Tensor:
    """``round(p)`` forward, identity backward."""
    return p + (torch.round(p) - p).detach()


def run_family_a(
    name: str,
    params: dict[str, Value],
    inputs: Sequence[Tensor],
    quant: Literal["identity", "round"] = "identity",
    spike_fn: SpikeFn = sigmoid4x,
) -> Result:
    """Run a family-A layer by the spec's equations.

    Args:
        name: layer name (``"DSRLITS"``).
        params: every parameter of the layer by name, transformed values.
        inputs: one tensor per step, neurons last.
        quant: ``quant_fn``: identity or ``round_ste()`` (step 1).
        spike_fn: ``spike_fn`` (default ``sigmoid4x``).
    """
    dual, synaptic, recurrent, base = _parse_a(name)
    missing = set(FAMILY_A_PARAMETERS[name]) - set(params)
    if missing:
        raise ValueError(f"{name}: missing parameters {sorted(missing)}")
    p = {k: _as64(v) for k, v in params.items()}
    zeros = torch.zeros_like(inputs[0], dtype=DTYPE)
    s: dict[str, Tensor] = {n: zeros for n in family_a_states(name)}
    result = Result(outputs=[], states=s)

    def fire(u: Tensor) -> Tensor:
        prob = spike_fn(u)
        if quant == "round":
            result.margin = min(result.margin, float((prob.detach() - 0.5).abs().min()))
            return _round_ste(prob)
        return prob

    ema = base == "LIEMA"
    for x_in in inputs:
        x = x_in.to(DTYPE)
        # 1. Input current.
        if synaptic and dual:
            s["pos_syn"] = p["pos_alpha"] * s["pos_syn"] + (1 - p["pos_alpha"]) * _pos(x)
            s["neg_syn"] = p["neg_alpha"] * s["neg_syn"] + (1 - p["neg_alpha"]) * _neg(x)
            i = s["pos_syn"] + s["neg_syn"]
        elif synaptic:
            s["syn"] = p["alpha"] * s["syn"] + (1 - p["alpha"]) * x
            i = s["syn"]
        else:
            i = x
        # 2. Membrane drive.
        if recurrent and dual:
            o = s["prev_output"]
            s["pos_rec"] = p["pos_gamma"] * s["pos_rec"] + (1 - p["pos_gamma"]) * _pos(o)
            s["neg_rec"] = p["neg_gamma"] * s["neg_rec"] + (1 - p["neg_gamma"]) * _neg(o)
            r = s["pos_rec"] + s["neg_rec"]
            d_pos = p["pos_rec_weight"] * _pos(r) + _pos(i)
            d_neg = p["neg_rec_weight"] * _neg(r) + _neg(i)
        elif recurrent:
            s["rec"] = p["gamma"] * s["rec"] + (1 - p["gamma"]) * s["prev_output"]
            d = p["rec_weight"] * s["rec"] + i
        elif dual:
            d_pos, d_neg = _pos(i), _neg(i)
        else:
            d = i
        # 3. Membrane.
        if dual:
            c_pos = (1 - p["pos_beta"]) if ema else 1.0
            c_neg = (1 - p["neg_beta"]) if ema else 1.0
            s["pos_mem"] = p["pos_beta"] * s["pos_mem"] + c_pos * d_pos
            s["neg_mem"] = p["neg_beta"] * s["neg_mem"] + c_neg * d_neg
            m = s["pos_mem"] + s["neg_mem"]
        else:
            s["mem"] = p["beta"] * s["mem"] + ((1 - p["beta"]) if ema else 1.0) * d
            m = s["mem"]
        # 4. Output and reset.
        if base in ("LI", "LIEMA"):
            out = m
        elif base == "LIB":
            spike = fire(m - p["threshold"] + p["bias"])
            if dual:
                s["pos_mem"] = s["pos_mem"] - 0.5 * spike * p["threshold"]
                s["neg_mem"] = s["neg_mem"] - 0.5 * spike * p["threshold"]
            else:
                s["mem"] = s["mem"] - spike * p["threshold"]
            out = spike
        else:  # LIT, LITS: both spikes from m before any reset
            sp = fire(m - p["pos_threshold"] + p["bias"])
            sn = -fire(-p["neg_threshold"] - m - p["bias"])
            if dual:
                for half in ("pos_mem", "neg_mem"):
                    s[half] = s[half] - 0.5 * sp * p["pos_threshold"]
                for half in ("pos_mem", "neg_mem"):
                    s[half] = s[half] - 0.5 * sn * p["neg_threshold"]
            else:
                s["mem"] = s["mem"] - sp * p["pos_threshold"]
                s["mem"] = s["mem"] - sn * p["neg_threshold"]
            out = p["pos_scale"] * sp + p["neg_scale"] * sn if base == "LITS" else sp + sn
        # 5. Recurrent layers remember their output.
        if recurrent:
            s["prev_output"] = out
        result.outputs.append(out)
    return result


# --- family B ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Surrogate:
    """A Heaviside ``(u > 0)`` with a surrogate derivative, as the spec defines them.

    ``kind="atan"``: ``(a/2) / (1 + (pi/2 * a * u)^2)`` with ``a = scale``;
    ``kind="sigmoid"``: ``k * s * (1 - s)``, ``s = sigmoid(k * u)``, ``k = scale``.
    """

    kind: Literal["atan", "sigmoid"] = "atan"
    scale: float = 2.0

    def derivative(self, u: Tensor) -> Tensor:
        if self.kind == "atan":
            a = self.scale
            return (a / 2.0) / (1.0 + (math.pi / 2.0 * a * u) ** 2)
        k = self.scale
        sig = _sigmoid(k * u)
        return k * sig * (1.0 - sig)


class _Heaviside(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, u: Tensor, surrogate: Surrogate) -> Tensor:
        ctx.save_for_backward(u)
        ctx.surrogate = surrogate
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (u,) = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(u), None


def family_b_states(features: Sequence[str]) -> frozenset[str]:
    """Family B states: ``mem``, plus ``syn`` with alpha, ``rec``, ``prev_output`` with gamma."""
    names = {"mem"}
    if "alpha" in features:
        names.add("syn")
    if "gamma" in features:
        names |= {"rec", "prev_output"}
    return frozenset(names)


def run_leaky_integrator(
    params: dict[str, Value],
    inputs: Sequence[Tensor],
    ema: Optional[dict[str, bool]] = None,
    pos_surrogate: Surrogate = Surrogate(),
    neg_surrogate: Surrogate = Surrogate(),
) -> Result:
    """Run the family-B ``LeakyIntegrator`` by the spec; a feature exists iff it is in ``params``.

    Args:
        params: transformed values; ``neg_threshold`` is negative.
        inputs: one tensor per step, neurons last.
        ema: ``use_averaging`` per decay (spec defaults for those not given).
        pos_surrogate, neg_surrogate: backward of the positive and negative spikes.
    """
    averaging = {**FAMILY_B_EMA_DEFAULTS, **(ema or {})}
    p = {k: _as64(v) for k, v in params.items()}
    has = set(p)
    if "beta" not in has:
        raise ValueError("beta is required")
    zeros = torch.zeros_like(inputs[0], dtype=DTYPE)
    s: dict[str, Tensor] = {n: zeros for n in family_b_states(tuple(has))}
    result = Result(outputs=[], states=s)

    def c(decay: str) -> Union[Tensor, float]:
        return (1 - p[decay]) if averaging[decay] else 1.0

    def heaviside(u: Tensor, surrogate: Surrogate) -> Tensor:
        result.margin = min(result.margin, float(u.detach().abs().min()))
        return _Heaviside.apply(u, surrogate)

    for x_in in inputs:
        x = x_in.to(DTYPE)
        delta: Union[Tensor, float] = 0.0
        if "alpha" not in has:
            delta = delta + x
        if "gamma" in has:
            s["rec"] = p["gamma"] * s["rec"] + c("gamma") * s["prev_output"]
            delta = delta + s["rec"] * p["rec_weight"]
        if "bias" in has:
            delta = delta + p["bias"]
        if "alpha" in has:
            s["syn"] = p["alpha"] * s["syn"] + c("alpha") * x
            delta = delta + s["syn"]
        s["mem"] = p["beta"] * s["mem"] + c("beta") * delta
        if "pos_threshold" in has:
            sp = heaviside(s["mem"] - p["pos_threshold"], pos_surrogate)
            result.spikes["pos"] += int(sp.detach().sum())
            s["mem"] = s["mem"] - sp * p["pos_threshold"]
            out = sp * p["pos_scale"] if "pos_scale" in has else sp
            if "neg_threshold" in has:
                sn = -heaviside(p["neg_threshold"] - s["mem"], neg_surrogate)
                result.spikes["neg"] += int(-sn.detach().sum())
                s["mem"] = s["mem"] + sn * p["neg_threshold"]
                out = out + (sn * p["neg_scale"] if "neg_scale" in has else sn)
        else:
            out = s["mem"]
        if "gamma" in has:
            s["prev_output"] = out
        result.outputs.append(out)
    return result


def run_family_b(
    name: str,
    params: dict[str, Value],
    inputs: Sequence[Tensor],
    ema: Optional[dict[str, bool]] = None,
    pos_surrogate: Surrogate = Surrogate(),
    neg_surrogate: Surrogate = Surrogate(),
) -> Result:
    """Run a family-B wrapper: its parameters, its ``<p>_ema`` flags, readouts averaging beta."""
    expected = set(FAMILY_B_PARAMETERS[name])
    if set(params) != expected:
        raise ValueError(f"{name}: expected parameters {sorted(expected)}, got {sorted(params)}")
    flags = dict(ema or {})
    unknown = set(flags) - set(FAMILY_B_EMAS[name])
    if unknown:
        raise ValueError(f"{name}: no ema argument for {sorted(unknown)}")
    if _is_readout(name):
        flags["beta"] = True
    return run_leaky_integrator(params, inputs, flags, pos_surrogate, neg_surrogate)
