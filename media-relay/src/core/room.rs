//! A room: who is in it, what they publish, who receives what, and the forwarding decision for every
//! packet. Sans-I/O: time comes in as an argument, decisions go out as [`Action`]s for the shell to
//! carry out on the participants' WebRTC sessions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::allocator::LayerRate;
use super::dynacast::Dynacast;
use super::keyframe::{KeyframeAggregator, KeyframeKind};
use super::layer_selector::{Layer, LayerPacket, LayerSelector, Verdict};
use super::rate::RateMeter;
use super::rewrite::{SourcePacket, StreamRewriter, Vp8Fields, Vp8Rewriter};
use super::steering::{Bottleneck, LayerPlan, Mode, Steering, Subscriber};

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
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Audio (Opus).
    Audio,
    /// Video (VP8).
    Video,
}

impl Kind {
    /// `audio` or `video`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Audio => "audio",
            Kind::Video => "video",
        }
    }
}

/// How often at most a keyframe request for one track goes to its publisher while unanswered.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(300);
/// A layer that sent nothing for this long is not offered to the allocator.
pub const LAYER_TIMEOUT: Duration = Duration::from_millis(1500);
/// Bytes per packet beyond the payload that forwarding costs on the line (RTP header, extensions, SRTP
/// tag), so that layer bitrates compare with the estimate.
pub const PACKET_OVERHEAD: u64 = 40;
/// A participant counts as speaking when its smoothed audio level is above this (127 − dBov).
const SPEECH_LEVEL: f32 = 45.0;
/// Another participant takes over as active speaker when this much louder (dB).
const SPEAKER_MARGIN: f32 = 6.0;
/// Audio older than this counts as silence (DTX sends almost nothing in pauses).
const SPEECH_TIMEOUT: Duration = Duration::from_millis(600);

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
    /// Its simulcast layer (0 when the track is not simulcast).
    pub spatial: u8,
    /// VP8 temporal layer id and layer-sync bit, when the descriptor has them.
    pub temporal: Option<(u8, bool)>,
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
        /// Its simulcast layer (0 when not simulcast).
        layer: u8,
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
    /// Source switches (publisher restarts and layer switches) seen.
    pub source_switches: u64,
    /// Simulcast layer switches.
    pub layer_switches: u64,
    /// Video packets of temporal layers the subscriber does not receive.
    pub skipped_temporal: u64,
    /// Outgoing sequence numbers jumped over (see [`StreamRewriter::gaps`]).
    pub seq_gaps: u64,
    /// The layer forwarded now (video).
    pub layer: Option<Layer>,
    /// The layer the allocator aims at (video).
    pub target: Option<Layer>,
}

#[derive(Debug)]
struct Subscription {
    active: bool,
    selector: LayerSelector,
    rewriter: StreamRewriter,
    vp8: Vp8Rewriter,
    meter: RateMeter,
    stats: SubscriptionStats,
}

/// One simulcast layer of a published video track (the only layer, 0, when not simulcast).
#[derive(Debug)]
struct SpatialLayer {
    keyframes: KeyframeAggregator,
    /// Bytes per temporal layer (a stream without temporal layers counts as the top one).
    meters: [RateMeter; 3],
    last_packet: Instant,
    /// `(temporal layer, cumulative bit/s)` when it last sent: what it costs if resumed.
    last_rungs: Vec<(u8, u64)>,
}

#[derive(Debug)]
struct PublishedTrack {
    publisher: ParticipantId,
    kind: Kind,
    layers: BTreeMap<u8, SpatialLayer>,
    dynacast: Dynacast,
    steering: Steering,
    /// Smoothed audio level (127 − dBov) and when it was last updated (audio).
    speech: Option<(f32, Instant)>,
    meter: RateMeter,
    packets: u64,
    bytes: u64,
}

impl PublishedTrack {
    fn layer(&mut self, now: Instant, spatial: u8) -> &mut SpatialLayer {
        self.layers.entry(spatial).or_insert_with(|| SpatialLayer {
            keyframes: KeyframeAggregator::new(KEYFRAME_REQUEST_INTERVAL),
            meters: Default::default(),
            last_packet: now,
            last_rungs: vec![],
        })
    }

