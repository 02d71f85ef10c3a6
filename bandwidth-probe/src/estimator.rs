//! The estimator, sans-I/O: arrival timings in, estimates and the next step out. Time is passed
//! in (microseconds on whatever clock took the timings), so everything here is deterministic
//! and tested on synthetic arrivals.
//!
//! **Capacity from a train.** A train of back-to-back packets leaves the bottleneck spaced by
//! its serialisation time, so the receiver's dispersion gives the capacity: bytes after the first
//! packet over the time from first to last arrival. Two things spoil the plain formula, and
//! [`train_rate`] handles both:
//!
//! - a token bucket (`tbf` burst, a shaper's credit) lets the head of the train through faster
//!   than the rate. Only the tail is used: the longest run of arrivals, ending with the last, whose
//!   first and second halves pass at the same pace (the head before it is the burst). A train
//!   whose last few arrivals still speed up towards its start is flagged as not
//!   [`consistent`](TrainEstimate::consistent), so the planner sends a longer one;
//! - cross-traffic widens some gaps and receive batching (interrupt coalescing, a busy receiver)
//!   squeezes some together. The rate is taken as the median over windows of `k` consecutive gaps
//!   (bytes over time within the window), which ignores a few stretched windows and averages
//!   batches out.
//!
//! **Over several trains.** [`CapacityEstimator`] collects one direction's trains and plans the
//! next: the first train is short ([`FIRST_TRAIN`] packets of [`FIRST_PACKET_WIRE`] bytes, so that
//! it queues no more than 60 ms on a 0.5 Mbit/s line); each next one is sized to
//! last about [`TRAIN_SECS`] at the estimate so far (at most four times the previous one's bytes),
//! and the bytes of a direction stay under [`BUDGET_SECS`] of the estimated capacity. It stops
//! once two consecutive consistent trains agree within [`STABLE_TOLERANCE`], or when trains, time
//! or bytes run out. The confidence (0–1) grows with the agreement of the last trains and shrinks
//! with the spread of the gaps within them and with loss.
//!
//! **Slow lines.** Whatever a train carries beyond the shaper's burst queues in front of a call
//! sharing the line. So a train after the first carries at least the burst the earlier trains
//! showed ([`TrainEstimate::head_bytes`]) plus [`TAIL_PACKETS`] packets, and on a slow line those
//! packets are smaller (together they last [`TAIL_SECS`] at the estimate, each at least
//! [`MIN_PACKET_WIRE`] bytes): at 1 Mbit/s the tail queues 15 ms instead of the 30 ms of three
//! full-size packets. The client also waits for each train's queue to drain (twice the train's
//! time at the estimate) before it sends the next.
//!
//! **Chirps.** A [`ChirpPlan`] sends packets with gaps shrinking exponentially, so the sending
//! rate grows past what the line has free. [`chirp_rate`] finds the rate at which one-way delay
//! starts to grow for good (where queueing begins); [`chirp_available`] reads the free bandwidth
//! from how fast the queue grows once it does, given the capacity the trains measured.
//!
//! **RTT, jitter, loss.** [`RttStats`] summarises echo round trips.

use serde::{Deserialize, Serialize};

/// Packets in the first train of a direction.
pub const FIRST_TRAIN: u16 = 6;
/// Bytes on the wire of each packet of the first train (at most the largest packet).
pub const FIRST_PACKET_WIRE: u32 = 628;
/// Fewest packets in any train.
pub const MIN_TRAIN: u16 = 6;
/// A train after the first is sized to last this long at the estimated capacity (but has at
/// least [`MIN_TRAIN`] packets). A train reaches the bottleneck faster than the line drains it,
/// so its length is also about the queueing delay it adds for a call sharing the line.
pub const TRAIN_SECS: f64 = 0.025;
/// A direction's bytes stay under the estimated capacity times this.
pub const BUDGET_SECS: f64 = 0.45;
/// Bytes any direction may use before there is an estimate.
pub const MIN_DIRECTION_BYTES: u64 = 16_000;
/// Two trains whose rates differ by less than this (relative) agree.
pub const STABLE_TOLERANCE: f64 = 0.06;
/// Trains that lost more than this share of their packets are not used.
pub const MAX_TRAIN_LOSS: f64 = 0.5;
/// Most trains per direction.
pub const MAX_TRAINS: usize = 6;
/// Packets a train after the first carries beyond the burst it expects: enough gaps to measure
/// the pace and to outvote a stretched one...
pub const TAIL_PACKETS: u16 = 4;
/// ...sized so that they last about this long (s) at the estimate, within [`MIN_PACKET_WIRE`]
/// and the largest packet: what a call sharing the line waits for behind the train.
pub const TAIL_SECS: f64 = 0.015;
/// Smallest train packet on the wire, bytes: a link's own framing (14 bytes of Ethernet that a
/// `tbf` counts and the IP-level estimate does not) stays under 4 % of it.
pub const MIN_PACKET_WIRE: u32 = 400;
/// Most wall time per direction (µs): no train starts that would end after this (the client
/// checks the expected end: its RTT plus the train's length at the estimate).
pub const MAX_DIRECTION_US: u64 = 950_000;

/// One received train packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arrival {
    /// Index in the train.
    pub index: u16,
    /// Bytes on the wire (datagram plus IP and UDP headers).
    pub bytes: u32,
    /// Arrival time, µs.
    pub at_us: u64,
}

