//! From what the county's subscriber bots received and what the emulated line did to the figures
//! `loadtest bwe` reports (sans-I/O: times come in, a report comes out).
//!
//! Definitions (issue 4, `docs/loadtest.md`):
//! - the received rate is counted in one-second bins of scenario time: the media payload (Opus
//!   packets and depacketized VP8 frames) that reached all the county's viewers; no RTP headers,
//!   padding, probes or retransmitted copies;
//! - a segment's steady level is the mean rate of the bins in its second half; it has *reconverged*
//!   at the end of the last bin whose rate is more than 10 % off that level (at its start if none);
//! - *utilization* is the mean rate of the bins after reconvergence over the capacity (`null` when
//!   the last bin is still off: it never settled);
//! - *line utilization* is what the line delivered to the county over the same seconds (everything:
//!   RTP headers, RTCP, padding, probes, retransmissions) over the capacity, so that
//!   utilization / line utilization is the media payload's share of the line's bytes;
//! - per viewer: `fps` is frames decoded over the segment's length, `height` the median decoded
//!   height, `freezes` the gaps that were freezes ([`crate::media::PlayoutStats`]), and a *switch* is
//!   a change of the decoded height (a spatial layer, or a steered resolution) or a change the relay
//!   reports that leaves the height as it was (a temporal layer, or a pause); the top-level segment
//!   shows the worst viewer.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use serde::Serialize;

use super::scenario::Scenario;
use crate::bot::Timeline;
use crate::link::WindowSummary;

/// A reconverged rate stays within this fraction of its steady level.
const BAND: f64 = 0.10;
/// Bin length of the rate series.
const BIN: Duration = Duration::from_secs(1);

/// What one county viewer got from its consultation's specialist.
#[derive(Debug, Clone, Default)]
pub struct ViewerInput {
    /// The viewer's participant id.
    pub participant_id: String,
    /// Its consultation (index in [`Scenario::consultations`]).
    pub consultation: usize,
    /// Whether that consultation is an emergency.
    pub emergency: bool,
    /// The specialist's media as it arrived (times since the run's epoch).
    pub timeline: Timeline,
    /// The layer of the specialist's video the relay reported, when it changed.
    pub layers: Vec<(Duration, Option<String>)>,
    /// Frames the decoder could not decode.
    pub undecodable_frames: u64,
    /// Audio arrivals more than 60 ms after the previous one.
    pub audio_gaps_over_60ms: u64,
}

/// What the emulated line did, relay → county.
#[derive(Debug, Clone, Default)]
pub struct LineInput {
    /// One window per segment.
    pub segments: Vec<WindowSummary>,
    /// One window per second of scenario time.
    pub seconds: Vec<WindowSummary>,
}

/// The JSON object `loadtest bwe --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct BweReport {
    /// The scenario's name.
    pub scenario: String,
    /// Its length, s.
    pub duration_s: f64,
    /// One per capacity step.
    pub segments: Vec<Segment>,
    /// Per step after the first: seconds from the step until the received rate stays within 10 %
    /// of its steady level.
    pub reconvergence_s: Vec<f64>,
    /// Over all viewers and the whole run.
    pub undecodable_frames: u64,
    /// Over all viewers and the whole run.
    pub audio_gaps_over_60ms: u64,
    /// Video frames lost for good (not repaired in time), % of those sent, over all viewers.
    pub video_loss_after_repair_pct: f64,
    /// The county site's line budget, kbit/s.
    pub budget_kbps: u32,
    /// What the relay offered the line per second (all packets), kbit/s: its 95th percentile and
    /// largest value in scenario time.
    pub line_offered_p95_kbps: Option<f64>,
    /// See `line_offered_p95_kbps`.
    pub line_offered_max_kbps: Option<f64>,
    /// Per viewer.
    pub viewers: Vec<ViewerReport>,
    /// Per second, for plots.
    pub series: Vec<SeriesPoint>,
}

