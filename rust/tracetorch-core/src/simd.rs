//! SIMD kernels, written once over pulp's portable vector type and dispatched
//! at run time to AVX-512, AVX2+FMA, NEON or plain scalar code.
//!
//! The instruction set is chosen once, when an engine is built, from what the
//! CPU supports and the `TRACETORCH_SIMD` environment variable (`auto`,
//! `scalar`, `avx2`, `avx512`, `neon`). A wheel built for plain x86-64 still
//! runs the AVX kernels: pulp compiles each kernel once per instruction set
//! behind `#[target_feature]` and picks one at run time.

use pulp::{Arch, MemMask, Simd, WithSimd};
use std::ops::Range;
use std::sync::atomic::{compiler_fence, Ordering};

use crate::error::{Error, Result};
use crate::floats::Floats;

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

    /// Broadcast-accumulate product, the shape of convolutions (after
    /// im2col) and of event-driven layers: for every row `m` of `y`
    /// (`[rows, n]`), `y[m, :] = start + Σ_k a[m, k] · b[k, :]`, where `a` is
    /// `[rows, k]`, `b` is `[k, n]` (plain or in panels), and only the `k`
    /// listed in `active` are summed (all of them when `active` is `None`).
    ///
    /// Only the columns in `cols` are computed, `y` holding just those
    /// (`[rows, cols.len()]`). A range cut at multiples of
    /// [`Kernels::column_block`] gets the bits of the whole product.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn outer_accumulate(
        &self,
        y: &mut [f32],
        start: Start<'_>,
        a: &[f32],
        b: Panels<'_>,
        k: usize,
        cols: Range<usize>,
        active: Option<&[u32]>,
    ) {
        if cols.is_empty() {
            return;
        }
        let n = cols.len();
        let rows = rows_in(y.len(), n);
        // Rows that sum over every `k` go in groups (see `WIDE_TILE`), the
        // rest one at a time. Two dispatches, so that each compiles to a
        // function of its own: in one, the single-row loop ran 15-25% slower.
        let narrow = narrow_layer(self.isa.lanes(), b.width);
        let grouped = match active {
            _ if narrow => 0,
            Some(_) => 0,
            None => {
                let (g, h) = self.row_groups();
                if rows < h {
                    0 // as below, without its two divisions (one stream)
                } else {
                    let whole = rows - rows % g;
                    whole + (rows - whole) / h * h
                }
            }
        };
        let (y_grouped, y_single) = y.split_at_mut(grouped * n);
        let o = Operands {
            start,
            a,
            b,
            k,
            first: cols.start,
            end: cols.end,
            active,
        };
        if grouped > 0 {
            self.arch.dispatch(Grouped { y: y_grouped, o });
        }
        if grouped < rows {
            let start = match start {
                Start::Row(v) => Start::Row(&v[grouped..]),
                other => other,
            };
            let a = &a[grouped * k..];
            let o = Operands { start, a, ..o };
            // Dense and event-driven rows compile apart: in one function,
            // the set-up of the event-driven loop ran for dense rows too.
            match (narrow, active.is_some()) {
                (true, false) => self.narrow::<false>(y_single, o),
                (true, true) => self.narrow::<true>(y_single, o),
                (false, false) => self.arch.dispatch(Single::<false> { y: y_single, o }),
                (false, true) => self.arch.dispatch(Single::<true> { y: y_single, o }),
            }
        }
    }

    /// The rows of a narrow layer (see [`narrow_layer`]), each a single
    /// tile of every column that sums over `k` in interleaved parts: eight
    /// independent sums, where a 1024-16 layer waited on two. The tile's
    /// shape is chosen here, in plain code, so that each compiles to a SIMD
    /// function of its own: chosen inside one, the set-up of all six ran on
    /// every call (a 64-4 layer's step spent half its instructions there).
    fn narrow<const EVENTS: bool>(&self, y: &mut [f32], o: Operands<'_>) {
        let (lanes, n) = (self.isa.lanes(), o.end - o.first);
        // Packed panels are padded to 16 columns: their weights load as
        // whole vectors, only the outputs are partial.
        let padded = o.b.width >= 2 * lanes;
        let arch = self.arch;
        match n {
            _ if n == lanes => arch.dispatch(Narrow::<1, 8, false, true, EVENTS> { y, o }),
            _ if n < lanes && padded => arch.dispatch(Narrow::<1, 8, true, true, EVENTS> { y, o }),
            _ if n < lanes => arch.dispatch(Narrow::<1, 8, true, false, EVENTS> { y, o }),
            _ if n == 2 * lanes => arch.dispatch(Narrow::<2, 4, false, true, EVENTS> { y, o }),
            _ if padded => arch.dispatch(Narrow::<2, 4, true, true, EVENTS> { y, o }),
            _ => arch.dispatch(Narrow::<2, 4, true, false, EVENTS> { y, o }),
        }
    }

    /// The register tile of grouped rows on this instruction set (the
    /// choice [`Grouped`] makes when compiling).
    fn tile(&self) -> (usize, usize) {
        match self.isa {
            Isa::Avx2 => NARROW_TILE,
            Isa::Scalar => SCALAR_TILE,
            _ => WIDE_TILE,
        }
    }

    /// Rows per register tile of grouped rows: the tile, then half of it.
    fn row_groups(&self) -> (usize, usize) {
        let rows = self.tile().0;
        (rows, rows / 2)
    }

    /// Columns of a register tile: column ranges of
    /// [`Kernels::outer_accumulate`] cut at its multiples keep every
    /// column's order of operations.
    pub(crate) fn column_block(&self) -> usize {
        self.tile().1 * self.isa.lanes()
    }
}

