//! A worker thread: owns the sessions of the participants in its rooms and the rooms' forwarding
//! cores, feeds them datagrams and time, and carries out the cores' actions.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use str0m::bwe::{Bitrate, BweKind};
use str0m::media::{Direction, KeyframeRequestKind};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite, Vp8Descriptor};
use str0m::{Event, Input, Output};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::budget::LineBudgets;
use crate::config::RelayConfig;
use crate::core::allocator::{Inputs, Priority, Reason, VideoTrack};
use crate::core::keyframe::KeyframeKind;
use crate::core::layer_selector::vp8_temporal;
use crate::core::line_budget::Demand;
use crate::core::rewrite::{SourcePacket, Vp8Fields};
use crate::core::room::{
    Action, InPacket, Kind, MemberInfo, OutPacket, ParticipantId, Room, TrackId,
};
use crate::core::steering::{ADAPTIVE_MAX_BPS, Bottleneck, LAYERS, Mode, adaptive_room_range};
use crate::net::{Datagram, Net, Route, Router, Transport};
use crate::peer::{Peer, STATS_INTERVAL, clock_rate, kind_of, spatial_of};
use crate::relay::{
    JoinOptions, LayerActivity, LeaveReason, MediaState, ParticipantStats, PublishedStats,
    QualityReport, ReceivedStats, RelayCounters, RelayError, RelayEvent, VideoQuality,
};

/// The longest a worker sleeps without looking at its sessions.
const MAX_SLEEP: Duration = Duration::from_millis(100);
/// Messages handled between two drives of the sessions.
const BATCH: usize = 256;
/// What REMB leaves a steered publisher for its audio beside the video layers' total, bit/s (Opus
/// with FEC at its highest, with headers).
const REMB_AUDIO_BPS: u64 = 64_000;
/// How often every subscriber's allocation is revisited (also at every new estimate).
const ALLOCATION_INTERVAL: Duration = Duration::from_millis(200);
/// A quality report goes out when the layers or the reason change, or when the estimate moved this much
/// (relative) and the last report is older than [`REPORT_MIN_INTERVAL`].
const REPORT_ESTIMATE_CHANGE: f64 = 0.15;
const REPORT_MIN_INTERVAL: Duration = Duration::from_secs(2);
/// What a line test asks str0m's estimator to probe for. The pacer pads only up to the current
/// estimate, and the estimate climbs by probing while the line keeps up, so this is a ceiling, not a
/// rate sent.
const LINE_TEST_PROBE_BPS: u64 = 50_000_000;

type Reply<T> = oneshot::Sender<Result<T, RelayError>>;

/// A message to a worker.
#[derive(Debug)]
pub enum WorkerMsg {
    /// A participant joins a room on this worker.
    Join {
        /// Room name.
        room: String,
        /// The new participant.
        participant: ParticipantId,
        /// Its name, site and priority.
        options: JoinOptions,
        /// Its signaling session's event channel.
        events: mpsc::UnboundedSender<RelayEvent>,
        /// The others in the room, or why not.
        reply: Reply<Vec<MemberInfo>>,
    },
    /// The participant's SDP offer.
    Offer {
        /// Who.
        participant: ParticipantId,
        /// SDP.
        sdp: String,
        /// Done (the answer goes out as an event) or why not.
        reply: Reply<()>,
    },
    /// The participant's SDP answer.
    Answer {
        /// Who.
        participant: ParticipantId,
        /// SDP.
        sdp: String,
        /// Done or why not.
        reply: Reply<()>,
    },
    /// A trickled ICE candidate.
    Candidate {
        /// Who.
        participant: ParticipantId,
        /// The `candidate:` line.
        candidate: String,
        /// Done or why not.
        reply: Reply<()>,
    },
    /// The participant leaves.
    Leave {
        /// Who.
        participant: ParticipantId,
        /// Why.
        reason: LeaveReason,
    },
    /// A datagram for one of this worker's participants.
    Datagram(Datagram),
    /// Stop the worker.
    Shutdown,
}

/// What a worker shares with the rest of the relay.
pub struct WorkerContext {
    /// Its index.
    pub index: usize,
    /// Configuration.
    pub config: RelayConfig,
    /// Sockets.
    pub net: Arc<Net>,
    /// Datagram routing.
    pub router: Arc<Router>,
    /// Counters.
    pub counters: Arc<RelayCounters>,
    /// The sites' line budgets, shared by all workers.
    pub budgets: Arc<LineBudgets>,
    /// Per-participant statistics, shared with the relay handle.
    pub participants:
        Arc<std::sync::Mutex<std::collections::BTreeMap<ParticipantId, ParticipantStats>>>,
}

struct Worker {
    ctx: WorkerContext,
    udp_public: Option<SocketAddr>,
    tcp_public: Option<SocketAddr>,
    peers: HashMap<ParticipantId, Peer>,
    rooms: HashMap<String, Room>,
    next_track: u64,
    dirty: HashSet<ParticipantId>,
    doomed: Vec<(ParticipantId, LeaveReason)>,
    actions: Vec<Action>,
    next_allocation: Instant,
    next_stats: Instant,
}

