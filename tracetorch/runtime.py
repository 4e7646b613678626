"""Stream an exported model on the CPU with the Rust engine; needs numpy, not PyTorch.

Example (the export needs PyTorch; everything after it does not):
    >>> import os, tempfile, numpy as np, torch, tracetorch as tt
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> tt.export(torch.nn.Sequential(torch.nn.Linear(4, 3), tt.snn.LI(3)), torch.zeros(1, 4), path)
    >>> engine = tt.runtime.load(path, streams=2)
    >>> engine.input_shape, engine.output_shape
    ([2, 4], [2, 3])
    >>> engine.step(np.zeros(engine.input_shape, np.float32)).shape
    (2, 3)
    >>> engine.run(np.zeros((10, 2, 4), np.float32)).shape
    (10, 2, 3)
    >>> sorted(engine.states())
    ['1.mem']
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any, Optional, Union

import numpy as np

from tracetorch import _native
from tracetorch.errors import EngineInputError

__all__ = ["Engine", "load", "loads", "simd_available"]

_log = logging.getLogger(__name__)


def simd_available() -> list[str]:
    """The instruction sets this CPU runs, scalar first, fastest last.

    An engine uses the fastest unless the environment variable
    ``TRACETORCH_SIMD`` names another (``auto``, ``scalar``, ``avx2``,
    ``avx512``, ``neon``) when it is loaded.

    Example:
        >>> import tracetorch as tt
        >>> tt.runtime.simd_available()[0]
        'scalar'
    """
    return list(_native.simd_available())


class Engine:
    """A loaded model with ``streams`` independent streams of states.

    Inputs are float32 arrays of :attr:`input_shape` (``[streams, *sample_shape]``);
    with one stream the sample shape alone is accepted too, and the output then
    drops the stream axis as well. Anything ``numpy.asarray`` turns into a
    real-valued array (float64 and other float, integer and bool dtypes, nested
    lists, any memory layout or strides) is converted to float32; complex,
    object and string arrays and ``None`` raise :class:`EngineInputError`.
    NaN and infinite inputs (including float64 values beyond the float32
    range) raise :class:`EngineInputError` too. A refused call leaves every
    state exactly as it was.

    One engine may be shared by threads: calls are serialised by a lock taken
    with the GIL released. Engines run in parallel when each thread has its own.
    Engines pickle (weights and states). See ``docs/errors.md``.
    """

    def __init__(self, native: Any) -> None:
        self._native = native
        # step() is the hot call: each engine takes the native method itself,
        # which does all that Engine.step does, saving a Python frame per step.
        self.__dict__["step"] = native.step

    @property
    def input_shape(self) -> list[int]:
        """``[streams, *sample_shape]`` of one timestep's input."""
        return list(self._native.input_shape)

    @property
    def output_shape(self) -> list[int]:
        """``[streams, *sample_shape]`` of one timestep's output."""
        return list(self._native.output_shape)

    @property
    def streams(self) -> int:
        """How many independent streams the engine steps at once."""
        return int(self._native.streams)

    def step(self, x: Any, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Advance every stream by one timestep and return the output.

        ``x`` has shape ``[streams, *sample_shape]``, or ``sample_shape`` when
        there is one stream; the output takes the same form. Arrays that are
        already float32 and C-contiguous go to the engine without a copy.
        ``out``, a writable float32 C-contiguous array of the output's shape,
        receives the result so that a real-time loop allocates nothing.

        >>> engine = tt.runtime.load("model.safetensors")  # doctest: +SKIP
        >>> out = np.empty(engine.output_shape[1:], np.float32)  # doctest: +SKIP
        >>> for sample in sensor:  # doctest: +SKIP
        ...     engine.step(sample, out=out)
        """
        return self._native.step(x, out)

    def run(self, xs: Any) -> np.ndarray:
        """Step through a whole sequence ``[T, *input_shape]`` in one call; returns ``[T, ...]``."""
        array, squeezed = self._sequence(xs, "run")
        out = self._native.run(array)
        return out[:, 0] if squeezed else out

    def time_steps(self, xs: Any) -> np.ndarray:
        """For benchmarks: step through ``xs`` like :meth:`run`, timing every step in Rust.

        ``xs`` is ``[T, *input_shape]`` (``[T, *sample_shape]`` with one
        stream), converted and checked as by :meth:`run`. Returns the seconds
        each step took, float64 ``[T]``, measured around every ``Engine::step``
        of the Rust engine with no Python in between (the GIL is released for
        the whole loop), so the times are the engine's own, without the cost of
        a Python call. The outputs are discarded; the states advance exactly
        as with :meth:`run`. ``tracetorch bench`` uses it for its pure-Rust
        column; to stream, use :meth:`step` or :meth:`run`.

        >>> import numpy as np, torch, tracetorch as tt
        >>> from tracetorch.exporter import export_bytes
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), tt.snn.LIB(3))
        >>> engine = tt.runtime.loads(export_bytes(model, torch.zeros(1, 4)))
        >>> seconds = engine.time_steps(np.ones((1000, 4), np.float32))
        >>> seconds.shape, seconds.dtype
        ((1000,), dtype('float64'))
        >>> print(f"median {np.median(seconds) * 1e6:.2f} us per step")  # doctest: +SKIP
        median 0.06 us per step
        """
        array, _ = self._sequence(xs, "time_steps")
        return self._native._time_steps(array)

    def reset(self, stream: Optional[int] = None) -> None:
        """Zero the states of every stream, or of one ``stream``."""
        if stream is not None and not 0 <= stream < self.streams:
            raise EngineInputError(f"stream {stream} does not exist (streams={self.streams})")
        self._native.reset(stream)

    def states(self) -> dict[str, np.ndarray]:
        """Copies of all states, ``{"<layer path>.<state>": [streams, ...]}``."""
        return dict(self._native.states())

    def load_states(self, states: Mapping[str, Any]) -> None:
        """Restore a :meth:`states` snapshot; all of it is checked before anything changes."""
        converted = {str(k): np.ascontiguousarray(v, dtype=np.float32) for k, v in states.items()}
        self._native.load_states(converted)

    def seed(self, seed: int) -> None:
        """Seed the generator of the stochastic quantizers."""
        self._native.seed(int(seed))

    @property
    def simd(self) -> str:
        """The instruction set the kernels run on: ``scalar``, ``neon``, ``avx2`` or ``avx512``."""
        return str(self._native.simd)

    def set_simd(self, name: str) -> None:
        """Switch the kernels to another instruction set of :func:`simd_available`.

        Results may differ in the last bits (sums are taken in another order).
        Raises :class:`EngineInputError` for a name this CPU does not run.
        """
        self._native.set_simd(name)

    @property
    def threads(self) -> int:
        """Threads that share the heavy layers of a step (linear, conv, large neuron layers).

        Several streams are split by streams, a single stream's linear layers
        by output columns; results never depend on it. Defaults to the
        available cores when there are several streams and to 1 (the calling
        thread alone) for a single stream: between steps the extra threads
        spin for up to a millisecond, so a single stream buys latency with a
        busy core (see :meth:`set_threads`).
        """
        return int(self._native.threads)

    def set_threads(self, threads: int) -> None:
        """Set :attr:`threads`, at most the available cores (results do not depend on it).

        >>> engine = tt.runtime.load("model.safetensors")  # doctest: +SKIP
        >>> engine.set_threads(2)  # one stream's linear layers on two cores  # doctest: +SKIP
        """
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
            raise EngineInputError(f"threads must be an integer >= 1, got {threads!r}")
        # The engine clamps it to the cores; this keeps a huge int convertible.
        self._native.set_threads(min(int(threads), 1 << 16))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (self._native.to_bytes(), self.streams, self.states()))

    def __repr__(self) -> str:
        return (
            f"Engine(input_shape={self.input_shape}, output_shape={self.output_shape}, "
            f"simd={self.simd!r})"
        )

    def _sequence(self, xs: Any, name: str) -> tuple[np.ndarray, bool]:
        """``xs`` as float32 C-contiguous ``[T, *input_shape]`` for ``name``,
        and whether it came without the stream axis."""
        xs = _asarray(xs, f"[T, *{self.input_shape}]")
        if xs.ndim == 0:
            raise EngineInputError(f"{name} expects [T, *{self.input_shape}], got a scalar")
        return _prepared(xs, (xs.shape[0],), self.input_shape)


def _prepared(x: Any, leading: tuple[int, ...], input_shape: list[int]) -> tuple[np.ndarray, bool]:
    """``x`` as float32 C-contiguous ``[*leading, *input_shape]``, and whether
    it came without the stream axis (allowed with one stream)."""
    array = _asarray(x, str([*leading, *input_shape]))
    if array.dtype.kind not in "fiub":
        raise EngineInputError(f"expected a real numeric array, got dtype {array.dtype}")
    expected = (*leading, *input_shape)
    squeezed = False
    if input_shape[0] == 1 and array.shape == (*leading, *input_shape[1:]):
        array = array.reshape(expected)
        squeezed = True
    if array.shape != expected:
        raise EngineInputError(
            f"expected an input of shape {list(expected)}, got {list(array.shape)}"
        )
    with np.errstate(over="ignore"):  # float64 beyond float32 becomes inf: refused natively
        return np.ascontiguousarray(array, dtype=np.float32), squeezed


def _step_input(x: Any, input_shape: list[int]) -> np.ndarray:
    """``x`` converted for the native ``step`` (which calls this for any input
    it cannot read in place): float32 C-contiguous, in the input's form."""
    array, squeezed = _prepared(x, (), input_shape)
    return array[0] if squeezed else array


