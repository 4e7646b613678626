"""The one neuron core behind every traceTorch spiking layer.

Each of the 44 layers of both families is a :class:`NeuronSpec` (which traces
exist, which of them average, where the bias enters, how the layer fires and
resets) plus a set of parameter values. :func:`neuron_step` runs one timestep
of any spec. The Rust engine implements the same core from the same spec,
field for field (``NeuronSpec.to_dict`` is what an exported file stores).

One timestep, elementwise over the neuron axis (last axis); ``P(v) = max(v, 0)``,
``N(v) = min(v, 0)``, ``c(d) = 1 - d`` when that trace averages, else ``1``::

    i   = x                               | syn = alpha*syn + c(alpha)*x
                                          | pos_syn/neg_syn from P(x)/N(x)   (dual)
    d   = i                               | + rec_weight*rec, rec = gamma*rec + c(gamma)*o
        | d_pos = P(i), d_neg = N(i)      (dual; with recurrence r = pos_rec + neg_rec
                                           adds pos_rec_weight*P(r), neg_rec_weight*N(r))
    d  += bias                            (bias="drive", family B)
    mem = beta*mem + c(beta)*d            | pos_mem, neg_mem (dual); m = their sum
    out = m                               (output="membrane")
    sp  = fire_pos(m - pos_threshold + b)          b = bias if bias="spike" else 0
    sn  = -fire_neg(-neg_threshold - m - b)        (ternary; m after the positive reset
                                                    when neg_sees_pos_reset)
    mem -= sp*pos_threshold; mem -= sn*neg_threshold   (dual: each half to pos/neg mem)
    out = sp + sn  (or pos_scale*sp + neg_scale*sn when scaled);  o = out
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from tracetorch._torch import torch

Tensor = torch.Tensor
Fire = Callable[[Tensor], Tensor]
Value = Any  # a Tensor or a Python float (a fixed constant such as a missing scale of 1)

BiasSite = Literal["none", "spike", "drive"]
Output = Literal["membrane", "binary", "ternary"]

__all__ = ["NeuronSpec", "neuron_step"]


@dataclass(frozen=True)
class NeuronSpec:
    """Declarative description of one neuron layer's dynamics.

    Attributes:
        dual: separate positive and negative traces (the ``D`` prefix).
        synaptic: a synaptic trace before the membrane (``S``, family B ``alpha``).
        recurrent: a trace of the previous output feeds the membrane (``R``, ``gamma``).
        syn_ema: the synaptic input is scaled by ``1 - alpha``.
        rec_ema: the recurrent input is scaled by ``1 - gamma``.
        mem_ema: the membrane drive is scaled by ``1 - beta`` (``LIEMA``, ``Readout``).
        bias: where ``bias`` enters: not at all, in the spike argument (family A)
            or in the membrane drive (family B).
        output: the membrane itself, one-sided firing, or firing both ways.
        scaled: output ``pos_scale*sp + neg_scale*sn`` instead of ``sp + sn``.
        neg_sees_pos_reset: the negative spike is computed from the membrane after
            the positive reset (family B) instead of before it (family A).

    Example:
        >>> NeuronSpec(output="binary", bias="spike").parameter_names()
        ('beta', 'pos_threshold', 'bias')
    """

    dual: bool = False
    synaptic: bool = False
    recurrent: bool = False
    syn_ema: bool = True
    rec_ema: bool = True
    mem_ema: bool = False
    bias: BiasSite = "none"
    output: Output = "membrane"
    scaled: bool = False
    neg_sees_pos_reset: bool = False

    def __post_init__(self) -> None:
        if self.bias not in ("none", "spike", "drive"):
            raise ValueError(f"bias must be 'none', 'spike' or 'drive', got {self.bias!r}")
        if self.output not in ("membrane", "binary", "ternary"):
            raise ValueError(
                f"output must be 'membrane', 'binary' or 'ternary', got {self.output!r}"
            )
        if self.bias == "spike" and self.output == "membrane":
            raise ValueError("a spike bias needs a firing output")
        if self.dual and (self.bias == "drive" or self.neg_sees_pos_reset):
            raise ValueError(
                "drive bias and neg_sees_pos_reset are single-trace (family B) features"
            )

    @property
    def fires(self) -> bool:
        """Whether the layer emits spikes rather than its membrane."""
        return self.output != "membrane"

    def state_names(self) -> tuple[str, ...]:
        """Names of the per-neuron states, in registration order."""
        names: list[str] = []
        if self.synaptic:
            names += ["pos_syn", "neg_syn"] if self.dual else ["syn"]
        names += ["pos_mem", "neg_mem"] if self.dual else ["mem"]
        if self.recurrent:
            names += ["pos_rec", "neg_rec"] if self.dual else ["rec"]
            names.append("prev_output")
        return tuple(names)

    def parameter_names(self) -> tuple[str, ...]:
        """Canonical names of the values :func:`neuron_step` reads from ``params``."""

        def pair(name: str) -> list[str]:
            return [f"pos_{name}", f"neg_{name}"] if self.dual else [name]

        names: list[str] = []
        if self.synaptic:
            names += pair("alpha")
        names += pair("beta")
        if self.recurrent:
            names += pair("gamma") + pair("rec_weight")
        if self.fires:
            names.append("pos_threshold")
            if self.output == "ternary":
                names.append("neg_threshold")
        if self.bias != "none":
            names.append("bias")
        if self.scaled:
            names.append("pos_scale")
            if self.output == "ternary":
                names.append("neg_scale")
        return tuple(names)

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON-ready data (stored in exported files)."""
        return asdict(self)

    def equations(self, names: Mapping[str, str] | None = None) -> list[str]:
        """The update of one timestep for this spec, one assignment a line.

        ``names`` renames core parameters to a layer's own (e.g. ``pos_threshold``
        to ``threshold``). The lines are the documentation of every layer.

        Example:
            >>> for line in NeuronSpec(output="binary", bias="spike").equations():
            ...     print(line)
            mem = beta*mem + x
            s = fire(mem - pos_threshold + bias)
            mem = mem - s*pos_threshold
            out = s
        """
        n = dict(names or {})

        def p(name: str) -> str:
            return n.get(name, name)

        def trace(state: str, decay: str, ema: bool, drive: str) -> str:
            gain = f"(1 - {p(decay)})*" if ema else ""
            return f"{state} = {p(decay)}*{state} + {gain}{drive}"

        lines: list[str] = []
        if self.synaptic and self.dual:
            lines += [trace("pos_syn", "pos_alpha", self.syn_ema, "P(x)"),
                      trace("neg_syn", "neg_alpha", self.syn_ema, "N(x)"),
                      "i = pos_syn + neg_syn"]  # fmt: skip
            current = "i"
        elif self.synaptic:
            lines.append(trace("syn", "alpha", self.syn_ema, "x"))
            current = "syn"
        else:
            current = "x"
        bias = f" + {p('bias')}" if self.bias == "drive" else ""
        if self.recurrent and self.dual:
            lines += [trace("pos_rec", "pos_gamma", self.rec_ema, "P(prev_output)"),
                      trace("neg_rec", "neg_gamma", self.rec_ema, "N(prev_output)"),
                      "r = pos_rec + neg_rec"]  # fmt: skip
            drives = (f"{p('pos_rec_weight')}*P(r) + P({current})",
                      f"{p('neg_rec_weight')}*N(r) + N({current})")  # fmt: skip
        elif self.recurrent:
            lines.append(trace("rec", "gamma", self.rec_ema, "prev_output"))
            drive = f"({p('rec_weight')}*rec + {current}{bias})"
        elif self.dual:
            drives = (f"P({current})", f"N({current})")
        else:
            drive = f"({current}{bias})" if bias else current
        if self.dual:
            lines += [trace("pos_mem", "pos_beta", self.mem_ema, drives[0]),
                      trace("neg_mem", "neg_beta", self.mem_ema, drives[1]),
                      "m = pos_mem + neg_mem"]  # fmt: skip
            m = "m"
        else:
            lines.append(trace("mem", "beta", self.mem_ema, drive))
            m = "mem"
        if not self.fires:
            return [*lines, f"out = {m}"]
        spike_bias = f" + {p('bias')}" if self.bias == "spike" else ""

        def reset(spike: str, threshold: str) -> list[str]:
            if self.dual:
                return [f"pos_mem = pos_mem - 0.5*{spike}*{p(threshold)}",
                        f"neg_mem = neg_mem - 0.5*{spike}*{p(threshold)}"]  # fmt: skip
            return [f"mem = mem - {spike}*{p(threshold)}"]

        if self.output == "binary":
            lines.append(f"s = fire({m} - {p('pos_threshold')}{spike_bias})")
            lines += reset("s", "pos_threshold")
            out = f"{p('pos_scale')}*s" if self.scaled else "s"
            lines.append(f"out = {out}")
        else:
            lines.append(f"sp = fire({m} - {p('pos_threshold')}{spike_bias})")
            if self.neg_sees_pos_reset:
                lines += reset("sp", "pos_threshold")
            neg_bias = f" - {p('bias')}" if self.bias == "spike" else ""
            lines.append(f"sn = -fire(-{p('neg_threshold')} - {m}{neg_bias})")
            if not self.neg_sees_pos_reset:
                lines += reset("sp", "pos_threshold")
            lines += reset("sn", "neg_threshold")
            scaled = f"{p('pos_scale')}*sp + {p('neg_scale')}*sn"
            lines.append(f"out = {scaled if self.scaled else 'sp + sn'}")
        if self.recurrent:
            lines.append("prev_output = out")
        return lines


