//! End-to-end rate control: what each publisher should encode, steered from what its subscribers'
//! lines carry.
//!
//! A fixed ladder of simulcast layers cannot fill a line: 1 Mbit/s carries the 360p layer
//! (500 kbit/s) and wastes the rest. So for each published video track the relay also tells the
//! publisher, per simulcast layer, whether to send it, its maximum bitrate and its resolution
//! (`RTCRtpSender.setParameters`: `active`, `maxBitrate`, `scaleResolutionDownBy`):
//!
//! - **One bottleneck** (every subscriber of the track behind the same line: the 1:1 consultation,
//!   or all viewers at one site): the top layer becomes *the adaptive layer*. Its bitrate follows
//!   the room that bottleneck leaves for this track ([`TARGET_SHARE`] of it, so that the stream
//!   fits with the allocator's step-up margin), and its resolution follows its bitrate, as in a
//!   peer-to-peer call. The middle layer is paused unless a subscriber is switched to it; the
//!   lowest stays on as the fallback a collapsing line drops to at once (dynacast's rule).
//! - **Several bottlenecks**: simulcast serves them; each layer keeps its resolution and its bitrate
//!   is tuned to the subscribers it serves (the one with the least room), within the layer's range.
//!
//! Updates are damped: a resolution change needs the bitrate to cross its threshold by a band
//! (each change costs a keyframe), and a bitrate is re-sent only when it moves by more than
//! [`CHANGE`]; rises at most every [`RISE_EVERY`], falls at once.
//!
//! **Content-limited video.** The thresholds assume the camera needs its bitrate. A still or simple
//! picture (a doctor at a desk) does not: the encoder then sends far below its maximum, and the line
//! carries less than it could at a resolution lower than a peer-to-peer call would keep (a
//! browser's encoder keeps the camera's resolution while its quantizer stays low). So an adaptive
//! layer that sends less than [`CONTENT_LIMITED`] of its maximum for [`CONTENT_LIMITED_HOLD`] is
//! raised one resolution step, provided its bitrate reaches that step's floor ([`FINER_STEPS`]);
//! it keeps the finer resolution until its bitrate falls below the floor's band or the line
//! drops (a drain), and may be raised again from there.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

/// The share of a bottleneck's room for the track that the adaptive layer aims at.
pub const TARGET_SHARE: f64 = 0.8;
/// A bitrate is re-sent when it changes by more than this (relative).
pub const CHANGE: f64 = 0.1;
/// Bitrate rises are sent at most this often.
pub const RISE_EVERY: Duration = Duration::from_secs(2);
/// A fall of the adaptive layer's target by more than this share below its highest of the last
/// [`DRAIN_TIME`] is a congestion event: the line's capacity dropped and its queue is full.
pub const CONGESTION_FALL: f64 = 0.3;
/// After a congestion event the adaptive layer aims this much lower for [`DRAIN_TIME`], so that the
/// queue the old rate left on the line drains within about a second instead of several (at
/// [`TARGET_SHARE`] alone, media and overhead come to about 90 % of the new capacity).
pub const DRAIN_SHARE: f64 = 0.6;
/// How long the queue is drained after a congestion event (and after each further fall of the target
/// while draining: the estimate comes down in steps).
pub const DRAIN_TIME: Duration = Duration::from_secs(1);
/// A steered layer is expected to cost at most its maximum bitrate times this (encoders overshoot
/// a little, keyframes more).
pub const OVERSHOOT: f64 = 1.1;

/// What one simulcast layer is by default, and the range its bitrate may be tuned in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerSpec {
    /// Spatial layer (0 = q, 1 = h, 2 = f).
    pub spatial: u8,
    /// Its default downscale of the camera (1280x720): 4, 2, 1.
    pub scale: f64,
    /// Its default maximum bitrate (the web client's), bit/s.
    pub default_bps: u64,
    /// Lowest bitrate it is tuned to, bit/s.
    pub min_bps: u64,
    /// Highest, bit/s.
    pub max_bps: u64,
}

/// The web client's three layers (q 320x180, h 640x360, f 1280x720).
pub const LAYERS: [LayerSpec; 3] = [
    LayerSpec {
        spatial: 0,
        scale: 4.0,
        default_bps: 150_000,
        min_bps: 60_000,
        max_bps: 300_000,
    },
    LayerSpec {
        spatial: 1,
        scale: 2.0,
        default_bps: 500_000,
        min_bps: 200_000,
        max_bps: 1_000_000,
    },
    LayerSpec {
        spatial: 2,
        scale: 1.0,
        default_bps: 1_500_000,
        min_bps: 500_000,
        max_bps: 2_500_000,
    },
];

