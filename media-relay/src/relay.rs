//! The handle the signaling server holds: starts the sockets and workers, places rooms on workers and
//! turns signaling requests into worker messages.

use std::collections::BTreeMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::budget::{LineBudgets, SiteBudget};
use crate::config::RelayConfig;
use crate::core::allocator::Reason;
use crate::core::room::{Kind, MemberInfo, ParticipantId};
use crate::net::{Net, Router};
use crate::worker::{self, WorkerMsg};

/// Queue length of one worker's inbox (datagrams beyond it are dropped like on a full link).
const WORKER_QUEUE: usize = 16_384;

/// Errors the relay reports to signaling.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The room has its maximum number of participants.
    #[error("the room is full ({0} participants)")]
    RoomFull(usize),
    /// The SDP does not parse or cannot be accepted.
    #[error("bad SDP: {0}")]
    BadSdp(String),
    /// An answer arrived with no offer outstanding.
    #[error("no offer is outstanding")]
    NoPendingOffer,
    /// An ICE candidate does not parse.
    #[error("bad ICE candidate: {0}")]
    BadCandidate(String),
    /// The participant is no longer in a room on the relay.
    #[error("not in a room")]
    NotInRoom,
    /// The relay is shutting down or a worker is gone.
    #[error("the media relay is not available")]
    Unavailable,
    /// The sockets could not be set up.
    #[error("media sockets: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a participant left a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// It said `leave`.
    Left,
    /// Its signaling connection closed.
    Disconnected,
    /// Its media path failed or never came up.
    IceTimeout,
    /// A line test reached [`LINE_TEST_LIMIT`].
    TimeLimit,
}

/// The relay's view of a participant's media connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaState {
    /// ICE is checking.
    Connecting,
    /// Media can flow.
    Connected,
    /// Consent checks are failing; it may recover.
    Disconnected,
    /// The media path is gone; the participant was removed from its room.
    Failed,
}

/// One receive track as announced to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrackDesc {
    /// The m-line's mid in the subscriber's session.
    pub mid: String,
    /// The publisher.
    pub participant_id: String,
    /// Audio or video.
    pub kind: Kind,
}

/// The layer one subscriber receives of one publisher's video.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VideoQuality {
    /// The publisher.
    pub participant_id: String,
    /// The layer forwarded now (`q`, `h` or `f` and the highest temporal layer, e.g. `h/t2`); none while
    /// paused or before the first keyframe.
    pub layer: Option<String>,
    /// The layer the allocator aims at; none: paused (audio only).
    pub target: Option<String>,
}

/// What a subscriber receives and why, as the relay tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QualityReport {
    /// The relay's estimate of the subscriber's downlink, kbit/s.
    pub estimate_kbps: u64,
    /// What it may receive: the estimate, or less under the site's line budget, kbit/s.
    pub available_kbps: u64,
    /// What the chosen layers and the audio take, kbit/s.
    pub allocated_kbps: u64,
    /// Why.
    pub reason: Reason,
    /// Per publisher's video.
    pub video: Vec<VideoQuality>,
}

/// What the relay tells one participant's signaling session.
#[derive(Debug, Clone, PartialEq)]
pub enum RelayEvent {
    /// The answer to the participant's offer.
    Answer {
        /// SDP.
        sdp: String,
    },
    /// A new offer: the set of tracks it receives changed.
    Offer {
        /// SDP.
        sdp: String,
        /// Every receive track by mid.
        tracks: Vec<TrackDesc>,
    },
    /// Someone joined the room.
    ParticipantJoined(MemberInfo),
    /// Someone left the room.
    ParticipantLeft {
        /// Who.
        participant: ParticipantId,
        /// Why.
        reason: LeaveReason,
    },
    /// The participant's media state changed.
    MediaState(MediaState),
    /// The relay removed this participant from its room.
    Removed {
        /// Why.
        reason: LeaveReason,
    },
    /// What the participant receives and why changed.
    Quality(QualityReport),
    /// Dynacast and end-to-end rate control: how the participant should send each simulcast layer
    /// of one of its video tracks.
    PublisherLayers {
        /// The track's mid in the participant's own session.
        mid: String,
        /// Per RID.
        layers: Vec<LayerActivity>,
    },
}

