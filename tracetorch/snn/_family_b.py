"""Family B, the README-era API: ``LeakyIntegrator`` and its 12 wrappers.

``LeakyIntegrator`` is configured by one setup dict per feature; a missing
setup disables the feature. Spikes are hard (``u > 0``) forward with a
surrogate gradient backward, the bias enters the membrane drive, and the
negative spike sees the membrane after the positive reset.
"""

from __future__ import annotations

import inspect
from typing import Any, Optional

from tracetorch import functional
from tracetorch._torch import torch
from tracetorch.neuron import NeuronSpec, Output
from tracetorch.snn._declare import declare_layer
from tracetorch.snn._layer import CoreBinding, Neuron

Tensor = torch.Tensor
Setup = Optional[dict[str, Any]]

DEFAULT_ALPHA = {"value": 0.5, "rank": 1, "learnable": True, "use_averaging": True}
DEFAULT_BETA = {"value": 0.9, "rank": 1, "learnable": True, "use_averaging": False}
DEFAULT_GAMMA = {"value": 0.5, "rank": 1, "learnable": True, "use_averaging": True}
DEFAULT_POS_THRESHOLD = {"value": 1.0, "rank": 1, "learnable": True,
                         "surrogate": functional.atan_surrogate(2.0)}  # fmt: skip
DEFAULT_NEG_THRESHOLD = {"value": 1.0, "rank": 1, "learnable": True,
                         "surrogate": functional.atan_surrogate(2.0)}  # fmt: skip
DEFAULT_POS_SCALE = {"value": 1.0, "rank": 1, "learnable": True}
DEFAULT_NEG_SCALE = {"value": 1.0, "rank": 1, "learnable": True}
DEFAULT_REC_WEIGHT = {"value": 0.0, "rank": 1, "learnable": True}
DEFAULT_BIAS = {"value": 0.0, "rank": 1, "learnable": True}

# Parameter order of LeakyIntegrator (registration order) with each default setup.
_FEATURES: dict[str, dict[str, Any]] = {
    "alpha": DEFAULT_ALPHA, "beta": DEFAULT_BETA, "gamma": DEFAULT_GAMMA,
    "pos_threshold": DEFAULT_POS_THRESHOLD, "neg_threshold": DEFAULT_NEG_THRESHOLD,
    "pos_scale": DEFAULT_POS_SCALE, "neg_scale": DEFAULT_NEG_SCALE,
    "rec_weight": DEFAULT_REC_WEIGHT, "bias": DEFAULT_BIAS,
}  # fmt: skip


def spec_of(setups: dict[str, dict[str, Any]]) -> NeuronSpec:
    """The core spec of a ``LeakyIntegrator`` with these (completed) feature setups."""
    output: Output = "membrane"
    if "neg_threshold" in setups:
        output = "ternary"
    elif "pos_threshold" in setups:
        output = "binary"
    scaled = output != "membrane" and ("pos_scale" in setups or "neg_scale" in setups)
    return NeuronSpec(
        synaptic="alpha" in setups, recurrent="gamma" in setups,
        syn_ema=setups.get("alpha", DEFAULT_ALPHA)["use_averaging"],
        rec_ema=setups.get("gamma", DEFAULT_GAMMA)["use_averaging"],
        mem_ema=setups["beta"]["use_averaging"],
        bias="drive" if "bias" in setups else "none",
        output=output, scaled=scaled, neg_sees_pos_reset=True,
    )  # fmt: skip


