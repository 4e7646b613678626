//! Compute kernels of the plan's ops. Every kernel works on whole buffers
//! with the stream (batch) axis folded into its leading dimension, takes its
//! sizes from the plan, never allocates and never fails. The arithmetic-heavy
//! ones (linear, convolution) run on the SIMD kernels of [`crate::simd`].

use std::ops::Range;
use std::sync::atomic::{compiler_fence, Ordering};

use pulp::{Simd, WithSimd};

use crate::floats::Floats;
use crate::simd::{load, rows_in, store, Kernels, Panels, Start, MAX_LANES};
use crate::team::{share_start, Shares, Team};

/// An event-driven step skips the inactive inputs; it pays off below this
/// fraction of active inputs (above it, the dense path computes several
/// streams per pass over the weights and reads no index list).
const EVENT_DENSITY: f32 = 0.75;

/// Outputs per unit of the event cost model: a 32-byte run of an input's
/// weights, one AVX2 vector. The model counts bytes rather than vectors of
/// the instruction set: an input's weight row streams from the caches at
/// the same bytes per cycle whatever the vector width (on a Zen 5, a
/// 1024-16 layer broke even at 50-52% active inputs on AVX2 and on
/// AVX-512, where counting AVX-512 vectors limited it to 7%).
const EVENT_UNIT: usize = 8;

/// What an active input costs the event-driven path beyond the dense one,
/// in units of [`EVENT_UNIT`] outputs: its index, its address and a
/// prefetch. An input costs the dense path a unit per 8 outputs, so narrow
/// layers pay off only when few inputs are active (measured on a Zen 2,
/// AVX2: 1024-16 breaks even at ~20% active inputs, 64-64 below 50%,
/// 1024-1024 near 80%; a Zen 5 breaks even later on each).
const EVENT_OVERHEAD: f32 = 10.0;

/// What an event-driven row costs beyond a dense one whatever its activity,
/// in units of [`EVENT_UNIT`]: the scan for its active inputs and a second
/// kernel call. Small layers never recover it: on a Zen 2 (AVX2), 64-4 took
/// 1.33x its dense time at any activity, 128-10 1.46x at 15%, 64-64
/// 1.06-1.14x at 30-44% (limits without this cost).
const EVENT_FIXED: f32 = 256.0;

/// The most active inputs for which a row of a linear layer `inp -> out`
/// whose input is spikes takes the event-driven path: where the dense cost,
/// `inp` units per [`EVENT_UNIT`] outputs, exceeds the event-driven one, and
/// at most `EVENT_DENSITY` of the inputs. Zero means never. Taken at load:
/// it depends on the whole layer, never on a share of its columns or the
/// instruction set, so that threads and [`Kernels`] make the decision one
/// thread would with any other.
pub(crate) fn event_limit(inp: usize, out: usize) -> usize {
    let units = out.div_ceil(EVENT_UNIT) as f32;
    let inputs = inp as f32;
    let pays = (inputs * units - EVENT_FIXED) / (units + EVENT_OVERHEAD);
    pays.min(inputs * EVENT_DENSITY).max(0.0) as usize
}

/// `y[r, :] = x[r, :] W^T + b` for every row `r`, with `weight_t` as
/// `[inp, out]` in column panels ([`crate::simd::to_panels`]), computing
/// only the outputs in `cols` (`y` is `[rows, cols.len()]`; see
/// [`Kernels::outer_accumulate`]). A row with at most `event_limit`
/// non-zero inputs (an [`event_limit`] of the layer, or 0 for dense rows
/// only) adds only their weight rows; `active` holds their indices (at
/// least `inp` long when the limit is not 0).
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear(
    k: &Kernels,
    x: &[f32],
    y: &mut [f32],
    weight_t: &[f32],
    bias: Option<&[f32]>,
    inp: usize,
    out: usize,
    cols: Range<usize>,
    event_limit: usize,
    active: &mut [u32],
) {
    let start = bias.map_or(Start::Zero, Start::Column);
    let weights = Panels::packed(weight_t, out);
    if event_limit == 0 || cols.is_empty() {
        k.outer_accumulate(y, start, x, weights, inp, cols, None);
        return;
    }
    let (n, rows) = (cols.len(), rows_in(y.len(), cols.len()));
    // Rows with too many active inputs run dense, in runs of consecutive
    // rows, so that the runs' rows share each pass over the weights (one at a
    // time, 256 streams of a 256-1024 layer at 90% spikes took 3.7 ms against
    // 1.4 ms dense). A row gets the same bits in a run or alone.
    let run_dense = |y: &mut [f32], rows: Range<usize>| {
        if !rows.is_empty() {
            let xs = &x[rows.start * inp..rows.end * inp];
            k.outer_accumulate(y, start, xs, weights, inp, cols.clone(), None);
        }
    };
    // The rows since the last event-driven one are dense.
    let mut first_dense = 0;
    for r in 0..rows {
        let xr = &x[r * inp..(r + 1) * inp];
        let Some(active) = active_inputs(k, xr, active, event_limit) else {
            continue;
        };
        let (run, yr) = y[first_dense * n..(r + 1) * n].split_at_mut((r - first_dense) * n);
        run_dense(run, first_dense..r);
        k.outer_accumulate(yr, start, xr, weights, inp, cols.clone(), Some(active));
        first_dense = r + 1;
    }
    run_dense(&mut y[first_dense * n..rows * n], first_dense..rows);
}

/// Entries an active-input list holds beyond one per input (see
/// [`active_inputs`]): a page of indices, room to start the list anywhere
/// in a page.
pub(crate) const ACTIVE_SLACK: usize = 1024;

/// The indices of the non-zero entries of `x`, written into `active` (at
/// least `x.len()` long), if there are at most `limit`. With
/// [`ACTIVE_SLACK`] more entries the list starts half a page (modulo 4 KiB)
/// away from `x`: where it started at `x`'s offset in its page, a silent
/// input (every vector of indices stored at the list's start) made a
/// 1024-16 layer take 376-420 ns on a Zen 5's AVX-512, against 80 ns with
/// the list 64 bytes further on.
fn active_inputs<'a>(
    k: &Kernels,
    x: &'a [f32],
    active: &'a mut [u32],
    limit: usize,
) -> Option<&'a [u32]> {
    let active = match active.len() >= x.len() + ACTIVE_SLACK {
        true => {
            let (from, to) = (x.as_ptr() as usize, active.as_ptr() as usize);
            let skew = from.wrapping_add(2048).wrapping_sub(to) % 4096 / size_of::<u32>();
            &mut active[skew..]
        }
        false => active,
    };
    match k.isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: kernels for these instruction sets exist only on CPUs
        // that run them; both include POPCNT.
        crate::simd::Isa::Avx2 => unsafe { left_pack_avx2(x, active, limit) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        crate::simd::Isa::Avx512 => unsafe { left_pack_avx512(x, active, limit) },
        _ => k.dispatch(ActiveInputs { x, active, limit }),
    }
}

/// For each 8-bit mask, the positions of its set bits, one per byte from the
/// lowest: the lanes a vector of 8 inputs keeps, packed to its front.
#[cfg(target_arch = "x86_64")]
const LEFT_PACK: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut mask = 0;
    while mask < 256 {
        let (mut packed, mut kept, mut bit) = (0u64, 0, 0);
        while bit < 8 {
            if mask & (1 << bit) != 0 {
                packed |= (bit as u64) << (8 * kept);
                kept += 1;
            }
            bit += 1;
        }
        table[mask] = packed;
        mask += 1;
    }
    table
};

/// [`ActiveInputs`] without a branch per input or per bit: each vector of 8
/// inputs stores all 8 candidate indices, packed by a table lookup on its
/// mask of non-zeros, at the end of the list, which then grows by the mask's
/// count. A bit loop per 32 inputs mispredicted at its exit on random
/// spikes (1024-16 at 8% activity, in the conv model: about a third of the
/// layer's time).
///
/// # Safety
/// The CPU runs AVX2 and POPCNT.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
unsafe fn left_pack_avx2<'a>(x: &[f32], active: &'a mut [u32], limit: usize) -> Option<&'a [u32]> {
    use std::arch::x86_64::*;
    let zero = _mm256_setzero_ps();
    let eight = _mm256_set1_epi32(8);
    // The index of each lane of the current vector of inputs.
    let mut indices = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    left_pack::<8>(x, active, limit, |i, to| {
        // SAFETY: `left_pack` keeps `i + 8 <= x.len()` and room for 8
        // indices at `to`; the mask indexes the 256 entries of the table.
        unsafe {
            let v = _mm256_loadu_ps(x.as_ptr().add(i));
            // Unordered: NaN counts as active, as `!= 0.0` has it.
            let mask = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(v, zero)) as usize;
            let table = LEFT_PACK.as_ptr().add(mask).cast::<__m128i>();
            let lanes = _mm256_cvtepu8_epi32(_mm_loadl_epi64(table));
            let kept = _mm256_permutevar8x32_epi32(indices, lanes);
            _mm256_storeu_si256(to.cast(), kept);
            indices = _mm256_add_epi32(indices, eight);
            mask.count_ones() as usize
        }
    })
}

/// [`left_pack_avx2`] 16 inputs at a time, the lanes kept packed by the
/// CPU (`vpcompressd` into a register: its form that stores to memory is
/// slow on Zen 4), no table: half the vectors, each adding to the list's
/// length, which the next store waits for (1024-16 at 8.7% spikes: 157.7 ->
/// 143.7 ns on a Zen 5).
///
/// # Safety
/// The CPU runs AVX-512 F and POPCNT.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,popcnt")]
unsafe fn left_pack_avx512<'a>(
    x: &[f32],
    active: &'a mut [u32],
    limit: usize,
) -> Option<&'a [u32]> {
    use std::arch::x86_64::*;
    let zero = _mm512_setzero_ps();
    let sixteen = _mm512_set1_epi32(16);
    let mut indices = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    left_pack::<16>(x, active, limit, |i, to| {
        // SAFETY: `left_pack` keeps `i + 16 <= x.len()` and room for 16
        // indices at `to`.
        unsafe {
            let v = _mm512_loadu_ps(x.as_ptr().add(i));
            // Unordered: NaN counts as active, as `!= 0.0` has it.
            let mask = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(v, zero);
            let kept = _mm512_maskz_compress_epi32(mask, indices);
            _mm512_storeu_si512(to.cast(), kept);
            indices = _mm512_add_epi32(indices, sixteen);
            mask.count_ones() as usize
        }
    })
}

