//! A room: who is in it, what they publish, who receives what, and the forwarding decision for every
//! packet. Sans-I/O: time comes in as an argument, decisions go out as [`Action`]s for the shell to
//! carry out on the participants' WebRTC sessions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::keyframe::{KeyframeAggregator, KeyframeKind};
use super::rewrite::{SourcePacket, StreamRewriter, Vp8Fields, Vp8Rewriter};

/// A participant, unique within the relay process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ParticipantId(pub u64);

impl std::fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// A published track, unique within its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrackId(pub u64);

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Audio (Opus).
    Audio,
    /// Video (VP8).
    Video,
}

/// How often at most a keyframe request for one track goes to its publisher while unanswered.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(300);

/// One incoming RTP packet of a published track, as the shell parsed it.
#[derive(Debug, Clone)]
pub struct InPacket {
    /// The track it belongs to.
    pub track: TrackId,
    /// Sequence number, SSRC, timestamp and arrival time.
    pub source: SourcePacket,
    /// RTP marker bit.
    pub marker: bool,
    /// Whether this packet starts a keyframe (video).
    pub keyframe: bool,
    /// VP8 descriptor fields, when the payload is VP8 and has them.
    pub vp8: Option<Vp8Fields>,
    /// The payload, shared by every subscriber.
    pub payload: Arc<[u8]>,
    /// Audio level header extension (-dBov), when present.
    pub audio_level: Option<i8>,
    /// Voice activity flag of the audio level extension.
    pub voice_activity: Option<bool>,
}

/// One packet to send to one subscriber.
#[derive(Debug, Clone)]
pub struct OutPacket {
    /// Who receives it.
    pub subscriber: ParticipantId,
    /// Which of their receive tracks carries it.
    pub track: TrackId,
    /// Rewritten extended sequence number.
    pub seq: u64,
    /// Rewritten RTP timestamp.
    pub timestamp: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// Rewritten VP8 fields.
    pub vp8: Option<Vp8Fields>,
    /// The payload.
    pub payload: Arc<[u8]>,
    /// When the original arrived.
    pub arrival: Instant,
    /// Audio level header extension, passed through.
    pub audio_level: Option<i8>,
    /// Voice activity flag, passed through.
    pub voice_activity: Option<bool>,
}

/// What the shell must do.
#[derive(Debug, Clone)]
pub enum Action {
    /// Send a packet to a subscriber.
    Forward(OutPacket),
    /// Ask a publisher for a keyframe of one of its tracks.
    RequestKeyframe {
        /// The publisher.
        publisher: ParticipantId,
        /// The track.
        track: TrackId,
        /// PLI or FIR.
        kind: KeyframeKind,
    },
}

/// Counters of one subscription.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscriptionStats {
    /// Packets forwarded.
    pub packets: u64,
    /// Payload bytes forwarded.
    pub bytes: u64,
    /// Video packets dropped while waiting for a keyframe.
    pub dropped_waiting_keyframe: u64,
    /// Source switches (publisher restarts) seen.
    pub source_switches: u64,
}

#[derive(Debug)]
struct Subscription {
    active: bool,
    waiting_keyframe: bool,
    rewriter: StreamRewriter,
    vp8: Vp8Rewriter,
    stats: SubscriptionStats,
}

#[derive(Debug)]
struct PublishedTrack {
    publisher: ParticipantId,
    kind: Kind,
    keyframes: KeyframeAggregator,
    packets: u64,
    bytes: u64,
}

#[derive(Debug)]
struct Member {
    display_name: String,
}

/// A participant as the others see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Its id.
    pub id: ParticipantId,
    /// Its display name.
    pub display_name: String,
}

/// A room and its forwarding state.
#[derive(Debug, Default)]
pub struct Room {
    members: BTreeMap<ParticipantId, Member>,
    tracks: BTreeMap<TrackId, PublishedTrack>,
    subscriptions: HashMap<(ParticipantId, TrackId), Subscription>,
}

impl Room {
    /// An empty room.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of participants.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether nobody is in the room.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether `id` is in the room.
    pub fn contains(&self, id: ParticipantId) -> bool {
        self.members.contains_key(&id)
    }