/// Floats per vector of the widest instruction set (AVX-512).
pub(crate) const MAX_LANES: usize = 16;

/// The rows of `row` floats in `len` (0 when `row` is 0), without a
/// division where there is one row, as in every step of a single stream:
/// its layers divided lengths by row lengths a few times each, six
/// divisions a step for a 4-3 linear layer and 3 LI neurons, each slower
/// than that layer's multiply-adds.
#[inline(always)]
pub(crate) fn rows_in(len: usize, row: usize) -> usize {
    if len == row && row != 0 {
        1
    } else {
        len.checked_div(row).unwrap_or(0)
    }
}

/// Columns per panel of a [`Panels`] matrix: a multiple of every vector
/// width, so that no register tile straddles two panels.
pub(crate) const PANEL: usize = 64;

/// The panel width of a `[k, n]` matrix: [`PANEL`], or `n` rounded up to a
/// multiple of every vector width when that is narrower. A narrow layer's
/// rows then lie end to end: padded to 64 columns, the 16 outputs of a
/// 1024-input layer read one cache line in four and the layer ran 4x slower.
fn panel_width(n: usize) -> usize {
    n.next_multiple_of(16).clamp(16, PANEL)
}

/// A `[k, n]` matrix stored as column panels of `width` columns: panel `p`
/// holds columns `p*width..` of every row, contiguously (`k * width` floats,
/// the last panel padded with zeros). A tile sweeping the rows then reads
/// one contiguous block instead of one page per row. `width = n` is the
/// plain row-major layout.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Panels<'a> {
    data: &'a [f32],
    width: usize,
}

impl<'a> Panels<'a> {
    /// A plain row-major `[k, n]` matrix.
    pub(crate) fn plain(data: &'a [f32], n: usize) -> Self {
        Panels { data, width: n }
    }

    /// A `[k, n]` matrix laid out by [`to_panels`].
    pub(crate) fn packed(data: &'a [f32], n: usize) -> Self {
        Panels {
            data,
            width: panel_width(n),
        }
    }

    /// Where column `c` of row 0 of the `[k, n]` matrix sits in `data`, and
    /// the distance between rows: row `kk` starts at `base + kk * stride`.
    /// Taken once per tile: the division must stay out of the `k` loop.
    #[inline(always)]
    fn column(&self, k: usize, c: usize) -> (usize, usize) {
        let pw = self.width;
        if c < pw {
            // The first panel, where narrow layers' tiles all start: no division.
            return (c, pw);
        }
        ((c / pw) * k * pw + c % pw, pw)
    }
}

