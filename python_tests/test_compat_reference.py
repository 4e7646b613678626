"""The original traceTorch releases from PyPI as an oracle: 0.19.2 (family A), 0.9.2 (family B).

Each release is installed once with ``pip install --no-deps --target
.cache/ref-<version>`` and imported in a subprocess (its package name clashes
with ours). The subprocess builds every layer with the given arguments, runs
the given inputs, and hands back its ``state_dict``, outputs, final states and
the gradients of ``sum(outputs)``. Here the state dict is loaded into our layer
with ``load_state_dict(strict=True)`` and everything must agree.

Where an original release differs from ``shared/spec/layers.md`` the spec wins
and only what agrees is compared:

- 0.19.2 ``LITS``-family constructors list ``pos_scale_rank, neg_scale_rank``
  before ``bias_rank`` (and ``learn_pos_scale, learn_neg_scale`` before
  ``learn_bias``), while the spec orders ranks and learn flags like the
  parameters (bias before the scales). Cases pass these by keyword.
- 0.9.2 ``SRLIF`` misspells ``learn_pos_threshold`` as ``pos_learn_threshold``;
  the spec (and we) use ``learn_pos_threshold``. The keyword is translated.
- Both releases reject bad values with ``AssertionError`` (wrong vector length,
  decay outside (0, 1), threshold <= 0); the spec asks for ``ValueError``.
  Errors are not compared here.
- 0.9.2 imports ``matplotlib`` eagerly (``tracetorch.plot``); the helper stubs
  it when it is missing, since no plotting is used.

If pip cannot fetch a release, every test of that family fails (never skips).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest
import torch
from conftest import TOL, seed_of
from reference import (
    FAMILY_A,
    FAMILY_A_PARAMETERS,
    FAMILY_B,
    FAMILY_B_EMA_DEFAULTS,
    FAMILY_B_EMAS,
    FAMILY_B_PARAMETERS,
    crossing_inputs,
    draw_value,
    is_firing_a,
)

import tracetorch as tt

Tensor = torch.Tensor

CACHE = Path(__file__).resolve().parents[1] / ".cache"
VERSION_A = "0.19.2"
VERSION_B = "0.9.2"
N = 5
BATCH = 3
STEPS = 8
GRAD_TOL: dict[str, float] = {"rtol": 1e-4, "atol": 1e-5}

# Keywords that the original releases spell differently (layer, ours) -> theirs.
ORIGINAL_KEYWORD = {("SRLIF", "learn_pos_threshold"): "pos_learn_threshold"}

HELPER = r'''
"""Run layers of an original traceTorch release; argv: <release dir> <job.pt> <result.pt>."""
import sys
import types

release, job_path, result_path = sys.argv[1:4]
sys.path.insert(0, release)
try:
    import matplotlib.pyplot  # noqa: F401
except ImportError:  # 0.9.2 imports its plotting module eagerly; nothing here plots.
    class _Stub(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return _Stub(name)

        def __call__(self, *args, **kwargs):
            return self

    for _name in ("matplotlib", "matplotlib.pyplot", "matplotlib.colors", "matplotlib.cm"):
        sys.modules[_name] = _Stub(_name)

import torch
import tracetorch

if not tracetorch.__file__.startswith(release):
    raise SystemExit(f"imported {tracetorch.__file__}, not the release in {release}")

STATES = ("syn", "pos_syn", "neg_syn", "mem", "pos_mem", "neg_mem", "rec", "pos_rec",
          "neg_rec", "prev_output")
results = {}
for case in torch.load(job_path, weights_only=True):
    kwargs = dict(case["kwargs"])
    if case["quant"] == "round":
        kwargs["quant_fn"] = tracetorch.functional.round_ste()
    layer = getattr(tracetorch.snn, case["layer"])(**kwargs)
    state_dict = {k: v.detach().clone() for k, v in layer.state_dict().items()}
    outputs = torch.stack([layer(x) for x in case["inputs"]])
    outputs.sum().backward()
    results[case["id"]] = {
        "state_dict": state_dict,
        "outputs": outputs.detach(),
        "grads": {n: p.grad.clone() for n, p in layer.named_parameters() if p.grad is not None},
        "states": {s: getattr(layer, s).detach().clone() for s in STATES
                   if isinstance(getattr(layer, s, None), torch.Tensor)},
    }
torch.save(results, result_path)
'''


@dataclass
class Case:
    """One layer configuration, run by the original and by us on the same inputs."""

    id: str
    layer: str
    kwargs: dict[str, Any]  # our keywords, values included
    inputs: Tensor  # [steps, *shape]
    quant: Optional[str] = None
    structure: dict[str, Any] = field(default_factory=dict)  # ranks, learn flags, emas, dim


def _configure(
    layer: str, parameters: tuple[str, ...], g: torch.Generator
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Values with alternating ranks and a few frozen parameters: (all kwargs, structure)."""
    kwargs: dict[str, Any] = {"num_neurons": N}
    structure: dict[str, Any] = {"num_neurons": N}
    for i, p in enumerate(parameters):
        rank = i % 2
        kwargs[p] = draw_value(p, rank, g, N)
        if rank == 0:
            structure[f"{p}_rank"] = 0
        if i % 3 == 2:
            structure[f"learn_{p}"] = False
    kwargs.update(structure)
    return kwargs, structure