/// The loop of the left-packs: `pack(i, to)` writes the indices of the
/// `LANES` inputs from `i`, those of the non-zero ones first, at `to` (the
/// list's end, with room for `LANES`), and returns how many are non-zero.
/// It gives up as soon as a block of 64 inputs takes the list past `limit`;
/// the loop and the limit cost once per block (the 1024-16 layer of the conv
/// model: 2,100 -> 1,270 instructions a step, counted by callgrind on AVX2).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn left_pack<'a, const LANES: usize>(
    x: &[f32],
    active: &'a mut [u32],
    limit: usize,
    mut pack: impl FnMut(usize, *mut u32) -> usize,
) -> Option<&'a [u32]> {
    assert!(active.len() >= x.len(), "an index per input");
    let to = active.as_mut_ptr();
    let (mut nnz, mut i) = (0, 0);
    // Every `pack(i, ..)` below has `i + LANES <= x.len()`, and `nnz <= i`
    // (at most one index per input before `i`): its `LANES` indices at
    // `nnz` end within `x.len() <= active.len()`.
    while i + 64 <= x.len() {
        for j in 0..64 / LANES {
            // SAFETY: as above (`nnz <= active.len()`).
            nnz += pack(i + LANES * j, unsafe { to.add(nnz) });
        }
        i += 64;
        if nnz > limit {
            return None;
        }
    }
    while i + LANES <= x.len() {
        // SAFETY: as above.
        nnz += pack(i, unsafe { to.add(nnz) });
        i += LANES;
    }
    for (j, v) in x.iter().enumerate().skip(i) {
        // Written whatever the value, kept only if it is non-zero.
        active[nnz] = j as u32;
        nnz += usize::from(*v != 0.0);
    }
    if nnz > limit {
        return None;
    }
    Some(&active[..nnz])
}

/// The portable [`active_inputs`].
struct ActiveInputs<'a> {
    x: &'a [f32],
    active: &'a mut [u32],
    limit: usize,
}

impl<'a> WithSimd for ActiveInputs<'a> {
    type Output = Option<&'a [u32]>;

    /// A count first (it vectorizes), so that a dense row costs no index
    /// list (1024-16 at half its inputs active: 1.4 -> 0.8 us); then a bit
    /// mask per 32 inputs and one pass per set bit: a branch per input would
    /// mispredict on random spikes.
    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> Option<&'a [u32]> {
        let ActiveInputs { x, active, limit } = self;
        // Counted in 32-bit lanes: a `usize` count vectorizes 4 to a register.
        let count: u32 = x.iter().map(|v| u32::from(*v != 0.0)).sum();
        if count as usize > limit {
            return None;
        }
        assert!(active.len() >= x.len(), "an index per input");
        let mut nnz = 0;
        for (c, chunk) in x.chunks(32).enumerate() {
            let mut mask = chunk
                .iter()
                .enumerate()
                .fold(0u32, |m, (j, v)| m | (u32::from(*v != 0.0) << j));
            while mask != 0 {
                // SAFETY: `nnz` counts the set bits so far, one per non-zero
                // input seen, so it is below `x.len() <= active.len()`.
                unsafe { *active.get_unchecked_mut(nnz) = (c * 32) as u32 + mask.trailing_zeros() };
                nnz += 1;
                mask &= mask - 1;
            }
        }
        Some(&active[..nnz])
    }
}

/// Whether every value of `data` is finite (no early exit).
pub(crate) fn all_finite(k: &Kernels, data: &[f32]) -> bool {
    k.dispatch(AllFinite(data))
}

struct AllFinite<'a>(&'a [f32]);

impl WithSimd for AllFinite<'_> {
    type Output = bool;

    /// `x - x` is zero for a finite `x` and NaN for NaN and infinities, and
    /// a sum with a NaN is NaN: two vector instructions per vector, in four
    /// independent sums. A fold over `is_finite` took 2.3 instructions per
    /// float (a 300-float input: 680), and one on the bits did not vectorize.
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> bool {
        let (head, tail) = S::as_simd_f32s(self.0);
        let mut sums = [simd.splat_f32s(0.0); 4];
        let mut chunks = head.chunks_exact(4);
        for chunk in chunks.by_ref() {
            for (sum, v) in sums.iter_mut().zip(chunk) {
                *sum = simd.add_f32s(*sum, simd.sub_f32s(*v, *v));
            }
        }
        // Apart from the whole chunks: one loop over `chunks(4)` did not
        // unroll, and took 430 instructions for conv's input against 180.
        for (sum, v) in sums.iter_mut().zip(chunks.remainder()) {
            *sum = simd.add_f32s(*sum, simd.sub_f32s(*v, *v));
        }
        let sum = simd.add_f32s(
            simd.add_f32s(sums[0], sums[1]),
            simd.add_f32s(sums[2], sums[3]),
        );
        simd.reduce_sum_f32s(sum) == 0.0 && tail.iter().all(|v| v.is_finite())
    }
}

/// Layers doing fewer multiply-adds than this per step run on one thread:
/// below it the hand-over to the team and back costs more than it saves.
pub(crate) const PARALLEL_WORK: usize = 1 << 15;

/// Runs `f` over rows of `x` (`xw` floats each) and `y` (`yw` each), in
/// contiguous shares spread over the team, each with its thread's scratch,
/// when there are several rows and `row_work * rows` is worth it. Shares
/// never split a row, so every row is computed exactly as on one thread.
#[allow(clippy::too_many_arguments)]
pub(crate) fn split_rows<S: Send, F>(
    team: &mut Team,
    x: &[f32],
    xw: usize,
    y: &mut [f32],
    yw: usize,
    scratch: &mut [S],
    row_work: usize,
    f: F,
) where
    F: Fn(&[f32], &mut [f32], &mut S) + Sync,
{
    let rows = rows_in(y.len(), yw);
    let parts = team.threads().min(rows);
    if parts < 2 || rows.saturating_mul(row_work) < PARALLEL_WORK {
        return f(x, y, &mut scratch[0]);
    }
    in_shares(team, y, rows, yw, parts, scratch, |r, y, s| {
        f(&x[r.start * xw..r.end * xw], y, s)
    });
}

/// Runs `f(units, y[units], scratch)` for `parts` contiguous shares of the
/// `units` units of `width` floats of `y` (the last share also takes what
/// lies past the last whole unit), spread over the team, each with its
/// thread's scratch.
fn in_shares<S: Send, F>(
    team: &mut Team,
    y: &mut [f32],
    units: usize,
    width: usize,
    parts: usize,
    scratch: &mut [S],
    f: F,
) where
    F: Fn(Range<usize>, &mut [f32], &mut S) + Sync,
{
    assert!(scratch.len() >= team.threads(), "a scratch per thread");
    let len = y.len();
    let ys = Shares::new(y);
    let scratch = Shares::new(scratch);
    team.run(parts, &|part, thread| {
        let (a, b) = (
            share_start(units, parts, part),
            share_start(units, parts, part + 1),
        );
        let end = if b == units { len } else { b * width };
        // SAFETY: the shares take disjoint units, and each thread its own scratch.
        let (y, s) = unsafe { (ys.range(a * width..end), scratch.range(thread..thread + 1)) };
        f(a..b, y, &mut s[0]);
    });
}

/// A one-row layer doing fewer multiply-adds than this per step runs on one
/// thread (see [`split_columns`]).
pub(crate) const COLUMN_WORK: usize = 1 << 15;

/// Runs `f(cols, y[cols], scratch)` over contiguous column ranges of a
/// one-row `y`, spread over the team, when `work` is worth it. Ranges are cut
/// at multiples of `block` (see [`Kernels::column_block`]), so that every
/// column is computed exactly as by one call over all of them.
pub(crate) fn split_columns<S: Send, F>(
    team: &mut Team,
    y: &mut [f32],
    block: usize,
    scratch: &mut [S],
    work: usize,
    f: F,
) where
    F: Fn(Range<usize>, &mut [f32], &mut S) + Sync,
{
    let n = y.len();
    if team.threads() < 2 || work < COLUMN_WORK {
        return f(0..n, y, &mut scratch[0]);
    }
    let blocks = n / block.max(1);
    let parts = team.threads().min(blocks);
    if parts < 2 {
        return f(0..n, y, &mut scratch[0]);
    }
    in_shares(team, y, blocks, block, parts, scratch, |b, y, s| {
        let first = b.start * block;
        f(first..first + y.len(), y, s)
    });
}

/// Geometry of a 2-d convolution or pooling window over `[C, H, W]` samples
/// (1-d ops use `H = KH = 1`, stride/dilation 1 and padding 0 on that axis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    /// Input channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Strides `(y, x)`.
    pub stride: (usize, usize),
    /// Paddings `(y, x)`.
    pub pad: (usize, usize),
    /// Dilations `(y, x)`.
    pub dil: (usize, usize),
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

impl Window {
    /// Whether [`conv2d`] reads the input directly (unit stride along `x`)
    /// rather than through an im2col matrix.
    pub(crate) fn direct(&self) -> bool {
        self.stride.1 == 1
    }