/// The worker thread's main loop.
pub fn run(ctx: WorkerContext, rx: Receiver<WorkerMsg>) {
    let advertised = |bound: Option<SocketAddr>| {
        bound.map(|b| SocketAddr::new(ctx.config.public_ip.unwrap_or(b.ip()), b.port()))
    };
    let mut w = Worker {
        udp_public: advertised(ctx.net.udp_addr()),
        tcp_public: advertised(ctx.net.tcp_addr()),
        ctx,
        peers: HashMap::new(),
        rooms: HashMap::new(),
        next_track: 1,
        dirty: HashSet::new(),
        doomed: vec![],
        actions: vec![],
        next_allocation: Instant::now(),
        next_stats: Instant::now(),
    };
    loop {
        let now = Instant::now();
        let deadline = w
            .peers
            .values()
            .map(|p| p.next_timeout)
            .min()
            .unwrap_or(now + MAX_SLEEP)
            .clamp(now, now + MAX_SLEEP);
        match rx.recv_deadline(deadline) {
            Ok(WorkerMsg::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
            Ok(msg) => w.handle(msg),
            Err(RecvTimeoutError::Timeout) => {}
        }
        for _ in 0..BATCH {
            match rx.try_recv() {
                Ok(WorkerMsg::Shutdown) => {
                    w.close_all();
                    return;
                }
                Ok(msg) => w.handle(msg),
                Err(_) => break,
            }
        }
        w.drive(Instant::now());
    }
    w.close_all();
}

/// Run `f` on a session, turning a panic inside str0m into a removal of that one session.
fn guarded<T>(counters: &RelayCounters, id: ParticipantId, f: impl FnOnce() -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(_) => {
            counters.peer_panics.fetch_add(1, Ordering::Relaxed);
            warn!(participant = %id, "WebRTC session panicked; removing it");
            None
        }
    }
}

fn keyframe_kind(kind: KeyframeKind) -> KeyframeRequestKind {
    match kind {
        KeyframeKind::Pli => KeyframeRequestKind::Pli,
        KeyframeKind::Fir => KeyframeRequestKind::Fir,
    }
}

impl Worker {
    fn handle(&mut self, msg: WorkerMsg) {
        let now = Instant::now();
        match msg {
            WorkerMsg::Join {
                room,
                participant,
                options,
                events,
                reply,
            } => {
                let _ = reply.send(self.join(now, room, participant, options, events));
            }
            WorkerMsg::Offer {
                participant,
                sdp,
                reply,
            } => {
                let r = self.with_peer(participant, |p| p.accept_offer(&sdp));
                let _ = reply.send(r);
            }
            WorkerMsg::Answer {
                participant,
                sdp,
                reply,
            } => {
                let r = self.with_peer(participant, |p| p.accept_answer(&sdp));
                let r = r.map(|opened| self.open_subscriptions(now, participant, opened));
                let _ = reply.send(r);
            }
            WorkerMsg::Candidate {
                participant,
                candidate,
                reply,
            } => {
                let r = self.with_peer(participant, |p| p.add_remote_candidate(&candidate));
                let _ = reply.send(r);
            }
            WorkerMsg::Leave {
                participant,
                reason,
            } => self.remove(participant, reason),
            WorkerMsg::Datagram(d) => self.receive(d),
            WorkerMsg::Shutdown => {}
        }
    }

    fn with_peer<T>(
        &mut self,
        id: ParticipantId,
        f: impl FnOnce(&mut Peer) -> Result<T, RelayError>,
    ) -> Result<T, RelayError> {
        let peer = self.peers.get_mut(&id).ok_or(RelayError::NotInRoom)?;
        self.dirty.insert(id);
        match guarded(&self.ctx.counters, id, || f(peer)) {
            Some(r) => r,
            None => {
                self.doomed.push((id, LeaveReason::Disconnected));
                Err(RelayError::Unavailable)
            }
        }
    }

    fn join(
        &mut self,
        now: Instant,
        room_name: String,
        id: ParticipantId,
        options: JoinOptions,
        events: mpsc::UnboundedSender<RelayEvent>,
    ) -> Result<Vec<MemberInfo>, RelayError> {
        let JoinOptions {
            display_name,
            site,
            emergency,
            line_test,
        } = options;
        let max = if line_test {
            1
        } else {
            self.ctx.config.max_participants_per_room
        };
        if self.rooms.get(&room_name).is_some_and(|r| r.len() >= max) {
            return Err(RelayError::RoomFull(max));
        }
        let mut peer = Peer::new(
            now,
            id,
            room_name.clone(),
            events,
            self.udp_public,
            self.tcp_public,
        )?;
        peer.site = site;
        peer.emergency = emergency;
        peer.line_test = line_test;
        self.ctx.router.register(
            &peer.ufrag,
            Route {
                worker: self.ctx.index,
                participant: id,
            },
        );
        let room = self.rooms.entry(room_name).or_insert_with(|| {
            self.ctx.counters.rooms.fetch_add(1, Ordering::Relaxed);
            if line_test { Room::echo() } else { Room::new() }
        });
        let others = room.members();
        for track in room.join(id, display_name.clone()) {
            if let Some((publisher, kind)) = room.track(track) {
                peer.add_receive(track, publisher, kind);
            }
        }
        for other in &others {
            if let Some(p) = self.peers.get(&other.id) {
                p.send(RelayEvent::ParticipantJoined(MemberInfo {
                    id,
                    display_name: display_name.clone(),
                }));
            }
        }
        self.peers.insert(id, peer);
        self.ctx
            .counters
            .participants
            .fetch_add(1, Ordering::Relaxed);
        info!(participant = %id, "joined a room");
        Ok(others)
    }