/// What one train says.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainEstimate {
    /// Capacity, bit/s.
    pub rate_bps: f64,
    /// Packets sent.
    pub sent: u16,
    /// Packets received.
    pub received: u16,
    /// Relative spread of the window rates (interquartile range over median of seconds per byte).
    pub spread: f64,
    /// Whether the tail's first and second halves agree (no burst left in it).
    pub consistent: bool,
    /// Wire bytes of the packets that arrived before the tail's first: the burst allowance the
    /// train met.
    pub head_bytes: u32,
}

impl TrainEstimate {
    /// Share of packets lost.
    pub fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        1.0 - f64::from(self.received.min(self.sent)) / f64::from(self.sent)
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] * (1.0 - frac) + sorted[hi] * frac
}

/// Seconds per byte between points `i` and `j` of (cumulative bytes, time µs).
fn pace(points: &[(f64, f64)], i: usize, j: usize) -> Option<f64> {
    let dx = points[j].0 - points[i].0;
    let dt = points[j].1 - points[i].1;
    (dx > 0.0).then(|| dt.max(0.0) / 1e6 / dx)
}

/// Whether the first and second halves of `points` pass at the same pace: the first at least
/// `ratio` times the second's seconds per byte (a burst makes the first faster).
fn halves_agree(points: &[(f64, f64)], ratio: f64) -> bool {
    let (m, mid) = (points.len(), points.len() / 2);
    match (pace(points, 0, mid), pace(points, mid, m - 1)) {
        (Some(first), Some(second)) if second > 0.0 => first >= second * ratio,
        _ => true,
    }
}

/// The capacity a train shows: see the module docs. `sent` is how many packets were sent; fewer
/// than three arrivals give `None`.
pub fn train_rate(sent: u16, arrivals: &[Arrival]) -> Option<TrainEstimate> {
    let mut a: Vec<Arrival> = arrivals.to_vec();
    a.sort_by_key(|x| (x.index, x.at_us));
    a.dedup_by_key(|x| x.index);
    if a.len() < 3 {
        return None;
    }
    // Cumulative bytes carried before each packet's arrival (the first packet's own bytes do not
    // count: its arrival marks the start).
    let mut points = Vec::with_capacity(a.len());
    let mut cum = 0.0;
    for (i, x) in a.iter().enumerate() {
        if i > 0 {
            cum += f64::from(x.bytes);
        }
        points.push((cum, x.at_us as f64));
    }
    let n = points.len();
    // The tail: from the earliest arrival after which the pace holds (halves agreeing a little
    // more tightly than the consistency flag asks, so a burst packet or two at its start cannot
    // pass); the later half, flagged, when there is none.
    let found = (0..=n - 3).find(|&s| halves_agree(&points[s..], 0.9));
    let mut start = found.unwrap_or((n / 2).min(n - 3));
    // On a long tail the halves agree with a few burst packets still at its start: skip gaps
    // much shorter than the tail's typical one.
    let mut gaps: Vec<f64> = (start..n - 1)
        .filter_map(|i| pace(&points, i, i + 1))
        .collect();
    gaps.sort_by(f64::total_cmp);
    let typical = quantile(&gaps, 0.5);
    while found.is_some()
        && start < n - 3
        && pace(&points, start, start + 1).is_some_and(|p| p < 0.5 * typical)
    {
        start += 1;
    }
    let tail = &points[start..];
    let m = tail.len();
    // Windows of k gaps. Short windows ignore the few gaps cross-traffic stretches; when the
    // receiver squeezes arrivals together (many near-zero gaps), long windows average it out.
    let mean_pace = pace(tail, 0, m - 1)?;
    let squeezed = (0..m - 1)
        .filter_map(|i| pace(tail, i, i + 1))
        .filter(|p| *p < 0.2 * mean_pace)
        .count();
    let k = if squeezed * 8 > m - 1 {
        ((m - 1) / 3).max(1)
    } else {
        ((m - 1) / 8).clamp(1, 4)
    };
    let mut paces: Vec<f64> = (0..m - k).filter_map(|i| pace(tail, i, i + k)).collect();
    if paces.is_empty() {
        return None;
    }
    paces.sort_by(f64::total_cmp);
    let median = quantile(&paces, 0.5);
    if median <= 0.0 || !median.is_finite() {
        return None;
    }
    let spread = (quantile(&paces, 0.75) - quantile(&paces, 0.25)) / median;
    // Burst check: the first and second halves of the tail, end to end.
    let consistent = halves_agree(tail, 0.85);
    // The burst: the packets before the tail's first (whose own arrival starts the tail); without
    // a consistent tail, those before the first gap at least half the longest.
    let head_end = if consistent {
        start
    } else {
        let longest = (0..n - 1)
            .filter_map(|i| pace(&points, i, i + 1))
            .fold(0.0, f64::max);
        (0..n - 1)
            .find(|&i| pace(&points, i, i + 1).is_some_and(|p| p >= 0.5 * longest))
            .unwrap_or(n - 1)
    };
    let head = points[head_end].0 + f64::from(a[0].bytes) - f64::from(a[head_end].bytes);
    Some(TrainEstimate {
        rate_bps: 8.0 / median,
        sent,
        received: u16::try_from(n).unwrap_or(u16::MAX),
        spread,
        consistent,
        head_bytes: head.min(f64::from(u32::MAX)) as u32,
    })
}

/// The capacity of one direction with a confidence.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// Bit/s.
    pub bps: f64,
    /// 0 (a guess) to 1 (trains agree, clean gaps, no loss).
    pub confidence: f64,
    /// Whether the estimate settled (two consistent trains agreed).
    pub stable: bool,
}

/// What to do next in a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send a train of `count` packets of `wire_bytes` each on the wire.
    Train {
        /// Packets.
        count: u16,
        /// Bytes per packet on the wire (IP and UDP headers included).
        wire_bytes: u32,
    },
    /// Done.
    Done,
}

