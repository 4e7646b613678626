"""The Rust engine reproduces PyTorch: every layer kind, rank, quantizer and dim, whole models.

Each check exports a model, streams 100+ timesteps through PyTorch (eval,
no grad) and through the engine (``step`` and ``run``), and compares outputs
and states at 1e-5.

Hard thresholds: a spike flips when its argument crosses a threshold, and a
1-ulp difference between the two implementations could flip one that lies
exactly on it. Inputs are continuous random values, and every check records
the distance of each firing decision from its flip point on the PyTorch side
and uses an input draw where every one exceeds 1e-5 (ten times the largest
difference seen between the two), so no compared spike sits on a tie.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import tracetorch as tt
from tracetorch.model import named_layers
from tracetorch.snn import FAMILY_A, FAMILY_B

TOLERANCE = 1e-5
MARGIN = 1e-5
STEPS = 120
# Largest |engine - PyTorch| output difference of every cross-check run in this session.
LARGEST_DIFFERENCE: list[float] = []

FIRING_A = [name for name in FAMILY_A if not name.endswith(("LI", "LIEMA"))]
QUANTIZERS: dict[str, Callable[[], Any]] = {
    "identity": nn.Identity,
    "round": tt.functional.round_ste,
    "round_half": lambda: tt.functional.round_ste(0.5),
}


def randomize_parameters(model: nn.Module, generator: torch.Generator) -> None:
    """Give every neuron parameter a random value in a sensible range (scalars stay scalars)."""
    ranges = {"alpha": (0.2, 0.9), "beta": (0.5, 0.95), "gamma": (0.3, 0.9),
              "threshold": (0.4, 1.2), "bias": (-0.2, 0.2), "scale": (0.5, 1.5),
              "rec_weight": (-0.6, 0.6)}  # fmt: skip
    for _, layer in named_layers(model):
        for name, registration in layer._registrations.items():
            kind = name.removeprefix("pos_").removeprefix("neg_")
            low, high = ranges[kind]
            raw = getattr(layer, f"raw_{name}")
            value = low + (high - low) * torch.rand(raw.shape, generator=generator)
            if isinstance(layer, tt.snn.LeakyIntegrator) and name == "neg_threshold":
                value = -value  # family B reads its negative threshold as negative
            with torch.no_grad():
                raw.copy_(registration.inverse_fn(value))


class FireMargins:
    """Records how far each firing decision of the PyTorch run lies from its flip point."""

    def __init__(self, model: nn.Module) -> None:
        self.smallest = math.inf
        for _, layer in named_layers(model):
            if getattr(layer, "spec", None) is not None and layer.spec.fires:
                self._watch(layer)

    def _watch(self, layer: Any) -> None:
        for attribute in ("_fire_pos", "_fire_neg"):
            fire = getattr(layer, attribute)
            setattr(layer, attribute, self._recording(layer, fire))

    def _recording(self, layer: Any, fire: Callable[[torch.Tensor], torch.Tensor]) -> Any:
        def record(u: torch.Tensor) -> torch.Tensor:
            self.smallest = min(self.smallest, self._distance(layer, u))
            return fire(u)

        return record

    @staticmethod
    def _distance(layer: Any, u: torch.Tensor) -> float:
        if isinstance(layer, tt.snn.LeakyIntegrator):
            return float(u.abs().min())  # heaviside flips at u = 0
        quant = layer.quant_fn
        if isinstance(quant, tt.functional.RoundSTE):
            scaled = torch.sigmoid(4.0 * u.double()) / quant.step_size
            return float(((scaled - scaled.floor()) - 0.5).abs().min())
        return math.inf  # smooth output: nothing flips


def torch_states(model: nn.Module) -> dict[str, torch.Tensor]:
    return tt.Model.save_states(model)  # type: ignore[arg-type]


def torch_run(model: nn.Module, inputs: torch.Tensor) -> tuple[np.ndarray, float]:
    """PyTorch outputs for ``inputs`` from zero states, and the smallest firing margin."""
    margins = FireMargins(model)
    tt.Model.zero_states(model)  # type: ignore[arg-type]
    with torch.no_grad():
        expected = torch.stack([model(x) for x in inputs]).numpy()
    for _, layer in named_layers(model):  # drop the recording wrappers
        layer.__dict__.pop("_fire_pos", None)
        layer.__dict__.pop("_fire_neg", None)
    return expected, margins.smallest


def clear_draw(
    model: nn.Module, inputs: Callable[[int], torch.Tensor]
) -> tuple[torch.Tensor, np.ndarray]:
    """The first draw ``inputs(seed)`` (seeds 0 to 9) whose PyTorch run keeps every
    firing decision MARGIN away from a tie, and PyTorch's outputs for it."""
    for seed in range(10):
        xs = inputs(seed)
        expected, margin = torch_run(model, xs)
        if margin > MARGIN:
            return xs, expected
    raise AssertionError(f"every input draw put a firing decision on a tie ({margin})")


