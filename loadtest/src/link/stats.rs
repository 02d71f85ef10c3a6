//! What a link did: counters, queue delay distributions and a time series in fixed intervals.
//!
//! Memory grows with the run's length, not with its packet rate: each interval keeps a sparse
//! histogram of queue delays (log-linear classes, exact below 128 µs and within 0.8 % above), so
//! percentiles over any window of whole intervals can be computed after the fact.

use std::{ops::Range, time::Duration};

use serde::Serialize;

use super::capacity::Service;

/// Classes below this are one microsecond wide; above, each power of two is split in
/// `SUB_CLASSES` classes.
const SUB_CLASSES: u64 = 64;
const EXACT_BELOW: u64 = 2 * SUB_CLASSES;

/// A distribution of durations with microsecond resolution and bounded relative error.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    count: u64,
    sum_us: u64,
    max_us: u64,
    /// (class, count), sorted by class.
    classes: Vec<(u16, u32)>,
}

impl Histogram {
    /// Adds one sample.
    pub fn record(&mut self, value: Duration) {
        let us = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.max_us = self.max_us.max(us);
        self.add(class_of(us), 1);
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        self.count += other.count;
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        self.max_us = self.max_us.max(other.max_us);
        for &(class, n) in &other.classes {
            self.add(class, n);
        }
    }

    fn add(&mut self, class: u16, n: u32) {
        match self.classes.binary_search_by_key(&class, |&(c, _)| c) {
            Ok(i) => self.classes[i].1 = self.classes[i].1.saturating_add(n),
            Err(i) => self.classes.insert(i, (class, n)),
        }
    }

    /// The number of samples.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The mean; `None` without samples.
    pub fn mean(&self) -> Option<Duration> {
        (self.count > 0).then(|| {
            let ns = u128::from(self.sum_us) * 1000 / u128::from(self.count);
            Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
        })
    }

    /// The largest sample (exact); `None` without samples.
    pub fn max(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_micros(self.max_us))
    }

    /// The `p`-th percentile (0–100) by nearest rank: the smallest sample that at least `p` % of
    /// the samples do not exceed, to the histogram's resolution. `None` without samples.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let rank = ((p.clamp(0.0, 100.0) / 100.0 * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for &(class, n) in &self.classes {
            seen += u64::from(n);
            if seen >= rank {
                let (low, high) = class_bounds(class);
                return Some(Duration::from_micros(
                    (low + (high - low) / 2).min(self.max_us),
                ));
            }
        }
        self.max()
    }
}

fn class_of(us: u64) -> u16 {
    if us < EXACT_BELOW {
        return us as u16;
    }
    let shift = u64::from(63 - us.leading_zeros()) - SUB_CLASSES.trailing_zeros() as u64;
    (shift * SUB_CLASSES + (us >> shift)) as u16
}

/// The smallest and largest microsecond values of a class.
fn class_bounds(class: u16) -> (u64, u64) {
    let class = u64::from(class);
    if class < EXACT_BELOW {
        return (class, class);
    }
    let shift = class / SUB_CLASSES - 1;
    let mantissa = class - shift * SUB_CLASSES;
    let low = mantissa << shift;
    (low, low + ((1 << shift) - 1))
}

/// Totals over the whole run. Every packet in is eventually delivered, lost, dropped by the
/// queue, or still in flight when the run stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Packets offered to the link.
    pub packets_in: u64,
    /// Bytes offered to the link.
    pub bytes_in: u64,
    /// Packets that came out.
    pub packets_delivered: u64,
    /// Bytes that came out.
    pub bytes_delivered: u64,
    /// Packets dropped by random or burst loss.
    pub packets_lost: u64,
    /// Bytes dropped by random or burst loss.
    pub bytes_lost: u64,
    /// Packets dropped because the queue was full.
    pub packets_overflow: u64,
    /// Bytes dropped because the queue was full.
    pub bytes_overflow: u64,
}