    /// Whether a direct convolution on vectors of `lanes` cuts its whole
    /// output plane into vectors, rather than each output row
    /// ([`DirectConv`]). It needs unit strides, and pays where rows would
    /// leave lanes idle: the conv model cut after its 3-16 convolution
    /// (rows of 8) stepped in 0.54 us by rows and 0.59 by plane on AVX2
    /// (three copies of the input), 0.62 by rows and 0.39 by plane on
    /// AVX-512 (by rows, half of each vector idle).
    fn by_plane(&self, lanes: usize) -> bool {
        self.stride == (1, 1) && !self.ow.is_multiple_of(lanes)
    }

    /// Whether some instruction set cuts this plane into vectors: every
    /// vector width divides `MAX_LANES`, so a row that leaves lanes idle at
    /// any width leaves them idle at `MAX_LANES`.
    fn any_by_plane(&self) -> bool {
        self.by_plane(MAX_LANES)
    }

    /// The floats of [`conv2d`]'s scratch for `groups`: for a direct
    /// convolution, one group's padded input, or its `KW` shifted copies
    /// (see [`DirectConv`]; the larger of the two), with a vector of slack
    /// that only discarded lanes read; else one group's im2col matrix.
    /// `None` on overflow.
    pub(crate) fn scratch_floats(&self, groups: usize) -> Option<usize> {
        let cg = self.c / groups.max(1);
        let (ph, pw) = self.padded();
        if !self.direct() {
            return cg
                .checked_mul(self.kh * self.kw)?
                .checked_mul(self.oh * self.ow);
        }
        let by_row = cg.checked_mul(ph)?.checked_mul(pw)?;
        let by_plane = if self.any_by_plane() {
            cg.checked_mul(ph)?
                .checked_mul(self.kw)?
                .checked_mul(self.ow)?
        } else {
            0
        };
        by_row.max(by_plane).checked_add(MAX_LANES)
    }

    /// How a direct convolution over `groups` of `weight`
    /// (`[out_channels, C/groups, KH, KW]`) reads its input and weights
    /// ([`DirectLayout`]).
    pub(crate) fn layout(
        &self,
        groups: usize,
        weight: &[f32],
        out_channels: usize,
    ) -> DirectLayout {
        if !self.direct() {
            return DirectLayout::default();
        }
        let (ph, pw) = self.padded();
        let cg = self.c / groups.max(1);
        let by_plane = self.any_by_plane();
        let mut layout = DirectLayout::default();
        for c in 0..cg {
            for ky in 0..self.kh {
                let row = c * ph + ky * self.dil.0;
                for kx in 0..self.kw {
                    layout.by_row.push(row * pw + kx * self.dil.1);
                    if by_plane {
                        layout.by_plane.push((kx * cg * ph + row) * self.ow);
                    }
                }
            }
        }
        if self.paired_floats(groups, out_channels) != Some(0) {
            layout.paired =
                paired_weights(weight, out_channels / groups.max(1), layout.by_row.len());
        }
        layout
    }

    /// The floats of [`DirectLayout::paired`] for `out_channels` over
    /// `groups`, eight copies of each weight: 0 unless [`Window::by_halves`]
    /// and the CPU runs AVX-512 (no other reads them). `None` on overflow.
    pub(crate) fn paired_floats(&self, groups: usize, out_channels: usize) -> Option<usize> {
        if !self.by_halves() || !crate::simd::Isa::Avx512.is_available() {
            return Some(0);
        }
        let groups = groups.max(1);
        let pairs = (out_channels / groups).div_ceil(2);
        let kdim = (self.c / groups)
            .checked_mul(self.kh)?
            .checked_mul(self.kw)?;
        groups
            .checked_mul(pairs)?
            .checked_mul(kdim)?
            .checked_mul(MAX_LANES)
    }

    /// Whether an AVX-512 convolution cuts each output row into half
    /// vectors, two output channels to a vector ([`conv_halves_avx512`]):
    /// for rows a multiple of 8 floats but not of 16, which by rows leave
    /// half of every last vector idle, and by plane need `KW` shifted
    /// copies of the input. The conv model's 3-16 convolution (rows of 8)
    /// took 366 ns by plane and 264 ns in halves on a Zen 5 (a
    /// stand-alone prototype of this kernel).
    pub(crate) fn by_halves(&self) -> bool {
        self.direct() && self.ow.is_multiple_of(HALF) && !self.ow.is_multiple_of(MAX_LANES)
    }

    /// Height and width of the input plane with its padding.
    fn padded(&self) -> (usize, usize) {
        (self.h + 2 * self.pad.0, self.w + 2 * self.pad.1)
    }

    /// Floats of one input sample `[C, H, W]` and one output sample `[O, OH, OW]`.
    pub(crate) fn sample_sizes(&self, out_channels: usize) -> (usize, usize) {
        (self.c * self.h * self.w, out_channels * self.oh * self.ow)
    }

    /// Range of output positions `o` along one axis for which
    /// `o*stride - pad + k*dil` lies in `[0, len)`.
    #[inline]
    fn valid(
        k: usize,
        stride: usize,
        pad: usize,
        dil: usize,
        len: usize,
        out: usize,
    ) -> (usize, usize) {
        // i = o*s + k*d - p; need 0 <= i < len.
        let off = k * dil;
        if stride == 1 {
            // The common case, without the divisions (they were a fifth of
            // a small convolution's time).
            let hi = (len + pad).saturating_sub(off).min(out);
            return (pad.saturating_sub(off).min(hi), hi);
        }
        let lo = if off >= pad {
            0
        } else {
            (pad - off).div_ceil(stride)
        };
        // o*s + off - p <= len - 1  <=>  o <= (len - 1 + p - off) / s
        let hi = if len + pad > off {
            ((len - 1 + pad - off) / stride + 1).min(out)
        } else {
            0
        };
        (lo.min(hi), hi)
    }
}

/// How a direct convolution reads its input and weights, laid out at load
/// for every instruction set (the one in use may change after load):
/// where each tap `(c, ky, kx)` starts in its scratch, in the weights'
/// order, for both layouts of [`DirectConv`], and the weights in channel
/// pairs for [`conv_halves_avx512`]. Empty when the convolution goes
/// through im2col; `by_plane` too unless some instruction set cuts the
/// plane ([`Window::by_plane`]), `paired` unless [`Window::by_halves`].
/// The inner loops then run over one list, not three nested loops.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DirectLayout {
    /// In the padded input; increasing (the weights' order is `c`, `ky`,
    /// `kx`), so that the last tap reads furthest.
    by_row: Vec<usize>,
    /// In the `KW` shifted copies.
    by_plane: Vec<usize>,
    /// `[groups, pairs, kdim, 16]`: each group's output channels in pairs
    /// `(2p, 2p + 1)`, each tap's two weights filling the low and the high
    /// half of a vector (an odd last channel pairs with zeros).
    paired: Floats,
}

/// Lanes of half an AVX-512 vector: the output floats of a channel in one
/// vector of [`conv_halves_avx512`].
const HALF: usize = MAX_LANES / 2;

/// `weight` (`[groups * og, kdim]`) as [`DirectLayout::paired`].
fn paired_weights(weight: &[f32], og: usize, kdim: usize) -> Floats {
    let pairs = og.div_ceil(2);
    let groups = weight.len() / (og * kdim).max(1);
    let mut paired = Floats::zeros(groups * pairs * kdim * MAX_LANES);
    for (group, w) in weight.chunks_exact(og * kdim).enumerate() {
        for (oc, row) in w.chunks_exact(kdim).enumerate() {
            let pair = group * pairs + oc / 2;
            for (t, &v) in row.iter().enumerate() {
                let at = (pair * kdim + t) * MAX_LANES + (oc % 2) * HALF;
                paired[at..at + HALF].fill(v);
            }
        }
    }
    paired
}

/// Copies the receptive fields of `cg` input channels (`[cg, H, W]`) into
/// `col` as `[cg * KH * KW, OH * OW]`, zeros where the window meets padding.
///
/// The rows of a small convolution are a few floats long: copied with vector
/// loads and stores rather than `memcpy` calls, whose per-call cost was most
/// of the layer's time (10x10 inputs, 3x3 kernel: 216 calls of 8 floats).
struct Im2col<'a> {
    x: &'a [f32],
    col: &'a mut [f32],
    g: &'a Window,
    cg: usize,
}

impl WithSimd for Im2col<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Im2col { x, col, g, cg } = self;
        let positions = g.oh * g.ow;
        let mut rows = col.chunks_exact_mut(positions);
        for c in 0..cg {
            let xp = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
            for ky in 0..g.kh {
                let (oy0, oy1) = Window::valid(ky, g.stride.0, g.pad.0, g.dil.0, g.h, g.oh);
                for kx in 0..g.kw {
                    let (ox0, ox1) = Window::valid(kx, g.stride.1, g.pad.1, g.dil.1, g.w, g.ow);
                    let Some(row) = rows.next() else { return };
                    // Only a window that meets padding leaves positions unwritten.
                    if (oy0, oy1, ox0, ox1) != (0, g.oh, 0, g.ow) {
                        row.fill(0.0);
                    }
                    if ox0 >= ox1 {
                        continue;
                    }
                    let ix0 = ox0 * g.stride.1 + kx * g.dil.1 - g.pad.1;
                    let n = ox1 - ox0;
                    // Run `oy` goes from `d` in the row and `s` in the input.
                    let mut d = oy0 * g.ow + ox0;
                    let mut s = (oy0 * g.stride.0 + ky * g.dil.0 - g.pad.0) * g.w + ix0;
                    let step = g.stride.0 * g.w;
                    if g.stride.1 != 1 {
                        for _ in oy0..oy1 {
                            let src = xp[s..].iter().step_by(g.stride.1);
                            for (v, xv) in row[d..d + n].iter_mut().zip(src) {
                                *v = *xv;
                            }
                            d += g.ow;
                            s += step;
                        }
                        continue;
                    }
                    // Whole output rows lie end to end in `col`: a run may
                    // then spill up to one vector into the runs after it,
                    // which overwrite the spill. So runs copy as one unmasked
                    // vector while the spill stays before the end of the last
                    // run (and the vector inside the input), then masked.
                    let lanes = S::F32_LANES;
                    let mut oy = oy0;
                    if (ox0, ox1) == (0, g.ow) && n <= lanes {
                        while oy < oy1 && d + lanes <= oy1 * g.ow && s + lanes <= xp.len() {
                            store(simd, &mut row[d..d + lanes], load(simd, &xp[s..s + lanes]));
                            (d, s, oy) = (d + g.ow, s + step, oy + 1);
                        }
                    }
                    for _ in oy..oy1 {
                        copy(simd, &mut row[d..d + n], &xp[s..s + n]);
                        (d, s) = (d + g.ow, s + step);
                    }
                }
            }
        }
    }
}