/// One capacity step.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Segment {
    /// Start, s of scenario time.
    pub start_s: f64,
    /// End, s.
    pub end_s: f64,
    /// Downlink capacity, kbit/s.
    pub capacity_kbps: u32,
    /// Received media over capacity from reconvergence on; `null`: it never settled.
    pub utilization: Option<f64>,
    /// Everything the line delivered over capacity, over the same seconds as `utilization`
    /// (headers, RTCP, padding, probes and retransmissions included); `null` with it.
    pub line_utilization: Option<f64>,
    /// Queueing delay on the line, ms.
    pub queue_delay_p50_ms: Option<f64>,
    /// See `queue_delay_p50_ms`.
    pub queue_delay_p95_ms: Option<f64>,
    /// See `queue_delay_p50_ms`.
    pub queue_delay_p99_ms: Option<f64>,
    /// Packets the line lost on its own (random and burst loss) over the segment.
    pub line_lost_packets: u64,
    /// Packets the line's full queue dropped over the segment.
    pub line_overflow_packets: u64,
    /// The worst viewer's decoded frames per second.
    pub fps: f64,
    /// The worst viewer's median decoded height.
    pub height: u32,
    /// Freezes, all viewers.
    pub freezes: u64,
    /// The busiest viewer's switches per minute.
    pub switches_per_min: f64,
}

/// One viewer's figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ViewerReport {
    /// Its participant id.
    pub participant_id: String,
    /// Its consultation.
    pub consultation: usize,
    /// Whether that is an emergency.
    pub emergency: bool,
    /// Per segment.
    pub segments: Vec<ViewerSegment>,
    /// Video frames lost for good, %.
    pub video_loss_after_repair_pct: f64,
}

/// One viewer in one segment.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ViewerSegment {
    /// Received media, kbit/s, over the whole segment.
    pub received_kbps: f64,
    /// Decoded frames per second.
    pub fps: f64,
    /// Median decoded height.
    pub height: u32,
    /// Freezes.
    pub freezes: u64,
    /// Switches per minute.
    pub switches_per_min: f64,
    /// Share of the segment's time on each forwarded layer (`paused` when none).
    pub layer_share: BTreeMap<String, f64>,
}

/// One second of scenario time.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SeriesPoint {
    /// The second's end, s.
    pub t_s: f64,
    /// The line's capacity, kbit/s.
    pub capacity_kbps: Option<f64>,
    /// Media received by all viewers, kbit/s.
    pub received_kbps: f64,
    /// What the relay offered the line, kbit/s.
    pub offered_kbps: f64,
    /// Queueing delay, 95th percentile, ms.
    pub queue_delay_p95_ms: Option<f64>,
}