/// The adaptive layer's resolutions: (downscale, bitrate from which it is entered, bitrate below
/// which it is left), best first. The lowest has no threshold.
const ADAPTIVE_STEPS: [(f64, u64, u64); 2] = [(1.0, 1_000_000, 800_000), (2.0, 400_000, 300_000)];
/// The adaptive layer's lowest resolution.
const ADAPTIVE_LOWEST_SCALE: f64 = 4.0;
/// An adaptive layer sending less than this share of its maximum bitrate is content-limited.
pub const CONTENT_LIMITED: f64 = 0.6;
/// How long it must stay content-limited before its resolution is raised a step.
pub const CONTENT_LIMITED_HOLD: Duration = Duration::from_secs(3);
/// No raise for a content-limited layer this soon after its resolution was lowered: a line that
/// has just fallen sends little for a while, and each change of resolution costs a keyframe.
pub const RAISE_BACKOFF: Duration = Duration::from_secs(10);
/// The resolutions a content-limited adaptive layer may be raised to: (downscale, bitrate from
/// which it is entered, bitrate below which it is left), best first. Lower than
/// [`ADAPTIVE_STEPS`]: the picture needs less than the camera could use (a browser in a
/// peer-to-peer call keeps 720p at 0.5–0.7 Mbit/s on such a picture, docs/benchmarks.md).
const FINER_STEPS: [(f64, u64, u64); 2] = [(1.0, 500_000, 400_000), (2.0, 150_000, 120_000)];
/// The adaptive layer's lowest bitrate, bit/s: libwebrtc's lowest for a VP8 stream (180p that still
/// moves, at a lower frame rate in a browser). Below it the subscriber is audio-only.
const ADAPTIVE_MIN_BPS: u64 = 30_000;
/// The adaptive layer's highest bitrate, bit/s.
pub const ADAPTIVE_MAX_BPS: u64 = 2_500_000;

/// Which line a subscriber sits behind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bottleneck {
    /// A site's line (every participant at the site shares it).
    Site(String),
    /// The subscriber's own line (no site known).
    Own(u64),
}

/// One subscriber of the track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    /// Its line.
    pub bottleneck: Bottleneck,
    /// What its allocation leaves for this track: what it may receive minus its audio and its other
    /// video, bit/s.
    pub room_bps: u64,
    /// The spatial layer the allocator aims it at; none: paused.
    pub target: Option<u8>,
}

/// How the publisher should send one layer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LayerPlan {
    /// Spatial layer.
    pub spatial: u8,
    /// Send it.
    pub active: bool,
    /// Its maximum bitrate, bit/s.
    pub max_bitrate_bps: u64,
    /// Its downscale of the camera.
    pub scale_resolution_down_by: f64,
}

/// Whether a track is sent as one adaptive layer or as simulcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One bottleneck: the top layer adapts.
    Adaptive,
    /// Several: each layer tuned to the subscribers it serves.
    Simulcast,
}

/// The steering state of one published video track.
#[derive(Debug, Clone, Default)]
pub struct Steering {
    sent: Option<Vec<LayerPlan>>,
    last_rise: Option<Instant>,
    mode: Option<Mode>,
    /// The adaptive layer drains the line's queue until then (see [`DRAIN_SHARE`]).
    drain_until: Option<Instant>,
    /// The adaptive layer's target before draining: the last, and the highest of the last
    /// [`DRAIN_TIME`] with when it was reached.
    target: Option<u64>,
    peak: Option<(Instant, u64)>,
    /// Since when the adaptive layer has sent less than [`CONTENT_LIMITED`] of its maximum.
    limited_since: Option<Instant>,
    /// The finer resolution a content-limited adaptive layer was raised to.
    finer: Option<f64>,
    /// When the adaptive layer's resolution was last lowered.
    lowered_at: Option<Instant>,
}

impl Steering {
    /// The mode of the last plan sent.
    pub fn mode(&self) -> Option<Mode> {
        self.mode
    }

    /// The last plan sent.
    pub fn sent(&self) -> Option<&[LayerPlan]> {
        self.sent.as_deref()
    }

