//! Random numbers for request generation: a small fast generator (wyrand) and the
//! id distributions of the workloads (uniform, and Zipf by rejection-inversion).
//!
//! The generator is per worker and seeded, so a run's request sequence is reproducible
//! for a given seed and worker count. Nothing here needs cryptographic quality.

/// wyrand: one multiply per number, passes BigCrush, 8 bytes of state.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    #[must_use]
    pub fn new(seed: u64) -> Self {
        // Mix the seed so that seeds 0, 1, 2… start far apart.
        let mut rng = Self(seed ^ 0x9E37_79B9_7F4A_7C15);
        rng.next_u64();
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xA076_1D64_78BD_642F);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xE703_7ED1_A0B4_28DB);
        ((t >> 64) ^ t) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `1..=n` (n ≥ 1), by Lemire's multiply-shift (bias below 2^-64 · n).
    pub fn one_to(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64 + 1
    }

    /// Uniform index into a slice of length `len` (len ≥ 1).
    pub fn index(&mut self, len: usize) -> usize {
        (self.one_to(len as u64) - 1) as usize
    }
}

/// Zipf over `1..=n` with exponent `s` > 0: P(k) ∝ 1/k^s, so 1 is the most frequent.
///
/// Rejection-inversion sampling (Hörmann and Derflinger 1996, as in Apache Commons'
/// `ZipfRejectionInversionSampler`): constant time per sample for any n, no table, so
/// it works for the full data set's 10M courses.
#[derive(Debug, Clone)]
pub struct Zipf {
    n: f64,
    s: f64,
    h_integral_x1: f64,
    h_integral_n: f64,
    threshold: f64,
}

impl Zipf {
    #[must_use]
    pub fn new(n: u64, s: f64) -> Self {
        let n = n.max(1) as f64;
        let mut z = Self {
            n,
            s,
            h_integral_x1: 0.0,
            h_integral_n: 0.0,
            threshold: 0.0,
        };
        z.h_integral_x1 = z.h_integral(1.5) - 1.0;
        z.h_integral_n = z.h_integral(n + 0.5);
        z.threshold = 2.0 - z.h_integral_inverse(z.h_integral(2.5) - z.h(2.0));
        z
    }

    pub fn sample(&self, rng: &mut Rng) -> u64 {
        loop {
            let u = self.h_integral_n + rng.f64() * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.threshold || u >= self.h_integral(k + 0.5) - self.h(k) {
                return k as u64;
            }
        }
    }

    fn h(&self, x: f64) -> f64 {
        (-self.s * x.ln()).exp()
    }

    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        helper2((1.0 - self.s) * log_x) * log_x
    }

    fn h_integral_inverse(&self, x: f64) -> f64 {
        let mut t = x * (1.0 - self.s);
        if t < -1.0 {
            // Rounding can push t just below -1.
            t = -1.0;
        }
        (helper1(t) * x).exp()
    }
}

/// `ln(1+x)/x`, accurate near 0.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// `(e^x - 1)/x`, accurate near 0.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_with_s_one_gives_rank_k_a_share_of_one_over_k_times_h_n() {
        let n = 1000;
        let zipf = Zipf::new(n, 1.0);
        let mut rng = Rng::new(7);
        let mut counts = vec![0u64; n as usize + 1];
        let draws = 400_000;
        for _ in 0..draws {
            let k = zipf.sample(&mut rng);
            assert!((1..=n).contains(&k));
            counts[k as usize] += 1;
        }
        let h_n: f64 = (1..=n).map(|k| 1.0 / k as f64).sum();
        for k in [1usize, 2, 10] {
            let expected = draws as f64 / (k as f64 * h_n);
            let got = counts[k] as f64;
            assert!(
                (got - expected).abs() < expected * 0.05,
                "rank {k}: {got} vs {expected}"
            );
        }
    }

    #[test]
    fn uniform_covers_the_range_evenly() {
        let mut rng = Rng::new(1);
        let mut counts = [0u32; 11];
        for _ in 0..100_000 {
            counts[rng.one_to(10) as usize] += 1;
        }
        assert_eq!(counts[0], 0);
        for c in &counts[1..] {
            assert!((9_000..11_000).contains(c), "{counts:?}");
        }
    }
}
