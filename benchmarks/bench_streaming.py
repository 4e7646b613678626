"""Streaming speed: PyTorch, ONNX Runtime and the Rust engine, one table from one run.

The benchmark lives in the package (:mod:`tracetorch.benchmark`, described
there) so that ``tracetorch bench`` prints the same tables from an installed
wheel; this script runs it from a checkout.

Run: python benchmarks/bench_streaming.py [--steps N] [--models mlp,sensor,...] [--no-onnx]
"""

from __future__ import annotations

import sys

from tracetorch.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
