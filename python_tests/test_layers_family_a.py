"""Family-A layers (``LI``, ``LIB``, ``LIT``, ``LITS`` and variants) against the spec.

Expected values come from ``reference.py`` (the spec's equations written out
by hand in float64) or from the spec's tables, never from tracetorch itself.
"""

from __future__ import annotations

import inspect
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
    FAMILY_A,
    FAMILY_A_DEFAULTS,
    FAMILY_A_PARAMETERS,
    FAMILY_B,
    a_raw_from_value,
    a_value_from_raw,
    crossing_inputs,
    draw_value,
    family_a_states,
    is_firing_a,
    kind,
    run_family_a,
)
from torch import nn

import tracetorch as tt

Tensor = torch.Tensor
Value = Union[float, Tensor]

N = 5
BATCH = 3
STEPS = 8
FIRING = tuple(n for n in FAMILY_A if is_firing_a(n))
DECAYS = ("alpha", "beta", "gamma")

# --- helpers ----------------------------------------------------------------------------------


def layer_class(name: str) -> Any:
    """``tt.snn.<name>``."""
    return getattr(tt.snn, name)


def mixed_config(name: str, pattern: int) -> tuple[dict[str, Any], dict[str, Value]]:
    """Constructor kwargs and the reference's values, ranks alternating by position.

    ``pattern`` 0 makes the even-position parameters vectors and the others
    scalars (``<p>_rank=0``); ``pattern`` 1 the other way round.
    """
    g = torch.Generator().manual_seed(seed_of(name, pattern))
    kwargs: dict[str, Any] = {}
    values: dict[str, Value] = {}
    for index, p in enumerate(FAMILY_A_PARAMETERS[name]):
        rank = 1 if (index + pattern) % 2 == 0 else 0
        values[p] = draw_value(p, rank, g, N)
        kwargs[p] = values[p]
        if rank == 0:
            kwargs[f"{p}_rank"] = 0
    return kwargs, values


def raw_names(name: str) -> set[str]:
    """The documented state-dict keys of a layer."""
    return {f"raw_{p}" for p in FAMILY_A_PARAMETERS[name]}


# --- dynamics against the reference -----------------------------------------------------------

REFERENCE_CASES = [
    pytest.param(name, quant, pattern, id=f"{name}-{quant}-p{pattern}")
    for name in FAMILY_A
    for quant in (("identity", "round") if is_firing_a(name) else ("identity",))
    for pattern in (0, 1)
]


@pytest.mark.parametrize(("name", "quant", "pattern"), REFERENCE_CASES)
def test_matches_reference(name: str, quant: str, pattern: int) -> None:
    """Eight steps with mixed-rank, per-neuron parameters: outputs, states and raw storage."""
    kwargs, values = mixed_config(name, pattern)
    if quant == "round":
        kwargs["quant_fn"] = tt.functional.round_ste()
    layer = layer_class(name)(N, **kwargs)
    inputs = crossing_inputs(STEPS, (BATCH, N), seed_of(name, "inputs", pattern))
    expected = run_family_a(name, values, inputs, quant=quant)  # type: ignore[arg-type]
    if quant == "round":
        assert expected.margin > 1e-4, "a rounded probability sits at 0.5: pick other inputs"
    assert_stream_matches(layer, run(layer, inputs), expected, family_a_states(name))
    for p, v in values.items():
        torch.testing.assert_close(
            layer.state_dict()[f"raw_{p}"].double(),
            a_raw_from_value(p, torch.as_tensor(v, dtype=torch.float64)),
            rtol=1e-4, atol=1e-5, msg=lambda m, p=p: f"{name}.raw_{p} storage: {m}",
        )  # fmt: skip