    /// What the track's top layer sends now (bit/s, measured; `None` when it does not send): in
    /// adaptive mode, whether the adaptive layer is content-limited (see the module's doc).
    pub fn observe(&mut self, now: Instant, sending_bps: Option<u64>) {
        let draining = self.drain_until.is_some_and(|t| now < t);
        let top = self.sent.as_ref().and_then(|p| p.last());
        let limited = match (self.mode, top, sending_bps) {
            (Some(Mode::Adaptive), Some(top), Some(bps)) if top.active && !draining => {
                (bps as f64) < top.max_bitrate_bps as f64 * CONTENT_LIMITED
            }
            _ => false,
        };
        if limited {
            self.limited_since.get_or_insert(now);
        } else {
            self.limited_since = None;
        }
    }

    /// The plan for the track's `layers` (spatial layers the publisher has), given dynacast's
    /// decision (`active`, by spatial layer) and the track's subscribers. Returns the plan for
    /// every layer when it should be sent.
    pub fn update(
        &mut self,
        now: Instant,
        layers: &[u8],
        active: &BTreeMap<u8, bool>,
        subscribers: &[Subscriber],
    ) -> Option<Vec<LayerPlan>> {
        let specs: Vec<&LayerSpec> = LAYERS
            .iter()
            .filter(|s| layers.contains(&s.spatial))
            .collect();
        let top = specs.last()?.spatial;
        let is_active = |s: u8| active.get(&s).copied().unwrap_or(true);
        let one_line = subscribers
            .first()
            .is_some_and(|f| subscribers.iter().all(|s| s.bottleneck == f.bottleneck));
        let mode = if one_line && specs.len() > 1 {
            Mode::Adaptive
        } else {
            Mode::Simulcast
        };
        // The adaptive layer's bitrate follows the smallest room; a sudden fall drains the queue.
        let adaptive_bps = {
            let room = subscribers.iter().map(|s| s.room_bps).min().unwrap_or(0);
            adaptive_cost_cap(room).min(ADAPTIVE_MAX_BPS)
        };
        if mode == Mode::Adaptive {
            let recent = |at: Instant| now.saturating_duration_since(at) < DRAIN_TIME;
            // The highest target of the last DRAIN_TIME, and at least the last one (updates may
            // be further apart).
            let last = self.target.unwrap_or(adaptive_bps);
            let peak = match self.peak {
                Some((at, b)) if recent(at) => b.max(last),
                _ => last,
            };
            if adaptive_bps >= peak || self.peak.is_none_or(|(at, _)| !recent(at)) {
                self.peak = Some((now, adaptive_bps.max(last)));
            }
            let draining = self.drain_until.is_some_and(|t| now < t);
            let below =
                |before: u64, share: f64| (adaptive_bps as f64) < before as f64 * (1.0 - share);
            let congestion = self.mode == Some(Mode::Adaptive) && below(peak, CONGESTION_FALL);
            let further = self.target.is_some_and(|t| below(t, CHANGE));
            if (congestion && !draining) || (draining && further) {
                self.drain_until = Some(now + DRAIN_TIME);
                // The way back up after the drain is not a rise of the line: it is not held back.
                self.last_rise = None;
                // The line dropped: what the picture needed before says nothing now.
                self.finer = None;
                self.limited_since = None;
            }
            self.target = Some(adaptive_bps);
        } else {
            // Simulcast: what the adaptive layer aimed at before says nothing about a later one.
            self.target = None;
            self.peak = None;
            self.finer = None;
            self.limited_since = None;
        }
        let before = self
            .sent
            .as_ref()
            .and_then(|p| p.iter().find(|l| l.spatial == top))
            .map(|l| l.scale_resolution_down_by);
        let scale =
            (mode == Mode::Adaptive).then(|| self.adaptive_scale(now, adaptive_bps, before));
        let previous = self.sent.as_deref();
        let draining = self.drain_until.is_some_and(|t| now < t);
        let plan: Vec<LayerPlan> = specs
            .iter()
            .map(|spec| {
                let served: Vec<u64> = subscribers
                    .iter()
                    .filter(|s| s.target == Some(spec.spatial))
                    .map(|s| s.room_bps)
                    .collect();
                if mode == Mode::Adaptive && spec.spatial == top {
                    // Draining lowers the bitrate, not the resolution: it lasts a second.
                    let bps = if draining {
                        ((adaptive_bps as f64 * DRAIN_SHARE) as u64).max(ADAPTIVE_MIN_BPS)
                    } else {
                        adaptive_bps
                    };
                    LayerPlan {
                        spatial: spec.spatial,
                        active: true,
                        max_bitrate_bps: bps,
                        scale_resolution_down_by: scale.unwrap_or(spec.scale),
                    }
                } else {
                    // Tuned to the subscriber with the least room among those it serves.
                    let bps = served.iter().min().map_or(spec.default_bps, |r| {
                        ((*r as f64 * TARGET_SHARE) as u64).clamp(spec.min_bps, spec.max_bps)
                    });
                    // In adaptive mode the middle layers are paused unless someone is switched
                    // to one (dynacast keeps the lowest on as the fallback).
                    let needed = mode == Mode::Simulcast
                        || !served.is_empty()
                        || Some(spec.spatial) == specs.first().map(|s| s.spatial);
                    LayerPlan {
                        spatial: spec.spatial,
                        active: is_active(spec.spatial) && needed,
                        max_bitrate_bps: bps,
                        scale_resolution_down_by: spec.scale,
                    }
                }
            })
            .collect();
        // A new mode is always sent, so that the mode the relay acts on is the one the publisher
        // was last told (the plan itself may not have changed).
        if self.mode == Some(mode) && !self.worth_sending(now, &plan) {
            return None;
        }
        if previous.is_some_and(|p| p.iter().zip(&plan).any(|(a, b)| rises(a, b))) {
            self.last_rise = Some(now);
        }
        let top_scale = plan
            .iter()
            .find(|l| l.spatial == top)
            .map(|l| l.scale_resolution_down_by);
        if mode == Mode::Adaptive && self.mode == Some(Mode::Adaptive) && before < top_scale {
            self.lowered_at = Some(now);
        }
        self.sent = Some(plan.clone());
        self.mode = Some(mode);
        Some(plan)
    }

