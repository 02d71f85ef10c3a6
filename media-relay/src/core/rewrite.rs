//! Per-subscriber RTP header rewriting.
//!
//! A subscriber sees one continuous outgoing stream per track, whatever happens upstream: the publisher may
//! restart its encoder (new SSRC, new random sequence number and timestamp), and later the relay switches
//! between simulcast layers, each a stream of its own. [`StreamRewriter`] keeps the outgoing sequence
//! numbers, RTP timestamps and VP8 picture ids continuous across such switches, and passes everything else
//! through with a fixed offset, so that reordering and retransmissions upstream stay reordering and
//! retransmissions downstream.

use std::collections::VecDeque;
use std::time::Instant;

/// A jump in extended sequence number larger than this within one SSRC is treated as a restart of the
/// source (a new epoch), not as loss.
const MAX_SEQ_JUMP: u64 = 3_000;
/// How many sequence-offset changes (skipped packets) an epoch remembers for late packets.
const OFFSET_HISTORY: usize = 64;

/// The values of one incoming packet that rewriting needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourcePacket {
    /// The publisher's SSRC for this packet (the layer's SSRC when simulcast is in use).
    pub ssrc: u32,
    /// Extended (64-bit, roll-over free) sequence number as received.
    pub seq: u64,
    /// RTP timestamp as received.
    pub timestamp: u32,
    /// When the packet arrived.
    pub arrival: Instant,
}

/// The rewritten header values of one outgoing packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    /// Extended outgoing sequence number (always starts below 65 536, so no ROC signalling is needed).
    pub seq: u64,
    /// Outgoing RTP timestamp.
    pub timestamp: u32,
}

#[derive(Debug, Clone)]
struct Epoch {
    ssrc: u32,
    /// Outgoing = incoming + offset (in extended sequence space). Each entry is the offset in force from
    /// an incoming sequence number on; a skipped packet (a dropped temporal layer) adds an entry with the
    /// offset one lower, so the outgoing numbering has no gap the subscriber would NACK. Never empty.
    seq_offsets: VecDeque<(u64, i64)>,
    /// Outgoing = incoming + offset (wrapping).
    ts_offset: u32,
    /// First incoming sequence number of this epoch; anything older belongs to an earlier epoch.
    first_seq: u64,
    highest_seq: u64,
}

/// Keeps one outgoing RTP stream continuous across source switches.
#[derive(Debug, Clone)]
pub struct StreamRewriter {
    clock_rate: u32,
    start_seq: u64,
    epoch: Option<Epoch>,
    /// The SSRC and highest sequence number of the epoch before the current one: its late packets are
    /// dropped instead of starting yet another epoch.
    retired: Option<(u32, u64)>,
    last_out_seq: Option<u64>,
    last_out_ts: u32,
    last_out_arrival: Option<Instant>,
    switches: u64,
    gaps: u64,
    /// A packet of the current source was withheld: the next one forwarded starts a new epoch.
    withheld: bool,
}

/// Why a packet was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewriteDrop {
    /// The packet belongs to a source epoch that was already replaced.
    StaleEpoch,
}

impl StreamRewriter {
    /// A rewriter for a stream with the given RTP clock rate, whose first outgoing sequence number is
    /// `start_seq` (taken modulo 2^15 so that it starts well inside the first roll-over period).
    pub fn new(clock_rate: u32, start_seq: u16) -> Self {
        StreamRewriter {
            clock_rate: clock_rate.max(1),
            start_seq: u64::from(start_seq & 0x7fff),
            epoch: None,
            retired: None,
            last_out_seq: None,
            last_out_ts: 0,
            last_out_arrival: None,
            switches: 0,
            gaps: 0,
            withheld: false,
        }
    }

    /// How many times the source changed (SSRC change or restart) after the first packet.
    pub fn switches(&self) -> u64 {
        self.switches
    }

    /// Outgoing sequence numbers jumped over so far (holes the subscriber sees as loss until a late or
    /// repaired packet fills them): upstream loss, or a rewriting fault.
    pub fn gaps(&self) -> u64 {
        self.gaps
    }

    /// Whether `packet` would start a new epoch (a new or restarted source), so that a video forwarder can
    /// wait for a keyframe before switching.
    pub fn is_new_source(&self, packet: &SourcePacket) -> bool {
        if self.withheld {
            return true;
        }
        match &self.epoch {
            None => true,
            Some(e) => e.ssrc != packet.ssrc || packet.seq.abs_diff(e.highest_seq) > MAX_SEQ_JUMP,
        }
    }