def crosscheck(
    model: nn.Module,
    inputs: Callable[[int], torch.Tensor],
    tmp_path: Path,
    atol: float = TOLERANCE,
) -> tt.runtime.Engine:
    """Export ``model``, stream ``inputs(seed)`` [T, streams, ...] through both, compare all.

    The first seed whose PyTorch run keeps every firing decision MARGIN away
    from a tie is used (continuous random inputs make ties rare). ``atol``
    grows with the magnitude of the values compared (sums are taken in
    another order than PyTorch's).
    """
    model.eval()
    xs, expected = clear_draw(model, inputs)
    path = tmp_path / "model.safetensors"
    tt.export(model, xs[0, :1], path)
    streams = xs.shape[1]
    engine = tt.runtime.load(path, streams=streams)
    assert engine.input_shape == list(xs.shape[1:])

    stepped = np.stack([engine.step(x.numpy()) for x in xs])
    LARGEST_DIFFERENCE.append(float(np.abs(stepped - expected).max()))
    np.testing.assert_allclose(stepped, expected, rtol=TOLERANCE, atol=atol)
    want_states = torch_states(model)
    got_states = engine.states()
    assert set(got_states) == set(want_states)
    for name, state in want_states.items():
        np.testing.assert_allclose(
            got_states[name], state.numpy(), rtol=TOLERANCE, atol=atol, err_msg=name
        )

    engine.reset()
    ran = engine.run(xs.numpy())
    np.testing.assert_allclose(ran, expected, rtol=TOLERANCE, atol=atol)

    # Every instruction set this CPU runs gives the same answers.
    default = engine.simd
    for isa in tt.runtime.simd_available():
        engine.set_simd(isa)
        engine.reset()
        np.testing.assert_allclose(
            engine.run(xs.numpy()), expected, rtol=TOLERANCE, atol=atol, err_msg=isa
        )
    engine.set_simd(default)
    return engine


def layer_model(name: str, rank: int, quant: str = "identity", dim: int = -1) -> nn.Module:
    layer_cls = getattr(tt.snn, name)
    n = 6
    names = [p for p in layer_cls.__init__.__signature__.parameters if p.endswith("_rank")]
    kwargs: dict[str, Any] = {p: rank for p in names}
    if name in FIRING_A:
        kwargs["quant_fn"] = QUANTIZERS[quant]()
    if dim == -1:
        return nn.Sequential(nn.Linear(5, n), layer_cls(n, **kwargs))
    return nn.Sequential(nn.Conv2d(2, n, 3, padding=1), layer_cls(n, dim=-3, **kwargs))


