//! What a viewer experiences, from the times at which decoded frames could be shown: frame rate,
//! freezes, and the counters a (planned) `loadtest bwe` report carries ([`MediaCounters`]).
//!
//! A *freeze* is a gap between two shown frames longer than
//! max(3 × the average frame interval, the average + 150 ms), the average being that of the last
//! 30 intervals, and judged once five are known (WebRTC's definition, `VideoQualityObserver`).

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

use super::opus_audio::AudioStats;
use super::vp8_decoder::DecoderStats;

/// Intervals in the running average.
const WINDOW: usize = 30;
/// Intervals needed before a freeze can be judged.
const MIN_INTERVALS: usize = 5;
/// The least a freeze exceeds the average interval by.
const FREEZE_MARGIN: Duration = Duration::from_millis(150);

/// Frame times of one received video track.
#[derive(Debug, Clone, Default)]
pub struct PlayoutStats {
    first: Option<Duration>,
    last: Option<Duration>,
    frames: u64,
    intervals: VecDeque<Duration>,
    freezes: u64,
    freeze_time: Duration,
    height: u32,
}

impl PlayoutStats {
    /// No frames yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoded frame of `height` lines could be shown at `at`; returns whether the gap before it
    /// was a freeze. Times must not go backwards (a backward step counts as no gap).
    pub fn on_frame(&mut self, at: Duration, height: u32) -> bool {
        self.frames += 1;
        self.height = height;
        self.first.get_or_insert(at);
        let Some(last) = self.last.replace(at) else {
            return false;
        };
        let interval = at.saturating_sub(last);
        let mut freeze = false;
        if self.intervals.len() >= MIN_INTERVALS {
            let average = self.intervals.iter().sum::<Duration>() / self.intervals.len() as u32;
            if interval > (average * 3).max(average + FREEZE_MARGIN) {
                freeze = true;
                self.freezes += 1;
                self.freeze_time += interval;
            }
        }
        if self.intervals.len() == WINDOW {
            self.intervals.pop_front();
        }
        self.intervals.push_back(interval);
        freeze
    }

    /// Frames shown.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Frames per second between the first and the last frame (0 with fewer than two).
    pub fn fps(&self) -> f64 {
        match (self.first, self.last) {
            (Some(first), Some(last)) if last > first => {
                (self.frames - 1) as f64 / (last - first).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    /// Freezes so far.
    pub fn freezes(&self) -> u64 {
        self.freezes
    }

    /// The summed length of the gaps that were freezes.
    pub fn freeze_time(&self) -> Duration {
        self.freeze_time
    }

    /// Height of the last shown frame (0 before the first).
    pub fn height(&self) -> u32 {
        self.height
    }
}

/// The receive-side counters of one subscriber, as the (planned) `loadtest bwe` JSON will report them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MediaCounters {
    /// Shown frames per second.
    pub fps: f64,
    /// Height of the last shown frame.
    pub height: u32,
    /// Video freezes.
    pub freezes: u64,
    /// Video frames that could not be decoded.
    pub undecodable_frames: u64,
    /// Audio arrivals more than 60 ms after the previous one.
    pub audio_gaps_over_60ms: u64,
}

impl MediaCounters {
    /// Gathers the counters of one subscriber's video playout, video decoder and audio receiver.
    pub fn collect(playout: &PlayoutStats, video: &DecoderStats, audio: &AudioStats) -> Self {
        MediaCounters {
            fps: playout.fps(),
            height: playout.height(),
            freezes: playout.freezes(),
            undecodable_frames: video.undecodable_frames,
            audio_gaps_over_60ms: audio.gaps_over_60ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// Frames every `step` ms from `start` (inclusive) to `end` (exclusive).
    fn feed(stats: &mut PlayoutStats, start: u64, end: u64, step: u64) -> u64 {
        (start..end)
            .step_by(step as usize)
            .filter(|&t| stats.on_frame(ms(t), 360))
            .count() as u64
    }

    #[test]
    fn steady_30_fps_has_no_freeze() {
        let mut s = PlayoutStats::new();
        assert_eq!(feed(&mut s, 0, 10_000, 33), 0);
        assert!((s.fps() - 1000.0 / 33.0).abs() < 0.1, "{}", s.fps());
        assert_eq!(s.height(), 360);
    }

    #[test]
    fn a_gap_is_a_freeze_only_past_the_threshold() {
        // At 30 fps (33 ms) the threshold is max(99, 183) = 183 ms.
        let mut s = PlayoutStats::new();
        feed(&mut s, 0, 991, 33);
        assert!(
            !s.on_frame(ms(990 + 150), 360),
            "150 ms after 33 ms frames is no freeze"
        );
        let mut s = PlayoutStats::new();
        feed(&mut s, 0, 991, 33);
        assert!(s.on_frame(ms(990 + 200), 360), "200 ms is a freeze");
        assert_eq!((s.freezes(), s.freeze_time()), (1, ms(200)));
    }

    #[test]
    fn slow_video_uses_three_intervals() {
        // At 5 fps (200 ms) the threshold is max(600, 350) = 600 ms.
        let mut s = PlayoutStats::new();
        feed(&mut s, 0, 2_000, 200);
        assert!(!s.on_frame(ms(1_800 + 550), 180));
        let mut s = PlayoutStats::new();
        feed(&mut s, 0, 2_000, 200);
        assert!(s.on_frame(ms(1_800 + 650), 180));
    }

    #[test]
    fn no_freeze_is_judged_before_five_intervals() {
        let mut s = PlayoutStats::new();
        for t in [0, 33, 66, 99, 1_000] {
            assert!(!s.on_frame(ms(t), 720));
        }
        assert_eq!(s.freezes(), 0);
    }

    #[test]
    fn counters_serialise_under_the_report_names() {
        let mut playout = PlayoutStats::new();
        feed(&mut playout, 0, 1_000, 100);
        let video = DecoderStats {
            undecodable_frames: 3,
            ..DecoderStats::default()
        };
        let audio = AudioStats {
            gaps_over_60ms: 2,
            ..AudioStats::default()
        };
        let json = serde_json::to_value(MediaCounters::collect(&playout, &video, &audio)).unwrap();
        assert_eq!(json["fps"], 10.0);
        assert_eq!(json["height"], 360);
        assert_eq!(json["freezes"], 0);
        assert_eq!(json["undecodable_frames"], 3);
        assert_eq!(json["audio_gaps_over_60ms"], 2);
    }
}