def _inputs(case_id: str, shape: tuple[int, ...], scale: float) -> Tensor:
    return torch.stack(crossing_inputs(STEPS, shape, seed_of(case_id), scale=scale))


def family_a_cases() -> Iterator[Case]:
    """Every family-A layer (each quantizer), plus ``dim=-3`` runs of a few layers."""
    for name in FAMILY_A:
        for quant in ("identity", "round") if is_firing_a(name) else ("identity",):
            case_id = f"{name}-{quant}"
            g = torch.Generator().manual_seed(seed_of(case_id))
            kwargs, structure = _configure(name, FAMILY_A_PARAMETERS[name], g)
            yield Case(case_id, name, kwargs, _inputs(case_id, (BATCH, N), 1.0), quant, structure)
    for name in ("LIB", "DSRLITS", "SLIEMA"):
        case_id = f"{name}-dim-3"
        g = torch.Generator().manual_seed(seed_of(case_id))
        kwargs, structure = _configure(name, FAMILY_A_PARAMETERS[name], g)
        kwargs["dim"] = structure["dim"] = -3
        inputs = _inputs(case_id, (BATCH, 2, 3, N), 1.0).movedim(-1, -3).contiguous()
        quant = "identity" if is_firing_a(name) else None
        yield Case(case_id, name, kwargs, inputs, quant, structure)


def family_b_cases() -> Iterator[Case]:
    """Every family-B wrapper (default and flipped ``<p>_ema``), ``dim=-3``, LeakyIntegrator."""
    for name in FAMILY_B:
        emas = FAMILY_B_EMAS[name]
        for flip in (False, True) if emas else (False,):
            case_id = f"{name}-{'flipped' if flip else 'default'}"
            g = torch.Generator().manual_seed(seed_of(case_id))
            kwargs, structure = _configure(name, FAMILY_B_PARAMETERS[name], g)
            if flip:
                structure.update({f"{d}_ema": not FAMILY_B_EMA_DEFAULTS[d] for d in emas})
                kwargs.update(structure)
            scale = 2.5 if flip else 1.5
            yield Case(case_id, name, kwargs, _inputs(case_id, (BATCH, N), scale), None, structure)
    for name in ("BSRLIF", "Readout"):
        case_id = f"{name}-dim-3"
        g = torch.Generator().manual_seed(seed_of(case_id))
        kwargs, structure = _configure(name, FAMILY_B_PARAMETERS[name], g)
        kwargs["dim"] = structure["dim"] = -3
        inputs = _inputs(case_id, (BATCH, 2, 3, N), 1.5).movedim(-1, -3).contiguous()
        yield Case(case_id, name, kwargs, inputs, None, structure)
    setups: dict[str, dict[str, Any]] = {
        "alpha_setup": {"value": 0.6, "use_averaging": False},
        "beta_setup": {"value": 0.8, "use_averaging": True, "rank": 0},
        "pos_threshold_setup": {"value": 0.3},
        "bias_setup": {"value": torch.linspace(-0.2, 0.2, N), "learnable": False},
    }
    structure: dict[str, Any] = {
        "num_neurons": N,
        "alpha_setup": {"value": 0.5, "use_averaging": False},
        "beta_setup": {"value": 0.5, "use_averaging": True, "rank": 0},
        "pos_threshold_setup": {"value": 1.0},
        "bias_setup": {"value": torch.zeros(N), "learnable": False},
    }
    yield Case(
        "LeakyIntegrator-setups", "LeakyIntegrator", {"num_neurons": N, **setups},
        _inputs("LeakyIntegrator-setups", (BATCH, N), 1.0), None, structure,
    )  # fmt: skip


CASES_A = {c.id: c for c in family_a_cases()}
CASES_B = {c.id: c for c in family_b_cases()}


# --- running the originals --------------------------------------------------------------------


