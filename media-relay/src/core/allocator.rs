//! Per-subscriber bandwidth allocation: which layer of each video track a subscriber receives, given
//! what its downlink carries.
//!
//! Inputs, all passed in with the time: the subscriber's estimate (str0m's send-side estimate from
//! TWCC feedback), its cap from the site's line budget, the bitrate of its audio, and for each video
//! track a ladder of the layers the publisher sends now with their measured bitrates. The split follows
//! priority: audio first and never starved, then shared clinical content, then the active speaker, then
//! other video. Every video track first gets its lowest layer (in priority order, as far as it fits),
//! then tracks climb in priority order.
//!
//! Stability on a slow line matters more than the last kilobit:
//! - a step **down** happens at once, as soon as the current layer does not fit;
//! - a step **up** needs the next layer to fit with a margin for [`AllocatorConfig::up_hold`], and not
//!   within [`AllocatorConfig::after_down_hold`] of the last step down; the allocation also reports a
//!   probe target one step above, so str0m's estimator probes for headroom before the step is taken;
//! - the ladder of a spatial layer above the lowest includes its 15 fps form (temporal layers 0–1),
//!   so a tight line first drops temporal layers inside a spatial layer before stepping down; 7.5 fps
//!   is used only on the lowest layer;
//! - below the lowest layer the subscriber is audio-only, and the probe target keeps asking for that
//!   layer so that video comes back when the line recovers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::layer_selector::Layer;
use super::room::TrackId;

/// How far beyond the next step's margin the estimator is asked to probe.
const PROBE_HEADROOM: f64 = 1.25;

/// The order in which video tracks get bandwidth (audio always comes first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Shared clinical content (an ECG or image shared as video).
    Content,
    /// The active speaker's camera.
    Speaker,
    /// Any other camera.
    Video,
}

/// One step of a video track's ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerRate {
    /// The layer.
    pub layer: Layer,
    /// What forwarding it costs, bit/s.
    pub bps: u64,
}

/// A video track the subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoTrack {
    /// The track.
    pub track: TrackId,
    /// Its priority for this subscriber.
    pub priority: Priority,
    /// The layers the publisher sends now, cheapest first.
    pub ladder: Vec<LayerRate>,
}

/// Why the subscriber receives what it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Every track at the best layer the publisher sends.
    Best,
    /// Limited by the subscriber's own line estimate.
    LineLimited,
    /// Limited by the site's line budget shared with other consultations.
    SiteBudget,
    /// Not even the lowest video layer fits: audio only.
    AudioOnly,
    /// No video to receive.
    NoVideo,
}

impl Reason {
    /// A short name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Best => "best",
            Reason::LineLimited => "line_limited",
            Reason::SiteBudget => "site_budget",
            Reason::AudioOnly => "audio_only",
            Reason::NoVideo => "no_video",
        }
    }
}

/// Tuning of the allocator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AllocatorConfig {
    /// A higher layer must fit this many times over before the step up.
    pub up_margin: f64,
    /// ... for this long.
    pub up_hold: Duration,
    /// No step up this soon after a step down.
    pub after_down_hold: Duration,
}

impl Default for AllocatorConfig {
    fn default() -> Self {
        AllocatorConfig {
            up_margin: 1.15,
            up_hold: Duration::from_millis(800),
            after_down_hold: Duration::from_secs(4),
        }
    }
}

/// The inputs of one allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    /// The subscriber's downlink estimate, bit/s.
    pub estimate_bps: u64,
    /// Its share of its site's line budget, bit/s, if the site has one.
    pub cap_bps: Option<u64>,
    /// What its audio tracks take, bit/s.
    pub audio_bps: u64,
    /// Its video tracks.
    pub video: Vec<VideoTrack>,
}

/// The decision for one video track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackAllocation {
    /// The track.
    pub track: TrackId,
    /// The layer to forward; none: paused.
    pub layer: Option<Layer>,
    /// Its bitrate.
    pub bps: u64,
}

