//! When to probe a subscriber's line again for an adaptive layer.
//!
//! str0m's estimator (a port of libwebrtc's) probes when the desired bitrate rises above its estimate
//! (an *allocation probe*, at up to twice the estimate); otherwise, while media fills what it
//! allows, it grows only additively (a few per cent a second) and probes at most every 15 s. After a
//! congestion event that leaves a county line at half its capacity for ten seconds and more. A
//! subscriber of an adaptive layer wants all the line carries, so [`Reprobe`] asks again every
//! [`PROBE_EVERY`]: the shell lowers the desired bitrate to the estimate for one allocation round
//! and raises it back the next, which str0m takes as a new allocation. Never within [`CALM`] of a
//! fall of the estimate (probing a congested line only adds to its queue), and not once the
//! estimate is near what is wanted. Nor when other subscribers share the site's line (the shell
//! checks): their estimators, each blind to the others' traffic, would probe into each other's
//! queue; the site's budget shares the line among them instead.

use std::time::{Duration, Instant};

/// At most one re-armed probe this often.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);
/// No probe this soon after the estimate fell.
pub const CALM: Duration = Duration::from_secs(2);
/// A fall of the estimate by more than this share counts (smaller moves are noise).
const FALL: f64 = 0.05;
/// No probe when the estimate is within this share of what is wanted.
const NEAR: f64 = 0.9;

/// The re-probing state of one subscriber.
#[derive(Debug, Clone, Default)]
pub struct Reprobe {
    last_fall: Option<Instant>,
    last_probe: Option<Instant>,
}

impl Reprobe {
    /// The estimate moved from `before` to `after` (bit/s).
    pub fn on_estimate(&mut self, now: Instant, before: u64, after: u64) {
        if (after as f64) < before as f64 * (1.0 - FALL) {
            self.last_fall = Some(now);
        }
    }

    /// Whether to re-arm a probe now for a subscriber whose estimate is `estimate_bps` and who wants
    /// `wanted_bps`; if so, it counts as done.
    pub fn due(&mut self, now: Instant, estimate_bps: u64, wanted_bps: u64) -> bool {
        let since = |t: Option<Instant>, d: Duration| {
            t.is_none_or(|t| now.saturating_duration_since(t) >= d)
        };
        let due = (estimate_bps as f64) < wanted_bps as f64 * NEAR
            && since(self.last_fall, CALM)
            && since(self.last_probe, PROBE_EVERY);
        if due {
            self.last_probe = Some(now);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reprobes_every_two_seconds_while_the_estimate_is_short_and_calm() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut r = Reprobe::default();
        assert!(r.due(t0, 500_000, 2_500_000));
        assert!(!r.due(t0 + Duration::from_millis(1_900), 500_000, 2_500_000));
        assert!(r.due(t0 + s(2), 500_000, 2_500_000));
        // Near what is wanted: no probe.
        assert!(!r.due(t0 + s(10), 2_300_000, 2_500_000));
        // A fall: none for two seconds after it; a small dip does not count.
        r.on_estimate(t0 + s(20), 1_000_000, 980_000);
        assert!(r.due(t0 + s(20), 980_000, 2_500_000));
        r.on_estimate(t0 + s(30), 1_000_000, 600_000);
        assert!(!r.due(t0 + s(31), 600_000, 2_500_000));
        assert!(r.due(t0 + s(32), 600_000, 2_500_000));
    }
}