    /// Refresh what each live layer costs (`last_rungs`); a paused or silent layer keeps its last cost.
    fn measure_layers(&mut self, now: Instant) {
        for l in self.layers.values_mut() {
            if now.saturating_duration_since(l.last_packet) >= LAYER_TIMEOUT {
                continue;
            }
            let mut sum = 0;
            let mut rungs = vec![];
            for (t, meter) in l.meters.iter_mut().enumerate() {
                let bps = meter.bps(now);
                sum += bps;
                if bps > 0 {
                    rungs.push((t as u8, sum));
                }
            }
            if !rungs.is_empty() {
                l.last_rungs = rungs;
            }
        }
    }

    /// Ask for a keyframe of `spatial`, aggregated per layer.
    fn request_keyframe(
        &mut self,
        now: Instant,
        track: TrackId,
        spatial: u8,
        kind: KeyframeKind,
        out: &mut Vec<Action>,
    ) {
        let publisher = self.publisher;
        if let Some(kind) = self.layer(now, spatial).keyframes.request(now, kind) {
            out.push(Action::RequestKeyframe {
                publisher,
                track,
                layer: spatial,
                kind,
            });
        }
    }
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
    speaker: Option<ParticipantId>,
    /// A line-test room: publishers receive their own tracks back.
    echo: bool,
}

impl Room {
    /// An empty room.
    pub fn new() -> Self {
        Self::default()
    }

