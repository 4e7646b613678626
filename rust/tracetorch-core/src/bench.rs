//! Entry points for the criterion benches of the kernels (`--features bench`).
//!
//! Each case owns its inputs, weights and outputs, laid out as the engine lays
//! them out at load, and runs one kernel on a chosen instruction set. Not a
//! stable API: it exists so that `benches/kernels.rs` times the very code the
//! engine runs, without a model file around it.

use crate::floats::Floats;
use crate::kernels::{self, DirectLayout, Window};
use crate::neuron::{neuron_kernel, BiasSite, Fire, NeuronLayer, NeuronSpec, OutputKind, Quant};
use crate::neuron::{Spike, BETA, BIAS, NPARAM, NSLOT, POS_THRESHOLD};
use crate::plan::linear_weights;
use crate::rng::Rng;
use crate::simd::{Isa, Kernels};

/// Reproducible values in [-1, 1).
fn values(n: usize, seed: u64) -> Floats {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| 2.0 * rng.uniform() - 1.0).collect()
}

/// A linear layer `inp -> out` over `streams` rows.
pub struct LinearCase {
    kernels: Kernels,
    x: Floats,
    y: Floats,
    weight_t: Floats,
    bias: Floats,
    inp: usize,
    out: usize,
    event_limit: usize,
    active: Vec<u32>,
}

impl LinearCase {
    /// Dense inputs when `activity` is `None`, else spikes (1.0 with that
    /// probability, else 0.0) on the event-driven path. `None` when this CPU
    /// does not run `isa`.
    pub fn new(
        isa: Isa,
        inp: usize,
        out: usize,
        streams: usize,
        activity: Option<f32>,
    ) -> Option<Self> {
        let mut x = values(inp * streams, 1);
        if let Some(p) = activity {
            x.iter_mut()
                .for_each(|v| *v = f32::from((*v + 1.0) / 2.0 < p));
        }
        Some(LinearCase {
            kernels: Kernels::new(isa)?,
            x,
            y: Floats::zeros(out * streams),
            weight_t: linear_weights(&values(inp * out, 2), out, inp),
            bias: values(out, 3),
            inp,
            out,
            event_limit: activity.map_or(0, |_| kernels::event_limit(inp, out)),
            active: vec![0; inp + kernels::ACTIVE_SLACK],
        })
    }

    /// One step of the layer.
    pub fn run(&mut self) -> &[f32] {
        kernels::linear(
            &self.kernels,
            &self.x,
            &mut self.y,
            &self.weight_t,
            Some(&self.bias),
            self.inp,
            self.out,
            0..self.out,
            self.event_limit,
            &mut self.active,
        );
        &self.y
    }
}

/// A 3x3 convolution, stride 1, no padding, over `streams` samples.
pub struct ConvCase {
    kernels: Kernels,
    window: Window,
    layout: DirectLayout,
    out_channels: usize,
    x: Floats,
    y: Floats,
    weight: Floats,
    bias: Floats,
    col: Floats,
}

impl ConvCase {
    /// `channels -> out_channels` on `side x side` inputs.
    pub fn new(
        isa: Isa,
        channels: usize,
        out_channels: usize,
        side: usize,
        streams: usize,
    ) -> Option<Self> {
        let o = side.checked_sub(2)?;
        let window = Window {
            c: channels,
            h: side,
            w: side,
            kh: 3,
            kw: 3,
            stride: (1, 1),
            pad: (0, 0),
            dil: (1, 1),
            oh: o,
            ow: o,
        };
        let weight = values(out_channels * channels * 9, 5);
        Some(ConvCase {
            kernels: Kernels::new(isa)?,
            layout: window.layout(1, &weight, out_channels),
            window,
            out_channels,
            x: values(channels * side * side * streams, 4),
            y: Floats::zeros(out_channels * o * o * streams),
            weight,
            bias: values(out_channels, 6),
            col: Floats::zeros(window.scratch_floats(1)?),
        })
    }

