"""The ``tracetorch`` command (also ``python -m tracetorch``).

Subcommands:

- ``demo``: train an SNN, export it, stream it on the engine, compare (see :mod:`tracetorch.demo`).
- ``export MODULE:FACTORY OUT``: build a model from Python code (optionally load a
  ``state_dict``) and export it.
- ``run MODEL INPUT``: stream a CSV or ``.npy`` sequence through the engine.
- ``inspect MODEL``: print the graph, shapes and parameter counts of a model file.
- ``bench``: the speed tables, PyTorch, ONNX Runtime and the engine on five
  models (see :mod:`tracetorch.benchmark`; needs PyTorch).
- ``bench MODEL``: per-step latency of the engine on a model file.

``run``, ``inspect`` and ``bench MODEL`` need no PyTorch.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np


def _demo(args: argparse.Namespace) -> int:
    from tracetorch import demo

    return demo.run(args.dataset, args.epochs, args.out, figure=not args.no_figure)


def _export(args: argparse.Namespace) -> int:
    import torch

    import tracetorch as tt

    module_name, _, factory_name = args.factory.partition(":")
    if not factory_name:
        raise SystemExit("factory must look like package.module:callable")
    sys.path.insert(0, str(Path.cwd()))
    factory = getattr(importlib.import_module(module_name), factory_name)
    model = factory()
    if args.state_dict is not None:
        model.load_state_dict(torch.load(args.state_dict, map_location="cpu", weights_only=True))
    shape = [int(v) for v in args.example_shape.split(",")]
    tt.export(model, torch.zeros(shape), args.out)
    print(f"exported {args.out}")
    return 0


def _read_sequence(path: Path, sample_shape: list[int]) -> np.ndarray:
    if path.suffix == ".npy":
        data = np.load(path)
    else:
        data = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
    return data.reshape(data.shape[0], *sample_shape)


def _run(args: argparse.Namespace) -> int:
    import tracetorch.runtime as runtime

    engine = runtime.load(args.model)
    outputs = engine.run(_read_sequence(args.input, engine.input_shape[1:]))
    if args.out is not None and args.out.suffix == ".npy":
        np.save(args.out, outputs)
    else:
        rows = outputs.reshape(outputs.shape[0], -1)
        target = sys.stdout if args.out is None else args.out.open("w")
        np.savetxt(target, rows, delimiter=",", fmt="%.9g")
        if args.out is not None:
            target.close()
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from safetensors import safe_open

    with safe_open(str(args.model), framework="numpy") as handle:
        metadata = handle.metadata() or {}
        if "tracetorch" not in metadata:
            raise SystemExit(f"{args.model}: not a traceTorch model file (no graph metadata)")
        graph = json.loads(metadata["tracetorch"])
        sizes = {key: int(np.prod(handle.get_slice(key).get_shape())) for key in handle.keys()}  # noqa: SIM118
    print(f"{args.model}: format {graph['format']} v{graph['version']}, "
          f"input {graph['input_shape']}, output '{graph['output']}'")  # fmt: skip
    print(f"{'node':<20} {'op':<15} {'inputs':<22} {'shape':<16} {'params':>8}  details")
    total = 0
    for node in graph["nodes"]:
        count = sum(sizes[key] for key in node["tensors"].values())
        total += count
        attrs = node.get("attrs", {})
        if node["op"] == "neuron":
            spec = attrs["spec"]
            flags = [k for k in ("dual", "synaptic", "recurrent") if spec[k]]
            details = f"{spec['output']} {'+'.join(flags)} states={attrs['states']}"
        else:
            details = ", ".join(f"{k}={v}" for k, v in attrs.items())
        print(f"{node['name']:<20} {node['op']:<15} {','.join(node['inputs']):<22} "
              f"{node['shape']!s:<16} {count:>8}  {details}")  # fmt: skip
    print(f"{len(graph['nodes'])} nodes, {total} parameters")
    return 0


def _bench(args: argparse.Namespace) -> int:
    if args.model is None:
        from tracetorch import benchmark

        if args.streams is not None:
            raise SystemExit("tracetorch bench: --streams applies to a model file")
        steps = benchmark.STEPS if args.steps is None else args.steps
        names = benchmark.CHOICES if args.models is None else args.models
        return benchmark.table(steps, names, onnx=not args.no_onnx)
    if args.models is not None or args.no_onnx:
        raise SystemExit("tracetorch bench: --models and --no-onnx apply to the table, "
                         "not to a model file")  # fmt: skip
    return _bench_file(args.model, 10000 if args.steps is None else args.steps,
                       1 if args.streams is None else args.streams)  # fmt: skip


def _bench_file(model: Path, steps: int, streams: int) -> int:
    import tracetorch.runtime as runtime
    from tracetorch.benchmark import summary, timed

    engine = runtime.load(model, streams=streams)
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(steps, *engine.input_shape)).astype(np.float32)
    for x in xs[:100]:  # warm-up
        engine.step(x)
    engine.reset()
    stepped = summary(timed(engine.step, xs))
    engine.reset()
    start = time.perf_counter()
    engine.run(xs)
    per_step_run = (time.perf_counter() - start) / steps
    engine.reset()
    rust = summary(engine.time_steps(xs))
    print(f"{model}: streams={streams}, {steps} steps, {engine.simd} kernels")
    print(f"step() from Python: median {stepped[0]:.2f} us, p99 {stepped[1]:.2f} us")
    print(f"run(), one call:    {per_step_run * 1e6:.2f} us per step")
    print(f"Rust loop:          median {rust[0]:.2f} us, p99 {rust[1]:.2f} us")
    return 0


def parser() -> argparse.ArgumentParser:
    """The argument parser of the ``tracetorch`` command."""
    from tracetorch import benchmark
    from tracetorch.demo import DATASETS

    top = argparse.ArgumentParser(prog="tracetorch", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="train, export, stream and compare")
    demo.add_argument("--dataset", choices=DATASETS, default="digits")
    demo.add_argument("--epochs", type=int, default=30)
    demo.add_argument("--out", type=Path, default=Path("out"), help="output folder")
    demo.add_argument("--no-figure", action="store_true", help="skip the PNG figure")
    demo.set_defaults(handler=_demo)

    export = commands.add_parser("export", help="export a model built by Python code")
    export.add_argument("factory", help="package.module:callable returning the model")
    export.add_argument("out", type=Path)
    export.add_argument("--example-shape", required=True, help="one timestep, e.g. 1,784")
    export.add_argument("--state-dict", type=Path, help="weights to load (torch.save file)")
    export.set_defaults(handler=_export)

    run = commands.add_parser("run", help="stream a CSV or .npy sequence through a model")
    run.add_argument("model", type=Path)
    run.add_argument("input", type=Path, help="[T, features] CSV, or .npy [T, *sample]")
    run.add_argument("--out", type=Path, help=".csv or .npy (default: CSV on stdout)")
    run.set_defaults(handler=_run)

    inspect = commands.add_parser("inspect", help="print a model file's graph")
    inspect.add_argument("model", type=Path)
    inspect.set_defaults(handler=_inspect)

    bench = commands.add_parser(
        "bench", help="the speed tables (needs PyTorch), or engine latency on a model file"
    )
    bench.add_argument(
        "model",
        type=Path,
        nargs="?",
        help="a model file to time alone (no PyTorch needed); without it, "
        "the full comparison table",
    )
    bench.add_argument(
        "--steps",
        type=benchmark.positive,
        help=f"timesteps (default: {benchmark.STEPS} for the table, the Rust "
        f"loop at least {benchmark.RUST_STEPS}; 10000 for a model file)",
    )
    bench.add_argument(
        "--streams", type=benchmark.positive, help="streams, for a model file (default 1)"
    )
    bench.add_argument(
        "--models",
        type=benchmark.parse_models,
        help=f"table only: a comma-separated subset of "
        f"{','.join(benchmark.CHOICES)} (default: all)",
    )
    bench.add_argument(
        "--no-onnx", action="store_true", help="table only: skip the ONNX Runtime columns"
    )
    bench.set_defaults(handler=_bench)
    return top


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of the ``tracetorch`` command."""
    args = parser().parse_args(argv)
    handler: Any = args.handler
    return int(handler(args))


if __name__ == "__main__":
    sys.exit(main())
