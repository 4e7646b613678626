"""NIR interchange (``tt.nir``): round trips, imports of snnTorch and Norse exports, refusals.

snnTorch 1.0.0 and Norse 1.1.0 are really installed and used (with nirtorch 2.6, their
exporters' tracer): each test builds a model in the library, exports it with the library's
own exporter, imports the graph with ``tt.nir.from_nir`` and runs both side by side.

Tolerances (measured, float32, 60-80 steps):

- round trips tt -> NIR -> tt: asserted within 1e-5, measured bit-identical (spikes and
  membranes);
- snnTorch ``Leaky``/``Synaptic`` (subtractive reset, ``reset_delay=False``), exported with
  ``dt = 1e-4``: spikes identical;
- Norse ``LIBoxCell`` (``v_leak = 0``) and ``LIFBoxCell(reset_method=reset_subtract)``: within
  1e-5 / identical. Norse 1.1 writes ``tau = dt/tau_mem_inv`` (not ``1/tau_mem_inv``), so its
  graphs are imported with ``dt = dt_norse**2``;
- Norse ``LIBoxCell`` with ``v_leak != 0``: Norse starts ``v`` at ``v_leak``, NIR (and
  traceTorch) at 0; the difference is ``v_leak*beta**(t+1)``, checked to 1e-5;
- Norse reset-to-value neurons (``LIFBoxCell`` default, ``LIFCell``): identical up to each
  neuron's first spike (the documented reset approximation). Norse's ``LIFCell`` adds its
  input to the current unscaled although it writes ``w_in = 1`` (Euler: ``(1 - alpha)*w_in``),
  so the reference Norse model is given inputs scaled by ``1 - alpha``.
"""

from __future__ import annotations

import doctest
import warnings
from collections import OrderedDict

import nir
import numpy as np
import pytest
import torch

import tracetorch as tt
from tracetorch.errors import ExportError

nn = torch.nn
DT = 1e-3
STEPS = 60

with warnings.catch_warnings():  # both libraries warn at import under torch 2.15
    warnings.simplefilter("ignore")
    import norse.torch as norse
    import snntorch as snn
    from norse.torch.functional.reset import reset_subtract
    from snntorch.export_nir import export_to_nir