    /// The adaptive layer's downscale for `bps`, `before` the one sent: from the bitrate, or finer
    /// while the layer is content-limited.
    fn adaptive_scale(&mut self, now: Instant, bps: u64, before: Option<f64>) -> f64 {
        let by_rate = adaptive_scale(bps, before);
        // Kept while the bitrate stays above its floor's band and the rate alone is not as good.
        self.finer = self.finer.filter(|finer| {
            *finer < by_rate
                && FINER_STEPS
                    .iter()
                    .any(|(scale, _, leave)| scale == finer && bps >= *leave)
        });
        let since = |t: Option<Instant>, d: Duration| {
            t.is_some_and(|t| now.saturating_duration_since(t) >= d)
        };
        let held = since(self.limited_since, CONTENT_LIMITED_HOLD)
            && (self.lowered_at.is_none() || since(self.lowered_at, RAISE_BACKOFF));
        if held && let Some(before) = before {
            // One step finer than what is sent, if the bitrate reaches its floor.
            if let Some((scale, _, _)) = FINER_STEPS
                .iter()
                .rev()
                .find(|(scale, enter, _)| *scale < before && *scale < by_rate && bps >= *enter)
            {
                self.finer = Some(*scale);
                // The finer picture has to show what it needs before another step.
                self.limited_since = None;
            }
        }
        self.finer.map_or(by_rate, |finer| finer.min(by_rate))
    }

    /// Whether `plan` differs enough from what was sent: a layer switched on or off, or a fall
    /// (a bitrate down by more than [`CHANGE`], a lower resolution) at once; a rise (the opposite)
    /// no sooner than [`RISE_EVERY`] after the last.
    fn worth_sending(&self, now: Instant, plan: &[LayerPlan]) -> bool {
        let Some(sent) = &self.sent else {
            return true;
        };
        if sent.len() != plan.len() {
            return true;
        }
        let may_rise = self
            .last_rise
            .is_none_or(|t| now.saturating_duration_since(t) >= RISE_EVERY);
        sent.iter()
            .zip(plan)
            .any(|(a, b)| a.active != b.active || falls(a, b) || (rises(a, b) && may_rise))
    }
}

/// Whether a layer's bitrate rose by more than [`CHANGE`] or its resolution went up.
fn rises(before: &LayerPlan, after: &LayerPlan) -> bool {
    after.max_bitrate_bps as f64 > before.max_bitrate_bps as f64 * (1.0 + CHANGE)
        || after.scale_resolution_down_by < before.scale_resolution_down_by
}

/// Whether a layer's bitrate fell by more than [`CHANGE`] or its resolution went down.
fn falls(before: &LayerPlan, after: &LayerPlan) -> bool {
    (after.max_bitrate_bps as f64) < before.max_bitrate_bps as f64 * (1.0 - CHANGE)
        || after.scale_resolution_down_by > before.scale_resolution_down_by
}