/// The outcome of one allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// One entry per video track, in the input's order.
    pub tracks: Vec<TrackAllocation>,
    /// Why.
    pub reason: Reason,
    /// What the subscriber may receive: the smaller of estimate and cap, bit/s.
    pub available_bps: u64,
    /// What the chosen layers and the audio take, bit/s.
    pub allocated_bps: u64,
    /// What the estimator should probe for: one step above the current allocation, bit/s.
    pub probe_bps: u64,
}

impl Inputs {
    /// The subscriber's demand on its site's line, bit/s: (audio plus the lowest layer of every
    /// video track, audio plus the top one). A track that `adaptive` gives a range for (one adaptive
    /// layer, steered anywhere within it) counts with that range instead of what its layers cost now.
    pub fn demand(&self, adaptive: impl Fn(TrackId) -> Option<(u64, u64)>) -> (u64, u64) {
        let (mut min, mut max) = (self.audio_bps, self.audio_bps);
        for v in &self.video {
            let (Some(first), Some(last)) = (v.ladder.first(), v.ladder.last()) else {
                continue;
            };
            match adaptive(v.track) {
                Some((floor, ceiling)) => {
                    min += floor;
                    max += last.bps.max(ceiling);
                }
                None => {
                    min += first.bps;
                    max += last.bps;
                }
            }
        }
        (min, max)
    }
}

#[derive(Debug, Clone, Copy)]
struct TrackState {
    layer: Option<Layer>,
    /// Since when the next step up has fitted with the margin.
    headroom_since: Option<Instant>,
}

/// One subscriber's allocator.
#[derive(Debug, Clone, Default)]
pub struct Allocator {
    config: AllocatorConfig,
    tracks: HashMap<TrackId, TrackState>,
    last_down: Option<Instant>,
}

impl Allocator {
    /// An allocator with the given tuning.
    pub fn new(config: AllocatorConfig) -> Self {
        Allocator {
            config,
            ..Default::default()
        }
    }