/// The report of one run: `warmup` is how long after the epoch scenario time starts.
pub fn analyse(
    scenario: &Scenario,
    warmup: Duration,
    viewers: &[ViewerInput],
    line: &LineInput,
) -> BweReport {
    let spans = scenario.segments();
    let bins = bin_rates(viewers, warmup, scenario.duration);
    let mut segments = Vec::new();
    let mut reconvergence_s = Vec::new();
    let per_viewer: Vec<Vec<ViewerSegment>> = viewers
        .iter()
        .map(|v| {
            spans
                .iter()
                .map(|span| viewer_segment(v, shift(span, warmup)))
                .collect()
        })
        .collect();
    for (i, span) in spans.iter().enumerate() {
        let capacity_kbps = scenario.steps[i].1;
        let in_span: Vec<(Duration, f64)> = bins
            .iter()
            .copied()
            .filter(|(end, _)| *end > span.start && *end <= span.end)
            .collect();
        let (settled_at, utilization) = settle(&in_span, span.start, capacity_kbps);
        let delivered: Vec<f64> = settled_bins(&in_span, settled_at)
            .filter_map(|(end, _)| line.seconds.get(bin_index(*end)))
            .map(|w| w.delivered_kbps)
            .collect();
        let line_utilization = (utilization.is_some() && !delivered.is_empty())
            .then(|| round(mean(delivered.into_iter()) / f64::from(capacity_kbps), 3));
        if i > 0 {
            reconvergence_s.push(round((settled_at - span.start).as_secs_f64(), 1));
        }
        let window = line.segments.get(i);
        let of_viewers = per_viewer.iter().map(|s| &s[i]);
        segments.push(Segment {
            start_s: span.start.as_secs_f64(),
            end_s: span.end.as_secs_f64(),
            capacity_kbps,
            utilization: utilization.map(|u| round(u, 3)),
            line_utilization,
            queue_delay_p50_ms: window.and_then(|w| w.queue_delay_p50_ms),
            queue_delay_p95_ms: window.and_then(|w| w.queue_delay_p95_ms),
            queue_delay_p99_ms: window.and_then(|w| w.queue_delay_p99_ms),
            line_lost_packets: window.map_or(0, |w| w.lost_packets),
            line_overflow_packets: window.map_or(0, |w| w.overflow_packets),
            fps: of_viewers
                .clone()
                .map(|s| s.fps)
                .reduce(f64::min)
                .unwrap_or(0.0),
            height: of_viewers.clone().map(|s| s.height).min().unwrap_or(0),
            freezes: of_viewers.clone().map(|s| s.freezes).sum(),
            switches_per_min: of_viewers
                .map(|s| s.switches_per_min)
                .reduce(f64::max)
                .unwrap_or(0.0),
        });
    }
    let (frames, lost) = viewers.iter().fold((0, 0), |(f, l), v| {
        (
            f + v.timeline.video_frames,
            l + v.timeline.video_frames_lost,
        )
    });
    let offered: Vec<f64> = line.seconds.iter().map(|w| w.offered_kbps).collect();
    BweReport {
        scenario: scenario.name.to_string(),
        duration_s: scenario.duration.as_secs_f64(),
        segments,
        reconvergence_s,
        undecodable_frames: viewers.iter().map(|v| v.undecodable_frames).sum(),
        audio_gaps_over_60ms: viewers.iter().map(|v| v.audio_gaps_over_60ms).sum(),
        video_loss_after_repair_pct: round(crate::bot::frames_lost_pct(frames, frames + lost), 3),
        budget_kbps: scenario.budget_kbps,
        line_offered_p95_kbps: percentile(&offered, 0.95).map(|v| round(v, 0)),
        line_offered_max_kbps: offered
            .iter()
            .copied()
            .reduce(f64::max)
            .map(|v| round(v, 0)),
        viewers: viewers
            .iter()
            .zip(per_viewer)
            .map(|(v, segments)| ViewerReport {
                participant_id: v.participant_id.clone(),
                consultation: v.consultation,
                emergency: v.emergency,
                segments,
                video_loss_after_repair_pct: round(v.timeline.video_loss_after_repair_pct(), 3),
            })
            .collect(),
        series: bins
            .iter()
            .enumerate()
            .map(|(i, (end, kbps))| {
                let w = line.seconds.get(i);
                SeriesPoint {
                    t_s: end.as_secs_f64(),
                    capacity_kbps: w.and_then(|w| w.capacity_kbps),
                    received_kbps: round(*kbps, 1),
                    offered_kbps: w.map_or(0.0, |w| round(w.offered_kbps, 1)),
                    queue_delay_p95_ms: w.and_then(|w| w.queue_delay_p95_ms),
                }
            })
            .collect(),
    }
}

/// The received media rate of all viewers per [`BIN`] of scenario time: (bin end, kbit/s).
fn bin_rates(
    viewers: &[ViewerInput],
    warmup: Duration,
    duration: Duration,
) -> Vec<(Duration, f64)> {
    let n = (duration.as_secs_f64() / BIN.as_secs_f64()).floor() as usize;
    let mut bytes = vec![0u64; n];
    for v in viewers {
        for (at, len) in &v.timeline.media_bytes {
            let Some(t) = at.checked_sub(warmup) else {
                continue;
            };
            let i = (t.as_secs_f64() / BIN.as_secs_f64()) as usize;
            if let Some(b) = bytes.get_mut(i) {
                *b += u64::from(*len);
            }
        }
    }
    bytes
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            let end = BIN * (i as u32 + 1);
            (end, b as f64 * 8.0 / BIN.as_secs_f64() / 1e3)
        })
        .collect()
}

/// When the rate settled in a segment starting at `start` and its utilization from then on.
fn settle(
    bins: &[(Duration, f64)],
    start: Duration,
    capacity_kbps: u32,
) -> (Duration, Option<f64>) {
    let Some(last) = bins.last() else {
        return (start, None);
    };
    let half = start + (last.0 - start) / 2;
    let steady = mean(bins.iter().filter(|(end, _)| *end > half).map(|b| b.1));
    // Nothing arriving is not a converged rate: reconvergence is the whole segment.
    if steady <= 0.0 {
        return (last.0, Some(0.0));
    }
    let settled_at = bins
        .iter()
        .filter(|(_, kbps)| (kbps - steady).abs() > BAND * steady)
        .map(|(end, _)| *end)
        .next_back()
        .unwrap_or(start);
    let after = settled_bins(bins, settled_at);
    let count = after.clone().count();
    let utilization = (count > 0 && capacity_kbps > 0)
        .then(|| mean(after.map(|b| b.1)) / f64::from(capacity_kbps));
    (settled_at, utilization)
}

