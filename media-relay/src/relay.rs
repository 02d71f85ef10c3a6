//! The handle the signaling server holds: starts the sockets and workers, places rooms on workers and
//! turns signaling requests into worker messages.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::config::RelayConfig;
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

/// What the relay tells one participant's signaling session.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        display_name: &str,
        events: mpsc::UnboundedSender<RelayEvent>,
    ) -> Result<JoinInfo, RelayError> {
        let participant = ParticipantId(self.next_participant.fetch_add(1, Ordering::Relaxed));
        let worker = self.worker_for_room(room);
        let others = self
            .ask(worker, |reply| WorkerMsg::Join {
                room: room.to_string(),
                participant,
                display_name: display_name.to_string(),
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
