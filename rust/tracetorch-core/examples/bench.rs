//! The pure-Rust streaming loop, timed: steps a model on random inputs and
//! prints `median_us p99_us steps_per_second isa` for one step of all streams.
//!
//! ```text
//! cargo run --release -p tracetorch-core --example bench -- model.safetensors [steps] [streams] [activity]
//! ```
//!
//! `activity` (0..1, default: dense normal inputs) makes the inputs spikes:
//! each input is 1 with that probability, else 0.

use std::process::ExitCode;
use std::time::Instant;

use tracetorch_core::Engine;

/// xorshift64*: inputs only need to be cheap and reproducible.
fn next(state: &mut u64) -> f32 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: bench MODEL.safetensors [steps] [streams] [activity]")?;
    let steps: usize = args.next().map_or(Ok(5000), |s| s.parse())?;
    let streams: usize = args.next().map_or(Ok(1), |s| s.parse())?;
    let activity: Option<f32> = args.next().map(|s| s.parse()).transpose()?;
    let mut engine = Engine::from_path(&path, streams)?;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    // A pool of distinct inputs, cycled, so that the timing loop only steps.
    let pool = 64;
    let inputs: Vec<f32> = (0..engine.input_len() * pool)
        .map(|_| {
            let u = next(&mut seed);
            match activity {
                Some(p) => f32::from(u < p),
                None => 4.0 * (u - 0.5) + 2.0 * (next(&mut seed) - 0.5),
            }
        })
        .collect();
    let mut output = vec![0.0f32; engine.output_len()];
    let n = engine.input_len();
    for i in 0..steps.min(500) {
        let j = i % pool;
        engine.step(&inputs[j * n..(j + 1) * n], &mut output)?;
    }
    let mut times = Vec::with_capacity(steps);
    let all = Instant::now();
    for i in 0..steps {
        let j = i % pool;
        let start = Instant::now();
        engine.step(&inputs[j * n..(j + 1) * n], &mut output)?;
        times.push(start.elapsed().as_secs_f64());
    }
    let total = all.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2] * 1e6;
    let p99 = times[(times.len() - 1) * 99 / 100] * 1e6;
    println!(
        "{median:.3} {p99:.3} {:.1} {}",
        steps as f64 / total,
        engine.isa()
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
