//! Seeded randomness that stays the same across library versions: ChaCha8 keyed by the seed, one
//! stream per purpose, and the conversions to `f64` done here rather than by `rand`'s
//! distributions (whose algorithms may change between releases).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Which stream of a link's seed a random process draws from. Separate streams keep, for
/// example, the loss pattern unchanged when jitter is switched on.
#[derive(Clone, Copy)]
pub(crate) enum Stream {
    Loss = 0,
    Jitter = 1,
}

pub(crate) struct Random(ChaCha8Rng);

impl Random {
    pub fn new(seed: u64, stream: Stream) -> Self {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        let mut rng = ChaCha8Rng::from_seed(key);
        rng.set_stream(stream as u64);
        Random(rng)
    }

    /// Uniform in [0, 1), with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`. Always draws one number, whatever `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]: ln stays finite
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_numbers_streams_differ() {
        let draw = |seed, stream| {
            let mut r = Random::new(seed, stream);
            (0..4).map(|_| r.unit()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7, Stream::Loss), draw(7, Stream::Loss));
        assert_ne!(draw(7, Stream::Loss), draw(8, Stream::Loss));
        assert_ne!(draw(7, Stream::Loss), draw(7, Stream::Jitter));
    }

    #[test]
    fn normal_has_unit_variance() {
        let mut r = Random::new(1, Stream::Jitter);
        let n = 100_000;
        let samples: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let mean = samples.iter().sum::<f64>() / n as f64;
        let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.02, "{mean}");
        assert!((var - 1.0).abs() < 0.02, "{var}");
    }
}