/// The bins from `settled_at` on.
fn settled_bins(
    bins: &[(Duration, f64)],
    settled_at: Duration,
) -> impl Iterator<Item = &(Duration, f64)> + Clone {
    bins.iter()
        .filter(move |(end, _)| *end > settled_at + BIN / 2)
}

/// The index of the bin (and of the line's one-second window) that ends at `end`.
fn bin_index(end: Duration) -> usize {
    ((end.as_secs_f64() / BIN.as_secs_f64()).round() as usize).saturating_sub(1)
}

/// One viewer over `span` (epoch time).
fn viewer_segment(v: &ViewerInput, span: Range<Duration>) -> ViewerSegment {
    let seconds = (span.end - span.start).as_secs_f64().max(f64::EPSILON);
    let inside = |at: &Duration| span.contains(at);
    let bytes: u64 = v
        .timeline
        .media_bytes
        .iter()
        .filter(|(at, _)| inside(at))
        .map(|(_, b)| u64::from(*b))
        .sum();
    let frames: Vec<_> = v.timeline.frames.iter().filter(|f| inside(&f.at)).collect();
    let mut heights: Vec<u32> = frames.iter().map(|f| f.height).collect();
    heights.sort_unstable();
    // Height changes, counting from the last frame before the segment.
    let mut previous = v
        .timeline
        .frames
        .iter()
        .rev()
        .find(|f| f.at < span.start)
        .map(|f| f.height);
    let mut switches = 0;
    for f in &frames {
        if previous.is_some_and(|h| h != f.height) {
            switches += 1;
        }
        previous = Some(f.height);
    }
    // Reported changes that keep the height: temporal layers, and pauses (a resume counts only
    // through the height it brings, if that differs).
    let spatial = |l: &Option<String>| {
        l.as_deref()
            .map(|l| l.split('/').next().unwrap_or(l).to_string())
    };
    let mut layer = layer_at(&v.layers, span.start);
    for (_, next) in v.layers.iter().filter(|(at, _)| inside(at)) {
        let temporal = layer.is_some() && spatial(next) == spatial(&layer);
        if next != &layer && (temporal || next.is_none()) {
            switches += 1;
        }
        layer = next.clone();
    }
    ViewerSegment {
        received_kbps: round(bytes as f64 * 8.0 / seconds / 1e3, 1),
        fps: round(frames.len() as f64 / seconds, 1),
        height: heights.get(heights.len() / 2).copied().unwrap_or(0),
        freezes: frames.iter().filter(|f| f.after_freeze).count() as u64,
        switches_per_min: round(f64::from(switches) / seconds * 60.0, 1),
        layer_share: layer_share(&v.layers, &span),
    }
}

/// The layer in force at `at` (`None` before the first report).
fn layer_at(layers: &[(Duration, Option<String>)], at: Duration) -> Option<String> {
    layers
        .iter()
        .rev()
        .find(|(t, _)| *t <= at)
        .and_then(|(_, l)| l.clone())
}

/// The share of `span` spent on each layer.
fn layer_share(
    layers: &[(Duration, Option<String>)],
    span: &Range<Duration>,
) -> BTreeMap<String, f64> {
    let total = (span.end - span.start).as_secs_f64();
    let mut share = BTreeMap::new();
    if total <= 0.0 {
        return share;
    }
    let mut current = (span.start, layer_at(layers, span.start));
    let changes = layers
        .iter()
        .filter(|(at, _)| span.contains(at) && *at > span.start)
        .cloned()
        .chain(std::iter::once((span.end, None)));
    for (at, next) in changes {
        let name = current.1.clone().unwrap_or_else(|| "paused".into());
        *share.entry(name).or_insert(0.0) += (at - current.0).as_secs_f64() / total;
        current = (at, next);
    }
    share.values_mut().for_each(|v| *v = round(*v, 3));
    share
}

