//! Dynacast: which simulcast layers a publisher should send at all.
//!
//! A county hospital's uplink is as slow as its downlink. Encoding and sending a 720p layer that no
//! subscriber receives wastes a third of it or more, so the relay tells each publisher (over signaling)
//! to pause the layers nobody needs and to resume them when someone does. A layer is needed when it is
//! the target of some subscription; the lowest layer stays on while anyone subscribes, as the fallback a
//! collapsing line can switch to at once. A layer is paused only after it has been unneeded for
//! [`PAUSE_AFTER`], so an allocator stepping down and up again does not make the publisher flap; a
//! needed layer resumes at once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::layer_selector::Layer;

/// How long a layer must be unneeded before it is paused.
pub const PAUSE_AFTER: Duration = Duration::from_secs(3);

/// The per-track dynacast state.
#[derive(Debug, Clone, Default)]
pub struct Dynacast {
    /// Spatial layer → whether the publisher sends it.
    active: BTreeMap<u8, bool>,
    /// Spatial layer → since when nobody has needed it.
    unneeded_since: BTreeMap<u8, Instant>,
}

impl Dynacast {
    /// Whether the publisher has been told to send `spatial` (true until told otherwise).
    pub fn is_active(&self, spatial: u8) -> bool {
        self.active.get(&spatial).copied().unwrap_or(true)
    }

    /// Decide with the track's known spatial layers and the targets of its subscriptions. Returns the
    /// full layer → active map when it changed.
    pub fn update(
        &mut self,
        now: Instant,
        layers: &[u8],
        targets: &[Option<Layer>],
    ) -> Option<BTreeMap<u8, bool>> {
        let lowest = layers.iter().min().copied();
        let mut wanted: BTreeMap<u8, bool> = BTreeMap::new();
        for &spatial in layers {
            let needed = targets
                .iter()
                .any(|t| t.is_some_and(|t| t.spatial == spatial))
                || (!targets.is_empty() && Some(spatial) == lowest);
            let active = if needed {
                self.unneeded_since.remove(&spatial);
                true
            } else if !self.is_active(spatial) {
                false
            } else {
                let since = *self.unneeded_since.entry(spatial).or_insert(now);
                // Nobody subscribes at all: pause at once; otherwise after the grace period.
                !(targets.is_empty() || now.saturating_duration_since(since) >= PAUSE_AFTER)
            };
            wanted.insert(spatial, active);
        }
        self.unneeded_since.retain(|s, _| layers.contains(s));
        let changed = wanted
            .iter()
            .any(|(s, a)| self.active.get(s).copied().unwrap_or(true) != *a);
        self.active = wanted.clone();
        changed.then_some(wanted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYERS: [u8; 3] = [0, 1, 2];

    #[test]
    fn unneeded_layers_pause_after_the_grace_period_and_resume_at_once() {
        let t0 = Instant::now();
        let mut d = Dynacast::default();
        // One subscriber on h: nothing changes yet (all start active).
        assert_eq!(d.update(t0, &LAYERS, &[Some(Layer::full(1))]), None);
        let t1 = t0 + PAUSE_AFTER;
        let change = d
            .update(t1, &LAYERS, &[Some(Layer::full(1))])
            .expect("f is paused");
        assert_eq!(change, BTreeMap::from([(0, true), (1, true), (2, false)]));
        assert!(!d.is_active(2));
        // The subscriber's line improves and the allocator aims at f: it resumes at once.
        let change = d
            .update(t1, &LAYERS, &[Some(Layer::full(2))])
            .expect("f resumes");
        assert!(change[&2]);
        // h is now unneeded but the lowest layer stays on.
        let t2 = t1 + PAUSE_AFTER;
        let change = d.update(t2, &LAYERS, &[Some(Layer::full(2))]).unwrap();
        assert_eq!(change, BTreeMap::from([(0, true), (1, false), (2, true)]));
    }

    #[test]
    fn a_brief_step_down_does_not_pause() {
        let t0 = Instant::now();
        let mut d = Dynacast::default();
        d.update(t0, &LAYERS, &[Some(Layer::full(2))]);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(d.update(t1, &LAYERS, &[Some(Layer::full(1))]), None);
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(d.update(t2, &LAYERS, &[Some(Layer::full(2))]), None);
        assert_eq!(
            d.update(t2 + PAUSE_AFTER, &LAYERS, &[Some(Layer::full(2))]),
            Some(BTreeMap::from([(0, true), (1, false), (2, true)]))
        );
    }

    #[test]
    fn nobody_watching_pauses_everything_and_an_audio_only_subscriber_keeps_the_lowest() {
        let t0 = Instant::now();
        let mut d = Dynacast::default();
        let change = d.update(t0, &LAYERS, &[]).expect("all paused");
        assert!(change.values().all(|a| !a));
        // A subscriber paused for lack of bandwidth (no target) keeps the lowest layer coming, so it
        // can resume video as soon as its line allows.
        let change = d.update(t0, &LAYERS, &[None]).expect("q resumes");
        assert_eq!(change, BTreeMap::from([(0, true), (1, false), (2, false)]));
    }
}