/// One interval of the time series. Arrivals and drops count at their arrival time, deliveries
/// and queue delays at the time the packet left the bottleneck (before propagation delay), so
/// delivered bytes line up with the capacity.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Interval {
    /// Start of the interval, since the link started.
    pub start: Duration,
    /// The interval's length.
    pub length: Duration,
    /// The bottleneck's capacity averaged over the interval, bit/s; `None` when unlimited.
    pub capacity_bps: Option<u64>,
    /// Bytes offered.
    pub offered_bytes: u64,
    /// Packets that left the bottleneck (and were later delivered).
    pub delivered_packets: u64,
    /// Their bytes.
    pub delivered_bytes: u64,
    /// Packets lost to random or burst loss.
    pub lost_packets: u64,
    /// Packets dropped by the full queue.
    pub overflow_packets: u64,
    /// Queue delays of the packets that left the bottleneck.
    pub queue_delay: Histogram,
}

impl Interval {
    /// The delivered rate over the interval, bit/s.
    pub fn delivered_bps(&self) -> u64 {
        (self.delivered_bytes as f64 * 8.0 / self.length.as_secs_f64()) as u64
    }
}

/// Counters, queue delays and the time series of one link.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkStats {
    resolution: Duration,
    counters: Counters,
    intervals: Vec<Interval>,
}

impl LinkStats {
    pub(crate) fn new(resolution: Duration) -> Self {
        LinkStats {
            resolution,
            counters: Counters::default(),
            intervals: Vec::new(),
        }
    }

    /// The totals.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The time series, from time 0 in steps of [`LinkStats::resolution`], up to the last
    /// event (or the time the link was finished at).
    pub fn intervals(&self) -> &[Interval] {
        &self.intervals
    }

    /// The length of one interval.
    pub fn resolution(&self) -> Duration {
        self.resolution
    }

    /// The time the series covers.
    pub fn duration(&self) -> Duration {
        self.resolution * self.intervals.len() as u32
    }

    /// The intervals that start within `window`.
    pub fn window(&self, window: Range<Duration>) -> impl Iterator<Item = &Interval> {
        self.intervals
            .iter()
            .filter(move |i| window.contains(&i.start))
    }

    /// The queue delays of the packets that left the bottleneck in the intervals starting within
    /// `window`; query [`Histogram::percentile`] on it.
    pub fn queue_delay(&self, window: Range<Duration>) -> Histogram {
        let mut all = Histogram::default();
        for interval in self.window(window) {
            all.merge(&interval.queue_delay);
        }
        all
    }

    /// The bytes that left the bottleneck in the intervals starting within `window`.
    pub fn delivered_bytes(&self, window: Range<Duration>) -> u64 {
        self.window(window).map(|i| i.delivered_bytes).sum()
    }