fn shift(span: &Range<Duration>, by: Duration) -> Range<Duration> {
    span.start + by..span.end + by
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// The nearest-rank percentile (as the link emulator's queue delays).
fn percentile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (q * v.len() as f64).ceil() as usize;
    v.get(rank.max(1) - 1).copied()
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::FrameEvent;

    const WARMUP: Duration = Duration::from_secs(10);

    /// Two steps: 1000 kbit/s for 20 s, then 500 kbit/s for 20 s.
    fn scenario() -> Scenario {
        let mut s = Scenario::named("rmcat-5.1").unwrap();
        s.duration = Duration::from_secs(40);
        s.steps = vec![(Duration::ZERO, 1000), (Duration::from_secs(20), 500)];
        s
    }

    /// Media every 20 ms at `kbps(t)` (scenario seconds), frames at 30 fps of `height(t)`.
    fn viewer(kbps: impl Fn(f64) -> f64, height: impl Fn(f64) -> u32) -> ViewerInput {
        let mut timeline = Timeline::default();
        for i in 0..(50 * 40) {
            let t = i as f64 * 0.02;
            let bytes = kbps(t) * 1e3 / 8.0 * 0.02;
            timeline.on_media(WARMUP + Duration::from_secs_f64(t), bytes.round() as usize);
        }
        for i in 0..(30 * 40) {
            let t = i as f64 / 30.0;
            timeline.on_frame(FrameEvent {
                at: WARMUP + Duration::from_secs_f64(t),
                height: height(t),
                after_freeze: false,
            });
        }
        timeline.video_frames = 990;
        timeline.video_frames_lost = 10;
        ViewerInput {
            participant_id: "p2".into(),
            timeline,
            ..ViewerInput::default()
        }
    }

    /// The line's window of scenario second `i`: offered 500 + i kbit/s, `delivered(i)` delivered.
    fn second(i: u32, delivered: impl Fn(u32) -> f64) -> WindowSummary {
        WindowSummary {
            start_s: f64::from(i),
            end_s: f64::from(i + 1),
            capacity_kbps: Some(1000.0),
            offered_kbps: f64::from(500 + i),
            delivered_kbps: delivered(i),
            lost_packets: 0,
            overflow_packets: 0,
            queue_delay_p50_ms: Some(1.0),
            queue_delay_p95_ms: Some(5.0),
            queue_delay_p99_ms: Some(9.0),
        }
    }

    #[test]
    fn utilization_and_reconvergence_follow_the_definitions() {
        // 900 kbit/s, then after the step 1200 for 3 s (overshoot) and 450 from then on.
        let v = viewer(
            |t| match t {
                t if t < 20.0 => 900.0,
                t if t < 23.0 => 1200.0,
                _ => 450.0,
            },
            |_| 360,
        );
        // The line delivers the media and a tenth more; far more while the queue drains.
        let line = LineInput {
            segments: vec![],
            seconds: (0..40)
                .map(|i| {
                    second(i, |i| match i {
                        0..20 => 990.0,
                        20..23 => 1500.0,
                        _ => 495.0,
                    })
                })
                .collect(),
        };
        let r = analyse(&scenario(), WARMUP, &[v], &line);
        assert_eq!(r.segments.len(), 2);
        assert_eq!(r.segments[0].utilization, Some(0.9));
        assert_eq!(r.segments[1].utilization, Some(0.9));
        assert_eq!(r.reconvergence_s, vec![3.0]);
        // Over the same seconds as utilization: the drain before reconvergence is left out.
        assert_eq!(r.segments[0].line_utilization, Some(0.99));
        assert_eq!(r.segments[1].line_utilization, Some(0.99));
        assert_eq!(r.segments[1].fps, 30.0);
        assert_eq!(r.segments[1].height, 360);
        assert_eq!(r.segments[1].switches_per_min, 0.0);
        assert_eq!(r.video_loss_after_repair_pct, 1.0);
        assert_eq!(r.series.len(), 40);
        assert!((r.series[0].received_kbps - 900.0).abs() < 1.0);
    }

    #[test]
    fn a_rate_still_moving_at_the_end_never_settled() {
        let v = viewer(|t| if t < 20.0 { 900.0 } else { 100.0 + 20.0 * t }, |_| 360);
        let line = LineInput {
            segments: vec![],
            seconds: (0..40).map(|i| second(i, |_| 500.0)).collect(),
        };
        let r = analyse(&scenario(), WARMUP, &[v], &line);
        assert_eq!(r.segments[1].utilization, None);
        assert_eq!(r.segments[1].line_utilization, None);
        assert_eq!(r.reconvergence_s, vec![20.0]);
    }

    #[test]
    fn switches_count_height_changes_and_height_keeping_layer_changes() {
        // Height 180 → 360 at 5 s and back at 12 s: two switches in the first segment.
        let mut v = viewer(
            |_| 500.0,
            |t| if (5.0..12.0).contains(&t) { 360 } else { 180 },
        );
        // The relay reports q/t2 → h/t2 (a spatial change: counted by the height, not again),
        // h/t2 → h/t1 (temporal: counted), h/t1 → paused (counted).
        let at = |s: u64| WARMUP + Duration::from_secs(s);
        v.layers = vec![
            (at(0), Some("q/t2".into())),
            (at(5), Some("h/t2".into())),
            (at(8), Some("h/t1".into())),
            (at(25), None),
        ];
        let r = analyse(&scenario(), WARMUP, &[v], &LineInput::default());
        // 3 switches in 20 s.
        assert_eq!(r.segments[0].switches_per_min, 9.0);
        // Second segment: the pause only.
        assert_eq!(r.segments[1].switches_per_min, 3.0);
        let share = &r.viewers[0].segments[0].layer_share;
        assert_eq!(share["q/t2"], 0.25);
        assert_eq!(share["h/t2"], 0.15);
        assert_eq!(share["h/t1"], 0.6);
        assert_eq!(r.viewers[0].segments[1].layer_share["paused"], 0.75);
    }

    #[test]
    fn a_pause_and_a_resume_on_another_layer_are_two_switches_and_silence_never_settles() {
        // 180p until 5 s, paused until 10 s, then 360p: the pause, and the height change.
        let mut v = viewer(|_| 500.0, |t| if t < 5.0 { 180 } else { 360 });
        v.timeline.frames.retain(|f| {
            !(WARMUP + Duration::from_secs(5)..WARMUP + Duration::from_secs(10)).contains(&f.at)
        });
        let at = |s: u64| WARMUP + Duration::from_secs(s);
        v.layers = vec![
            (at(0), Some("q/t2".into())),
            (at(5), None),
            (at(10), Some("h/t2".into())),
        ];
        // Nothing at all arrives in the second segment.
        v.timeline.media_bytes.retain(|(t, _)| *t < at(20));
        let r = analyse(&scenario(), WARMUP, &[v], &LineInput::default());
        assert_eq!(r.segments[0].switches_per_min, 6.0);
        assert_eq!(r.segments[1].utilization, Some(0.0));
        assert_eq!(r.reconvergence_s, vec![20.0]);
    }

    #[test]
    fn the_worst_viewer_and_the_line_are_reported() {
        let good = viewer(|_| 300.0, |_| 360);
        let mut poor = viewer(|_| 200.0, |_| 180);
        poor.timeline.frames.retain(|f| f.at.as_millis() % 100 < 50);
        poor.timeline.frames[40].after_freeze = true;
        let segment = WindowSummary {
            lost_packets: 3,
            overflow_packets: 7,
            queue_delay_p95_ms: Some(40.0),
            ..second(0, |_| 500.0)
        };
        let line = LineInput {
            segments: vec![segment],
            seconds: (0..40).map(|i| second(i, |_| 500.0)).collect(),
        };
        let r = analyse(&scenario(), WARMUP, &[good, poor], &line);
        assert_eq!(r.segments[0].queue_delay_p95_ms, Some(40.0));
        assert_eq!(r.segments[0].line_lost_packets, 3);
        assert_eq!(r.segments[0].line_overflow_packets, 7);
        assert_eq!(r.segments[1].line_overflow_packets, 0, "no window for it");
        assert_eq!(r.segments[0].utilization, Some(0.5));
        assert_eq!(r.segments[0].line_utilization, Some(0.5));
        assert_eq!(r.segments[0].height, 180);
        assert_eq!(r.segments[0].fps, 20.0);
        assert_eq!(r.segments[0].freezes, 1);
        assert_eq!(r.line_offered_max_kbps, Some(539.0));
        assert_eq!(r.line_offered_p95_kbps, Some(537.0));
        assert_eq!(r.series[3].queue_delay_p95_ms, Some(5.0));
        assert_eq!(r.viewers.len(), 2);
    }
}
