//! SIMD kernels, written once over pulp's portable vector type and dispatched
//! at run time to AVX-512, AVX2+FMA, NEON or plain scalar code.
//!
//! The instruction set is chosen once, when an engine is built, from what the
//! CPU supports and the `TRACETORCH_SIMD` environment variable (`auto`,
//! `scalar`, `avx2`, `avx512`, `neon`). A wheel built for plain x86-64 still
//! runs the AVX kernels: pulp compiles each kernel once per instruction set
//! behind `#[target_feature]` and picks one at run time.

use pulp::{Arch, Simd, WithSimd};

use crate::error::{Error, Result};

/// The environment variable that forces an instruction set.
pub const SIMD_ENV: &str = "TRACETORCH_SIMD";

/// An instruction set the kernels can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Plain Rust, one float at a time (every CPU).
    Scalar,
    /// 128-bit NEON (aarch64).
    Neon,
    /// 256-bit AVX2 with FMA (x86-64-v3).
    Avx2,
    /// 512-bit AVX-512 F/BW/CD/DQ/VL (x86-64-v4).
    Avx512,
}

impl Isa {
    /// Every instruction set, in the order of [`Isa::name`]s users may give.
    pub const ALL: [Isa; 4] = [Isa::Scalar, Isa::Neon, Isa::Avx2, Isa::Avx512];

    /// Lower-case name, as `TRACETORCH_SIMD` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Neon => "neon",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Floats per vector register.
    pub fn lanes(self) -> usize {
        match self {
            Isa::Scalar => 1,
            Isa::Neon => 4,
            Isa::Avx2 => 8,
            Isa::Avx512 => 16,
        }
    }

    fn arch(self) -> Option<Arch> {
        match self {
            Isa::Scalar => Some(Arch::Scalar),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => pulp::x86::V3::try_new().map(Arch::V3),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => pulp::x86::V4::try_new().map(Arch::V4),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => pulp::aarch64::Neon::try_new().map(Arch::Neon),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// Whether this CPU runs the instruction set.
    pub fn is_available(self) -> bool {
        self.arch().is_some()
    }

    /// The instruction sets this CPU runs, scalar first, fastest last.
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_available()).collect()
    }

    /// The fastest instruction set this CPU runs.
    pub fn best() -> Isa {
        Isa::ALL
            .into_iter()
            .rev()
            .find(|i| i.is_available())
            .unwrap_or(Isa::Scalar)
    }

    /// Reads a setting: `auto` (or empty) is the fastest available, a name
    /// must be available on this CPU.
    pub fn from_setting(value: &str) -> Result<Isa> {
        let v = value.trim().to_ascii_lowercase();
        if v.is_empty() || v == "auto" {
            return Ok(Isa::best());
        }
        match Isa::ALL.into_iter().find(|i| i.name() == v) {
            Some(isa) if isa.is_available() => Ok(isa),
            _ => Err(Error::SimdSetting {
                value: value.to_string(),
                available: Isa::available().iter().map(|i| i.name()).collect(),
            }),
        }
    }

