//! Streams a model over CSV rows: one row per timestep on stdin (the
//! `prod(input_shape)` input values of one stream), one output row per
//! timestep on stdout.
//!
//! ```text
//! cargo run --release -p tracetorch-core --example stream -- model.safetensors < input.csv
//! ```

use std::io::{self, BufRead, BufWriter, Write};
use std::process::ExitCode;

use tracetorch_core::Engine;

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: stream MODEL.safetensors < input.csv")?;
    let mut engine = Engine::from_path(&path, 1)?;
    eprintln!(
        "{path}: input shape {:?}, output shape {:?}",
        engine.input_shape(),
        engine.output_shape()
    );
    let mut input = vec![0.0f32; engine.input_len()];
    let mut output = vec![0.0f32; engine.output_len()];
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for (lineno, line) in io::stdin().lock().lines().enumerate() {
        let line = line?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut n = 0;
        for field in line.split(',') {
            let v: f32 = field
                .trim()
                .parse()
                .map_err(|e| format!("line {}: {field:?}: {e}", lineno + 1))?;
            if let Some(slot) = input.get_mut(n) {
                *slot = v;
            }
            n += 1;
        }
        if n != input.len() {
            return Err(format!(
                "line {}: expected {} values, found {n}",
                lineno + 1,
                input.len()
            )
            .into());
        }
        engine.step(&input, &mut output)?;
        for (i, v) in output.iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            write!(out, "{v}")?;
        }
        out.write_all(b"\n")?;
    }
    out.flush()?;
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
