//! The one neuron core: a mirror of `neuron_step` in `tracetorch/neuron.py`.
//!
//! Every traceTorch layer of both families is a [`NeuronSpec`] plus parameter
//! values; [`neuron_kernel`] runs one timestep of any spec, operation for
//! operation in the same order as the PyTorch code so that results agree to
//! float rounding.

use serde::Deserialize;

use pulp::{Simd, WithSimd};

use crate::floats::Floats;
use crate::rng::Rng;
use crate::simd::{load, rows_in, store, Kernels, MAX_LANES};

/// Where the `bias` parameter enters the update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BiasSite {
    /// No bias.
    None,
    /// In the spike argument (family A).
    Spike,
    /// In the membrane drive (family B).
    Drive,
}

/// What the layer emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// The membrane itself (no firing, no reset).
    Membrane,
    /// Positive spikes only.
    Binary,
    /// Positive and negative spikes.
    Ternary,
}

/// The declarative neuron description (`NeuronSpec.to_dict()` in Python).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeuronSpec {
    /// Separate positive and negative traces.
    pub dual: bool,
    /// A synaptic trace before the membrane.
    pub synaptic: bool,
    /// A trace of the previous output feeds the membrane.
    pub recurrent: bool,
    /// The synaptic trace averages (`1 - alpha` scales its input).
    pub syn_ema: bool,
    /// The recurrent trace averages.
    pub rec_ema: bool,
    /// The membrane averages.
    pub mem_ema: bool,
    /// Where the bias enters.
    pub bias: BiasSite,
    /// What the layer emits.
    pub output: OutputKind,
    /// Output `pos_scale*sp + neg_scale*sn` instead of `sp + sn`.
    pub scaled: bool,
    /// The negative spike sees the membrane after the positive reset (family B).
    pub neg_sees_pos_reset: bool,
}

impl NeuronSpec {
    /// Whether the layer fires (emits spikes rather than its membrane).
    pub fn fires(&self) -> bool {
        self.output != OutputKind::Membrane
    }

    /// The consistency rules of `NeuronSpec.__post_init__`; `Err` says which is broken.
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        if self.bias == BiasSite::Spike && !self.fires() {
            return Err("a spike bias needs a firing output");
        }
        if self.dual && (self.bias == BiasSite::Drive || self.neg_sees_pos_reset) {
            return Err("drive bias and neg_sees_pos_reset are single-trace (family B) features");
        }
        Ok(())
    }

    /// Parameter indices (into [`PARAM_NAMES`]) in `NeuronSpec.parameter_names()` order.
    pub(crate) fn parameters(&self) -> Vec<usize> {
        let mut names = Vec::new();
        let pair = |names: &mut Vec<usize>, single: usize, pos: usize, neg: usize| {
            if self.dual {
                names.extend([pos, neg]);
            } else {
                names.push(single);
            }
        };
        if self.synaptic {
            pair(&mut names, ALPHA, POS_ALPHA, NEG_ALPHA);
        }
        pair(&mut names, BETA, POS_BETA, NEG_BETA);
        if self.recurrent {
            pair(&mut names, GAMMA, POS_GAMMA, NEG_GAMMA);
            pair(&mut names, REC_WEIGHT, POS_REC_WEIGHT, NEG_REC_WEIGHT);
        }
        if self.fires() {
            names.push(POS_THRESHOLD);
            if self.output == OutputKind::Ternary {
                names.push(NEG_THRESHOLD);
            }
        }
        if self.bias != BiasSite::None {
            names.push(BIAS);
        }
        if self.scaled {
            names.push(POS_SCALE);
            if self.output == OutputKind::Ternary {
                names.push(NEG_SCALE);
            }
        }
        names
    }

    /// `(state name, slot)` in `NeuronSpec.state_names()` order.
    pub(crate) fn states(&self) -> Vec<(&'static str, usize)> {
        let mut names = Vec::new();
        if self.synaptic {
            if self.dual {
                names.extend([("pos_syn", SYN), ("neg_syn", SYN_NEG)]);
            } else {
                names.push(("syn", SYN));
            }
        }
        if self.dual {
            names.extend([("pos_mem", MEM), ("neg_mem", MEM_NEG)]);
        } else {
            names.push(("mem", MEM));
        }
        if self.recurrent {
            if self.dual {
                names.extend([("pos_rec", REC), ("neg_rec", REC_NEG)]);
            } else {
                names.push(("rec", REC));
            }
            names.push(("prev_output", PREV));
        }
        names
    }
}

/// The spike function of a firing layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Spike {
    /// `sigmoid(4u)` (family A default).
    Sigmoid4x,
    /// `u > 0` as 1.0 / 0.0 (family B).
    Heaviside,
}

/// `round(sigmoid(4u))`, the spike of `quant_fn=round_ste()`, is 1 from this
/// membrane distance up and 0 below it with this crate's sigmoid (a unit test
/// re-derives it), so that spike costs one comparison instead of an exp.
const ROUND_EDGE: f32 = 2.235_174_4e-8; // bits 0x32c0_0001

/// The quantizer applied after the spike function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Quant {
    /// No quantization.
    Identity,
    /// `round_half_even(u / step) * step`.
    Round(f32),
    /// `(floor(u / step) + (rand < frac)) * step`.
    StochasticRound(f32),
    /// `u * bernoulli(clamp(u, 0, 1))`.
    Probabilistic,
}

/// How a firing layer turns a membrane distance into a spike: `quant(spike(u))`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fire {
    /// The spike function.
    pub spike: Spike,
    /// The quantizer.
    pub quant: Quant,
}

impl Fire {
    /// `quant(spike(u))` for one value (the scalar lane of [`Ops::fire`]).
    #[cfg(test)]
    fn apply(&self, u: f32, rng: &mut Rng) -> f32 {
        Ops(pulp::Scalar::new()).fire_evaluated(self, u, &mut || rng.uniform())
    }
}

/// `1 / (1 + exp(-x))`; saturates to exactly 0 or 1 without overflow trouble.
pub(crate) fn sigmoid(x: f32) -> f32 {
    Ops(pulp::Scalar::new()).sigmoid(x)
}

/// The arithmetic of the neuron core over pulp's vector type `S::f32s`
/// (plain `f32` on the scalar path), so that one core serves every
/// instruction set with the same operations in the same order.
#[derive(Clone, Copy)]
pub(crate) struct Ops<S: Simd>(pub(crate) S);

impl<S: Simd> Ops<S> {
    #[inline(always)]
    fn splat(self, v: f32) -> S::f32s {
        self.0.splat_f32s(v)
    }

    #[inline(always)]
    fn add(self, a: S::f32s, b: S::f32s) -> S::f32s {
        self.0.add_f32s(a, b)
    }

    #[inline(always)]
    fn sub(self, a: S::f32s, b: S::f32s) -> S::f32s {
        self.0.sub_f32s(a, b)
    }

    #[inline(always)]
    fn mul(self, a: S::f32s, b: S::f32s) -> S::f32s {
        self.0.mul_f32s(a, b)
    }

    /// `torch.clamp(v, min=0)`: NaN stays NaN.
    #[inline(always)]
    fn pos(self, v: S::f32s) -> S::f32s {
        let zero = self.splat(0.0);
        self.0.select_f32s(self.0.less_than_f32s(v, zero), zero, v)
    }

    /// `torch.clamp(v, max=0)`: NaN stays NaN.
    #[inline(always)]
    fn neg(self, v: S::f32s) -> S::f32s {
        let zero = self.splat(0.0);
        self.0
            .select_f32s(self.0.greater_than_f32s(v, zero), zero, v)
    }

    /// `v > 0` as 1.0 / 0.0 (NaN gives 0).
    #[inline(always)]
    fn heaviside(self, v: S::f32s) -> S::f32s {
        let gt = self.0.greater_than_f32s(v, self.splat(0.0));
        self.0.select_f32s(gt, self.splat(1.0), self.splat(0.0))
    }

    /// `_trace`: `drive + decay*(old - drive)` when averaging, else `drive + decay*old`.
    #[inline(always)]
    fn trace(self, old: S::f32s, decay: S::f32s, ema: bool, drive: S::f32s) -> S::f32s {
        if ema {
            self.add(drive, self.mul(decay, self.sub(old, drive)))
        } else {
            self.add(drive, self.mul(decay, old))
        }
    }

    /// Round half to even (`torch.round`), exact for every float: below
    /// 2^23 adding and removing 2^23 rounds in the current (nearest-even)
    /// mode; from 2^23 on every float is already an integer.
    #[inline(always)]
    fn round_even(self, v: S::f32s) -> S::f32s {
        let big = self.splat(8_388_608.0);
        let mag = self.0.abs_f32s(v);
        let rounded = self.sub(self.add(mag, big), big);
        let rounded = self
            .0
            .select_f32s(self.0.less_than_f32s(mag, big), rounded, mag);
        // Put the sign back (also on zero and NaN).
        let sign = self.0.and_f32s(v, self.splat(-0.0));
        self.0.or_f32s(rounded, sign)
    }

    /// `floor(v)`.
    #[inline(always)]
    fn floor(self, v: S::f32s) -> S::f32s {
        let r = self.round_even(v);
        let above = self.0.greater_than_f32s(r, v);
        self.0.select_f32s(above, self.sub(r, self.splat(1.0)), r)
    }