/// Packs a row-major `[k, n]` matrix into column panels (see [`Panels::packed`]).
pub(crate) fn to_panels(m: &[f32], k: usize, n: usize) -> Floats {
    let width = panel_width(n);
    let panels = n.div_ceil(width);
    let mut out = Floats::zeros(panels * k * width);
    for (kk, row) in m.chunks_exact(n.max(1)).take(k).enumerate() {
        for (c, v) in row.iter().enumerate() {
            out[(c / width) * k * width + kk * width + c % width] = *v;
        }
    }
    out
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

/// Rows of [`Kernels::outer_accumulate`] in whole groups.
struct Grouped<'a> {
    y: &'a mut [f32],
    o: Operands<'a>,
}

/// Rows of [`Kernels::outer_accumulate`] one at a time, on the
/// event-driven path when `EVENTS`.
struct Single<'a, const EVENTS: bool> {
    y: &'a mut [f32],
    o: Operands<'a>,
}

/// The read-only side of [`Kernels::outer_accumulate`].
#[derive(Clone, Copy)]
struct Operands<'a> {
    start: Start<'a>,
    a: &'a [f32],
    b: Panels<'a>,
    k: usize,
    /// The columns computed, `first..end`; `y` holds only those.
    first: usize,
    end: usize,
    active: Option<&'a [u32]>,
}

impl Operands<'_> {
    /// These operands with no active list unless `EVENTS`: a constant, so
    /// that a dense kernel holds no code of the event-driven loop.
    #[inline(always)]
    fn events<const EVENTS: bool>(self) -> Self {
        Operands {
            active: if EVENTS { self.active } else { None },
            ..self
        }
    }
}

/// The register tile of rows that sum over all `k` (streams, or a
/// convolution's output channels): (rows, vectors per row), held in
/// registers across the `k` loop, so that each weight vector loaded feeds
/// `rows` multiply-adds. Sized to the vector registers: 16 + 4 + 1 of the 32
/// of AVX-512 and NEON, and 12 + 2 + 1 of AVX2's 16 (a 4 x 4 tile spilled
/// there). The vectors must divide a panel's.
const WIDE_TILE: (usize, usize) = (4, 4);
/// AVX2's tile (16 registers).
const NARROW_TILE: (usize, usize) = (6, 2);
/// The scalar tile: 8 + 4 + 1 of the 16 registers (4 x 4 spilled: 2x slower).
const SCALAR_TILE: (usize, usize) = (2, 4);

impl WithSimd for Grouped<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Grouped { y, o } = self;
        // 8 lanes: AVX2, the only instruction set with 16 vector registers.
        if S::F32_LANES == 8 {
            groups::<S, { NARROW_TILE.0 }, { NARROW_TILE.0 / 2 }, { NARROW_TILE.1 }>(simd, o, y);
        } else if S::F32_LANES == 1 {
            groups::<S, { SCALAR_TILE.0 }, { SCALAR_TILE.0 / 2 }, { SCALAR_TILE.1 }>(simd, o, y);
        } else {
            groups::<S, { WIDE_TILE.0 }, { WIDE_TILE.0 / 2 }, { WIDE_TILE.1 }>(simd, o, y);
        }
    }
}

impl<const EVENTS: bool> WithSimd for Single<'_, EVENTS> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Single { y, o } = self;
        let o = o.events::<EVENTS>();
        let n = o.end - o.first;
        // A single row takes blocks of a whole panel on AVX2 (8 vectors, the
        // weights read straight into the multiply-adds): eight independent
        // sums keep both FMA units busy where four waited on their latency
        // (784-128 at one stream 7.2 -> 4.5 us, 1024-1024 at 10% spikes
        // 12.9 -> 7.2 us).
        // One stream (one row) without the loop: for the loop the compiler
        // sets up for many rows, bounds and offsets hoisted out of it (226
        // of the 434 instructions of a 64-4 layer's step, callgrind on AVX2).
        // The row is a plain function: as a closure handed to a helper it
        // was not inlined into the SIMD function (4x the instructions).
        match rows_in(y.len(), n) {
            1 => single_row(simd, o, y, 0),
            rows => (0..rows).for_each(|m| single_row(simd, o, y, m)),
        }
    }
}