    /// Decide the layers for `inputs` at `now`.
    pub fn allocate(&mut self, now: Instant, inputs: &Inputs) -> Allocation {
        let available = inputs
            .cap_bps
            .map_or(inputs.estimate_bps, |c| c.min(inputs.estimate_bps));
        let mut left = available.saturating_sub(inputs.audio_bps);
        self.tracks
            .retain(|t, _| inputs.video.iter().any(|v| v.track == *t));

        let mut order: Vec<usize> = (0..inputs.video.len()).collect();
        order.sort_by_key(|i| inputs.video[*i].priority);

        // Index into each ladder; None: paused.
        let mut chosen: Vec<Option<usize>> = vec![None; inputs.video.len()];
        // Pass 1: the lowest layer for every track that has one, in priority order. A paused track needs
        // the margin (held) to start; a running one keeps it while it fits.
        for &i in &order {
            let v = &inputs.video[i];
            let Some(lowest) = v.ladder.first() else {
                continue;
            };
            // A new track starts at once; one paused for lack of bandwidth must earn its way back.
            let new = !self.tracks.contains_key(&v.track);
            let running = self.current_index(v).is_some();
            if lowest.bps <= left
                && (new || running || self.may_rise(now, v.track, lowest.bps, left))
            {
                chosen[i] = Some(0);
                left -= lowest.bps;
            }
        }
        // Pass 2: climb in priority order.
        for &i in &order {
            let v = &inputs.video[i];
            let Some(base) = chosen[i] else {
                continue;
            };
            let budget = left + v.ladder[base].bps;
            let current = self.current_index(v).unwrap_or(0);
            // Keep what fits at or below the current layer: down at once.
            let mut pick = (0..=current.min(v.ladder.len() - 1))
                .rev()
                .find(|j| v.ladder[*j].bps <= budget)
                .unwrap_or(0);
            // Up only with held headroom.
            if pick == current
                && let Some(next) = v.ladder.get(current + 1)
            {
                if self.may_rise(now, v.track, next.bps, budget) {
                    pick = (current + 1..v.ladder.len())
                        .take_while(|j| {
                            v.ladder[*j].bps as f64 * self.config.up_margin <= budget as f64
                        })
                        .last()
                        .unwrap_or(current);
                }
            } else {
                self.clear_headroom(v.track);
            }
            chosen[i] = Some(pick);
            left = budget - v.ladder[pick].bps;
        }

        // Record, and note steps down.
        let mut stepped_down = false;
        let mut tracks = Vec::with_capacity(inputs.video.len());
        for (v, pick) in inputs.video.iter().zip(&chosen) {
            let layer = pick.map(|j| v.ladder[j].layer);
            let before = self.tracks.get(&v.track).and_then(|s| s.layer);
            if let (Some(b), Some(new)) = (before, layer)
                && new < b
            {
                stepped_down = true;
            }
            if before.is_some() && layer.is_none() {
                stepped_down = true;
            }
            let state = self.tracks.entry(v.track).or_insert(TrackState {
                layer: None,
                headroom_since: None,
            });
            if state.layer != layer {
                state.headroom_since = None;
            }
            state.layer = layer;
            tracks.push(TrackAllocation {
                track: v.track,
                layer,
                bps: pick.map_or(0, |j| v.ladder[j].bps),
            });
        }
        if stepped_down {
            self.last_down = Some(now);
        }

        let allocated = inputs.audio_bps + tracks.iter().map(|t| t.bps).sum::<u64>();
        let step_up: u64 = inputs
            .video
            .iter()
            .zip(&chosen)
            .map(|(v, pick)| {
                let next = pick.map_or(0, |j| j + 1);
                let at = |j: Option<usize>| j.map_or(0, |j| v.ladder[j].bps);
                v.ladder
                    .get(next)
                    .map_or(0, |n| n.bps.saturating_sub(at(*pick)))
            })
            .max()
            .unwrap_or(0);
        // Probe beyond what the step needs (its margin, and then some: an estimate from a probe lands
        // a little below the probed rate), or the estimate would stop just short of the step.
        let probe_bps = if step_up > 0 {
            ((allocated + step_up) as f64 * self.config.up_margin * PROBE_HEADROOM) as u64
        } else {
            allocated
        };
        let reason = if inputs.video.iter().all(|v| v.ladder.is_empty()) {
            Reason::NoVideo
        } else if tracks.iter().any(|t| t.layer.is_none())
            && inputs
                .video
                .iter()
                .zip(&tracks)
                .any(|(v, t)| t.layer.is_none() && !v.ladder.is_empty())
        {
            Reason::AudioOnly
        } else if inputs
            .video
            .iter()
            .zip(&chosen)
            .all(|(v, pick)| v.ladder.is_empty() || *pick == Some(v.ladder.len() - 1))
        {
            Reason::Best
        } else if inputs.cap_bps.is_some_and(|c| c < inputs.estimate_bps) {
            Reason::SiteBudget
        } else {
            Reason::LineLimited
        };
        Allocation {
            tracks,
            reason,
            available_bps: available,
            allocated_bps: allocated,
            probe_bps,
        }
    }

    fn current_index(&self, v: &VideoTrack) -> Option<usize> {
        let layer = self.tracks.get(&v.track)?.layer?;
        // The layer may have left the ladder (the publisher stopped sending it): the highest below it.
        v.ladder.iter().rposition(|l| l.layer <= layer).or(Some(0))
    }

    /// Whether a step up to `need_bps` may happen now, given `budget_bps`: it must have fitted with the
    /// margin for the hold time, away from the last step down.
    fn may_rise(&mut self, now: Instant, track: TrackId, need_bps: u64, budget_bps: u64) -> bool {
        let fits = need_bps as f64 * self.config.up_margin <= budget_bps as f64;
        let state = self.tracks.entry(track).or_insert(TrackState {
            layer: None,
            headroom_since: None,
        });
        if !fits {
            state.headroom_since = None;
            return false;
        }
        let since = *state.headroom_since.get_or_insert(now);
        let settled = self
            .last_down
            .is_none_or(|t| now.saturating_duration_since(t) >= self.config.after_down_hold);
        settled && now.saturating_duration_since(since) >= self.config.up_hold
    }