    /// `exp(x)` to about one ulp (Cephes' expf): `2^n * p(r)` with
    /// `x = n ln2 + r`. Past the float range it gives infinity or zero; it
    /// saturates at `exp(88.3)` just below the overflow and flushes below
    /// `exp(-86)` to zero (it serves the sigmoid, where either is < 1e-37 away).
    #[inline(always)]
    fn exp(self, x: S::f32s) -> S::f32s {
        let s = self.0;
        // n stays in [-124, 127] so 2^n is a normal float.
        let xc = s.max_f32s(s.min_f32s(x, self.splat(88.3)), self.splat(-86.0));
        let magic = self.splat(12_582_912.0); // 1.5 * 2^23: rounds to an integer in the low bits
        let t = self.add(self.mul(xc, self.splat(std::f32::consts::LOG2_E)), magic);
        let n = self.sub(t, magic);
        let r = self.sub(
            self.sub(xc, self.mul(n, self.splat(0.693_359_4))),
            self.mul(n, self.splat(-2.121_944_4e-4)),
        );
        let mut p = self.splat(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            5.000_000_6e-1,
        ] {
            p = self.add(self.mul(p, r), self.splat(c));
        }
        let y = self.add(self.add(self.mul(p, self.mul(r, r)), r), self.splat(1.0));
        // 2^n: n sits in the low mantissa bits of t; shift it to the exponent.
        let n_bits = s.sub_u32s(pulp::cast(t), pulp::cast(magic));
        let scaled: S::f32s =
            pulp::cast(s.add_u32s(pulp::cast(y), s.mul_u32s(n_bits, s.splat_u32s(1 << 23))));
        let inf = s.greater_than_f32s(x, self.splat(88.72));
        let zero = s.less_than_f32s(x, self.splat(-86.0));
        let out = s.select_f32s(inf, self.splat(f32::INFINITY), scaled);
        let out = s.select_f32s(zero, self.splat(0.0), out);
        // NaN in, NaN out (the clamps above would hide it).
        s.select_f32s(s.equal_f32s(x, x), out, x)
    }

    /// `1 / (1 + exp(-x))`.
    #[inline(always)]
    fn sigmoid(self, x: S::f32s) -> S::f32s {
        let one = self.splat(1.0);
        let e = self.exp(self.sub(self.splat(0.0), x));
        self.0.div_f32s(one, self.add(one, e))
    }

    /// `quant(spike(u))`; `uniform` draws one uniform in [0, 1) per lane.
    /// `T::EDGE_SPIKE` layers take [`Ops::edge_spike`], which gives the same.
    #[inline(always)]
    fn fire<T: Traces>(
        self,
        fire: &Fire,
        u: S::f32s,
        uniform: &mut impl FnMut() -> S::f32s,
    ) -> S::f32s {
        if T::EDGE_SPIKE {
            self.edge_spike(u)
        } else {
            self.fire_evaluated(fire, u, uniform)
        }
    }

    /// The default binary spike `round(sigmoid(4u))`, by one comparison
    /// against [`ROUND_EDGE`] instead of an exp (NaN stays NaN).
    #[inline(always)]
    fn edge_spike(self, u: S::f32s) -> S::f32s {
        let s = self.0;
        let spike = s.select_f32s(
            s.less_than_f32s(u, self.splat(ROUND_EDGE)),
            self.splat(0.0),
            self.splat(1.0),
        );
        s.select_f32s(s.equal_f32s(u, u), spike, u)
    }

    /// [`Ops::fire`] computed as written: the spike function, then the quantizer.
    #[inline(always)]
    fn fire_evaluated(
        self,
        fire: &Fire,
        u: S::f32s,
        uniform: &mut impl FnMut() -> S::f32s,
    ) -> S::f32s {
        let s = self.0;
        let spike = match fire.spike {
            Spike::Sigmoid4x => self.sigmoid(self.mul(self.splat(4.0), u)),
            Spike::Heaviside => self.heaviside(u),
        };
        match fire.quant {
            Quant::Identity => spike,
            Quant::Round(step) => {
                let step = self.splat(step);
                self.mul(self.round_even(s.div_f32s(spike, step)), step)
            }
            Quant::StochasticRound(step) => {
                let step = self.splat(step);
                let scaled = s.div_f32s(spike, step);
                let low = self.floor(scaled);
                let up = s.less_than_f32s(uniform(), self.sub(scaled, low));
                let up = s.select_f32s(up, self.splat(1.0), self.splat(0.0));
                self.mul(self.add(low, up), step)
            }
            Quant::Probabilistic => {
                let p = s.min_f32s(s.max_f32s(spike, self.splat(0.0)), self.splat(1.0));
                let hit = s.less_than_f32s(uniform(), p);
                self.mul(spike, s.select_f32s(hit, self.splat(1.0), self.splat(0.0)))
            }
        }
    }
}

// Parameter indices: one row of [f32; NPARAM] per neuron.
pub(crate) const ALPHA: usize = 0;
pub(crate) const POS_ALPHA: usize = 1;
pub(crate) const NEG_ALPHA: usize = 2;
pub(crate) const BETA: usize = 3;
pub(crate) const POS_BETA: usize = 4;
pub(crate) const NEG_BETA: usize = 5;
pub(crate) const GAMMA: usize = 6;
pub(crate) const POS_GAMMA: usize = 7;
pub(crate) const NEG_GAMMA: usize = 8;
pub(crate) const REC_WEIGHT: usize = 9;
pub(crate) const POS_REC_WEIGHT: usize = 10;
pub(crate) const NEG_REC_WEIGHT: usize = 11;
pub(crate) const POS_THRESHOLD: usize = 12;
pub(crate) const NEG_THRESHOLD: usize = 13;
pub(crate) const BIAS: usize = 14;
pub(crate) const POS_SCALE: usize = 15;
pub(crate) const NEG_SCALE: usize = 16;
/// Number of distinct neuron parameters.
pub(crate) const NPARAM: usize = 17;
/// Parameter names, indexed like the constants above.
pub(crate) const PARAM_NAMES: [&str; NPARAM] = [
    "alpha",
    "pos_alpha",
    "neg_alpha",
    "beta",
    "pos_beta",
    "neg_beta",
    "gamma",
    "pos_gamma",
    "neg_gamma",
    "rec_weight",
    "pos_rec_weight",
    "neg_rec_weight",
    "pos_threshold",
    "neg_threshold",
    "bias",
    "pos_scale",
    "neg_scale",
];

// State slots (single-trace specs use the first of each pair).
pub(crate) const SYN: usize = 0;
pub(crate) const SYN_NEG: usize = 1;
pub(crate) const MEM: usize = 2;
pub(crate) const MEM_NEG: usize = 3;
pub(crate) const REC: usize = 4;
pub(crate) const REC_NEG: usize = 5;
pub(crate) const PREV: usize = 6;
/// Number of state slots.
pub(crate) const NSLOT: usize = 7;

/// Per-neuron parameter values: `[param index]` for one neuron.
pub(crate) type ParamRow = [f32; NPARAM];

/// The loaded, immutable part of one neuron node.
#[derive(Debug, Clone)]
pub(crate) struct NeuronLayer {
    pub(crate) spec: NeuronSpec,
    /// Present for firing specs.
    pub(crate) fire: Fire,
    /// One row per neuron (scalars broadcast at load).
    pub(crate) params: Vec<ParamRow>,
    /// The same values by parameter, `[NPARAM][column_stride]` (each column
    /// zero-padded to whole vectors of every instruction set), for vector
    /// loads: one whole load per parameter, the partial vector included.
    pub(crate) columns: Floats,
    /// Floats per column of `columns`: `C` rounded up to a multiple of 16.
    pub(crate) column_stride: usize,
    /// Product of the sample axes after the neuron axis.
    pub(crate) inner: usize,
    /// The compiled update of the layer.
    variant: Variant,
}

/// One timestep of one neuron: `neuron_step` for a single element.
///
/// `s` holds the neuron's states by slot and is updated in place.
#[cfg(test)]
pub(crate) fn neuron_update(
    spec: &NeuronSpec,
    fire: &Fire,
    rng: &mut Rng,
    p: &ParamRow,
    s: &mut [f32; NSLOT],
    x: f32,
) -> f32 {
    struct One<'a>(
        &'a NeuronSpec,
        &'a Fire,
        &'a mut Rng,
        &'a ParamRow,
        &'a mut [f32; NSLOT],
        f32,
    );
    impl ForTraces for One<'_> {
        type Output = f32;
        fn run<T: Traces>(self) -> f32 {
            let One(spec, fire, rng, p, s, x) = self;
            let ops = Ops(pulp::Scalar::new());
            update::<_, T>(ops, spec, fire, |k| p[k], &mut || rng.uniform(), s, x)
        }
    }
    with_traces(spec, fire, One(spec, fire, rng, p, s, x))
}

/// Which traces a layer keeps: the three switches of [`NeuronSpec`] that
/// shape the update, as constants, so that each combination compiles to its
/// own loop with no test per neuron and only its state slots in registers.
pub(crate) trait Traces {
    const DUAL: bool;
    const SYNAPTIC: bool;
    const RECURRENT: bool;
    /// The spike is the default `round(sigmoid(4u))` ([`Ops::edge_spike`]):
    /// deciding it once per layer rather than per vector keeps the loop
    /// small enough for its values to stay in registers.
    const EDGE_SPIKE: bool;
    /// The whole spec, where the traces and a base fix it ([`fixed_spec`]):
    /// the update then tests no flag of the spec at run time. With the
    /// flags read from the spec, each was tested for every vector (LLVM did
    /// not hoist them) and the set-up of every branch ran on every call:
    /// 1024 LIB neurons took 98 ns a step and 16 took 21.5, against 82 and
    /// 16 with the spec constant (AVX-512, Zen 5).
    const SPEC: Option<NeuronSpec>;