    /// A line-test room, whose participants receive their own tracks back (through the relay and the
    /// line twice, like a consultation's media).
    pub fn echo() -> Self {
        Room {
            echo: true,
            ..Self::default()
        }
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
            .filter(|(_, t)| self.echo || t.publisher != id)
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

    /// A participant publishes a track. Returns who should receive it (everyone else; in an echo room
    /// the publisher too).
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
                layers: BTreeMap::new(),
                dynacast: Dynacast::default(),
                steering: Steering::default(),
                speech: None,
                meter: RateMeter::default(),
                packets: 0,
                bytes: 0,
            },
        );
        self.members
            .keys()
            .filter(|m| self.echo || **m != publisher)
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
        if (published.publisher == subscriber && !self.echo)
            || !self.members.contains_key(&subscriber)
        {
            return;
        }
        let video = published.kind == Kind::Video;
        // Video starts on the lowest layer the publisher sends; the allocator raises it.
        let start = video.then(|| {
            let spatial = published
                .layers
                .iter()
                .find(|(_, l)| now.saturating_duration_since(l.last_packet) < LAYER_TIMEOUT)
                .map_or(0, |(s, _)| *s);
            Layer::full(spatial)
        });
        self.subscriptions.insert(
            (subscriber, track),
            Subscription {
                active: true,
                selector: LayerSelector::new(start),
                rewriter: StreamRewriter::new(clock_rate, start_seq),
                vp8: Vp8Rewriter::default(),
                meter: RateMeter::default(),
                stats: SubscriptionStats {
                    target: start,
                    ..Default::default()
                },
            },
        );
        if let Some(layer) = start {
            published.request_keyframe(now, track, layer.spatial, KeyframeKind::Pli, out);
        }
    }

    /// Aim a subscription at another layer (none: pause it). A new spatial layer is asked for with a
    /// keyframe request; the switch happens at that keyframe.
    pub fn set_target(
        &mut self,
        now: Instant,
        subscriber: ParticipantId,
        track: TrackId,
        target: Option<Layer>,
        out: &mut Vec<Action>,
    ) {
        let (Some(sub), Some(published)) = (
            self.subscriptions.get_mut(&(subscriber, track)),
            self.tracks.get_mut(&track),
        ) else {
            return;
        };
        if sub.selector.target() == target {
            return;
        }
        sub.stats.target = target;
        if sub.selector.set_target(target)
            && let Some(layer) = target
        {
            published.request_keyframe(now, track, layer.spatial, KeyframeKind::Pli, out);
        }
        sub.stats.layer = sub.selector.current();
    }

    /// The layers of a video track the publisher sends now, with what forwarding each costs, cheapest
    /// first (see [`super::allocator::ladder`]). Layers paused by dynacast are offered at what they
    /// cost when they last sent, so that the allocator can ask for them back. A layer the publisher
    /// was steered down on is offered at no more than its new maximum (with
    /// [`super::steering::OVERSHOOT`]): the encoder follows within a frame or two, while the measured
    /// cost lags by the meter's window, and the allocator would step away from the layer meanwhile.
    /// A track sent as one adaptive layer offers that layer at no more than what the steering would
    /// set it to for a subscriber with `room_bps` for the track
    /// ([`super::steering::adaptive_cost_cap`]): it follows the line, so it needs no switch to
    /// another layer when the line falls, only a lower bitrate.
    pub fn ladder(&mut self, now: Instant, track: TrackId, room_bps: u64) -> Vec<LayerRate> {
        let Some(published) = self.tracks.get_mut(&track) else {
            return vec![];
        };
        published.measure_layers(now);
        let steered = published.steering.sent().unwrap_or(&[]);
        let adaptive = (published.steering.mode() == Some(super::steering::Mode::Adaptive))
            .then(|| steered.iter().map(|p| p.spatial).max())
            .flatten();
        let spatial: Vec<(u8, Vec<(u8, u64)>)> = published
            .layers
            .iter()
            .filter(|(s, l)| {
                let sending = now.saturating_duration_since(l.last_packet) < LAYER_TIMEOUT;
                // A layer paused by dynacast is offered at its last cost, so that a subscriber can
                // ask for it back; not beside an adaptive layer, which serves every subscriber
                // between the fallback and the top (and a stale cost would lure one away from it).
                let paused = !published.dynacast.is_active(**s) && adaptive.is_none();
                !l.last_rungs.is_empty() && (sending || paused)
            })
            .map(|(s, l)| {
                let mut cap = steered
                    .iter()
                    .find(|p| p.spatial == *s)
                    .map(|p| (p.max_bitrate_bps as f64 * super::steering::OVERSHOOT) as u64);
                if adaptive == Some(*s) {
                    let follows = super::steering::adaptive_cost_cap(room_bps);
                    cap = Some(cap.map_or(follows, |c| c.min(follows)));
                }
                (*s, super::steering::cap_rungs(&l.last_rungs, cap))
            })
            .collect();
        super::allocator::ladder(&spatial)
    }

    /// The published video tracks: (track, publisher).
    pub fn video_tracks(&self) -> Vec<(TrackId, ParticipantId)> {
        self.tracks
            .iter()
            .filter(|(_, t)| t.kind == Kind::Video)
            .map(|(id, t)| (*id, t.publisher))
            .collect()
    }

    /// What the publisher of one video track should encode (end-to-end rate control, see
    /// [`super::steering`]): dynacast decides which layers anyone needs, then the steering sets each
    /// layer's bitrate and resolution from the lines of the track's subscribers. `line` gives a
    /// subscriber's bottleneck and the room its allocation leaves for this track (none while it has
    /// no allocation yet). Returns the plan for every layer when it should be sent.
    pub fn steer(
        &mut self,
        now: Instant,
        track: TrackId,
        line: impl Fn(ParticipantId) -> Option<(Bottleneck, u64)>,
    ) -> Option<Vec<LayerPlan>> {
        self.update_dynacast(now, track);
        let subscribers: Vec<Subscriber> = self
            .subscriptions
            .iter()
            .filter(|((_, t), sub)| *t == track && sub.active)
            .filter_map(|((subscriber, _), sub)| {
                let (bottleneck, room_bps) = line(*subscriber)?;
                Some(Subscriber {
                    bottleneck,
                    room_bps,
                    target: sub.selector.target().map(|l| l.spatial),
                })
            })
            .collect();
        let published = self.tracks.get_mut(&track)?;
        let layers: Vec<u8> = published.layers.keys().copied().collect();
        let active: BTreeMap<u8, bool> = layers
            .iter()
            .map(|s| (*s, published.dynacast.is_active(*s)))
            .collect();
        // What the top layer sends now (measured by `update_dynacast`).
        let sending = published
            .layers
            .values()
            .next_back()
            .filter(|l| now.saturating_duration_since(l.last_packet) < LAYER_TIMEOUT)
            .and_then(|l| l.last_rungs.last())
            .map(|(_, bps)| *bps);
        published.steering.observe(now, sending);
        published
            .steering
            .update(now, &layers, &active, &subscribers)
    }

    /// How the publisher of a video track was last told to send it.
    pub fn steering_mode(&self, track: TrackId) -> Option<Mode> {
        self.tracks.get(&track)?.steering.mode()
    }

    /// The plan last sent to the publisher of a video track.
    pub fn steering_plan(&self, track: TrackId) -> Option<&[LayerPlan]> {
        self.tracks.get(&track)?.steering.sent()
    }

    /// Dynacast for one video track: from the targets of its subscriptions, which spatial layers the
    /// publisher should send.
    fn update_dynacast(&mut self, now: Instant, track: TrackId) {
        let targets: Vec<Option<Layer>> = self
            .subscriptions
            .iter()
            .filter(|((_, t), sub)| *t == track && sub.active)
            .map(|(_, sub)| sub.selector.target())
            .collect();
        let Some(published) = self.tracks.get_mut(&track) else {
            return;
        };
        published.measure_layers(now);
        // Only a layer whose cost is known can be offered to the allocator while paused, so only such
        // a layer may be paused.
        let layers: Vec<u8> = published
            .layers
            .iter()
            .filter(|(_, l)| !l.last_rungs.is_empty())
            .map(|(s, _)| *s)
            .collect();
        published.dynacast.update(now, &layers, &targets);
    }

    /// What a published track brings in now, bit/s (payload plus per-packet overhead).
    pub fn track_bps(&mut self, now: Instant, track: TrackId) -> u64 {
        self.tracks.get_mut(&track).map_or(0, |t| t.meter.bps(now))
    }

    /// What one subscription sends now, bit/s (payload plus per-packet overhead).
    pub fn subscription_bps(
        &mut self,
        now: Instant,
        subscriber: ParticipantId,
        track: TrackId,
    ) -> u64 {
        self.subscriptions
            .get_mut(&(subscriber, track))
            .map_or(0, |s| s.meter.bps(now))
    }

    /// The tracks `subscriber` receives: (track, publisher, kind).
    pub fn subscriptions_of(
        &self,
        subscriber: ParticipantId,
    ) -> Vec<(TrackId, ParticipantId, Kind)> {
        let mut out: Vec<(TrackId, ParticipantId, Kind)> = self
            .subscriptions
            .iter()
            .filter(|((s, _), sub)| *s == subscriber && sub.active)
            .filter_map(|((_, t), _)| self.tracks.get(t).map(|p| (*t, p.publisher, p.kind)))
            .collect();
        out.sort();
        out
    }

    /// The participant speaking now, from the audio-level header extension: the loudest smoothed
    /// level above a speech threshold, with a margin before another takes over.
    pub fn active_speaker(&mut self, now: Instant) -> Option<ParticipantId> {
        let level = |t: &PublishedTrack| {
            t.speech
                .filter(|(level, at)| {
                    *level >= SPEECH_LEVEL && now.saturating_duration_since(*at) < SPEECH_TIMEOUT
                })
                .map(|(level, _)| level)
        };
        let loudest = self
            .tracks
            .values()
            .filter_map(|t| level(t).map(|l| (t.publisher, l)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let current = self.speaker.and_then(|p| {
            self.tracks
                .values()
                .filter(|t| t.publisher == p)
                .find_map(level)
        });
        self.speaker = match (loudest, current) {
            (Some((p, l)), Some(c)) if l > c + SPEAKER_MARGIN => Some(p),
            (_, Some(_)) => self.speaker,
            (Some((p, _)), None) => Some(p),
            (None, None) => self.speaker,
        };
        self.speaker
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
        let cost = packet.payload.len() as u64 + PACKET_OVERHEAD;
        published.packets += 1;
        published.bytes += packet.payload.len() as u64;
        published.meter.add(now, cost);
        let video = published.kind == Kind::Video;
        if video {
            let layer = published.layer(now, packet.spatial);
            layer.last_packet = now;
            let tid = packet
                .temporal
                .map_or(Layer::ALL_TEMPORAL, |(t, _)| t.min(Layer::ALL_TEMPORAL));
            layer.meters[usize::from(tid)].add(now, cost);
            if packet.keyframe {
                layer.keyframes.on_keyframe();
            }
        } else if let Some(level) = packet.audio_level {
            let loudness = 127.0 - f32::from(level.clamp(0, 127));
            let smoothed = published
                .speech
                .map_or(loudness, |(s, _)| s + 0.1 * (loudness - s));
            published.speech = Some((smoothed, now));
        }
        let layer_packet = LayerPacket {
            spatial: packet.spatial,
            temporal: packet.temporal.map(|(t, _)| t),
            layer_sync: packet.temporal.is_some_and(|(_, y)| y),
            keyframe: packet.keyframe,
            picture: packet.vp8.and_then(|f| f.picture_id).map(|(p, _)| p),
        };
        // Keyframes wanted, per spatial layer.
        let mut want_keyframe: Option<u8> = None;
        for ((subscriber, track), sub) in self.subscriptions.iter_mut() {
            if *track != packet.track || !sub.active {
                continue;
            }
            if sub.rewriter.is_stale(&packet.source) {
                continue;
            }
            if video {
                match sub.selector.on_packet(&layer_packet) {
                    Verdict::Forward { .. } => {}
                    Verdict::Skip => {
                        sub.stats.skipped_temporal += 1;
                        sub.rewriter.skip(&packet.source);
                        if let Some(f) = packet.vp8 {
                            sub.vp8.skip(f);
                        }
                        continue;
                    }
                    Verdict::Drop { need_keyframe } => {
                        sub.rewriter.withhold(&packet.source);
                        if need_keyframe {
                            sub.stats.dropped_waiting_keyframe += 1;
                            want_keyframe = Some(packet.spatial);
                        }
                        continue;
                    }
                }
                sub.stats.layer = sub.selector.current();
                sub.stats.layer_switches = sub.selector.switches();
            }
            let new_source = sub.rewriter.is_new_source(&packet.source);
            if video && new_source && !packet.keyframe {
                // The publisher restarted this layer: wait for its keyframe.
                sub.stats.dropped_waiting_keyframe += 1;
                want_keyframe = Some(packet.spatial);
                continue;
            }
            let Ok(rewritten) = sub.rewriter.rewrite(&packet.source) else {
                continue;
            };
            sub.stats.source_switches = sub.rewriter.switches();
            sub.stats.seq_gaps = sub.rewriter.gaps();
            sub.stats.packets += 1;
            sub.stats.bytes += packet.payload.len() as u64;
            sub.meter.add(now, cost);
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
        if let Some(spatial) = want_keyframe {
            published.request_keyframe(now, packet.track, spatial, KeyframeKind::Pli, out);
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
        let Some(sub) = self.subscriptions.get(&(subscriber, track)) else {
            return;
        };
        let layer = sub.selector.current().or(sub.selector.target());
        let Some(layer) = layer.filter(|_| sub.active) else {
            return;
        };
        if let Some(published) = self.tracks.get_mut(&track) {
            published.request_keyframe(now, track, layer.spatial, kind, out);
        }
    }

    /// Time passes: held-back keyframe requests go out when due.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        for (track, published) in self.tracks.iter_mut() {
            for (spatial, layer) in published.layers.iter_mut() {
                if let Some(kind) = layer.keyframes.poll(now) {
                    out.push(Action::RequestKeyframe {
                        publisher: published.publisher,
                        track: *track,
                        layer: *spatial,
                        kind,
                    });
                }
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
            spatial: 0,
            temporal: None,
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

    /// The outgoing sequence numbers forwarded to `subscriber`.
    fn seqs_to(subscriber: ParticipantId, actions: &[Action]) -> Vec<u64> {
        forwards(actions)
            .into_iter()
            .filter(|(s, _)| *s == subscriber)
            .map(|(_, seq)| seq)
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
    fn simulcast_switches_layers_only_at_a_keyframe_of_the_target_and_stays_continuous() {
        let t0 = Instant::now();
        let mut room = room_with_three(t0);
        let layer_packet = |spatial: u8, seq: u64, keyframe: bool| {
            let mut p = packet(VIDEO_A, 100 + u32::from(spatial), seq, t0, keyframe);
            p.spatial = spatial;
            p
        };
        let mut out = vec![];
        // B starts on the lowest layer at its keyframe; packets of the other layers are not forwarded.
        room.on_packet(t0, &layer_packet(0, 1, true), &mut out);
        room.on_packet(t0, &layer_packet(1, 1, true), &mut out);
        room.on_packet(t0, &layer_packet(0, 2, false), &mut out);
        assert_eq!(seqs_to(B, &out), vec![200, 201]);
        out.clear();
        // The allocator raises B to h: a keyframe request goes to the publisher for layer 1.
        room.set_target(t0, B, VIDEO_A, Some(Layer::full(1)), &mut out);
        assert!(
            out.iter().any(|a| matches!(
                a,
                Action::RequestKeyframe {
                    layer: 1,
                    track: VIDEO_A,
                    ..
                }
            )),
            "{out:?}"
        );
        out.clear();
        // Until h's keyframe, B keeps receiving q.
        room.on_packet(t0, &layer_packet(1, 2, false), &mut out);
        room.on_packet(t0, &layer_packet(0, 3, false), &mut out);
        assert_eq!(seqs_to(B, &out), vec![202]);
        out.clear();
        room.on_packet(t0, &layer_packet(1, 3, true), &mut out);
        room.on_packet(t0, &layer_packet(0, 4, false), &mut out);
        room.on_packet(t0, &layer_packet(1, 4, false), &mut out);
        assert_eq!(
            seqs_to(B, &out),
            vec![203, 204],
            "h from its keyframe on, q no more"
        );
        let stats = room.subscription_stats(B, VIDEO_A).unwrap();
        assert_eq!(stats.layer, Some(Layer::full(1)));
        assert_eq!(stats.layer_switches, 1);
        // C was never moved and still receives q only.
        assert_eq!(
            room.subscription_stats(C, VIDEO_A).unwrap().layer,
            Some(Layer::full(0))
        );
        // The ladder offers the layers that sent lately (here h cost less than q, so h alone), and
        // none once the publisher has been silent for longer than the layer timeout.
        let ladder = room.ladder(t0 + Duration::from_millis(200), VIDEO_A, u64::MAX);
        assert_eq!(ladder.len(), 1);
        assert_eq!(ladder[0].layer, Layer::full(1));
        assert!(
            room.ladder(t0 + LAYER_TIMEOUT, VIDEO_A, u64::MAX)
                .is_empty()
        );
    }

    #[test]
    fn a_layer_paused_by_dynacast_is_offered_in_simulcast_but_not_beside_an_adaptive_layer() {
        let t0 = Instant::now();
        let mut room = room_with_three(t0);
        let mut out = vec![];
        for s in [B, C] {
            room.set_target(t0, s, VIDEO_A, Some(Layer::full(2)), &mut out);
        }
        // Subscribers behind different lines: simulcast.
        let own = |p: ParticipantId| Some((Bottleneck::Own(p.0), 1_000_000));
        // The publisher sends q, h and f, h only for its first 0.4 s: nobody receives it, and
        // dynacast pauses it a grace period after the first steering (at 1 s).
        let t1 = t0 + Duration::from_secs(1);
        let t2 = t1 + crate::core::dynacast::PAUSE_AFTER;
        let mut seq = 0;
        let mut at = t0;
        while at <= t2 {
            for spatial in [0u8, 1, 2] {
                if spatial == 1 && at > t0 + Duration::from_millis(400) {
                    continue;
                }
                seq += 1;
                let mut p = packet(VIDEO_A, 100 + u32::from(spatial), seq, at, at == t0);
                p.spatial = spatial;
                // q, h and f cost 1, 3 and 9 times as much.
                p.payload = Arc::from(vec![0; 100 * 3usize.pow(u32::from(spatial))]);
                room.on_packet(at, &p, &mut out);
            }
            if at == t1 {
                room.steer(at, VIDEO_A, own);
            }
            at += Duration::from_millis(20);
        }
        let offered = |room: &mut Room| -> Vec<u8> {
            let mut l: Vec<u8> = room
                .ladder(t2, VIDEO_A, 1_000_000)
                .iter()
                .map(|r| r.layer.spatial)
                .collect();
            l.dedup();
            l
        };
        // Paused, h is still offered at its last cost, so that a subscriber can ask for it back.
        room.steer(t2, VIDEO_A, own);
        assert_eq!(room.steering_mode(VIDEO_A), Some(Mode::Simulcast));
        assert_eq!(offered(&mut room), vec![0, 1, 2]);
        // Both behind the county's line: one adaptive layer, and h is no longer offered (its cost
        // is stale, and the adaptive layer serves everything between the fallback and the top).
        let site = |_: ParticipantId| Some((Bottleneck::Site("county".into()), 1_000_000));
        room.steer(t2, VIDEO_A, site);
        assert_eq!(room.steering_mode(VIDEO_A), Some(Mode::Adaptive));
        assert_eq!(offered(&mut room), vec![0, 2]);
    }

    #[test]
    fn a_paused_subscriber_resumes_on_the_same_layer_without_a_sequence_gap() {
        let t0 = Instant::now();
        let mut room = room_with_three(t0);
        let mut out = vec![];
        room.on_packet(t0, &packet(VIDEO_A, 100, 1, t0, true), &mut out);
        room.on_packet(t0, &packet(VIDEO_A, 100, 2, t0, false), &mut out);
        assert_eq!(seqs_to(B, &out), vec![200, 201]);
        // B goes audio-only: the layer's packets 3..=40 are withheld from it.
        room.set_target(t0, B, VIDEO_A, None, &mut out);
        out.clear();
        for seq in 3..=40 {
            room.on_packet(t0, &packet(VIDEO_A, 100, seq, t0, false), &mut out);
        }
        assert!(seqs_to(B, &out).is_empty());
        // Back on the same layer: from its next keyframe, right after 201 (a gap would be NACKed
        // for packets the relay never sent).
        room.set_target(t0, B, VIDEO_A, Some(Layer::full(0)), &mut out);
        out.clear();
        room.on_packet(t0, &packet(VIDEO_A, 100, 41, t0, false), &mut out);
        room.on_packet(t0, &packet(VIDEO_A, 100, 42, t0, true), &mut out);
        room.on_packet(t0, &packet(VIDEO_A, 100, 43, t0, false), &mut out);
        assert_eq!(seqs_to(B, &out), vec![202, 203]);
        assert_eq!(room.subscription_stats(B, VIDEO_A).unwrap().seq_gaps, 0);
    }

    #[test]
    fn the_loudest_speaker_becomes_active_with_a_margin() {
        let t0 = Instant::now();
        let mut room = room_with_three(t0);
        let audio_b = TrackId(20);
        room.publish(audio_b, B, Kind::Audio);
        let mut out = vec![];
        let mut talk = |room: &mut Room, track: TrackId, level: i8, at: Instant| {
            for i in 0..20u64 {
                let mut p = packet(track, 1, i, at, false);
                p.audio_level = Some(level);
                room.on_packet(at, &p, &mut out);
            }
        };
        assert_eq!(room.active_speaker(t0), None);
        talk(&mut room, AUDIO_A, 30, t0);
        assert_eq!(room.active_speaker(t0), Some(A));
        // B a little louder: not enough to take over.
        talk(&mut room, audio_b, 27, t0);
        assert_eq!(room.active_speaker(t0), Some(A));
        // B clearly louder.
        talk(&mut room, audio_b, 15, t0);
        assert_eq!(room.active_speaker(t0), Some(B));
        // B falls silent (DTX: no packets); A speaks on.
        let t1 = t0 + Duration::from_secs(1);
        talk(&mut room, AUDIO_A, 30, t1);
        assert_eq!(room.active_speaker(t1), Some(A));
    }

    #[test]
    fn an_echo_room_sends_a_publisher_its_own_tracks() {
        let now = Instant::now();
        let mut room = Room::echo();
        let me = ParticipantId(1);
        room.join(me, "line test".into());
        assert_eq!(room.publish(TrackId(1), me, Kind::Audio), vec![me]);
        let mut out = vec![];
        room.subscribe(now, me, TrackId(1), 48_000, 100, &mut out);
        room.on_packet(now, &packet(TrackId(1), 7, 1, now, false), &mut out);
        assert_eq!(forwards(&out), vec![(me, 100)]);
        // An ordinary room never does.
        let mut room = Room::new();
        room.join(me, "doctor".into());
        assert!(room.publish(TrackId(1), me, Kind::Audio).is_empty());
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
