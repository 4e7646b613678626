//! PyTorch's outputs, reproduced on every instruction set this CPU runs.
//!
//! `golden.safetensors` (written by `python_tests/test_golden.py`, which also
//! checks it still holds what PyTorch computes) has, per case, an exported
//! model, inputs `[T, streams, ...]` and PyTorch's outputs: every layer of
//! both families and three whole models. Here no Python is needed, so the
//! same comparison runs where PyTorch does not: on aarch64 under qemu
//! (`make test-neon`), the NEON kernels end to end.

use std::collections::BTreeSet;

use safetensors::SafeTensors;
use tracetorch_core::{Engine, Isa};

/// As in the Python cross-checks: relative and absolute.
const TOLERANCE: f32 = 1e-5;

fn floats(tensors: &SafeTensors<'_>, name: &str) -> (Vec<usize>, Vec<f32>) {
    let view = tensors.tensor(name).expect("the case has the tensor");
    assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
    let data = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (view.shape().to_vec(), data)
}

#[test]
fn every_golden_case_on_every_instruction_set() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden.safetensors"
    ))
    .expect("tests/golden.safetensors is readable");
    let tensors = SafeTensors::deserialize(&bytes).expect("a safetensors file");
    let cases: BTreeSet<&str> = tensors
        .names()
        .into_iter()
        .map(|n| n.split('/').next().expect("CASE/key"))
        .collect();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let isas = Isa::available();
    assert!(isas.len() >= 2, "only {isas:?}: no vector kernels checked");
    for case in &cases {
        let model = tensors.tensor(&format!("{case}/model")).unwrap();
        let (shape, inputs) = floats(&tensors, &format!("{case}/inputs"));
        let (_, expected) = floats(&tensors, &format!("{case}/outputs"));
        let (steps, streams) = (shape[0], shape[1]);
        let mut engine = Engine::new(model.data(), streams).unwrap();
        assert_eq!(inputs.len(), steps * engine.input_len(), "{case}");
        assert_eq!(expected.len(), steps * engine.output_len(), "{case}");
        for &isa in &isas {
            engine.set_isa(isa).unwrap();
            engine.reset_all();
            let mut got = vec![f32::NAN; expected.len()];
            engine.run(&inputs, &mut got, steps).unwrap();
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert!(
                    (g - e).abs() <= TOLERANCE + TOLERANCE * e.abs(),
                    "{case} on {isa}: output {i} is {g}, PyTorch gave {e}"
                );
            }
        }
    }
}
