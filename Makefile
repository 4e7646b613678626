# traceTorch developer commands. Each target installs what it needs first.
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: help install demo test test-rust test-neon test-python lint bench

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install:  ## build the Rust engine and install tracetorch with its test dependencies (editable)
	$(PIP) install --upgrade pip
	$(PIP) install -e '.[test]'

demo: install  ## the main job: train an SNN, export it, stream it on the Rust engine, compare
	$(PYTHON) -m tracetorch demo

test: install test-rust test-neon test-python lint  ## every test: Rust crates (x86-64 and aarch64), Python suite, lint

test-rust:  ## Rust unit and integration tests
	cargo test --workspace --all-features

# The NEON kernels only run on aarch64: the core's tests are cross-compiled
# with Debian's cross linker and run under qemu's user-mode emulator. Set for
# this target only: a cargo config file would also apply on aarch64 hosts.
AARCH64 := aarch64-unknown-linux-gnu
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

test-neon:  ## the engine core's tests on aarch64 (NEON against scalar), under qemu; installs the cross tools
	@command -v qemu-aarch64 >/dev/null && command -v aarch64-linux-gnu-gcc >/dev/null || \
		{ $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user; }
	rustup target add $(AARCH64)
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu" \
		cargo test -p tracetorch-core --all-features --target $(AARCH64)

test-python:  ## the Python suite (cross-checks against PyTorch and the reference releases)
	$(PYTHON) -m pytest -q

lint:  ## formatting and lint, Rust and Python
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --workspace --all-targets --all-features -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features
	$(PYTHON) -m ruff check tracetorch python_tests benchmarks examples docs tools
	$(PYTHON) -m ruff format --check tracetorch python_tests benchmarks examples docs tools
	$(PYTHON) -m mypy
	$(PYTHON) -m mypy.stubtest tracetorch._native

bench:  ## benchmark tables (not part of the tests); installs the test and bench extras
	$(PIP) install --upgrade pip
	$(PIP) install -e '.[test,bench]'
	$(PYTHON) benchmarks/bench_training.py
	$(PYTHON) benchmarks/bench_streaming.py
	cargo bench -p tracetorch-core --features bench