    /// Totals, delivered rate and queue delay percentiles over the whole run.
    pub fn summary(&self) -> DirectionSummary {
        let delays = self.queue_delay(Duration::ZERO..Duration::MAX);
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e3);
        let seconds = self.duration().as_secs_f64();
        DirectionSummary {
            counters: self.counters,
            delivered_kbps: if seconds > 0.0 {
                self.counters.bytes_delivered as f64 * 8.0 / seconds / 1e3
            } else {
                0.0
            },
            queue_delay_p50_ms: ms(delays.percentile(50.0)),
            queue_delay_p95_ms: ms(delays.percentile(95.0)),
            queue_delay_p99_ms: ms(delays.percentile(99.0)),
            queue_delay_max_ms: ms(delays.max()),
            queue_delay_mean_ms: ms(delays.mean()),
            windows: Vec::new(),
        }
    }

    /// What the link did over `window` (whole intervals whose start lies in it).
    pub fn window_summary(&self, window: Range<Duration>) -> WindowSummary {
        let intervals: Vec<&Interval> = self.window(window.clone()).collect();
        let seconds = intervals
            .iter()
            .map(|i| i.length.as_secs_f64())
            .sum::<f64>();
        let per_s = |bytes: u64| {
            if seconds > 0.0 {
                bytes as f64 * 8.0 / seconds / 1e3
            } else {
                0.0
            }
        };
        // Capacity: the time-weighted mean over the intervals with a limit (none: unlimited).
        let (bit_ns, limited_ns) = intervals
            .iter()
            .filter_map(|i| Some((i.capacity_bps?, i.length.as_nanos())))
            .fold((0u128, 0u128), |(b, t), (bps, ns)| {
                (b + u128::from(bps) * ns, t + ns)
            });
        let mut delays = Histogram::default();
        for i in &intervals {
            delays.merge(&i.queue_delay);
        }
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e3);
        WindowSummary {
            start_s: window.start.as_secs_f64(),
            end_s: window.end.as_secs_f64(),
            capacity_kbps: (limited_ns > 0).then(|| (bit_ns / limited_ns) as f64 / 1e3),
            offered_kbps: per_s(intervals.iter().map(|i| i.offered_bytes).sum()),
            delivered_kbps: per_s(intervals.iter().map(|i| i.delivered_bytes).sum()),
            lost_packets: intervals.iter().map(|i| i.lost_packets).sum(),
            overflow_packets: intervals.iter().map(|i| i.overflow_packets).sum(),
            queue_delay_p50_ms: ms(delays.percentile(50.0)),
            queue_delay_p95_ms: ms(delays.percentile(95.0)),
            queue_delay_p99_ms: ms(delays.percentile(99.0)),
        }
    }

    pub(crate) fn record_arrival(&mut self, at: Duration, len: usize, service: &Service) {
        self.counters.packets_in += 1;
        self.counters.bytes_in += len as u64;
        self.interval_at(at, service).offered_bytes += len as u64;
    }

    pub(crate) fn record_loss(&mut self, at: Duration, len: usize, service: &Service) {
        self.counters.packets_lost += 1;
        self.counters.bytes_lost += len as u64;
        self.interval_at(at, service).lost_packets += 1;
    }

    pub(crate) fn record_overflow(&mut self, at: Duration, len: usize, service: &Service) {
        self.counters.packets_overflow += 1;
        self.counters.bytes_overflow += len as u64;
        self.interval_at(at, service).overflow_packets += 1;
    }

    pub(crate) fn record_delivery(
        &mut self,
        departed: Duration,
        len: usize,
        queue_delay: Duration,
        service: &Service,
    ) {
        self.counters.packets_delivered += 1;
        self.counters.bytes_delivered += len as u64;
        let interval = self.interval_at(departed, service);
        interval.delivered_packets += 1;
        interval.delivered_bytes += len as u64;
        interval.queue_delay.record(queue_delay);
    }

    /// Adds empty intervals up to the one that holds the instant just before `until`.
    pub(crate) fn extend_to(&mut self, until: Duration, service: &Service) {
        if !until.is_zero() {
            self.interval_at(until - Duration::from_nanos(1), service);
        }
    }

    fn interval_at(&mut self, t: Duration, service: &Service) -> &mut Interval {
        let index = (t.as_nanos() / self.resolution.as_nanos()) as usize;
        while self.intervals.len() <= index {
            let start = self.resolution * self.intervals.len() as u32;
            let end = start + self.resolution;
            let capacity_bps = service
                .capacity_bits(start, end)
                .map(|bits| (bits as f64 / self.resolution.as_secs_f64()) as u64);
            self.intervals.push(Interval {
                start,
                length: self.resolution,
                capacity_bps,
                ..Interval::default()
            });
        }
        &mut self.intervals[index]
    }
}