/// A layer's rungs (temporal layer, cost bit/s) scaled down so that the top one costs at most
/// `cap`: what the layer will cost once the publisher follows a lower maximum bitrate.
pub fn cap_rungs(rungs: &[(u8, u64)], cap: Option<u64>) -> Vec<(u8, u64)> {
    let top = rungs.iter().map(|(_, b)| *b).max().unwrap_or(0);
    match cap {
        Some(cap) if top > cap && top > 0 => {
            let k = cap as f64 / top as f64;
            rungs
                .iter()
                .map(|(t, b)| (*t, (*b as f64 * k) as u64))
                .collect()
        }
        _ => rungs.to_vec(),
    }
}

/// What forwarding the adaptive layer can cost a subscriber whose room for the track is `room_bps`:
/// the steering brings the layer to [`TARGET_SHARE`] of the smallest room of its subscribers, at
/// once when a room falls, so the layer fits this room whatever it sends this moment, down to its
/// lowest bitrate. No [`OVERSHOOT`] on top: the remaining fifth of the room is the margin, and the
/// allocator's own step-up margin (1.15) must still find the layer fitting, or a paused adaptive
/// layer could never come back.
pub fn adaptive_cost_cap(room_bps: u64) -> u64 {
    ((room_bps as f64 * TARGET_SHARE) as u64).max(ADAPTIVE_MIN_BPS)
}

/// The least an adaptive layer is steered to when other subscribers of its site's line have
/// precedence (an emergency consultation): 180p that still moves, bit/s.
pub const YIELD_BPS: u64 = 100_000;

/// The room for a track (bit/s) that puts its adaptive layer at [`YIELD_BPS`] and at its highest
/// bitrate: its demand on a site's line, which can be met anywhere in between.
pub fn adaptive_room_range() -> (u64, u64) {
    let room = |bps: u64| (bps as f64 / TARGET_SHARE) as u64;
    (room(YIELD_BPS), room(ADAPTIVE_MAX_BPS))
}