    /// Whether `packet` is a late packet of the epoch that the current one replaced.
    pub fn is_stale(&self, packet: &SourcePacket) -> bool {
        self.retired.is_some_and(|(ssrc, highest)| {
            ssrc == packet.ssrc && packet.seq <= highest && highest - packet.seq <= MAX_SEQ_JUMP
        })
    }

    /// Rewrite one packet. A packet from a new SSRC (or a large sequence jump within one SSRC) starts a
    /// new epoch that continues right after the last outgoing packet.
    pub fn rewrite(&mut self, packet: &SourcePacket) -> Result<Rewritten, RewriteDrop> {
        if self.is_stale(packet) {
            return Err(RewriteDrop::StaleEpoch);
        }
        if self.is_new_source(packet) {
            self.start_epoch(packet);
        }
        let Some(epoch) = self.epoch.as_mut() else {
            // start_epoch always sets an epoch.
            return Err(RewriteDrop::StaleEpoch);
        };
        if packet.seq < epoch.first_seq {
            return Err(RewriteDrop::StaleEpoch);
        }
        epoch.highest_seq = epoch.highest_seq.max(packet.seq);
        let seq = (packet.seq as i64 + epoch.offset_for(packet.seq)) as u64;
        let timestamp = packet.timestamp.wrapping_add(epoch.ts_offset);
        if self.last_out_seq.is_none_or(|last| seq > last) {
            if let Some(last) = self.last_out_seq {
                self.gaps += seq - last - 1;
            }
            self.last_out_seq = Some(seq);
            self.last_out_ts = timestamp;
            self.last_out_arrival = Some(packet.arrival);
        }
        Ok(Rewritten { seq, timestamp })
    }

    /// The relay deliberately drops `packet` (a temporal layer the subscriber does not receive): later
    /// packets of the same source move down by one, so the outgoing numbering stays gap-free. Packets of
    /// another source, and late ones, change nothing.
    pub fn skip(&mut self, packet: &SourcePacket) {
        if self.is_new_source(packet) || self.is_stale(packet) {
            return;
        }
        let Some(epoch) = self.epoch.as_mut() else {
            return;
        };
        if packet.seq <= epoch.highest_seq {
            return;
        }
        epoch.highest_seq = packet.seq;
        let offset = epoch.offset_for(packet.seq) - 1;
        epoch.seq_offsets.push_back((packet.seq + 1, offset));
        if epoch.seq_offsets.len() > OFFSET_HISTORY {
            epoch.seq_offsets.pop_front();
        }
    }

    /// The relay did not forward `packet` (the subscriber is paused, or waits for a keyframe). If it is
    /// the current source's next packet, the next packet forwarded starts a new epoch right after the
    /// last outgoing one, even from the same source: otherwise the subscriber would see the withheld
    /// packets as a gap, ask for them (NACK) and never get them. The resumed stream starts at a
    /// keyframe, as after any switch.
    pub fn withhold(&mut self, packet: &SourcePacket) {
        if let Some(e) = &self.epoch
            && e.ssrc == packet.ssrc
            && packet.seq > e.highest_seq
            && packet.seq - e.highest_seq <= MAX_SEQ_JUMP
        {
            self.withheld = true;
        }
    }

    fn start_epoch(&mut self, packet: &SourcePacket) {
        self.withheld = false;
        let (next_seq, next_ts) = match (self.last_out_seq, self.last_out_arrival) {
            (Some(last_seq), Some(last_arrival)) => {
                self.switches += 1;
                // Advance the timestamp by the wall-clock time that passed, at least one tick, so the
                // receiver's jitter buffer sees time moving forward across the switch.
                let elapsed = packet.arrival.saturating_duration_since(last_arrival);
                let ticks = (elapsed.as_secs_f64() * f64::from(self.clock_rate)).round() as u64;
                let ticks = ticks.clamp(1, u64::from(u32::MAX / 2)) as u32;
                (last_seq + 1, self.last_out_ts.wrapping_add(ticks))
            }
            _ => (self.start_seq, packet.timestamp),
        };
        self.retired = self.epoch.as_ref().map(|e| (e.ssrc, e.highest_seq));
        self.epoch = Some(Epoch {
            ssrc: packet.ssrc,
            seq_offsets: VecDeque::from([(packet.seq, next_seq as i64 - packet.seq as i64)]),
            ts_offset: next_ts.wrapping_sub(packet.timestamp),
            first_seq: packet.seq,
            highest_seq: packet.seq,
        });
    }
}