    /// The spec the update follows: [`Traces::SPEC`], else the layer's.
    #[inline(always)]
    fn spec(layer: &NeuronSpec) -> NeuronSpec {
        Self::SPEC.unwrap_or(*layer)
    }

    /// Whether the update reads and writes state slot `k` (the slots of
    /// [`NeuronSpec::states`]).
    #[inline(always)]
    fn uses(k: usize) -> bool {
        match k {
            SYN => Self::SYNAPTIC,
            SYN_NEG => Self::SYNAPTIC && Self::DUAL,
            MEM => true,
            MEM_NEG => Self::DUAL,
            REC | PREV => Self::RECURRENT,
            REC_NEG => Self::RECURRENT && Self::DUAL,
            _ => false,
        }
    }
}

/// The [`Traces`] of `(dual, synaptic, recurrent, edge spike, base)`;
/// base [`ANY_BASE`] leaves the rest of the spec to run time.
pub(crate) struct TracesOf<const D: bool, const S: bool, const R: bool, const E: bool, const B: u8>;

impl<const D: bool, const S: bool, const R: bool, const E: bool, const B: u8> Traces
    for TracesOf<D, S, R, E, B>
{
    const DUAL: bool = D;
    const SYNAPTIC: bool = S;
    const RECURRENT: bool = R;
    const EDGE_SPIKE: bool = E;
    const SPEC: Option<NeuronSpec> = fixed_spec(D, S, R, B);
}

/// A spec known only at run time.
const ANY_BASE: u8 = 0;
/// The family-A bases whose spec [`fixed_spec`] fixes (`LIEMA`, rare, is
/// left to run time: every base compiles to one more loop per trace shape,
/// layout and instruction set).
const LI: u8 = 1;
const LIB: u8 = 2;
const LIT: u8 = 3;
const LITS: u8 = 4;
/// The family-B bases whose spec [`fixed_spec`] fixes: the 12 wrappers of
/// `LeakyIntegrator` with their default averaging.
const LIF: u8 = 5;
const BLIF: u8 = 6;
const READOUT: u8 = 7;
/// Every base that fixes a spec.
const BASES: [u8; 7] = [LI, LIB, LIT, LITS, LIF, BLIF, READOUT];

/// The spec that `base` fixes for these traces, `None` for [`ANY_BASE`] and
/// for a family-B base with dual traces, which family B does not have.
///
/// Family A is `layout` in `tracetorch/snn/_family_a.py`: every trace
/// averages but the membrane, a firing layer has a spike bias. Family B is
/// `spec_of` in `tracetorch/snn/_family_b.py` with each decay's default:
/// the synaptic and recurrent traces average, the membrane only in a
/// readout; the recurrent wrappers have a drive bias, and the negative spike
/// sees the membrane after the positive reset.
const fn fixed_spec(dual: bool, synaptic: bool, recurrent: bool, base: u8) -> Option<NeuronSpec> {
    use BiasSite::{Drive, None as NoBias, Spike};
    use OutputKind::{Binary, Membrane, Ternary};
    let drive = if recurrent { Drive } else { NoBias };
    // (output, the membrane averages, bias, output scales, family B)
    let (output, mem_ema, bias, scaled, family_b) = match base {
        LI => (Membrane, false, NoBias, false, false),
        LIB => (Binary, false, Spike, false, false),
        LIT => (Ternary, false, Spike, false, false),
        LITS => (Ternary, false, Spike, true, false),
        LIF => (Binary, false, drive, false, true),
        BLIF => (Ternary, false, drive, true, true),
        READOUT => (Membrane, true, drive, false, true),
        _ => return None,
    };
    if family_b && dual {
        return None;
    }
    Some(NeuronSpec {
        dual,
        synaptic,
        recurrent,
        syn_ema: true,
        rec_ema: true,
        mem_ema,
        bias,
        output,
        scaled,
        neg_sees_pos_reset: family_b,
    })
}

/// The base of `spec` ([`ANY_BASE`] for a spec no base fixes); the
/// averaging of a trace the layer does not keep changes nothing.
fn base_of(spec: &NeuronSpec) -> u8 {
    let (d, s, r) = (spec.dual, spec.synaptic, spec.recurrent);
    let kept = |spec: NeuronSpec| NeuronSpec {
        syn_ema: spec.syn_ema || !s,
        rec_ema: spec.rec_ema || !r,
        ..spec
    };
    BASES
        .into_iter()
        .find(|&base| fixed_spec(d, s, r, base) == Some(kept(*spec)))
        .unwrap_or(ANY_BASE)
}

/// Work generic over the [`Traces`] of a layer.
pub(crate) trait ForTraces {
    type Output;
    fn run<T: Traces>(self) -> Self::Output;
}

/// Which compiled update serves a layer, beyond its trace shape: whether
/// its spike is the edge ([`Traces::EDGE_SPIKE`]) and its base ([`BASES`]).
/// Chosen at load ([`NeuronLayer::new`]), not at every step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Variant {
    edge: bool,
    base: u8,
}

impl Variant {
    /// The variant of a layer of `spec` firing with `fire`.
    fn of(spec: &NeuronSpec, fire: &Fire) -> Variant {
        Variant {
            edge: spec.fires() && fire.spike == Spike::Sigmoid4x && fire.quant == Quant::Round(1.0),
            base: base_of(spec),
        }
    }
}

/// Runs `work` compiled for the traces of `spec` and the spike of `fire`.
#[cfg(test)]
pub(crate) fn with_traces<W: ForTraces>(spec: &NeuronSpec, fire: &Fire, work: W) -> W::Output {
    with_variant(spec, Variant::of(spec, fire), work)
}

/// Runs `work` compiled for the traces of `spec` and `variant` (of `spec`).
#[inline(always)]
fn with_variant<W: ForTraces>(spec: &NeuronSpec, variant: Variant, work: W) -> W::Output {
    // An `LI` never fires, so never takes the edge spike.
    match (variant.edge, variant.base) {
        (false, LI) => with_shape::<false, LI, W>(spec, work),
        (false, LIB) => with_shape::<false, LIB, W>(spec, work),
        (false, LIT) => with_shape::<false, LIT, W>(spec, work),
        (false, LITS) => with_shape::<false, LITS, W>(spec, work),
        (false, LIF) => with_shape::<false, LIF, W>(spec, work),
        (false, BLIF) => with_shape::<false, BLIF, W>(spec, work),
        (false, READOUT) => with_shape::<false, READOUT, W>(spec, work),
        (true, LIB) => with_shape::<true, LIB, W>(spec, work),
        (true, LIT) => with_shape::<true, LIT, W>(spec, work),
        (true, LITS) => with_shape::<true, LITS, W>(spec, work),
        (true, _) => with_shape::<true, ANY_BASE, W>(spec, work),
        (false, _) => with_shape::<false, ANY_BASE, W>(spec, work),
    }
}

#[inline(always)]
fn with_shape<const E: bool, const B: u8, W: ForTraces>(spec: &NeuronSpec, work: W) -> W::Output {
    match (spec.dual, spec.synaptic, spec.recurrent) {
        (false, false, false) => work.run::<TracesOf<false, false, false, E, B>>(),
        (false, false, true) => work.run::<TracesOf<false, false, true, E, B>>(),
        (false, true, false) => work.run::<TracesOf<false, true, false, E, B>>(),
        (false, true, true) => work.run::<TracesOf<false, true, true, E, B>>(),
        (true, false, false) => work.run::<TracesOf<true, false, false, E, B>>(),
        (true, false, true) => work.run::<TracesOf<true, false, true, E, B>>(),
        (true, true, false) => work.run::<TracesOf<true, true, false, E, B>>(),
        (true, true, true) => work.run::<TracesOf<true, true, true, E, B>>(),
    }
}

