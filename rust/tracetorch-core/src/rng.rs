//! The engine's own random generator for stochastic quantizers.

/// A small seeded xorshift64* generator (one per engine).
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose stream is fully determined by `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        // SplitMix64 scrambles the seed so that nearby seeds give unrelated
        // streams; xorshift needs a non-zero state.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng {
            state: if z == 0 { 0x2545_F491_4F6C_DD1D } else { z },
        }
    }

    /// Next 64 random bits.
    #[inline]
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A uniform float in `[0, 1)` with 24 random bits (like `torch.rand`).
    #[inline]
    pub(crate) fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_in_unit_interval_and_seeded() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let mut c = Rng::new(8);
        let mut sum = 0.0f64;
        let mut differs = false;
        for _ in 0..10_000 {
            let u = a.uniform();
            assert!((0.0..1.0).contains(&u));
            assert_eq!(u, b.uniform());
            differs |= u != c.uniform();
            sum += f64::from(u);
        }
        assert!(differs);
        assert!((sum / 10_000.0 - 0.5).abs() < 0.02);
    }

    #[test]
    fn zero_seed_works() {
        let mut r = Rng::new(0);
        assert_ne!(r.next_u64(), r.next_u64());
    }
}
