//! Video frames lost for good, counted by a receiver that has no picture ids.
//!
//! The bots' VP8 carries no picture ids: str0m's packetizer, in the frame mode the bots write in,
//! leaves them out, so the relay has none to forward either. What a receiver does see is that
//! every frame has an RTP timestamp of its own, and that str0m flags the first complete frame after
//! a gap in sequence numbers it could not get repaired (`MediaData::contiguous`). The frames lost
//! in such a gap are the frame intervals its timestamp step spans, less the one that arrived; the
//! frame interval is the median step between frames that followed each other without a gap (a
//! median, so that a frame the encoder skipped or a timestamp jump at a layer switch does not
//! move it).

use std::collections::VecDeque;

/// Steps between gap-free frames kept for the frame interval (about a second at 30 fps).
const INTERVALS: usize = 31;

/// The frames of one received video stream: those that arrived complete and those lost.
#[derive(Debug, Clone, Default)]
pub struct FrameLoss {
    arrived: u64,
    lost: u64,
    /// RTP timestamp (extended) of the last frame.
    last: Option<u64>,
    /// Timestamp steps between the last gap-free frames.
    intervals: VecDeque<u64>,
}

impl FrameLoss {
    /// A complete frame arrived with this RTP timestamp; `contiguous`: no sequence number is
    /// missing between it and the frame before.
    pub fn on_frame(&mut self, timestamp: u64, contiguous: bool) {
        self.arrived += 1;
        let step = self
            .last
            .filter(|last| timestamp > *last)
            .map(|last| timestamp - last);
        self.last = Some(self.last.map_or(timestamp, |last| last.max(timestamp)));
        let Some(step) = step else {
            return;
        };
        if contiguous {
            if self.intervals.len() == INTERVALS {
                self.intervals.pop_front();
            }
            self.intervals.push_back(step);
        } else if let Some(interval) = self.interval() {
            let spanned = (step as f64 / interval as f64).round() as u64;
            self.lost += spanned.saturating_sub(1);
        }
    }

    /// Frames that arrived complete.
    pub fn arrived(&self) -> u64 {
        self.arrived
    }

    /// Frames lost for good (none counted before the frame interval is known).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// The median timestamp step between gap-free frames.
    fn interval(&self) -> Option<u64> {
        let mut steps: Vec<u64> = self.intervals.iter().copied().collect();
        steps.sort_unstable();
        steps.get(steps.len() / 2).copied().filter(|i| *i > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 30 fps at 90 kHz.
    const STEP: u64 = 3000;

    #[test]
    fn a_gap_free_stream_loses_nothing() {
        let mut f = FrameLoss::default();
        for i in 0..100 {
            f.on_frame(i * STEP, true);
        }
        assert_eq!((f.arrived(), f.lost()), (100, 0));
    }

    #[test]
    fn the_frames_a_gap_spans_are_lost() {
        let mut f = FrameLoss::default();
        for i in 0..40 {
            f.on_frame(i * STEP, true);
        }
        // Frames 40 and 41 never arrive; 42 comes after the gap.
        f.on_frame(42 * STEP, false);
        for i in 43..50 {
            f.on_frame(i * STEP, true);
        }
        assert_eq!((f.arrived(), f.lost()), (48, 2));
    }

    #[test]
    fn a_gap_without_a_missing_timestamp_loses_no_frame() {
        // A lost packet that belonged to no frame (padding on the media stream): the next frame
        // is flagged, but it is the very next one.
        let mut f = FrameLoss::default();
        for i in 0..40 {
            f.on_frame(i * STEP, true);
        }
        f.on_frame(40 * STEP, false);
        assert_eq!(f.lost(), 0);
    }

    #[test]
    fn skipped_frames_and_layer_switches_do_not_move_the_interval() {
        let mut f = FrameLoss::default();
        let mut t = 0;
        for i in 0..40 {
            // Every tenth frame the encoder fell behind and skipped one; a layer switch once
            // shifted the timestamps by a few ticks.
            t += if i % 10 == 9 { 2 * STEP } else { STEP };
            t += if i == 25 { 7 } else { 0 };
            f.on_frame(t, true);
        }
        // Three frames lost.
        f.on_frame(t + 4 * STEP, false);
        assert_eq!(f.lost(), 3);
    }

    #[test]
    fn nothing_is_counted_before_the_interval_is_known_or_for_an_older_timestamp() {
        let mut f = FrameLoss::default();
        f.on_frame(5 * STEP, false);
        f.on_frame(9 * STEP, false);
        assert_eq!(f.lost(), 0);
        f.on_frame(10 * STEP, true);
        f.on_frame(11 * STEP, true);
        // Out of order: no step, no loss, and the last timestamp stays the newest.
        f.on_frame(3 * STEP, false);
        f.on_frame(14 * STEP, false);
        assert_eq!((f.arrived(), f.lost()), (6, 2));
    }
}