/// Row `m` of a [`Single`].
#[inline(always)]
fn single_row<S: Simd>(simd: S, o: Operands<'_>, y: &mut [f32], m: usize) {
    let cols = o.first..o.end;
    if S::F32_LANES == 8 {
        row_tile::<S, 1, { NARROW_TILE.1 }, { 4 * NARROW_TILE.1 }>(simd, o, y, m, cols);
    } else {
        row_tile::<S, 1, { WIDE_TILE.1 }, { WIDE_TILE.1 }>(simd, o, y, m, cols);
    }
}

/// Rows of a narrow layer, each one tile of `V` vectors summing in `P`
/// parts (see [`Kernels::narrow`] and [`tile`] for the flags). Whole and
/// partial widths apart, each with its own loop: a width known only at run
/// time cost a branch per load.
struct Narrow<
    'a,
    const V: usize,
    const P: usize,
    const PARTIAL: bool,
    const B_WHOLE: bool,
    const EVENTS: bool,
> {
    y: &'a mut [f32],
    o: Operands<'a>,
}

impl<
        const V: usize,
        const P: usize,
        const PARTIAL: bool,
        const B_WHOLE: bool,
        const EVENTS: bool,
    > WithSimd for Narrow<'_, V, P, PARTIAL, B_WHOLE, EVENTS>
{
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Narrow { y, o } = self;
        let o = o.events::<EVENTS>();
        // One stream without the loop (see `Single`); this closure, called
        // here and not handed on, is inlined.
        let row = |y: &mut [f32], m| {
            tile::<S, 1, V, P>(simd, o, &tile_rows(&o, m), y, m, o.first, PARTIAL, B_WHOLE)
        };
        match rows_in(y.len(), o.end - o.first) {
            1 => row(y, 0),
            rows => (0..rows).for_each(|m| row(y, m)),
        }
    }
}

/// A layer of at most two AVX2 or AVX-512 vectors of outputs (`b` panels
/// that narrow, so it is never split into column ranges): its rows are
/// never grouped, and each sums in interleaved parts (see [`Narrow`]). Two
/// vectors are too few independent sums for one row (on a Zen 5's AVX-512,
/// a dense 1024-32 row took 1.08 us in one sum per vector, 0.91 us in parts;
/// 128-10 and 64-4 5-7% less, 64-16 14% more), and grouping rows would not
/// give them the bits of a row alone.
fn narrow_layer(lanes: usize, panel_width: usize) -> bool {
    lanes >= 8 && panel_width <= 2 * lanes
}

/// Rows of a [`Grouped`] product: in groups of `G` rows, then of `H`
/// (the caller passes whole groups), in `V`-vector column blocks, one panel
/// of columns at a time: a panel of `b` (`k x 64` floats, 256 KiB at
/// k = 1024) then stays in the core's L2 cache while every row group reads
/// it, where a whole `b` of a few MiB would come from L3 for each group.
#[inline(always)]
fn groups<S: Simd, const G: usize, const H: usize, const V: usize>(
    simd: S,
    o: Operands<'_>,
    y: &mut [f32],
) {
    let rows = y.len() / (o.end - o.first);
    let mut first = o.first;
    while first < o.end {
        let cols = first..(first / PANEL + 1) * PANEL;
        let cols = cols.start..cols.end.min(o.end);
        let mut m = 0;
        while m + G <= rows {
            row_tile::<S, G, V, V>(simd, o, y, m, cols.clone());
            m += G;
        }
        while m + H <= rows {
            row_tile::<S, H, V, V>(simd, o, y, m, cols.clone());
            m += H;
        }
        first = cols.end;
    }
}