def _rand(n: int, low: float, high: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(n, generator=g)


def _run(model: nn.Module, xs: torch.Tensor) -> torch.Tensor:
    if hasattr(model, "zero_states"):
        model.zero_states()
    with torch.no_grad():
        return torch.stack([model(x) for x in xs])


def _round_trip(model: nn.Module, example: torch.Tensor, steps: int = STEPS) -> torch.Tensor:
    graph = tt.nir.to_nir(model, example, dt=DT)
    copy = tt.nir.from_nir(graph, dt=DT)
    g = torch.Generator().manual_seed(1)
    xs = 2.0 * torch.rand(steps, 3, *example.shape[1:], generator=g)
    expected = _run(_Wrap(model), xs)
    got = _run(copy, xs)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    return expected


class _Wrap(tt.Model):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def _lib(n: int, **kw: object) -> nn.Module:
    return tt.snn.LIB(n, quant_fn=tt.functional.round_ste(), **kw)


# --- round trips, one layer kind at a time -------------------------------------------------

LAYERS = {
    "LI": lambda: tt.snn.LI(4, beta=_rand(4, 0.5, 0.95, 0)),
    "LIEMA": lambda: tt.snn.LIEMA(4, beta=_rand(4, 0.5, 0.95, 1)),
    "SLI": lambda: tt.snn.SLI(4, alpha=_rand(4, 0.2, 0.8, 2), beta=_rand(4, 0.5, 0.95, 3)),
    "SLIEMA": lambda: tt.snn.SLIEMA(4, alpha=_rand(4, 0.2, 0.8, 4), beta=_rand(4, 0.5, 0.9, 5)),
    "LIB": lambda: _lib(4, beta=_rand(4, 0.5, 0.95, 6), threshold=_rand(4, 0.8, 2.0, 7)),
    "LIB-bias": lambda: _lib(4, beta=0.8, threshold=1.5, bias=_rand(4, -0.4, 0.4, 8)),
    "SLIB": lambda: tt.snn.SLIB(
        4, alpha=0.6, beta=0.85, threshold=0.7, bias=0.2, quant_fn=tt.functional.round_ste()
    ),
    "LIF": lambda: tt.snn.LIF(4, beta=_rand(4, 0.5, 0.95, 9), pos_threshold=_rand(4, 1, 2, 10)),
    "LIF-ema": lambda: tt.snn.LIF(4, beta=0.7, pos_threshold=0.4, beta_ema=True),
    "SLIF": lambda: tt.snn.SLIF(4, alpha=_rand(4, 0.2, 0.8, 11), beta=0.9, pos_threshold=1.2),
    "SLIF-noema": lambda: tt.snn.SLIF(4, alpha=0.5, beta=0.6, pos_threshold=2.0, alpha_ema=False),
    "Readout": lambda: tt.snn.Readout(4, beta=_rand(4, 0.5, 0.95, 12)),
    "SReadout": lambda: tt.snn.SReadout(4, alpha=0.3, beta=0.8),
    "LeakyIntegrator-bias": lambda: tt.snn.LeakyIntegrator(
        4, beta_setup={"value": 0.8}, bias_setup={"value": _rand(4, -0.5, 0.5, 13)}
    ),
    "LeakyIntegrator-fire-bias": lambda: tt.snn.LeakyIntegrator(
        4,
        alpha_setup={"value": 0.4},
        beta_setup={"value": 0.9, "use_averaging": True},
        pos_threshold_setup={"value": 0.3},
        bias_setup={"value": 0.1},
    ),
}


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_round_trip_each_neuron_kind(kind: str) -> None:
    layer = LAYERS[kind]()
    model = nn.Sequential(nn.Linear(5, 4), layer)
    torch.manual_seed(0)
    outputs = _round_trip(model, torch.zeros(1, 5))
    if layer.spec.fires:  # real spike trains were compared
        assert 0 < outputs.sum() < outputs.numel()
    # The named layers come back as the same class (a LIB without bias as the identical LIF).
    copy = tt.nir.from_nir(tt.nir.to_nir(model, torch.zeros(1, 5), dt=DT), dt=DT)
    if kind in ("LI", "LIEMA", "SLI", "SLIEMA", "LIF", "SLIF", "LIB-bias", "SLIB"):
        assert type(copy.nodes["_1"]) is type(layer)
    if kind == "LIB":
        assert type(copy.nodes["_1"]) is tt.snn.LIF


def test_round_trip_spikes_really_fire() -> None:
    layer = LAYERS["LIB-bias"]()
    model = nn.Sequential(nn.Linear(5, 4), layer)
    xs = 2.0 * torch.rand(STEPS, 3, 5, generator=torch.Generator().manual_seed(1))
    spikes = _run(_Wrap(model), xs)
    assert 0 < spikes.sum() < spikes.numel()  # the round trips above compare real spike trains


def test_round_trip_linear_conv_pool_flatten_scale_and_branches() -> None:
    torch.manual_seed(0)
    _round_trip(nn.Sequential(nn.Linear(5, 3, bias=False)), torch.zeros(1, 5))
    _round_trip(nn.Sequential(nn.Conv1d(2, 3, 3, padding=1), nn.Flatten()), torch.zeros(1, 2, 7))
    _round_trip(
        nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False), nn.AvgPool2d(2)),
        torch.zeros(1, 2, 8, 8),
    )
    _round_trip(nn.Sequential(nn.AvgPool2d(2, divisor_override=1)), torch.zeros(1, 1, 4, 4))
    _round_trip(nn.Sequential(tt.nir.Scale(torch.tensor([1.0, -2.0, 0.5]))), torch.zeros(1, 3))
    _round_trip(tt.snn.LI(3, beta=0.7), torch.zeros(1, 3))

    class Branches(tt.Model):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 3), nn.Linear(4, 3)
            self.lif = tt.snn.LIF(3, beta=0.8, pos_threshold=0.5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lif(self.a(x) + self.b(x))

    graph = tt.nir.to_nir(Branches(), torch.zeros(1, 4), dt=DT)
    assert sorted(e for e in graph.edges if e[1] == "lif") == [("a", "lif"), ("b", "lif")]
    _round_trip(Branches(), torch.zeros(1, 4))


class Whole(tt.Model):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.lib = _lib(4, beta=_rand(4, 0.6, 0.9, 20), threshold=0.8, bias=0.1, dim=-3)
        self.pool = nn.AvgPool2d(2)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(4 * 3 * 3, 10)
        self.slif = tt.snn.SLIF(10, alpha=0.5, beta=_rand(10, 0.7, 0.95, 21), pos_threshold=0.3)
        self.out = nn.Linear(10, 2)
        self.li = tt.snn.LI(2, beta=0.9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flat(self.pool(self.lib(self.conv(x))))
        return self.li(self.out(self.slif(self.fc(x))))


def test_round_trip_whole_model_through_a_file(tmp_path: object) -> None:
    torch.manual_seed(3)
    model = Whole()
    example = torch.zeros(1, 1, 6, 6)
    graph = tt.nir.to_nir(model, example, dt=DT)
    assert graph.nodes["lib"].v_threshold.shape == (4, 6, 6)
    path = f"{tmp_path}/model.nir"
    nir.write(path, graph)
    copy = tt.nir.from_nir(nir.read(path), dt=DT)
    assert copy.nodes["lib"].dim == -3
    xs = 2.0 * torch.rand(STEPS, 2, 1, 6, 6, generator=torch.Generator().manual_seed(4))
    spikes = _run(nn.Sequential(model.conv, model.lib), xs)
    assert 0 < spikes.sum() < spikes.numel()
    torch.testing.assert_close(_run(copy, xs), _run(model, xs), rtol=0, atol=1e-5)


# --- the discretisation, checked by hand ---------------------------------------------------


def test_export_parameters_follow_forward_euler() -> None:
    beta, alpha = 0.75, 0.5
    graph = tt.nir.to_nir(
        nn.Sequential(OrderedDict(
            li=tt.snn.LI(2, beta=beta), ema=tt.snn.LIEMA(2, beta=beta),
            sli=tt.snn.SLI(2, alpha=alpha, beta=beta),
            lib=_lib(2, beta=beta, threshold=1.5, bias=0.25),
        )),
        torch.zeros(1, 2), dt=DT,
    )  # fmt: skip
    li, ema, sli, lib = (graph.nodes[k] for k in ("li", "ema", "sli", "lib"))
    np.testing.assert_allclose(li.tau, [4e-3, 4e-3], rtol=1e-6)  # dt/(1 - beta)
    np.testing.assert_allclose(li.r, [4.0, 4.0], rtol=1e-6)  # tau/dt: input gain 1
    np.testing.assert_allclose(ema.r, [1.0, 1.0], rtol=1e-6)  # input gain 1 - beta
    np.testing.assert_allclose(sli.tau_syn, [2e-3, 2e-3], rtol=1e-6)
    np.testing.assert_allclose(sli.w_in, [1.0, 1.0], rtol=1e-6)  # averaging synapse
    np.testing.assert_allclose(lib.v_threshold, [1.25, 1.25], rtol=1e-6)  # threshold - bias
    np.testing.assert_allclose(lib.v_reset, [0.0, 0.0])
    np.testing.assert_allclose(graph.metadata[tt.nir.RESET_KEY]["lib"], [1.5, 1.5], rtol=1e-6)


def test_import_matches_a_hand_written_euler_simulation() -> None:
    tau, r, v_leak = np.array([2e-3, 5e-3]), np.array([0.5, 3.0]), np.array([0.2, -0.1])
    tau_syn, w_in = np.array([4e-3, 1.5e-3]), np.array([2.0, 0.7])
    graph = nir.NIRGraph.from_list(
        nir.CubaLI(tau_syn=tau_syn, tau_mem=tau, r=r, v_leak=v_leak, w_in=w_in)
    )
    model = tt.nir.from_nir(graph, dt=DT)
    xs = torch.rand(STEPS, 1, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    got = _run(model, xs.float())
    current, v, expected = np.zeros(2), np.zeros(2), []
    for x in xs[:, 0].numpy():
        current = current + DT / tau_syn * (-current + w_in * x)
        v = v + DT / tau * (v_leak - v + r * current)
        expected.append(v.copy())
    np.testing.assert_allclose(got[:, 0].numpy(), np.array(expected), rtol=0, atol=1e-5)


def test_import_lif_in_channel_shape_and_sumpool() -> None:
    shape = (2, 3, 3)
    tau = np.broadcast_to(np.array([2e-3, 4e-3]).reshape(2, 1, 1), shape).copy()
    lif = nir.LIF(tau=tau, r=tau / DT, v_leak=np.zeros(shape), v_threshold=np.ones(shape))
    pool = nir.SumPool2d(kernel_size=np.array([3, 3]), stride=np.array([3, 3]),
                         padding=np.array([0, 0]))  # fmt: skip
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(np.array(shape)), "lif": lif, "pool": pool,
               "flat": nir.Flatten(np.array([2, 1, 1]), start_dim=0),
               "output": nir.Output(np.array([2]))},
        edges=[("input", "lif"), ("lif", "pool"), ("pool", "flat"), ("flat", "output")],
    )  # fmt: skip
    model = tt.nir.from_nir(graph, dt=DT)
    assert model.nodes["lif"].dim == -3
    torch.testing.assert_close(model.nodes["lif"].beta, torch.tensor([0.5, 0.75]))
    x = torch.full((1, *shape), 1.5)
    assert model(x).tolist() == [[9.0, 9.0]]  # every neuron fires; the sum pool counts 9


# --- snnTorch and Norse exports -------------------------------------------------------------


def test_import_snntorch_leaky_and_synaptic_export() -> None:
    torch.manual_seed(6)
    net = nn.Sequential(
        nn.Linear(5, 4),
        snn.Leaky(beta=_rand(4, 0.4, 0.9, 30), threshold=torch.ones(4), init_hidden=True,
                  reset_delay=False),
        nn.Linear(4, 3),
        snn.Synaptic(alpha=_rand(3, 0.3, 0.8, 31), beta=_rand(3, 0.4, 0.9, 32),
                     threshold=torch.full((3,), 0.8), init_hidden=True, reset_delay=False),
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = export_to_nir(net, torch.zeros(1, 5), ignore_dims=[0])
    kinds = sorted(type(n).__name__ for n in graph.nodes.values())
    assert kinds == ["Affine", "Affine", "CubaLIF", "Input", "LIF", "Output"]
    model = tt.nir.from_nir(graph, dt=1e-4)  # snnTorch exports with dt = 1e-4
    for module in net:
        if hasattr(module, "reset_mem"):
            module.reset_mem()
    xs = 1.5 * torch.rand(STEPS, 2, 5, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = torch.stack([net(x) for x in xs])
    got = _run(model, xs)
    assert 0 < expected.sum() < expected.numel()
    assert torch.equal(got, expected)


def _norse_export(cell: nn.Module, features: int = 4) -> tuple[nn.Module, object]:
    torch.manual_seed(8)
    net = norse.SequentialState(nn.Linear(features, 3), cell)
    with torch.no_grad():
        net[0].weight.abs_()  # positive drive: every neuron spikes within the run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = norse.to_nir(net, torch.zeros(1, features), dt=DT)
    return net, graph


def _run_norse(net: nn.Module, xs: torch.Tensor) -> torch.Tensor:
    state, out = None, []
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for x in xs:
            y, state = net(x, state)
            out.append(y)
    return torch.stack(out)


def _xs(seed: int, scale: float = 4.0) -> torch.Tensor:
    return scale * torch.rand(80, 2, 4, generator=torch.Generator().manual_seed(seed))


def test_import_norse_li_box() -> None:
    inv = _rand(3, 50, 150, 40)
    net, graph = _norse_export(
        norse.LIBoxCell(norse.LIBoxParameters(tau_mem_inv=inv, v_leak=torch.zeros(3)))
    )
    assert isinstance(graph.nodes["1"], nir.LI)
    model = tt.nir.from_nir(graph, dt=DT**2)  # Norse writes tau = dt/tau_mem_inv
    xs = _xs(41)
    torch.testing.assert_close(_run(model, xs), _run_norse(net, xs), rtol=0, atol=1e-5)


def test_import_norse_li_box_with_leak_differs_only_by_the_initial_state() -> None:
    inv, v_leak = _rand(3, 50, 150, 42), _rand(3, 0.1, 0.5, 43)
    params = norse.LIBoxParameters(tau_mem_inv=inv, v_leak=v_leak)
    net, graph = _norse_export(norse.LIBoxCell(params))
    model = tt.nir.from_nir(graph, dt=DT**2)
    xs = _xs(44)
    beta = 1.0 - DT * inv
    steps = torch.arange(1, len(xs) + 1, dtype=torch.float32).reshape(-1, 1, 1)
    start = v_leak * beta**steps  # Norse starts v at v_leak, NIR at 0: the gap decays
    torch.testing.assert_close(_run(model, xs) + start, _run_norse(net, xs), rtol=0, atol=1e-5)


def test_import_norse_lif_box_with_subtractive_reset_is_exact() -> None:
    params = norse.LIFBoxParameters(
        tau_mem_inv=_rand(3, 50, 150, 45),
        v_leak=torch.zeros(3),
        v_th=torch.full((3,), 0.3),
        reset_method=reset_subtract,
    )
    net, graph = _norse_export(norse.LIFBoxCell(params))
    assert isinstance(graph.nodes["1"], nir.LIF)
    model = tt.nir.from_nir(graph, dt=DT**2)
    xs = _xs(46)
    expected = _run_norse(net, xs)
    assert 0 < expected.sum() < expected.numel()
    assert torch.equal(_run(model, xs), expected)


def _equal_until_first_spike(got: torch.Tensor, expected: torch.Tensor) -> int:
    """Compare each neuron's outputs up to and including its first spike in either run."""
    fired = (got + expected) > 0
    first = torch.where(fired.any(0), fired.float().argmax(0), torch.full_like(got[0], 10**6))
    steps = torch.arange(len(got)).reshape(-1, *[1] * (got.ndim - 1))
    mask = steps <= first
    assert torch.equal(got[mask], expected[mask])
    assert fired.any(0).all()  # every neuron spiked, so the comparison covered a spike
    return int(mask.sum())


def test_import_norse_reset_to_value_lif_box_agrees_until_the_first_spike() -> None:
    params = norse.LIFBoxParameters(
        tau_mem_inv=_rand(3, 50, 150, 47), v_leak=torch.zeros(3), v_th=torch.full((3,), 0.3)
    )
    net, graph = _norse_export(norse.LIFBoxCell(params))
    model = tt.nir.from_nir(graph, dt=DT**2)
    xs = _xs(48)
    got, expected = _run(model, xs), _run_norse(net, xs)
    _equal_until_first_spike(got, expected)
    # After it, subtracting the threshold keeps the overshoot: traceTorch fires at least as often.
    assert got.sum() >= expected.sum()


def test_import_norse_cuba_lif_agrees_until_the_first_spike() -> None:
    inv_syn = _rand(3, 100, 200, 49)
    params = norse.LIFParameters(
        tau_mem_inv=_rand(3, 50, 150, 50),
        tau_syn_inv=inv_syn,
        v_leak=torch.zeros(3),
        v_th=torch.full((3,), 0.05),
    )
    net, graph = _norse_export(norse.LIFCell(params))
    assert isinstance(graph.nodes["1"], nir.CubaLIF)
    model = tt.nir.from_nir(graph, dt=DT**2)
    # Norse adds its input to the current unscaled; the NIR (Euler) reading scales it by
    # 1 - alpha = dt*tau_syn_inv: give the Norse reference model that scaled input.
    reference = norse.SequentialState(nn.Linear(4, 3), norse.LIFCell(params))
    with torch.no_grad():
        gain = (DT * inv_syn).reshape(3, 1)
        reference[0].weight.copy_(net[0].weight * gain)
        reference[0].bias.copy_(net[0].bias * gain[:, 0])
    xs = _xs(51)
    _equal_until_first_spike(_run(model, xs), _run_norse(reference, xs))


# --- refusals -------------------------------------------------------------------------------


def _refused(model: nn.Module, match: str, example: torch.Tensor | None = None) -> None:
    example = torch.zeros(1, 3) if example is None else example
    with pytest.raises(ExportError, match=match):
        tt.nir.to_nir(model, example, dt=DT)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: tt.snn.DLI(3), "NIR has no dual-trace neuron"),
        (lambda: tt.snn.DSLIB(3, quant_fn=tt.functional.round_ste()), "dual-trace"),
        (lambda: tt.snn.LIT(3), "NIR has no ternary neuron"),
        (lambda: tt.snn.LITS(3), "ternary"),
        (lambda: tt.snn.BLIF(3), "ternary"),
        (lambda: tt.snn.RLIB(3, quant_fn=tt.functional.round_ste()), "recurrent layers"),
        (lambda: tt.snn.RReadout(3), "recurrent layers"),
        (lambda: tt.snn.LIB(3), r"quant_fn=nn.Identity\(\) gives graded outputs"),
        (lambda: tt.snn.LIB(3, quant_fn=tt.functional.stochastic_round_ste()), "deterministic"),
        (lambda: tt.snn.LIB(3, quant_fn=tt.functional.round_ste(0.5)), "round_ste"),
        (lambda: tt.snn.LIB(3, quant_fn=tt.functional.round_ste(), spike_fn=torch.sigmoid),
         "custom spike_fn"),
        (lambda: tt.snn.LeakyIntegrator(3, pos_threshold_setup={}, pos_scale_setup={}),
         "scaled output"),
        (lambda: tt.snn.LIF(3, surrogate_derivative=lambda u: (u > 0).float()),
         "custom surrogate"),
    ],
)  # fmt: skip
def test_refused_layers(make: object, match: str) -> None:
    _refused(nn.Sequential(make()), match)  # type: ignore[operator]