@pytest.mark.parametrize("name", FIRING)
def test_round_quant_outputs_are_discrete(name: str) -> None:
    """With ``round_ste()`` every spike is 0 or 1 (times a scale for LITS)."""
    layer = layer_class(name)(N, quant_fn=tt.functional.round_ste())
    outs = torch.stack(run(layer, crossing_inputs(STEPS, (BATCH, N), seed_of(name, "q"))))
    assert set(outs.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert (outs == 1).any(), "inputs never fired a positive spike"


# --- constructor ------------------------------------------------------------------------------


def distinct_value(parameter: str, index: int) -> float:
    """A valid value for ``parameter`` that differs from every other position's value."""
    k = kind(parameter)
    if k in DECAYS:
        return 0.51 + 0.03 * index
    if k == "threshold":
        return 1.1 + 0.1 * index
    if k == "bias":
        return 0.05 * (index + 1)
    if k == "scale":
        return 1.3 + 0.2 * index
    return -0.3 - 0.1 * index  # rec weights


def sigmoid2x(u: Tensor) -> Tensor:
    """A non-default spike function, to see that ``spike_fn`` is used."""
    return torch.sigmoid(2.0 * u)


@pytest.mark.parametrize("name", FAMILY_A)
def test_positional_order(name: str) -> None:
    """Values, then dim, then ranks, then learn flags (then spike_fn, quant_fn), by position."""
    params = FAMILY_A_PARAMETERS[name]
    values = [distinct_value(p, i) for i, p in enumerate(params)]
    ranks = [i % 2 for i in range(len(params))]
    learns = [i % 3 != 1 for i in range(len(params))]
    args: list[Any] = [N, *values, -1, *ranks, *learns]
    if is_firing_a(name):
        args += [sigmoid2x, tt.functional.round_ste()]
    layer = layer_class(name)(*args)
    learnable = {n for n, _ in layer.named_parameters()}
    for p, v, rank, learn in zip(params, values, ranks, learns, strict=True):
        got = getattr(layer, p)
        assert got.shape == ((N,) if rank == 1 else ()), f"{p}: rank {rank}"
        torch.testing.assert_close(got, torch.full_like(got, v), rtol=1e-5, atol=1e-6)
        assert (f"raw_{p}" in learnable) == learn, f"learn_{p}={learn}"
    if is_firing_a(name):
        inputs = crossing_inputs(4, (BATCH, N), seed_of(name, "pos"))
        reference_values = dict(zip(params, values, strict=True))
        expected = run_family_a(name, reference_values, inputs, quant="round", spike_fn=sigmoid2x)
        assert expected.margin > 1e-4
        assert_stream_matches(layer, run(layer, inputs), expected, family_a_states(name))


def test_rlib_positional_example() -> None:
    """``RLIB(16, 0.9, 0.8, 1.5)`` is beta=0.9, gamma=0.8, threshold=1.5 (the spec's example)."""
    layer = tt.snn.RLIB(16, 0.9, 0.8, 1.5)
    for p, v in (("beta", 0.9), ("gamma", 0.8), ("threshold", 1.5), ("bias", 0.0),
                 ("rec_weight", 0.0)):  # fmt: skip
        got = getattr(layer, p)
        assert got.shape == (16,)
        torch.testing.assert_close(got, torch.full((16,), v), rtol=1e-6, atol=1e-6)


def expected_default(parameter: str) -> float:
    return FAMILY_A_DEFAULTS[kind(parameter)]


@pytest.mark.parametrize("name", FAMILY_A)
def test_defaults(name: str) -> None:
    """Signature defaults and the built layer follow the spec (rank 1, learnable, dim -1)."""
    params = FAMILY_A_PARAMETERS[name]
    signature = inspect.signature(layer_class(name))
    expected_order = ["num_neurons", *params, "dim", *(f"{p}_rank" for p in params),
                      *(f"learn_{p}" for p in params)]  # fmt: skip
    if is_firing_a(name):
        expected_order += ["spike_fn", "quant_fn"]
    assert list(signature.parameters) == expected_order
    defaults = {k: v.default for k, v in signature.parameters.items()}
    assert defaults["num_neurons"] is inspect.Parameter.empty
    assert defaults["dim"] == -1
    for p in params:
        assert defaults[p] == expected_default(p), p
        assert defaults[f"{p}_rank"] == 1
        assert defaults[f"learn_{p}"] is True
    if is_firing_a(name):
        assert defaults["spike_fn"] is tt.functional.sigmoid4x
        assert isinstance(defaults["quant_fn"], nn.Identity)
    layer = layer_class(name)(N)
    assert {n for n, _ in layer.named_parameters()} == raw_names(name)
    for p in params:
        got = getattr(layer, p)
        assert got.shape == (N,)
        torch.testing.assert_close(got, torch.full((N,), expected_default(p)), rtol=0, atol=1e-6)
    assert all(getattr(layer, s) is None for s in family_a_states(name))


@pytest.mark.parametrize("name", FAMILY_A)
def test_state_dict_keys_are_raw_names(name: str) -> None:
    """``state_dict`` holds exactly ``raw_<p>``, learnable or not, and reloads strictly."""
    for learn in (True, False):
        flags = {f"learn_{p}": learn for p in FAMILY_A_PARAMETERS[name]}
        layer = layer_class(name)(N, **flags)
        assert set(layer.state_dict()) == raw_names(name)
        params = FAMILY_A_PARAMETERS[name]
        twin = layer_class(name)(N, **{p: distinct_value(p, i) for i, p in enumerate(params)})
        twin.load_state_dict(layer.state_dict(), strict=True)
        for p in params:
            assert torch.equal(getattr(twin, p), getattr(layer, p)), p


@pytest.mark.parametrize("name", FAMILY_A)
def test_learn_false_gives_buffers(name: str) -> None:
    """``learn_<p>=False`` registers ``raw_<p>`` as a buffer, not a parameter."""
    params = FAMILY_A_PARAMETERS[name]
    for frozen in params:
        layer = layer_class(name)(N, **{f"learn_{frozen}": False})
        parameters = {n for n, _ in layer.named_parameters()}
        buffers = {n for n, _ in layer.named_buffers()}
        assert f"raw_{frozen}" in buffers and f"raw_{frozen}" not in parameters
        assert parameters == raw_names(name) - {f"raw_{frozen}"}
        assert all(isinstance(t, nn.Parameter) for t in layer.parameters())


@pytest.mark.parametrize("name", FAMILY_A)
def test_rank_shapes_and_tensor_override(name: str) -> None:
    """Rank 0 gives shape [], rank 1 gives [num_neurons]; a tensor value decides by itself."""
    for p in FAMILY_A_PARAMETERS[name]:
        v = {"threshold": 1.3, "bias": 0.2, "rec_weight": 0.2}.get(kind(p), expected_default(p))
        cls = layer_class(name)
        assert getattr(cls(N, **{p: v, f"{p}_rank": 0}), p).shape == ()
        assert getattr(cls(N, **{p: v, f"{p}_rank": 1}), p).shape == (N,)
        scalar = cls(N, **{p: torch.tensor(v), f"{p}_rank": 1})
        torch.testing.assert_close(getattr(scalar, p), torch.tensor(v), rtol=1e-6, atol=1e-6)
        vector = torch.linspace(v * 0.9, v * 1.05, N)
        per_neuron = cls(N, **{p: vector, f"{p}_rank": 0})
        torch.testing.assert_close(getattr(per_neuron, p), vector, rtol=1e-5, atol=1e-6)


# --- dim ------------------------------------------------------------------------------------

DIM_CASES = [((BATCH, N, 2, 3), -3), ((N, 2, 3), -3), ((BATCH, N, 2, 3), 1), ((N, 2), 0)]


@pytest.mark.parametrize("name", FAMILY_A)
@pytest.mark.parametrize(("shape", "dim"), DIM_CASES, ids=lambda v: str(v))
def test_dim_matches_moved_reference(name: str, shape: tuple[int, ...], dim: int) -> None:
    """With ``dim``, the output equals the reference run on that axis moved last."""
    kwargs, values = mixed_config(name, 1)
    layer = layer_class(name)(N, **kwargs, dim=dim)
    moved_shape = torch.empty(shape).movedim(dim, -1).shape
    moved = crossing_inputs(6, moved_shape, seed_of(name, "dim", shape))
    inputs = [x.movedim(-1, dim).contiguous() for x in moved]
    expected = run_family_a(name, values, moved)
    for t, (x, e) in enumerate(zip(inputs, expected.outputs, strict=True)):
        y = layer(x)
        assert y.shape == x.shape
        torch.testing.assert_close(
            y.detach().double(), e.movedim(-1, dim), **TOL, msg=lambda m, t=t: f"step {t}: {m}"
        )


@pytest.mark.parametrize("name", ["LIB", "DSRLITS", "SLI"])
def test_dim_states_shaped_like_input(name: str) -> None:
    """Spec: states are zeros 'shaped like the input' (dim sized num_neurons), not neurons-last."""
    kwargs, values = mixed_config(name, 0)
    layer = layer_class(name)(N, **kwargs, dim=-3)
    moved = crossing_inputs(4, (BATCH, 2, 3, N), seed_of(name, "dimstate"))
    run(layer, [x.movedim(-1, -3) for x in moved])
    expected = run_family_a(name, values, moved)
    for state in family_a_states(name):
        actual = getattr(layer, state)
        assert actual.shape == (BATCH, N, 2, 3), f"{state} has shape {tuple(actual.shape)}"
        torch.testing.assert_close(
            actual.detach().double(), expected.states[state].movedim(-1, -3), **TOL
        )


# --- errors ---------------------------------------------------------------------------------


def invalid_values(parameter: str) -> list[tuple[str, dict[str, Any]]]:
    """Constructor arguments that the spec rejects for ``parameter``, with a label."""
    ok = 0.7 if kind(parameter) in DECAYS else 1.2
    cases: list[tuple[str, dict[str, Any]]] = [
        ("vector length", {parameter: torch.full((N + 1,), ok)}),
        ("rank 2", {parameter: ok, f"{parameter}_rank": 2}),
        ("2-d tensor", {parameter: torch.full((N, 2), ok)}),
    ]
    if kind(parameter) in DECAYS:
        cases += [(f"decay {v}", {parameter: v}) for v in (0.0, 1.0, 1.5)]
        cases.append(("decay vector with 1", {parameter: torch.tensor([0.5] * (N - 1) + [1.0])}))
    if kind(parameter) == "threshold":
        cases += [(f"threshold {v}", {parameter: v}) for v in (0.0, -0.5)]
    return cases


@pytest.mark.parametrize("name", FAMILY_A)
def test_invalid_parameters_raise_value_error(name: str) -> None:
    """Out-of-range decays/thresholds, wrong lengths and ranks: ValueError naming layer and p."""
    for p in FAMILY_A_PARAMETERS[name]:
        for label, kwargs in invalid_values(p):
            with pytest.raises(ValueError) as info:
                layer_class(name)(N, **kwargs)
            message = str(info.value)
            assert mentions(message, name), f"{p} {label}: {message!r} does not name {name}"
            assert mentions(message, p), f"{p} {label}: {message!r} does not name {p}"


@pytest.mark.parametrize("name", FAMILY_A + FAMILY_B)
def test_wrong_input_size_raises_value_error(name: str) -> None:
    """Both families: an input without num_neurons entries along dim is a ValueError naming it."""
    for dim, shape in ((-1, (BATCH, N + 1)), (-3, (BATCH, N - 1, 2, 3)), (-1, (N, 2))):
        layer = getattr(tt.snn, name)(N, dim=dim)
        with pytest.raises(ValueError) as info:
            layer(torch.zeros(shape))
        assert mentions(str(info.value), name), str(info.value)


# --- gradients ------------------------------------------------------------------------------


GRADIENT_CASES = [
    pytest.param(name, quant, id=f"{name}-{quant}")
    for name in FAMILY_A
    for quant in (("identity", "round") if is_firing_a(name) else ("identity",))
]


@pytest.mark.parametrize(("name", "quant"), GRADIENT_CASES)
def test_gradients_match_reference(name: str, quant: str) -> None:
    """After six steps, d(sum of outputs)/d(raw_<p>) reaches every raw parameter, as in the spec.

    With ``round_ste()`` outputs are exactly 0 or 1, so ``P``/``N`` are differentiated at 0:
    the spec's ``where(v >= 0, v, 0)`` passes the gradient there.
    """
    kwargs, _ = mixed_config(name, 0)
    if quant == "round":
        kwargs["quant_fn"] = tt.functional.round_ste()
    layer = layer_class(name)(N, **kwargs)
    inputs = crossing_inputs(6, (BATCH, N), seed_of(name, "grad"))
    torch.stack(run(layer, inputs)).sum().backward()
    raws = {p: layer.state_dict()[f"raw_{p}"].double().requires_grad_()
            for p in FAMILY_A_PARAMETERS[name]}  # fmt: skip
    values = {p: a_value_from_raw(p, r) for p, r in raws.items()}
    expected = run_family_a(name, values, inputs, quant=quant)  # type: ignore[arg-type]
    if quant == "round":
        assert expected.margin > 1e-4, "a rounded probability sits at 0.5: pick other inputs"
    torch.stack(expected.outputs).sum().backward()
    for p, raw in raws.items():
        grad = getattr(layer, f"raw_{p}").grad
        assert grad is not None, f"no gradient reaches raw_{p}"
        # (The spec makes some exactly zero: neg_gamma of a DR*LIB only sees N(o) of o >= 0.)
        assert bool((raw.grad == 0).all()) or bool((grad != 0).any()), f"raw_{p}: {grad}"
        torch.testing.assert_close(
            grad.double(), raw.grad, rtol=1e-4, atol=1e-5, msg=lambda m, p=p: f"raw_{p}: {m}"
        )


@pytest.mark.parametrize("name", ["DLI", "DSLI", "DLIB", "DSLIT"])
def test_zero_input_reaches_both_dual_branches(name: str) -> None:
    """``P(0)`` and ``N(0)`` are ``where(v >= 0, v, 0)`` and ``where(v <= 0, v, 0)``: a zero
    input (a ReLU output, padding) passes gradient into both the positive and negative traces."""
    layer = layer_class(name)(1)
    x = torch.zeros(1, requires_grad=True)
    layer(x).sum().backward()
    x64 = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    values = {p: float(getattr(layer, p).detach()) for p in FAMILY_A_PARAMETERS[name]}
    run_family_a(name, values, [x64]).outputs[0].sum().backward()
    assert x.grad is not None and x64.grad is not None
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-5, atol=1e-6)