    /// The instruction set `TRACETORCH_SIMD` asks for (the fastest if unset).
    pub fn from_env() -> Result<Isa> {
        match std::env::var(SIMD_ENV) {
            Ok(v) => Isa::from_setting(&v),
            Err(_) => Ok(Isa::best()),
        }
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The kernels bound to one instruction set (a `Copy` token; dispatch is one
/// `match` per kernel call).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kernels {
    isa: Isa,
    arch: Arch,
}

impl Kernels {
    /// Kernels for `isa`, if this CPU runs it.
    pub(crate) fn new(isa: Isa) -> Option<Kernels> {
        isa.arch().map(|arch| Kernels { isa, arch })
    }

    /// The instruction set in use.
    pub(crate) fn isa(&self) -> Isa {
        self.isa
    }

    /// Runs a kernel written over pulp's `Simd` on this instruction set.
    #[inline(always)]
    pub(crate) fn dispatch<Op: WithSimd>(&self, op: Op) -> Op::Output {
        self.arch.dispatch(op)
    }

    /// Dense linear layer over `rows = x.len() / inp` rows:
    /// `y[r, o] = w[o, :] · x[r, :] + bias[o]`, with `w` as `[out, inp]`.
    pub(crate) fn linear(
        &self,
        x: &[f32],
        y: &mut [f32],
        w: &[f32],
        bias: Option<&[f32]>,
        inp: usize,
        out: usize,
    ) {
        if out == 0 {
            return;
        }
        if inp == 0 {
            // An empty sum: the bias alone.
            for yr in y.chunks_exact_mut(out) {
                match bias {
                    Some(b) => yr.copy_from_slice(b),
                    None => yr.fill(0.0),
                }
            }
            return;
        }
        self.arch.dispatch(Linear {
            x,
            y,
            w,
            bias,
            inp,
            out,
        })
    }

    /// Broadcast-accumulate product, the shape of convolutions (after
    /// im2col) and of event-driven layers: for every row `m` of `y`
    /// (`[rows, n]`), `y[m, :] = start + Σ_k a[m, k] · b[k, :]`, where `a` is
    /// `[rows, k]`, `b` is `[k, n]`, and only the `k` listed in `active` are
    /// summed (all of them when `active` is `None`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn outer_accumulate(
        &self,
        y: &mut [f32],
        start: Start<'_>,
        a: &[f32],
        b: &[f32],
        k: usize,
        n: usize,
        active: Option<&[u32]>,
    ) {
        if n == 0 {
            return;
        }
        self.arch.dispatch(Outer {
            y,
            start,
            a,
            b,
            k,
            n,
            active,
        })
    }
}

/// Dot product with four vector accumulators (hides the FMA latency).
#[inline(always)]
fn dot_body<S: Simd>(simd: S, a: &[f32], b: &[f32]) -> f32 {
    let (av, at) = S::as_simd_f32s(a);
    let (bv, bt) = S::as_simd_f32s(b);
    let zero = simd.splat_f32s(0.0);
    let mut acc = [zero; 4];
    let mut ac = av.chunks_exact(4);
    let mut bc = bv.chunks_exact(4);
    for (x, y) in (&mut ac).zip(&mut bc) {
        for j in 0..4 {
            acc[j] = simd.mul_add_e_f32s(x[j], y[j], acc[j]);
        }
    }
    for (x, y) in ac.remainder().iter().zip(bc.remainder()) {
        acc[0] = simd.mul_add_e_f32s(*x, *y, acc[0]);
    }
    let sum = simd.add_f32s(simd.add_f32s(acc[0], acc[1]), simd.add_f32s(acc[2], acc[3]));
    let mut total = simd.reduce_sum_f32s(sum);
    for (x, y) in at.iter().zip(bt) {
        total += x * y;
    }
    total
}

struct Linear<'a> {
    x: &'a [f32],
    y: &'a mut [f32],
    w: &'a [f32],
    bias: Option<&'a [f32]>,
    inp: usize,
    out: usize,
}

/// Output rows computed together: each input vector loaded feeds this many FMAs.
const ROW_BLOCK: usize = 4;

impl WithSimd for Linear<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Linear {
            x,
            y,
            w,
            bias,
            inp,
            out,
        } = self;
        let full = out / ROW_BLOCK * ROW_BLOCK;
        // Row blocks outermost: a block of weights stays in L1 while every
        // stream (input row) passes over it.
        for o in (0..full).step_by(ROW_BLOCK) {
            let wb = &w[o * inp..(o + ROW_BLOCK) * inp];
            let rows: [&[f32]; ROW_BLOCK] = std::array::from_fn(|j| &wb[j * inp..(j + 1) * inp]);
            for (xr, yr) in x.chunks_exact(inp).zip(y.chunks_exact_mut(out)) {
                let d = dot4(simd, rows, xr);
                for j in 0..ROW_BLOCK {
                    yr[o + j] = d[j] + bias.map_or(0.0, |b| b[o + j]);
                }
            }
        }
        for o in full..out {
            let wr = &w[o * inp..(o + 1) * inp];
            for (xr, yr) in x.chunks_exact(inp).zip(y.chunks_exact_mut(out)) {
                yr[o] = dot_body(simd, wr, xr) + bias.map_or(0.0, |b| b[o]);
            }
        }
    }
}