def install_release(version: str) -> Path:
    """``.cache/ref-<version>`` holding the release, installed by pip unless already there."""
    target = CACHE / f"ref-{version}"
    if (target / "tracetorch" / "__init__.py").exists() and any(
        target.glob(f"tracetorch-{version}.dist-info")
    ):
        return target
    staging = CACHE / f"ref-{version}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        sys.executable, "-m", "pip", "install", "--no-deps", "--no-input",
        "--disable-pip-version-check", "--target", str(staging), f"tracetorch=={version}",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(
            f"pip could not install tracetorch=={version} (needed as the oracle):\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def run_release(version: str, cases: dict[str, Case], workdir: Path) -> dict[str, Any]:
    """Install (once) and run the release on ``cases`` in a subprocess; its results by case id."""
    release = install_release(version)
    job = [
        {"id": c.id, "layer": c.layer, "quant": c.quant, "inputs": c.inputs,
         "kwargs": {ORIGINAL_KEYWORD.get((c.layer, k), k): v for k, v in c.kwargs.items()}}
        for c in cases.values()
    ]  # fmt: skip
    helper, job_path, result_path = (workdir / n for n in ("helper.py", "job.pt", "result.pt"))
    helper.write_text(HELPER)
    torch.save(job, job_path)
    command = [sys.executable, str(helper), str(release), str(job_path), str(result_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=workdir)
    if done.returncode != 0:
        raise RuntimeError(f"tracetorch=={version} failed to run:\n{done.stderr[-4000:]}")
    results: dict[str, Any] = torch.load(result_path, weights_only=True)
    return results


@dataclass
class Oracle:
    """Results of one release, or why there are none (every test then fails)."""

    results: dict[str, Any]
    error: Optional[str] = None

    def __getitem__(self, case_id: str) -> dict[str, Any]:
        if self.error is not None:
            pytest.fail(self.error, pytrace=False)
        return self.results[case_id]


def _oracle(version: str, cases: dict[str, Case], workdir: Path) -> Oracle:
    try:
        return Oracle(run_release(version, cases, workdir))
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
        return Oracle({}, str(error))


@pytest.fixture(scope="session")
def oracle_a(tmp_path_factory: pytest.TempPathFactory) -> Oracle:
    """tracetorch 0.19.2 run on every family-A case."""
    return _oracle(VERSION_A, CASES_A, tmp_path_factory.mktemp("ref-a"))


@pytest.fixture(scope="session")
def oracle_b(tmp_path_factory: pytest.TempPathFactory) -> Oracle:
    """tracetorch 0.9.2 run on every family-B case."""
    return _oracle(VERSION_B, CASES_B, tmp_path_factory.mktemp("ref-b"))


# --- comparisons ------------------------------------------------------------------------------


def our_layer(case: Case, structure_only: bool) -> Any:
    """Our layer for ``case``: with its values, or with only its shapes and flags."""
    kwargs = dict(case.structure if structure_only else case.kwargs)
    if case.quant == "round":
        kwargs["quant_fn"] = tt.functional.round_ste()
    return getattr(tt.snn, case.layer)(**kwargs)


def compare_with_original(case: Case, original: dict[str, Any]) -> None:
    """Load the original's state dict into our layer (strict) and compare everything."""
    ours_direct = our_layer(case, structure_only=False)
    assert set(ours_direct.state_dict()) == set(original["state_dict"])
    for k, v in ours_direct.state_dict().items():
        torch.testing.assert_close(
            v, original["state_dict"][k], rtol=1e-5, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}"
        )

    layer = our_layer(case, structure_only=True)
    layer.load_state_dict(original["state_dict"], strict=True)
    outputs = torch.stack([layer(x) for x in case.inputs])
    torch.testing.assert_close(outputs.detach(), original["outputs"], **TOL)
    for state, value in original["states"].items():
        torch.testing.assert_close(
            getattr(layer, state).detach(), value, **TOL, msg=lambda m, s=state: f"{s}: {m}"
        )
    outputs.sum().backward()
    grads = {n: p.grad for n, p in layer.named_parameters() if p.grad is not None}
    assert set(grads) == set(original["grads"]), "gradients reach different parameters"
    for n, g in grads.items():
        torch.testing.assert_close(
            g, original["grads"][n], **GRAD_TOL, msg=lambda m, n=n: f"{n}: {m}"
        )


def _ids(cases: dict[str, Case], dim: bool) -> list[str]:
    return [c for c in cases if ("-dim-" in c) == dim]


@pytest.mark.parametrize("case_id", _ids(CASES_A, dim=False))
def test_family_a_matches_0_19_2(oracle_a: Oracle, case_id: str) -> None:
    """Same state dict, outputs, final states and gradients as tracetorch 0.19.2."""
    compare_with_original(CASES_A[case_id], oracle_a[case_id])


@pytest.mark.parametrize("case_id", _ids(CASES_B, dim=False))
def test_family_b_matches_0_9_2(oracle_b: Oracle, case_id: str) -> None:
    """Same state dict, outputs, final states and gradients as tracetorch 0.9.2."""
    compare_with_original(CASES_B[case_id], oracle_b[case_id])


@pytest.mark.parametrize("case_id", _ids(CASES_A, dim=True))
def test_family_a_dim_matches_0_19_2(oracle_a: Oracle, case_id: str) -> None:
    """``dim=-3`` on [B, C, H, W]: outputs and (input-shaped, as the spec says) states agree."""
    compare_with_original(CASES_A[case_id], oracle_a[case_id])


@pytest.mark.parametrize("case_id", _ids(CASES_B, dim=True))
def test_family_b_dim_matches_0_9_2(oracle_b: Oracle, case_id: str) -> None:
    """``dim=-3`` on [B, C, H, W]: outputs and (input-shaped, as the spec says) states agree."""
    compare_with_original(CASES_B[case_id], oracle_b[case_id])
