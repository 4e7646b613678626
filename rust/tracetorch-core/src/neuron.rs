//! The one neuron core: a mirror of `neuron_step` in `tracetorch/neuron.py`.
//!
//! Every traceTorch layer of both families is a [`NeuronSpec`] plus parameter
//! values; [`neuron_kernel`] runs one timestep of any spec, operation for
//! operation in the same order as the PyTorch code so that results agree to
//! float rounding.

use serde::Deserialize;

use crate::rng::Rng;

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
    #[inline(always)]
    fn apply(&self, u: f32, rng: &mut Rng) -> f32 {
        let s = match self.spike {
            Spike::Sigmoid4x => sigmoid(4.0 * u),
            Spike::Heaviside => {
                if u > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
        };
        match self.quant {
            Quant::Identity => s,
            Quant::Round(step) => (s / step).round_ties_even() * step,
            Quant::StochasticRound(step) => {
                let scaled = s / step;
                let low = scaled.floor();
                let up = if rng.uniform() < scaled - low {
                    1.0
                } else {
                    0.0
                };
                (low + up) * step
            }
            Quant::Probabilistic => {
                let p = s.clamp(0.0, 1.0);
                let draw = if rng.uniform() < p { 1.0 } else { 0.0 };
                s * draw
            }
        }
    }
}

/// `1 / (1 + exp(-x))`; saturates to exactly 0 or 1 without overflow trouble.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
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
    /// Slots in use, in state order.
    pub(crate) slots: Vec<usize>,
    /// Product of the sample axes after the neuron axis.
    pub(crate) inner: usize,
}

#[inline(always)]
fn pos(v: f32) -> f32 {
    // torch.clamp(v, min=0): NaN stays NaN.
    if v < 0.0 {
        0.0
    } else {
        v
    }
}

#[inline(always)]
fn neg(v: f32) -> f32 {
    if v > 0.0 {
        0.0
    } else {
        v
    }
}

/// `_trace`: `drive + decay*(old - drive)` when averaging, else `drive + decay*old`.
#[inline(always)]
fn trace(old: f32, decay: f32, ema: bool, drive: f32) -> f32 {
    if ema {
        drive + decay * (old - drive)
    } else {
        drive + decay * old
    }
}