/// Four dot products against one `x`, two vectors deep (eight accumulators).
#[inline(always)]
fn dot4<S: Simd>(simd: S, rows: [&[f32]; ROW_BLOCK], x: &[f32]) -> [f32; ROW_BLOCK] {
    let (xv, xt) = S::as_simd_f32s(x);
    let wv: [&[S::f32s]; ROW_BLOCK] = std::array::from_fn(|j| S::as_simd_f32s(rows[j]).0);
    let zero = simd.splat_f32s(0.0);
    let mut a = [zero; ROW_BLOCK];
    let mut b = [zero; ROW_BLOCK];
    let pairs = xv.len() / 2 * 2;
    let mut i = 0;
    while i < pairs {
        let (x0, x1) = (xv[i], xv[i + 1]);
        for j in 0..ROW_BLOCK {
            a[j] = simd.mul_add_e_f32s(wv[j][i], x0, a[j]);
            b[j] = simd.mul_add_e_f32s(wv[j][i + 1], x1, b[j]);
        }
        i += 2;
    }
    if pairs < xv.len() {
        for j in 0..ROW_BLOCK {
            a[j] = simd.mul_add_e_f32s(wv[j][pairs], xv[pairs], a[j]);
        }
    }
    let done = x.len() - xt.len();
    std::array::from_fn(|j| {
        let mut s = simd.reduce_sum_f32s(simd.add_f32s(a[j], b[j]));
        for (wt, xt) in rows[j][done..].iter().zip(xt) {
            s += wt * xt;
        }
        s
    })
}

/// What [`Kernels::outer_accumulate`] adds the products to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Start<'a> {
    /// Zero.
    Zero,
    /// One value per row (a convolution's bias).
    Row(&'a [f32]),
    /// One value per column (a linear layer's bias).
    Column(&'a [f32]),
}

struct Outer<'a> {
    y: &'a mut [f32],
    start: Start<'a>,
    a: &'a [f32],
    b: &'a [f32],
    k: usize,
    n: usize,
    active: Option<&'a [u32]>,
}

/// Vectors of one output row held in registers across the `k` loop.
const COL_BLOCK: usize = 4;

