"""Family-B layers (``LeakyIntegrator``, ``LIF``, ``Readout`` and kin) against the spec.

Expected values come from ``reference.py`` (the spec's equations, hard spikes
``u > 0`` with hand-written surrogate derivatives, in float64) or from the
spec's tables, never from tracetorch itself.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Union

import pytest
import torch
from conftest import (
    TOL,
    assert_stream_matches,
    check_compile_roundtrip,
    check_detach_states,
    check_load_states_errors,
    check_save_load_continues,
    check_zero_states,
    mentions,
    run,
    seed_of,
)
from reference import (
    FAMILY_B,
    FAMILY_B_DEFAULTS,
    FAMILY_B_EMA_DEFAULTS,
    FAMILY_B_EMAS,
    FAMILY_B_PARAMETERS,
    Result,
    Surrogate,
    b_raw_from_value,
    b_value_from_raw,
    crossing_inputs,
    draw_value,
    family_b_states,
    run_family_b,
    run_leaky_integrator,
)
from torch import nn

import tracetorch as tt

Tensor = torch.Tensor
Value = Union[float, Tensor]

N = 5
BATCH = 3
STEPS = 8
DECAYS = ("alpha", "beta", "gamma")
FIRING = tuple(n for n in FAMILY_B if "pos_threshold" in FAMILY_B_PARAMETERS[n])
TERNARY = tuple(n for n in FAMILY_B if "neg_threshold" in FAMILY_B_PARAMETERS[n])

# --- helpers ----------------------------------------------------------------------------------


def layer_class(name: str) -> Any:
    """``tt.snn.<name>``."""
    return getattr(tt.snn, name)


def surrogate_arguments(name: str) -> list[str]:
    """The spec's surrogate argument names of a wrapper."""
    params = FAMILY_B_PARAMETERS[name]
    if "neg_threshold" in params:
        return ["pos_surrogate_derivative", "neg_surrogate_derivative"]
    return ["surrogate_derivative"] if "pos_threshold" in params else []


def reference_value(parameter: str, constructor_value: Value) -> Value:
    """What the layer sees: the constructor's ``neg_threshold`` is a magnitude, read negative."""
    return -constructor_value if parameter == "neg_threshold" else constructor_value


def mixed_config(
    name: str, pattern: int, flip_ema: bool = False
) -> tuple[dict[str, Any], dict[str, Value], dict[str, bool]]:
    """Constructor kwargs, the reference's values and ema flags; ranks alternate by position."""
    g = torch.Generator().manual_seed(seed_of(name, pattern))
    kwargs: dict[str, Any] = {}
    values: dict[str, Value] = {}
    for index, p in enumerate(FAMILY_B_PARAMETERS[name]):
        rank = 1 if (index + pattern) % 2 == 0 else 0
        kwargs[p] = draw_value(p, rank, g, N)
        values[p] = reference_value(p, kwargs[p])
        if rank == 0:
            kwargs[f"{p}_rank"] = 0
    ema = {d: not FAMILY_B_EMA_DEFAULTS[d] for d in FAMILY_B_EMAS[name]} if flip_ema else {}
    kwargs.update({f"{d}_ema": flag for d, flag in ema.items()})
    return kwargs, values, ema


def assert_meaningful(name: str, expected: Result) -> None:
    """The inputs fired both ways where the layer can, and no decision sits on its threshold."""
    assert expected.margin > 1e-4, "a spike decision sits on its threshold: pick other inputs"
    if name in FIRING:
        assert expected.spikes["pos"] > 0, "no positive spike: the test proves little"
    if name in TERNARY:
        assert expected.spikes["neg"] > 0, "no negative spike: the test proves little"


def states_of_layer(name: str) -> tuple[str, ...]:
    """The spec's states of a wrapper (sorted; the spec gives no order for family B)."""
    return tuple(sorted(family_b_states(FAMILY_B_PARAMETERS[name])))


def raw_names(name: str) -> set[str]:
    """The documented state-dict keys of a wrapper."""
    return {f"raw_{p}" for p in FAMILY_B_PARAMETERS[name]}