/// Rows `m..m + R` of a [`Kernels::outer_accumulate`] product over the
/// columns `cols` (the whole range, or a panel of it), column block by column
/// block: blocks of `W` vectors, then of `V`, then single vectors. The
/// columns the single vectors take depend on `V` alone (`W` is a multiple
/// of it, and panels of both), and only they sum in another order, so every
/// row gets the same bits in any group.
#[inline(always)]
fn row_tile<S: Simd, const R: usize, const V: usize, const W: usize>(
    simd: S,
    o: Operands<'_>,
    y: &mut [f32],
    m: usize,
    cols: Range<usize>,
) {
    let lanes = S::F32_LANES;
    let rows = tile_rows::<R>(&o, m);
    let mut c = cols.start;
    // `W`-vector blocks start at their own multiples, which never straddle
    // a panel's edge (panels are multiples of 64 columns, or one panel).
    while !c.is_multiple_of(W * lanes) && c + V * lanes <= cols.end {
        tile::<S, R, V, 1>(simd, o, &rows, y, m, c, false, true);
        c += V * lanes;
    }
    while c + W * lanes <= cols.end {
        tile::<S, R, W, 1>(simd, o, &rows, y, m, c, false, true);
        c += W * lanes;
    }
    while c + V * lanes <= cols.end {
        tile::<S, R, V, 1>(simd, o, &rows, y, m, c, false, true);
        c += V * lanes;
    }
    // One vector per row is one chain of dependent multiply-adds, which
    // runs at the FMA's latency, not its throughput (a 1024-16 layer took
    // 1.33 us as one chain, 1.06 us as four): it sums `k` in interleaved
    // parts instead, as many as the registers allow. The split depends on
    // the instruction set only, never on `R` or on the thread, so every row
    // gets the same bits however streams are grouped.
    while c + lanes <= cols.end {
        narrow_tile::<S, R>(simd, o, &rows, y, m, c, false);
        c += lanes;
    }
    // Panels end at multiples of every vector width: only the last is partial.
    if c < cols.end {
        narrow_tile::<S, R>(simd, o, &rows, y, m, c, true);
    }
}

/// Rows `m..m + R` of `a` (`k` floats each), for the tiles of one row
/// group: taken once per group, not per tile (it is a call, which cost a
/// 3-16 convolution on 10x10 a tenth of its time when made per tile).
#[inline(always)]
fn tile_rows<'a, const R: usize>(o: &Operands<'a>, m: usize) -> [&'a [f32]; R] {
    std::array::from_fn(|r| &o.a[(m + r) * o.k..][..o.k])
}

/// A one-vector tile (see [`row_tile`]).
#[inline(always)]
fn narrow_tile<S: Simd, const R: usize>(
    simd: S,
    o: Operands<'_>,
    rows: &[&[f32]; R],
    y: &mut [f32],
    m: usize,
    c: usize,
    partial: bool,
) {
    if S::F32_LANES >= 16 {
        tile::<S, R, 1, 4>(simd, o, rows, y, m, c, partial, !partial);
    } else {
        tile::<S, R, 1, 2>(simd, o, rows, y, m, c, partial, !partial);
    }
}