impl Epoch {
    fn offset_for(&self, seq: u64) -> i64 {
        self.seq_offsets
            .iter()
            .rev()
            .find(|(from, _)| seq >= *from)
            .or(self.seq_offsets.front())
            .map_or(0, |(_, offset)| *offset)
    }
}

/// A counter of `bits` bits (VP8 picture id: 7 or 15, TL0PICIDX: 8, KEYIDX: 5) kept continuous across
/// source switches.
#[derive(Debug, Clone, Copy)]
pub struct WrappingField {
    bits: u32,
    offset: u16,
    last_out: Option<u16>,
    last_skipped: Option<u16>,
}

impl WrappingField {
    /// A field of `bits` bits (1 to 16).
    pub fn new(bits: u32) -> Self {
        WrappingField {
            bits: bits.clamp(1, 16),
            offset: 0,
            last_out: None,
            last_skipped: None,
        }
    }

    fn mask(&self) -> u16 {
        ((1u32 << self.bits) - 1) as u16
    }

    /// Map an incoming value. With `new_epoch` set (the first packet of a new source) the outgoing value
    /// continues right after the last one (`step` further: 1 for a new picture, 0 for the same one).
    pub fn map(&mut self, value: u16, new_epoch: bool, step: u16) -> u16 {
        let mask = self.mask();
        if new_epoch && let Some(last) = self.last_out {
            self.offset = last.wrapping_add(step).wrapping_sub(value) & mask;
        }
        let out = value.wrapping_add(self.offset) & mask;
        self.last_out = Some(out);
        out
    }

    /// The value belongs to something the relay drops (a picture of a temporal layer the subscriber does
    /// not receive): later values move down by one so the outgoing count has no gap. Several packets of
    /// one dropped picture count once.
    pub fn skip(&mut self, value: u16) {
        if self.last_skipped != Some(value) {
            self.last_skipped = Some(value);
            self.offset = self.offset.wrapping_sub(1) & self.mask();
        }
    }
}

/// The VP8 payload descriptor fields the relay rewrites.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Vp8Fields {
    /// Picture id and whether it is the 15-bit form.
    pub picture_id: Option<(u16, bool)>,
    /// TL0PICIDX.
    pub tl0_pic_idx: Option<u8>,
    /// KEYIDX.
    pub key_idx: Option<u8>,
}

/// Keeps VP8 picture id, TL0PICIDX and KEYIDX continuous for one outgoing stream.
#[derive(Debug, Clone, Copy)]
pub struct Vp8Rewriter {
    picture_id: Option<WrappingField>,
    tl0: WrappingField,
    key_idx: WrappingField,
}

impl Default for Vp8Rewriter {
    fn default() -> Self {
        Vp8Rewriter {
            picture_id: None,
            tl0: WrappingField::new(8),
            key_idx: WrappingField::new(5),
        }
    }
}

impl Vp8Rewriter {
    /// The relay drops a packet of a picture (a temporal layer the subscriber does not receive): the
    /// outgoing picture ids stay gap-free. TL0PICIDX counts only base-layer pictures, which are never
    /// dropped this way, and KEYIDX is unaffected.
    pub fn skip(&mut self, fields: Vp8Fields) {
        if let (Some((value, _)), Some(field)) = (fields.picture_id, self.picture_id.as_mut()) {
            field.skip(value);
        }
    }