/// One timestep of one lane of neurons: `neuron_step`, operation for
/// operation. `p(k)` gives parameter `k`, `s` holds the states by slot.
#[inline(always)]
fn update<S: Simd, T: Traces>(
    o: Ops<S>,
    spec: &NeuronSpec,
    fire: &Fire,
    p: impl Fn(usize) -> S::f32s,
    uniform: &mut impl FnMut() -> S::f32s,
    s: &mut [S::f32s; NSLOT],
    x: S::f32s,
) -> S::f32s {
    let spec = &T::spec(spec);
    let dual = T::DUAL;

    // 1. Input current.
    let current = if T::SYNAPTIC {
        if dual {
            let ps = o.trace(s[SYN], p(POS_ALPHA), spec.syn_ema, o.pos(x));
            let ns = o.trace(s[SYN_NEG], p(NEG_ALPHA), spec.syn_ema, o.neg(x));
            s[SYN] = ps;
            s[SYN_NEG] = ns;
            o.add(ps, ns)
        } else {
            let syn = o.trace(s[SYN], p(ALPHA), spec.syn_ema, x);
            s[SYN] = syn;
            syn
        }
    } else {
        x
    };

    // 2. Membrane drive.
    let zero = o.splat(0.0);
    let mut drive = zero;
    let mut drive_pos = zero;
    let mut drive_neg = zero;
    if T::RECURRENT {
        let prev = s[PREV];
        if dual {
            let pr = o.trace(s[REC], p(POS_GAMMA), spec.rec_ema, o.pos(prev));
            let nr = o.trace(s[REC_NEG], p(NEG_GAMMA), spec.rec_ema, o.neg(prev));
            s[REC] = pr;
            s[REC_NEG] = nr;
            let rec = o.add(pr, nr);
            drive_pos = o.add(o.pos(current), o.mul(p(POS_REC_WEIGHT), o.pos(rec)));
            drive_neg = o.add(o.neg(current), o.mul(p(NEG_REC_WEIGHT), o.neg(rec)));
        } else {
            let rec = o.trace(s[REC], p(GAMMA), spec.rec_ema, prev);
            s[REC] = rec;
            drive = o.add(current, o.mul(p(REC_WEIGHT), rec));
        }
    } else if dual {
        drive_pos = o.pos(current);
        drive_neg = o.neg(current);
    } else {
        drive = current;
    }
    if spec.bias == BiasSite::Drive {
        drive = o.add(drive, p(BIAS));
    }

    // 3. Membrane.
    let mut pos_mem = zero;
    let mut neg_mem = zero;
    let mut membrane;
    if dual {
        pos_mem = o.trace(s[MEM], p(POS_BETA), spec.mem_ema, drive_pos);
        neg_mem = o.trace(s[MEM_NEG], p(NEG_BETA), spec.mem_ema, drive_neg);
        membrane = o.add(pos_mem, neg_mem);
    } else {
        membrane = o.trace(s[MEM], p(BETA), spec.mem_ema, drive);
    }

    // 4. Output and reset.
    let out;
    if !spec.fires() {
        out = membrane;
    } else {
        let spike_bias = spec.bias == BiasSite::Spike;
        let pos_threshold = p(POS_THRESHOLD);
        let offset = if spike_bias {
            o.sub(p(BIAS), pos_threshold)
        } else {
            o.sub(zero, pos_threshold)
        };
        let spike_pos = o.fire::<T>(fire, o.add(membrane, offset), uniform);
        let mut reset_membrane = zero;
        if dual {
            let half = o.mul(o.splat(0.5), pos_threshold);
            pos_mem = o.sub(pos_mem, o.mul(spike_pos, half));
            neg_mem = o.sub(neg_mem, o.mul(spike_pos, half));
        } else {
            reset_membrane = o.sub(membrane, o.mul(spike_pos, pos_threshold));
        }
        if spec.output == OutputKind::Ternary {
            let neg_threshold = p(NEG_THRESHOLD);
            let seen = if spec.neg_sees_pos_reset {
                reset_membrane
            } else {
                membrane
            };
            let limit = if spike_bias {
                o.sub(o.sub(zero, neg_threshold), p(BIAS))
            } else {
                o.sub(zero, neg_threshold)
            };
            let spike_neg = o.sub(zero, o.fire::<T>(fire, o.sub(limit, seen), uniform));
            if dual {
                let half = o.mul(o.splat(0.5), neg_threshold);
                pos_mem = o.sub(pos_mem, o.mul(spike_neg, half));
                neg_mem = o.sub(neg_mem, o.mul(spike_neg, half));
            } else {
                reset_membrane = o.sub(reset_membrane, o.mul(spike_neg, neg_threshold));
            }
            out = if spec.scaled {
                o.add(
                    o.mul(p(POS_SCALE), spike_pos),
                    o.mul(p(NEG_SCALE), spike_neg),
                )
            } else {
                o.add(spike_pos, spike_neg)
            };
        } else {
            out = if spec.scaled {
                o.mul(p(POS_SCALE), spike_pos)
            } else {
                spike_pos
            };
        }
        if !dual {
            membrane = reset_membrane;
        }
    }

    if dual {
        s[MEM] = pos_mem;
        s[MEM_NEG] = neg_mem;
    } else {
        s[MEM] = membrane;
    }
    if T::RECURRENT {
        s[PREV] = out;
    }
    out
}

impl NeuronLayer {
    /// A layer of `params.len()` neurons (one parameter row each) over
    /// `inner` positions; the parameter columns follow from the rows.
    pub(crate) fn new(spec: NeuronSpec, fire: Fire, params: Vec<ParamRow>, inner: usize) -> Self {
        let column_stride = params.len().next_multiple_of(MAX_LANES);
        let mut columns = Floats::zeros(NPARAM * column_stride);
        for (c, row) in params.iter().enumerate() {
            for (k, v) in row.iter().enumerate() {
                columns[k * column_stride + c] = *v;
            }
        }
        NeuronLayer {
            spec,
            fire,
            variant: Variant::of(&spec, &fire),
            columns,
            column_stride,
            params,
            inner,
        }
    }

    /// Whether the outputs are spikes (mostly exact zeros): a hard spike
    /// function or a quantizer after the surrogate.
    pub(crate) fn emits_spikes(&self) -> bool {
        self.spec.fires()
            && (self.fire.spike == Spike::Heaviside || self.fire.quant != Quant::Identity)
    }

    /// Whether a step draws random numbers (a stochastic quantizer): the
    /// draws follow the neuron order, so such a layer never splits.
    pub(crate) fn draws(&self) -> bool {
        self.spec.fires()
            && matches!(
                self.fire.quant,
                Quant::StochasticRound(_) | Quant::Probabilistic
            )
    }

    /// Floats of one row of the `[rows, C, inner]` layout.
    pub(crate) fn row_len(&self) -> usize {
        self.params.len() * self.inner
    }
}

/// Runs one timestep of a neuron layer over a whole buffer, a vector of
/// neurons at a time.
///
/// `x`, `out` and every used state slot are laid out `[rows, C, inner]` (the
/// sample layout with streams folded into `rows`); parameters vary along `C`.
pub(crate) fn neuron_kernel(
    k: &Kernels,
    layer: &NeuronLayer,
    rng: &mut Rng,
    x: &[f32],
    out: &mut [f32],
    states: [&mut [f32]; NSLOT],
) {
    // The traces are chosen first, in plain code, so that each combination
    // gets its own SIMD function (one function holding all of them had a
    // stack frame too large for a test thread in debug builds).
    let pass = NeuronPass {
        layer,
        rng,
        x,
        out,
        states,
    };
    with_variant(&layer.spec, layer.variant, Dispatch { k, pass })
}

/// Runs a [`NeuronPass`] on the instruction set of `k`, for given traces.
struct Dispatch<'a> {
    k: &'a Kernels,
    pass: NeuronPass<'a>,
}

impl ForTraces for Dispatch<'_> {
    type Output = ();

    fn run<T: Traces>(self) {
        // One SIMD function per layout: in one holding all three, the set-up
        // of every branch was hoisted to its entry and ran on every call
        // (about 250 instructions, a third of a 64-neuron layer's step).
        let Dispatch { k, pass } = self;
        let inner = pass.layer.inner;
        let traces = std::marker::PhantomData;
        if inner == 1 {
            k.dispatch(Sweep::<T, BY_COLUMN> { pass, traces })
        } else if inner % k.isa().lanes() == 0 {
            k.dispatch(Sweep::<T, BY_CHANNEL> { pass, traces })
        } else {
            k.dispatch(Sweep::<T, BY_PART> { pass, traces })
        }
    }
}

/// How a [`Sweep`] walks its neurons: parameters by column (`inner == 1`),
/// one channel's parameters broadcast over whole vectors of positions, or
/// over positions that do not fill whole vectors.
const BY_COLUMN: u8 = 0;
const BY_CHANNEL: u8 = 1;
const BY_PART: u8 = 2;

struct NeuronPass<'a> {
    layer: &'a NeuronLayer,
    rng: &'a mut Rng,
    x: &'a [f32],
    out: &'a mut [f32],
    /// One slice per slot, empty for the slots the layer does not use.
    states: [&'a mut [f32]; NSLOT],
}

/// Updates the neurons in `span` (at most one vector) in place.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn lane<S: Simd, T: Traces>(
    o: Ops<S>,
    spec: &NeuronSpec,
    fire: &Fire,
    rng: &mut Rng,
    p: impl Fn(usize) -> S::f32s,
    span: std::ops::Range<usize>,
    x: &[f32],
    out: &mut [f32],
    states: &mut [&mut [f32]; NSLOT],
) {
    let simd = o.0;
    let mut s = [simd.splat_f32s(0.0); NSLOT];
    for k in 0..NSLOT {
        if T::uses(k) {
            s[k] = load(simd, &states[k][span.clone()]);
        }
    }
    // Stochastic quantizers draw one uniform per neuron, in order.
    let count = span.len();
    let mut uniform = || {
        let mut u = [0.0f32; 16];
        u[..count].iter_mut().for_each(|v| *v = rng.uniform());
        simd.partial_load_f32s(&u[..S::F32_LANES])
    };
    let xv = load(simd, &x[span.clone()]);
    let y = update::<S, T>(o, spec, fire, p, &mut uniform, &mut s, xv);
    store(simd, &mut out[span.clone()], y);
    for k in 0..NSLOT {
        if T::uses(k) {
            store(simd, &mut states[k][span.clone()], s[k]);
        }
    }
}

/// Where a vector of neurons finds its parameters.
#[derive(Clone, Copy)]
enum Params<'a, V> {
    /// Lane by lane, from the columns at this neuron offset.
    Column(usize),
    /// One row, already broadcast to every lane: held in registers across
    /// a channel's positions, where broadcasts from the row were repeated
    /// for every vector, with the sums of parameters made from them (the
    /// stores might have changed the row, as far as the compiler knew).
    Splat(&'a [V; NPARAM]),
}