/// One group of a convolution with unit stride along `x`, computed from
/// its input: im2col copied every input value `KH x KW` times (a 3-16
/// convolution on 10x10 spent a third of its instructions there). The
/// input is first copied with its padding into `padded`, so that every tap
/// reads a whole vector of consecutive positions. A register tile holds
/// several output channels x two vectors, each input vector loaded feeding
/// all its channels.
///
/// Each output row is cut into vectors, or, where that leaves lanes idle
/// and the strides are 1 ([`Window::by_plane`]), the whole output plane:
/// `padded` then holds `KW` copies of the padded input, copy `kx` shifted
/// by that tap's columns and cut to the output width, so that consecutive
/// output rows read positions that lie end to end, as in the output.
struct DirectConv<'a> {
    /// `[cg, H, W]`.
    x: &'a [f32],
    /// `[og, OH, OW]`.
    y: &'a mut [f32],
    /// `[og, cg, KH, KW]`.
    weight: &'a [f32],
    bias: Option<&'a [f32]>,
    g: &'a Window,
    layout: &'a DirectLayout,
    padded: &'a mut [f32],
    /// `cg` and `og`: the channels of `x` and `y` (given, not divided out).
    channels: (usize, usize),
}

/// Output channels of a [`DirectConv`] register tile, then of the tiles
/// for the channels left: 6 x 2 sums, 2 input vectors and a broadcast
/// weight fill 15 of AVX2's 16 registers (a 4 x 3 tile, 16, was spilled).
const CONV_CHANNELS: (usize, usize) = (6, 4);

impl WithSimd for DirectConv<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let DirectConv {
            x,
            y,
            weight,
            bias,
            g,
            layout,
            padded,
            channels: (cg, og),
        } = self;
        let lanes = S::F32_LANES;
        assert!(x.len() == cg * g.h * g.w && y.len() == og * g.oh * g.ow);
        let (ph, pw) = g.padded();
        let by_plane = g.by_plane(lanes);
        let (taps, used) = match by_plane {
            true => (&layout.by_plane[..], g.kw * cg * ph * g.ow),
            false => (&layout.by_row[..], cg * ph * pw),
        };
        let padded = &mut padded[..used + lanes];
        if by_plane {
            shifted_copies(simd, x, padded, g, cg);
        } else {
            pad_into(x, padded, g);
        }
        let plane = g.oh * g.ow;
        let kdim = taps.len();
        // The output vectors in order: (start in a scratch plane, start in
        // an output plane, floats), cutting the plane or each row.
        let (row_len, row_step, rows) = match by_plane {
            true => (plane, 0, 1),
            false => (g.ow, g.stride.0 * pw, g.oh),
        };
        let segments = row_len.div_ceil(lanes);
        let vector = |row: usize, seg: usize| {
            let x0 = seg * lanes;
            (
                row * row_step + x0,
                row * g.ow + x0,
                lanes.min(row_len - x0),
            )
        };
        // Every read below stays inside `padded` and `weight`: the last
        // tap's last vector ends there at the latest.
        let last_vector = vector(rows.saturating_sub(1), segments.saturating_sub(1)).0;
        let last_tap = taps.iter().max().copied().unwrap_or(0);
        assert!(last_tap + last_vector + lanes <= padded.len());
        assert!(og * kdim <= weight.len() && bias.is_none_or(|b| b.len() >= og));
        let conv = Conv {
            padded,
            weight,
            bias,
            taps,
        };
        let (mut row, mut seg) = (0, 0);
        let mut next = || {
            if row == rows || segments == 0 {
                return None;
            }
            let v = vector(row, seg);
            seg += 1;
            if seg == segments {
                (row, seg) = (row + 1, 0);
            }
            Some(v)
        };
        while let Some(first) = next() {
            match next() {
                Some(second) => conv.channels::<S, 2>(simd, y, plane, og, [first, second]),
                None => conv.channels::<S, 1>(simd, y, plane, og, [first]),
            }
        }
    }
}

/// `x` (`[cg, H, W]`) into `padded` as `[cg, PH, PW]`, zeros around it.
fn pad_into(x: &[f32], padded: &mut [f32], g: &Window) {
    if g.pad == (0, 0) {
        padded[..x.len()].copy_from_slice(x);
        return;
    }
    let (ph, pw) = g.padded();
    padded.fill(0.0);
    for (c, plane) in x.chunks_exact(g.h * g.w).enumerate() {
        for (iy, row) in plane.chunks_exact(g.w).enumerate() {
            let at = (c * ph + iy + g.pad.0) * pw + g.pad.1;
            padded[at..at + g.w].copy_from_slice(row);
        }
    }
}

/// The `KW` shifted copies of a [`Window::by_plane`] convolution's input
/// `[cg, H, W]`: copy `kx` is `[cg, PH, OW]`, its row `r` of channel `c`
/// the padded input's row `r` from column `kx * dil` on, zeros where that
/// meets padding.
#[inline(always)]
fn shifted_copies<S: Simd>(simd: S, x: &[f32], padded: &mut [f32], g: &Window, cg: usize) {
    let (ph, lanes) = (g.padded().0, S::F32_LANES);
    if g.pad == (0, 0) && g.ow <= lanes {
        // Every row one vector: the rows lie end to end in `padded`, so
        // each may spill past its end into the next, which overwrites the
        // spill (the last spills into the slack). Then the reads are
        // unmasked too while they stay in `x`: a masked copy per row, or
        // the checks of the general case, cost more than the convolution's
        // sums of a row (AVX-512, 3x3 on 10x10).
        let (rows, n) = (cg * g.h, g.ow);
        let mut d = 0;
        for kx in 0..g.kw {
            let mut s = kx * g.dil.1;
            for _ in 0..rows {
                if s + lanes <= x.len() {
                    store(
                        simd,
                        &mut padded[d..d + lanes],
                        load(simd, &x[s..s + lanes]),
                    );
                } else {
                    copy(simd, &mut padded[d..d + n], &x[s..s + n]);
                }
                (d, s) = (d + n, s + g.w);
            }
        }
        return;
    }
    if g.pad != (0, 0) {
        padded.fill(0.0);
    }
    let mut rows = padded.chunks_exact_mut(g.ow);
    for kx in 0..g.kw {
        // Output columns whose tap `kx` reads the input, and the first
        // input column they read.
        let (lo, hi) = Window::valid(kx, 1, g.pad.1, g.dil.1, g.w, g.ow);
        let from = (lo + kx * g.dil.1).saturating_sub(g.pad.1);
        for plane in x.chunks_exact(g.h * g.w).take(cg) {
            for r in 0..ph {
                let Some(dst) = rows.next() else { return };
                let Some(iy) = r.checked_sub(g.pad.0).filter(|&iy| iy < g.h) else {
                    continue;
                };
                if lo < hi {
                    let src = &plane[iy * g.w + from..][..hi - lo];
                    copy(simd, &mut dst[lo..hi], src);
                }
            }
        }
    }
}

/// The read-only side of a [`DirectConv`], its reads checked there.
struct Conv<'a> {
    padded: &'a [f32],
    weight: &'a [f32],
    bias: Option<&'a [f32]>,
    taps: &'a [usize],
}