/// An `R` rows x `V` vectors tile of a [`Kernels::outer_accumulate`] product at column `c`,
/// accumulated in registers; `partial` for the last, incomplete vector, whose
/// weights still load as whole vectors with `b_whole` (padded panels). The
/// sum over `k` runs as `P` interleaved partial sums (term `i` of the sum
/// goes to part `i % P`), added pairwise at the end.
/// (Plain functions, no closures, in the hot loop: closures are not always
/// inlined into the `#[target_feature]` context, which ruins the SIMD code.)
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile<S: Simd, const R: usize, const V: usize, const P: usize>(
    simd: S,
    o: Operands<'_>,
    rows: &[&[f32]; R],
    y: &mut [f32],
    m: usize,
    c: usize,
    partial: bool,
    b_whole: bool,
) {
    let lanes = S::F32_LANES;
    let width = if partial { o.end - c } else { V * lanes };
    // Callers pass constants: each combination compiles to a loop of its own.
    let b_width = if b_whole { V * lanes } else { width };
    let zero = simd.splat_f32s(0.0);
    let mut acc = [[[zero; V]; R]; P];
    for (r, acc_r) in acc[0].iter_mut().enumerate() {
        for (j, a) in acc_r.iter_mut().enumerate() {
            *a = match o.start {
                Start::Zero => zero,
                Start::Row(v) => simd.splat_f32s(v[m + r]),
                Start::Column(v) => load(simd, &v[c + j * lanes..c + width.min((j + 1) * lanes)]),
            };
        }
    }
    let (base, stride) = o.b.column(o.k, c);
    let b = o.b.data;
    // The loop reads unchecked (a bounds check per row and term cost a
    // quarter of the time of a 6-row tile): every `b` row it may read is in
    // bounds, checked once here, and every term index below `o.k`.
    let last_read =
        (o.k.saturating_sub(1).checked_mul(stride)).and_then(|v| v.checked_add(base + b_width));
    assert!(o.k == 0 || last_read.is_some_and(|end| end <= b.len()));
    match o.active {
        Some(idx) => {
            // Whole chunks of `P` terms that have a term `PREFETCH_AHEAD`
            // further on to ask for, then the rest: no test per term of
            // whether there is one (1024-16 at 10% spikes spent a quarter of
            // its instructions on that and on bounds-checked prefetches).
            let ahead = idx.len().saturating_sub(PREFETCH_AHEAD);
            let (lead, rest) = idx.split_at(ahead - ahead % P);
            let next = &idx[PREFETCH_AHEAD.min(idx.len())..];
            for (chunk, next) in lead.chunks_exact(P).zip(next.chunks_exact(P)) {
                for ((part, &kk), &next) in acc.iter_mut().zip(chunk).zip(next) {
                    prefetch(b, base + next as usize * stride, b_width);
                    let kk = kk as usize;
                    assert!(kk < o.k);
                    // SAFETY: `kk < o.k` (just checked, and above).
                    unsafe { accumulate(simd, part, rows, b, kk, base + kk * stride, b_width) };
                }
            }
            let mut rest = rest.chunks_exact(P);
            for chunk in rest.by_ref() {
                for (part, &kk) in acc.iter_mut().zip(chunk) {
                    let kk = kk as usize;
                    assert!(kk < o.k);
                    // SAFETY: as above.
                    unsafe { accumulate(simd, part, rows, b, kk, base + kk * stride, b_width) };
                }
            }
            for (part, &kk) in acc.iter_mut().zip(rest.remainder()) {
                let kk = kk as usize;
                assert!(kk < o.k);
                // SAFETY: as above.
                unsafe { accumulate(simd, part, rows, b, kk, base + kk * stride, b_width) };
            }
        }
        None => {
            let whole = o.k - o.k % P;
            for kk in (0..whole).step_by(P) {
                for (p, part) in acc.iter_mut().enumerate() {
                    let kk = kk + p;
                    // SAFETY: `kk < whole <= o.k`, and the check above.
                    unsafe { accumulate(simd, part, rows, b, kk, base + kk * stride, b_width) };
                }
            }
            for (part, kk) in acc.iter_mut().zip(whole..o.k) {
                // SAFETY: `kk < o.k`, and the check above.
                unsafe { accumulate(simd, part, rows, b, kk, base + kk * stride, b_width) };
            }
        }
    }
    // Pairwise: ((p0 + p1) + (p2 + p3)). Indexed: iterators over the
    // register arrays made the compiler copy them through the stack.
    let mut parts = P;
    while parts > 1 {
        parts /= 2;
        for p in 0..parts {
            #[allow(clippy::needless_range_loop)]
            for r in 0..R {
                for j in 0..V {
                    acc[p][r][j] = simd.add_f32s(acc[2 * p][r][j], acc[2 * p + 1][r][j]);
                }
            }
        }
    }
    for (r, acc_r) in acc[0].iter().enumerate() {
        for (j, a) in acc_r.iter().enumerate() {
            let base = (m + r) * (o.end - o.first) + c - o.first;
            store(
                simd,
                &mut y[base + j * lanes..base + width.min((j + 1) * lanes)],
                *a,
            );
        }
    }
}