    /// One step of the layer.
    pub fn run(&mut self) -> &[f32] {
        kernels::conv2d(
            &self.kernels,
            &self.x,
            &mut self.y,
            &self.weight,
            Some(&self.bias),
            &self.window,
            &self.layout,
            self.out_channels,
            1,
            &mut self.col,
        );
        &self.y
    }
}

/// A layer of `LIB` neurons (leaky membrane, spike bias, binary output of
/// `round(sigmoid(4u))`) over `streams` rows.
pub struct NeuronCase {
    kernels: Kernels,
    layer: NeuronLayer,
    rng: Rng,
    x: Floats,
    out: Floats,
    states: [Floats; NSLOT],
}

impl NeuronCase {
    /// `neurons` neurons per stream.
    pub fn new(isa: Isa, neurons: usize, streams: usize) -> Option<Self> {
        let spec = NeuronSpec {
            dual: false,
            synaptic: false,
            recurrent: false,
            syn_ema: false,
            rec_ema: false,
            mem_ema: false,
            bias: BiasSite::Spike,
            output: OutputKind::Binary,
            scaled: false,
            neg_sees_pos_reset: false,
        };
        let mut row = [0.0; NPARAM];
        row[BETA] = 0.9;
        row[POS_THRESHOLD] = 1.0;
        row[BIAS] = 0.1;
        let mut states: [Floats; NSLOT] = Default::default();
        for (_, slot) in spec.states() {
            states[slot] = Floats::zeros(neurons * streams);
        }
        let fire = Fire {
            spike: Spike::Sigmoid4x,
            quant: Quant::Round(1.0),
        };
        let layer = NeuronLayer::new(spec, fire, vec![row; neurons], 1);
        Some(NeuronCase {
            kernels: Kernels::new(isa)?,
            layer,
            rng: Rng::new(7),
            x: values(neurons * streams, 8),
            out: Floats::zeros(neurons * streams),
            states,
        })
    }

    /// One step of the layer.
    pub fn run(&mut self) -> &[f32] {
        let states = self.states.each_mut().map(|s| &mut s[..]);
        neuron_kernel(
            &self.kernels,
            &self.layer,
            &mut self.rng,
            &self.x,
            &mut self.out,
            states,
        );
        &self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cases compute what they claim, on every instruction set: a bench
    /// of a kernel that does nothing would time nothing.
    #[test]
    fn cases_compute_their_layers() {
        for isa in Isa::available() {
            let (inp, out, streams) = (37, 21, 3);
            let mut dense = LinearCase::new(isa, inp, out, streams, None).unwrap();
            let w = values(inp * out, 2);
            let (x, b) = (dense.x.clone(), dense.bias.clone());
            let y = dense.run().to_vec();
            for s in 0..streams {
                for o in 0..out {
                    let want: f32 = b[o]
                        + (0..inp)
                            .map(|i| w[o * inp + i] * x[s * inp + i])
                            .sum::<f32>();
                    assert!((y[s * out + o] - want).abs() < 1e-4, "{isa} {s} {o}");
                }
            }
            let mut spikes = LinearCase::new(isa, 1024, 8, 1, Some(0.1)).unwrap();
            let active = spikes.x.iter().filter(|v| **v == 1.0).count();
            assert!((50..160).contains(&active), "{active} active of 1024");
            assert!(spikes.run().iter().all(|v| v.is_finite()));

            let mut conv = ConvCase::new(isa, 3, 16, 10, 2).unwrap();
            assert_eq!(conv.run().len(), 2 * 16 * 8 * 8);
            assert!(conv.y.iter().any(|v| *v != 0.0));

            let mut neurons = NeuronCase::new(isa, 100, 2).unwrap();
            let mut fired = 0;
            for _ in 0..20 {
                let out = neurons.run();
                assert!(out.iter().all(|v| *v == 0.0 || *v == 1.0));
                fired += out.iter().filter(|v| **v == 1.0).count();
            }
            assert!(fired > 0);
        }
    }
}