# --- dynamics against the reference -----------------------------------------------------------

REFERENCE_CASES = [
    pytest.param(name, flip, pattern, id=f"{name}-{'flipped' if flip else 'default'}-p{pattern}")
    for name in FAMILY_B
    for flip in ((False, True) if FAMILY_B_EMAS[name] else (False,))
    for pattern in (0, 1)
]


@pytest.mark.parametrize(("name", "flip_ema", "pattern"), REFERENCE_CASES)
def test_matches_reference(name: str, flip_ema: bool, pattern: int) -> None:
    """Eight steps, mixed ranks, default or flipped ``<p>_ema``: outputs, states, raw storage."""
    kwargs, values, ema = mixed_config(name, pattern, flip_ema)
    layer = layer_class(name)(N, **kwargs)
    # Averaging membranes (flipped beta_ema) need a stronger drive to reach the thresholds.
    scale = 2.5 if flip_ema else 1.5
    inputs = crossing_inputs(STEPS, (BATCH, N), seed_of(name, "inputs", pattern), scale=scale)
    expected = run_family_b(name, values, inputs, ema)
    assert_meaningful(name, expected)
    assert_stream_matches(layer, run(layer, inputs), expected, states_of_layer(name))
    for p, v in values.items():
        torch.testing.assert_close(
            layer.state_dict()[f"raw_{p}"].double(),
            b_raw_from_value(p, torch.as_tensor(v, dtype=torch.float64)),
            rtol=1e-4, atol=1e-5, msg=lambda m, p=p: f"raw_{p} storage: {m}",
        )  # fmt: skip


LEAKY_INTEGRATOR_CONFIGS: dict[str, dict[str, dict[str, Any]]] = {
    "beta+bias": {"beta_setup": {"value": 0.8}, "bias_setup": {"value": 0.25, "rank": 0}},
    "syn-plain+mem-ema+pos": {
        "alpha_setup": {"value": 0.6, "use_averaging": False},
        "beta_setup": {"value": 0.7, "use_averaging": True, "rank": 0},
        "pos_threshold_setup": {"value": 0.4, "surrogate": tt.snn.sigmoid_surrogate(5.0)},
    },
    "ternary-unscaled+rec-plain": {
        "beta_setup": {"value": 0.85, "learnable": False},
        "gamma_setup": {"value": 0.6, "use_averaging": False},
        "rec_weight_setup": {"value": -0.5},
        "pos_threshold_setup": {"value": 0.9},
        "neg_threshold_setup": {"value": 0.7, "rank": 0},
    },
}

_SURROGATE_OF = {"syn-plain+mem-ema+pos": Surrogate("sigmoid", 5.0)}


@pytest.mark.parametrize("config", list(LEAKY_INTEGRATOR_CONFIGS))
def test_leaky_integrator_setups_match_reference(config: str) -> None:
    """``LeakyIntegrator`` setups: partial dicts merge with defaults; absent setups disable."""
    setups = LEAKY_INTEGRATOR_CONFIGS[config]
    layer = tt.snn.LeakyIntegrator(N, **setups)
    values: dict[str, Value] = {}
    ema: dict[str, bool] = {}
    for key, setup in setups.items():
        p = key.removesuffix("_setup")
        values[p] = reference_value(p, setup["value"])
        if p in DECAYS:
            ema[p] = setup.get("use_averaging", FAMILY_B_EMA_DEFAULTS[p])
        expected_shape = () if setup.get("rank", 1) == 0 else (N,)
        assert getattr(layer, p).shape == expected_shape, p
        learnable = f"raw_{p}" in dict(layer.named_parameters())
        assert learnable == setup.get("learnable", True), p
    assert set(layer.state_dict()) == {f"raw_{p}" for p in values}
    inputs = crossing_inputs(STEPS, (BATCH, N), seed_of(config))
    surrogate = _SURROGATE_OF.get(config, Surrogate())
    expected = run_leaky_integrator(values, inputs, ema, surrogate, surrogate)
    assert expected.margin > 1e-4
    assert_stream_matches(
        layer, run(layer, inputs), expected, sorted(family_b_states(tuple(values)))
    )