/// The adaptive layer's downscale for `bps`, staying at `before` within the hysteresis band.
fn adaptive_scale(bps: u64, before: Option<f64>) -> f64 {
    for (scale, enter, leave) in ADAPTIVE_STEPS {
        let stay = before.is_some_and(|b| b <= scale);
        if bps >= enter || (stay && bps >= leave) {
            return scale;
        }
    }
    ADAPTIVE_LOWEST_SCALE
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [u8; 3] = [0, 1, 2];

    fn on() -> BTreeMap<u8, bool> {
        BTreeMap::from([(0, true), (1, true), (2, true)])
    }

    fn sub(site: &str, room_bps: u64, target: Option<u8>) -> Subscriber {
        Subscriber {
            bottleneck: Bottleneck::Site(site.into()),
            room_bps,
            target,
        }
    }

    fn top(plan: &[LayerPlan]) -> LayerPlan {
        plan[2]
    }

    #[test]
    fn one_bottleneck_gets_one_adaptive_layer_that_fills_the_line() {
        let t0 = Instant::now();
        let mut s = Steering::default();
        // A 1:1 consultation: the county doctor has 1 Mbit/s for the specialist's video. Simulcast
        // would send the 500 kbit/s 360p layer; the adaptive layer takes 800 kbit/s at 360p.
        let plan = s
            .update(t0, &ALL, &on(), &[sub("county", 1_000_000, Some(2))])
            .unwrap();
        assert_eq!(s.mode(), Some(Mode::Adaptive));
        assert_eq!(
            top(&plan),
            LayerPlan {
                spatial: 2,
                active: true,
                max_bitrate_bps: 800_000,
                scale_resolution_down_by: 2.0
            }
        );
        // The middle layer is paused, the lowest stays on as the fallback.
        assert!(plan[0].active && !plan[1].active);
        // The line improves to 2 Mbit/s: 1.6 Mbit/s at 720p (after the rise interval).
        let t1 = t0 + RISE_EVERY;
        let plan = s
            .update(t1, &ALL, &on(), &[sub("county", 2_000_000, Some(2))])
            .unwrap();
        assert_eq!(top(&plan).max_bitrate_bps, 1_600_000);
        assert_eq!(top(&plan).scale_resolution_down_by, 1.0);
        // Two viewers at one site are one bottleneck too.
        let mut s = Steering::default();
        let plan = s
            .update(
                t0,
                &ALL,
                &on(),
                &[
                    sub("county", 700_000, Some(2)),
                    sub("county", 900_000, Some(2)),
                ],
            )
            .unwrap();
        assert_eq!(s.mode(), Some(Mode::Adaptive));
        assert_eq!(top(&plan).max_bitrate_bps, 560_000);
        // The lowest resolution below 300 kbit/s; never below the floor.
        let plan = s
            .update(t0, &ALL, &on(), &[sub("county", 40_000, Some(2))])
            .unwrap();
        assert_eq!(top(&plan).scale_resolution_down_by, 4.0);
        assert_eq!(top(&plan).max_bitrate_bps, ADAPTIVE_MIN_BPS);
    }

    #[test]
    fn a_subscriber_switched_to_a_middle_layer_keeps_it_coming() {
        let mut s = Steering::default();
        let plan = s
            .update(
                Instant::now(),
                &ALL,
                &on(),
                &[sub("county", 600_000, Some(1))],
            )
            .unwrap();
        assert!(plan[1].active);
        // Dynacast paused it: it stays paused.
        let paused = BTreeMap::from([(0, true), (1, false), (2, true)]);
        let plan = s
            .update(
                Instant::now(),
                &ALL,
                &paused,
                &[sub("county", 600_000, Some(1))],
            )
            .unwrap();
        assert!(!plan[1].active);
    }

    #[test]
    fn several_bottlenecks_get_simulcast_tuned_to_each_layers_subscribers() {
        let mut s = Steering::default();
        let subs = [
            sub("county", 900_000, Some(1)),
            sub("township", 250_000, Some(0)),
            sub("centre", 5_000_000, Some(2)),
        ];
        let plan = s.update(Instant::now(), &ALL, &on(), &subs).unwrap();
        assert_eq!(s.mode(), Some(Mode::Simulcast));
        let bps: Vec<u64> = plan.iter().map(|l| l.max_bitrate_bps).collect();
        // q: 0.8 × 250k; h: 0.8 × 900k; f: capped at 2.5M.
        assert_eq!(bps, vec![200_000, 720_000, 2_500_000]);
        let scales: Vec<f64> = plan.iter().map(|l| l.scale_resolution_down_by).collect();
        assert_eq!(scales, vec![4.0, 2.0, 1.0]);
        assert!(plan.iter().all(|l| l.active));
        // A layer nobody receives keeps its default bitrate (dynacast decides whether it is sent).
        let plan = s
            .update(
                Instant::now(),
                &ALL,
                &on(),
                &[
                    sub("county", 900_000, Some(1)),
                    sub("centre", 5_000_000, Some(1)),
                ],
            )
            .unwrap();
        assert_eq!(plan[2].max_bitrate_bps, 1_500_000);
        assert_eq!(plan[0].max_bitrate_bps, 150_000);
    }

    #[test]
    fn a_steady_noisy_line_sends_few_updates_and_falls_are_sent_at_once() {
        let t0 = Instant::now();
        let mut s = Steering::default();
        assert!(
            s.update(t0, &ALL, &on(), &[sub("c", 1_500_000, Some(2))])
                .is_some()
        );
        let mut sent = 0;
        // ±8 % noise around 1.5 Mbit/s for a minute, updated every 250 ms.
        for i in 1..240u64 {
            let noise = [0.92, 1.0, 1.08, 0.96, 1.04][(i % 5) as usize];
            let room = (1_500_000.0 * noise) as u64;
            let t = t0 + Duration::from_millis(250 * i);
            if s.update(t, &ALL, &on(), &[sub("c", room, Some(2))])
                .is_some()
            {
                sent += 1;
            }
        }
        assert!(sent <= 2, "{sent} updates on a steady line");
        // The line halves: sent at once, at a lower resolution band, drained for a second (60 % of
        // 560 kbit/s).
        let t = t0 + Duration::from_secs(61);
        let plan = s
            .update(t, &ALL, &on(), &[sub("c", 700_000, Some(2))])
            .expect("a fall is sent at once");
        assert_eq!(top(&plan).max_bitrate_bps, 336_000);
        assert_eq!(top(&plan).scale_resolution_down_by, 2.0);
        // It recovers after the drain: the first rise goes out (none since the fall); a second
        // right after waits for RISE_EVERY.
        let t = t + DRAIN_TIME;
        let plan = s
            .update(t, &ALL, &on(), &[sub("c", 1_000_000, Some(2))])
            .expect("first rise");
        assert_eq!(top(&plan).max_bitrate_bps, 800_000);
        // Within the band: 360p kept at 800 kbit/s (720p needs 1 Mbit/s to enter).
        assert_eq!(top(&plan).scale_resolution_down_by, 2.0);
        assert!(
            s.update(t, &ALL, &on(), &[sub("c", 1_400_000, Some(2))])
                .is_none()
        );
        assert!(
            s.update(t + RISE_EVERY, &ALL, &on(), &[sub("c", 1_400_000, Some(2))])
                .is_some()
        );
    }

    #[test]
    fn a_layer_steered_down_is_costed_at_its_new_maximum() {
        let rungs = [(0, 400_000), (1, 600_000), (2, 1_200_000)];
        assert_eq!(cap_rungs(&rungs, None), rungs.to_vec());
        assert_eq!(cap_rungs(&rungs, Some(2_000_000)), rungs.to_vec());
        assert_eq!(
            cap_rungs(&rungs, Some(600_000)),
            vec![(0, 200_000), (1, 300_000), (2, 600_000)]
        );
    }

    #[test]
    fn resolution_hysteresis() {
        assert_eq!(adaptive_scale(1_000_000, None), 1.0);
        assert_eq!(adaptive_scale(900_000, None), 2.0);
        assert_eq!(adaptive_scale(900_000, Some(1.0)), 1.0);
        assert_eq!(adaptive_scale(790_000, Some(1.0)), 2.0);
        assert_eq!(adaptive_scale(350_000, Some(4.0)), 4.0);
        assert_eq!(adaptive_scale(350_000, Some(2.0)), 2.0);
        assert_eq!(adaptive_scale(290_000, Some(2.0)), 4.0);
    }

    #[test]
    fn a_content_limited_adaptive_layer_is_raised_a_resolution_step() {
        let t0 = Instant::now();
        let sec = Duration::from_secs;
        let mut s = Steering::default();
        let county = |room| [sub("county", room, Some(2))];
        let at = |s: &mut Steering, t: Duration, sending: u64, room: u64| {
            s.observe(t0 + t, Some(sending));
            s.update(t0 + t, &ALL, &on(), &county(room))
        };
        // 850 kbit/s of room: 680 kbit/s, at 360p by the bitrate's rule.
        let plan = s.update(t0, &ALL, &on(), &county(850_000)).unwrap();
        assert_eq!(top(&plan).scale_resolution_down_by, 2.0);
        // A busy picture uses it: nothing changes.
        for i in 1..=5 {
            assert_eq!(at(&mut s, sec(i), 600_000, 850_000), None);
        }
        // A simple picture sends 350 kbit/s: after three seconds of that, 720p at the same bitrate.
        for i in 6..=8 {
            assert_eq!(at(&mut s, sec(i), 350_000, 850_000), None);
        }
        let plan = at(&mut s, sec(9), 350_000, 850_000).unwrap();
        assert_eq!(top(&plan).scale_resolution_down_by, 1.0);
        assert_eq!(top(&plan).max_bitrate_bps, 680_000);
        // It stays there while the bitrate allows, whatever the picture sends...
        let plan = at(&mut s, sec(10), 650_000, 620_000).unwrap();
        assert_eq!(top(&plan).max_bitrate_bps, 496_000);
        assert_eq!(top(&plan).scale_resolution_down_by, 1.0);
        // ... and takes the bitrate's rule again below its band (400 kbit/s).
        let plan = at(&mut s, sec(11), 450_000, 450_000).unwrap();
        assert_eq!(top(&plan).max_bitrate_bps, 360_000);
        assert_eq!(top(&plan).scale_resolution_down_by, 2.0);
        // On a slow line the same lifts 180p to 360p, from 150 kbit/s.
        let mut s = Steering::default();
        let plan = s.update(t0, &ALL, &on(), &county(300_000)).unwrap();
        assert_eq!(top(&plan).scale_resolution_down_by, 4.0);
        for i in 1..=3 {
            assert_eq!(at(&mut s, sec(i), 100_000, 300_000), None);
        }
        let plan = at(&mut s, sec(4), 100_000, 300_000).unwrap();
        assert_eq!(top(&plan).scale_resolution_down_by, 2.0);
        // A drop of the line (a drain) forgets it.
        let plan = at(&mut s, sec(5), 100_000, 150_000).unwrap();
        assert_eq!(top(&plan).scale_resolution_down_by, 4.0);
        // After a lowering, the picture is raised again only ten seconds later.
        for i in 6..=14 {
            let plan = at(&mut s, sec(i), 100_000, 300_000);
            assert!(plan.is_none_or(|p| top(&p).scale_resolution_down_by == 4.0));
        }
        let plan = at(&mut s, sec(15), 100_000, 300_000).unwrap();
        assert_eq!(top(&plan).scale_resolution_down_by, 2.0);
    }

    #[test]
    fn the_adaptive_layer_fits_the_room_it_is_steered_to() {
        // 80 % of the room: it always fits, with the allocator's step-up margin, so a falling line
        // needs no switch and a paused layer can come back.
        assert_eq!(adaptive_cost_cap(1_000_000), 800_000);
        assert_eq!(adaptive_cost_cap(500_000), 400_000);
        let up_margin = crate::core::allocator::AllocatorConfig::default().up_margin;
        assert!(adaptive_cost_cap(500_000) as f64 * up_margin <= 500_000.0);
        // Never below the layer's lowest bitrate: below that, a lower layer or audio only.
        assert_eq!(adaptive_cost_cap(10_000), ADAPTIVE_MIN_BPS);
        // Its demand on a site's line: the room from its floor to its ceiling.
        assert_eq!(adaptive_room_range(), (125_000, 3_125_000));
    }

    #[test]
    fn a_sudden_fall_drains_the_queue_for_a_second_at_the_same_resolution() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut s = Steering::default();
        let county = |room| [sub("county", room, Some(2))];
        let plan = s.update(t0, &ALL, &on(), &county(2_000_000)).unwrap();
        assert_eq!(top(&plan).max_bitrate_bps, 1_600_000);
        // The line drops to 600 kbit/s: 60 % of the usual 480 kbit/s, still at 360p.
        let plan = s
            .update(t0 + ms(3000), &ALL, &on(), &county(600_000))
            .unwrap();
        assert_eq!(top(&plan).max_bitrate_bps, 288_000);
        assert_eq!(top(&plan).scale_resolution_down_by, 2.0);
        // Within the second nothing changes; then back to 480 kbit/s at once.
        assert_eq!(s.update(t0 + ms(3900), &ALL, &on(), &county(600_000)), None);
        let plan = s
            .update(t0 + ms(4000), &ALL, &on(), &county(600_000))
            .unwrap();
        assert_eq!(top(&plan).max_bitrate_bps, 480_000);
        // A small fall is no congestion event: it is followed, not drained.
        let plan = s
            .update(t0 + ms(4200), &ALL, &on(), &county(500_000))
            .unwrap();
        assert_eq!(top(&plan).max_bitrate_bps, 400_000);
    }

    #[test]
    fn a_change_of_mode_is_sent_even_when_the_plan_is_the_same_and_starts_without_a_drain() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut s = Steering::default();
        // Dynacast has paused h: nobody receives it.
        let no_h = BTreeMap::from([(0, true), (1, false), (2, true)]);
        // Two sites, both on f: simulcast, f tuned to the smaller room.
        let two = [sub("a", 2_000_000, Some(2)), sub("b", 1_500_000, Some(2))];
        assert!(s.update(t0, &ALL, &no_h, &two).is_some());
        assert_eq!(s.mode(), Some(Mode::Simulcast));
        // Site a leaves: one line, adaptive; told even if nothing else differs.
        let one = [sub("b", 1_500_000, Some(2))];
        assert!(s.update(t0 + ms(200), &ALL, &no_h, &one).is_some());
        assert_eq!(s.mode(), Some(Mode::Adaptive));
        // No stale target from before: a steady room does not look like a fall.
        let plan = s.update(t0 + ms(400), &ALL, &no_h, &one);
        assert!(
            plan.as_ref()
                .is_none_or(|p| top(p).max_bitrate_bps == 1_200_000),
            "{plan:?}"
        );
    }

    #[test]
    fn an_estimate_coming_down_in_steps_drains_until_a_second_after_the_last() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut s = Steering::default();
        let county = |room| [sub("county", room, Some(2))];
        s.update(t0, &ALL, &on(), &county(2_000_000)).unwrap();
        // 2.0 → 1.2 Mbit/s (-40 %: congestion), then down in steps of about 15 %.
        let mut t = ms(3000);
        for room in [1_200_000u64, 1_000_000, 850_000, 700_000] {
            let plan = s.update(t0 + t, &ALL, &on(), &county(room)).unwrap();
            assert_eq!(
                top(&plan).max_bitrate_bps,
                (room as f64 * TARGET_SHARE * DRAIN_SHARE) as u64
            );
            t += ms(300);
        }
        // The last fall was at 3.9 s: still draining at 4.8 s, not at 4.9 s.
        assert_eq!(s.update(t0 + ms(4800), &ALL, &on(), &county(700_000)), None);
        let plan = s
            .update(t0 + ms(4900), &ALL, &on(), &county(700_000))
            .unwrap();
        assert_eq!(top(&plan).max_bitrate_bps, 560_000);
    }
}