/// How a publisher should send one simulcast layer (dynacast and end-to-end rate control; the web
/// client applies it with `RTCRtpSender.setParameters`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerActivity {
    /// The layer's RID.
    pub rid: String,
    /// Send it (true) or pause it.
    pub active: bool,
    /// Its maximum bitrate (`maxBitrate`), bit/s.
    pub max_bitrate_bps: u64,
    /// Its downscale of the camera (`scaleResolutionDownBy`).
    pub scale_resolution_down_by: f64,
}

/// Who joins, beyond the room.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinOptions {
    /// Display name shown to the others.
    pub display_name: String,
    /// The participant's site, whose line budget its downlink shares.
    pub site: Option<String>,
    /// Whether the consultation is an emergency (first claim on the site's line).
    pub emergency: bool,
    /// A line test instead of a consultation: the room is the participant's own, it receives what it
    /// publishes back, and the relay pads its downlink up to what the line carries so that the estimate
    /// measures the line (see `docs/architecture.md`, line test). Ends after [`LINE_TEST_LIMIT`].
    pub line_test: bool,
}

/// The longest a line test may run before the relay ends it.
pub const LINE_TEST_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// One track a participant publishes, as seen by the relay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishedStats {
    /// Audio or video.
    pub kind: Kind,
    /// Simulcast RID, if any.
    pub rid: Option<String>,
    /// Received bytes and packets so far.
    pub bytes: u64,
    /// Packets received.
    pub packets: u64,
    /// NACKs sent to the publisher.
    pub nacks: u64,
    /// PLIs sent to the publisher.
    pub plis: u64,
    /// Loss seen on this stream (0–1).
    pub loss: Option<f32>,
    /// The maximum bitrate the relay last asked the publisher to send this layer at (0: paused),
    /// bit/s; none before it asked (end-to-end rate control).
    pub steered_bps: Option<u64>,
}

/// One track a participant receives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReceivedStats {
    /// The publisher.
    pub publisher: String,
    /// Audio or video.
    pub kind: Kind,
    /// What the relay sends on it now, bit/s.
    pub bps: u64,
    /// The layer forwarded (video).
    pub layer: Option<String>,
    /// The layer the allocator aims at (video).
    pub target: Option<String>,
    /// Simulcast layer switches.
    pub layer_switches: u64,
    /// Outgoing sequence numbers jumped over: upstream loss passed on (0 on a clean ingress).
    pub seq_gaps: u64,
    /// NACKs from the subscriber.
    pub nacks: u64,
    /// PLIs from the subscriber.
    pub plis: u64,
    /// Round-trip time from its receiver reports, ms.
    pub rtt_ms: Option<f64>,
    /// Loss it reports (0–1).
    pub loss: Option<f32>,
}

/// A participant's bandwidth and quality, refreshed by its worker every second.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParticipantStats {
    /// The participant.
    pub participant: String,
    /// Its site.
    pub site: Option<String>,
    /// Whether its consultation is an emergency.
    pub emergency: bool,
    /// The downlink estimate, bit/s.
    pub estimate_bps: Option<u64>,
    /// The estimate capped by the site's budget, bit/s.
    pub available_bps: u64,
    /// What its allocation takes, bit/s.
    pub allocated_bps: u64,
    /// Why it receives what it receives.
    pub reason: Reason,
    /// Round-trip time of the session, ms.
    pub rtt_ms: Option<f64>,
    /// Loss it reports on what the relay sends (0–1).
    pub egress_loss: Option<f32>,
    /// Loss the relay sees on what it publishes (0–1).
    pub ingress_loss: Option<f32>,
    /// What it publishes.
    pub published: Vec<PublishedStats>,
    /// What it receives.
    pub received: Vec<ReceivedStats>,
}