    fn open_subscriptions(
        &mut self,
        now: Instant,
        id: ParticipantId,
        opened: Vec<crate::peer::RecvTrack>,
    ) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&peer.room) else {
            return;
        };
        for r in opened {
            // The outgoing stream starts at a sequence number derived from its SSRC: unpredictable enough,
            // and inside the first roll-over period.
            let start_seq = (r.track.0 as u16).wrapping_mul(7919)
                ^ (id.0 as u16).wrapping_mul(104_729u32 as u16);
            room.subscribe(
                now,
                id,
                r.track,
                clock_rate(r.kind),
                start_seq,
                &mut self.actions,
            );
        }
        self.execute();
    }

    fn remove(&mut self, id: ParticipantId, reason: LeaveReason) {
        let Some(mut peer) = self.peers.remove(&id) else {
            return;
        };
        self.dirty.remove(&id);
        self.ctx.router.unregister(id);
        self.ctx
            .counters
            .participants
            .fetch_sub(1, Ordering::Relaxed);
        let _ = guarded(&self.ctx.counters, id, || peer.rtc.disconnect());
        if let Some(site) = &peer.site {
            self.ctx.budgets.remove(site, id);
        }
        self.ctx
            .participants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        match reason {
            LeaveReason::IceTimeout => {
                peer.send(RelayEvent::MediaState(MediaState::Failed));
                peer.send(RelayEvent::Removed { reason });
            }
            LeaveReason::TimeLimit => peer.send(RelayEvent::Removed { reason }),
            LeaveReason::Left | LeaveReason::Disconnected => {}
        }
        info!(participant = %id, ?reason, "left its room");
        let Some(room) = self.rooms.get_mut(&peer.room) else {
            return;
        };
        let gone = room.leave(id);
        for member in room.members() {
            if let Some(p) = self.peers.get_mut(&member.id) {
                for track in &gone {
                    p.remove_receive(*track);
                }
                p.send(RelayEvent::ParticipantLeft {
                    participant: id,
                    reason,
                });
            }
        }
        if room.is_empty() {
            self.rooms.remove(&peer.room);
            self.ctx.counters.rooms.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn receive(&mut self, d: Datagram) {
        let Some(peer) = self.peers.get_mut(&d.participant) else {
            return;
        };
        let Ok(contents) = d.data.as_slice().try_into() else {
            debug!(participant = %d.participant, "dropping an unrecognised datagram");
            return;
        };
        // str0m accepts a packet only for one of its local candidates, which carry the advertised
        // address (`public_ip`: NAT, or a link emulator in front of the relay), not the bound one.
        let (proto, advertised) = match d.transport {
            Transport::Udp => (Protocol::Udp, self.udp_public),
            Transport::Tcp => (Protocol::Tcp, self.tcp_public),
        };
        let input = Input::Receive(
            d.received,
            Receive {
                proto,
                source: d.source,
                destination: advertised.unwrap_or(d.destination),
                contents,
            },
        );
        match guarded(&self.ctx.counters, d.participant, || {
            peer.rtc.handle_input(input)
        }) {
            Some(Ok(())) => {}
            Some(Err(e)) => debug!(participant = %d.participant, "input refused: {e}"),
            None => self.doomed.push((d.participant, LeaveReason::Disconnected)),
        }
        // str0m requires a full drain of its output after every input: in RTP mode it holds only one
        // received packet for pickup, so a second input before polling would overwrite the first.
        self.dirty.insert(d.participant);
        self.flush(Instant::now());
    }

    /// Drive every session that has something to do: time, output, events; then negotiation and
    /// lifecycle.
    fn drive(&mut self, now: Instant) {
        let due: Vec<ParticipantId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.next_timeout <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(peer) = self.peers.get_mut(&id) {
                if let Some(Err(e)) = guarded(&self.ctx.counters, id, || {
                    peer.rtc.handle_input(Input::Timeout(now))
                }) {
                    debug!(participant = %id, "timeout: {e}");
                }
                self.dirty.insert(id);
                self.flush(now);
            }
        }
        let mut ticks = vec![];
        for room in self.rooms.values_mut() {
            room.tick(now, &mut ticks);
        }
        self.actions.extend(ticks);
        self.execute();
        if now >= self.next_allocation {
            self.next_allocation = now + ALLOCATION_INTERVAL;
            let ids: Vec<ParticipantId> = self.peers.keys().copied().collect();
            for id in ids {
                self.allocate(now, id);
            }
            self.steer(now, None);
        }
        if now >= self.next_stats {
            self.next_stats = now + STATS_INTERVAL;
            self.publish_stats(now);
        }
        self.flush(now);
        for peer in self.peers.values_mut() {
            peer.negotiate();
        }
        self.lifecycle(now);
    }

    /// Revisit one subscriber's allocation: its estimate, its share of its site's line, the layers of
    /// what it receives; set the layers, tell str0m what to probe for, and tell the participant when
    /// something changed.
    fn allocate(&mut self, now: Instant, id: ParticipantId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(estimate) = peer.downlink.estimate_bps else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&peer.room) else {
            return;
        };
        let speaker = room.active_speaker(now);
        let mut inputs = Inputs {
            estimate_bps: estimate,
            cap_bps: None,
            audio_bps: 0,
            video: vec![],
        };
        let subscriptions = room.subscriptions_of(id);
        for (track, _, kind) in &subscriptions {
            if *kind == Kind::Audio {
                inputs.audio_bps += room.track_bps(now, *track);
            }
        }
        // The room each video track has within `limit` (an adaptive layer is offered at what it would
        // be steered to in it).
        let videos = subscriptions
            .iter()
            .filter(|(_, _, kind)| *kind == Kind::Video)
            .count()
            .max(1) as u64;
        let audio_bps = inputs.audio_bps;
        let free_per_track = |limit: u64| limit.saturating_sub(audio_bps) / videos;
        for (track, publisher, kind) in &subscriptions {
            match kind {
                Kind::Audio => {}
                Kind::Video => inputs.video.push(VideoTrack {
                    track: *track,
                    priority: if Some(*publisher) == speaker {
                        Priority::Speaker
                    } else {
                        Priority::Video
                    },
                    ladder: room.ladder(now, *track, free_per_track(estimate)),
                }),
            }
        }
        // A line test measures the line, so it does not take a share of the site's budget.
        if let Some(site) = peer.site.as_ref().filter(|_| !peer.line_test) {
            // An adaptive layer can be steered anywhere between its floor and its ceiling: that is
            // its demand on the site's line, not what it costs this moment. So an emergency
            // consultation's layer takes what the line has, and another yields down to its floor.
            let (min_bps, max_bps) = inputs.demand(|track| {
                (room.steering_mode(track) == Some(Mode::Adaptive)).then(adaptive_room_range)
            });
            let demand = Demand {
                subscriber: id,
                emergency: peer.emergency,
                min_bps,
                max_bps,
            };
            let allocated = peer
                .downlink
                .allocation
                .as_ref()
                .map_or(0, |a| a.allocated_bps);
            let posted = self.ctx.budgets.post(site, demand, allocated, estimate);
            inputs.cap_bps = posted.cap_bps;
            // On a shared site line a small flow's own estimate can collapse beside a large one's
            // bursts while the line has room (`line_budget::floor`).
            inputs.estimate_bps = estimate.max(posted.floor_bps.unwrap_or(0));
        }
        let limit = inputs
            .cap_bps
            .map_or(inputs.estimate_bps, |cap| cap.min(inputs.estimate_bps));
        if limit != estimate {
            for v in &mut inputs.video {
                if room.steering_mode(v.track) == Some(Mode::Adaptive) {
                    v.ladder = room.ladder(now, v.track, free_per_track(limit));
                }
            }
        }
        let mut allocation = peer.downlink.allocator.allocate(now, &inputs);
        // Receiving the best a steered publisher sends is still limited by this line when the
        // publisher was steered below its ceiling: say which limit.
        if allocation.reason == Reason::Best
            && allocation.tracks.iter().any(|t| {
                room.steering_mode(t.track) == Some(Mode::Adaptive)
                    && room.steering_plan(t.track).is_some_and(|plan| {
                        plan.iter()
                            .max_by_key(|l| l.spatial)
                            .is_some_and(|top| top.max_bitrate_bps < ADAPTIVE_MAX_BPS)
                    })
            })
        {
            allocation.reason = match inputs.cap_bps {
                Some(cap) if cap < estimate => Reason::SiteBudget,
                _ => Reason::LineLimited,
            };
        }
        let video_bps: u64 = allocation.tracks.iter().map(|t| t.bps).sum();
        let free = allocation.available_bps.saturating_sub(inputs.audio_bps);
        peer.downlink.track_room = allocation
            .tracks
            .iter()
            .map(|t| (t.track, free.saturating_sub(video_bps - t.bps)))
            .collect();
        for t in &allocation.tracks {
            room.set_target(now, id, t.track, t.layer, &mut self.actions);
        }
        // Ask str0m's estimator to probe for one step up (the allocation's probe target). No padding
        // minimum while media flows: on a county line padding would take the room of media (see
        // docs/architecture.md); a paused adaptive layer is the exception (below).
        // A line test instead pads up to the estimate (str0m caps padding there) and probes far
        // beyond it, so that the estimate climbs to what the line carries.
        // A track sent as one adaptive layer has no step above it: the layer grows as the estimate
        // does, so the estimator probes for what that layer could use (within the site's share),
        // as a peer-to-peer call probes up to its encoder's maximum. What is sent cannot lead:
        // a camera at a lower resolution may not need all it is allowed.
        let adaptive: u64 = allocation
            .tracks
            .iter()
            .filter(|t| room.steering_mode(t.track) == Some(Mode::Adaptive))
            .map(|_| ADAPTIVE_MAX_BPS)
            .sum();
        let (minimum, probe) = if peer.line_test {
            (LINE_TEST_PROBE_BPS, LINE_TEST_PROBE_BPS)
        } else if adaptive > 0 {
            let cap = inputs.cap_bps.unwrap_or(u64::MAX);
            let ceiling = (inputs.audio_bps + adaptive).min(cap);
            // A paused adaptive layer pads towards the room it needs to come back (within the
            // site's share): with only audio to measure, each congestion event leaves the
            // estimate at audio's rate, and nothing would lift it again. Padding, unlike a probe,
            // never goes beyond the estimate, so it lets the estimate grow gently.
            let paused = allocation
                .tracks
                .iter()
                .any(|t| t.layer.is_none() && room.steering_mode(t.track) == Some(Mode::Adaptive));
            let minimum = if paused {
                (inputs.audio_bps + adaptive_room_range().0).min(cap)
            } else {
                0
            };
            (minimum, allocation.probe_bps.max(ceiling))
        } else {
            (0, allocation.probe_bps)
        };
        // An adaptive layer's subscriber probes its line again now and then (see
        // `core::probing`): the desired bitrate goes down to the estimate for this round, and back
        // up (an allocation probe) at the next.
        let alone = peer
            .site
            .as_ref()
            .is_none_or(|site| !self.ctx.budgets.shared(site));
        let probe = if adaptive > 0
            && alone
            && !peer.line_test
            && peer.downlink.reprobe.due(now, estimate, probe)
        {
            estimate
        } else {
            probe
        };
        if probe.abs_diff(peer.downlink.probe_bps) * 20 > peer.downlink.probe_bps
            || minimum.abs_diff(peer.downlink.padding_bps) * 20 > peer.downlink.padding_bps
        {
            peer.downlink.padding_bps = minimum;
            peer.downlink.probe_bps = probe;
            peer.rtc
                .bwe()
                .set_bitrate(Bitrate::bps(minimum), Bitrate::bps(probe));
            self.dirty.insert(id);
        }
        let layer_name = |l: Option<crate::core::layer_selector::Layer>| l.map(|l| l.to_string());
        let report = QualityReport {
            estimate_kbps: estimate / 1000,
            available_kbps: allocation.available_bps / 1000,
            allocated_kbps: allocation.allocated_bps / 1000,
            reason: allocation.reason,
            video: subscriptions
                .iter()
                .filter(|(_, _, kind)| *kind == Kind::Video)
                .map(|(track, publisher, _)| {
                    let stats = room.subscription_stats(id, *track).unwrap_or_default();
                    VideoQuality {
                        participant_id: publisher.to_string(),
                        layer: layer_name(stats.layer),
                        target: layer_name(stats.target),
                    }
                })
                .collect(),
        };
        let due = match &peer.downlink.reported {
            None => true,
            Some((last, at)) => {
                last.reason != report.reason
                    || last.video != report.video
                    || (now.saturating_duration_since(*at) >= REPORT_MIN_INTERVAL
                        && (report.estimate_kbps as f64 - last.estimate_kbps as f64).abs()
                            > last.estimate_kbps as f64 * REPORT_ESTIMATE_CHANGE)
            }
        };
        if due {
            debug!(participant = %id, ?report, "quality");
            peer.send(RelayEvent::Quality(report.clone()));
            peer.downlink.reported = Some((report, now));
        }
        peer.downlink.allocation = Some(allocation);
        self.execute();
    }

    /// Tell publishers how to send each simulcast layer: which ones somebody needs (dynacast), and
    /// at what bitrate and resolution for the lines of their subscribers (end-to-end rate control).
    /// A line test's own video is left at the defaults: it measures what the uplink carries. With
    /// `steering` off, dynacast alone. `only`: just that room's tracks. With `remb` on, REMB also
    /// carries each publisher's total.
    fn steer(&mut self, now: Instant, only: Option<&str>) {
        let remb = self.ctx.config.remb;
        let mut rembs = vec![];
        let rooms = self
            .rooms
            .iter_mut()
            .filter(|(name, _)| only.is_none_or(|o| o == name.as_str()));
        for (_, room) in rooms {
            for (track, publisher) in room.video_tracks() {
                let Some(peer) = self.peers.get(&publisher) else {
                    continue;
                };
                // Only simulcast tracks (with RIDs) are steered: a single layer has no RID to name,
                // and a plan recorded for it would cap its cost in the allocator's ladder.
                let Some(published) = peer
                    .published
                    .iter()
                    .find(|p| p.track == track && !p.rids.is_empty())
                else {
                    continue;
                };
                if peer.line_test {
                    continue;
                }
                let peers = &self.peers;
                let steering = self.ctx.config.steering;
                // Without steering no subscriber's line is known: every layer at its default.
                let line = |subscriber: ParticipantId| {
                    let p = peers.get(&subscriber).filter(|_| steering)?;
                    let bottleneck = match &p.site {
                        Some(site) => Bottleneck::Site(site.clone()),
                        None => Bottleneck::Own(subscriber.0),
                    };
                    Some((bottleneck, *p.downlink.track_room.get(&track)?))
                };
                let Some(plan) = room.steer(now, track, line) else {
                    continue;
                };
                let layers: Vec<LayerActivity> = plan
                    .iter()
                    .filter_map(|l| {
                        let (_, rid) = published.rids.iter().find(|(s, _)| *s == l.spatial)?;
                        Some(LayerActivity {
                            rid: rid.to_string(),
                            active: l.active,
                            max_bitrate_bps: l.max_bitrate_bps,
                            scale_resolution_down_by: l.scale_resolution_down_by,
                        })
                    })
                    .collect();
                // REMB caps all a publisher sends (Chromium applies it to the whole connection), so
                // it is used only for a publisher whose one video track is this steered one, and only
                // once all its layers were seen: a total capped to the layers the relay knows keeps
                // Chromium from ever starting the ones above (measured: stuck at 180p).
                let one_video_track = || {
                    peer.published
                        .iter()
                        .filter(|p| p.kind == Kind::Video)
                        .count()
                        == 1
                };
                if remb && published.rids.len() >= LAYERS.len() && one_video_track() {
                    let video: u64 = plan
                        .iter()
                        .filter(|l| l.active)
                        .map(|l| l.max_bitrate_bps)
                        .sum();
                    let rid = published
                        .rids
                        .iter()
                        .max_by_key(|(s, _)| *s)
                        .map(|(_, r)| *r);
                    rembs.push((publisher, published.mid, rid, video + REMB_AUDIO_BPS));
                }
                if !layers.is_empty() {
                    debug!(participant = %publisher, mode = ?room.steering_mode(track), ?layers, "steering");
                    peer.send(RelayEvent::PublisherLayers {
                        mid: published.mid.to_string(),
                        layers,
                    });
                }
            }
        }
        for (publisher, mid, rid, bps) in rembs {
            let Some(peer) = self.peers.get_mut(&publisher) else {
                continue;
            };
            if let Some(rx) = peer.rtc.direct_api().stream_rx_by_mid(mid, rid) {
                debug!(participant = %publisher, bps, "REMB");
                rx.request_remb(Bitrate::bps(bps));
                self.dirty.insert(publisher);
            }
        }
    }

    /// Refresh the shared per-participant statistics of this worker's participants.
    fn publish_stats(&mut self, now: Instant) {
        let mut snapshots = vec![];
        for (id, peer) in &self.peers {
            let Some(room) = self.rooms.get_mut(&peer.room) else {
                continue;
            };
            let received = room
                .subscriptions_of(*id)
                .into_iter()
                .map(|(track, publisher, kind)| {
                    let sub = room.subscription_stats(*id, track).unwrap_or_default();
                    let egress = peer
                        .open_mid(track)
                        .and_then(|mid| peer.downlink.egress.get(&mid));
                    ReceivedStats {
                        publisher: publisher.to_string(),
                        kind,
                        bps: room.subscription_bps(now, *id, track),
                        layer: sub.layer.map(|l| l.to_string()),
                        target: sub.target.map(|l| l.to_string()),
                        layer_switches: sub.layer_switches,
                        seq_gaps: sub.seq_gaps,
                        nacks: egress.map_or(0, |e| e.nacks),
                        plis: egress.map_or(0, |e| e.plis),
                        rtt_ms: egress.and_then(|e| e.rtt).map(|d| d.as_secs_f64() * 1000.0),
                        loss: egress.and_then(|e| e.loss),
                    }
                })
                .collect();
            let mut published: Vec<PublishedStats> = peer
                .ingress
                .iter()
                .filter_map(|((mid, rid), s)| {
                    let p = peer.published.iter().find(|p| p.mid == *mid)?;
                    let spatial = spatial_of(rid.as_ref());
                    let steered_bps = room
                        .steering_plan(p.track)
                        .and_then(|plan| plan.iter().find(|l| l.spatial == spatial))
                        .map(|l| if l.active { l.max_bitrate_bps } else { 0 });
                    Some(PublishedStats {
                        kind: p.kind,
                        rid: rid.map(|r| r.to_string()),
                        bytes: s.bytes,
                        packets: s.packets,
                        nacks: s.nacks,
                        plis: s.plis,
                        loss: s.loss,
                        steered_bps: steered_bps.filter(|_| p.kind == Kind::Video),
                    })
                })
                .collect();
            published.sort_by(|a, b| (a.kind, &a.rid).cmp(&(b.kind, &b.rid)));
            let allocation = peer.downlink.allocation.as_ref();
            let session = peer.downlink.peer.as_ref();
            snapshots.push((
                *id,
                ParticipantStats {
                    participant: id.to_string(),
                    site: peer.site.clone(),
                    emergency: peer.emergency,
                    estimate_bps: peer.downlink.estimate_bps,
                    available_bps: allocation.map_or(0, |a| a.available_bps),
                    allocated_bps: allocation.map_or(0, |a| a.allocated_bps),
                    reason: allocation
                        .map_or(crate::core::allocator::Reason::NoVideo, |a| a.reason),
                    rtt_ms: session
                        .and_then(|s| s.rtt)
                        .map(|d| d.as_secs_f64() * 1000.0),
                    egress_loss: session.and_then(|s| s.egress_loss_fraction),
                    ingress_loss: session.and_then(|s| s.ingress_loss_fraction),
                    published,
                    received,
                },
            ));
        }
        let mut shared = self
            .ctx
            .participants
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (id, s) in snapshots {
            shared.insert(id, s);
        }
    }

    /// Drain the output of every session touched since the last flush and act on its events. Output of
    /// one session feeds others (forwarded packets, keyframe requests); go round until all are idle.
    fn flush(&mut self, now: Instant) {
        while !self.dirty.is_empty() {
            let dirty: Vec<ParticipantId> = self.dirty.drain().collect();
            for id in dirty {
                let mut events = vec![];
                self.poll(now, id, &mut events);
                for (id, event) in events {
                    self.on_event(now, id, event);
                }
            }
        }
    }

    fn poll(&mut self, now: Instant, id: ParticipantId, events: &mut Vec<(ParticipantId, Event)>) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let net = &self.ctx.net;
        let result = guarded(&self.ctx.counters, id, || {
            loop {
                if !peer.rtc.is_alive() {
                    return now;
                }
                match peer.rtc.poll_output() {
                    Ok(Output::Timeout(t)) => return t,
                    Ok(Output::Transmit(t)) => {
                        let transport = match t.proto {
                            Protocol::Udp => Transport::Udp,
                            _ => Transport::Tcp,
                        };
                        net.send(transport, t.destination, &t.contents);
                    }
                    Ok(Output::Event(e)) => events.push((id, e)),
                    Err(e) => {
                        debug!(participant = %id, "session error: {e}");
                        peer.rtc.disconnect();
                        return now;
                    }
                }
            }
        });
        match result {
            Some(t) => peer.next_timeout = t,
            None => self.doomed.push((id, LeaveReason::Disconnected)),
        }
    }

    fn on_event(&mut self, now: Instant, id: ParticipantId, event: Event) {
        match event {
            Event::IceConnectionStateChange(state) => {
                if let Some(peer) = self.peers.get_mut(&id)
                    && let Some(ms) = peer.on_ice_state(now, state)
                {
                    peer.send(RelayEvent::MediaState(ms));
                }
            }
            Event::MediaAdded(m) => {
                if matches!(m.direction, Direction::RecvOnly | Direction::SendRecv) {
                    self.publish(id, m.mid, kind_of(m.kind));
                }
            }
            Event::RtpPacket(pkt) => self.on_rtp(now, id, pkt),
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                if let Some(peer) = self.peers.get_mut(&id) {
                    let first = peer.downlink.estimate_bps.is_none();
                    let before = peer.downlink.estimate_bps.unwrap_or(0);
                    let estimate = estimate.as_u64();
                    peer.downlink.estimate_bps = Some(estimate);
                    peer.downlink.reprobe.on_estimate(now, before, estimate);
                    debug!(participant = %id, estimate, "downlink estimate");
                    // Step down at once: a falling estimate is acted on now, not at the next round,
                    // and so is the publishers' steering (they lower what they send for this line).
                    if first || estimate < before {
                        self.allocate(now, id);
                        // Only the tracks this subscriber receives, in its room.
                        if !first && let Some(room) = self.peers.get(&id).map(|p| p.room.clone()) {
                            self.steer(now, Some(&room));
                        }
                    }
                }
            }
            Event::PeerStats(stats) => {
                if let Some(peer) = self.peers.get_mut(&id) {
                    peer.downlink.peer = Some(stats);
                }
            }
            Event::MediaEgressStats(stats) => {
                if let Some(peer) = self.peers.get_mut(&id) {
                    peer.downlink.egress.insert(stats.mid, stats);
                }
            }
            Event::MediaIngressStats(stats) => {
                if let Some(peer) = self.peers.get_mut(&id) {
                    peer.ingress.insert((stats.mid, stats.rid), stats);
                }
            }
            Event::KeyframeRequest(req) => {
                let Some(peer) = self.peers.get(&id) else {
                    return;
                };
                let Some(track) = peer.track_of_mid(req.mid) else {
                    return;
                };
                let kind = match req.kind {
                    KeyframeRequestKind::Fir => KeyframeKind::Fir,
                    KeyframeRequestKind::Pli => KeyframeKind::Pli,
                };
                if let Some(room) = self.rooms.get_mut(&peer.room) {
                    room.on_keyframe_request(now, id, track, kind, &mut self.actions);
                }
                self.execute();
            }
            _ => {}
        }
    }

    fn publish(&mut self, id: ParticipantId, mid: str0m::media::Mid, kind: Kind) {
        let track = TrackId(self.next_track);
        self.next_track += 1;
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if peer.published.iter().any(|p| p.mid == mid) {
            return;
        }
        peer.published.push(crate::peer::PublishedTrack {
            mid,
            track,
            kind,
            rids: vec![],
        });
        let Some(room) = self.rooms.get_mut(&peer.room) else {
            return;
        };
        for sub in room.publish(track, id, kind) {
            if let Some(p) = self.peers.get_mut(&sub) {
                p.add_receive(track, id, kind);
            }
        }
    }

    fn on_rtp(&mut self, now: Instant, id: ParticipantId, pkt: str0m::rtp::RtpPacket) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let ssrc = pkt.header.ssrc;
        let Some((mid, rid)) = peer
            .rtc
            .direct_api()
            .stream_rx(&ssrc)
            .map(|s| (s.mid(), s.rid()))
        else {
            return;
        };
        let Some(published) = peer.published.iter_mut().find(|p| p.mid == mid) else {
            return;
        };
        let spatial = spatial_of(rid.as_ref());
        if let Some(rid) = rid
            && !published.rids.iter().any(|(s, _)| *s == spatial)
        {
            published.rids.push((spatial, rid));
        }
        let (track, kind) = (published.track, published.kind);
        self.ctx.counters.rtp_in.fetch_add(1, Ordering::Relaxed);
        let (keyframe, vp8) = match kind {
            Kind::Audio => (false, None),
            Kind::Video => match Vp8Descriptor::parse(&pkt.payload) {
                Ok(d) => (
                    d.starts_keyframe(&pkt.payload),
                    Some(Vp8Fields {
                        picture_id: d.picture_id().map(|p| {
                            (
                                p,
                                p > 0x7f || pkt.payload.get(2).is_some_and(|b| b & 0x80 != 0),
                            )
                        }),
                        tl0_pic_idx: d.tl0_pic_idx(),
                        key_idx: d.key_idx(),
                    }),
                ),
                Err(_) => (false, None),
            },
        };
        let packet = InPacket {
            track,
            source: SourcePacket {
                ssrc: *ssrc,
                seq: *pkt.seq_no,
                timestamp: pkt.header.timestamp,
                arrival: pkt.timestamp,
            },
            marker: pkt.header.marker,
            keyframe,
            spatial,
            temporal: match kind {
                Kind::Video => vp8_temporal(&pkt.payload),
                Kind::Audio => None,
            },
            vp8,
            payload: pkt.payload.clone(),
            audio_level: pkt.header.ext_vals.audio_level,
            voice_activity: pkt.header.ext_vals.voice_activity,
        };
        let room_name = peer.room.clone();
        if let Some(room) = self.rooms.get_mut(&room_name) {
            room.on_packet(now, &packet, &mut self.actions);
        }
        self.execute();
    }

    fn execute(&mut self) {
        let actions = std::mem::take(&mut self.actions);
        for action in actions {
            match action {
                Action::Forward(out) => self.forward(out),
                Action::RequestKeyframe {
                    publisher,
                    track,
                    layer,
                    kind,
                } => {
                    let Some(peer) = self.peers.get_mut(&publisher) else {
                        continue;
                    };
                    let Some((mid, rid)) =
                        peer.published.iter().find(|p| p.track == track).map(|p| {
                            (
                                p.mid,
                                p.rids.iter().find(|(s, _)| *s == layer).map(|(_, r)| *r),
                            )
                        })
                    else {
                        continue;
                    };
                    let mut api = peer.rtc.direct_api();
                    if let Some(rx) = api.stream_rx_by_mid(mid, rid) {
                        rx.request_keyframe(keyframe_kind(kind));
                        self.ctx
                            .counters
                            .keyframe_requests
                            .fetch_add(1, Ordering::Relaxed);
                        self.dirty.insert(publisher);
                    }
                }
            }
        }
    }

    fn forward(&mut self, out: OutPacket) {
        let Some(peer) = self.peers.get_mut(&out.subscriber) else {
            return;
        };
        let Some(mid) = peer.open_mid(out.track) else {
            return;
        };
        let kind = if out.vp8.is_some() || peer.rtc.media(mid).is_some_and(|m| m.kind().is_video())
        {
            Kind::Video
        } else {
            Kind::Audio
        };
        let Some(pt) = peer.pt_for(kind) else {
            return;
        };
        let ext = ExtensionValues {
            audio_level: out.audio_level,
            voice_activity: out.voice_activity,
            ..Default::default()
        };
        let mut write = RtpWrite::new(
            pt,
            out.seq.into(),
            out.timestamp,
            out.arrival,
            out.payload.clone(),
        )
        .marker(out.marker)
        .ext_vals(ext)
        .nackable(kind == Kind::Video);
        if let Some(fields) = out.vp8
            && let Ok(desc) = Vp8Descriptor::parse(&out.payload)
        {
            let mut b = desc.patch();
            if let Some((pid, _)) = fields.picture_id {
                b = b.picture_id(pid);
            }
            if let Some(t) = fields.tl0_pic_idx {
                b = b.tl0_pic_idx(t);
            }
            if let Some(k) = fields.key_idx {
                b = b.key_idx(k);
            }
            if let Ok(patch) = b.build() {
                write = write.vp8_patch(patch);
            }
        }
        let mut api = peer.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return;
        };
        tx.write_rtp(write);
        self.ctx.counters.rtp_out.fetch_add(1, Ordering::Relaxed);
        self.dirty.insert(out.subscriber);
    }

    fn lifecycle(&mut self, now: Instant) {
        let timeout = Duration::from_secs(self.ctx.config.ice_timeout_secs);
        for (id, peer) in &self.peers {
            let never_connected =
                !peer.ever_connected && now.saturating_duration_since(peer.created) > timeout;
            let lost = peer
                .disconnected_since
                .is_some_and(|t| now.saturating_duration_since(t) > timeout / 2);
            if !peer.rtc.is_alive() || never_connected || lost {
                self.doomed.push((*id, LeaveReason::IceTimeout));
            } else if peer.line_test
                && now.saturating_duration_since(peer.created) > crate::LINE_TEST_LIMIT
            {
                self.doomed.push((*id, LeaveReason::TimeLimit));
            }
        }
        for (id, reason) in std::mem::take(&mut self.doomed) {
            self.remove(id, reason);
        }
    }

    fn close_all(&mut self) {
        let ids: Vec<ParticipantId> = self.peers.keys().copied().collect();
        for id in ids {
            self.remove(id, LeaveReason::Disconnected);
        }
    }
}