/// One direction's trains and the plan for the next.
#[derive(Debug, Clone)]
pub struct CapacityEstimator {
    trains: Vec<Option<TrainEstimate>>,
    last_bytes: u64,
    max_train: u16,
    packet_bytes: u32,
    budget: u64,
}

impl CapacityEstimator {
    /// A direction whose train packets are at most `packet_bytes` on the wire, at most
    /// `max_train` per train and `budget` bytes in all.
    pub fn new(packet_bytes: u32, max_train: u16, budget: u64) -> Self {
        CapacityEstimator {
            trains: Vec::new(),
            last_bytes: 0,
            max_train: max_train.max(MIN_TRAIN),
            packet_bytes: packet_bytes.max(1),
            budget,
        }
    }

    /// Records a train of `sent` packets of `wire_bytes` each, and what arrived.
    pub fn add_train(
        &mut self,
        sent: u16,
        wire_bytes: u32,
        arrivals: &[Arrival],
    ) -> Option<TrainEstimate> {
        // A train that lost more than half its packets (a receive buffer overflowed, a queue
        // dropped them) says little about the spacing: the survivors may all be from the burst.
        let est = train_rate(sent, arrivals).filter(|t| t.loss() <= MAX_TRAIN_LOSS);
        self.trains.push(est);
        self.last_bytes = u64::from(sent) * u64::from(wire_bytes);
        est
    }

    /// The trains so far (`None` for a train too damaged to use).
    pub fn trains(&self) -> &[Option<TrainEstimate>] {
        &self.trains
    }

    fn valid(&self) -> impl Iterator<Item = &TrainEstimate> {
        self.trains.iter().flatten()
    }

    /// The last two trains, when both gave a consistent estimate.
    fn last_pair(&self) -> Option<(TrainEstimate, TrainEstimate)> {
        let n = self.trains.len();
        if n < 2 {
            return None;
        }
        match (self.trains[n - 2], self.trains[n - 1]) {
            (Some(a), Some(b)) if a.consistent && b.consistent => Some((a, b)),
            _ => None,
        }
    }

    fn rel_diff(a: f64, b: f64) -> f64 {
        (a - b).abs() / a.max(b).max(f64::MIN_POSITIVE)
    }

    /// Whether the last two trains agree.
    pub fn is_stable(&self) -> bool {
        self.last_pair()
            .is_some_and(|(a, b)| Self::rel_diff(a.rate_bps, b.rate_bps) <= STABLE_TOLERANCE)
    }

    /// The train to trust most when no two agree: consistent ones first, then the one with the
    /// most packets received, the later one on a tie.
    fn best(&self) -> Option<TrainEstimate> {
        self.valid()
            .enumerate()
            .max_by_key(|(i, t)| (t.consistent, t.received, *i))
            .map(|(_, t)| *t)
    }

    /// The estimate so far.
    pub fn estimate(&self) -> Option<Capacity> {
        let last = match self.last_pair() {
            Some((_, b)) => b,
            None => self.best()?,
        };
        let (bps, agree) = match self.last_pair() {
            Some((a, b)) => {
                // Weighted by packets received: longer trains measure better.
                let (wa, wb) = (f64::from(a.received), f64::from(b.received));
                (
                    (a.rate_bps * wa + b.rate_bps * wb) / (wa + wb),
                    1.0 - (Self::rel_diff(a.rate_bps, b.rate_bps) / 0.25).min(1.0),
                )
            }
            None => (last.rate_bps, 0.3),
        };
        let clean = 1.0 - (last.spread / 0.5).min(1.0);
        let loss = 1.0 - (last.loss() * 4.0).min(1.0);
        let burst = if last.consistent { 1.0 } else { 0.5 };
        let confidence = (0.5 * agree + 0.3 * clean + 0.2 * loss) * burst;
        Some(Capacity {
            bps,
            confidence: (confidence * 100.0).round() / 100.0,
            stable: self.is_stable(),
        })
    }

    /// The next step, given the bytes this direction used so far and its elapsed time (µs).
    pub fn next(&self, bytes_used: u64, elapsed_us: u64) -> Step {
        if self.trains.is_empty() {
            return self.fit(FIRST_TRAIN, bytes_used);
        }
        if self.is_stable() || self.trains.len() >= MAX_TRAINS || elapsed_us >= MAX_DIRECTION_US {
            return Step::Done;
        }
        // The smallest estimate so far (the largest may still be a burst).
        let rate = self
            .valid()
            .map(|t| t.rate_bps)
            .fold(f64::INFINITY, f64::min);
        // Packets sized from the smallest estimate; when no train was consistent (one still
        // inside the burst reads as a fast line), no larger than the first train's.
        let mut wire = self.packet_for(rate);
        if !self.valid().any(|t| t.consistent) {
            wire = wire.min(FIRST_PACKET_WIRE);
        }
        let packets = |bytes: f64| (bytes / f64::from(wire)).ceil().min(f64::from(u16::MAX)) as u16;
        let want = match self.trains.last().copied().flatten() {
            // Too damaged to use: as many bytes again (a longer one would lose more if a buffer
            // overflowed).
            None => packets(self.last_bytes as f64),
            Some(t) => {
                // The burst seen so far, one packet for a fuller bucket, then the tail.
                let head = self.valid().map(|t| t.head_bytes).max().unwrap_or(0);
                let beyond = packets(f64::from(head))
                    .saturating_add(1)
                    .saturating_add(TAIL_PACKETS);
                packets(t.rate_bps / 8.0 * TRAIN_SECS).max(beyond)
            }
        };
        let grow = packets(4.0 * self.last_bytes as f64).min(self.max_train);
        let count = want.clamp(MIN_TRAIN, grow.max(MIN_TRAIN));
        // Bytes: a share of the capacity seen so far.
        let allowed = if rate.is_finite() {
            ((rate / 8.0 * BUDGET_SECS) as u64).max(MIN_DIRECTION_BYTES)
        } else {
            MIN_DIRECTION_BYTES.saturating_mul(2)
        };
        let allowed = allowed.min(self.budget);
        let left = allowed.saturating_sub(bytes_used);
        let fits = (left / u64::from(wire)).min(u64::from(u16::MAX)) as u16;
        if fits < MIN_TRAIN {
            Step::Done
        } else {
            Step::Train {
                count: count.min(fits),
                wire_bytes: wire,
            }
        }
    }