# --- state management -----------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILY_A)
def test_zero_states_restarts_the_stream(name: str) -> None:
    """``zero_states`` sets every state to None; the next step equals a fresh layer's first."""
    layer = layer_class(name)(N, **mixed_config(name, 0)[0])
    inputs = crossing_inputs(4, (BATCH, N), seed_of(name, "zero"))
    check_zero_states(layer, family_a_states(name), inputs)


@pytest.mark.parametrize("name", FAMILY_A)
def test_detach_states_cuts_graph_keeps_values(name: str) -> None:
    """``detach_states`` keeps every value, drops autograd history, and the stream continues."""
    layer = layer_class(name)(N, **mixed_config(name, 1)[0])
    check_detach_states(layer, family_a_states(name), crossing_inputs(6, (BATCH, N), seed_of(name)))


@pytest.mark.parametrize("name", FAMILY_A)
def test_compile_keeps_outputs_and_decompile_restores_parameters(name: str) -> None:
    """TTcompile bakes values into buffers ``<p>``; TTdecompile brings back raw Parameters."""
    params = FAMILY_A_PARAMETERS[name]
    kwargs = mixed_config(name, 0)[0]
    kwargs.update({f"learn_{p}": i % 2 == 0 for i, p in enumerate(params)})
    inputs = crossing_inputs(9, (BATCH, N), seed_of(name, "compile"))
    check_compile_roundtrip(layer_class(name)(N, **kwargs), params, inputs)