/// Whole-vector access to the buffers of a [`NeuronPass`], unchecked: the
/// lengths are checked once, in [`Unchecked::new`]. Slicing every buffer
/// and parameter column for every vector cost about as many instructions as
/// the update (1024 LIB neurons: 0.64 -> 0.36 us on AVX2).
struct Unchecked<'a> {
    x: &'a [f32],
    out: &'a mut [f32],
    /// Empty for the slots the layer does not use.
    states: &'a mut [&'a mut [f32]; NSLOT],
    /// `[NPARAM][stride]` parameter columns.
    columns: &'a [f32],
    stride: usize,
    /// Floats every used buffer holds at least.
    len: usize,
}

impl<'a> Unchecked<'a> {
    /// Panics unless `x`, `out` and the used state slots hold `len` floats
    /// and the columns `NPARAM` columns of `stride`.
    #[inline(always)]
    fn new<T: Traces>(
        x: &'a [f32],
        out: &'a mut [f32],
        states: &'a mut [&'a mut [f32]; NSLOT],
        columns: &'a [f32],
        stride: usize,
    ) -> Self {
        let len = x.len();
        assert!(out.len() >= len && columns.len() >= NPARAM * stride);
        for (k, s) in states.iter().enumerate() {
            assert!(!T::uses(k) || s.len() >= len);
        }
        Unchecked {
            x,
            out,
            states,
            columns,
            stride,
            len,
        }
    }

    /// Updates the whole vector of neurons at `at`.
    ///
    /// # Safety
    /// `at + S::F32_LANES <= self.len`, and for [`Params::Column`]`(c)`,
    /// `c + S::F32_LANES <= self.stride`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn update<S: Simd, T: Traces>(
        &mut self,
        o: Ops<S>,
        spec: &NeuronSpec,
        fire: &Fire,
        rng: &mut Rng,
        params: Params<'_, S::f32s>,
        at: usize,
    ) {
        let simd = o.0;
        debug_assert!(at + S::F32_LANES <= self.len);
        let read = |v: &[f32], at: usize| {
            // SAFETY: the caller keeps `at` a whole vector inside `v`.
            unsafe { v.as_ptr().add(at).cast::<S::f32s>().read_unaligned() }
        };
        let zero = simd.splat_f32s(0.0);
        let states = &mut *self.states;
        let mut s: [S::f32s; NSLOT] = std::array::from_fn(|k| {
            if T::uses(k) {
                read(states[k], at)
            } else {
                zero
            }
        });
        // Stochastic quantizers draw one uniform per neuron, in order.
        let mut uniform = || {
            let mut u = [0.0f32; MAX_LANES];
            u[..S::F32_LANES]
                .iter_mut()
                .for_each(|v| *v = rng.uniform());
            simd.partial_load_f32s(&u[..S::F32_LANES])
        };
        let (columns, stride) = (self.columns, self.stride);
        let p = |k: usize| match params {
            Params::Column(c) => read(columns, k * stride + c),
            Params::Splat(row) => row[k],
        };
        let y = update::<S, T>(o, spec, fire, p, &mut uniform, &mut s, read(self.x, at));
        let write = |v: &mut [f32], value: S::f32s| {
            // SAFETY: as for `read`.
            unsafe {
                v.as_mut_ptr()
                    .add(at)
                    .cast::<S::f32s>()
                    .write_unaligned(value)
            }
        };
        write(self.out, y);
        for (k, (state, value)) in states.iter_mut().zip(s).enumerate() {
            if T::uses(k) {
                write(state, value);
            }
        }
    }
}

/// A [`NeuronPass`] compiled for the traces `T` and one `LAYOUT` (see
/// [`BY_COLUMN`]).
struct Sweep<'a, T, const LAYOUT: u8> {
    pass: NeuronPass<'a>,
    traces: std::marker::PhantomData<T>,
}