/// `acc[r] += rows[r][kk] * b[start..start + width]` (row `kk` of the `b`
/// matrix, from the tile's column).
///
/// # Safety
/// `kk` is below every row's length and `start + width <= b.len()`.
#[inline(always)]
unsafe fn accumulate<S: Simd, const R: usize, const V: usize>(
    simd: S,
    acc: &mut [[S::f32s; V]; R],
    rows: &[&[f32]; R],
    b: &[f32],
    kk: usize,
    start: usize,
    width: usize,
) {
    let lanes = S::F32_LANES;
    debug_assert!(start + width <= b.len() && rows.iter().all(|r| kk < r.len()));
    // SAFETY: in bounds (the caller's promise).
    let row = unsafe { b.get_unchecked(start..start + width) };
    let mut bv = [simd.splat_f32s(0.0); V];
    for (j, v) in bv.iter_mut().enumerate() {
        *v = load(simd, &row[j * lanes..width.min((j + 1) * lanes)]);
    }
    for r in 0..R {
        // SAFETY: in bounds (the caller's promise).
        let coef = simd.splat_f32s(unsafe { *rows[r].get_unchecked(kk) });
        for j in 0..V {
            acc[r][j] = simd.mul_add_e_f32s(coef, bv[j], acc[r][j]);
        }
        // A fence (no instruction) keeps each row's broadcast after the
        // previous row's multiply-adds: hoisting all of them, as LLVM does
        // unprompted, holds R more registers and spilled AVX2's 6 x 2 tile
        // (784-128 at 256 streams: 1210 us with the hoist, 570 us without).
        // Only there: the scalar tile ran 2x slower with it.
        if R > 1 && S::F32_LANES == 8 {
            compiler_fence(Ordering::SeqCst);
        }
    }
}

/// Active rows are scattered, so the hardware cannot guess the next one:
/// the event-driven loop asks for the row this many steps ahead.
const PREFETCH_AHEAD: usize = 8;