def test_refused_modules_and_functions() -> None:
    _refused(nn.Sequential(nn.ReLU()), "ReLU has no NIR node")
    _refused(nn.Sequential(nn.Flatten(0)), "over the batch axis")
    pool = torch.zeros(1, 1, 4, 4)
    _refused(nn.Sequential(nn.AvgPool2d(2, ceil_mode=True)), "ceil_mode", pool)
    _refused(nn.Sequential(nn.AvgPool2d(2, divisor_override=2)), "divisor_override=2", pool)
    _refused(nn.Sequential(nn.AvgPool2d(3, 1, 1, count_include_pad=False)), "count_include", pool)
    conv = nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect")
    _refused(nn.Sequential(conv), "padding_mode='reflect'", pool)
    _refused(tt.snn.LI(3, dim=0), "batch axis", torch.zeros(3, 2))

    class Relu(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x)

    _refused(Relu(), "the function 'relu' has no NIR node")
    with pytest.raises(ExportError, match="leading batch axis"):
        tt.nir.to_nir(tt.snn.LI(3), torch.zeros(3))
    with pytest.raises(ValueError, match="dt must be"):
        tt.nir.to_nir(tt.snn.LI(3), torch.zeros(1, 3), dt=0.0)


def _graph(*nodes: object) -> object:
    return nir.NIRGraph.from_list(*nodes)


