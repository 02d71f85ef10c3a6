//! Keyframe request aggregation.
//!
//! Every subscriber of a video track may ask for a keyframe (PLI or FIR) when it loses a picture, and the
//! relay asks for one itself when a subscriber starts. Passing all of them on would make the publisher
//! send a keyframe storm over a slow county uplink. [`KeyframeAggregator`] passes on at most one request
//! per interval per track, upgrades a PLI to FIR when any subscriber asked for a FIR, and lets a new
//! request through at once when the last one has been answered by a keyframe.

use std::time::{Duration, Instant};

/// The kind of keyframe request, as in RTCP PSFB: Picture Loss Indication or Full Intra Request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyframeKind {
    /// Picture Loss Indication.
    Pli,
    /// Full Intra Request.
    Fir,
}

/// Aggregates keyframe requests for one published video track.
#[derive(Debug, Clone)]
pub struct KeyframeAggregator {
    min_interval: Duration,
    last_sent: Option<Instant>,
    /// A request arrived while suppressed; send it when the interval has passed.
    pending: Option<KeyframeKind>,
    answered: bool,
    forwarded: u64,
    suppressed: u64,
}

impl KeyframeAggregator {
    /// An aggregator that sends at most one request per `min_interval` while the previous one is
    /// unanswered.
    pub fn new(min_interval: Duration) -> Self {
        KeyframeAggregator {
            min_interval,
            last_sent: None,
            pending: None,
            answered: true,
            forwarded: 0,
            suppressed: 0,
        }
    }

    /// A subscriber (or the relay) wants a keyframe. Returns the request to send to the publisher now,
    /// if any; a suppressed request is kept and returned by [`KeyframeAggregator::poll`] later.
    pub fn request(&mut self, now: Instant, kind: KeyframeKind) -> Option<KeyframeKind> {
        let kind = self.pending.take().map_or(kind, |p| p.max(kind));
        let recent = self
            .last_sent
            .is_some_and(|t| now.saturating_duration_since(t) < self.min_interval);
        if recent && !self.answered {
            self.suppressed += 1;
            self.pending = Some(kind);
            return None;
        }
        self.send(now, kind)
    }

    /// A keyframe arrived from the publisher.
    pub fn on_keyframe(&mut self) {
        self.answered = true;
        self.pending = None;
    }

    /// Time passes: a request that was held back goes out once the interval has passed.
    pub fn poll(&mut self, now: Instant) -> Option<KeyframeKind> {
        let due = self
            .last_sent
            .is_none_or(|t| now.saturating_duration_since(t) >= self.min_interval);
        if due && let Some(kind) = self.pending.take() {
            return self.send(now, kind);
        }
        None
    }

    fn send(&mut self, now: Instant, kind: KeyframeKind) -> Option<KeyframeKind> {
        self.last_sent = Some(now);
        self.answered = false;
        self.forwarded += 1;
        Some(kind)
    }

    /// Requests passed on to the publisher.
    pub fn forwarded(&self) -> u64 {
        self.forwarded
    }

    /// Requests held back or merged.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storm_becomes_one_request() {
        let t0 = Instant::now();
        let mut agg = KeyframeAggregator::new(Duration::from_millis(500));
        assert_eq!(agg.request(t0, KeyframeKind::Pli), Some(KeyframeKind::Pli));
        for i in 1..10 {
            assert_eq!(
                agg.request(t0 + Duration::from_millis(i * 10), KeyframeKind::Pli),
                None
            );
        }
        assert_eq!(agg.forwarded(), 1);
        assert_eq!(agg.suppressed(), 9);
        // The held request goes out once the interval has passed without a keyframe.
        assert_eq!(agg.poll(t0 + Duration::from_millis(400)), None);
        assert_eq!(
            agg.poll(t0 + Duration::from_millis(500)),
            Some(KeyframeKind::Pli)
        );
        assert_eq!(agg.poll(t0 + Duration::from_millis(1100)), None);
    }

    #[test]
    fn fir_wins_over_pli() {
        let t0 = Instant::now();
        let mut agg = KeyframeAggregator::new(Duration::from_millis(500));
        agg.request(t0, KeyframeKind::Pli);
        agg.request(t0 + Duration::from_millis(1), KeyframeKind::Fir);
        agg.request(t0 + Duration::from_millis(2), KeyframeKind::Pli);
        assert_eq!(
            agg.poll(t0 + Duration::from_millis(600)),
            Some(KeyframeKind::Fir)
        );
    }

    #[test]
    fn answered_request_lets_next_through_at_once() {
        let t0 = Instant::now();
        let mut agg = KeyframeAggregator::new(Duration::from_millis(500));
        agg.request(t0, KeyframeKind::Pli);
        agg.request(t0 + Duration::from_millis(5), KeyframeKind::Pli);
        agg.on_keyframe();
        // The pending one was satisfied by the keyframe.
        assert_eq!(agg.poll(t0 + Duration::from_millis(600)), None);
        // A fresh loss after the keyframe goes straight through.
        assert_eq!(
            agg.request(t0 + Duration::from_millis(100), KeyframeKind::Pli),
            Some(KeyframeKind::Pli)
        );
    }
}
