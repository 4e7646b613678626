//! traceTorch core: a pure-Rust engine that streams spiking neural networks
//! exported from PyTorch, one timestep at a time.
//!
//! A model file (safetensors + a `tracetorch` JSON graph, see
//! `docs/format.md`) is validated into an immutable [`Plan`]; an [`Engine`]
//! owns the per-stream buffers and neuron states for a plan and advances all
//! streams with [`Engine::step`], which never allocates.
//!
//! ```no_run
//! use tracetorch_core::Engine;
//!
//! let bytes = std::fs::read("model.safetensors")?;
//! let mut engine = Engine::new(&bytes, 1)?;
//! let input = vec![0.0f32; engine.input_len()];
//! let mut output = vec![0.0f32; engine.output_len()];
//! for _ in 0..100 {
//!     engine.step(&input, &mut output)?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! This crate knows nothing of Python; the `tracetorch-py` crate binds it.

#![warn(missing_docs)]

#[cfg(feature = "bench")]
#[doc(hidden)]
pub mod bench;
mod engine;
mod error;
mod floats;
mod kernels;
mod neuron;
mod plan;
mod rng;
mod simd;
mod team;
#[cfg(test)]
mod testutil;

pub use engine::{Engine, StateData, StateView, DEFAULT_SEED};
pub use error::{Error, ErrorKind, Result};
pub use neuron::{BiasSite, Fire, NeuronSpec, OutputKind, Quant, Spike};
pub use plan::{Plan, FORMAT_VERSION, MAX_FLOATS, MAX_HEADER_BYTES, MAX_WORK};
pub use simd::{Isa, SIMD_ENV};

/// Version of the engine, shared with the Python package.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_semver() {
        assert_eq!(VERSION.split('.').count(), 3);
    }
}
