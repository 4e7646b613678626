"""Family A: the 32 layers ``[D][S][R](LI|LIEMA|LIB|LIT|LITS)``, declared from their names.

A name is mechanical: ``D`` splits traces into positive and negative halves,
``S`` adds a synaptic trace, ``R`` a recurrent trace of the previous output;
the suffix chooses the output (``LI`` membrane, ``LIEMA`` averaged membrane,
``LIB`` one-sided firing, ``LIT`` firing both ways, ``LITS`` with output
scales). The name alone gives the spec and the parameter list.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from tracetorch import functional
from tracetorch._torch import torch
from tracetorch.neuron import NeuronSpec, Output
from tracetorch.snn._declare import declare_layer
from tracetorch.snn._layer import Neuron

nn = torch.nn
Tensor = torch.Tensor

NAMES = (
    "LI", "DLI", "SLI", "DSLI", "LIEMA", "DLIEMA", "SLIEMA", "DSLIEMA",
    "LIB", "DLIB", "SLIB", "RLIB", "DSLIB", "DRLIB", "SRLIB", "DSRLIB",
    "LIT", "DLIT", "SLIT", "RLIT", "DSLIT", "DRLIT", "SRLIT", "DSRLIT",
    "LITS", "DLITS", "SLITS", "RLITS", "DSLITS", "DRLITS", "SRLITS", "DSRLITS",
)  # fmt: skip

DEFAULTS = {"alpha": 0.5, "beta": 0.9, "gamma": 0.9, "threshold": 1.0, "bias": 0.0,
            "scale": 1.0, "rec_weight": 0.0}  # fmt: skip

_OUTPUT: dict[str, Output] = {
    "LI": "membrane", "LIEMA": "membrane", "LIB": "binary", "LIT": "ternary", "LITS": "ternary",
}  # fmt: skip


class FamilyA(Neuron):
    """Base of the family-A layers: they fire with ``quant_fn(spike_fn(u))``."""

    spike_fn: Any
    quant_fn: Any

    def _fire_pos(self, u: Tensor) -> Tensor:
        probability = self.spike_fn(u)
        quant = self.quant_fn
        # Calling an nn.Identity module costs more than the whole neuron update at small sizes.
        return probability if type(quant) is nn.Identity else quant(probability)


def layout(name: str) -> tuple[NeuronSpec, list[str]]:
    """The spec and the parameter names, in positional order, of a family-A layer name."""
    match = re.fullmatch(r"(D?)(S?)(R?)(LIEMA|LITS|LIT|LIB|LI)", name)
    if match is None or name not in NAMES:
        raise ValueError(f"{name!r} is not a family-A layer name")
    dual, synaptic, recurrent, base = (bool(match[1]), bool(match[2]), bool(match[3]), match[4])
    output = _OUTPUT[base]
    spec = NeuronSpec(
        dual=dual, synaptic=synaptic, recurrent=recurrent,
        syn_ema=True, rec_ema=True, mem_ema=base == "LIEMA",
        bias="none" if output == "membrane" else "spike",
        output=output, scaled=base == "LITS",
    )  # fmt: skip

    def pair(p: str) -> list[str]:
        return [f"pos_{p}", f"neg_{p}"] if dual else [p]

    names = (pair("alpha") if synaptic else []) + pair("beta")
    if recurrent:
        names += pair("gamma")
    if output == "binary":
        names += ["threshold", "bias"]
    elif output == "ternary":
        names += ["pos_threshold", "neg_threshold", "bias"]
    if base == "LITS":
        names += ["pos_scale", "neg_scale"]
    if recurrent:
        names += pair("rec_weight")
    return spec, names


def _kind(parameter: str) -> str:
    return parameter.removeprefix("pos_").removeprefix("neg_")


def _register(layer: Neuron, parameter: str, value: Any, rank: int, learnable: bool) -> None:
    kind = _kind(parameter)
    if kind in ("alpha", "beta", "gamma"):
        layer._register_decay(parameter, value, rank, learnable)
    elif kind == "threshold":
        layer._register_threshold(parameter, value, rank, learnable)
    elif kind == "bias":
        layer._register_bias(parameter, value, rank, learnable)
    else:
        layer._register_parameter(parameter, value, rank, learnable)


_TRANSFORM = {"alpha": "sigmoid", "beta": "sigmoid", "gamma": "sigmoid",
              "threshold": "softplus", "bias": "asinh"}  # fmt: skip


def _docstring(name: str, spec: NeuronSpec, names: list[str], renames: dict[str, str]) -> str:
    parts = {"D": "dual", "S": "synaptic", "R": "recurrent"}
    prefix = re.match(r"D?S?R?", name)[0]  # type: ignore[index]
    traits = ", ".join(parts[c] for c in prefix)
    what = {"membrane": "returns its membrane", "binary": "fires one way (binary)",
            "ternary": "fires both ways (ternary)"}[spec.output]  # fmt: skip
    if spec.scaled:
        what += " with separate output scales"
    if spec.mem_ema:
        what += "; the membrane is an exponential moving average"
    params = "\n".join(
        f"        {p}: default {DEFAULTS[_kind(p)]}"
        + (f", read through {_TRANSFORM[_kind(p)]}" if _kind(p) in _TRANSFORM else "")
        for p in names
    )
    firing = (
        "        spike_fn: maps membrane distance to a firing probability (sigmoid4x).\n"
        "        quant_fn: quantizes the probability (nn.Identity() keeps it smooth).\n"
        if spec.fires else ""
    )  # fmt: skip
    return (
        f"{name}: a {traits + ' ' if traits else ''}leaky-integrator layer that {what}.\n\n"
        f"States: {', '.join(spec.state_names())}. One timestep (``P(v) = max(v, 0)``,\n"
        f"``N(v) = min(v, 0)``{', ``fire(u) = quant_fn(spike_fn(u))``' if spec.fires else ''}"
        f")::\n\n" + "".join(f"    {line}\n" for line in spec.equations(renames)) + "\n"
        f"Args:\n        num_neurons: size of the axis ``dim``.\n{params}\n"
        f"        dim: the neuron axis (default -1).\n"
        f"        <p>_rank: 0 for one shared scalar, 1 for one value per neuron (default 1).\n"
        f"        learn_<p>: a trainable ``nn.Parameter`` if True, else a buffer (default True).\n"
        f"{firing}\n"
        f"Example:\n"
        f"        >>> import torch, tracetorch as tt\n"
        f"        >>> layer = tt.snn.{name}(4)\n"
        f"        >>> layer(torch.rand(2, 4)).shape\n"
        f"        torch.Size([2, 4])\n"
    )


def _declare(name: str) -> type:
    spec, names = layout(name)
    arguments: list[tuple[str, Any]] = [("num_neurons", inspect.Parameter.empty)]
    arguments += [(p, DEFAULTS[_kind(p)]) for p in names]
    arguments += [("dim", -1)]
    arguments += [(f"{p}_rank", 1) for p in names]
    arguments += [(f"learn_{p}", True) for p in names]
    if spec.fires:
        arguments += [("spike_fn", functional.sigmoid4x), ("quant_fn", nn.Identity())]
    bindings = tuple(("pos_threshold" if p == "threshold" else p, p, False) for p in names)

    def configure(layer: FamilyA, values: dict[str, Any]) -> None:
        Neuron.__init__(layer, values["num_neurons"], values["dim"])
        for p in names:
            _register(layer, p, values[p], values[f"{p}_rank"], values[f"learn_{p}"])
        if spec.fires:
            for fn in ("spike_fn", "quant_fn"):
                if not callable(values[fn]):
                    raise TypeError(f"{layer._describe()}: {fn} must be callable")
            layer.spike_fn = values["spike_fn"]
            layer.quant_fn = values["quant_fn"]
        layer._set_dynamics(spec, bindings)

    renames = {core: layer for core, layer, _ in bindings}
    doc = _docstring(name, spec, names, renames)
    return declare_layer(name, FamilyA, arguments, configure, doc)


LAYERS: dict[str, type] = {name: _declare(name) for name in NAMES}
