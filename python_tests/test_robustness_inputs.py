"""Bad step inputs: the policy of docs/errors.md, and refused calls change nothing.

Policy: anything numpy turns into a real-valued array of the right shape is
converted to float32 (float64, ints, bools, lists, any strides); other dtypes,
None, ragged lists, wrong shapes and NaN or infinite values raise
EngineInputError, and every state stays exactly as it was.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import tracetorch as tt
from tracetorch import _native
from tracetorch.errors import EngineInputError, TraceTorchError
from tracetorch.exporter import export_bytes

torch.manual_seed(0)
MODEL = export_bytes(
    nn.Sequential(nn.Linear(6, 4), tt.snn.LIF(4), nn.Linear(4, 3), tt.snn.LIB(3)),
    torch.zeros(1, 6),
)


def primed(streams: int = 2) -> tt.runtime.Engine:
    """An engine whose states are not zero."""
    engine = tt.runtime.loads(MODEL, streams=streams)
    rng = np.random.default_rng(1)
    for _ in range(5):
        engine.step(rng.normal(size=engine.input_shape).astype(np.float32))
    return engine


def assert_refused(engine: tt.runtime.Engine, call: Callable[[], Any], match: str) -> None:
    """``call`` raises EngineInputError (never a panic) and leaves every state as it was."""
    before = engine.states()
    try:
        call()
    except EngineInputError as error:
        assert _match(match, str(error)), f"{match!r} not in {error}"
    except BaseException as error:  # PanicException is a BaseException
        pytest.fail(f"raised {type(error).__module__}.{type(error).__name__}: {error}")
    else:
        pytest.fail("the call was accepted")
    after = engine.states()
    assert after.keys() == before.keys()
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)


def _match(pattern: str, text: str) -> bool:
    return re.search(pattern, text) is not None


X = np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(2, 6)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros((2, 5), np.float32), r"expected an input of shape \[2, 6\], got \[2, 5\]"),
        (np.zeros((3, 6), np.float32), r"got \[3, 6\]"),
        (np.zeros(12, np.float32), r"got \[12\]"),
        (np.zeros((1, 2, 6), np.float32), r"got \[1, 2, 6\]"),
        (np.float32(1.0), r"got \[\]"),
        (None, "got None"),
        (X.astype(np.complex64), "expected a real numeric array, got dtype complex64"),
        (np.array([["a"] * 6] * 2), "got dtype <U1"),
        (np.array([[object()] * 6] * 2), "got dtype object"),
        ([[1.0, 2.0], [3.0]], "expected a numeric array"),
        ("abcdef", "got dtype <U6"),
    ],
)
def test_bad_inputs_are_refused_and_change_nothing(bad: Any, match: str) -> None:
    engine = primed()
    assert_refused(engine, lambda: engine.step(bad), match)
    if not (isinstance(bad, np.ndarray) and bad.shape == (1, 2, 6)):  # a valid run of T=1
        assert_refused(engine, lambda: engine.run(bad), ".")
        assert_refused(engine, lambda: engine.time_steps(bad), ".")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_are_refused_and_change_nothing(value: float) -> None:
    engine = primed()
    reference = primed()
    bad = X.copy()
    bad[1, 4] = value
    message = rf"step input: expected finite values, found {'NaN' if value != value else ''}"
    assert_refused(engine, lambda: engine.step(bad), message + ".* at flat index 10")
    # In a run, a bad value at the last timestep refuses the whole run: no step is taken.
    xs = np.stack([X, X, bad])
    assert_refused(engine, lambda: engine.run(xs), r"run inputs: .*at flat index 34")
    assert_refused(engine, lambda: engine.time_steps(xs), r"time_steps inputs: .*flat index 34")
    assert_refused(engine, lambda: engine.step(bad.astype(np.float64)), "expected finite")
    # A run too long to check before its first step checks each step as it
    # comes, and rolls back: the states are still those before the call.
    long = np.stack([X] * 90_000 + [bad])  # over 1M input floats
    assert_refused(engine, lambda: engine.run(long), rf"at flat index {long.size - 2}")
    # The engine carries on exactly like one that never saw the bad inputs.
    np.testing.assert_array_equal(engine.step(X), reference.step(X))


def test_float64_beyond_float32_is_refused_not_poisoning() -> None:
    engine = primed()
    bad = X.astype(np.float64)
    bad[0, 0] = 1e300  # becomes inf in float32
    assert_refused(engine, lambda: engine.step(bad), "found inf at flat index 0")


def test_conversions_give_the_float32_result() -> None:
    expected = primed().step(X)
    wide = np.zeros((2, 12), np.float32)
    wide[:, ::2] = X
    converted = {
        "float64": X.astype(np.float64),
        "float16 of exact values": (np.round(X * 8) / 8).astype(np.float16),
        "list": X.tolist(),
        "tuple": tuple(map(tuple, X.tolist())),
        "fortran order": np.asfortranarray(X),
        "transposed view": np.ascontiguousarray(X.T).T,
        "strided view": wide[:, ::2],
        "reversed view": X[::-1][::-1],
        "read-only": np.frombuffer(X.tobytes(), np.float32).reshape(2, 6),
    }
    assert not converted["strided view"].flags.c_contiguous
    assert not converted["read-only"].flags.writeable
    for name, x in converted.items():
        want = expected if "exact" not in name else primed().step(np.asarray(x, np.float32))
        np.testing.assert_array_equal(primed().step(x), want, err_msg=name)
    ints = np.arange(12).reshape(2, 6) % 3 - 1
    np.testing.assert_array_equal(primed().step(ints), primed().step(ints.astype(np.float32)))
    np.testing.assert_array_equal(primed().step(ints > 0), primed().step((ints > 0) * 1.0))
    # run takes the same conversions.
    xs = np.stack([X, -X, X])
    np.testing.assert_array_equal(primed().run(xs.astype(np.float64)), primed().run(xs))
    np.testing.assert_array_equal(primed().run(xs.transpose(0, 2, 1).copy().transpose(0, 2, 1)),
                                  primed().run(xs))  # fmt: skip


def test_time_steps_times_every_step_and_advances_like_run() -> None:
    """``time_steps`` returns one positive, finite time per step and steps exactly like ``run``."""
    xs = np.random.default_rng(2).normal(size=(40, 2, 6)).astype(np.float32)
    timed, ran = primed(), primed()
    seconds = timed.time_steps(xs)
    ran.run(xs)
    assert seconds.shape == (40,) and seconds.dtype == np.float64
    assert np.all(np.isfinite(seconds)) and np.all(seconds > 0)
    expected = ran.states()
    assert timed.states().keys() == expected.keys()
    for name, state in timed.states().items():
        np.testing.assert_array_equal(state, expected[name], err_msg=name)
    np.testing.assert_array_equal(timed.step(X), ran.step(X))
    # The conversions of run, and the sample form of one stream.
    timed, ran = primed(), primed()
    timed.time_steps(xs.astype(np.float64).tolist())
    ran.run(xs)
    for name, state in timed.states().items():
        np.testing.assert_array_equal(state, expected[name], err_msg=name)
    single, single_ran = primed(streams=1), primed(streams=1)
    assert single.time_steps(xs[:, 0]).shape == (40,)
    single_ran.run(xs[:, 0])
    np.testing.assert_array_equal(single.step(X[0]), single_ran.step(X[0]))
    assert primed().time_steps(np.zeros((0, 2, 6), np.float32)).shape == (0,)


def test_time_steps_refuses_bad_inputs() -> None:
    engine = primed()
    xs = np.stack([X, X])
    assert_refused(engine, lambda: engine.time_steps(X), r"expected an input of shape \[2, 2, 6\]")
    assert_refused(engine, lambda: engine.time_steps(xs[:, :, :5]), r"got \[2, 2, 5\]")
    assert_refused(engine, lambda: engine.time_steps(np.float32(1.0)), "got a scalar")
    assert_refused(engine, lambda: engine.time_steps(None), "got None")
    assert_refused(engine, lambda: engine.time_steps(xs.astype(np.complex64)), "dtype complex64")


def test_single_stream_sample_shape_and_its_errors() -> None:
    engine = primed(streams=1)
    assert engine.step(X[0]).shape == (3,)
    assert_refused(engine, lambda: engine.step(X), r"expected an input of shape \[1, 6\]")


def test_step_writes_into_out() -> None:
    engine, reference = primed(), primed()
    out = np.full((2, 3), 7.0, np.float32)
    assert engine.step(X, out=out) is out
    np.testing.assert_array_equal(out, reference.step(X))
    # Converted inputs and the sample form of one stream take `out` too.
    np.testing.assert_array_equal(engine.step(X.tolist(), out=out), reference.step(X))
    single, single_reference = primed(streams=1), primed(streams=1)
    sample_out = np.empty(3, np.float32)
    single.step(X[0], out=sample_out)
    np.testing.assert_array_equal(sample_out, single_reference.step(X[0]))


@pytest.mark.parametrize(
    ("bad_out", "match"),
    [
        (np.empty((2, 4), np.float32), r"step out: expected shape \[2, 3\], found \[2, 4\]"),
        (np.empty(3, np.float32), r"found \[3\]"),
        (np.empty((2, 3), np.float64), "step out: .*found dtype float64"),
        (np.empty((3, 2), np.float32).T, "step out: expected a C-contiguous array"),
        ([[0.0] * 3] * 2, "step out: expected a float32 numpy array"),
        (np.frombuffer(bytes(24), np.float32).reshape(2, 3), "step out: .*(read|writ)"),
    ],
)
def test_bad_out_is_refused_and_changes_nothing(bad_out: Any, match: str) -> None:
    engine = primed()
    assert_refused(engine, lambda: engine.step(X, out=bad_out), match)


@pytest.mark.parametrize("width", [6, 384])
def test_out_sharing_the_input_is_refused(width: int) -> None:
    """``out`` may not overlap the input, wholly or in part, nor be read-only.

    Width 6 is a light step (the binding keeps the GIL and checks the arrays
    itself), 384 a heavy one (2 x 384 x 384 multiply-adds: the GIL is released
    and numpy's borrows are taken).
    """
    model = nn.Sequential(nn.Linear(width, width), tt.snn.LIB(width))
    engine = tt.runtime.loads(export_bytes(model, torch.zeros(1, width)), streams=2)
    buffer = np.random.default_rng(0).normal(size=4 * width + 1).astype(np.float32)
    x = buffer[: 2 * width].reshape(2, width)
    engine.step(x)  # states that a refused call must keep
    shifted = buffer[width : 3 * width].reshape(2, width)
    for out in (x, shifted):
        assert_refused(engine, lambda o=out: engine.step(x, out=o), "step out: shares memory")
    frozen = np.zeros((2, width), np.float32)
    frozen.flags.writeable = False
    assert_refused(engine, lambda: engine.step(x, out=frozen), "step out: .*(read|writ)")
    apart = buffer[2 * width : 4 * width].reshape(2, width)  # right after x: no overlap
    twin = tt.runtime.loads(export_bytes(model, torch.zeros(1, width)), streams=2)
    twin.step(x)
    np.testing.assert_array_equal(engine.step(x, out=apart), twin.step(x))


def test_native_step_converts_what_it_cannot_read_in_place() -> None:
    """The binding reads float32 C-contiguous arrays of the exact shape in place.

    ``step`` converts anything else through ``runtime._step_input`` (and
    ``Engine.step`` is that native method); ``run`` takes only the exact form.
    Refused inputs leave the states untouched.
    """
    native = _native.Engine.from_bytes(MODEL, 2)
    twin = _native.Engine.from_bytes(MODEL, 2)
    for other in (X.astype(np.float64), np.asfortranarray(X), X.tolist(), X.astype(">f4")):
        np.testing.assert_array_equal(native.step(other), twin.step(X))
    engine = tt.runtime.loads(MODEL, streams=2)
    assert engine.step == engine._native.step  # the native method itself
    before = native.states()
    for bad, match in [
        (None, "expected an array of shape"),
        (X[:, :5].copy(), r"expected an input of shape \[2, 6\], got \[2, 5\]"),
        (np.full((2, 6), np.nan, np.float32), "expected finite values, found NaN"),
        (np.array(["a"] * 12).reshape(2, 6), "expected a real numeric array"),
    ]:
        with pytest.raises(EngineInputError, match=match):
            native.step(bad)
    for name, value in native.states().items():
        np.testing.assert_array_equal(value, before[name])
    for bad, match in [
        (X.astype(np.float64), "expected a float32 numpy array, found dtype float64"),
        (np.asfortranarray(np.ones((2, 6), np.float32)), "expected a C-contiguous array"),
        (X.tolist(), "expected a float32 numpy array, found <class 'list'>"),
        (None, "expected a float32 numpy array"),
        (X[:, :5].copy(), r"expected shape \[1, 2, 6\], found \[1, 2, 5\]"),
        (X.astype(">f4"), "expected a float32 numpy array, found dtype >f4"),
        (np.full((2, 6), np.nan, np.float32), "expected finite values, found NaN"),
    ]:
        with pytest.raises(EngineInputError, match=match):
            native.run(bad[None] if isinstance(bad, np.ndarray) else bad)


def test_other_bad_arguments() -> None:
    engine = primed()
    assert_refused(engine, lambda: engine.reset(2), "stream 2 does not exist")
    assert_refused(engine, lambda: engine.reset(-1), "stream -1 does not exist")
    assert_refused(engine, lambda: engine.load_states({}), "missing from the snapshot")
    states = engine.states()
    name = next(iter(states))
    assert_refused(engine, lambda: engine.load_states({**states, "ghost": states[name]}),
                   "unknown state `ghost`")  # fmt: skip
    assert_refused(engine, lambda: engine.load_states({**states, name: states[name][:1]}),
                   "expected shape")  # fmt: skip
    for streams in (0, -1, 1.5, True, "2", None):
        with pytest.raises(EngineInputError, match="streams must be an integer >= 1"):
            tt.runtime.loads(MODEL, streams=streams)  # type: ignore[arg-type]
    with pytest.raises(EngineInputError, match="streams need"):
        tt.runtime.loads(MODEL, streams=2**40)
    with pytest.raises(EngineInputError, match="at least 1"):
        _native.Engine.from_bytes(MODEL, 0)


def test_run_refuses_outputs_beyond_the_memory_cap() -> None:
    """Outputs can be far larger than inputs: the engine caps them before allocating."""
    wide = export_bytes(nn.Sequential(nn.Linear(1, 8192)), torch.zeros(1, 1))
    engine = tt.runtime.loads(wide)
    steps = (1 << 28) // 8192 + 1
    assert_refused(engine, lambda: engine.run(np.zeros((steps, 1), np.float32)),
                   "run the sequence in chunks")  # fmt: skip
    assert engine.run(np.zeros((4, 1), np.float32)).shape == (4, 8192)


def test_errors_are_one_hierarchy() -> None:
    for cls in (EngineInputError, tt.errors.ModelFileError, tt.errors.ExportError):
        assert issubclass(cls, TraceTorchError)
        assert issubclass(cls, ValueError)