def test_leaky_integrator_defaults() -> None:
    """Only ``beta`` (0.9, no averaging, rank 1, learnable) is on by default."""
    layer = tt.snn.LeakyIntegrator(N)
    assert set(layer.state_dict()) == {"raw_beta"}
    assert {n for n, _ in layer.named_parameters()} == {"raw_beta"}
    torch.testing.assert_close(layer.beta, torch.full((N,), 0.9), rtol=0, atol=1e-6)
    inputs = crossing_inputs(4, (BATCH, N), seed_of("li-defaults"))
    expected = run_leaky_integrator({"beta": 0.9}, inputs)
    assert_stream_matches(layer, run(layer, inputs), expected, ["mem"])


# --- family-B specifics -----------------------------------------------------------------------


@pytest.mark.parametrize("name", TERNARY)
def test_neg_threshold_is_stored_negative(name: str) -> None:
    """The constructor takes the magnitude; ``layer.neg_threshold`` reads it negative."""
    layer = layer_class(name)(N, neg_threshold=0.7)
    assert bool((layer.neg_threshold < 0).all())
    torch.testing.assert_close(layer.neg_threshold, torch.full((N,), -0.7), rtol=0, atol=1e-6)
    expected_raw = math.log(math.expm1(0.7))
    torch.testing.assert_close(
        layer.raw_neg_threshold, torch.full((N,), expected_raw), rtol=0, atol=1e-6
    )


def test_bias_enters_the_membrane_drive() -> None:
    """RLIF: with zero input, ``mem = beta*mem + bias`` accumulates (no spike until threshold)."""
    layer = tt.snn.RLIF(1, beta=0.5, gamma=0.5, pos_threshold=1.0, rec_weight=0.0, bias=0.6)
    zero = torch.zeros(1)
    outs = [layer(zero).item() for _ in range(3)]
    # mem: 0.6 -> 0.9 -> 1.05 fires, reset to 0.05.
    assert outs == [0.0, 0.0, 1.0]
    torch.testing.assert_close(layer.mem, torch.tensor([0.05]), rtol=0, atol=1e-6)
    readout = tt.snn.RReadout(1, beta=0.5, gamma=0.5, rec_weight=0.0, bias=0.6)
    # averaging: mem = 0.5*mem + 0.5*(x + bias): 0.3, then 0.45.
    assert [round(readout(zero).item(), 6) for _ in range(2)] == [0.3, 0.45]


def test_negative_spike_sees_the_membrane_after_the_positive_reset() -> None:
    """BLIF: d out/d x through both surrogates uses ``mem`` after the positive reset.

    mem = x = 1.2, pos_threshold 1, neg_threshold -0.5, atan(2) surrogate
    ``g(u) = 1/(1 + (pi*u)^2)``: d out/dx = g(0.2) + g(-0.5 - 0.2)*(1 - g(0.2)).
    (Before the reset it would be g(0.2) + g(-1.7).)
    """
    layer = tt.snn.BLIF(1, beta=0.5, pos_threshold=1.0, neg_threshold=0.5)
    x = torch.tensor([1.2], requires_grad=True)
    out = layer(x)
    assert out.item() == 1.0
    out.sum().backward()

    def g(u: float) -> float:
        return 1.0 / (1.0 + (math.pi * u) ** 2)

    expected = g(0.2) + g(-0.7) * (1.0 - g(0.2))
    assert x.grad is not None
    assert abs(float(x.grad) - expected) < 1e-5, (float(x.grad), expected)


def test_readout_always_averages() -> None:
    """``Readout`` has no ``beta_ema`` and computes ``mem = beta*mem + (1-beta)*x``."""
    assert "beta_ema" not in inspect.signature(tt.snn.Readout).parameters
    with pytest.raises(TypeError):
        tt.snn.Readout(1, beta_ema=False)
    layer = tt.snn.Readout(1, beta=0.8)
    one = torch.ones(1)
    got = [layer(one).item() for _ in range(3)]
    assert got == pytest.approx([0.2, 0.36, 0.488], abs=1e-6)