/// A participant's place on the relay, as returned by [`Relay::join`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    /// The participant.
    pub participant: ParticipantId,
    worker: usize,
}

/// The result of a join.
#[derive(Debug, Clone)]
pub struct JoinInfo {
    /// Where the participant lives.
    pub membership: Membership,
    /// The others already in the room.
    pub others: Vec<MemberInfo>,
}

/// Counters shared by the workers.
#[derive(Debug, Default)]
pub struct RelayCounters {
    /// Rooms open.
    pub rooms: AtomicUsize,
    /// Participants in rooms.
    pub participants: AtomicUsize,
    /// RTP packets received from publishers.
    pub rtp_in: AtomicU64,
    /// RTP packets forwarded to subscribers.
    pub rtp_out: AtomicU64,
    /// Keyframe requests sent to publishers.
    pub keyframe_requests: AtomicU64,
    /// Peers dropped because str0m panicked on them.
    pub peer_panics: AtomicU64,
}

/// A snapshot of the relay's counters.
#[derive(Debug, Clone, Serialize)]
pub struct RelayStats {
    /// Rooms open.
    pub rooms: usize,
    /// Participants in rooms.
    pub participants: usize,
    /// Worker threads.
    pub workers: usize,
    /// RTP packets received from publishers.
    pub rtp_in: u64,
    /// RTP packets forwarded to subscribers.
    pub rtp_out: u64,
    /// Keyframe requests sent to publishers.
    pub keyframe_requests: u64,
    /// Datagrams that matched no participant.
    pub unrouted_datagrams: u64,
    /// Datagrams dropped on a full worker queue.
    pub dropped_datagrams: u64,
    /// Peers dropped after a panic in the WebRTC stack.
    pub peer_panics: u64,
}

/// The running relay.
pub struct Relay {
    workers: Vec<Sender<WorkerMsg>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    net: Arc<Net>,
    shutdown: Arc<AtomicBool>,
    counters: Arc<RelayCounters>,
    budgets: Arc<LineBudgets>,
    participants: Arc<Mutex<BTreeMap<ParticipantId, ParticipantStats>>>,
    next_participant: AtomicU64,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("workers", &self.workers.len())
            .field("udp", &self.net.udp_addr())
            .field("tcp", &self.net.tcp_addr())
            .finish()
    }
}