class LeakyIntegrator(Neuron):
    """The family-B superclass: one neuron configured feature by feature.

    Each ``<feature>_setup`` is a dict with ``value``, ``rank`` and
    ``learnable``, plus ``use_averaging`` for the decays (alpha, beta, gamma)
    and ``surrogate`` for the thresholds; missing keys take the defaults
    (``DEFAULT_<FEATURE>``), and a setup of ``None`` disables the feature.
    ``neg_threshold`` is given as a positive magnitude and read back negative.

    Per step (``c(d) = 1 - d`` with averaging, else 1)::

        delta = x (no alpha) | syn (alpha: syn = alpha*syn + c(alpha)*x)
              + rec_weight*rec (gamma: rec = gamma*rec + c(gamma)*prev_output) + bias
        mem   = beta*mem + c(beta)*delta
        sp = H(mem - pos_threshold);  mem -= sp*pos_threshold
        sn = -H(neg_threshold - mem); mem += sn*neg_threshold
        out = pos_scale*sp + neg_scale*sn  (mem without thresholds)

    Example:
        >>> import torch, tracetorch as tt
        >>> layer = tt.snn.LeakyIntegrator(3, pos_threshold_setup={"value": 0.5})
        >>> layer(torch.ones(3)).tolist()
        [1.0, 1.0, 1.0]
    """

    pos_surrogate: Any
    neg_surrogate: Any

    def __init__(
        self,
        num_neurons: int,
        dim: int = -1,
        alpha_setup: Setup = None,
        beta_setup: Setup = DEFAULT_BETA,
        gamma_setup: Setup = None,
        pos_threshold_setup: Setup = None,
        neg_threshold_setup: Setup = None,
        pos_scale_setup: Setup = None,
        neg_scale_setup: Setup = None,
        rec_weight_setup: Setup = None,
        bias_setup: Setup = None,
    ) -> None:
        super().__init__(num_neurons, dim)
        given = {
            "alpha": alpha_setup, "beta": beta_setup, "gamma": gamma_setup,
            "pos_threshold": pos_threshold_setup, "neg_threshold": neg_threshold_setup,
            "pos_scale": pos_scale_setup, "neg_scale": neg_scale_setup,
            "rec_weight": rec_weight_setup, "bias": bias_setup,
        }  # fmt: skip
        setups = {f: self._complete(f, s) for f, s in given.items() if s is not None}
        self._check_features(setups)
        for feature, setup in setups.items():
            self._register_feature(feature, setup)

        spec = spec_of(setups)
        ternary = spec.output == "ternary"
        core_names = set(spec.parameter_names())
        bindings: tuple[CoreBinding, ...] = tuple(
            (f, f, f == "neg_threshold") for f in setups if f in core_names
        )
        # A scale left out of a scaled layer is a fixed 1.
        constants: dict[str, float] = {
            s: 1.0 for s in ("pos_scale", "neg_scale") if s in core_names - set(setups)
        }
        if "pos_threshold" in setups:
            self.pos_surrogate = setups["pos_threshold"]["surrogate"]
        if ternary:
            self.neg_surrogate = setups["neg_threshold"]["surrogate"]
        self._set_dynamics(spec, bindings, constants)

    def _complete(self, feature: str, setup: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(setup, dict):
            raise ValueError(
                f"{self._describe()}: {feature}_setup must be a dict or None, "
                f"got {type(setup).__name__}"
            )
        unknown = set(setup) - set(_FEATURES[feature])
        if unknown:
            raise ValueError(
                f"{self._describe()}: {feature}_setup has unknown keys {sorted(unknown)}; "
                f"expected some of {sorted(_FEATURES[feature])}"
            )
        return {**_FEATURES[feature], **setup}

    def _check_features(self, setups: dict[str, dict[str, Any]]) -> None:
        problems = []
        if "beta" not in setups:
            problems.append("beta_setup is required (the membrane decay)")
        if "neg_threshold" in setups and "pos_threshold" not in setups:
            problems.append("neg_threshold_setup needs pos_threshold_setup")
        if ("gamma" in setups) != ("rec_weight" in setups):
            problems.append("gamma_setup and rec_weight_setup go together (recurrence)")
        for feature in ("pos_threshold", "neg_threshold"):
            if feature in setups and not callable(setups[feature]["surrogate"]):
                problems.append(f"{feature}_setup['surrogate'] must be callable")
        if problems:
            raise ValueError(f"{self._describe()}: " + "; ".join(problems))

    def _register_feature(self, feature: str, setup: dict[str, Any]) -> None:
        args = (feature, setup["value"], setup["rank"], setup["learnable"])
        if feature in ("alpha", "beta", "gamma"):
            self._register_decay(*args)
        elif feature == "pos_threshold":
            self._register_threshold(*args)
        elif feature == "neg_threshold":
            self._register_negative_threshold(*args)
        else:
            self._register_parameter(*args)

    def _fire_pos(self, u: Tensor) -> Tensor:
        return self.pos_surrogate(u)

    def _fire_neg(self, u: Tensor) -> Tensor:
        return self.neg_surrogate(u)


LAYERS_PARAMETERS: dict[str, list[str]] = {
    "LIF": ["beta", "pos_threshold"],
    "BLIF": ["beta", "pos_threshold", "neg_threshold", "pos_scale", "neg_scale"],
    "SLIF": ["alpha", "beta", "pos_threshold"],
    "RLIF": ["beta", "gamma", "pos_threshold", "rec_weight", "bias"],
    "BSLIF": ["alpha", "beta", "pos_threshold", "neg_threshold", "pos_scale", "neg_scale"],
    "BRLIF": ["beta", "gamma", "pos_threshold", "neg_threshold", "pos_scale", "neg_scale",
              "rec_weight", "bias"],
    "SRLIF": ["alpha", "beta", "gamma", "pos_threshold", "rec_weight", "bias"],
    "BSRLIF": ["alpha", "beta", "gamma", "pos_threshold", "neg_threshold", "pos_scale",
               "neg_scale", "rec_weight", "bias"],
    "Readout": ["beta"],
    "SReadout": ["alpha", "beta"],
    "RReadout": ["beta", "gamma", "rec_weight", "bias"],
    "SRReadout": ["alpha", "beta", "gamma", "rec_weight", "bias"],
}  # fmt: skip


def _declare(name: str, parameters: list[str]) -> type:
    readout = name.endswith("Readout")
    emas = [p for p in parameters if p in ("alpha", "beta", "gamma")]
    if readout:
        emas.remove("beta")  # a readout always averages its membrane
    if "neg_threshold" in parameters:
        surrogates = ["pos_surrogate_derivative", "neg_surrogate_derivative"]
    elif "pos_threshold" in parameters:
        surrogates = ["surrogate_derivative"]
    else:
        surrogates = []

    default_setups = {p: dict(_FEATURES[p]) for p in parameters}
    if readout:
        default_setups["beta"]["use_averaging"] = True
    default_spec = spec_of(default_setups)

    arguments: list[tuple[str, Any]] = [("num_neurons", inspect.Parameter.empty)]
    arguments += [(p, _FEATURES[p]["value"]) for p in parameters]
    arguments += [("dim", -1)]
    arguments += [(f"{p}_rank", 1) for p in parameters]
    arguments += [(f"{p}_ema", _FEATURES[p]["use_averaging"]) for p in emas]
    arguments += [(f"learn_{p}", True) for p in parameters]
    arguments += [(s, DEFAULT_POS_THRESHOLD["surrogate"]) for s in surrogates]

    def configure(layer: LeakyIntegrator, values: dict[str, Any]) -> None:
        setups: dict[str, dict[str, Any]] = {}
        for p in parameters:
            setup = {"value": values[p], "rank": values[f"{p}_rank"],
                     "learnable": values[f"learn_{p}"]}  # fmt: skip
            if p in ("alpha", "beta", "gamma"):
                setup["use_averaging"] = True if p not in emas else values[f"{p}_ema"]
            setups[f"{p}_setup"] = setup
        if surrogates == ["surrogate_derivative"]:
            setups["pos_threshold_setup"]["surrogate"] = values["surrogate_derivative"]
        elif surrogates:
            setups["pos_threshold_setup"]["surrogate"] = values["pos_surrogate_derivative"]
            setups["neg_threshold_setup"]["surrogate"] = values["neg_surrogate_derivative"]
        LeakyIntegrator.__init__(layer, values["num_neurons"], values["dim"], **setups)

    doc = (
        f"{name}: the family-B layer ``LeakyIntegrator`` with {', '.join(parameters)}.\n\n"
        f"Signature: ``{name}(num_neurons, {', '.join(parameters)}, dim, <p>_rank..., "
        f"{''.join(f'{p}_ema, ' for p in emas)}learn_<p>..."
        f"{''.join(', ' + s for s in surrogates)})``."
        + (" The membrane always averages (``1 - beta``)." if readout else "")
        + "\n\nOne timestep, with the default ``_ema`` flags"
        + (
            " (``fire(u) = (u > 0)`` forward, the surrogate's gradient backward)"
            if default_spec.fires
            else ""
        )
        + (
            ";  ``neg_threshold`` is read negative, its magnitude is used"
            if default_spec.output == "ternary"
            else ""
        )
        + "::\n\n"
        + "".join(
            f"    {line}\n" for line in default_spec.equations({"neg_threshold": "|neg_threshold|"})
        )
        + "\n"
        f"Example:\n        >>> import torch, tracetorch as tt\n"
        f"        >>> tt.snn.{name}(4)(torch.rand(2, 4)).shape\n        torch.Size([2, 4])\n"
    )
    return declare_layer(name, LeakyIntegrator, arguments, configure, doc)


LAYERS: dict[str, type] = {name: _declare(name, ps) for name, ps in LAYERS_PARAMETERS.items()}