impl Conv<'_> {
    /// Every output channel at the output vectors `at` (see
    /// [`DirectConv`]), in tiles of [`CONV_CHANNELS`], then one at a time.
    #[inline(always)]
    fn channels<S: Simd, const V: usize>(
        &self,
        simd: S,
        y: &mut [f32],
        plane: usize,
        og: usize,
        at: [(usize, usize, usize); V],
    ) {
        let (wide, narrow) = CONV_CHANNELS;
        let mut oc = 0;
        while oc + wide <= og {
            self.tile::<S, { CONV_CHANNELS.0 }, V>(simd, y, plane, oc, at);
            oc += wide;
        }
        while oc + narrow <= og {
            self.tile::<S, { CONV_CHANNELS.1 }, V>(simd, y, plane, oc, at);
            oc += narrow;
        }
        while oc < og {
            self.tile::<S, 1, V>(simd, y, plane, oc, at);
            oc += 1;
        }
    }

    /// Output channels `oc..oc + R` at the output vectors `at`.
    #[inline(always)]
    fn tile<S: Simd, const R: usize, const V: usize>(
        &self,
        simd: S,
        y: &mut [f32],
        plane: usize,
        oc: usize,
        at: [(usize, usize, usize); V],
    ) {
        let zero = simd.splat_f32s(0.0);
        let mut acc = [[zero; V]; R];
        if let Some(b) = self.bias {
            for (r, row) in acc.iter_mut().enumerate() {
                *row = [simd.splat_f32s(b[oc + r]); V];
            }
        }
        let kdim = self.taps.len();
        let p = self.padded.as_ptr();
        let w = self.weight[oc * kdim..].as_ptr();
        for (t, &tap) in self.taps.iter().enumerate() {
            // SAFETY: `DirectConv` checked that the last tap's last vector
            // lies in `padded`, and the weights of every channel.
            let xs: [S::f32s; V] = std::array::from_fn(|j| unsafe {
                p.add(tap + at[j].0).cast::<S::f32s>().read_unaligned()
            });
            for (r, acc_r) in acc.iter_mut().enumerate() {
                // SAFETY: as above (`oc + r < og`, `t < kdim`).
                let wv = simd.splat_f32s(unsafe { *w.add(r * kdim + t) });
                for (a, xv) in acc_r.iter_mut().zip(xs) {
                    *a = simd.mul_add_e_f32s(wv, xv, *a);
                }
                // As in `simd::accumulate`: each broadcast stays after the
                // previous channel's multiply-adds (hoisted, they spill).
                if R > 1 && S::F32_LANES == 8 {
                    compiler_fence(Ordering::SeqCst);
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            for (a, &(_, out, n)) in acc_r.iter().zip(&at) {
                let o = (oc + r) * plane + out;
                store(simd, &mut y[o..o + n], *a);
            }
        }
    }
}

/// `dst = src`, a vector at a time (same lengths).
#[inline(always)]
fn copy<S: Simd>(simd: S, dst: &mut [f32], src: &[f32]) {
    let (lanes, n) = (S::F32_LANES, dst.len().min(src.len()));
    let mut i = 0;
    while i + lanes <= n {
        store(simd, &mut dst[i..i + lanes], load(simd, &src[i..i + lanes]));
        i += lanes;
    }
    if i < n {
        store(simd, &mut dst[i..n], load(simd, &src[i..n]));
    }
}

/// One group of a [`Window::by_halves`] convolution on AVX-512: each vector
/// holds the same 8 output positions of two channels, the input's 8 floats
/// loaded into both halves by one broadcast, each tap's two weights in the
/// halves of one vector of `paired` ([`DirectLayout::paired`], this
/// group's), for `cg` input and `og` output channels. So no lane idles
/// and the input is read in place, copied only to pad it. Register tiles
/// of [`HALVES_TILE`]. Sums in the order of [`DirectConv`], whose bits it
/// gives.
///
/// # Safety
/// The CPU runs AVX-512 F and DQ.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
#[allow(clippy::too_many_arguments)]
unsafe fn conv_halves_avx512(
    x: &[f32],
    y: &mut [f32],
    paired: &[f32],
    bias: Option<&[f32]>,
    g: &Window,
    taps: &[usize],
    padded: &mut [f32],
    (cg, og): (usize, usize),
) {
    let ((ph, pw), plane) = (g.padded(), g.oh * g.ow);
    let src = match g.pad {
        (0, 0) => x,
        _ => {
            let padded = &mut padded[..cg * ph * pw];
            pad_into(x, padded, g);
            padded
        }
    };
    // Every read below stays inside `src`, `paired`, `bias` and `y`: the
    // last vector of the last tap ends there at the latest.
    let (per_row, kdim, pairs) = (g.ow / HALF, taps.len(), og.div_ceil(2));
    let vectors = g.oh * per_row;
    let row_step = g.stride.0 * pw;
    // Without a division for rows of one vector (the division per vector
    // took a sixth of the 3-16 convolution's time on 10x10).
    let input_at = move |v: usize| match per_row {
        1 => v * row_step,
        _ => (v / per_row) * row_step + (v % per_row) * HALF,
    };
    // The last tap reads furthest (`DirectLayout::by_row`): no pass over
    // the taps for their maximum.
    let last = taps.last().copied().unwrap_or(0) + input_at(vectors.saturating_sub(1));
    assert!(vectors == 0 || last + HALF <= src.len());
    assert!(paired.len() >= pairs * kdim * MAX_LANES && y.len() == og * plane);
    assert!(bias.is_none_or(|b| b.len() >= og));
    let out = HalvesOut {
        y: y.as_mut_ptr(),
        plane,
        og,
    };
    let (pairs_tile, vectors_tile) = HALVES_TILE;
    let mut v = 0;
    while v < vectors {
        let n = (vectors - v).min(vectors_tile);
        let mut pair = 0;
        while pair < pairs {
            let whole = pairs - pair >= pairs_tile;
            let w = paired[pair * kdim * MAX_LANES..].as_ptr();
            let b = |c: usize| bias.map_or(0.0, |b| if c < og { b[c] } else { 0.0 });
            // SAFETY: checked above (`v + n <= vectors`, `pair + R <= pairs`).
            unsafe {
                match (whole, n == vectors_tile) {
                    (true, true) => halves_tile::<{ HALVES_TILE.0 }, { HALVES_TILE.1 }>(
                        src, taps, w, b, &out, pair, v, input_at,
                    ),
                    (true, false) => {
                        for v in v..v + n {
                            halves_tile::<{ HALVES_TILE.0 }, 1>(
                                src, taps, w, b, &out, pair, v, input_at,
                            );
                        }
                    }
                    (false, true) => halves_tile::<1, { HALVES_TILE.1 }>(
                        src, taps, w, b, &out, pair, v, input_at,
                    ),
                    (false, false) => {
                        for v in v..v + n {
                            halves_tile::<1, 1>(src, taps, w, b, &out, pair, v, input_at);
                        }
                    }
                }
            }
            pair += if whole { pairs_tile } else { 1 };
        }
        v += n;
    }
}

/// Channel pairs x half vectors of a [`conv_halves_avx512`] register tile:
/// 16 sums, 2 weight vectors and an input vector of the 32 registers. Each
/// tap loads its weights once, then the inputs one at a time, each feeding
/// both pairs (the conv model's 3-16 on 10x10, Zen 5: 2 x 8 took 244 ns, 4
/// x 4 264 ns, 4 x 4 loading its 4 inputs first 328 ns; 234 ns at peak).
#[cfg(target_arch = "x86_64")]
const HALVES_TILE: (usize, usize) = (2, 8);

/// Where a [`conv_halves_avx512`] tile stores: `y` is `[og, plane]`.
#[cfg(target_arch = "x86_64")]
struct HalvesOut {
    y: *mut f32,
    plane: usize,
    og: usize,
}

/// Channel pairs `pair..pair + R` at the half-vector positions `v..v + V`
/// of a [`conv_halves_avx512`]; `w` is the pair `pair`'s weights, `bias(c)`
/// channel `c`'s bias (0 for none), `input_at(v)` where vector `v` reads.
///
/// # Safety
/// The CPU runs AVX-512 F and DQ; every read and store lies in the buffers
/// that [`conv_halves_avx512`] checked.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn halves_tile<const R: usize, const V: usize>(
    src: &[f32],
    taps: &[usize],
    w: *const f32,
    bias: impl Fn(usize) -> f32,
    out: &HalvesOut,
    pair: usize,
    v: usize,
    input_at: impl Fn(usize) -> usize,
) {
    use std::arch::x86_64::*;
    let kdim = taps.len();
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    for (r, acc_r) in acc.iter_mut().enumerate() {
        let c = 2 * (pair + r);
        let low = _mm512_set1_ps(bias(c));
        *acc_r = [_mm512_insertf32x8::<1>(low, _mm256_set1_ps(bias(c + 1))); V];
    }
    // A pointer per vector: each read is then one address, where offsets
    // from one pointer cost two registers each (spilled; 292 against 244 ns).
    // SAFETY (all below): as the caller checked.
    let inputs: [*const f32; V] =
        std::array::from_fn(|j| unsafe { src.as_ptr().add(input_at(v + j)) });
    for (t, &tap) in taps.iter().enumerate() {
        let ws: [__m512; R] =
            std::array::from_fn(|r| unsafe { _mm512_loadu_ps(w.add((r * kdim + t) * MAX_LANES)) });
        for (j, &at) in inputs.iter().enumerate() {
            let xv = unsafe { _mm512_broadcast_f32x8(_mm256_loadu_ps(at.add(tap))) };
            for (acc_r, &wv) in acc.iter_mut().zip(&ws) {
                acc_r[j] = _mm512_fmadd_ps(wv, xv, acc_r[j]);
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        let c = 2 * (pair + r);
        for (j, &a) in acc_r.iter().enumerate() {
            // Output rows are whole half vectors, end to end.
            let at = (v + j) * HALF;
            unsafe {
                _mm256_storeu_ps(out.y.add(c * out.plane + at), _mm512_castps512_ps256(a));
                if c + 1 < out.og {
                    let high = _mm512_extractf32x8_ps::<1>(a);
                    _mm256_storeu_ps(out.y.add((c + 1) * out.plane + at), high);
                }
            }
        }
    }
}

/// Grouped, strided, padded, dilated 2-d convolution of `streams` samples.
/// With a unit stride along `x`, each group's input is copied into `col`
/// with its padding, and the output computed from it directly
/// ([`DirectConv`]); otherwise through im2col and one broadcast-accumulate
/// product per group.
///
/// `x` is `[streams, C, H, W]`, `y` is `[streams, O, OH, OW]`, `weight` is
/// `[O, C/groups, KH, KW]`; `layout` is [`Window::layout`] and `col` holds
/// [`Window::scratch_floats`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d(
    k: &Kernels,
    x: &[f32],
    y: &mut [f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    g: &Window,
    layout: &DirectLayout,
    o_channels: usize,
    groups: usize,
    col: &mut [f32],
) {
    let in_plane = g.h * g.w;
    let out_plane = g.oh * g.ow;
    let in_sample = g.c * in_plane;
    let out_sample = o_channels * out_plane;
    if in_sample == 0 || out_sample == 0 || groups == 0 {
        return;
    }
    // Divisions only for several groups or streams: a one-stream step did
    // eight for this layer (each slower than a few dozen multiply-adds).
    let (cg, og) = match groups {
        1 => (g.c, o_channels),
        _ => (g.c / groups, o_channels / groups),
    };
    let kdim = cg * g.kh * g.kw;
    let samples = rows_in(x.len(), in_sample).min(rows_in(y.len(), out_sample));
    for sample in 0..samples {
        let xs = &x[sample * in_sample..][..in_sample];
        let ys = &mut y[sample * out_sample..][..out_sample];
        for group in 0..groups {
            let rows = group * og..(group + 1) * og;
            let x = &xs[group * cg * in_plane..(group + 1) * cg * in_plane];
            let y = &mut ys[rows.start * out_plane..rows.end * out_plane];
            let weight = &weight[rows.start * kdim..rows.end * kdim];
            let bias = bias.map(|b| &b[rows]);
            #[cfg(target_arch = "x86_64")]
            if k.isa() == crate::simd::Isa::Avx512 && g.by_halves() {
                let paired = &layout.paired[group * og.div_ceil(2) * kdim * MAX_LANES..];
                let taps = &layout.by_row;
                // SAFETY: kernels for AVX-512 exist only on CPUs that run it
                // (F, BW, CD, DQ and VL).
                unsafe { conv_halves_avx512(x, y, paired, bias, g, taps, col, (cg, og)) };
                continue;
            }
            if g.direct() {
                let padded = &mut *col;
                k.dispatch(DirectConv {
                    x,
                    y,
                    weight,
                    bias,
                    g,
                    layout,
                    padded,
                    channels: (cg, og),
                });
            } else {
                let col = &mut col[..kdim * out_plane];
                k.dispatch(Im2col { x, col, g, cg });
                let start = bias.map_or(Start::Zero, Start::Row);
                let b = Panels::plain(col, out_plane);
                k.outer_accumulate(y, start, weight, b, kdim, 0..out_plane, None);
            }
        }
    }
}

/// Pooling flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolKind {
    /// Mean over the window; the divisor counts padding when the flag is set.
    Avg {
        /// `count_include_pad`.
        count_include_pad: bool,
    },
    /// Maximum over the window (padding never wins, NaN propagates).
    Max,
}

/// 2-d pooling of `[rows, H, W]` planes into `[rows, OH, OW]` (dilation 1).
pub(crate) fn pool2d(x: &[f32], y: &mut [f32], g: &Window, kind: PoolKind) {
    let in_plane = g.h * g.w;
    let out_plane = g.oh * g.ow;
    if in_plane == 0 || out_plane == 0 {
        return;
    }
    for (xp, yp) in x.chunks_exact(in_plane).zip(y.chunks_exact_mut(out_plane)) {
        for oy in 0..g.oh {
            // Window rows in padded coordinates, then clipped (PyTorch's order).
            let hs = (oy * g.stride.0) as isize - g.pad.0 as isize;
            let he = (hs + g.kh as isize).min((g.h + g.pad.0) as isize);
            let hs_c = hs.max(0) as usize;
            let he_c = he.min(g.h as isize).max(0) as usize;
            for ox in 0..g.ow {
                let ws = (ox * g.stride.1) as isize - g.pad.1 as isize;
                let we = (ws + g.kw as isize).min((g.w + g.pad.1) as isize);
                let ws_c = ws.max(0) as usize;
                let we_c = we.min(g.w as isize).max(0) as usize;
                let v = match kind {
                    PoolKind::Avg { count_include_pad } => {
                        let mut sum = 0.0f32;
                        for iy in hs_c..he_c {
                            for ix in ws_c..we_c {
                                sum += xp[iy * g.w + ix];
                            }
                        }
                        let count = if count_include_pad {
                            ((he - hs) * (we - ws)) as f32
                        } else {
                            ((he_c.saturating_sub(hs_c)) * (we_c.saturating_sub(ws_c))) as f32
                        };
                        sum / count
                    }
                    PoolKind::Max => {
                        let mut m = f32::NEG_INFINITY;
                        'win: for iy in hs_c..he_c {
                            for ix in ws_c..we_c {
                                let v = xp[iy * g.w + ix];
                                if v > m || v.is_nan() {
                                    m = v;
                                    if v.is_nan() {
                                        break 'win;
                                    }
                                }
                            }
                        }
                        m
                    }
                };
                yp[oy * g.ow + ox] = v;
            }
        }
    }
}