    fn clear_headroom(&mut self, track: TrackId) {
        if let Some(s) = self.tracks.get_mut(&track) {
            s.headroom_since = None;
        }
    }
}

/// The ladder of a simulcast track from the measured bitrate of each spatial layer and its temporal
/// layers (for each spatial layer, lowest first, `(temporal layer, cumulative bit/s)`), in order of
/// quality and cost. Spatial layers above the lowest are offered at 15 fps or more only (temporal layer
/// ≥ 1), the lowest down to 7.5 fps. A rung that costs no less than a better one is left out (a still
/// picture can make 720p cheaper than 180p at 30 fps), so cost rises with every step.
pub fn ladder(spatial: &[(u8, Vec<(u8, u64)>)]) -> Vec<LayerRate> {
    let mut rungs: Vec<LayerRate> = vec![];
    for (index, (s, temporal)) in spatial.iter().enumerate() {
        for (t, bps) in temporal {
            if index > 0 && *t == 0 && temporal.len() > 1 {
                continue;
            }
            rungs.push(LayerRate {
                layer: Layer {
                    spatial: *s,
                    temporal: *t,
                },
                bps: *bps,
            });
        }
    }
    let mut out: Vec<LayerRate> = vec![];
    for rung in rungs.into_iter().rev() {
        if out.last().is_none_or(|better| rung.bps < better.bps) {
            out.push(rung);
        }
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: TrackId = TrackId(1);
    const U: TrackId = TrackId(2);

    /// q/h/f at about 150 / 500 / 1500 kbit/s, each with L1T3 (50 % / 75 % / 100 %).
    fn simulcast() -> Vec<LayerRate> {
        let layer =
            |s: u8, kbps: u64| (s, vec![(0, kbps * 500), (1, kbps * 750), (2, kbps * 1000)]);
        ladder(&[layer(0, 150), layer(1, 500), layer(2, 1500)])
    }

    fn inputs(estimate_kbps: u64, cap_kbps: Option<u64>, video: Vec<VideoTrack>) -> Inputs {
        Inputs {
            estimate_bps: estimate_kbps * 1000,
            cap_bps: cap_kbps.map(|c| c * 1000),
            audio_bps: 40_000,
            video,
        }
    }

    fn one(priority: Priority) -> Vec<VideoTrack> {
        vec![VideoTrack {
            track: T,
            priority,
            ladder: simulcast(),
        }]
    }

    fn layer(s: u8, t: u8) -> Option<Layer> {
        Some(Layer {
            spatial: s,
            temporal: t,
        })
    }

    /// Run the allocator every 100 ms for `secs` with the estimate `f(step)`; returns the layer after
    /// each step.
    fn run(
        a: &mut Allocator,
        t: &mut Instant,
        secs: u64,
        mut f: impl FnMut(u64) -> Inputs,
    ) -> Vec<Option<Layer>> {
        (0..secs * 10)
            .map(|step| {
                *t += Duration::from_millis(100);
                a.allocate(*t, &f(step)).tracks[0].layer
            })
            .collect()
    }

    #[test]
    fn demand_counts_an_adaptive_track_by_its_range() {
        let inputs = Inputs {
            estimate_bps: 1_000_000,
            cap_bps: None,
            audio_bps: 40_000,
            video: vec![
                VideoTrack {
                    track: T,
                    priority: Priority::Video,
                    ladder: simulcast(),
                },
                VideoTrack {
                    track: U,
                    priority: Priority::Video,
                    ladder: vec![LayerRate {
                        layer: Layer {
                            spatial: 2,
                            temporal: 2,
                        },
                        bps: 700_000,
                    }],
                },
            ],
        };
        let lowest = simulcast()[0].bps;
        let top = simulcast().last().unwrap().bps;
        assert_eq!(
            inputs.demand(|_| None),
            (40_000 + lowest + 700_000, 40_000 + top + 700_000)
        );
        // U is one adaptive layer steerable from 125 k to 3.1 M.
        let range = |t| (t == U).then_some((125_000, 3_125_000));
        assert_eq!(
            inputs.demand(range),
            (40_000 + lowest + 125_000, 40_000 + top + 3_125_000)
        );
    }

    #[test]
    fn ladder_drops_temporal_layers_before_spatial_ones() {
        let names: Vec<String> = simulcast().iter().map(|l| l.layer.to_string()).collect();
        assert_eq!(
            names,
            ["q/t0", "q/t1", "q/t2", "h/t1", "h/t2", "f/t1", "f/t2"]
        );
    }

    #[test]
    fn a_better_layer_that_costs_less_replaces_the_dearer_ones_below_it() {
        // A still picture: h costs less than q at 30 fps.
        let l = ladder(&[
            (0, vec![(0, 60_000), (1, 90_000), (2, 120_000)]),
            (1, vec![(0, 50_000), (1, 80_000), (2, 110_000)]),
        ]);
        let names: Vec<String> = l.iter().map(|l| l.layer.to_string()).collect();
        assert_eq!(names, ["q/t0", "h/t1", "h/t2"]);
    }

    #[test]
    fn picks_the_highest_layer_that_fits_once_headroom_has_held() {
        let mut a = Allocator::default();
        let mut t = Instant::now();
        // 2.5 Mbit/s: the top layer, after the hold.
        let first = a.allocate(t, &inputs(2500, None, one(Priority::Video)));
        assert_eq!(
            first.tracks[0].layer,
            layer(0, 0),
            "starts low until headroom has held"
        );
        let layers = run(&mut a, &mut t, 2, |_| {
            inputs(2500, None, one(Priority::Video))
        });
        assert_eq!(*layers.last().unwrap(), layer(2, 2));
        let last = a.allocate(t, &inputs(2500, None, one(Priority::Video)));
        assert_eq!(last.reason, Reason::Best);
        assert_eq!(last.allocated_bps, 1_540_000);
        // 1 Mbit/s: 720p at 15 fps does not fit (1125); 360p at 30 fps (500) does.
        let mut a = Allocator::default();
        let layers = run(&mut a, &mut t, 2, |_| {
            inputs(1000, None, one(Priority::Video))
        });
        assert_eq!(*layers.last().unwrap(), layer(1, 2));
        let d = a.allocate(t, &inputs(1000, None, one(Priority::Video)));
        assert_eq!(d.reason, Reason::LineLimited);
        assert!(
            d.probe_bps > 1_125_000,
            "probes for the next layer: {}",
            d.probe_bps
        );
    }

    #[test]
    fn steps_down_at_once_and_up_only_after_the_hold() {
        let mut a = Allocator::default();
        let mut t = Instant::now();
        run(&mut a, &mut t, 3, |_| {
            inputs(2500, None, one(Priority::Video))
        });
        // The line drops to 600 kbit/s: h/t2 (500) is the best that fits, immediately.
        t += Duration::from_millis(100);
        let d = a.allocate(t, &inputs(600, None, one(Priority::Video)));
        assert_eq!(d.tracks[0].layer, layer(1, 2));
        // Back to 2.5 Mbit/s: nothing happens for the after-down hold, then it climbs.
        let layers = run(&mut a, &mut t, 6, |_| {
            inputs(2500, None, one(Priority::Video))
        });
        let first_up = layers.iter().position(|l| *l != layer(1, 2)).unwrap();
        assert!(
            first_up >= 39,
            "stepped up after {} ms",
            (first_up + 1) * 100
        );
        assert_eq!(*layers.last().unwrap(), layer(2, 2));
    }

    #[test]
    fn a_steady_but_noisy_estimate_does_not_oscillate() {
        let mut a = Allocator::default();
        let mut t = Instant::now();
        // 900 kbit/s ± 15 %, deterministic pseudo-noise, for five minutes.
        let mut x: u64 = 12345;
        let layers = run(&mut a, &mut t, 300, |_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let noise = (x >> 33) % 271; // 0..270
            inputs(765 + noise, None, one(Priority::Video))
        });
        let switches = layers.windows(2).filter(|w| w[0] != w[1]).count();
        // The start climbs a few rungs; afterwards the layer stays put.
        assert!(switches <= 6, "{switches} switches in 5 minutes");
        let steady = &layers[100..];
        assert!(steady.iter().all(|l| *l == steady[0]), "{:?}", steady[0]);
    }

    #[test]
    fn audio_only_below_the_floor_and_back_above_it() {
        let mut a = Allocator::default();
        let mut t = Instant::now();
        run(&mut a, &mut t, 2, |_| {
            inputs(600, None, one(Priority::Video))
        });
        // 100 kbit/s: audio (40) plus q/t0 (75) does not fit.
        t += Duration::from_millis(100);
        let d = a.allocate(t, &inputs(100, None, one(Priority::Video)));
        assert_eq!(d.tracks[0].layer, None);
        assert_eq!(d.reason, Reason::AudioOnly);
        assert_eq!(d.allocated_bps, 40_000, "audio is never dropped");
        assert!(
            d.probe_bps >= 115_000,
            "keeps probing for the lowest layer: {}",
            d.probe_bps
        );
        // Just enough without the margin: stays audio-only.
        let layers = run(&mut a, &mut t, 6, |_| {
            inputs(120, None, one(Priority::Video))
        });
        assert!(layers.iter().all(|l| l.is_none()));
        // The line recovers: video comes back at the lowest layer, after the hold.
        let layers = run(&mut a, &mut t, 2, |_| {
            inputs(140, None, one(Priority::Video))
        });
        assert_eq!(*layers.last().unwrap(), layer(0, 0));
    }

    #[test]
    fn priority_order_content_then_speaker_then_others() {
        let mut a = Allocator::default();
        let mut t = Instant::now();
        let video = || {
            vec![
                VideoTrack {
                    track: T,
                    priority: Priority::Video,
                    ladder: simulcast(),
                },
                VideoTrack {
                    track: U,
                    priority: Priority::Speaker,
                    ladder: simulcast(),
                },
            ]
        };
        for _ in 0..30 {
            t += Duration::from_millis(100);
            a.allocate(t, &inputs(1000, None, video()));
        }
        let d = a.allocate(t, &inputs(1000, None, video()));
        // Both get video; the speaker climbs first.
        let speaker = d.tracks[1].layer.unwrap();
        let other = d.tracks[0].layer.unwrap();
        assert!(speaker > other, "speaker {speaker}, other {other}");
        assert!(d.allocated_bps <= 1_000_000);
        // Very little: the speaker keeps video, the other goes audio-only.
        t += Duration::from_millis(100);
        let d = a.allocate(t, &inputs(160, None, video()));
        assert_eq!(d.tracks[0].layer, None);
        assert!(d.tracks[1].layer.is_some());
    }

    #[test]
    fn a_site_cap_below_the_estimate_is_reported_as_site_budget() {
        let mut a = Allocator::default();
        let mut t = Instant::now();
        run(&mut a, &mut t, 2, |_| {
            inputs(2500, Some(700), one(Priority::Video))
        });
        let d = a.allocate(t, &inputs(2500, Some(700), one(Priority::Video)));
        assert_eq!(d.available_bps, 700_000);
        assert!(d.allocated_bps <= 700_000);
        assert_eq!(d.reason, Reason::SiteBudget);
    }

    #[test]
    fn a_layer_the_publisher_stops_sending_is_replaced_by_the_next_below() {
        let mut a = Allocator::default();
        let mut t = Instant::now();
        run(&mut a, &mut t, 3, |_| {
            inputs(2500, None, one(Priority::Video))
        });
        // The publisher's own uplink drops f.
        let without_f: Vec<LayerRate> = simulcast()
            .into_iter()
            .filter(|l| l.layer.spatial < 2)
            .collect();
        t += Duration::from_millis(100);
        let d = a.allocate(
            t,
            &inputs(
                2500,
                None,
                vec![VideoTrack {
                    track: T,
                    priority: Priority::Video,
                    ladder: without_f,
                }],
            ),
        );
        assert_eq!(d.tracks[0].layer, layer(1, 2));
        assert_eq!(d.reason, Reason::Best);
    }
}