@pytest.mark.parametrize("name", FAMILY_A)
def test_save_load_states_continue_the_stream(name: str) -> None:
    """Run 5, save, run 5 (y1); load, run the same 5: identical; keys in registration order."""
    layer = layer_class(name)(N, **mixed_config(name, 1)[0])
    inputs = crossing_inputs(10, (BATCH, N), seed_of(name, "save"))
    check_save_load_continues(layer, family_a_states(name), inputs, ordered=True)


@pytest.mark.parametrize("name", FAMILY_A)
def test_load_states_errors_leave_states_unchanged(name: str) -> None:
    """A wrong shape, or a missing key under strict, raises ValueError and changes nothing."""
    inputs = crossing_inputs(3, (BATCH, N), seed_of(name, "loaderr"))
    check_load_states_errors(layer_class(name)(N), inputs, N)


def test_model_walks_plain_containers() -> None:
    """``zero_states``/``detach_states``/``save_states`` reach layers in lists, dicts, tuples."""

    class Net(tt.Model):
        def __init__(self) -> None:
            super().__init__()
            self.seq = nn.Sequential(nn.Linear(N, N), tt.snn.LIB(N))
            self.plain_list = [tt.snn.LI(N)]
            self.plain_dict = {"a": tt.snn.SLIT(N)}
            self.plain_tuple = (tt.snn.DLI(N),)
            self.plain_attr = _Wrapper(tt.snn.RLIB(N))

        def everything(self) -> list[nn.Module]:
            return [self.seq[1], self.plain_list[0], self.plain_dict["a"], self.plain_tuple[0],
                    self.plain_attr.inner]  # fmt: skip

    net = Net()
    x = torch.randn(BATCH, N)
    for layer in net.everything():
        layer(x)
    assert "seq.1.mem" in net.save_states()
    assert len(net.save_states()) == 1 + 1 + 2 + 2 + 3
    net.detach_states()
    assert not any(v.requires_grad for v in net.save_states().values())
    net.zero_states()
    assert net.save_states() == {}


class _Wrapper(nn.Module):
    """A plain module (not a tt.Model) holding a layer."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