/// `y = x * scale[c] + shift[c]` over `[rows, C, inner]`.
pub(crate) fn channel_affine(x: &[f32], y: &mut [f32], scale: &[f32], shift: &[f32], inner: usize) {
    let block = scale.len() * inner;
    if block == 0 || inner == 0 {
        return;
    }
    for (xb, yb) in x.chunks_exact(block).zip(y.chunks_exact_mut(block)) {
        for (c, (xc, yc)) in xb
            .chunks_exact(inner)
            .zip(yb.chunks_exact_mut(inner))
            .enumerate()
        {
            let (a, b) = (scale[c], shift[c]);
            for (xi, yi) in xc.iter().zip(yc.iter_mut()) {
                *yi = *xi * a + b;
            }
        }
    }
}

/// An elementwise op of one input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Unary {
    /// `max(x, 0)` (NaN stays NaN).
    Relu,
    /// `x if x > 0 else x * slope`.
    LeakyRelu(f32),
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// `x + c`.
    AddScalar(f32),
    /// `x * c`.
    MulScalar(f32),
}

/// Applies `op` elementwise.
pub(crate) fn unary(x: &[f32], y: &mut [f32], op: Unary) {
    let it = x.iter().zip(y.iter_mut());
    match op {
        Unary::Relu => it.for_each(|(a, b)| *b = if *a < 0.0 { 0.0 } else { *a }),
        Unary::LeakyRelu(s) => it.for_each(|(a, b)| *b = if *a > 0.0 { *a } else { *a * s }),
        Unary::Sigmoid => it.for_each(|(a, b)| *b = crate::neuron::sigmoid(*a)),
        Unary::Tanh => it.for_each(|(a, b)| *b = a.tanh()),
        Unary::AddScalar(c) => it.for_each(|(a, b)| *b = *a + c),
        Unary::MulScalar(c) => it.for_each(|(a, b)| *b = *a * c),
    }
}

/// An elementwise op of two same-shaped inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Binary {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
}

/// Applies `op` elementwise.
pub(crate) fn binary(a: &[f32], b: &[f32], y: &mut [f32], op: Binary) {
    let it = a.iter().zip(b).zip(y.iter_mut());
    match op {
        Binary::Add => it.for_each(|((a, b), y)| *y = a + b),
        Binary::Sub => it.for_each(|((a, b), y)| *y = a - b),
        Binary::Mul => it.for_each(|((a, b), y)| *y = a * b),
    }
}