def _asarray(x: Any, shape: str) -> np.ndarray:
    """``x`` as a numpy array; None, ragged lists and odd objects raise EngineInputError."""
    if x is None:
        raise EngineInputError(f"expected an array of shape {shape}, got None")
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as error:
        raise EngineInputError(
            f"expected a numeric array of shape {shape}, got {type(x).__name__}: {error}"
        ) from error


def _restore(data: bytes, streams: int, states: dict[str, np.ndarray]) -> Engine:
    engine = loads(data, streams=streams)
    engine.load_states(states)
    return engine


def _streams(streams: Any) -> int:
    if isinstance(streams, bool) or not isinstance(streams, (int, np.integer)) or streams < 1:
        raise EngineInputError(f"streams must be an integer >= 1, got {streams!r}")
    return int(streams)


def load(path: Union[str, os.PathLike[str]], streams: int = 1) -> Engine:
    """Load a model file written by :func:`tracetorch.export`.

    Raises:
        ModelFileError: the file cannot be read, is not a valid model file or
            is too large (every check is made before anything is allocated).
        EngineInputError: ``streams`` is not a positive integer or too large.
    """
    engine = Engine(_native.Engine(os.fspath(path), _streams(streams)))
    _log.info("loaded %s: %s, %s kernels", os.fspath(path), engine, engine.simd)
    return engine


def loads(data: bytes, streams: int = 1) -> Engine:
    """Load a model from the bytes of a model file (same errors as :func:`load`)."""
    engine = Engine(_native.Engine.from_bytes(bytes(data), _streams(streams)))
    _log.info("loaded %d bytes: %s, %s kernels", len(data), engine, engine.simd)
    return engine
