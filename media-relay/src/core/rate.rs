//! Bitrate over a sliding window, in simulated time.

use std::time::{Duration, Instant};

/// Width of one bucket.
const BUCKET: Duration = Duration::from_millis(100);
/// Buckets in the window (one second).
const WINDOW: usize = 10;

/// Bytes per 100 ms bucket over the last second; the bucket being filled does not count yet, so the rate
/// does not dip at every bucket start.
#[derive(Debug, Clone)]
pub struct RateMeter {
    origin: Option<Instant>,
    /// Index (since `origin`) of the bucket being filled.
    head: u64,
    buckets: [u64; WINDOW + 1],
}

impl Default for RateMeter {
    fn default() -> Self {
        RateMeter {
            origin: None,
            head: 0,
            buckets: [0; WINDOW + 1],
        }
    }
}

impl RateMeter {
    fn advance(&mut self, now: Instant) -> usize {
        let origin = *self.origin.get_or_insert(now);
        let index = (now.saturating_duration_since(origin).as_nanos() / BUCKET.as_nanos()) as u64;
        if index > self.head {
            let stale = (index - self.head).min(WINDOW as u64 + 1);
            for i in 1..=stale {
                self.buckets[((self.head + i) % (WINDOW as u64 + 1)) as usize] = 0;
            }
            self.head = index;
        }
        (self.head % (WINDOW as u64 + 1)) as usize
    }

    /// Count `bytes` at `now`.
    pub fn add(&mut self, now: Instant, bytes: u64) {
        let i = self.advance(now);
        self.buckets[i] += bytes;
    }

    /// Bits per second over the last full second.
    pub fn bps(&mut self, now: Instant) -> u64 {
        let head = self.advance(now);
        let bytes: u64 = self
            .buckets
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != head)
            .map(|(_, b)| b)
            .sum();
        bytes * 8 * 1000 / (BUCKET.as_millis() as u64 * WINDOW as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_steady_rate_and_forgets_it() {
        let t0 = Instant::now();
        let mut m = RateMeter::default();
        // 1250 bytes every 10 ms = 1 Mbit/s.
        for i in 0..300u64 {
            m.add(t0 + Duration::from_millis(10 * i), 1250);
        }
        let at = t0 + Duration::from_millis(3000);
        assert_eq!(m.bps(at), 1_000_000);
        assert_eq!(m.bps(at + Duration::from_millis(550)), 500_000);
        assert_eq!(m.bps(at + Duration::from_secs(5)), 0);
    }
}
