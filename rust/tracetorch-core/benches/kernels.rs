//! Criterion benches of the engine's kernels on every instruction set this
//! CPU runs, side by side:
//!
//! ```text
//! cargo bench -p tracetorch-core --features bench
//! ```
//!
//! Group names read `kernel/shape/isa`. Whole-model latency against PyTorch
//! and ONNX Runtime is `benchmarks/bench_streaming.py`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tracetorch_core::bench::{ConvCase, LinearCase, NeuronCase};
use tracetorch_core::Isa;

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

fn linear(c: &mut Criterion) {
    for isa in Isa::available() {
        for (inp, out) in [(128, 128), (784, 128), (1024, 1024)] {
            let mut case = LinearCase::new(isa, inp, out, 1, None).expect("available");
            c.bench_function(&format!("linear/{inp}x{out}/{isa}"), |b| {
                b.iter(|| black_box(case.run()[0]))
            });
        }
        let mut case = LinearCase::new(isa, 784, 128, 256, None).expect("available");
        c.bench_function(&format!("linear/784x128x256streams/{isa}"), |b| {
            b.iter(|| black_box(case.run()[0]))
        });
    }
}

fn event_driven(c: &mut Criterion) {
    for isa in Isa::available() {
        for activity in [0.05f32, 0.10, 0.50] {
            let mut case = LinearCase::new(isa, 1024, 1024, 1, Some(activity)).expect("available");
            let percent = (activity * 100.0).round();
            c.bench_function(&format!("events/1024x1024@{percent}%/{isa}"), |b| {
                b.iter(|| black_box(case.run()[0]))
            });
        }
    }
}

fn conv(c: &mut Criterion) {
    for isa in Isa::available() {
        let mut case = ConvCase::new(isa, 3, 16, 10, 1).expect("available");
        c.bench_function(&format!("conv2d/3to16k3on10x10/{isa}"), |b| {
            b.iter(|| black_box(case.run()[0]))
        });
    }
}

fn neurons(c: &mut Criterion) {
    for isa in Isa::available() {
        for streams in [1, 256] {
            let mut case = NeuronCase::new(isa, 1024, streams).expect("available");
            c.bench_function(&format!("neurons/LIB1024x{streams}streams/{isa}"), |b| {
                b.iter(|| black_box(case.run()[0]))
            });
        }
    }
}

criterion_group! {
    name = kernels;
    config = config();
    targets = linear, event_driven, conv, neurons
}
criterion_main!(kernels);