def drive(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 2.0 * torch.randn(STEPS, *shape, generator=generator)


@pytest.mark.parametrize("rank", [0, 1])
@pytest.mark.parametrize("name", FAMILY_A + FAMILY_B)
def test_every_layer_both_ranks(name: str, rank: int, tmp_path: Path) -> None:
    torch.manual_seed(rank)
    model = layer_model(name, rank)
    randomize_parameters(model, torch.Generator().manual_seed(7 + rank))
    crosscheck(model, lambda s: drive((3, 5), seed=rank + 100 * s), tmp_path)


@pytest.mark.parametrize("quant", ["round", "round_half"])
@pytest.mark.parametrize("name", FIRING_A)
def test_family_a_quantizers(name: str, quant: str, tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = layer_model(name, rank=1, quant=quant)
    randomize_parameters(model, torch.Generator().manual_seed(3))
    crosscheck(model, lambda s: drive((3, 5), seed=4 + 100 * s), tmp_path)


@pytest.mark.parametrize("name", FAMILY_A + FAMILY_B)
def test_every_layer_on_channels_after_conv(name: str, tmp_path: Path) -> None:
    torch.manual_seed(2)
    quant = "round" if name in FIRING_A else "identity"
    model = layer_model(name, rank=1, quant=quant, dim=-3)
    randomize_parameters(model, torch.Generator().manual_seed(5))
    crosscheck(model, lambda s: drive((2, 2, 4, 4), seed=6 + 100 * s), tmp_path)


def test_single_stream_accepts_sample_shape(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = layer_model("RLIB", rank=1, quant="round")
    path = tmp_path / "m.safetensors"
    tt.export(model, torch.zeros(1, 5), path)
    engine = tt.runtime.load(path)
    x = drive((5,), seed=9)
    tt.Model.zero_states(model)  # type: ignore[arg-type]
    with torch.no_grad():
        expected = torch.stack([model(step[None])[0] for step in x]).numpy()
    got = np.stack([engine.step(step.numpy()) for step in x])
    assert got.shape == (STEPS, 6)
    np.testing.assert_allclose(got, expected, rtol=TOLERANCE, atol=TOLERANCE)
    engine.reset()
    np.testing.assert_allclose(engine.run(x.numpy()), expected, rtol=TOLERANCE, atol=TOLERANCE)


class MLP(tt.Model):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, 32), tt.snn.LIB(32, quant_fn=tt.functional.round_ste()),
            nn.Linear(32, 32), tt.snn.DSRLITS(32),
            nn.Linear(32, 10), tt.snn.LI(10),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvSNN(tt.Model):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=1, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.spike = tt.snn.LIB(8, dim=-3, quant_fn=tt.functional.round_ste())
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1, dilation=1, groups=2)
        self.spike2 = tt.snn.BLIF(8, dim=-3)
        self.avg = nn.AvgPool2d(2)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(8, 16)
        self.rec = tt.snn.RLIB(16, rec_weight=0.4)
        self.head = nn.Linear(16, 4)
        self.readout = tt.snn.Readout(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.spike(self.norm(self.conv(x))))
        h = self.flat(self.avg(self.spike2(self.conv2(h))))
        return self.readout(self.head(self.rec(self.fc(h))))


class Residual(tt.Model):
    """Its own forward: residual sums, concatenation, scalars, activations, 1-d ops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 4, 3, padding=2, dilation=2)
        self.spike = tt.snn.SLIT(4, dim=-2)
        self.pool = nn.AvgPool1d(2, count_include_pad=False, padding=1)
        self.maxpool = nn.MaxPool1d(3, stride=1, padding=1)
        self.norm = nn.BatchNorm1d(4)
        self.fc = nn.Linear(24, 12)
        self.block = tt.snn.DRLIB(12)
        self.fc2 = nn.Linear(12, 12)
        self.act = nn.LeakyReLU(0.1)
        self.out = tt.snn.SLIEMA(24)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.maxpool(self.pool(self.spike(self.conv(x)))))
        h = torch.flatten(h, 1)
        a = self.block(self.fc(h + torch.tanh(h)))
        b = self.act(self.fc2(a)) + a * 0.5 - 0.25
        c = torch.sigmoid(b) * torch.relu(a) - (1.0 - b)
        return self.out(torch.cat([a, c], dim=-1))


def _trained_like(model: nn.Module, seed: int) -> nn.Module:
    randomize_parameters(model, torch.Generator().manual_seed(seed))
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model


def test_mlp(tmp_path: Path) -> None:
    torch.manual_seed(10)
    crosscheck(_trained_like(MLP(), 1), lambda s: drive((4, 64), seed=11 + 100 * s), tmp_path)


def test_conv_snn(tmp_path: Path) -> None:
    torch.manual_seed(12)
    crosscheck(
        _trained_like(ConvSNN(), 2), lambda s: drive((2, 3, 8, 8), seed=13 + 100 * s), tmp_path
    )


def test_residual_model_with_its_own_forward(tmp_path: Path) -> None:
    torch.manual_seed(14)
    crosscheck(
        _trained_like(Residual(), 3), lambda s: drive((3, 2, 10), seed=15 + 100 * s), tmp_path
    )


class EventDriven(tt.Model):
    """Linear layers fed by hard spikes (binary and ternary): the engine's event-driven path."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(24, 200)
        self.spike = tt.snn.LIF(200)
        # Wide enough for the engine to take the event-driven path in every
        # layer fed by spikes (it never does in one as small as 40-5).
        self.fc2 = nn.Linear(200, 64)
        self.spike2 = tt.snn.BSLIF(64)
        self.fc3 = nn.Linear(64, 64, bias=False)
        self.readout = tt.snn.Readout(64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.fc3(self.spike2(self.fc2(self.spike(self.fc1(x))))))


def test_event_driven_layers_at_every_activity(tmp_path: Path) -> None:
    """Activity sweeps from silent to saturated over time and differs between
    streams, so both the sparse and the dense path run (chosen per step and stream)."""
    torch.manual_seed(16)
    model = _trained_like(EventDriven(), 4)

    def inputs(seed: int) -> torch.Tensor:
        gain = (
            torch.linspace(0.0, 12.0, STEPS)[:, None, None] * torch.tensor([0.3, 1.0, 5.0])[:, None]
        )
        return gain * drive((3, 24), seed=17 + 100 * seed).abs()

    # Membranes reach +-50 here, where float32 values are 4e-6 apart: a few
    # roundings of that size separate two summation orders.
    engine = crosscheck(model, inputs, tmp_path, atol=5e-5)
    hidden = {n: s for n, s in engine.states().items() if n.startswith("spike.")}
    assert hidden, "the spiking layer's states should be exported"
    # Both regimes really occurred: rows nearly silent, and rows above the
    # engine's switch to the dense path (fc2: 37% active inputs on AVX2).
    activity: list[float] = []
    tt.Model.zero_states(model)  # type: ignore[arg-type]
    with torch.no_grad():
        for x in inputs(0):
            activity.extend((model.spike(model.fc1(x)) != 0).float().mean(-1).tolist())
    assert min(activity) < 0.1 and max(activity) > 0.45, (min(activity), max(activity))


def test_threads_split_streams_with_identical_results(tmp_path: Path) -> None:
    """Many streams through a model heavy enough to be split across threads."""
    torch.manual_seed(18)
    model = _trained_like(EventDriven(), 5).eval()
    path = tmp_path / "model.safetensors"
    tt.export(model, torch.zeros(1, 24), path)
    # 512 streams: fc1 (24x200) and fc2 (200x64) do over 2^21 multiply-adds a
    # step, the engine's threshold for splitting a layer.
    xs = 3.0 * drive((512, 24), seed=19).abs().numpy()
    one = tt.runtime.load(path, streams=512)
    one.set_threads(1)
    many = tt.runtime.load(path, streams=512)
    many.set_threads(2)
    assert (one.threads, many.threads) == (1, 2)
    expected = one.run(xs)
    assert np.count_nonzero(expected) > expected.size // 10
    np.testing.assert_array_equal(many.run(xs), expected)
    with pytest.raises(tt.errors.EngineInputError, match="threads"):
        many.set_threads(0)
    assert many.threads == 2
    many.set_threads(10**30)  # more threads than cores would take turns: clamped
    assert many.threads == tt.runtime.load(path, streams=512).threads  # the cores


def test_one_stream_shared_by_columns_matches_pytorch(tmp_path: Path) -> None:
    """A single stream on two threads: its linear layers (dense, then fed by
    spikes) are shared by output columns, with the bits of one thread."""
    torch.manual_seed(20)
    model = nn.Sequential(
        nn.Linear(64, 600), tt.snn.LIF(600), nn.Linear(600, 300), tt.snn.LI(300)
    ).eval()
    xs, expected = clear_draw(model, lambda s: drive((1, 64), seed=21 + s))
    path = tmp_path / "model.safetensors"
    tt.export(model, xs[0], path)
    one = tt.runtime.load(path)
    shared = tt.runtime.load(path)
    assert shared.threads == 1  # a single stream runs on the calling thread by default
    shared.set_threads(2)
    assert shared.threads == min(2, tt.runtime.load(path, streams=2).threads)
    stepped = np.stack([shared.step(x.numpy()) for x in xs])
    np.testing.assert_allclose(stepped, expected, rtol=TOLERANCE, atol=1e-4)
    np.testing.assert_array_equal(stepped, one.run(xs.numpy()))


def test_states_round_trip_resumes_exactly(tmp_path: Path) -> None:
    torch.manual_seed(16)
    model = _trained_like(MLP(), 4)
    engine = crosscheck(model, lambda s: drive((2, 64), seed=17 + 100 * s), tmp_path)
    more = drive((2, 64), seed=18).numpy()[:50]
    snapshot = engine.states()
    first = engine.run(more)
    engine.load_states(snapshot)
    np.testing.assert_array_equal(engine.run(more), first)
    # PyTorch's own snapshot drives the engine too: same names, same layout.
    # (PyTorch's states differ from the engine's by rounding only, hence the tolerance.)
    engine.load_states({k: v.numpy() for k, v in torch_states(model).items()})
    np.testing.assert_allclose(engine.run(more), first, rtol=TOLERANCE, atol=TOLERANCE)


def test_reset_one_stream(tmp_path: Path) -> None:
    torch.manual_seed(19)
    engine = crosscheck(
        _trained_like(MLP(), 5), lambda s: drive((3, 64), seed=20 + 100 * s)[:20], tmp_path
    )
    before = engine.states()
    engine.reset(stream=1)
    after = engine.states()
    for name in before:
        np.testing.assert_array_equal(after[name][[0, 2]], before[name][[0, 2]])
        assert not after[name][1].any()


def test_engine_pickles_with_its_states(tmp_path: Path) -> None:
    torch.manual_seed(21)
    engine = crosscheck(
        _trained_like(MLP(), 6), lambda s: drive((2, 64), seed=22 + 100 * s)[:30], tmp_path
    )
    clone = pickle.loads(pickle.dumps(engine))
    x = drive((2, 64), seed=23).numpy()[:10]
    np.testing.assert_array_equal(clone.run(x), engine.run(x))


def test_stochastic_quantizers_agree_in_distribution(tmp_path: Path) -> None:
    """Stochastic quantizers run on the engine's own generator: compare firing rates."""
    for quant in (tt.functional.stochastic_round_ste(), tt.functional.probabilistic_ste()):
        torch.manual_seed(0)
        layer = tt.snn.LIB(4, beta=0.5, bias=torch.tensor([-0.5, 0.0, 0.3, 0.8]),
                           quant_fn=quant, learn_bias=False)  # fmt: skip
        model = nn.Sequential(nn.Identity(), layer).eval()
        path = tmp_path / "s.safetensors"
        tt.export(model, torch.zeros(1, 4), path)
        engine = tt.runtime.load(path)
        engine.seed(1234)
        x = torch.full((4000, 1, 4), 0.6)
        with torch.no_grad():
            torch_rate = torch.stack([model(step) for step in x]).mean(0).numpy()
        engine_rate = engine.run(x.numpy()).mean(0)
        np.testing.assert_allclose(engine_rate, torch_rate, atol=0.03)


def test_zz_report_largest_difference() -> None:
    """Prints the largest output difference over the module's cross-checks (run last)."""
    assert LARGEST_DIFFERENCE, "no cross-check ran"
    print(
        f"\nlargest |engine - PyTorch| over {len(LARGEST_DIFFERENCE)} cross-checks: "
        f"{max(LARGEST_DIFFERENCE):.3g}"
    )
    assert max(LARGEST_DIFFERENCE) <= TOLERANCE