    /// The packet size for a train after the first at capacity `bps`: a tail of [`TAIL_PACKETS`]
    /// lasts [`TAIL_SECS`], within [`MIN_PACKET_WIRE`] and the largest packet.
    fn packet_for(&self, bps: f64) -> u32 {
        let per_packet = bps / 8.0 * TAIL_SECS / f64::from(TAIL_PACKETS);
        // No estimate yet (infinite): the largest packet.
        (per_packet.min(f64::from(u32::MAX)) as u32)
            .max(MIN_PACKET_WIRE)
            .min(self.packet_bytes)
    }

    fn fit(&self, count: u16, bytes_used: u64) -> Step {
        let wire = FIRST_PACKET_WIRE.min(self.packet_bytes);
        let left = self.budget.saturating_sub(bytes_used);
        let fits = (left / u64::from(wire)).min(u64::from(u16::MAX)) as u16;
        if fits < 3 {
            Step::Done
        } else {
            Step::Train {
                count: count.min(fits).min(self.max_train),
                wire_bytes: wire,
            }
        }
    }
}

/// Packets in a chirp's ramp...
pub const CHIRP_PACKETS: u16 = 24;
/// ...and after it, at the top rate, so that the queueing tail is long enough to see the other
/// traffic (a video call sends a frame's packets every 33 ms or so).
pub const CHIRP_HOLD: u16 = 10;
/// A chirp's sending rate starts at this share of the capacity estimate...
pub const CHIRP_FROM: f64 = 0.3;
/// ...and ends at this share.
pub const CHIRP_TO: f64 = 1.5;
/// A chirp packet lasts about this long at the capacity estimate (µs), within the datagram size
/// limits, so a chirp takes about 90 ms below 2.4 Mbit/s and less above.
pub const CHIRP_PACKET_US: f64 = 2_000.0;

/// A chirp for a capacity estimate: [`CHIRP_PACKETS`] packets whose sending rate grows
/// geometrically from [`CHIRP_FROM`] to [`CHIRP_TO`] times the capacity, then [`CHIRP_HOLD`] more
/// at that rate, so that somewhere in the chirp the rate passes what the line has free and the
/// queue builds ([`chirp_rate`], [`chirp_available`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChirpPlan {
    /// Packets.
    pub count: u16,
    /// Datagram size (UDP payload), bytes.
    pub size: u16,
    /// Gap before the second packet, µs.
    pub first_gap_us: u32,
    /// Each gap is the previous one times this / 1000.
    pub ratio_milli: u16,
    /// The last this many packets keep the gap reached before them.
    pub hold: u16,
}

impl ChirpPlan {
    /// The chirp for `capacity_bps`, with packets of `min_size..=max_size` datagram bytes plus
    /// `overhead` header bytes on the wire.
    pub fn new(capacity_bps: f64, overhead: u32, min_size: u16, max_size: u16) -> ChirpPlan {
        let bps = capacity_bps.max(10_000.0);
        let wire = (bps * CHIRP_PACKET_US / 1e6 / 8.0).clamp(
            f64::from(u32::from(min_size) + overhead),
            f64::from(u32::from(max_size) + overhead),
        );
        let size = (wire as u32)
            .saturating_sub(overhead)
            .clamp(u32::from(min_size), u32::from(max_size));
        let wire = f64::from(size + overhead);
        // Gaps before packets 1..count-1 shrink by `ratio` each: rate = wire × 8 / gap.
        let ratio = (CHIRP_FROM / CHIRP_TO).powf(1.0 / f64::from(CHIRP_PACKETS - 2));
        ChirpPlan {
            count: CHIRP_PACKETS + CHIRP_HOLD,
            hold: CHIRP_HOLD,
            size: u16::try_from(size).unwrap_or(max_size),
            first_gap_us: (wire * 8.0 / (CHIRP_FROM * bps) * 1e6) as u32,
            ratio_milli: (ratio * 1000.0).round() as u16,
        }
    }

    /// The gap before packet `index`, µs (0 for the first).
    pub fn gap_before(&self, index: u16) -> u64 {
        if index == 0 {
            return 0;
        }
        let ratio = f64::from(self.ratio_milli.clamp(100, 1000)) / 1000.0;
        let last_ramp = self
            .count
            .saturating_sub(self.hold)
            .saturating_sub(1)
            .max(1);
        let step = index.min(last_ramp);
        (f64::from(self.first_gap_us) * ratio.powi(i32::from(step) - 1)) as u64
    }

    /// How long sending the chirp takes, µs.
    pub fn duration_us(&self) -> u64 {
        (1..self.count).map(|i| self.gap_before(i)).sum()
    }