/// One window of a direction's time series (`loadtest link --windows`): what the bottleneck carried
/// and the queue delays of the packets that left it in the window. Delays are `null` when no packet
/// left it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WindowSummary {
    /// Start, s since the link started.
    pub start_s: f64,
    /// End, s.
    pub end_s: f64,
    /// Mean capacity over the window, kbit/s; `null` when unlimited.
    pub capacity_kbps: Option<f64>,
    /// Bytes offered over the window, kbit/s.
    pub offered_kbps: f64,
    /// Bytes delivered over the window, kbit/s.
    pub delivered_kbps: f64,
    /// Packets lost to random or burst loss.
    pub lost_packets: u64,
    /// Packets dropped by the full queue.
    pub overflow_packets: u64,
    /// Median queue delay, ms.
    pub queue_delay_p50_ms: Option<f64>,
    /// 95th percentile, ms.
    pub queue_delay_p95_ms: Option<f64>,
    /// 99th percentile, ms.
    pub queue_delay_p99_ms: Option<f64>,
}

/// One direction's totals, delivered rate and queue delay percentiles, as printed by
/// `loadtest link --json`. Delays are `null` when no packet was delivered.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DirectionSummary {
    /// The totals.
    #[serde(flatten)]
    pub counters: Counters,
    /// Delivered bytes over the run's duration, kbit/s.
    pub delivered_kbps: f64,
    /// Median queue delay, ms.
    pub queue_delay_p50_ms: Option<f64>,
    /// 95th percentile queue delay, ms.
    pub queue_delay_p95_ms: Option<f64>,
    /// 99th percentile queue delay, ms.
    pub queue_delay_p99_ms: Option<f64>,
    /// Largest queue delay, ms.
    pub queue_delay_max_ms: Option<f64>,
    /// Mean queue delay, ms.
    pub queue_delay_mean_ms: Option<f64>,
    /// The windows asked for (`loadtest link --windows`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<WindowSummary>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_contiguous_and_bounded() {
        let mut previous = 0;
        for us in 1..1_000_000u64 {
            let class = class_of(us);
            assert!(class == previous || class == previous + 1, "{us}");
            let (low, high) = class_bounds(class);
            assert!(low <= us && us <= high, "{us} in {low}..={high}");
            assert!((high - low) as f64 <= us as f64 / 64.0, "{us}");
            previous = class;
        }
        assert_eq!(class_bounds(class_of(u64::MAX)).1, u64::MAX);
    }

    #[test]
    fn percentiles_of_crafted_samples() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile(50.0), None);
        // 1..=100 µs: exact classes, so nearest-rank percentiles are exact.
        for us in (1..=100).rev() {
            h.record(Duration::from_micros(us));
        }
        let p = |h: &Histogram, p| h.percentile(p).unwrap().as_micros();
        assert_eq!(
            (
                p(&h, 50.0),
                p(&h, 95.0),
                p(&h, 99.0),
                p(&h, 100.0),
                p(&h, 0.0)
            ),
            (50, 95, 99, 100, 1)
        );
        assert_eq!(h.mean(), Some(Duration::from_nanos(50_500)));

        // 1..=1000 ms: within the 0.8 % class width.
        let mut h = Histogram::default();
        for ms in 1..=1000 {
            h.record(Duration::from_millis(ms));
        }
        for (q, want_ms) in [(50.0, 500.0), (95.0, 950.0), (99.0, 990.0)] {
            let got = h.percentile(q).unwrap().as_secs_f64() * 1e3;
            assert!((got - want_ms).abs() <= want_ms * 0.008, "p{q}: {got} ms");
        }
        assert_eq!(h.percentile(100.0), Some(Duration::from_millis(1000)));

        // 90 samples of 1 ms and 10 of 100 ms: p90 is 1 ms, p91 is 100 ms.
        let mut h = Histogram::default();
        (0..90).for_each(|_| h.record(Duration::from_millis(1)));
        let mut tail = Histogram::default();
        (0..10).for_each(|_| tail.record(Duration::from_millis(100)));
        h.merge(&tail);
        let ms = |h: &Histogram, q| (h.percentile(q).unwrap().as_secs_f64() * 1e3).round();
        assert_eq!((ms(&h, 90.0), ms(&h, 91.0), h.count()), (1.0, 100.0, 100));
    }
}