/// Hints that `b[start..start + width]` is needed soon: one prefetch per 16
/// floats (a cache line), from an address that is only computed, never
/// dereferenced, so it needs no bounds check.
#[inline(always)]
fn prefetch(b: &[f32], start: usize, width: usize) {
    #[cfg(target_arch = "x86_64")]
    for line in (0..width).step_by(16) {
        let address = b.as_ptr().wrapping_add(start + line);
        // SAFETY: a prefetch never faults, whatever the address.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(address.cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (b, start, width);
}

/// Loads up to one vector; a whole one without the masked-load path.
#[inline(always)]
pub(crate) fn load<S: Simd>(simd: S, v: &[f32]) -> S::f32s {
    match S::as_simd_f32s(v).0 {
        [whole] => *whole,
        _ if S::F32_LANES == 16 => {
            // AVX-512 masks lanes within the instruction; pulp's partial
            // load jumps through a table of per-length routines instead,
            // which cost most of the time of short rows (a small im2col).
            let mask = MemMask::new(simd.mask_between_m32s(0, v.len() as u32).mask());
            // SAFETY: the mask enables only lanes below `v.len()`, inside
            // `v`; masked-off lanes are never accessed (they cannot fault).
            unsafe { simd.mask_load_ptr_f32s(mask, v.as_ptr()) }
        }
        _ => simd.partial_load_f32s(v),
    }
}

/// Stores up to one vector; a whole one without the masked-store path.
#[inline(always)]
pub(crate) fn store<S: Simd>(simd: S, v: &mut [f32], value: S::f32s) {
    match S::as_mut_simd_f32s(v).0 {
        [whole] => *whole = value,
        _ if S::F32_LANES == 16 => {
            let mask = MemMask::new(simd.mask_between_m32s(0, v.len() as u32).mask());
            // SAFETY: as in `load`: only lanes inside `v` are written.
            unsafe { simd.mask_store_ptr_f32s(mask, v.as_mut_ptr(), value) }
        }
        _ => simd.partial_store_f32s(v, value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use crate::testutil::bits;

    fn random(rng: &mut Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.uniform() * 2.0 - 1.0).collect()
    }

    #[test]
    fn rows_in_is_the_quotient() {
        for len in 0..40 {
            for row in 0..10 {
                assert_eq!(
                    rows_in(len, row),
                    len.checked_div(row).unwrap_or(0),
                    "{len}/{row}"
                );
            }
        }
        assert_eq!(rows_in(usize::MAX, usize::MAX), 1);
        assert_eq!(rows_in(usize::MAX, 1), usize::MAX);
    }

    /// Absolute tolerance for a sum of `terms` products of values in [-1, 1]
    /// evaluated in a different order.
    fn tol(terms: usize) -> f32 {
        1e-6 * (terms as f32 + 1.0)
    }

    /// Lengths around every vector width, including 0.
    const LENGTHS: [usize; 17] = [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 65, 131, 200];

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
        // NEON is part of every aarch64 CPU: the kernel tests below must run
        // on it there (`make test-neon`, under qemu), not only on scalar.
        #[cfg(target_arch = "aarch64")]
        assert_eq!(Isa::best(), Isa::Neon);
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
            for &n in &LENGTHS {
                for kdim in [0usize, 1, 5, 27] {
                    for rows in [1usize, 2, 4, 5, 9] {
                        let a = random(&mut rng, rows * kdim);
                        let b = random(&mut rng, kdim * n);
                        let init = random(&mut rng, rows);
                        let cols = random(&mut rng, n);
                        // Every other k active, and all of them; per-row and per-column starts.
                        let odd: Vec<u32> = (0..kdim as u32).filter(|i| i % 2 == 1).collect();
                        for (active, by_row) in
                            [(None, true), (Some(odd.as_slice()), true), (None, false)]
                        {
                            let mut y = vec![f32::NAN; rows * n];
                            let mut ys = y.clone();
                            let start = if by_row {
                                Start::Row(&init)
                            } else {
                                Start::Column(&cols)
                            };
                            let plain = Panels::plain(&b, n);
                            k.outer_accumulate(&mut y, start, &a, plain, kdim, 0..n, active);
                            scalar.outer_accumulate(&mut ys, start, &a, plain, kdim, 0..n, active);
                            // The panel layout gives the same sums in the same order.
                            let packed = to_panels(&b, kdim, n);
                            let mut yp = vec![f32::NAN; rows * n];
                            let bp = Panels::packed(&packed, n);
                            k.outer_accumulate(&mut yp, start, &a, bp, kdim, 0..n, active);
                            assert_eq!(bits(&y), bits(&yp), "{isa} panels");
                            for m in 0..rows {
                                for c in 0..n {
                                    let first = if by_row { init[m] } else { cols[c] };
                                    let naive = first
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
            // A row gets the same bits computed alone as in a group of rows
            // (streams are grouped by position, threads split them anywhere),
            // and a range of columns cut at multiples of the column block as
            // in the whole product (threads split one stream's columns), at
            // every width: 10 rows take every row tile, and the widths every
            // column tile, the single-vector tiles that split the sum included.
            let rows = 10;
            let block = k.column_block();
            for n in [1usize, 10, 16, 17, 40, 48, 64, 100, 130] {
                let kdim = 37;
                let a = random(&mut rng, rows * kdim);
                let b = to_panels(&random(&mut rng, kdim * n), kdim, n);
                let bias = random(&mut rng, n);
                let mut all = vec![f32::NAN; rows * n];
                let start = Start::Column(&bias);
                let panels = Panels::packed(&b, n);
                k.outer_accumulate(&mut all, start, &a, panels, kdim, 0..n, None);
                for m in 0..rows {
                    let mut one = vec![f32::NAN; n];
                    let row = &a[m * kdim..(m + 1) * kdim];
                    k.outer_accumulate(&mut one, start, row, panels, kdim, 0..n, None);
                    let whole = bits(&all[m * n..(m + 1) * n]);
                    assert_eq!(bits(&one), whole, "{isa} n={n} row {m}");
                    for cut in (block..n).step_by(block) {
                        let mut left = vec![f32::NAN; cut];
                        let mut right = vec![f32::NAN; n - cut];
                        k.outer_accumulate(&mut left, start, row, panels, kdim, 0..cut, None);
                        k.outer_accumulate(&mut right, start, row, panels, kdim, cut..n, None);
                        left.extend(right);
                        assert_eq!(bits(&left), whole, "{isa} n={n} row {m} cut at {cut}");
                    }
                }
            }
            // From zero, and from one value per column (lengths past a block).
            let mut y = [f32::NAN; 3];
            let b = Panels::plain(&[1.0, 2.0, 3.0], 3);
            k.outer_accumulate(&mut y, Start::Zero, &[2.0], b, 1, 0..3, None);
            assert_eq!(y, [2.0, 4.0, 6.0]);
            let col: Vec<f32> = (0..131).map(|v| v as f32).collect();
            let ones = vec![1.0; 131];
            let mut y = vec![f32::NAN; 131];
            let b = Panels::plain(&ones, 131);
            k.outer_accumulate(&mut y, Start::Column(&col), &[0.5], b, 1, 0..131, None);
            assert!(y.iter().zip(&col).all(|(a, b)| *a == b + 0.5), "{isa}");
        }
    }
}