impl WithSimd for Outer<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Outer {
            y,
            start,
            a,
            b,
            k,
            n,
            active,
        } = self;
        let lanes = S::F32_LANES;
        let block = lanes * COL_BLOCK;
        for (m, ym) in y.chunks_exact_mut(n).enumerate() {
            let row_start = match start {
                Start::Row(v) => v[m],
                _ => 0.0,
            };
            let first = |c: usize, end: usize| match start {
                Start::Column(v) => simd.partial_load_f32s(&v[c..end]),
                _ => simd.splat_f32s(row_start),
            };
            let am = &a[m * k..(m + 1) * k];
            let mut c = 0;
            // Full blocks: COL_BLOCK vectors accumulate in registers.
            while c + block <= n {
                let mut acc: [S::f32s; COL_BLOCK] =
                    std::array::from_fn(|j| first(c + j * lanes, c + (j + 1) * lanes));
                let mut add = |kk: usize| {
                    let coef = simd.splat_f32s(am[kk]);
                    let row = S::as_simd_f32s(&b[kk * n + c..kk * n + c + block]).0;
                    for j in 0..COL_BLOCK {
                        acc[j] = simd.mul_add_e_f32s(coef, row[j], acc[j]);
                    }
                };
                match active {
                    Some(idx) => idx.iter().for_each(|&kk| add(kk as usize)),
                    None => (0..k).for_each(&mut add),
                }
                let dst = S::as_mut_simd_f32s(&mut ym[c..c + block]).0;
                dst.copy_from_slice(&acc);
                c += block;
            }
            // The rest, one (possibly partial) vector at a time.
            while c < n {
                let end = (c + lanes).min(n);
                let mut acc = first(c, end);
                let mut add = |kk: usize| {
                    let coef = simd.splat_f32s(am[kk]);
                    let row = simd.partial_load_f32s(&b[kk * n + c..kk * n + end]);
                    acc = simd.mul_add_e_f32s(coef, row, acc);
                };
                match active {
                    Some(idx) => idx.iter().for_each(|&kk| add(kk as usize)),
                    None => (0..k).for_each(&mut add),
                }
                simd.partial_store_f32s(&mut ym[c..end], acc);
                c = end;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn random(rng: &mut Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.uniform() * 2.0 - 1.0).collect()
    }

    /// Absolute tolerance for a sum of `terms` products of values in [-1, 1]
    /// evaluated in a different order.
    fn tol(terms: usize) -> f32 {
        1e-6 * (terms as f32 + 1.0)
    }

    /// Lengths around every vector width, including 0.
    const LENGTHS: [usize; 16] = [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 65, 131];

    #[test]
    fn setting_parses_and_refuses_unknown_names() {
        assert_eq!(Isa::from_setting("scalar").unwrap(), Isa::Scalar);
        assert_eq!(Isa::from_setting(" AUTO ").unwrap(), Isa::best());
        assert_eq!(Isa::from_setting("").unwrap(), Isa::best());
        let err = Isa::from_setting("sse9").unwrap_err().to_string();
        assert!(
            err.contains("TRACETORCH_SIMD") && err.contains("scalar"),
            "{err}"
        );
        for isa in Isa::ALL {
            assert_eq!(Isa::from_setting(isa.name()).is_ok(), isa.is_available());
        }
        assert!(Isa::available().contains(&Isa::Scalar));
        assert!(Isa::best().is_available());
    }

    /// Every SIMD kernel against its scalar twin and a plain loop, for every
    /// instruction set this CPU runs.
    #[test]
    fn every_kernel_matches_its_scalar_twin() {
        let scalar = Kernels::new(Isa::Scalar).unwrap();
        let mut rng = Rng::new(7);
        for isa in Isa::available() {
            let k = Kernels::new(isa).unwrap();
            assert_eq!(k.isa(), isa);
            for &inp in &LENGTHS {
                for &out in &[1usize, 3, 4, 5, 9, 17] {
                    for rows in [1usize, 3] {
                        let x = random(&mut rng, rows * inp);
                        let w = random(&mut rng, out * inp);
                        let bias = random(&mut rng, out);
                        let mut y = vec![f32::NAN; rows * out];
                        let mut ys = y.clone();
                        k.linear(&x, &mut y, &w, Some(&bias), inp, out);
                        scalar.linear(&x, &mut ys, &w, Some(&bias), inp, out);
                        for r in 0..rows {
                            for o in 0..out {
                                let naive: f32 = (0..inp)
                                    .map(|i| w[o * inp + i] * x[r * inp + i])
                                    .sum::<f32>()
                                    + bias[o];
                                let got = y[r * out + o];
                                assert!((got - naive).abs() <= tol(inp), "{isa} linear");
                                assert!((got - ys[r * out + o]).abs() <= tol(inp));
                            }
                        }
                    }
                }
            }
            for &n in &LENGTHS {
                for kdim in [0usize, 1, 5, 27] {
                    for rows in [1usize, 2] {
                        let a = random(&mut rng, rows * kdim);
                        let b = random(&mut rng, kdim * n);
                        let init = random(&mut rng, rows);
                        // Every other k active, and all of them.
                        let odd: Vec<u32> = (0..kdim as u32).filter(|i| i % 2 == 1).collect();
                        for active in [None, Some(odd.as_slice())] {
                            let mut y = vec![f32::NAN; rows * n];
                            let mut ys = y.clone();
                            let start = Start::Row(&init);
                            k.outer_accumulate(&mut y, start, &a, &b, kdim, n, active);
                            scalar.outer_accumulate(&mut ys, start, &a, &b, kdim, n, active);
                            for m in 0..rows {
                                for c in 0..n {
                                    let naive = init[m]
                                        + (0..kdim)
                                            .filter(|kk| active.is_none() || kk % 2 == 1)
                                            .map(|kk| a[m * kdim + kk] * b[kk * n + c])
                                            .sum::<f32>();
                                    let got = y[m * n + c];
                                    assert!((got - naive).abs() <= tol(kdim), "{isa} outer");
                                    assert!((got - ys[m * n + c]).abs() <= tol(kdim));
                                }
                            }
                        }
                    }
                }
            }
            // From zero, and from one value per column (lengths past a block).
            let mut y = [f32::NAN; 3];
            k.outer_accumulate(&mut y, Start::Zero, &[2.0], &[1.0, 2.0, 3.0], 1, 3, None);
            assert_eq!(y, [2.0, 4.0, 6.0]);
            let col: Vec<f32> = (0..131).map(|v| v as f32).collect();
            let ones = vec![1.0; 131];
            let mut y = vec![f32::NAN; 131];
            k.outer_accumulate(&mut y, Start::Column(&col), &[0.5], &ones, 1, 131, None);
            assert!(y.iter().zip(&col).all(|(a, b)| *a == b + 0.5), "{isa}");
        }
    }
}