    /// The noise to ignore in one-way delays (µs): a quarter of a packet's time at the capacity,
    /// between 100 µs and 1 ms.
    pub fn tolerance_us(&self, capacity_bps: f64, overhead: u32) -> u64 {
        let packet_us =
            f64::from(u32::from(self.size) + overhead) * 8.0 / capacity_bps.max(1.0) * 1e6;
        (packet_us / 4.0).clamp(100.0, 1_000.0) as u64
    }
}

/// One chirp packet: when it was sent (sender clock) and when it arrived (receiver clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChirpPacket {
    /// Index in the chirp.
    pub index: u16,
    /// Bytes on the wire.
    pub bytes: u32,
    /// Sent, µs (sender clock).
    pub sent_us: u64,
    /// Arrived, µs (receiver clock; the offset between clocks does not matter).
    pub at_us: u64,
}

/// The sending rate (bit/s) at which a chirp's one-way delay starts to grow for good, i.e. where
/// queueing begins; `None` when it never does (the chirp stayed below the capacity) or the chirp
/// is too short. `tolerance_us` is the delay noise to ignore.
pub fn chirp_rate(packets: &[ChirpPacket], tolerance_us: u64) -> Option<f64> {
    let (p, rise) = queueing(packets, tolerance_us)?;
    let i = rise.max(1);
    let gap = p[i].sent_us.saturating_sub(p[i - 1].sent_us);
    (gap > 0).then(|| f64::from(p[i].bytes) * 8.0 / (gap as f64 / 1e6))
}

/// A chirp's packets in order, and the index from which its one-way delay grows for good (a queue
/// that only builds to the end); `None` when it never does or the chirp is too short.
fn queueing(packets: &[ChirpPacket], tolerance_us: u64) -> Option<(Vec<ChirpPacket>, usize)> {
    let mut p = packets.to_vec();
    p.sort_by_key(|x| x.index);
    p.dedup_by_key(|x| x.index);
    if p.len() < 4 {
        return None;
    }
    let delays: Vec<i64> = p
        .iter()
        .map(|x| x.at_us as i64 - x.sent_us as i64)
        .collect();
    let tol = i64::try_from(tolerance_us).unwrap_or(i64::MAX);
    // From the end backwards: the longest suffix along which the delay never drops by more than
    // the tolerance, i.e. a queue that only builds.
    let mut start = p.len() - 1;
    while start > 0 && delays[start - 1] <= delays[start] + tol {
        start -= 1;
    }
    // Within that suffix, where the delay first rises above its start by more than the tolerance.
    let base = delays[start..].iter().copied().min()?;
    let rise = (start..p.len()).find(|&i| delays[i] > base + tol)?;
    // The excursion must keep growing to the end.
    let last = delays[p.len() - 1];
    if last <= base + 2 * tol || rise == 0 {
        return None;
    }
    Some((p, rise))
}

/// The bandwidth a chirp found free (bit/s), given the bottleneck's capacity: the capacity minus
/// the cross traffic that shared the queue with the chirp once it built.
///
/// While the queue grows, the bottleneck serves `capacity` bits per second, shared between the
/// chirp and other traffic; so over the chirp's queueing tail (from the first packet whose delay
/// rose to the last) the chirp got `bits sent − capacity × delay growth` through in the time it
/// took to send them, and that rate is what the line had free. Unlike the rate at which the queue
/// starts ([`chirp_rate`]), this does not depend on when a shaper's burst allowance ran out. A
/// chirp that never queued for good found the whole capacity free. Between 0 and the capacity;
/// `None` when too few of its packets arrived.
///
/// It is a snapshot over the chirp's ~90 ms: cross traffic whose packets come further apart than
/// a fraction of that (a slow flow of large packets) is seen only in part.
pub fn chirp_available(
    plan: &ChirpPlan,
    packets: &[ChirpPacket],
    capacity_bps: f64,
    overhead: u32,
) -> Option<f64> {
    if packets.len() * 4 < usize::from(plan.count) * 3 {
        return None;
    }
    let Some((p, rise)) = queueing(packets, plan.tolerance_us(capacity_bps, overhead)) else {
        return Some(capacity_bps);
    };
    // From the last packet before the rise, so that the growth includes what caused it.
    let (first, last) = (&p[rise - 1], &p[p.len() - 1]);
    let span_us = last.sent_us.saturating_sub(first.sent_us);
    if p.len() - rise < 2 || span_us == 0 {
        // Too short a tail for the growth: where queueing started.
        return chirp_rate(packets, plan.tolerance_us(capacity_bps, overhead))
            .map(|r| r.min(capacity_bps));
    }
    let delay = |x: &ChirpPacket| x.at_us as f64 - x.sent_us as f64;
    let growth_s = (delay(last) - delay(first)) / 1e6;
    let bits: f64 = p[rise..].iter().map(|x| f64::from(x.bytes) * 8.0).sum();
    let free = (bits - capacity_bps * growth_s) / (span_us as f64 / 1e6);
    Some(free.clamp(0.0, capacity_bps))
}

/// Round trips of echo packets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RttStats {
    /// Smallest RTT, ms.
    pub min_ms: f64,
    /// Median RTT, ms.
    pub median_ms: f64,
    /// Mean absolute difference between consecutive RTTs, ms (the delay variation RFC 3550's
    /// jitter smooths, averaged instead of smoothed).
    pub jitter_ms: f64,
    /// Echoes without a reply, %.
    pub loss_pct: f64,
}