def test_refused_imports() -> None:
    ones, zeros = np.ones(2), np.zeros(2)
    cases = [
        (_graph(nir.IF(r=ones, v_threshold=ones)), "no leak"),
        (_graph(nir.I(r=ones)), "no leak"),
        (_graph(nir.Threshold(threshold=ones)), "NIR Threshold"),
        (_graph(nir.LIF(tau=ones * 0.01, r=ones, v_leak=zeros, v_threshold=ones,
                        v_reset=ones * 0.5)), "v_reset != 0"),
        (_graph(nir.LI(tau=ones * 1e-4, r=ones, v_leak=zeros)), r"dt/tau must lie in \(0, 1\)"),
        (_graph(nir.LI(tau=np.array([[1e-2, 2e-2], [3e-2, 4e-2]]), r=np.ones((2, 2)),
                       v_leak=np.zeros((2, 2)))), "vary along more than one axis"),
        (_graph(nir.LI(tau=np.array(0.01), r=np.array(1.0), v_leak=np.array(0.0))), "0-d"),
    ]  # fmt: skip
    for graph, match in cases:
        with pytest.raises(ExportError, match=match):
            tt.nir.from_nir(graph, dt=DT)  # type: ignore[arg-type]
    with pytest.raises(ExportError, match="NIR Delay has no traceTorch equivalent"):
        tt.nir.from_nir(_graph(nir.Delay(delay=ones)), dt=DT)  # type: ignore[arg-type]
    with pytest.raises(ExportError, match=r"expected a nir\.NIRGraph"):
        tt.nir.from_nir(nir.LI(tau=ones, r=ones, v_leak=zeros), dt=DT)  # type: ignore[arg-type]


def test_refused_cycles_as_snntorch_exports_rleaky() -> None:
    lif = nir.LIF(tau=np.full(2, 1e-2), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2))
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([2])), "lif": lif,
               "w_rec": nir.Linear(weight=np.eye(2)), "output": nir.Output(np.array([2]))},
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
        type_check=False,
    )  # fmt: skip
    with pytest.raises(ExportError, match="has a cycle through"):
        tt.nir.from_nir(graph, dt=DT)


def test_module_examples() -> None:
    result = doctest.testmod(tt.nir, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