# --- constructor ------------------------------------------------------------------------------


def distinct_value(parameter: str, index: int) -> float:
    """A valid constructor value for ``parameter``, different at each position."""
    if parameter in DECAYS:
        return 0.51 + 0.03 * index
    if parameter in ("pos_threshold", "neg_threshold"):
        return 0.6 + 0.1 * index
    if parameter in ("pos_scale", "neg_scale"):
        return 1.3 + 0.2 * index
    return -0.3 - 0.1 * index if parameter == "rec_weight" else 0.05 * (index + 1)


@pytest.mark.parametrize("name", FAMILY_B)
def test_positional_order(name: str) -> None:
    """Values, dim, ranks, emas, learn flags, surrogates: each lands where the spec says."""
    params = FAMILY_B_PARAMETERS[name]
    emas = FAMILY_B_EMAS[name]
    values = [distinct_value(p, i) for i, p in enumerate(params)]
    ranks = [i % 2 for i in range(len(params))]
    ema_flags = [not FAMILY_B_EMA_DEFAULTS[d] for d in emas]
    learns = [i % 3 != 1 for i in range(len(params))]
    surrogates = [Surrogate("atan", 3.0), Surrogate("sigmoid", 7.0)][
        : len(surrogate_arguments(name))
    ]
    tt_surrogates = [
        tt.snn.atan_surrogate(s.scale) if s.kind == "atan" else tt.snn.sigmoid_surrogate(s.scale)
        for s in surrogates
    ]
    layer = layer_class(name)(N, *values, -1, *ranks, *ema_flags, *learns, *tt_surrogates)
    learnable = {n for n, _ in layer.named_parameters()}
    for p, v, rank, learn in zip(params, values, ranks, learns, strict=True):
        got = getattr(layer, p)
        assert got.shape == ((N,) if rank == 1 else ()), f"{p}: rank {rank}"
        want = reference_value(p, v)
        torch.testing.assert_close(got, torch.full_like(got, want), rtol=1e-5, atol=1e-6)
        assert (f"raw_{p}" in learnable) == learn, f"learn_{p}={learn}"
    # ema flags and surrogates by behaviour: outputs and gradients as the reference says.
    inputs = crossing_inputs(STEPS, (BATCH, N), seed_of(name, "pos"), scale=1.5)
    raws = {p: layer.state_dict()[f"raw_{p}"].double().requires_grad_() for p in params}
    pos = surrogates[0] if surrogates else Surrogate()
    neg = surrogates[-1] if surrogates else Surrogate()
    expected = run_family_b(
        name, {p: b_value_from_raw(p, r) for p, r in raws.items()}, inputs,
        dict(zip(emas, ema_flags, strict=True)), pos, neg,
    )  # fmt: skip
    assert_meaningful(name, expected)
    outputs = run(layer, inputs)
    assert_stream_matches(layer, outputs, expected, states_of_layer(name))
    torch.stack(outputs).sum().backward()
    torch.stack(expected.outputs).sum().backward()
    for p in params:
        if f"raw_{p}" in learnable:
            grad = getattr(layer, f"raw_{p}").grad
            assert grad is not None, p
            torch.testing.assert_close(grad.double(), raws[p].grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", FAMILY_B)
def test_defaults(name: str) -> None:
    """Signature order and defaults follow the spec; the default surrogate is atan(2)."""
    params = FAMILY_B_PARAMETERS[name]
    signature = inspect.signature(layer_class(name))
    expected_order = [
        "num_neurons", *params, "dim", *(f"{p}_rank" for p in params),
        *(f"{d}_ema" for d in FAMILY_B_EMAS[name]), *(f"learn_{p}" for p in params),
        *surrogate_arguments(name),
    ]  # fmt: skip
    assert list(signature.parameters) == expected_order
    defaults = {k: v.default for k, v in signature.parameters.items()}
    assert defaults["num_neurons"] is inspect.Parameter.empty
    assert defaults["dim"] == -1
    for p in params:
        assert defaults[p] == FAMILY_B_DEFAULTS[p], p
        assert defaults[f"{p}_rank"] == 1
        assert defaults[f"learn_{p}"] is True
    for d in FAMILY_B_EMAS[name]:
        assert defaults[f"{d}_ema"] is FAMILY_B_EMA_DEFAULTS[d], d
    for argument in surrogate_arguments(name):
        u = torch.tensor([-0.4, -0.1, 0.0, 0.1, 0.3], requires_grad=True)
        spikes = defaults[argument](u)
        assert spikes.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
        spikes.sum().backward()
        torch.testing.assert_close(u.grad, 1.0 / (1.0 + (math.pi * u.detach()) ** 2))
    layer = layer_class(name)(N)
    assert {n for n, _ in layer.named_parameters()} == raw_names(name)
    for p in params:
        got = getattr(layer, p)
        torch.testing.assert_close(
            got, torch.full((N,), reference_value(p, FAMILY_B_DEFAULTS[p])), rtol=0, atol=1e-6
        )
    assert all(getattr(layer, s) is None for s in states_of_layer(name))


@pytest.mark.parametrize("name", FAMILY_B)
def test_state_dict_keys_are_raw_names(name: str) -> None:
    """``state_dict`` holds exactly ``raw_<p>``, learnable or not, and reloads strictly."""
    params = FAMILY_B_PARAMETERS[name]
    for learn in (True, False):
        layer = layer_class(name)(N, **{f"learn_{p}": learn for p in params})
        assert set(layer.state_dict()) == raw_names(name)
        twin = layer_class(name)(N, **{p: distinct_value(p, i) for i, p in enumerate(params)})
        twin.load_state_dict(layer.state_dict(), strict=True)
        for p in params:
            assert torch.equal(getattr(twin, p), getattr(layer, p)), p


@pytest.mark.parametrize("name", FAMILY_B)
def test_learn_false_gives_buffers(name: str) -> None:
    """``learn_<p>=False`` registers ``raw_<p>`` as a buffer, not a parameter."""
    for frozen in FAMILY_B_PARAMETERS[name]:
        layer = layer_class(name)(N, **{f"learn_{frozen}": False})
        parameters = {n for n, _ in layer.named_parameters()}
        assert f"raw_{frozen}" in dict(layer.named_buffers())
        assert parameters == raw_names(name) - {f"raw_{frozen}"}


@pytest.mark.parametrize("name", FAMILY_B)
def test_rank_shapes_and_tensor_override(name: str) -> None:
    """Rank 0 gives shape [], rank 1 gives [num_neurons]; a tensor value decides by itself."""
    cls = layer_class(name)
    for i, p in enumerate(FAMILY_B_PARAMETERS[name]):
        v = distinct_value(p, i)
        assert getattr(cls(N, **{p: v, f"{p}_rank": 0}), p).shape == ()
        assert getattr(cls(N, **{p: v, f"{p}_rank": 1}), p).shape == (N,)
        scalar = getattr(cls(N, **{p: torch.tensor(v), f"{p}_rank": 1}), p)
        torch.testing.assert_close(scalar, torch.tensor(reference_value(p, v)))
        vector = torch.linspace(v * 0.9, v * 1.05, N)
        per_neuron = getattr(cls(N, **{p: vector, f"{p}_rank": 0}), p)
        torch.testing.assert_close(per_neuron, reference_value(p, vector))


# --- dim ------------------------------------------------------------------------------------

DIM_CASES = [((BATCH, N, 2, 3), -3), ((N, 2, 3), -3), ((BATCH, N, 2, 3), 1), ((N, 2), 0)]


@pytest.mark.parametrize("name", FAMILY_B)
@pytest.mark.parametrize(("shape", "dim"), DIM_CASES, ids=lambda v: str(v))
def test_dim_matches_moved_reference(name: str, shape: tuple[int, ...], dim: int) -> None:
    """With ``dim``, the output equals the reference run on that axis moved last."""
    kwargs, values, ema = mixed_config(name, 1, flip_ema=True)
    layer = layer_class(name)(N, **kwargs, dim=dim)
    moved_shape = torch.empty(shape).movedim(dim, -1).shape
    moved = crossing_inputs(6, moved_shape, seed_of(name, "dim", shape), scale=1.5)
    expected = run_family_b(name, values, moved, ema)
    assert expected.margin > 1e-4
    for t, (x, e) in enumerate(zip(moved, expected.outputs, strict=True)):
        y = layer(x.movedim(-1, dim).contiguous())
        assert y.shape == shape
        torch.testing.assert_close(
            y.detach().double(), e.movedim(-1, dim), **TOL, msg=lambda m, t=t: f"step {t}: {m}"
        )


@pytest.mark.parametrize("name", ["LIF", "BSRLIF", "Readout"])
def test_dim_states_shaped_like_input(name: str) -> None:
    """Spec: states are 'created as zeros shaped like the input', not neurons-last."""
    kwargs, values, _ = mixed_config(name, 0)
    layer = layer_class(name)(N, **kwargs, dim=-3)
    moved = crossing_inputs(4, (BATCH, 2, 3, N), seed_of(name, "dimstate"), scale=1.5)
    run(layer, [x.movedim(-1, -3) for x in moved])
    expected = run_family_b(name, values, moved)
    for state in states_of_layer(name):
        actual = getattr(layer, state)
        assert actual.shape == (BATCH, N, 2, 3), f"{state} has shape {tuple(actual.shape)}"
        torch.testing.assert_close(
            actual.detach().double(), expected.states[state].movedim(-1, -3), **TOL
        )


# --- errors ---------------------------------------------------------------------------------


def invalid_values(parameter: str) -> list[tuple[str, dict[str, Any]]]:
    """Constructor arguments that the spec rejects for ``parameter``, with a label."""
    ok = distinct_value(parameter, 0)
    cases: list[tuple[str, dict[str, Any]]] = [
        ("vector length", {parameter: torch.full((N + 1,), ok)}),
        ("rank 2", {parameter: ok, f"{parameter}_rank": 2}),
        ("2-d tensor", {parameter: torch.full((N, 2), ok)}),
    ]
    if parameter in DECAYS:
        cases += [(f"decay {v}", {parameter: v}) for v in (0.0, 1.0, 1.5)]
    if parameter in ("pos_threshold", "neg_threshold"):
        cases += [(f"threshold {v}", {parameter: v}) for v in (0.0, -0.5)]
    return cases


@pytest.mark.parametrize("name", FAMILY_B)
def test_invalid_parameters_raise_value_error(name: str) -> None:
    """Out-of-range decays/thresholds, wrong lengths and ranks: ValueError naming layer and p."""
    for p in FAMILY_B_PARAMETERS[name]:
        for label, kwargs in invalid_values(p):
            with pytest.raises(ValueError) as info:
                layer_class(name)(N, **kwargs)
            message = str(info.value)
            assert mentions(message, name), f"{p} {label}: {message!r} does not name {name}"
            assert mentions(message, p), f"{p} {label}: {message!r} does not name {p}"


@pytest.mark.parametrize("name", FAMILY_B)
def test_gradients_reach_every_raw_parameter_through_the_surrogate(name: str) -> None:
    """After eight steps, d(sum of outputs)/d(raw_<p>) is non-zero and as the spec computes it."""
    kwargs, _, ema = mixed_config(name, 0)
    layer = layer_class(name)(N, **kwargs)
    inputs = crossing_inputs(STEPS, (BATCH, N), seed_of(name, "grad"), scale=1.5)
    torch.stack(run(layer, inputs)).sum().backward()
    raws = {
        p: layer.state_dict()[f"raw_{p}"].double().requires_grad_()
        for p in FAMILY_B_PARAMETERS[name]
    }
    expected = run_family_b(name, {p: b_value_from_raw(p, r) for p, r in raws.items()}, inputs, ema)
    assert_meaningful(name, expected)
    torch.stack(expected.outputs).sum().backward()
    for p, raw in raws.items():
        grad = getattr(layer, f"raw_{p}").grad
        assert grad is not None, f"no gradient reaches raw_{p}"
        assert bool((grad != 0).any()), f"raw_{p}: zero gradient"
        torch.testing.assert_close(
            grad.double(), raw.grad, rtol=1e-4, atol=1e-5, msg=lambda m, p=p: f"raw_{p}: {m}"
        )


# --- state management -----------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILY_B)
def test_zero_states_restarts_the_stream(name: str) -> None:
    """``zero_states`` sets every state to None; the next step equals a fresh layer's first."""
    layer = layer_class(name)(N, **mixed_config(name, 0)[0])
    inputs = crossing_inputs(4, (BATCH, N), seed_of(name, "zero"), scale=1.5)
    check_zero_states(layer, states_of_layer(name), inputs)


@pytest.mark.parametrize("name", FAMILY_B)
def test_detach_states_cuts_graph_keeps_values(name: str) -> None:
    """``detach_states`` keeps every value, drops autograd history, and the stream continues."""
    layer = layer_class(name)(N, **mixed_config(name, 1)[0])
    inputs = crossing_inputs(6, (BATCH, N), seed_of(name, "detach"), scale=1.5)
    check_detach_states(layer, states_of_layer(name), inputs)


@pytest.mark.parametrize("name", FAMILY_B)
def test_compile_keeps_outputs_and_decompile_restores_parameters(name: str) -> None:
    """TTcompile bakes values into buffers ``<p>``; TTdecompile brings back raw Parameters."""
    params = FAMILY_B_PARAMETERS[name]
    kwargs = mixed_config(name, 0)[0]
    kwargs.update({f"learn_{p}": i % 2 == 0 for i, p in enumerate(params)})
    inputs = crossing_inputs(9, (BATCH, N), seed_of(name, "compile"), scale=1.5)
    check_compile_roundtrip(layer_class(name)(N, **kwargs), params, inputs)


@pytest.mark.parametrize("name", FAMILY_B)
def test_save_load_states_continue_the_stream(name: str) -> None:
    """Run 5, save, run 5 (y1); load, run the same 5: identical, in a fresh model too."""
    layer = layer_class(name)(N, **mixed_config(name, 1)[0])
    inputs = crossing_inputs(10, (BATCH, N), seed_of(name, "save"), scale=1.5)
    check_save_load_continues(layer, states_of_layer(name), inputs, ordered=False)


@pytest.mark.parametrize("name", FAMILY_B)
def test_load_states_errors_leave_states_unchanged(name: str) -> None:
    """A wrong shape, or a missing key under strict, raises ValueError and changes nothing."""
    inputs = crossing_inputs(3, (BATCH, N), seed_of(name, "loaderr"))
    check_load_states_errors(layer_class(name)(N), inputs, N)


def test_ttmodule_manages_family_b_states() -> None:
    """``tt.snn.TTModule`` (the README's model base) zeroes, detaches and saves family-B states."""

    class Net(tt.snn.TTModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(tt.snn.SRLIF(N), nn.Linear(N, N), tt.snn.SReadout(N))

        def forward(self, x: Tensor) -> Tensor:
            return self.net(x)

    net = Net()
    assert isinstance(net, tt.Model)
    run(net, crossing_inputs(3, (BATCH, N), seed_of("ttmodule")))
    assert set(net.save_states()) == {
        "net.0.syn", "net.0.mem", "net.0.rec", "net.0.prev_output", "net.2.syn", "net.2.mem",
    }  # fmt: skip
    net.detach_states()
    assert not any(v.requires_grad for v in net.save_states().values())
    net.zero_states()
    assert net.save_states() == {}