/// One timestep of one neuron: `neuron_step` for a single element.
///
/// `s` holds the neuron's states by slot and is updated in place.
#[inline(always)]
pub(crate) fn neuron_update(
    spec: &NeuronSpec,
    fire: &Fire,
    rng: &mut Rng,
    p: &ParamRow,
    s: &mut [f32; NSLOT],
    x: f32,
) -> f32 {
    let dual = spec.dual;

    // 1. Input current.
    let current = if spec.synaptic {
        if dual {
            let ps = trace(s[SYN], p[POS_ALPHA], spec.syn_ema, pos(x));
            let ns = trace(s[SYN_NEG], p[NEG_ALPHA], spec.syn_ema, neg(x));
            s[SYN] = ps;
            s[SYN_NEG] = ns;
            ps + ns
        } else {
            let syn = trace(s[SYN], p[ALPHA], spec.syn_ema, x);
            s[SYN] = syn;
            syn
        }
    } else {
        x
    };

    // 2. Membrane drive.
    let mut drive = 0.0;
    let mut drive_pos = 0.0;
    let mut drive_neg = 0.0;
    if spec.recurrent {
        let prev = s[PREV];
        if dual {
            let pr = trace(s[REC], p[POS_GAMMA], spec.rec_ema, pos(prev));
            let nr = trace(s[REC_NEG], p[NEG_GAMMA], spec.rec_ema, neg(prev));
            s[REC] = pr;
            s[REC_NEG] = nr;
            let rec = pr + nr;
            drive_pos = pos(current) + p[POS_REC_WEIGHT] * pos(rec);
            drive_neg = neg(current) + p[NEG_REC_WEIGHT] * neg(rec);
        } else {
            let rec = trace(s[REC], p[GAMMA], spec.rec_ema, prev);
            s[REC] = rec;
            drive = current + p[REC_WEIGHT] * rec;
        }
    } else if dual {
        drive_pos = pos(current);
        drive_neg = neg(current);
    } else {
        drive = current;
    }
    if spec.bias == BiasSite::Drive {
        drive += p[BIAS];
    }

    // 3. Membrane.
    let mut pos_mem = 0.0;
    let mut neg_mem = 0.0;
    let mut membrane;
    if dual {
        pos_mem = trace(s[MEM], p[POS_BETA], spec.mem_ema, drive_pos);
        neg_mem = trace(s[MEM_NEG], p[NEG_BETA], spec.mem_ema, drive_neg);
        membrane = pos_mem + neg_mem;
    } else {
        membrane = trace(s[MEM], p[BETA], spec.mem_ema, drive);
    }

    // 4. Output and reset.
    let out;
    if !spec.fires() {
        out = membrane;
    } else {
        let spike_bias = spec.bias == BiasSite::Spike;
        let pos_threshold = p[POS_THRESHOLD];
        let offset = if spike_bias {
            p[BIAS] - pos_threshold
        } else {
            -pos_threshold
        };
        let spike_pos = fire.apply(membrane + offset, rng);
        let mut reset_membrane = 0.0;
        if dual {
            let half = 0.5 * pos_threshold;
            pos_mem -= spike_pos * half;
            neg_mem -= spike_pos * half;
        } else {
            reset_membrane = membrane - spike_pos * pos_threshold;
        }
        if spec.output == OutputKind::Ternary {
            let neg_threshold = p[NEG_THRESHOLD];
            let seen = if spec.neg_sees_pos_reset {
                reset_membrane
            } else {
                membrane
            };
            let limit = if spike_bias {
                -neg_threshold - p[BIAS]
            } else {
                -neg_threshold
            };
            let spike_neg = -fire.apply(limit - seen, rng);
            if dual {
                let half = 0.5 * neg_threshold;
                pos_mem -= spike_neg * half;
                neg_mem -= spike_neg * half;
            } else {
                reset_membrane -= spike_neg * neg_threshold;
            }
            out = if spec.scaled {
                p[POS_SCALE] * spike_pos + p[NEG_SCALE] * spike_neg
            } else {
                spike_pos + spike_neg
            };
        } else {
            out = if spec.scaled {
                p[POS_SCALE] * spike_pos
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
    if spec.recurrent {
        s[PREV] = out;
    }
    out
}

impl NeuronLayer {
    /// Whether the outputs are spikes (mostly exact zeros): a hard spike
    /// function or a quantizer after the surrogate.
    pub(crate) fn emits_spikes(&self) -> bool {
        self.spec.fires()
            && (self.fire.spike == Spike::Heaviside || self.fire.quant != Quant::Identity)
    }
}

/// Runs one timestep of a neuron layer over a whole buffer.
///
/// `x`, `out` and every used state slot are laid out `[rows, C, inner]` (the
/// sample layout with streams folded into `rows`); parameters vary along `C`.
pub(crate) fn neuron_kernel(
    layer: &NeuronLayer,
    rng: &mut Rng,
    x: &[f32],
    out: &mut [f32],
    states: &mut [Vec<f32>; NSLOT],
) {
    let c_len = layer.params.len();
    let inner = layer.inner;
    let block = c_len * inner;
    if block == 0 {
        return;
    }
    let rows = x.len() / block;
    let mut s = [0.0f32; NSLOT];
    for r in 0..rows {
        for (c, p) in layer.params.iter().enumerate() {
            let base = (r * c_len + c) * inner;
            for j in base..base + inner {
                for &k in &layer.slots {
                    s[k] = states[k][j];
                }
                out[j] = neuron_update(&layer.spec, &layer.fire, rng, p, &mut s, x[j]);
                for &k in &layer.slots {
                    states[k][j] = s[k];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
