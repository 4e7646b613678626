//! What the fuzz target does with each input, shared with the seed replay test
//! (`rust/tracetorch-core/tests/fuzz_seeds.rs`) so CI runs exactly the same body.

use tracetorch_core::{Engine, StateData};

/// Loads `data`; if it loads, streams a few steps and checks that a refused
/// (non-finite) step leaves the states alone and a snapshot loads back.
/// Returns whether the bytes loaded. Any panic is a finding.
pub fn exercise(data: &[u8]) -> bool {
    let Ok(mut engine) = Engine::new(data, 2) else {
        return false;
    };
    let mut input = vec![0.5f32; engine.input_len()];
    let mut output = vec![0.0f32; engine.output_len()];
    for _ in 0..3 {
        engine.step(&input, &mut output).expect("lengths are right");
    }
    let before = engine.snapshot();
    input[0] = f32::NAN;
    assert!(engine.step(&input, &mut output).is_err());
    assert_eq!(
        format!("{:?}", engine.snapshot()),
        format!("{before:?}"),
        "a refused step changed the states"
    );
    let views: Vec<_> = before.iter().map(StateData::view).collect();
    engine.load_states(&views).expect("a snapshot loads back");
    engine.reset_all();
    true
}