impl RttStats {
    /// From `sent` echoes and the RTTs (µs) of those answered, in sending order.
    pub fn from_samples(sent: usize, rtts_us: &[u64]) -> Option<RttStats> {
        if rtts_us.is_empty() || sent == 0 {
            return None;
        }
        let mut sorted: Vec<f64> = rtts_us.iter().map(|&r| r as f64 / 1000.0).collect();
        let in_order = sorted.clone();
        sorted.sort_by(f64::total_cmp);
        let jitter = if in_order.len() > 1 {
            in_order
                .windows(2)
                .map(|w| (w[1] - w[0]).abs())
                .sum::<f64>()
                / (in_order.len() - 1) as f64
        } else {
            0.0
        };
        let received = rtts_us.len().min(sent);
        Some(RttStats {
            min_ms: sorted[0],
            median_ms: quantile(&sorted, 0.5),
            jitter_ms: jitter,
            loss_pct: 100.0 * (sent - received) as f64 / sent as f64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wire bytes of a 1200-byte datagram over IPv4.
    const WIRE: u32 = 1228;

    /// A small deterministic generator (xorshift) for the synthetic noise.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Options of the simulated path.
    #[derive(Clone, Copy, Default)]
    struct Path {
        /// Bottleneck rate, bit/s.
        rate: f64,
        /// Token-bucket burst, bytes, passed at `fast` bit/s.
        burst: f64,
        /// Probability that a cross-traffic packet of `cross_bytes` gets in before a packet.
        cross_p: f64,
        cross_bytes: f64,
        /// Probability a packet is lost before the bottleneck.
        loss: f64,
        /// Receive batching: arrivals are reported at the end of batches this long (µs).
        batch_us: f64,
        /// Random receive-timestamp noise, ± µs.
        noise_us: f64,
    }

    /// A train of `n` back-to-back packets sent at time 0 through `path`.
    fn simulate(path: Path, n: u16, seed: u64) -> Vec<Arrival> {
        simulate_sized(path, n, WIRE, seed)
    }

    /// The same with packets of `wire` bytes.
    fn simulate_sized(path: Path, n: u16, wire: u32, seed: u64) -> Vec<Arrival> {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let fast = 1e9;
        let mut out = Vec::new();
        let mut t = 1000.0; // µs: the bottleneck is free from here
        let mut tokens = path.burst;
        let b = f64::from(wire);
        for index in 0..n {
            if rng.next() < path.loss {
                continue;
            }
            if rng.next() < path.cross_p {
                tokens -= path.cross_bytes;
            }
            // A token bucket of `burst` bytes filled at the rate: a packet leaves once there
            // are tokens for it.
            if tokens < b {
                t += (b - tokens) / (path.rate / 8.0) * 1e6;
                tokens = b;
            }
            tokens -= b;
            let ser = b * 8.0 / fast * 1e6;
            t += ser;
            tokens = (tokens + ser / 1e6 * path.rate / 8.0).min(path.burst.max(b));
            let mut at = t + (rng.next() * 2.0 - 1.0) * path.noise_us;
            if path.batch_us > 0.0 {
                at = (at / path.batch_us).ceil() * path.batch_us;
            }
            out.push(Arrival {
                index,
                bytes: wire,
                at_us: at.max(0.0) as u64,
            });
        }
        out
    }

    fn err(est: f64, truth: f64) -> f64 {
        (est - truth).abs() / truth
    }

    #[test]
    fn clean_train_gives_the_rate() {
        for rate in [0.5e6, 1e6, 2e6, 4e6, 10e6, 20e6] {
            let path = Path {
                rate,
                ..Path::default()
            };
            let est = train_rate(20, &simulate(path, 20, 1)).unwrap();
            assert!(err(est.rate_bps, rate) < 0.001, "{rate}: {est:?}");
            assert!(est.consistent);
            assert!(est.spread < 0.01);
        }
    }

    #[test]
    fn burst_head_is_discarded_and_short_tails_flagged() {
        // 10 ms of burst at 20 Mbit/s: 25 kB, about 20 packets.
        let path = Path {
            rate: 20e6,
            burst: 25_000.0,
            ..Path::default()
        };
        // A few packets beyond the burst: they give the rate, and the head the burst.
        let short = train_rate(26, &simulate(path, 26, 2)).unwrap();
        assert!(err(short.rate_bps, 20e6) < 0.03, "{short:?}");
        assert!(short.consistent);
        assert!((22_000..=25_000).contains(&short.head_bytes), "{short:?}");
        // The burst ends between the last two packets: no pace to trust.
        let cut = train_rate(22, &simulate(path, 22, 2)).unwrap();
        assert!(cut.rate_bps > 30e6 || !cut.consistent, "{cut:?}");
        // Four times the burst: the tail is clean.
        let long = train_rate(100, &simulate(path, 100, 2)).unwrap();
        assert!(err(long.rate_bps, 20e6) < 0.03, "{long:?}");
        assert!(long.consistent);
    }

    #[test]
    fn slow_lines_get_small_trains_that_queue_little_beyond_the_burst() {
        for rate in [0.5e6, 1e6] {
            let burst = 3000.0;
            let path = Path {
                rate,
                burst,
                noise_us: 20.0,
                ..Path::default()
            };
            let mut est = CapacityEstimator::new(WIRE, 160, 10_000_000);
            let mut used = 0;
            let mut seed = 1;
            while let Step::Train { count, wire_bytes } = est.next(used, 0) {
                let bytes = f64::from(count) * f64::from(wire_bytes);
                if seed > 1 {
                    // What queues behind the burst lasts about TAIL_SECS, give or take a packet.
                    let queued_s = (bytes - burst) * 8.0 / rate;
                    let packet_s = f64::from(wire_bytes) * 8.0 / rate;
                    assert!(wire_bytes < WIRE, "{rate}: {wire_bytes}");
                    assert!(
                        queued_s
                            <= TAIL_SECS.max(f64::from(TAIL_PACKETS) * packet_s) + 2.0 * packet_s,
                        "{rate}: {queued_s} s"
                    );
                }
                est.add_train(
                    count,
                    wire_bytes,
                    &simulate_sized(path, count, wire_bytes, seed),
                );
                used += bytes as u64;
                seed += 1;
            }
            let cap = est.estimate().unwrap();
            assert!(cap.stable && err(cap.bps, rate) < 0.03, "{rate}: {cap:?}");
        }
    }

    #[test]
    fn cross_traffic_loss_and_batching_stay_within_a_few_percent() {
        let path = Path {
            rate: 4e6,
            burst: 5_000.0,
            cross_p: 0.08,
            cross_bytes: 1200.0,
            loss: 0.03,
            batch_us: 500.0,
            noise_us: 60.0,
        };
        for seed in 1..20 {
            let est = train_rate(60, &simulate(path, 60, seed)).unwrap();
            assert!(err(est.rate_bps, 4e6) < 0.05, "seed {seed}: {est:?}");
        }
    }

    #[test]
    fn compressed_dispersion_is_averaged_out() {
        // The receiver reads packets in groups of four (2 ms batches at 2.456 ms per 4 packets).
        let path = Path {
            rate: 16e6,
            batch_us: 2000.0,
            ..Path::default()
        };
        let arrivals = simulate(path, 120, 3);
        let distinct: std::collections::BTreeSet<u64> = arrivals.iter().map(|a| a.at_us).collect();
        assert!(
            distinct.len() < arrivals.len(),
            "batching squeezes arrivals"
        );
        let est = train_rate(120, &arrivals).unwrap();
        assert!(err(est.rate_bps, 16e6) < 0.05, "{est:?}");
    }

    /// Runs the planner against the simulated path; returns the estimate and bytes used.
    fn run(path: Path, seed: u64) -> (Capacity, u64, usize) {
        let mut est = CapacityEstimator::new(WIRE, 160, 10_000_000);
        let mut used = 0;
        let mut trains = 0;
        while let Step::Train { count, wire_bytes } = est.next(used, 0) {
            let arrivals = simulate_sized(path, count, wire_bytes, seed + trains as u64);
            used += u64::from(count) * u64::from(wire_bytes);
            est.add_train(count, wire_bytes, &arrivals);
            trains += 1;
        }
        (est.estimate().unwrap(), used, trains)
    }

    #[test]
    fn planner_converges_within_budget_at_every_target_rate() {
        for rate in [0.5e6, 1e6, 2e6, 4e6, 10e6, 20e6] {
            let path = Path {
                rate,
                burst: (rate / 8.0 * 0.01).max(3000.0),
                noise_us: 20.0,
                ..Path::default()
            };
            let (cap, used, trains) = run(path, 7);
            assert!(err(cap.bps, rate) < 0.05, "{rate}: {cap:?}");
            assert!(cap.stable, "{rate}: {cap:?} after {trains} trains");
            // At most 5 % of a 10 s full-rate run.
            let iperf = rate / 8.0 * 10.0;
            assert!((used as f64) < 0.05 * iperf, "{rate}: {used} bytes");
            assert!(cap.confidence > 0.8, "{rate}: {cap:?}");
        }
    }

    #[test]
    fn confidence_drops_on_noisy_input() {
        let clean = Path {
            rate: 4e6,
            burst: 5000.0,
            ..Path::default()
        };
        let noisy = Path {
            cross_p: 0.35,
            cross_bytes: 1500.0,
            loss: 0.1,
            noise_us: 800.0,
            ..clean
        };
        let (c, _, _) = run(clean, 11);
        let (n, _, _) = run(noisy, 11);
        assert!(n.confidence < c.confidence - 0.2, "clean {c:?} noisy {n:?}");
    }

    #[test]
    fn planner_respects_the_budget_and_never_starts_without_room() {
        let est = CapacityEstimator::new(WIRE, 160, 2 * u64::from(FIRST_PACKET_WIRE));
        assert_eq!(est.next(0, 0), Step::Done);
        let mut est = CapacityEstimator::new(WIRE, 160, 1_000_000);
        let path = Path {
            rate: 1e6,
            ..Path::default()
        };
        est.add_train(6, WIRE, &simulate(path, 6, 1));
        // 0.45 s at 1 Mbit/s is 56 kB.
        assert_eq!(est.next(56_000, 0), Step::Done);
        assert!(matches!(est.next(10_000, 0), Step::Train { .. }));
        assert_eq!(est.next(10_000, MAX_DIRECTION_US), Step::Done);
        // Nothing arrived: None, and the next train is as long.
        let mut est = CapacityEstimator::new(WIRE, 160, 1_000_000);
        est.add_train(6, FIRST_PACKET_WIRE, &[]);
        assert_eq!(
            est.next(4000, 0),
            Step::Train {
                count: 6,
                wire_bytes: FIRST_PACKET_WIRE
            }
        );
        assert!(est.estimate().is_none());
    }

    #[test]
    fn a_train_that_lost_most_packets_is_not_trusted() {
        let path = Path {
            rate: 10e6,
            burst: 12_500.0,
            ..Path::default()
        };
        let mut est = CapacityEstimator::new(WIRE, 160, 10_000_000);
        est.add_train(40, WIRE, &simulate(path, 40, 1));
        est.add_train(80, WIRE, &simulate(path, 80, 2));
        // Only the first 8 packets of the next train survive: all inside the burst.
        let survivors: Vec<Arrival> = simulate(path, 80, 3).into_iter().take(8).collect();
        assert!(est.add_train(80, WIRE, &survivors).is_none());
        let cap = est.estimate().unwrap();
        assert!(err(cap.bps, 10e6) < 0.05, "{cap:?}");
    }

    #[test]
    fn chirp_finds_where_queueing_starts() {
        // Gaps shrink by 0.8 from 20 ms: rates 0.49, 0.61, ... Mbit/s; bottleneck 2 Mbit/s.
        let rate = 2e6;
        let mut sent = 0.0;
        let mut free = 0.0f64;
        let mut gap = 20_000.0;
        let mut packets = Vec::new();
        for index in 0..16u16 {
            if index > 0 {
                sent += gap;
                gap *= 0.8;
            }
            let start = free.max(sent);
            free = start + f64::from(WIRE) * 8.0 / rate * 1e6;
            packets.push(ChirpPacket {
                index,
                bytes: WIRE,
                sent_us: sent as u64,
                at_us: free as u64 + 40_000,
            });
        }
        let found = chirp_rate(&packets, 200).unwrap();
        assert!(found > 1.6e6 && found < 3.0e6, "{found}");
        // A chirp that stays below the capacity finds nothing.
        let slow: Vec<ChirpPacket> = (0..10u16)
            .map(|i| ChirpPacket {
                index: i,
                bytes: WIRE,
                sent_us: u64::from(i) * 50_000,
                at_us: u64::from(i) * 50_000 + 5_000,
            })
            .collect();
        assert_eq!(chirp_rate(&slow, 200), None);
    }

    /// A chirp planned for `capacity` through a token-bucket shaper (`burst` bytes) shared with a
    /// constant-rate flow of `cross` bit/s (1228-byte packets): the chirp packets as received.
    fn shaped_chirp(
        capacity: f64,
        burst: f64,
        cross: f64,
        cross_phase_us: f64,
    ) -> Vec<ChirpPacket> {
        let plan = ChirpPlan::new(capacity, 28, 64, 1200);
        let mut sent = 0.0;
        // (arrival at the shaper µs, bytes, chirp index or none)
        let mut packets: Vec<(f64, f64, Option<u16>)> = Vec::new();
        for index in 0..plan.count {
            sent += plan.gap_before(index) as f64;
            packets.push((sent, f64::from(plan.size) + 28.0, Some(index)));
        }
        if cross > 0.0 {
            let every = 1228.0 * 8.0 / cross * 1e6;
            let mut t = cross_phase_us - 10.0 * every;
            while t < sent + every {
                packets.push((t, 1228.0, None));
                t += every;
            }
        }
        packets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (mut tokens, mut clock, mut free) = (burst, f64::MIN, f64::MIN);
        let mut out = Vec::new();
        for (arrival, bytes, index) in packets {
            let mut t = arrival.max(free);
            if clock > f64::MIN {
                tokens = (tokens + (t - clock) / 1e6 * capacity / 8.0).min(burst);
            }
            if tokens < bytes {
                t += (bytes - tokens) * 8.0 / capacity * 1e6;
                tokens = bytes;
            }
            tokens -= bytes;
            clock = t;
            free = t;
            if let Some(index) = index {
                out.push(ChirpPacket {
                    index,
                    bytes: bytes as u32,
                    sent_us: arrival as u64,
                    at_us: t as u64 + 25_000,
                });
            }
        }
        out
    }

    #[test]
    fn chirp_finds_the_bandwidth_left_by_cross_traffic() {
        for capacity in [500e3, 2e6, 10e6] {
            let plan = ChirpPlan::new(capacity, 28, 64, 1200);
            // Shorter than a tenth of a second: a chirp fits beside the trains.
            assert!(plan.duration_us() < 100_000, "{plan:?}");
            // An idle line: all of it is free, also through a shaper's burst.
            for burst in [1500.0, 3000.0, capacity / 8.0 * 0.01] {
                let idle = shaped_chirp(capacity, burst.max(1500.0), 0.0, 0.0);
                let free = chirp_available(&plan, &idle, capacity, 28).unwrap();
                assert!(free >= 0.9 * capacity, "{capacity} {burst}: {free}");
            }
            // Half the line taken by a steady flow, at several phases of its packets. (At
            // 0.5 Mbit/s such a flow sends a 1228-byte packet every 39 ms: a 90 ms chirp sees two,
            // too few to tell; see `chirp_available`.)
            if capacity < 1e6 {
                continue;
            }
            for phase in [0.0, 1000.0, 3000.0, 7000.0] {
                let busy = shaped_chirp(capacity, 3000.0, capacity / 2.0, phase);
                let free = chirp_available(&plan, &busy, capacity, 28).unwrap();
                assert!(
                    (0.3 * capacity..=0.7 * capacity).contains(&free),
                    "{capacity} phase {phase}: {free}"
                );
            }
        }
        // Too few packets arrived: no answer.
        let plan = ChirpPlan::new(2e6, 28, 64, 1200);
        let lossy = shaped_chirp(2e6, 3000.0, 0.0, 0.0);
        assert_eq!(chirp_available(&plan, &lossy[..8], 2e6, 28), None);
    }

    #[test]
    fn rtt_stats() {
        let s = RttStats::from_samples(5, &[100_000, 102_000, 101_000, 104_000]).unwrap();
        assert_eq!(s.min_ms, 100.0);
        assert_eq!(s.median_ms, 101.5);
        assert!((s.jitter_ms - 2.0).abs() < 1e-9);
        assert_eq!(s.loss_pct, 20.0);
        assert!(RttStats::from_samples(3, &[]).is_none());
    }
}
