"""Threads: engines release the GIL while computing; one engine shared by threads is serialised.

Real threads throughout. Timing figures are printed (``pytest -s``); the only
timing-based assertion is ordering-based (the main thread runs while another
thread is inside the engine), not a speed threshold.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

import tracetorch as tt
from tracetorch.exporter import export_bytes

torch.manual_seed(0)
SMALL = export_bytes(
    nn.Sequential(nn.Linear(8, 6), tt.snn.LIF(6), tt.snn.LIB(6)), torch.zeros(1, 8)
)
BIG = export_bytes(
    nn.Sequential(nn.Linear(256, 256), tt.snn.LIF(256), nn.Linear(256, 64), tt.snn.LIB(64)),
    torch.zeros(1, 256),
)


def in_threads(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``n`` threads started together; re-raise the first error."""
    results: list[Any] = [None] * n
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def target(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as error:  # re-raised below, PanicException included
            errors.append(error)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_step_releases_the_gil() -> None:
    """The main thread runs while another thread is inside ``run``.

    With a long switch interval no thread is forced to drop the GIL, so the
    main thread can only wake before the worker's call returns if the call
    released the GIL itself.
    """
    engine = tt.runtime.loads(BIG)
    xs = np.random.default_rng(0).normal(size=(1, 1, 256)).astype(np.float32)
    started = time.perf_counter()
    engine.run(xs.repeat(200, axis=0))
    steps = max(200, int(200 * 0.3 / max(time.perf_counter() - started, 1e-6)))  # ~0.3 s
    xs = xs.repeat(steps, axis=0)
    entered = threading.Event()
    finished: list[float] = []

    def worker() -> None:
        entered.set()
        engine.run(xs)
        finished.append(time.perf_counter())

    interval = sys.getswitchinterval()
    sys.setswitchinterval(30.0)
    try:
        thread = threading.Thread(target=worker)
        thread.start()
        entered.wait()
        woke = time.perf_counter()
        thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert woke < finished[0], "the main thread only ran after the engine call returned"


def test_one_engine_per_thread_matches_and_scales() -> None:
    rng = np.random.default_rng(1)
    xs = rng.normal(size=(3000, 1, 256)).astype(np.float32)
    expected = tt.runtime.loads(BIG).run(xs)
    engines = [tt.runtime.loads(BIG) for _ in range(2)]

    started = time.perf_counter()
    for engine in engines:
        engine.run(xs)
    sequential = time.perf_counter() - started
    for engine in engines:
        engine.reset()

    started = time.perf_counter()
    outputs = in_threads(2, lambda i: engines[i].run(xs))
    parallel = time.perf_counter() - started
    for out in outputs:
        np.testing.assert_array_equal(out, expected)
    print(f"\n2 engines x 3000 steps: sequential {sequential * 1e3:.1f} ms, "
          f"2 threads {parallel * 1e3:.1f} ms, speed-up {sequential / parallel:.2f}x")  # fmt: skip
    # Very loose sanity check only (the machine may be busy): no serialisation blow-up.
    assert parallel < 3 * sequential


def test_shared_engine_is_serialised_never_corrupted() -> None:
    """Threads stepping one engine with the same input: any order gives the same sequence.

    Every step's output must be one of the serial outputs, each exactly once,
    and the final states those of the serial engine after all the steps.
    """
    threads, per_thread = 4, 300
    x = np.linspace(-1.0, 2.0, 8, dtype=np.float32)
    serial = tt.runtime.loads(SMALL)
    expected = [serial.step(x).tobytes() for _ in range(threads * per_thread)]
    shared = tt.runtime.loads(SMALL)

    def work(i: int) -> list[bytes]:
        outs = []
        for k in range(per_thread):
            if i == 0 and k % 10 == 0:
                shared.states()  # readers interleave with the writers
            if i == 1 and k % 50 == 0:
                outs.extend(y.tobytes() for y in shared.run(np.stack([x, x])))
                continue
            outs.append(shared.step(x).tobytes())
        return outs

    results = in_threads(threads, work)
    got = sorted(b for r in results for b in r)
    extra = len(got) - len(expected)  # thread 1's runs of two add one step each
    for _ in range(extra):
        expected.append(serial.step(x).tobytes())
    assert got == sorted(expected)
    final = shared.states()
    for name, value in serial.states().items():
        np.testing.assert_array_equal(final[name], value, err_msg=name)


def test_shared_engine_errors_in_threads_change_nothing() -> None:
    """Bad calls from many threads at once raise EngineInputError, never anything else."""
    shared = tt.runtime.loads(SMALL)
    shared.step(np.ones(8, np.float32))
    before = shared.states()
    bad = np.full(8, np.nan, np.float32)

    def work(_: int) -> int:
        refused = 0
        for _ in range(200):
            try:
                shared.step(bad)
            except tt.errors.EngineInputError:
                refused += 1
        return refused

    assert in_threads(4, work) == [200] * 4
    after = shared.states()
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])


def test_engine_with_worker_threads_survives_fork() -> None:
    """A forked child has none of its parent's engine threads: its steps run on
    the calling thread alone, with the same results, and dropping the engine
    there returns (joining threads of the parent would wait forever)."""
    engine = tt.runtime.loads(BIG, streams=4)
    engine.set_threads(2)
    xs = np.random.default_rng(3).normal(size=(20, 4, 256)).astype(np.float32)
    expected = engine.run(xs)
    engine.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # the child: report through the exit code, never return into pytest
        code = 3
        try:
            same = np.array_equal(engine.run(xs), expected)
            del engine
            gc.collect()
            code = 0 if same else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise AssertionError("the forked child hung")
    assert os.waitstatus_to_exitcode(done[1]) == 0
    np.testing.assert_array_equal(engine.run(xs), expected)  # the parent's threads still work
