//! [`Floats`], the engine's float buffer: a `Vec<f32>` whose first float
//! starts a cache line.

use std::ops::{Deref, DerefMut};

use aligned_vec::{AVec, ConstAlign};

/// Bytes of a cache line, and of the alignment of every [`Floats`].
const LINE: usize = 64;

/// Floats starting on a cache line. The allocator aligns a `Vec<f32>` to 16
/// bytes only; then every AVX2 load of a weight row, a state or a buffer may
/// straddle two lines, and a 16-float panel row of a narrow layer always
/// did: misaligned by 16 bytes, a 64-64 layer ran 25% slower, 1024-16 14%,
/// 1024-1024 at 10% spikes 20% (and which a process got was luck).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Floats(AVec<f32, ConstAlign<LINE>>);

impl Floats {
    /// `n` zeros.
    pub(crate) fn zeros(n: usize) -> Floats {
        let mut v = AVec::with_capacity(LINE, n);
        v.resize(n, 0.0);
        Floats(v)
    }
}

/// Empty, without allocating (what `std::mem::take` leaves behind).
impl Default for Floats {
    fn default() -> Floats {
        Floats(AVec::new(LINE))
    }
}

impl From<&[f32]> for Floats {
    fn from(v: &[f32]) -> Floats {
        Floats(AVec::from_slice(LINE, v))
    }
}

impl FromIterator<f32> for Floats {
    fn from_iter<I: IntoIterator<Item = f32>>(values: I) -> Floats {
        Floats(AVec::from_iter(LINE, values))
    }
}

impl From<Vec<f32>> for Floats {
    fn from(v: Vec<f32>) -> Floats {
        Floats::from(&v[..])
    }
}

impl Deref for Floats {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl DerefMut for Floats {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_start_on_a_cache_line() {
        for n in [1, 3, 16, 1000, 1 << 20] {
            let zeros = Floats::zeros(n);
            let copy = Floats::from(&vec![1.5; n][..]);
            let collected: Floats = std::iter::repeat_n(1.5, n).collect();
            assert_eq!(collected, copy);
            for f in [&zeros, &copy, &collected, &zeros.clone()] {
                assert_eq!(f.as_ptr() as usize % LINE, 0, "{n} floats");
                assert_eq!(f.len(), n);
            }
            assert!(zeros.iter().all(|v| *v == 0.0) && copy.iter().all(|v| *v == 1.5));
        }
        assert!(Floats::default().is_empty());
    }
}