# where() rather than clamp(): at exactly 0 the gradient reaches both halves, as the spec's
# P(v) = where(v >= 0, v, 0) and N(v) = where(v <= 0, v, 0) define it.
def _positive(v: Tensor) -> Tensor:
    return torch.where(v >= 0, v, 0.0)


def _negative(v: Tensor) -> Tensor:
    return torch.where(v <= 0, v, 0.0)


def _trace(old: Tensor, decay: Tensor, ema: bool, drive: Tensor) -> Tensor:
    # One fused kernel per trace: drive + decay*old, or the average drive + decay*(old - drive).
    if ema:
        return torch.addcmul(drive, decay, old - drive)
    return torch.addcmul(drive, decay, old)


def _reset_dual(
    pos_mem: Tensor, neg_mem: Tensor, spike: Tensor, threshold: Tensor
) -> tuple[Tensor, Tensor]:
    # Each dual membrane takes half of the reset.
    half = 0.5 * threshold
    return (
        torch.addcmul(pos_mem, spike, half, value=-1.0),
        torch.addcmul(neg_mem, spike, half, value=-1.0),
    )


def neuron_step(
    spec: NeuronSpec,
    x: Tensor,
    states: MutableMapping[str, Tensor],
    params: MutableMapping[str, Value],
    fire_pos: Fire | None = None,
    fire_neg: Fire | None = None,
) -> Tensor:
    """Advance one timestep and return the layer output.

    Args:
        spec: the layer's dynamics.
        x: input with the neuron axis last.
        states: every name of ``spec.state_names()`` mapped to a tensor shaped
            like ``x``; replaced by the new states (never modified in place, so
            autograd sees every step).
        params: every name of ``spec.parameter_names()`` mapped to its value, a
            tensor (already transformed: decays in (0, 1), threshold magnitudes
            > 0) of shape ``[]`` or ``[num_neurons]``; only output scales may be
            plain floats.
        fire_pos, fire_neg: map a membrane distance to a spike (firing specs).

    Example:
        >>> spec = NeuronSpec()
        >>> states = {"mem": torch.zeros(2)}
        >>> params = {"beta": torch.tensor(0.5)}
        >>> neuron_step(spec, torch.ones(2), states, params)
        tensor([1., 1.])
        >>> neuron_step(spec, torch.ones(2), states, params)
        tensor([1.5000, 1.5000])
    """
    dual = spec.dual

    # 1. Input current.
    if spec.synaptic:
        if dual:
            pos_syn = _trace(states["pos_syn"], params["pos_alpha"], spec.syn_ema, _positive(x))
            neg_syn = _trace(states["neg_syn"], params["neg_alpha"], spec.syn_ema, _negative(x))
            states["pos_syn"], states["neg_syn"] = pos_syn, neg_syn
            current = pos_syn + neg_syn
        else:
            current = _trace(states["syn"], params["alpha"], spec.syn_ema, x)
            states["syn"] = current
    else:
        current = x

    # 2. Membrane drive.
    if spec.recurrent:
        prev = states["prev_output"]
        if dual:
            pos_rec = _trace(states["pos_rec"], params["pos_gamma"], spec.rec_ema, _positive(prev))
            neg_rec = _trace(states["neg_rec"], params["neg_gamma"], spec.rec_ema, _negative(prev))
            states["pos_rec"], states["neg_rec"] = pos_rec, neg_rec
            rec = pos_rec + neg_rec
            drive_pos = torch.addcmul(_positive(current), params["pos_rec_weight"], _positive(rec))
            drive_neg = torch.addcmul(_negative(current), params["neg_rec_weight"], _negative(rec))
        else:
            rec = _trace(states["rec"], params["gamma"], spec.rec_ema, prev)
            states["rec"] = rec
            drive = torch.addcmul(current, params["rec_weight"], rec)
    elif dual:
        drive_pos, drive_neg = _positive(current), _negative(current)
    else:
        drive = current
    if spec.bias == "drive":
        drive = drive + params["bias"]

    # 3. Membrane.
    if dual:
        pos_mem = _trace(states["pos_mem"], params["pos_beta"], spec.mem_ema, drive_pos)
        neg_mem = _trace(states["neg_mem"], params["neg_beta"], spec.mem_ema, drive_neg)
        membrane = pos_mem + neg_mem
    else:
        membrane = _trace(states["mem"], params["beta"], spec.mem_ema, drive)

    # 4. Output and reset. Per-neuron constants are combined first, so that each
    # full-size tensor is touched by as few kernels as possible.
    if not spec.fires:
        out = membrane
    else:
        assert fire_pos is not None
        bias = params["bias"] if spec.bias == "spike" else None
        pos_threshold = params["pos_threshold"]
        offset = -pos_threshold if bias is None else bias - pos_threshold
        spike_pos = fire_pos(membrane + offset)
        if dual:
            pos_mem, neg_mem = _reset_dual(pos_mem, neg_mem, spike_pos, pos_threshold)
        else:  # the single membrane after the resets applied so far
            reset_membrane = torch.addcmul(membrane, spike_pos, pos_threshold, value=-1.0)
        if spec.output == "ternary":
            assert fire_neg is not None
            neg_threshold = params["neg_threshold"]
            seen = reset_membrane if spec.neg_sees_pos_reset else membrane
            limit = -neg_threshold if bias is None else -neg_threshold - bias
            spike_neg = -fire_neg(limit - seen)
            if dual:
                pos_mem, neg_mem = _reset_dual(pos_mem, neg_mem, spike_neg, neg_threshold)
            else:
                reset_membrane = torch.addcmul(reset_membrane, spike_neg, neg_threshold, value=-1.0)
            if spec.scaled:
                out = params["pos_scale"] * spike_pos + params["neg_scale"] * spike_neg
            else:
                out = spike_pos + spike_neg
        else:
            out = params["pos_scale"] * spike_pos if spec.scaled else spike_pos
        if not dual:
            membrane = reset_membrane

    if dual:
        states["pos_mem"], states["neg_mem"] = pos_mem, neg_mem
    else:
        states["mem"] = membrane
    if spec.recurrent:
        states["prev_output"] = out
    return out