    /// Rewrite the fields of one packet; `new_epoch` is true for the first packet of a new source.
    pub fn rewrite(&mut self, fields: Vp8Fields, new_epoch: bool) -> Vp8Fields {
        let picture_id = fields.picture_id.map(|(value, long)| {
            let bits = if long { 15 } else { 7 };
            let field = self
                .picture_id
                .get_or_insert_with(|| WrappingField::new(bits));
            if field.bits != bits {
                // The publisher changed the picture id length: restart the mapping in the new width.
                *field = WrappingField::new(bits);
            }
            (field.map(value, new_epoch, 1), long)
        });
        Vp8Fields {
            picture_id,
            tl0_pic_idx: fields
                .tl0_pic_idx
                .map(|v| self.tl0.map(u16::from(v), new_epoch, 1) as u8),
            key_idx: fields
                .key_idx
                .map(|v| self.key_idx.map(u16::from(v), new_epoch, 1) as u8),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pkt(ssrc: u32, seq: u64, timestamp: u32, at: Instant) -> SourcePacket {
        SourcePacket {
            ssrc,
            seq,
            timestamp,
            arrival: at,
        }
    }

    #[test]
    fn passes_through_with_constant_offset() {
        let t0 = Instant::now();
        let mut rw = StreamRewriter::new(90_000, 100);
        let a = rw.rewrite(&pkt(1, 5000, 1000, t0)).unwrap();
        assert_eq!(a.seq, 100);
        assert_eq!(a.timestamp, 1000);
        let b = rw.rewrite(&pkt(1, 5001, 4000, t0)).unwrap();
        assert_eq!((b.seq, b.timestamp), (101, 4000));
        // A gap (loss upstream) stays a gap so the subscriber can NACK it.
        let c = rw.rewrite(&pkt(1, 5005, 7000, t0)).unwrap();
        assert_eq!(c.seq, 105);
        // Reordered / retransmitted packet keeps its place.
        let d = rw.rewrite(&pkt(1, 5003, 7000, t0)).unwrap();
        assert_eq!(d.seq, 103);
        assert_eq!(rw.switches(), 0);
    }

    #[test]
    fn continuous_across_ssrc_change() {
        let t0 = Instant::now();
        let mut rw = StreamRewriter::new(90_000, 10);
        for i in 0..10u64 {
            rw.rewrite(&pkt(
                0xaaaa,
                40_000 + i,
                3000 * i as u32,
                t0 + Duration::from_millis(33 * i),
            ))
            .unwrap();
        }
        let last = rw
            .rewrite(&pkt(
                0xaaaa,
                40_010,
                30_000,
                t0 + Duration::from_millis(330),
            ))
            .unwrap();
        // Publisher restarts: new SSRC, random sequence number and timestamp, 100 ms later.
        let first = rw
            .rewrite(&pkt(
                0xbbbb,
                7,
                123_456_789,
                t0 + Duration::from_millis(430),
            ))
            .unwrap();
        assert_eq!(first.seq, last.seq + 1);
        assert_eq!(first.timestamp, last.timestamp.wrapping_add(9_000));
        let next = rw
            .rewrite(&pkt(
                0xbbbb,
                8,
                123_456_789 + 3000,
                t0 + Duration::from_millis(463),
            ))
            .unwrap();
        assert_eq!(next.seq, last.seq + 2);
        assert_eq!(next.timestamp, first.timestamp + 3000);
        assert_eq!(rw.switches(), 1);
        // A late packet of the old source is not forwarded: it would collide with the new sequence.
        assert_eq!(
            rw.rewrite(&pkt(
                0xaaaa,
                40_009,
                27_000,
                t0 + Duration::from_millis(470)
            )),
            Err(RewriteDrop::StaleEpoch)
        );
        // ... and does not disturb the new one.
        let after = rw
            .rewrite(&pkt(
                0xbbbb,
                9,
                123_456_789 + 6000,
                t0 + Duration::from_millis(496),
            ))
            .unwrap();
        assert_eq!(after.seq, last.seq + 3);
        assert_eq!(rw.switches(), 1);
    }

    #[test]
    fn continuous_across_sequence_wraparound() {
        // str0m hands us extended sequence numbers; the 16-bit wrap is a plain +1 here, and the outgoing
        // extended number keeps counting up (str0m serialises it as 16 bits plus its own ROC).
        let t0 = Instant::now();
        let mut rw = StreamRewriter::new(48_000, 65_000);
        let mut prev = None;
        for seq in 65_530u64..65_545 {
            let out = rw.rewrite(&pkt(9, seq, (seq as u32) * 960, t0)).unwrap();
            if let Some(p) = prev {
                assert_eq!(out.seq, p + 1);
            }
            prev = Some(out.seq);
        }
        assert_eq!(rw.switches(), 0);
        // The outgoing stream starts inside the first roll-over period.
        assert!(prev.unwrap() < 65_536);
    }

    #[test]
    fn same_ssrc_restart_is_a_new_epoch() {
        let t0 = Instant::now();
        let mut rw = StreamRewriter::new(90_000, 0);
        let a = rw.rewrite(&pkt(5, 100, 0, t0)).unwrap();
        let b = rw
            .rewrite(&pkt(5, 30_000, 5, t0 + Duration::from_millis(20)))
            .unwrap();
        assert_eq!(b.seq, a.seq + 1);
        assert_eq!(rw.switches(), 1);
    }

    #[test]
    fn withheld_packets_leave_no_gap() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut rw = StreamRewriter::new(90_000, 100);
        assert_eq!(rw.rewrite(&pkt(1, 10, 0, t0)).unwrap().seq, 100);
        // Withholding another source's packets (a layer waiting for its keyframe) changes nothing.
        rw.withhold(&pkt(2, 500, 0, t0));
        assert!(!rw.is_new_source(&pkt(1, 11, 3000, t0)));
        assert_eq!(rw.rewrite(&pkt(1, 11, 3000, t0)).unwrap().seq, 101);
        // Paused: 12..=40 are withheld; the stream resumes at 41, right after 101.
        for seq in 12..=40 {
            rw.withhold(&pkt(1, seq, 3000 * seq as u32, t0 + ms(33 * seq)));
        }
        let resumed = pkt(1, 41, 123_000, t0 + ms(1000));
        assert!(rw.is_new_source(&resumed));
        let r = rw.rewrite(&resumed).unwrap();
        assert_eq!(r.seq, 102);
        // The timestamp moved on by the wall-clock time since the last packet sent (1 s).
        assert_eq!(r.timestamp, 3000 + 90_000);
        assert_eq!(rw.rewrite(&pkt(1, 42, 126_000, t0)).unwrap().seq, 103);
        // A late packet from before the pause is not forwarded.
        assert_eq!(
            rw.rewrite(&pkt(1, 11, 3000, t0)),
            Err(RewriteDrop::StaleEpoch)
        );
        assert_eq!(rw.gaps(), 0);
    }

    #[test]
    fn timestamp_wraps() {
        let t0 = Instant::now();
        let mut rw = StreamRewriter::new(90_000, 0);
        let a = rw.rewrite(&pkt(5, 1, u32::MAX - 10, t0)).unwrap();
        let b = rw.rewrite(&pkt(5, 2, 20, t0)).unwrap();
        assert_eq!(b.timestamp.wrapping_sub(a.timestamp), 31);
    }

    #[test]
    fn skipped_packets_leave_no_gap() {
        let t0 = Instant::now();
        let mut rw = StreamRewriter::new(90_000, 100);
        assert_eq!(rw.rewrite(&pkt(1, 10, 0, t0)).unwrap().seq, 100);
        rw.skip(&pkt(1, 11, 3000, t0));
        rw.skip(&pkt(1, 12, 3000, t0));
        assert_eq!(rw.rewrite(&pkt(1, 14, 6000, t0)).unwrap().seq, 102);
        // A packet lost upstream before the skip keeps its own number, so a retransmission fits in.
        assert_eq!(rw.rewrite(&pkt(1, 13, 6000, t0)).unwrap().seq, 101);
        // A late packet from before the skipped ones keeps the old offset.
        // (10 was sent as 100; 9 would have been 99.)
        assert_eq!(rw.rewrite(&pkt(1, 9, 0, t0)), Err(RewriteDrop::StaleEpoch));
        // Skipping a packet of another source changes nothing.
        rw.skip(&pkt(2, 500, 0, t0));
        assert_eq!(rw.rewrite(&pkt(1, 15, 9000, t0)).unwrap().seq, 103);
    }

    #[test]
    fn vp8_picture_id_skips_dropped_pictures() {
        let mut vp8 = Vp8Rewriter::default();
        let f = |pid: u16| Vp8Fields {
            picture_id: Some((pid, true)),
            tl0_pic_idx: Some(0),
            key_idx: None,
        };
        assert_eq!(vp8.rewrite(f(10), false).picture_id, Some((10, true)));
        // Picture 11 (two packets) and 13 are dropped.
        vp8.skip(f(11));
        vp8.skip(f(11));
        assert_eq!(vp8.rewrite(f(12), false).picture_id, Some((11, true)));
        vp8.skip(f(13));
        assert_eq!(vp8.rewrite(f(14), false).picture_id, Some((12, true)));
    }

    #[test]
    fn vp8_picture_id_continuous_across_switch() {
        let mut vp8 = Vp8Rewriter::default();
        let f = |pid: u16, tl0: u8| Vp8Fields {
            picture_id: Some((pid, true)),
            tl0_pic_idx: Some(tl0),
            key_idx: None,
        };
        let a = vp8.rewrite(f(32_766, 254), false);
        let b = vp8.rewrite(f(32_767, 255), false);
        let c = vp8.rewrite(f(0, 0), false); // 15-bit wrap
        assert_eq!(a.picture_id, Some((32_766, true)));
        assert_eq!(b.picture_id, Some((32_767, true)));
        assert_eq!(c.picture_id, Some((0, true)));
        assert_eq!(c.tl0_pic_idx, Some(0));
        // New source with unrelated numbering.
        let d = vp8.rewrite(f(1234, 77), true);
        assert_eq!(d.picture_id, Some((1, true)));
        assert_eq!(d.tl0_pic_idx, Some(1));
        let e = vp8.rewrite(f(1235, 78), false);
        assert_eq!(e.picture_id, Some((2, true)));
        assert_eq!(e.tl0_pic_idx, Some(2));
    }
}