impl Relay {
    /// Bind the sockets and start the worker and socket threads.
    pub fn start(config: RelayConfig) -> Result<Relay, RelayError> {
        let net = Arc::new(Net::bind(config.udp_listen, config.tcp_listen)?);
        let router = Arc::new(Router::new());
        let shutdown = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(RelayCounters::default());
        let budgets = Arc::new(LineBudgets::default());
        let participants = Arc::new(Mutex::new(BTreeMap::new()));
        let n = if config.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.workers
        };
        let mut senders = vec![];
        let mut threads = vec![];
        for index in 0..n {
            let (tx, rx) = crossbeam_channel::bounded(WORKER_QUEUE);
            senders.push(tx);
            let ctx = worker::WorkerContext {
                index,
                config: config.clone(),
                net: net.clone(),
                router: router.clone(),
                counters: counters.clone(),
                budgets: budgets.clone(),
                participants: participants.clone(),
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("relay-worker-{index}"))
                    .spawn(move || worker::run(ctx, rx))?,
            );
        }
        threads.extend(net.start(router, senders.clone(), shutdown.clone())?);
        Ok(Relay {
            workers: senders,
            threads: Mutex::new(threads),
            net,
            shutdown,
            counters,
            budgets,
            participants,
            next_participant: AtomicU64::new(1),
        })
    }

    /// The bound UDP media address.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.net.udp_addr()
    }

    /// The bound ICE-TCP address.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.net.tcp_addr()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> RelayStats {
        let c = &self.counters;
        RelayStats {
            rooms: c.rooms.load(Ordering::Relaxed),
            participants: c.participants.load(Ordering::Relaxed),
            workers: self.workers.len(),
            rtp_in: c.rtp_in.load(Ordering::Relaxed),
            rtp_out: c.rtp_out.load(Ordering::Relaxed),
            keyframe_requests: c.keyframe_requests.load(Ordering::Relaxed),
            unrouted_datagrams: self.net.counters.unrouted.load(Ordering::Relaxed),
            dropped_datagrams: self.net.counters.queue_full.load(Ordering::Relaxed),
            peer_panics: c.peer_panics.load(Ordering::Relaxed),
        }
    }

    /// Set (or with `None` forget) a site's line budget, from its configured capacity or its latest line
    /// measurement.
    pub fn set_site_budget(&self, site: &str, budget_bps: Option<u64>) {
        self.budgets.set_budget(site, budget_bps);
    }

    /// Every site's line budget and what the relay sends to it.
    pub fn site_budgets(&self) -> Vec<SiteBudget> {
        self.budgets.snapshot()
    }

    /// Bandwidth and quality of every participant in a room.
    pub fn participant_stats(&self) -> Vec<ParticipantStats> {
        self.participants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn worker_for_room(&self, room: &str) -> usize {
        let mut h = DefaultHasher::new();
        room.hash(&mut h);
        (h.finish() % self.workers.len() as u64) as usize
    }

    async fn ask<T>(
        &self,
        worker: usize,
        make: impl FnOnce(oneshot::Sender<Result<T, RelayError>>) -> WorkerMsg,
    ) -> Result<T, RelayError> {
        let (tx, rx) = oneshot::channel();
        let sender = self.workers.get(worker).ok_or(RelayError::Unavailable)?;
        sender.send(make(tx)).map_err(|_| RelayError::Unavailable)?;
        rx.await.map_err(|_| RelayError::Unavailable)?
    }

    /// Join `room`. Events for this participant arrive on `events` until it leaves or is removed.
    pub async fn join(
        &self,
        room: &str,
        options: JoinOptions,
        events: mpsc::UnboundedSender<RelayEvent>,
    ) -> Result<JoinInfo, RelayError> {
        let participant = ParticipantId(self.next_participant.fetch_add(1, Ordering::Relaxed));
        let worker = self.worker_for_room(room);
        let others = self
            .ask(worker, |reply| WorkerMsg::Join {
                room: room.to_string(),
                participant,
                options,
                events,
                reply,
            })
            .await?;
        Ok(JoinInfo {
            membership: Membership {
                participant,
                worker,
            },
            others,
        })
    }

    /// The participant's offer; the answer arrives as [`RelayEvent::Answer`].
    pub async fn offer(&self, m: Membership, sdp: String) -> Result<(), RelayError> {
        self.ask(m.worker, |reply| WorkerMsg::Offer {
            participant: m.participant,
            sdp,
            reply,
        })
        .await
    }

    /// The participant's answer to the last [`RelayEvent::Offer`].
    pub async fn answer(&self, m: Membership, sdp: String) -> Result<(), RelayError> {
        self.ask(m.worker, |reply| WorkerMsg::Answer {
            participant: m.participant,
            sdp,
            reply,
        })
        .await
    }

    /// A trickled ICE candidate of the participant.
    pub async fn candidate(&self, m: Membership, candidate: String) -> Result<(), RelayError> {
        self.ask(m.worker, |reply| WorkerMsg::Candidate {
            participant: m.participant,
            candidate,
            reply,
        })
        .await
    }

    /// The participant leaves its room.
    pub fn leave(&self, m: Membership, reason: LeaveReason) {
        if let Some(tx) = self.workers.get(m.worker) {
            let _ = tx.send(WorkerMsg::Leave {
                participant: m.participant,
                reason,
            });
        }
    }

    /// Stop the workers and socket threads.
    pub fn shutdown(&self) {
        self.shutdown.store(true, Ordering::Relaxed);
        for tx in &self.workers {
            let _ = tx.send(WorkerMsg::Shutdown);
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}