impl<T: Traces, const LAYOUT: u8> WithSimd for Sweep<'_, T, LAYOUT> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let NeuronPass {
            layer,
            rng,
            x,
            out,
            mut states,
        } = self.pass;
        let o = Ops(simd);
        let lanes = S::F32_LANES;
        let c_len = layer.params.len();
        let inner = layer.inner;
        let block = c_len * inner;
        if block == 0 {
            return;
        }
        // Local copies: held in registers and tested once, where fields read
        // through the layer were reloaded and tested for every vector.
        let (spec, fire) = (layer.spec, layer.fire);
        let (spec, fire) = (&spec, &fire);
        let rows = rows_in(x.len(), block);
        let stride = layer.column_stride;
        let x = &x[..rows * block];
        let mut v = Unchecked::new::<T>(x, out, &mut states, &layer.columns, stride);
        let whole = block - block % lanes;
        for r in 0..rows {
            let base = r * block;
            if LAYOUT == BY_COLUMN {
                // Parameters vary from lane to lane: load them by column.
                for c in (0..whole).step_by(lanes) {
                    let p = Params::Column(c);
                    // SAFETY: `c + lanes <= c_len <= stride`, and the row is in `x`.
                    unsafe { v.update::<S, T>(o, spec, fire, rng, p, base + c) };
                }
                if whole < block {
                    // The columns are padded: parameters load whole.
                    let columns = &layer.columns;
                    let p = |k: usize| load(simd, &columns[k * stride + whole..][..lanes]);
                    let span = base + whole..base + block;
                    lane::<S, T>(o, spec, fire, rng, p, span, x, v.out, v.states);
                }
            } else if LAYOUT == BY_CHANNEL {
                // One channel's parameters, broadcast over its positions.
                for (c, row) in layer.params.iter().enumerate() {
                    let splat = row.map(|v| simd.splat_f32s(v));
                    let p = Params::Splat(&splat);
                    for j in (0..inner).step_by(lanes) {
                        // SAFETY: `inner` is whole vectors, and the row is in `x`.
                        unsafe { v.update::<S, T>(o, spec, fire, rng, p, base + c * inner + j) };
                    }
                }
            } else {
                // Channels that do not fill whole vectors: vector by vector.
                for (c, row) in layer.params.iter().enumerate() {
                    let p = |k: usize| simd.splat_f32s(row[k]);
                    let base = base + c * inner;
                    for j in (0..inner).step_by(lanes) {
                        let span = base + j..base + inner.min(j + lanes);
                        lane::<S, T>(o, spec, fire, rng, p, span, x, v.out, v.states);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::Isa;

    fn spec() -> NeuronSpec {
        NeuronSpec {
            dual: false,
            synaptic: false,
            recurrent: false,
            syn_ema: true,
            rec_ema: true,
            mem_ema: false,
            bias: BiasSite::None,
            output: OutputKind::Membrane,
            scaled: false,
            neg_sees_pos_reset: false,
        }
    }

    const SIG: Fire = Fire {
        spike: Spike::Sigmoid4x,
        quant: Quant::Identity,
    };
    const HEAVI: Fire = Fire {
        spike: Spike::Heaviside,
        quant: Quant::Identity,
    };

    fn close(a: f32, b: f64) {
        assert!(
            (f64::from(a) - b).abs() < 1e-6,
            "got {a}, expected {b} (hand computed)"
        );
    }

    fn sig4(u: f64) -> f64 {
        1.0 / (1.0 + (-4.0 * u).exp())
    }

    /// The slots each compiled update touches are the layer's states.
    #[test]
    fn traces_use_exactly_the_state_slots() {
        struct Used;
        impl ForTraces for Used {
            type Output = Vec<usize>;
            fn run<T: Traces>(self) -> Vec<usize> {
                (0..NSLOT).filter(|&k| T::uses(k)).collect()
            }
        }
        for bits in 0..8 {
            let sp = NeuronSpec {
                dual: bits & 1 != 0,
                synaptic: bits & 2 != 0,
                recurrent: bits & 4 != 0,
                ..spec()
            };
            let mut want: Vec<usize> = sp.states().into_iter().map(|(_, k)| k).collect();
            want.sort_unstable();
            assert_eq!(with_traces(&sp, &HEAVI, Used), want, "{sp:?}");
        }
    }

    /// Only the default binary spike of a firing layer compiles to the
    /// comparison; every other spike and quantizer is evaluated.
    #[test]
    fn edge_spike_only_for_round_of_sigmoid4x() {
        struct Edge;
        impl ForTraces for Edge {
            type Output = bool;
            fn run<T: Traces>(self) -> bool {
                T::EDGE_SPIKE
            }
        }
        let firing = NeuronSpec {
            output: OutputKind::Binary,
            ..spec()
        };
        let round = |step| Fire {
            spike: Spike::Sigmoid4x,
            quant: Quant::Round(step),
        };
        assert!(with_traces(&firing, &round(1.0), Edge));
        assert!(!with_traces(&spec(), &round(1.0), Edge)); // not firing
        for other in [
            round(0.5),
            SIG,
            HEAVI,
            Fire {
                spike: Spike::Heaviside,
                quant: Quant::Round(1.0),
            },
            Fire {
                spike: Spike::Sigmoid4x,
                quant: Quant::StochasticRound(1.0),
            },
        ] {
            assert!(!with_traces(&firing, &other, Edge), "{other:?}");
        }
    }

    /// The bases are found whatever the averaging of traces a layer does
    /// not keep, and each base's fixed spec updates its neurons bit for bit
    /// as the spec read at run time does.
    #[test]
    fn fixed_specs_update_as_read_at_run_time() {
        struct Steps(NeuronSpec, Fire);
        impl ForTraces for Steps {
            type Output = Vec<u32>;
            fn run<T: Traces>(self) -> Vec<u32> {
                let Steps(spec, fire) = self;
                let o = Ops(pulp::Scalar::new());
                let mut rng = Rng::new(3);
                let mut params = [0.0; NPARAM];
                for (k, p) in params.iter_mut().enumerate() {
                    *p = 0.3 + 0.05 * k as f32;
                }
                let mut s = [0.0f32; NSLOT];
                let mut seen = Vec::new();
                for t in 0..12 {
                    let x = 2.5 * ((t * 7 % 5) as f32 - 2.0);
                    let mut uniform = || rng.uniform();
                    let y = update::<_, T>(o, &spec, &fire, |k| params[k], &mut uniform, &mut s, x);
                    seen.extend(std::iter::once(y).chain(s).map(f32::to_bits));
                }
                seen
            }
        }
        for bits in 0..8 {
            let (d, sy, r) = (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
            for base in BASES {
                let Some(fixed) = fixed_spec(d, sy, r, base) else {
                    assert!(d && base >= LIF, "family B has no dual traces");
                    continue;
                };
                assert_eq!(base_of(&fixed), base, "{fixed:?}");
                let loose = NeuronSpec {
                    syn_ema: fixed.syn_ema && sy,
                    rec_ema: fixed.rec_ema && r,
                    ..fixed
                };
                assert_eq!(base_of(&loose), base, "{loose:?}");
                let other = NeuronSpec {
                    mem_ema: !fixed.mem_ema,
                    ..fixed
                };
                assert_eq!(base_of(&other), ANY_BASE, "{other:?}");
                for fire in [SIG, HEAVI] {
                    let general = with_shape::<false, ANY_BASE, _>(&fixed, Steps(fixed, fire));
                    let known = match base {
                        LI => with_shape::<false, LI, _>(&fixed, Steps(fixed, fire)),
                        LIB => with_shape::<false, LIB, _>(&fixed, Steps(fixed, fire)),
                        LIT => with_shape::<false, LIT, _>(&fixed, Steps(fixed, fire)),
                        LITS => with_shape::<false, LITS, _>(&fixed, Steps(fixed, fire)),
                        LIF => with_shape::<false, LIF, _>(&fixed, Steps(fixed, fire)),
                        BLIF => with_shape::<false, BLIF, _>(&fixed, Steps(fixed, fire)),
                        _ => with_shape::<false, READOUT, _>(&fixed, Steps(fixed, fire)),
                    };
                    assert_eq!(general, known, "{fixed:?} {fire:?}");
                    // The spikes fired: a test of constant outputs would hide a wrong spec.
                    assert!(
                        known
                            .iter()
                            .step_by(NSLOT + 1)
                            .collect::<std::collections::HashSet<_>>()
                            .len()
                            > 1
                    );
                }
            }
        }
    }

    /// Every layer the Python package exports (`tests/golden.safetensors`
    /// holds one of each) runs with its spec fixed, but the `LIEMA` family,
    /// left to run time: a default changed on either side would otherwise
    /// only make those layers slower, which no other test sees.
    #[test]
    fn every_exported_layer_but_liema_has_a_fixed_spec() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/golden.safetensors"
        ))
        .unwrap();
        let golden = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut layers = 0;
        for name in golden.names() {
            let Some(case) = name.strip_suffix("/model") else {
                continue;
            };
            if case.starts_with("model_") {
                continue;
            }
            let plan = crate::plan::Plan::from_bytes(golden.tensor(name).unwrap().data()).unwrap();
            for layer in &plan.neurons {
                let fixed = layer.variant.base != ANY_BASE;
                assert_eq!(fixed, !case.contains("LIEMA"), "{case}: {:?}", layer.spec);
                layers += 1;
            }
        }
        assert!(layers >= 44, "{layers} layers");
    }

    #[test]
    fn li_doc_example() {
        // neuron_step docstring: beta 0.5, x = 1 -> 1, then 1.5.
        let mut p = [0.0; NPARAM];
        p[BETA] = 0.5;
        let mut s = [0.0; NSLOT];
        let mut rng = Rng::new(0);
        let sp = spec();
        assert_eq!(neuron_update(&sp, &SIG, &mut rng, &p, &mut s, 1.0), 1.0);
        assert_eq!(neuron_update(&sp, &SIG, &mut rng, &p, &mut s, 1.0), 1.5);
    }

    #[test]
    fn lib_three_steps() {
        // LIB: beta 0.9, threshold 1, bias 0.2, sigmoid4x spikes.
        let sp = NeuronSpec {
            bias: BiasSite::Spike,
            output: OutputKind::Binary,
            ..spec()
        };
        let mut p = [0.0; NPARAM];
        p[BETA] = 0.9;
        p[POS_THRESHOLD] = 1.0;
        p[BIAS] = 0.2;
        let mut s = [0.0; NSLOT];
        let mut rng = Rng::new(0);
        let mut mem = 0.0f64;
        for x in [0.5f64, 1.0, -0.3] {
            mem = 0.9 * mem + x;
            let spk = sig4(mem - 1.0 + 0.2);
            mem -= spk * 1.0;
            let out = neuron_update(&sp, &SIG, &mut rng, &p, &mut s, x as f32);
            close(out, spk);
            close(s[MEM], mem);
        }
        // step 1 by hand: mem 0.5, u = -0.3, spike = 1/(1+e^1.2) = 0.231475...
        let mut s = [0.0; NSLOT];
        close(
            neuron_update(&sp, &SIG, &mut rng, &p, &mut s, 0.5),
            0.231_475_216_5,
        );
        close(s[MEM], 0.5 - 0.231_475_216_5);
    }

    #[test]
    fn dsrlits_two_steps() {
        // DSRLITS: dual, synaptic, recurrent, ternary, scaled, spike bias.
        let sp = NeuronSpec {
            dual: true,
            synaptic: true,
            recurrent: true,
            bias: BiasSite::Spike,
            output: OutputKind::Ternary,
            scaled: true,
            ..spec()
        };
        let (pa, na, pb, nb, pg, ng) = (0.5, 0.6, 0.9, 0.8, 0.7, 0.4);
        let (pt, nt, bias, ps, ns, prw, nrw) = (1.0, 0.8, 0.1, 2.0, 3.0, 0.5, -0.25);
        let mut p = [0.0f32; NPARAM];
        for (i, v) in [
            (POS_ALPHA, pa),
            (NEG_ALPHA, na),
            (POS_BETA, pb),
            (NEG_BETA, nb),
            (POS_GAMMA, pg),
            (NEG_GAMMA, ng),
            (POS_THRESHOLD, pt),
            (NEG_THRESHOLD, nt),
            (BIAS, bias),
            (POS_SCALE, ps),
            (NEG_SCALE, ns),
            (POS_REC_WEIGHT, prw),
            (NEG_REC_WEIGHT, nrw),
        ] {
            p[i] = v as f32;
        }
        let mut s = [0.0f32; NSLOT];
        let mut rng = Rng::new(0);
        // Reference in f64 straight from layers.md.
        let (mut psyn, mut nsyn, mut pmem, mut nmem, mut prec, mut nrec, mut o) =
            (0.0f64, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        let pp = |v: f64| v.max(0.0);
        let nn = |v: f64| v.min(0.0);
        for x in [2.0f64, -3.0, 0.7] {
            psyn = pa * psyn + (1.0 - pa) * pp(x);
            nsyn = na * nsyn + (1.0 - na) * nn(x);
            let i = psyn + nsyn;
            prec = pg * prec + (1.0 - pg) * pp(o);
            nrec = ng * nrec + (1.0 - ng) * nn(o);
            let r = prec + nrec;
            let dpos = prw * pp(r) + pp(i);
            let dneg = nrw * nn(r) + nn(i);
            pmem = pb * pmem + dpos;
            nmem = nb * nmem + dneg;
            let m = pmem + nmem;
            let spk_p = sig4(m - pt + bias);
            let spk_n = -sig4(-nt - m - bias);
            pmem -= 0.5 * spk_p * pt;
            nmem -= 0.5 * spk_p * pt;
            pmem -= 0.5 * spk_n * nt;
            nmem -= 0.5 * spk_n * nt;
            o = ps * spk_p + ns * spk_n;
            let out = neuron_update(&sp, &SIG, &mut rng, &p, &mut s, x as f32);
            close(out, o);
            close(s[SYN], psyn);
            close(s[SYN_NEG], nsyn);
            close(s[MEM], pmem);
            close(s[MEM_NEG], nmem);
            close(s[REC], prec);
            close(s[REC_NEG], nrec);
            close(s[PREV], o);
        }
    }

    #[test]
    fn family_b_blif_ternary() {
        // BLIF: beta 0.5, thresholds 1 and 0.5, scales 2 and 3, Heaviside,
        // negative spike sees the membrane after the positive reset.
        let sp = NeuronSpec {
            output: OutputKind::Ternary,
            scaled: true,
            neg_sees_pos_reset: true,
            ..spec()
        };
        let mut p = [0.0; NPARAM];
        p[BETA] = 0.5;
        p[POS_THRESHOLD] = 1.0;
        p[NEG_THRESHOLD] = 0.5;
        p[POS_SCALE] = 2.0;
        p[NEG_SCALE] = 3.0;
        let mut s = [0.0; NSLOT];
        let mut rng = Rng::new(0);
        // x=1.5: mem 1.5 > 1 -> sp 1, mem 0.5; -0.5 - 0.5 < 0 -> sn 0; out 2.
        assert_eq!(neuron_update(&sp, &HEAVI, &mut rng, &p, &mut s, 1.5), 2.0);
        assert_eq!(s[MEM], 0.5);
        // x=-1.5: mem 0.25 - 1.5 = -1.25; no sp; -0.5 + 1.25 > 0 -> sn -1;
        // mem -1.25 + 0.5 = -0.75; out -3.
        assert_eq!(neuron_update(&sp, &HEAVI, &mut rng, &p, &mut s, -1.5), -3.0);
        assert_eq!(s[MEM], -0.75);
        // x=0: mem -0.375; no spike either way (-0.5 + 0.375 < 0).
        assert_eq!(neuron_update(&sp, &HEAVI, &mut rng, &p, &mut s, 0.0), 0.0);
        assert_eq!(s[MEM], -0.375);
    }

    #[test]
    fn neg_sees_pos_reset_matters() {
        // With a soft spike the positive reset changes the membrane the negative
        // spike sees: family A sees m, family B sees m - sp*pos_threshold.
        let base = NeuronSpec {
            output: OutputKind::Ternary,
            ..spec()
        };
        let mut p = [0.0; NPARAM];
        p[BETA] = 0.5;
        p[POS_THRESHOLD] = 1.0;
        p[NEG_THRESHOLD] = 0.1;
        let mut rng = Rng::new(0);
        // m = 1: sp = sigmoid(0) = 0.5; family A: sn = -sigmoid(4*(-0.1 - 1)).
        let mut s = [0.0; NSLOT];
        let a = neuron_update(&base, &SIG, &mut rng, &p, &mut s, 1.0);
        close(a, 0.5 - sig4(-1.1));
        // Family B sees 1 - 0.5 = 0.5: sn = -sigmoid(4*(-0.6)).
        let b_spec = NeuronSpec {
            neg_sees_pos_reset: true,
            ..base
        };
        let mut s = [0.0; NSLOT];
        let b = neuron_update(&b_spec, &SIG, &mut rng, &p, &mut s, 1.0);
        close(b, 0.5 - sig4(-0.6));
        assert!((a - b).abs() > 0.05);
        close(s[MEM], 0.5 + sig4(-0.6) * 0.1);
    }

    #[test]
    fn recurrent_lif_with_drive_bias_and_ema() {
        // SRLIF-like family B: alpha 0.5 (ema), gamma 0.5 (ema), beta 0.5 (no ema),
        // rec_weight 2, drive bias 0.25, threshold 1, Heaviside binary.
        let sp = NeuronSpec {
            synaptic: true,
            recurrent: true,
            bias: BiasSite::Drive,
            output: OutputKind::Binary,
            ..spec()
        };
        let mut p = [0.0; NPARAM];
        p[ALPHA] = 0.5;
        p[BETA] = 0.5;
        p[GAMMA] = 0.5;
        p[REC_WEIGHT] = 2.0;
        p[BIAS] = 0.25;
        p[POS_THRESHOLD] = 1.0;
        let mut s = [0.0; NSLOT];
        let mut rng = Rng::new(0);
        // t1: syn 1, rec 0, drive 1.25, mem 1.25 -> spike, mem 0.25, o 1.
        assert_eq!(neuron_update(&sp, &HEAVI, &mut rng, &p, &mut s, 2.0), 1.0);
        assert_eq!((s[SYN], s[MEM], s[REC], s[PREV]), (1.0, 0.25, 0.0, 1.0));
        // t2: syn 0.5, rec 0.5, drive 0.5 + 1 + 0.25 = 1.75, mem 1.875 -> spike, 0.875.
        assert_eq!(neuron_update(&sp, &HEAVI, &mut rng, &p, &mut s, 0.0), 1.0);
        assert_eq!((s[SYN], s[MEM], s[REC], s[PREV]), (0.5, 0.875, 0.5, 1.0));
        // t3 with x = -4: syn -1.75, rec 0.75, drive -1.75 + 1.5 + 0.25 = 0,
        // mem 0.4375 -> no spike.
        assert_eq!(neuron_update(&sp, &HEAVI, &mut rng, &p, &mut s, -4.0), 0.0);
        assert_eq!(
            (s[SYN], s[MEM], s[REC], s[PREV]),
            (-1.75, 0.4375, 0.75, 0.0)
        );
    }

    #[test]
    fn liema_averages() {
        let sp = NeuronSpec {
            mem_ema: true,
            ..spec()
        };
        let mut p = [0.0; NPARAM];
        p[BETA] = 0.75;
        let mut s = [0.0; NSLOT];
        let mut rng = Rng::new(0);
        assert_eq!(neuron_update(&sp, &SIG, &mut rng, &p, &mut s, 4.0), 1.0);
        assert_eq!(neuron_update(&sp, &SIG, &mut rng, &p, &mut s, 4.0), 1.75);
    }

    #[test]
    fn quantizers() {
        let mut rng = Rng::new(1);
        let round = |step: f32, u: f32, rng: &mut Rng| {
            let f = Fire {
                spike: Spike::Sigmoid4x,
                quant: Quant::Round(step),
            };
            f.apply(u, rng)
        };
        // sigmoid(0) = 0.5 -> round half to even -> 0 with step 1; 0.5 with step 0.5.
        assert_eq!(round(1.0, 0.0, &mut rng), 0.0);
        assert_eq!(round(0.5, 0.0, &mut rng), 0.5);
        // sigmoid(4*10) ~ 1 -> 1; sigmoid(4*0.25) = 0.731 -> 1 with step 1, 0.75 with 0.25.
        assert_eq!(round(1.0, 10.0, &mut rng), 1.0);
        assert_eq!(round(0.25, 0.25, &mut rng), 0.75);
        // 2.5 / 1 rounds to 2 (half to even): check the arm directly.
        assert_eq!((2.5f32 / 1.0).round_ties_even(), 2.0);

        // Stochastic rounding of sigmoid(0) = 0.5 with step 1: 0 or 1, about half each.
        let f = Fire {
            spike: Spike::Sigmoid4x,
            quant: Quant::StochasticRound(1.0),
        };
        let ones: f32 = (0..4000).map(|_| f.apply(0.0, &mut rng)).sum();
        assert!((ones / 4000.0 - 0.5).abs() < 0.05, "{ones}");
        // Heaviside spikes are exact multiples: stochastic rounding keeps them.
        let f = Fire {
            spike: Spike::Heaviside,
            quant: Quant::StochasticRound(0.5),
        };
        assert_eq!(f.apply(1.0, &mut rng), 1.0);
        assert_eq!(f.apply(-1.0, &mut rng), 0.0);

        // Probabilistic: u * bernoulli(u); sigmoid(4*0.25) = 0.7311 fires about 73%.
        let f = Fire {
            spike: Spike::Sigmoid4x,
            quant: Quant::Probabilistic,
        };
        let p = sig4(0.25) as f32;
        let mut fired = 0;
        for _ in 0..4000 {
            let v = f.apply(0.25, &mut rng);
            assert!(v == 0.0 || (v - p).abs() < 1e-6);
            fired += usize::from(v != 0.0);
        }
        assert!((fired as f32 / 4000.0 - p).abs() < 0.05);
    }

    #[test]
    fn sigmoid_saturates_without_nan() {
        assert_eq!(sigmoid(1000.0), 1.0);
        assert_eq!(sigmoid(-1000.0), 0.0);
        close(sigmoid(0.3), 1.0 / (1.0 + (-0.3f64).exp()));
        assert!(sigmoid(f32::NAN).is_nan());
    }

    #[test]
    fn names_follow_python_order() {
        let dsr = NeuronSpec {
            dual: true,
            synaptic: true,
            recurrent: true,
            bias: BiasSite::Spike,
            output: OutputKind::Ternary,
            scaled: true,
            ..spec()
        };
        let names: Vec<&str> = dsr.states().iter().map(|s| s.0).collect();
        assert_eq!(
            names,
            [
                "pos_syn",
                "neg_syn",
                "pos_mem",
                "neg_mem",
                "pos_rec",
                "neg_rec",
                "prev_output"
            ]
        );
        let params: Vec<&str> = dsr.parameters().iter().map(|&i| PARAM_NAMES[i]).collect();
        assert_eq!(
            params,
            [
                "pos_alpha",
                "neg_alpha",
                "pos_beta",
                "neg_beta",
                "pos_gamma",
                "neg_gamma",
                "pos_rec_weight",
                "neg_rec_weight",
                "pos_threshold",
                "neg_threshold",
                "bias",
                "pos_scale",
                "neg_scale"
            ]
        );
        let lib = NeuronSpec {
            bias: BiasSite::Spike,
            output: OutputKind::Binary,
            ..spec()
        };
        let params: Vec<&str> = lib.parameters().iter().map(|&i| PARAM_NAMES[i]).collect();
        assert_eq!(params, ["beta", "pos_threshold", "bias"]);
    }

    /// The vector math of the core, lane by lane against the standard
    /// library, on every instruction set this CPU runs.
    #[test]
    fn vector_math_matches_std_on_every_isa() {
        struct Check(Vec<f32>);
        impl WithSimd for Check {
            type Output = ();
            #[inline(always)]
            fn with_simd<S: Simd>(self, simd: S) {
                let o = Ops(simd);
                for chunk in self.0.chunks(S::F32_LANES) {
                    let v = simd.partial_load_f32s(chunk);
                    let mut got = [[0.0f32; 16]; 4];
                    let outs = [o.exp(v), o.round_even(v), o.floor(v), o.sigmoid(v)];
                    for (g, r) in got.iter_mut().zip(outs) {
                        simd.partial_store_f32s(&mut g[..chunk.len()], r);
                    }
                    for (i, &x) in chunk.iter().enumerate() {
                        let e = f64::from(x).exp();
                        let (ge, gr, gf, gs) = (got[0][i], got[1][i], got[2][i], got[3][i]);
                        if x.is_nan() {
                            assert!(ge.is_nan() && gr.is_nan() && gf.is_nan() && gs.is_nan());
                            continue;
                        }
                        if x > 88.72 {
                            assert_eq!(ge, f32::INFINITY);
                        } else if x > 88.3 {
                            assert!(ge >= 2.2e38, "exp({x}) = {ge}");
                        } else if x >= -86.0 {
                            assert!((f64::from(ge) - e).abs() <= 2.5e-7 * e, "exp({x}) = {ge}");
                        } else {
                            assert_eq!(ge, 0.0, "exp({x})");
                        }
                        assert_eq!(gr.to_bits(), x.round_ties_even().to_bits(), "round({x})");
                        assert_eq!(gf.to_bits(), x.floor().to_bits(), "floor({x})");
                        let sig = 1.0 / (1.0 + (-f64::from(x)).exp());
                        assert!(
                            (f64::from(gs) - sig).abs() <= 3e-7 * sig + 1e-37,
                            "sigmoid({x})"
                        );
                    }
                }
            }
        }
        let mut rng = Rng::new(3);
        let mut values: Vec<f32> = (0..4000).map(|_| (rng.uniform() - 0.5) * 200.0).collect();
        values.extend((0..2000).map(|_| (rng.uniform() - 0.5) * 6.0));
        values.extend([
            0.0,
            -0.0,
            0.5,
            1.5,
            2.5,
            -0.5,
            -2.5,
            8_388_607.5,
            8_388_608.0,
            -1e30,
            1e30,
            88.72,
            88.73,
            -86.0,
            -86.1,
            f32::MAX,
            f32::MIN,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e-40,
            -1e-40,
        ]);
        for isa in Isa::available() {
            Kernels::new(isa).unwrap().dispatch(Check(values.clone()));
        }
    }

    /// The comparison that stands for `round(sigmoid(4u))` gives what the
    /// evaluated spike gives, bit for bit, on every instruction set.
    #[test]
    fn binary_spike_shortcut_matches_the_evaluated_spike() {
        let fire = Fire {
            spike: Spike::Sigmoid4x,
            quant: Quant::Round(1.0),
        };
        // ROUND_EDGE is the first float that fires (bisection, scalar lane).
        let evaluated =
            |u: f32| Ops(pulp::Scalar::new()).fire_evaluated(&fire, u, &mut || unreachable!());
        let (mut off, mut on) = (0u32, 1e-3f32.to_bits());
        assert_eq!((evaluated(0.0), evaluated(1e-3)), (0.0, 1.0));
        while on - off > 1 {
            let mid = off + (on - off) / 2;
            if evaluated(f32::from_bits(mid)) == 1.0 {
                on = mid;
            } else {
                off = mid;
            }
        }
        assert_eq!(on, ROUND_EDGE.to_bits());

        struct Check(Vec<f32>, Fire);
        impl WithSimd for Check {
            type Output = ();
            #[inline(always)]
            fn with_simd<S: Simd>(self, simd: S) {
                let o = Ops(simd);
                for chunk in self.0.chunks(S::F32_LANES) {
                    let v = simd.partial_load_f32s(chunk);
                    let (mut fast, mut slow) = ([0.0f32; 16], [0.0f32; 16]);
                    let never = &mut || unreachable!();
                    simd.partial_store_f32s(&mut fast[..chunk.len()], o.edge_spike(v));
                    let evaluated = o.fire_evaluated(&self.1, v, never);
                    simd.partial_store_f32s(&mut slow[..chunk.len()], evaluated);
                    for (i, &u) in chunk.iter().enumerate() {
                        assert_eq!(fast[i].to_bits(), slow[i].to_bits(), "u = {u:e}");
                    }
                }
            }
        }
        let edge = ROUND_EDGE.to_bits();
        let mut values: Vec<f32> = (edge - 20_000..edge + 20_000).map(f32::from_bits).collect();
        values.extend((0..20_000u32).map(|b| -f32::from_bits(edge - 10_000 + b)));
        let mut rng = Rng::new(5);
        values.extend((0..20_000).map(|_| (rng.uniform() - 0.5) * 20.0));
        values.extend((0..20_000).map(|_| (rng.uniform() - 0.5) * 1e-6));
        values.extend([
            0.0,
            -0.0,
            1e-40,
            -1e-40,
            f32::MIN_POSITIVE,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ]);
        for isa in Isa::available() {
            Kernels::new(isa)
                .unwrap()
                .dispatch(Check(values.clone(), fire));
        }
    }

    /// The whole-layer sweep on every instruction set gives what the
    /// scalar update gives neuron by neuron, on every layout it takes
    /// apart (a channel per lane, channels of whole vectors, channels that
    /// are not, partial vectors, several rows), for every set of traces;
    /// a binary layer with a stochastic quantizer draws in neuron order.
    #[test]
    fn sweep_matches_the_update_of_each_neuron() {
        let layouts = [(1, 1, 1), (7, 1, 2), (8, 1, 1), (17, 1, 3), (40, 1, 2)];
        let layouts = layouts
            .iter()
            .chain(&[(2, 8, 2), (3, 16, 1), (3, 5, 2), (2, 3, 1)]);
        // Miri (which checks the unchecked reads and writes) is slow: a
        // channel per lane and channels over positions, fewest and most traces.
        let (layouts, shapes): (Vec<_>, &[usize]) = match cfg!(miri) {
            true => (vec![&(7, 1, 2), &(3, 5, 2)], &[0, 7]),
            false => (layouts.collect(), &[0, 1, 2, 3, 4, 5, 6, 7]),
        };
        let fires = [
            Fire {
                spike: Spike::Sigmoid4x,
                quant: Quant::Round(1.0),
            },
            Fire {
                spike: Spike::Sigmoid4x,
                quant: Quant::StochasticRound(0.5),
            },
        ];
        for &(c_len, inner, rows) in layouts {
            for &shape in shapes {
                for fire in fires {
                    // Ternary layers draw twice per neuron, a vector's
                    // lanes at a time: only binary ones draw in neuron order.
                    let stochastic = matches!(fire.quant, Quant::StochasticRound(_));
                    let spec = NeuronSpec {
                        dual: shape & 1 != 0,
                        synaptic: shape & 2 != 0,
                        recurrent: shape & 4 != 0,
                        bias: BiasSite::Spike,
                        output: if stochastic {
                            OutputKind::Binary
                        } else {
                            OutputKind::Ternary
                        },
                        scaled: true,
                        ..spec()
                    };
                    let mut rng = Rng::new(c_len as u64 * 100 + inner as u64);
                    let params: Vec<ParamRow> = (0..c_len)
                        .map(|_| std::array::from_fn(|_| 0.05 + 0.9 * rng.uniform()))
                        .collect();
                    let layer = NeuronLayer::new(spec, fire, params.clone(), inner);
                    let n = rows * c_len * inner;
                    let xs: Vec<Vec<f32>> = (0..3)
                        .map(|_| (0..n).map(|_| 4.0 * rng.uniform() - 2.0).collect())
                        .collect();
                    // Reference: one neuron at a time, in order.
                    let mut want_rng = Rng::new(9);
                    let mut want_s = vec![[0.0f32; NSLOT]; n];
                    let mut want = vec![];
                    for x in &xs {
                        want.push(
                            (0..n)
                                .map(|i| {
                                    let row = &params[i / inner % c_len];
                                    neuron_update(
                                        &spec,
                                        &fire,
                                        &mut want_rng,
                                        row,
                                        &mut want_s[i],
                                        x[i],
                                    )
                                })
                                .collect::<Vec<f32>>(),
                        );
                    }
                    for isa in Isa::available() {
                        let k = Kernels::new(isa).unwrap();
                        let mut got_rng = Rng::new(9);
                        let slots: Vec<usize> = spec.states().iter().map(|s| s.1).collect();
                        let mut states: [Vec<f32>; NSLOT] = Default::default();
                        for &slot in &slots {
                            states[slot] = vec![0.0; n];
                        }
                        for (x, want) in xs.iter().zip(&want) {
                            let mut out = vec![0.0; n];
                            let slots = states.each_mut().map(Vec::as_mut_slice);
                            neuron_kernel(&k, &layer, &mut got_rng, x, &mut out, slots);
                            for i in 0..n {
                                let at = format!(
                                    "{isa} {c_len}x{inner}x{rows} {spec:?} {fire:?} at {i}"
                                );
                                assert!(
                                    (out[i] - want[i]).abs() <= 1e-5,
                                    "{at}: {} vs {}",
                                    out[i],
                                    want[i]
                                );
                            }
                        }
                        for &slot in &slots {
                            for i in 0..n {
                                let (got, want) = (states[slot][i], want_s[i][slot]);
                                assert!(
                                    (got - want).abs() <= 1e-5,
                                    "{isa} slot {slot} at {i}: {got} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