/// Concatenation: for each of the `rows` outer blocks, copies each input's
/// chunk (`chunks[i]` floats of `buffer(inputs[i])`) in order.
pub(crate) fn cat<'a>(
    buffer: impl Fn(usize) -> &'a [f32],
    inputs: &[usize],
    chunks: &[usize],
    y: &mut [f32],
    rows: usize,
) {
    let mut pos = 0;
    for r in 0..rows {
        for (&i, &n) in inputs.iter().zip(chunks) {
            let x = buffer(i);
            y[pos..pos + n].copy_from_slice(&x[r * n..(r + 1) * n]);
            pos += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::Isa;

    fn win1d(c: usize, l: usize, k: usize, s: usize, p: usize, d: usize) -> Window {
        let ol = (l + 2 * p - d * (k - 1) - 1) / s + 1;
        Window {
            c,
            h: 1,
            w: l,
            kh: 1,
            kw: k,
            stride: (1, s),
            pad: (0, p),
            dil: (1, d),
            oh: 1,
            ow: ol,
        }
    }

    /// Runs `f` with the kernels of every instruction set this CPU runs.
    fn each_isa(mut f: impl FnMut(&Kernels)) {
        for isa in Isa::available() {
            f(&Kernels::new(isa).unwrap());
        }
    }

    /// Every instruction set finds a single NaN or infinity at any position
    /// (in the 16-lane body or the rest), and passes the largest, smallest
    /// and subnormal finite values.
    #[test]
    fn all_finite_finds_every_non_finite_value() {
        let finite = [
            0.0,
            -0.0,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            1e-45,
            -1.5,
        ];
        for n in [0, 1, 15, 16, 17, 33, 100] {
            let x: Vec<f32> = (0..n).map(|i| finite[i % finite.len()]).collect();
            each_isa(|k| assert!(all_finite(k, &x), "{} n={n}", k.isa()));
            for at in 0..n {
                for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -f32::NAN] {
                    let mut y = x.clone();
                    y[at] = bad;
                    each_isa(|k| assert!(!all_finite(k, &y), "{} n={n} at={at}", k.isa()));
                }
            }
        }
    }

    /// Every instruction set's active-input list is the plain scan's: the
    /// same indices, or none once there are more than `limit`, on lengths
    /// around the vector widths and the 64-input blocks of the early exit,
    /// with NaN (active) and -0.0 (not) among the values.
    #[test]
    fn active_inputs_match_a_plain_scan() {
        let mut rng = crate::rng::Rng::new(7);
        let lengths = [0, 1, 7, 8, 9, 31, 32, 33, 63, 64, 65, 127, 200, 1024, 1031];
        for &n in &lengths {
            for density in [0.0, 0.03, 0.3, 0.9, 1.0] {
                let x: Vec<f32> = (0..n)
                    .map(|_| match rng.uniform() {
                        u if u < density * 0.1 => f32::NAN,
                        u if u < density => 1.0 + u,
                        u if u < 0.5 + density / 2.0 => -0.0,
                        _ => 0.0,
                    })
                    .collect();
                let want: Vec<u32> = (0..n as u32).filter(|&i| x[i as usize] != 0.0).collect();
                for limit in [0, want.len().saturating_sub(1), want.len(), n] {
                    let expected = (want.len() <= limit).then_some(&want[..]);
                    each_isa(|k| {
                        let mut active = vec![u32::MAX; n];
                        let got = active_inputs(k, &x, &mut active, limit);
                        assert_eq!(
                            got,
                            expected,
                            "{} n={n} density={density} limit={limit}",
                            k.isa()
                        );
                    });
                }
            }
        }
    }

    /// `conv2d` on every instruction set; they must agree exactly on these
    /// small integer cases.
    fn conv(
        x: &[f32],
        y: &mut [f32],
        w: &[f32],
        b: Option<&[f32]>,
        g: &Window,
        o: usize,
        gr: usize,
    ) {
        let mut first: Option<Vec<f32>> = None;
        each_isa(|k| {
            let mut col = vec![f32::NAN; g.scratch_floats(gr).unwrap()];
            y.fill(f32::NAN);
            let layout = g.layout(gr, w, o);
            assert!(layout.by_row.is_sorted(), "the last tap reads furthest");
            conv2d(k, x, y, w, b, g, &layout, o, gr, &mut col);
            match &first {
                None => first = Some(y.to_vec()),
                Some(f) => assert_eq!(f.as_slice(), &*y, "{}", k.isa()),
            }
        });
    }

    #[test]
    fn linear_by_hand_dense_and_event_driven() {
        // W = [[1,2],[3,4],[5,6]], b = [0.5, 0, -1]; x rows [1,1], [2,-1], [0, 1].
        let wt = crate::simd::to_panels(&[1.0, 3.0, 5.0, 2.0, 4.0, 6.0], 2, 3);
        let b = [0.5, 0.0, -1.0];
        let x = [1.0, 1.0, 2.0, -1.0, 0.0, 1.0];
        let expected = [3.5, 7.0, 10.0, 0.5, 2.0, 3.0, 2.5, 4.0, 5.0];
        each_isa(|k| {
            for limit in [0, 2] {
                let mut y = [f32::NAN; 9];
                let mut active = [0u32; 2];
                linear(k, &x, &mut y, &wt, Some(&b), 2, 3, 0..3, limit, &mut active);
                assert_eq!(y, expected, "{}", k.isa());
            }
            // A row with one active input of 1024 takes the sparse path (it
            // lists the input); one with half of them active, even for 3
            // outputs, the dense path (its list is refused).
            let n = 1024;
            let w: Vec<f32> = (0..3 * n).map(|i| i as f32).collect(); // [3, n]
            let wt = crate::simd::to_panels(&transpose(&w, 3, n), n, 3);
            let mut x = vec![0.0f32; n];
            x[37] = 1.0;
            let mut active = vec![99u32; n];
            let mut y = [0.0; 3];
            let limit = event_limit(n, 3);
            linear(k, &x, &mut y, &wt, None, n, 3, 0..3, limit, &mut active);
            let at = |row: usize| (row * n + 37) as f32;
            assert_eq!((y, active[0]), ([at(0), at(1), at(2)], 37));
            let half: Vec<f32> = (0..n).map(|i| f32::from(i % 2 == 0)).collect();
            assert!(limit > 0);
            assert_eq!(active_inputs(k, &half, &mut active, limit), None);
            linear(k, &half, &mut y, &wt, None, n, 3, 0..3, limit, &mut active);
            let even = |row: usize| (0..n).step_by(2).map(|i| (row * n + i) as f32).sum::<f32>();
            assert_eq!(y, [even(0), even(1), even(2)]);
            // With slack, the list starts half a page from the input, at
            // every offset of the buffer it is given; a silent input too.
            let mut slack = vec![99u32; n + ACTIVE_SLACK + 64];
            for input in [&x, &vec![0.0; n]] {
                for shift in [0, 1, 16, 63] {
                    let list = active_inputs(k, input, &mut slack[shift..], limit).unwrap();
                    let from = list.as_ptr() as usize;
                    let apart = (from.wrapping_sub(input.as_ptr() as usize)) % 4096;
                    assert_eq!(
                        (apart, list.len()),
                        (2048, input.iter().filter(|v| **v != 0.0).count())
                    );
                    assert!(list.iter().all(|&i| input[i as usize] != 0.0));
                }
            }
        });
    }

    /// Spike rows of a layer, some with few active inputs (the event path)
    /// and runs of others with many (dense, grouped): every row gets the
    /// bits it gets alone, on every instruction set.
    #[test]
    fn linear_mixes_event_rows_and_runs_of_dense_rows() {
        let (inp, out) = (96, 40);
        let mut rng = crate::rng::Rng::new(3);
        let w: Vec<f32> = (0..inp * out).map(|_| rng.uniform() - 0.5).collect();
        let wt = crate::simd::to_panels(&transpose(&w, out, inp), inp, out);
        let b: Vec<f32> = (0..out).map(|_| rng.uniform()).collect();
        // Activity per row: dense runs of 1, 2 and 7 rows between event rows.
        let activity = [
            0.05, 0.9, 0.05, 0.9, 0.9, 0.1, 0.95, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.02,
        ];
        let x: Vec<f32> = activity
            .iter()
            .flat_map(|&p| (0..inp).map(move |_| p))
            .map(|p| f32::from(rng.uniform() < p))
            .collect();
        each_isa(|k| {
            let rows = activity.len();
            let mut active = vec![0u32; inp];
            let limit = event_limit(inp, out);
            let mut layer = |x: &[f32], y: &mut [f32]| {
                linear(k, x, y, &wt, Some(&b), inp, out, 0..out, limit, &mut active)
            };
            let mut y = vec![f32::NAN; rows * out];
            layer(&x, &mut y);
            for r in 0..rows {
                let mut alone = vec![f32::NAN; out];
                let xr = &x[r * inp..(r + 1) * inp];
                layer(xr, &mut alone);
                let at = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    at(&y[r * out..(r + 1) * out]),
                    at(&alone),
                    "{} row {r}",
                    k.isa()
                );
                let dense: f32 = (0..out)
                    .map(|j| b[j] + (0..inp).map(|i| xr[i] * w[j * inp + i]).sum::<f32>())
                    .zip(&alone)
                    .map(|(want, got)| (want - got).abs())
                    .fold(0.0, f32::max);
                assert!(dense < 1e-4, "{} row {r}: off by {dense}", k.isa());
            }
        });
    }

    /// `[rows, cols]` to `[cols, rows]`.
    fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        (0..cols * rows)
            .map(|i| m[(i % rows) * cols + i / rows])
            .collect()
    }

    /// The event-driven path pays off at lower activity the narrower the
    /// layer, never above `EVENT_DENSITY`, and never in layers too small to
    /// recover its fixed cost.
    #[test]
    fn event_limit_grows_with_the_width() {
        let share = |inp: usize, out: usize| event_limit(inp, out) as f32 / inp as f32;
        let d: Vec<f32> = [4, 16, 64, 128, 1024, 4096]
            .iter()
            .map(|&n| share(1024, n))
            .collect();
        assert!(d.windows(2).all(|p| p[0] <= p[1]), "{d:?}");
        assert!(d[1] < 0.2 && d[2] > 0.4 && d[4] == EVENT_DENSITY, "{d:?}");
        assert_eq!(event_limit(1024, 0), 0);
        assert_eq!(event_limit(0, 64), 0);
        // Measured on a Zen 2: 64-4 and 128-10 never pay, 64-64 up to ~25%.
        assert_eq!((event_limit(64, 4), event_limit(128, 10)), (0, 0));
        assert!((0.15..0.27).contains(&share(64, 64)), "{}", share(64, 64));
    }

    /// Every window shape against the definition, with integer values so
    /// that every instruction set must match it exactly: narrow and wide
    /// rows (the unmasked copies that spill into the next run), paddings
    /// (which must stay zero), strides and dilations.
    #[test]
    fn conv2d_matches_the_definition() {
        let mut seed = 1u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((seed >> 24) % 7) as f32 - 3.0
        };
        for (h, w) in [
            (1usize, 1usize),
            (3, 2),
            (5, 7),
            (10, 10),
            (4, 19),
            (3, 16),
            (6, 40),
        ] {
            // Strides (y, x): unit strides run the direct kernel over the
            // whole plane (by rows when they are 16 wide), a unit `x` stride
            // alone by rows, any other im2col.
            for (k, pad, (sy, sx), dil) in [
                (1usize, 0usize, (1usize, 1usize), 1usize),
                (3, 0, (1, 1), 1),
                (3, 1, (1, 1), 1),
                (2, 2, (1, 1), 2),
                (3, 0, (1, 1), 2),
                (3, 1, (2, 2), 1),
                (3, 1, (2, 1), 1),
                (3, 0, (1, 2), 1),
            ] {
                let oh = (h + 2 * pad)
                    .checked_sub(dil * (k - 1) + 1)
                    .map(|v| v / sy + 1);
                let ow = (w + 2 * pad)
                    .checked_sub(dil * (k - 1) + 1)
                    .map(|v| v / sx + 1);
                let (Some(oh), Some(ow)) = (oh, ow) else {
                    continue;
                };
                // 11 output channels: a tile of 6, one of 4 and one of 1.
                let (c, o) = (2, 11);
                let g = Window {
                    c,
                    h,
                    w,
                    kh: k,
                    kw: k,
                    stride: (sy, sx),
                    pad: (pad, pad),
                    dil: (dil, dil),
                    oh,
                    ow,
                };
                let x: Vec<f32> = (0..c * h * w).map(|_| next()).collect();
                let wt: Vec<f32> = (0..o * c * k * k).map(|_| next()).collect();
                let mut want = vec![0.0f32; o * oh * ow];
                for (oc, oy, ox) in
                    (0..o).flat_map(|a| (0..oh).flat_map(move |b| (0..ow).map(move |d| (a, b, d))))
                {
                    let mut acc = 0.0;
                    for (ic, ky, kx) in (0..c)
                        .flat_map(|a| (0..k).flat_map(move |b| (0..k).map(move |d| (a, b, d))))
                    {
                        let iy = (oy * sy + ky * dil) as isize - pad as isize;
                        let ix = (ox * sx + kx * dil) as isize - pad as isize;
                        if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                            acc += wt[((oc * c + ic) * k + ky) * k + kx]
                                * x[(ic * h + iy as usize) * w + ix as usize];
                        }
                    }
                    want[(oc * oh + oy) * ow + ox] = acc;
                }
                let mut y = vec![0.0; o * oh * ow];
                conv(&x, &mut y, &wt, None, &g, o, 1);
                assert_eq!(y, want, "{h}x{w} k{k} pad {pad} stride {sy},{sx} dil {dil}");
            }
        }
    }

    #[test]
    fn conv1d_stride_pad_dilation() {
        // x = [1,2,3,4,5], w = [1, 10], padding 1, dilation 2, stride 2.
        // padded: [0,1,2,3,4,5,0]; taps at i and i+2; out positions 0,2,4:
        // 0*1+2*10=20, 2*1+4*10=42, 4*1+0*10=4.
        let g = win1d(1, 5, 2, 2, 1, 2);
        assert_eq!(g.ow, 3);
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let mut y = [0.0; 3];
        conv(&x, &mut y, &[1.0, 10.0], None, &g, 1, 1);
        assert_eq!(y, [20.0, 42.0, 4.0]);
        // With a bias of 1.
        conv(&x, &mut y, &[1.0, 10.0], Some(&[1.0]), &g, 1, 1);
        assert_eq!(y, [21.0, 43.0, 5.0]);
    }

    #[test]
    fn conv1d_groups_and_streams() {
        // 2 channels, 2 groups, 2 outputs: each output sees its own channel.
        // x = [[1,2,3],[4,5,6]], w[0] = [1,1], w[1] = [2,-1]; no padding.
        let g = win1d(2, 3, 2, 1, 0, 1);
        let x = [
            1.0, 2.0, 3.0, 4.0, 5.0, 6.0, /* stream 2 */ 0.0, 0.0, 1.0, 1.0, 0.0, 0.0,
        ];
        let w = [1.0, 1.0, 2.0, -1.0];
        let mut y = [0.0; 8];
        conv(&x, &mut y, &w, None, &g, 2, 2);
        assert_eq!(y, [3.0, 5.0, 3.0, 4.0, 0.0, 1.0, 2.0, 0.0]);
    }

    /// Rows of 8 and 24 (AVX-512 cuts them into half vectors, two
    /// channels to a vector): groups, streams, a bias and an odd number of
    /// channels per group (the last pair half empty), against the definition.
    #[test]
    fn conv2d_in_half_vectors_groups_and_streams() {
        let (c, o, groups, streams, k) = (4, 6, 2, 2, 3);
        for (h, w, pad) in [(10usize, 10usize, 0usize), (4, 24, 1)] {
            let (oh, ow) = (h + 2 * pad - k + 1, w + 2 * pad - k + 1);
            let g = Window {
                c,
                h,
                w,
                kh: k,
                kw: k,
                stride: (1, 1),
                pad: (pad, pad),
                dil: (1, 1),
                oh,
                ow,
            };
            assert!(g.by_halves(), "{h}x{w}");
            let value = |i: usize| ((i * 7919) % 11) as f32 - 5.0;
            let (cg, og) = (c / groups, o / groups);
            let x: Vec<f32> = (0..streams * c * h * w).map(value).collect();
            let wt: Vec<f32> = (0..o * cg * k * k).map(|i| value(i + 3)).collect();
            let b: Vec<f32> = (0..o).map(|i| i as f32 - 2.0).collect();
            let mut want = vec![0.0f32; streams * o * oh * ow];
            for (s, oc, oy, ox) in (0..streams).flat_map(|s| {
                (0..o).flat_map(move |a| {
                    (0..oh).flat_map(move |y| (0..ow).map(move |d| (s, a, y, d)))
                })
            }) {
                let mut acc = b[oc];
                for (ic, ky, kx) in
                    (0..cg).flat_map(|a| (0..k).flat_map(move |y| (0..k).map(move |d| (a, y, d))))
                {
                    let (iy, ix) = (
                        (oy + ky) as isize - pad as isize,
                        (ox + kx) as isize - pad as isize,
                    );
                    if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                        let channel = s * c + (oc / og) * cg + ic;
                        acc += wt[((oc * cg + ic) * k + ky) * k + kx]
                            * x[(channel * h + iy as usize) * w + ix as usize];
                    }
                }
                want[((s * o + oc) * oh + oy) * ow + ox] = acc;
            }
            let mut y = vec![0.0; want.len()];
            conv(&x, &mut y, &wt, Some(&b), &g, o, groups);
            assert_eq!(y, want, "{h}x{w} pad {pad}");
        }
    }

    #[test]
    fn conv2d_by_hand() {
        // 1x3x3 input 1..9, 2x2 kernel of ones, stride 1, padding 1 -> 4x4.
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let g = Window {
            c: 1,
            h: 3,
            w: 3,
            kh: 2,
            kw: 2,
            stride: (1, 1),
            pad: (1, 1),
            dil: (1, 1),
            oh: 4,
            ow: 4,
        };
        let mut y = [0.0; 16];
        conv(&x, &mut y, &[1.0; 4], None, &g, 1, 1);
        #[rustfmt::skip]
        let expected = [
            1.0, 3.0, 5.0, 3.0,
            5.0, 12.0, 16.0, 9.0,
            11.0, 24.0, 28.0, 15.0,
            7.0, 15.0, 17.0, 9.0,
        ];
        assert_eq!(y, expected);
        // Stride 2, no padding, 2 input channels summed (second channel x10).
        let mut x2 = x.clone();
        x2.extend(x.iter().map(|v| v * 10.0));
        let g2 = Window {
            c: 2,
            stride: (2, 2),
            pad: (0, 0),
            oh: 1,
            ow: 1,
            ..g
        };
        let mut y2 = [0.0; 1];
        conv(&x2, &mut y2, &[1.0; 8], None, &g2, 1, 1);
        assert_eq!(y2, [12.0 * 11.0]);
    }

    #[test]
    fn pools_by_hand() {
        // 1d over [1, 5, 2, 8, 3] with kernel 2, stride 2, padding 1:
        // windows (padded) [p,1], [5,2], [8,3].
        let g = win1d(1, 5, 2, 2, 1, 1);
        assert_eq!(g.ow, 3);
        let x = [1.0, 5.0, 2.0, 8.0, 3.0];
        let mut y = [0.0; 3];
        pool2d(&x, &mut y, &g, PoolKind::Max);
        assert_eq!(y, [1.0, 5.0, 8.0]);
        pool2d(
            &x,
            &mut y,
            &g,
            PoolKind::Avg {
                count_include_pad: true,
            },
        );
        assert_eq!(y, [0.5, 3.5, 5.5]);
        pool2d(
            &x,
            &mut y,
            &g,
            PoolKind::Avg {
                count_include_pad: false,
            },
        );
        assert_eq!(y, [1.0, 3.5, 5.5]);
        // Padding never wins a max: all-negative input.
        let xn = [-1.0, -5.0, -2.0, -8.0, -3.0];
        pool2d(&xn, &mut y, &g, PoolKind::Max);
        assert_eq!(y, [-1.0, -2.0, -3.0]);
        // 2d: 4x4 of 0..16, kernel 2, stride 2 -> 2x2.
        let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let g = Window {
            c: 1,
            h: 4,
            w: 4,
            kh: 2,
            kw: 2,
            stride: (2, 2),
            pad: (0, 0),
            dil: (1, 1),
            oh: 2,
            ow: 2,
        };
        let mut y = [0.0; 4];
        pool2d(&x, &mut y, &g, PoolKind::Max);
        assert_eq!(y, [5.0, 7.0, 13.0, 15.0]);
        pool2d(
            &x,
            &mut y,
            &g,
            PoolKind::Avg {
                count_include_pad: true,
            },
        );
        assert_eq!(y, [2.5, 4.5, 10.5, 12.5]);
    }

    #[test]
    fn max_pool_propagates_nan() {
        let g = win1d(1, 3, 3, 1, 0, 1);
        let mut y = [0.0; 1];
        pool2d(&[1.0, f32::NAN, 2.0], &mut y, &g, PoolKind::Max);
        assert!(y[0].is_nan());
    }

    #[test]
    fn elementwise_and_cat() {
        let x = [-2.0, 0.5, f32::NAN];
        let mut y = [0.0; 3];
        unary(&x, &mut y, Unary::Relu);
        assert_eq!(y[..2], [0.0, 0.5]);
        assert!(y[2].is_nan());
        unary(&x[..2], &mut y[..2], Unary::LeakyRelu(0.1));
        assert_eq!(y[..2], [-0.2, 0.5]);
        unary(&x[..2], &mut y[..2], Unary::AddScalar(1.0));
        assert_eq!(y[..2], [-1.0, 1.5]);
        unary(&x[..2], &mut y[..2], Unary::MulScalar(-2.0));
        assert_eq!(y[..2], [4.0, -1.0]);
        unary(&[0.0], &mut y[..1], Unary::Sigmoid);
        assert_eq!(y[0], 0.5);
        unary(&[0.0], &mut y[..1], Unary::Tanh);
        assert_eq!(y[0], 0.0);
        let mut z = [0.0; 2];
        binary(&[1.0, 2.0], &[3.0, 5.0], &mut z, Binary::Sub);
        assert_eq!(z, [-2.0, -3.0]);
        binary(&[1.0, 2.0], &[3.0, 5.0], &mut z, Binary::Mul);
        assert_eq!(z, [3.0, 10.0]);
        // cat along axis 1 of [2, 1] and [2, 2] -> [2, 3].
        let a = [1.0, 2.0];
        let b = [3.0, 4.0, 5.0, 6.0];
        let mut c = [0.0; 6];
        let both = [&a[..], &b[..]];
        cat(|i| both[i], &[0, 1], &[1, 2], &mut c, 2);
        assert_eq!(c, [1.0, 3.0, 4.0, 2.0, 5.0, 6.0]);
        // channel affine over [C=2, inner=2].
        let mut w = [0.0; 4];
        channel_affine(&[1.0, 2.0, 3.0, 4.0], &mut w, &[2.0, -1.0], &[0.5, 1.0], 2);
        assert_eq!(w, [2.5, 4.5, -2.0, -3.0]);
    }
}