    /// The participants, in joining order.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.members
            .iter()
            .map(|(id, m)| MemberInfo {
                id: *id,
                display_name: m.display_name.clone(),
            })
            .collect()
    }

    /// A participant joins. Returns the tracks already published, which the newcomer should receive.
    pub fn join(&mut self, id: ParticipantId, display_name: String) -> Vec<TrackId> {
        self.members.insert(id, Member { display_name });
        self.tracks
            .iter()
            .filter(|(_, t)| t.publisher != id)
            .map(|(track, _)| *track)
            .collect()
    }

    /// A participant leaves. Returns the tracks it published, which every other participant loses.
    pub fn leave(&mut self, id: ParticipantId) -> Vec<TrackId> {
        self.members.remove(&id);
        let gone: Vec<TrackId> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.publisher == id)
            .map(|(track, _)| *track)
            .collect();
        for track in &gone {
            self.tracks.remove(track);
        }
        self.subscriptions
            .retain(|(sub, track), _| *sub != id && !gone.contains(track));
        gone
    }

    /// A participant publishes a track. Returns who should receive it (everyone else).
    pub fn publish(
        &mut self,
        track: TrackId,
        publisher: ParticipantId,
        kind: Kind,
    ) -> Vec<ParticipantId> {
        self.tracks.insert(
            track,
            PublishedTrack {
                publisher,
                kind,
                keyframes: KeyframeAggregator::new(KEYFRAME_REQUEST_INTERVAL),
                packets: 0,
                bytes: 0,
            },
        );
        self.members
            .keys()
            .filter(|m| **m != publisher)
            .copied()
            .collect()
    }

    /// A published track ends. Returns who received it.
    pub fn unpublish(&mut self, track: TrackId) -> Vec<ParticipantId> {
        self.tracks.remove(&track);
        let subs: Vec<ParticipantId> = self
            .subscriptions
            .keys()
            .filter(|(_, t)| *t == track)
            .map(|(s, _)| *s)
            .collect();
        self.subscriptions.retain(|(_, t), _| *t != track);
        subs
    }

    /// The publisher and kind of a track.
    pub fn track(&self, track: TrackId) -> Option<(ParticipantId, Kind)> {
        self.tracks.get(&track).map(|t| (t.publisher, t.kind))
    }

    /// A subscriber's receive track for `track` is negotiated and can carry media from now on. For video,
    /// forwarding starts at the next keyframe, which is requested here.
    pub fn subscribe(
        &mut self,
        now: Instant,
        subscriber: ParticipantId,
        track: TrackId,
        clock_rate: u32,
        start_seq: u16,
        out: &mut Vec<Action>,
    ) {
        let Some(published) = self.tracks.get_mut(&track) else {
            return;
        };
        if published.publisher == subscriber || !self.members.contains_key(&subscriber) {
            return;
        }
        let video = published.kind == Kind::Video;
        self.subscriptions.insert(
            (subscriber, track),
            Subscription {
                active: true,
                waiting_keyframe: video,
                rewriter: StreamRewriter::new(clock_rate, start_seq),
                vp8: Vp8Rewriter::default(),
                stats: SubscriptionStats::default(),
            },
        );
        if video && let Some(kind) = published.keyframes.request(now, KeyframeKind::Pli) {
            out.push(Action::RequestKeyframe {
                publisher: published.publisher,
                track,
                kind,
            });
        }
    }

    /// Whether `subscriber` currently receives `track`.
    pub fn is_subscribed(&self, subscriber: ParticipantId, track: TrackId) -> bool {
        self.subscriptions
            .get(&(subscriber, track))
            .is_some_and(|s| s.active)
    }

    /// Counters of one subscription.
    pub fn subscription_stats(
        &self,
        subscriber: ParticipantId,
        track: TrackId,
    ) -> Option<SubscriptionStats> {
        self.subscriptions
            .get(&(subscriber, track))
            .map(|s| s.stats)
    }

    /// A packet of a published track arrived: decide who gets it and how it is rewritten.
    pub fn on_packet(&mut self, now: Instant, packet: &InPacket, out: &mut Vec<Action>) {
        let Some(published) = self.tracks.get_mut(&packet.track) else {
            return;
        };
        published.packets += 1;
        published.bytes += packet.payload.len() as u64;
        if packet.keyframe {
            published.keyframes.on_keyframe();
        }
        let publisher = published.publisher;
        let mut want_keyframe = false;
        for ((subscriber, track), sub) in self.subscriptions.iter_mut() {
            if *track != packet.track || !sub.active {
                continue;
            }
            if sub.rewriter.is_stale(&packet.source) {
                continue;
            }
            let new_source = sub.rewriter.is_new_source(&packet.source);
            if published.kind == Kind::Video && (sub.waiting_keyframe || new_source) {
                if !packet.keyframe {
                    sub.stats.dropped_waiting_keyframe += 1;
                    want_keyframe = true;
                    sub.waiting_keyframe = true;
                    continue;
                }
                sub.waiting_keyframe = false;
            }
            let Ok(rewritten) = sub.rewriter.rewrite(&packet.source) else {
                continue;
            };
            sub.stats.source_switches = sub.rewriter.switches();
            sub.stats.packets += 1;
            sub.stats.bytes += packet.payload.len() as u64;
            out.push(Action::Forward(OutPacket {
                subscriber: *subscriber,
                track: *track,
                seq: rewritten.seq,
                timestamp: rewritten.timestamp,
                marker: packet.marker,
                vp8: packet.vp8.map(|f| sub.vp8.rewrite(f, new_source)),
                payload: packet.payload.clone(),
                arrival: packet.source.arrival,
                audio_level: packet.audio_level,
                voice_activity: packet.voice_activity,
            }));
        }
        if want_keyframe && let Some(kind) = published.keyframes.request(now, KeyframeKind::Pli) {
            out.push(Action::RequestKeyframe {
                publisher,
                track: packet.track,
                kind,
            });
        }
    }

    /// A subscriber asked for a keyframe on its receive track for `track`.
    pub fn on_keyframe_request(
        &mut self,
        now: Instant,
        subscriber: ParticipantId,
        track: TrackId,
        kind: KeyframeKind,
        out: &mut Vec<Action>,
    ) {
        if !self.is_subscribed(subscriber, track) {
            return;
        }
        let Some(published) = self.tracks.get_mut(&track) else {
            return;
        };
        if let Some(kind) = published.keyframes.request(now, kind) {
            out.push(Action::RequestKeyframe {
                publisher: published.publisher,
                track,
                kind,
            });
        }
    }

    /// Time passes: held-back keyframe requests go out when due.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        for (track, published) in self.tracks.iter_mut() {
            if let Some(kind) = published.keyframes.poll(now) {
                out.push(Action::RequestKeyframe {
                    publisher: published.publisher,
                    track: *track,
                    kind,
                });
            }
        }
    }

    /// Packets and bytes received on a published track.
    pub fn track_counters(&self, track: TrackId) -> Option<(u64, u64)> {
        self.tracks.get(&track).map(|t| (t.packets, t.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ParticipantId = ParticipantId(1);
    const B: ParticipantId = ParticipantId(2);
    const C: ParticipantId = ParticipantId(3);
    const AUDIO_A: TrackId = TrackId(10);
    const VIDEO_A: TrackId = TrackId(11);

    fn packet(track: TrackId, ssrc: u32, seq: u64, at: Instant, keyframe: bool) -> InPacket {
        InPacket {
            track,
            source: SourcePacket {
                ssrc,
                seq,
                timestamp: seq as u32 * 3000,
                arrival: at,
            },
            marker: false,
            keyframe,
            vp8: None,
            payload: Arc::from(vec![seq as u8; 100]),
            audio_level: None,
            voice_activity: None,
        }
    }

    fn forwards(actions: &[Action]) -> Vec<(ParticipantId, u64)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Forward(p) => Some((p.subscriber, p.seq)),
                _ => None,
            })
            .collect()
    }

    fn keyframe_requests(actions: &[Action]) -> usize {
        actions
            .iter()
            .filter(|a| matches!(a, Action::RequestKeyframe { .. }))
            .count()
    }

    fn room_with_three(now: Instant) -> Room {
        let mut room = Room::new();
        room.join(A, "A".into());
        room.join(B, "B".into());
        room.join(C, "C".into());
        assert_eq!(room.publish(AUDIO_A, A, Kind::Audio), vec![B, C]);
        assert_eq!(room.publish(VIDEO_A, A, Kind::Video), vec![B, C]);
        let mut out = vec![];
        for s in [B, C] {
            room.subscribe(now, s, AUDIO_A, 48_000, 100, &mut out);
            room.subscribe(now, s, VIDEO_A, 90_000, 200, &mut out);
        }
        // Two video subscribers starting together: one keyframe request reaches the publisher.
        assert_eq!(keyframe_requests(&out), 1);
        room
    }

    #[test]
    fn audio_goes_to_everyone_but_the_publisher() {
        let t0 = Instant::now();
        let mut room = room_with_three(t0);
        let mut out = vec![];
        room.on_packet(t0, &packet(AUDIO_A, 7, 500, t0, false), &mut out);
        let mut f = forwards(&out);
        f.sort();
        assert_eq!(f, vec![(B, 100), (C, 100)]);
        // The payload is shared, not copied.
        if let Action::Forward(p) = &out[0] {
            assert_eq!(p.payload.len(), 100);
        }
    }

    #[test]
    fn video_starts_at_a_keyframe() {
        let t0 = Instant::now();
        let mut room = room_with_three(t0);
        let mut out = vec![];
        room.on_packet(t0, &packet(VIDEO_A, 9, 1, t0, false), &mut out);
        assert!(forwards(&out).is_empty());
        assert_eq!(
            room.subscription_stats(B, VIDEO_A)
                .unwrap()
                .dropped_waiting_keyframe,
            1
        );
        out.clear();
        room.on_packet(t0, &packet(VIDEO_A, 9, 2, t0, true), &mut out);
        room.on_packet(t0, &packet(VIDEO_A, 9, 3, t0, false), &mut out);
        let mut f = forwards(&out);
        f.sort();
        assert_eq!(f, vec![(B, 200), (B, 201), (C, 200), (C, 201)]);
    }

    #[test]
    fn publisher_restart_waits_for_keyframe_and_stays_continuous() {
        let t0 = Instant::now();
        let mut room = room_with_three(t0);
        let mut out = vec![];
        room.on_packet(t0, &packet(VIDEO_A, 9, 1, t0, true), &mut out);
        room.on_packet(t0, &packet(VIDEO_A, 9, 2, t0, false), &mut out);
        out.clear();
        // The browser restarts its encoder: new SSRC, new numbering, first packet not a keyframe.
        let t1 = t0 + Duration::from_secs(1);
        room.on_packet(t1, &packet(VIDEO_A, 77, 9000, t1, false), &mut out);
        assert!(forwards(&out).is_empty());
        assert_eq!(keyframe_requests(&out), 1);
        out.clear();
        room.on_packet(t1, &packet(VIDEO_A, 77, 9001, t1, true), &mut out);
        let f = forwards(&out);
        assert!(f.contains(&(B, 202)) && f.contains(&(C, 202)), "{f:?}");
        assert_eq!(
            room.subscription_stats(B, VIDEO_A).unwrap().source_switches,
            1
        );
    }

    #[test]
    fn subscriber_keyframe_requests_are_aggregated() {
        let t0 = Instant::now();
        let mut room = room_with_three(t0);
        let mut out = vec![];
        let t1 = t0 + Duration::from_secs(2);
        room.on_keyframe_request(t1, B, VIDEO_A, KeyframeKind::Pli, &mut out);
        room.on_keyframe_request(t1, C, VIDEO_A, KeyframeKind::Pli, &mut out);
        assert_eq!(keyframe_requests(&out), 1);
        // A request for a track one does not receive is ignored.
        room.on_keyframe_request(t1, A, VIDEO_A, KeyframeKind::Pli, &mut out);
        assert_eq!(keyframe_requests(&out), 1);
        out.clear();
        room.tick(t1 + KEYFRAME_REQUEST_INTERVAL, &mut out);
        assert_eq!(
            keyframe_requests(&out),
            1,
            "the held-back request goes out later"
        );
    }

    #[test]
    fn join_and_leave() {
        let t0 = Instant::now();
        let mut room = room_with_three(t0);
        assert_eq!(room.len(), 3);
        // A newcomer is told about the published tracks.
        let d = ParticipantId(4);
        assert_eq!(room.join(d, "D".into()), vec![AUDIO_A, VIDEO_A]);
        // A subscriber leaves: only its subscriptions go.
        assert!(room.leave(B).is_empty());
        assert!(!room.is_subscribed(B, AUDIO_A));
        assert!(room.is_subscribed(C, AUDIO_A));
        // The publisher leaves: its tracks and everyone's subscriptions to them go.
        assert_eq!(room.leave(A), vec![AUDIO_A, VIDEO_A]);
        assert!(!room.is_subscribed(C, AUDIO_A));
        let mut out = vec![];
        room.on_packet(t0, &packet(AUDIO_A, 7, 1, t0, false), &mut out);
        assert!(out.is_empty());
        assert_eq!(room.members().len(), 2);
        room.leave(C);
        room.leave(d);
        assert!(room.is_empty());
    }

    #[test]
    fn unpublish_reports_subscribers() {
        let t0 = Instant::now();
        let mut room = room_with_three(t0);
        let mut subs = room.unpublish(VIDEO_A);
        subs.sort();
        assert_eq!(subs, vec![B, C]);
        assert!(room.track(VIDEO_A).is_none());
        assert!(room.track(AUDIO_A).is_some());
    }
}
