//! The probe endpoint: [`ProbeServer`] answers clients holding a valid token, on one UDP socket.
//!
//! It cannot be used as a reflector or amplifier:
//!
//! - a datagram that is not a hello with a valid, unexpired, unused token, or a session packet
//!   with a valid MAC and a fresh sequence number from the session's own address, gets **no
//!   reply at all**; it is only counted ([`IgnoredStats`]);
//! - the hello-ack is smaller than the hello (checked before sending);
//! - what the server sends in a session (echo replies, trains, reports) is bounded by the token's
//!   byte budget (and [`ServerConfig::max_budget`]); an echo reply is exactly as long as its echo,
//!   a train is sent only if it fits in the budget left, and a train is at most
//!   [`ServerConfig::max_train`] packets;
//! - sessions expire ([`ServerConfig::session_ttl`], [`ServerConfig::idle_timeout`], the
//!   token's expiry), at most [`ServerConfig::max_sessions`] exist at once, and a token is
//!   accepted once ([`NonceCache`]).
//!
//! Embedding (as `telemed` does on its own port):
//!
//! ```no_run
//! # async fn f() -> Result<(), bandwidth_probe::server::ServerError> {
//! use bandwidth_probe::{server::{ProbeServer, ServerConfig}, token::TokenKey};
//! let key = TokenKey::new(b"32 bytes of secret, from a file!");
//! let server = std::sync::Arc::new(ProbeServer::bind(ServerConfig::new("0.0.0.0:9100".parse().unwrap(), key)).await?);
//! let running = server.clone();
//! tokio::spawn(async move { running.run(std::future::pending()).await });
//! println!("{:?}", server.stats());
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::time::{Instant, MissedTickBehavior, interval};
use tracing::{debug, info, warn};

use crate::rx;
use crate::token::{Claims, NonceCache, NonceRefusal, TokenError, TokenKey};
use crate::wire::{self, Dir, HelloAck, ParseError, ReportEntry, SessionKey, TrainData, kind};

/// What the server listens on and how it bounds its work.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// UDP address to bind (port 0 picks one; see [`ProbeServer::local_addr`]).
    pub listen: SocketAddr,
    /// The key that signs and checks tokens.
    pub key: TokenKey,
    /// Most sessions at once; hellos beyond are ignored.
    pub max_sessions: usize,
    /// A session ends this long after its hello.
    pub session_ttl: Duration,
    /// A session without packets for this long ends.
    pub idle_timeout: Duration,
    /// Most packets per train (at most [`wire::MAX_TRAIN_PACKETS`]).
    pub max_train: u16,
    /// Upper bound on any token's byte budget.
    pub max_budget: u64,
    /// Nonces of used tokens remembered at once (each until its token expires).
    pub max_used_tokens: usize,
}

impl ServerConfig {
    /// Listens on `listen` with `key`: 64 sessions, 30 s per session, 5 s idle, 160-packet
    /// trains, budgets up to 8 MB, 100 000 remembered tokens.
    pub fn new(listen: SocketAddr, key: TokenKey) -> ServerConfig {
        ServerConfig {
            listen,
            key,
            max_sessions: 64,
            session_ttl: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(5),
            max_train: wire::MAX_TRAIN_PACKETS,
            max_budget: 8_000_000,
            max_used_tokens: 100_000,
        }
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding the socket failed.
    #[error("cannot bind UDP {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The socket failed.
    #[error("probe socket: {0}")]
    Io(#[from] std::io::Error),
}

/// Datagrams ignored (never answered), by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoredStats {
    /// Shorter than their fields say.
    pub truncated: u64,
    /// Not a probe packet (magic, type, sizes, counts out of range).
    pub malformed: u64,
    /// Session packets whose MAC is wrong or that come from another address (forged).
    pub bad_mac: u64,
    /// Session packets whose sequence number was seen before or is too old.
    pub replayed: u64,
    /// Hellos without a token, or session packets for no session.
    pub no_token: u64,
    /// Hellos whose token is not valid (signature, format).
    pub invalid_token: u64,
    /// Hellos whose token has expired, or packets of an expired session.
    pub expired_token: u64,
    /// Hellos with a token used before.
    pub reused_token: u64,
    /// Requests that would go over the session's byte budget.
    pub over_budget: u64,
    /// Hellos while the session (or used-token) table is full.
    pub too_many_sessions: u64,
}

impl IgnoredStats {
    /// All ignored datagrams.
    pub fn total(&self) -> u64 {
        self.truncated
            + self.malformed
            + self.bad_mac
            + self.replayed
            + self.no_token
            + self.invalid_token
            + self.expired_token
            + self.reused_token
            + self.over_budget
            + self.too_many_sessions
    }
}

/// The server's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStats {
    /// Hellos accepted (sessions started).
    pub sessions_accepted: u64,
    /// Sessions now open.
    pub sessions_active: u64,
    /// Datagrams received.
    pub packets_received: u64,
    /// Bytes received (UDP payload).
    pub bytes_received: u64,
    /// Datagrams sent.
    pub packets_sent: u64,
    /// Bytes sent (UDP payload).
    pub bytes_sent: u64,
    /// Ignored datagrams by reason.
    pub ignored: IgnoredStats,
}

#[derive(Debug, Default)]
struct Counters {
    sessions_accepted: AtomicU64,
    sessions_active: AtomicU64,
    packets_received: AtomicU64,
    bytes_received: AtomicU64,
    packets_sent: AtomicU64,
    bytes_sent: AtomicU64,
    ignored: [AtomicU64; 10],
}

#[derive(Debug, Clone, Copy)]
enum Ignore {
    Truncated,
    Malformed,
    BadMac,
    Replayed,
    NoToken,
    InvalidToken,
    ExpiredToken,
    ReusedToken,
    OverBudget,
    TooManySessions,
}

impl Counters {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    fn ignore(&self, why: Ignore) {
        Self::add(&self.ignored[why as usize], 1);
    }
    fn snapshot(&self) -> ServerStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let i = |w: Ignore| g(&self.ignored[w as usize]);
        ServerStats {
            sessions_accepted: g(&self.sessions_accepted),
            sessions_active: g(&self.sessions_active),
            packets_received: g(&self.packets_received),
            bytes_received: g(&self.bytes_received),
            packets_sent: g(&self.packets_sent),
            bytes_sent: g(&self.bytes_sent),
            ignored: IgnoredStats {
                truncated: i(Ignore::Truncated),
                malformed: i(Ignore::Malformed),
                bad_mac: i(Ignore::BadMac),
                replayed: i(Ignore::Replayed),
                no_token: i(Ignore::NoToken),
                invalid_token: i(Ignore::InvalidToken),
                expired_token: i(Ignore::ExpiredToken),
                reused_token: i(Ignore::ReusedToken),
                over_budget: i(Ignore::OverBudget),
                too_many_sessions: i(Ignore::TooManySessions),
            },
        }
    }
}

/// A sliding window of the last 128 sequence numbers (as in IPsec and DTLS): each number is
/// accepted once, and numbers more than 128 behind the highest are refused.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    highest: u64,
    seen: u128,
}

impl ReplayWindow {
    /// Whether `seq` is new; records it if so. Sequence numbers start at 1.
    pub fn accept(&mut self, seq: u64) -> bool {
        if seq == 0 {
            return false;
        }
        if seq > self.highest {
            let shift = seq - self.highest;
            self.seen = if shift >= 128 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.highest = seq;
            return true;
        }
        let back = self.highest - seq;
        if back >= 128 || self.seen & (1u128 << back) != 0 {
            return false;
        }
        self.seen |= 1u128 << back;
        true
    }
}

/// Up-trains remembered per session.
const MAX_UP_TRAINS: usize = 16;
/// Reports sent per up-train (the first and two retries).
const MAX_REPORTS_PER_TRAIN: u8 = 3;
/// Largest hello accepted.
const MAX_HELLO: usize = wire::HELLO_MIN + crate::token::MAX_TOKEN_LEN;

#[derive(Debug)]
struct UpTrain {
    entries: Vec<ReportEntry>,
    reports: u8,
}

#[derive(Debug)]
struct Session {
    peer: SocketAddr,
    key: SessionKey,
    token_nonce: [u8; 16],
    client_nonce: [u8; 16],
    ack: Vec<u8>,
    start: Instant,
    /// `start` on the wall clock of receive timestamps.
    start_wall: Duration,
    expires: Instant,
    last_seen: Instant,
    budget: u64,
    sent: u64,
    received: u64,
    next_seq: u64,
    window: ReplayWindow,
    up: HashMap<u32, UpTrain>,
    up_order: Vec<u32>,
    site: String,
}

impl Session {
    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }
    fn fits(&self, bytes: u64) -> bool {
        self.sent.saturating_add(bytes) <= self.budget
    }
}

/// When a datagram arrived: `now` for timeouts, `wall` (the kernel's receive timestamp, see
/// [`crate::rx`]) for the arrival times reported to the client.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    now: Instant,
    wall: Duration,
}

/// What to send after handling a datagram.
enum Out {
    Datagram(SocketAddr, Vec<u8>),
    Train {
        peer: SocketAddr,
        key: SessionKey,
        session: u64,
        first_seq: u64,
        start: Instant,
        req: wire::TrainRequest,
    },
}

/// The probe endpoint; see the module docs.
#[derive(Debug)]
pub struct ProbeServer {
    socket: Arc<UdpSocket>,
    config: ServerConfig,
    counters: Arc<Counters>,
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if getrandom::fill(&mut b).is_err() {
        // No OS randomness: fall back to the clock (session ids only need to differ).
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            .to_be_bytes();
        for (i, x) in b.iter_mut().enumerate() {
            *x = t[i % t.len()];
        }
    }
    b
}

impl ProbeServer {
    /// Binds the socket.
    pub async fn bind(config: ServerConfig) -> Result<ProbeServer, ServerError> {
        let socket = UdpSocket::bind(config.listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: config.listen,
                source,
            })?;
        rx::enable(&socket);
        Ok(ProbeServer {
            socket: Arc::new(socket),
            config,
            counters: Arc::new(Counters::default()),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap_or(self.config.listen)
    }

    /// The counters now.
    pub fn stats(&self) -> ServerStats {
        self.counters.snapshot()
    }

    /// Serves until `shutdown` completes; returns the final counters. Call it once per server
    /// (sessions live in this future).
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> ServerStats {
        let mut state = State {
            config: self.config.clone(),
            sessions: HashMap::new(),
            used: NonceCache::new(self.config.max_used_tokens),
            counters: self.counters.clone(),
        };
        let mut buf = vec![0u8; 2048];
        let mut sweep = interval(Duration::from_secs(1));
        sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        info!(addr = %self.local_addr(), "probe server listening");
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = sweep.tick() => state.expire(Instant::now()),
                r = rx::recv_from(&self.socket, &mut buf) => {
                    let now = Instant::now();
                    match r {
                        Ok((n, peer, arrived)) => {
                            let out = state.handle(&buf[..n], peer, Arrival { now, wall: arrived });
                            for o in out {
                                self.send(o).await;
                            }
                        }
                        // ICMP errors of earlier sends surface here on some systems.
                        Err(e) => debug!(error = %e, "probe recv"),
                    }
                }
            }
        }
        info!("probe server stopped");
        self.stats()
    }

    async fn send_one(&self, peer: SocketAddr, d: &[u8]) {
        match self.socket.send_to(d, peer).await {
            Ok(n) => {
                Counters::add(&self.counters.packets_sent, 1);
                Counters::add(&self.counters.bytes_sent, n as u64);
            }
            Err(e) => debug!(%peer, error = %e, "probe send"),
        }
    }

    async fn send(&self, out: Out) {
        match out {
            Out::Datagram(peer, d) => self.send_one(peer, &d).await,
            Out::Train {
                peer,
                key,
                session,
                first_seq,
                start,
                req,
            } => {
                let paced = req.gap_us > 0;
                let socket = self.socket.clone();
                let counters = self.counters.clone();
                let task = async move {
                    let mut due = Instant::now();
                    for index in 0..req.count {
                        let gap = req.gap_before(index);
                        if paced && gap > 0 {
                            due += Duration::from_micros(gap);
                            crate::pace_until(due).await;
                        }
                        let mut b = wire::session_header(
                            kind::TRAIN_DATA,
                            session,
                            first_seq + u64::from(index),
                            usize::from(req.size),
                        );
                        TrainData {
                            train: req.train,
                            index,
                            count: req.count,
                            sent_us: start.elapsed().as_micros() as u64,
                        }
                        .write(&mut b);
                        wire::pad_to(&mut b, usize::from(req.size));
                        key.seal(Dir::Server, &mut b);
                        if let Ok(n) = socket.send_to(&b, peer).await {
                            Counters::add(&counters.packets_sent, 1);
                            Counters::add(&counters.bytes_sent, n as u64);
                        }
                    }
                };
                if paced {
                    tokio::spawn(task);
                } else {
                    task.await;
                }
            }
        }
    }
}

struct State {
    config: ServerConfig,
    sessions: HashMap<u64, Session>,
    used: NonceCache,
    counters: Arc<Counters>,
}

impl State {
    fn ignore(&self, why: Ignore, peer: SocketAddr) -> Vec<Out> {
        debug!(%peer, reason = ?why, "probe packet ignored");
        self.counters.ignore(why);
        Vec::new()
    }

    fn expire(&mut self, now: Instant) {
        let before = self.sessions.len();
        self.sessions.retain(|_, s| {
            s.expires > now && now.duration_since(s.last_seen) < self.config.idle_timeout
        });
        if self.sessions.len() != before {
            debug!(
                ended = before - self.sessions.len(),
                "probe sessions expired"
            );
        }
        self.counters
            .sessions_active
            .store(self.sessions.len() as u64, Ordering::Relaxed);
    }

    fn handle(&mut self, packet: &[u8], peer: SocketAddr, at: Arrival) -> Vec<Out> {
        Counters::add(&self.counters.packets_received, 1);
        Counters::add(&self.counters.bytes_received, packet.len() as u64);
        if packet.len() < 5 {
            return self.ignore(Ignore::Truncated, peer);
        }
        if packet[..4] != wire::MAGIC || packet.len() > wire::MAX_DATAGRAM {
            return self.ignore(Ignore::Malformed, peer);
        }
        if packet[4] == kind::HELLO {
            return self.hello(packet, peer, at);
        }
        self.session_packet(packet, peer, at)
    }

    fn hello(&mut self, packet: &[u8], peer: SocketAddr, at: Arrival) -> Vec<Out> {
        let now = at.now;
        if packet.len() > MAX_HELLO {
            return self.ignore(Ignore::Malformed, peer);
        }
        let hello = match wire::parse_hello(packet) {
            Ok(h) => h,
            Err(ParseError::Truncated) => return self.ignore(Ignore::Truncated, peer),
            Err(ParseError::Malformed) => return self.ignore(Ignore::InvalidToken, peer),
        };
        if hello.token.is_empty() {
            return self.ignore(Ignore::NoToken, peer);
        }
        let unix = crate::unix_ms();
        let claims: Claims = match self.config.key.verify(hello.token, unix) {
            Ok(c) => c,
            Err(TokenError::Invalid) => return self.ignore(Ignore::InvalidToken, peer),
            Err(TokenError::Expired) => return self.ignore(Ignore::ExpiredToken, peer),
        };
        let token_nonce = claims.nonce_bytes();
        // The same hello again (its ack was lost): the same ack again.
        if let Some(s) = self.sessions.values().find(|s| {
            s.token_nonce == token_nonce && s.client_nonce == hello.client_nonce && s.peer == peer
        }) {
            if s.ack.len() <= packet.len() && s.expires > now {
                return vec![Out::Datagram(peer, s.ack.clone())];
            }
            return self.ignore(Ignore::ReusedToken, peer);
        }
        if self.sessions.len() >= self.config.max_sessions {
            self.expire(now);
            if self.sessions.len() >= self.config.max_sessions {
                return self.ignore(Ignore::TooManySessions, peer);
            }
        }
        if wire::HELLO_ACK_LEN > packet.len() {
            // Never answer with more than was asked (a valid token is always longer).
            return self.ignore(Ignore::InvalidToken, peer);
        }
        match self.used.take(token_nonce, claims.exp, unix) {
            Ok(()) => {}
            Err(NonceRefusal::Reused) => return self.ignore(Ignore::ReusedToken, peer),
            Err(NonceRefusal::Full) => return self.ignore(Ignore::TooManySessions, peer),
        }
        let mut id = u64::from_be_bytes(random());
        while id == 0 || self.sessions.contains_key(&id) {
            id = u64::from_be_bytes(random());
        }
        let server_nonce: [u8; 16] = random();
        let key = SessionKey::derive(hello.token, id, &hello.client_nonce, &server_nonce);
        let budget = claims.budget.min(self.config.max_budget);
        let ack = wire::hello_ack(
            &HelloAck {
                session: id,
                server_nonce,
                budget,
                max_train: self.config.max_train.min(wire::MAX_TRAIN_PACKETS),
            },
            &key,
        );
        let token_left = Duration::from_millis(claims.exp.saturating_sub(unix));
        let expires = now + self.config.session_ttl.min(token_left);
        info!(%peer, site = %claims.site, budget, "probe session started");
        self.sessions.insert(
            id,
            Session {
                peer,
                key,
                token_nonce,
                client_nonce: hello.client_nonce,
                ack: ack.clone(),
                start: now,
                start_wall: at.wall,
                expires,
                last_seen: now,
                budget,
                sent: ack.len() as u64,
                received: packet.len() as u64,
                next_seq: 0,
                window: ReplayWindow::default(),
                up: HashMap::new(),
                up_order: Vec::new(),
                site: claims.site,
            },
        );
        Counters::add(&self.counters.sessions_accepted, 1);
        self.counters
            .sessions_active
            .store(self.sessions.len() as u64, Ordering::Relaxed);
        vec![Out::Datagram(peer, ack)]
    }

    fn session_packet(&mut self, packet: &[u8], peer: SocketAddr, at: Arrival) -> Vec<Out> {
        let now = at.now;
        let p = match wire::parse_session(packet) {
            Ok(p) => p,
            Err(_) => return self.ignore(Ignore::Truncated, peer),
        };
        if !matches!(
            p.kind,
            kind::ECHO | kind::DOWN_TRAIN | kind::TRAIN_DATA | kind::UP_REPORT_REQ | kind::BYE
        ) {
            return self.ignore(Ignore::Malformed, peer);
        }
        let Some(s) = self.sessions.get_mut(&p.session) else {
            return self.ignore(Ignore::NoToken, peer);
        };
        if s.peer != peer || !s.key.check(Dir::Client, packet) {
            return self.ignore(Ignore::BadMac, peer);
        }
        if !s.window.accept(p.seq) {
            return self.ignore(Ignore::Replayed, peer);
        }
        if s.expires <= now {
            self.sessions.remove(&p.session);
            return self.ignore(Ignore::ExpiredToken, peer);
        }
        s.last_seen = now;
        s.received += packet.len() as u64;
        match p.kind {
            kind::ECHO => {
                let mut r = wire::Reader::new(p.body);
                let Some(client_time) = r.u64() else {
                    return self.ignore(Ignore::Truncated, peer);
                };
                if packet.len() < wire::MIN_ECHO {
                    return self.ignore(Ignore::Truncated, peer);
                }
                if !s.fits(packet.len() as u64) {
                    return self.ignore(Ignore::OverBudget, peer);
                }
                let seq = s.seq();
                let mut b = wire::session_header(kind::ECHO_REPLY, p.session, seq, packet.len());
                b.extend_from_slice(&client_time.to_be_bytes());
                b.extend_from_slice(&p.seq.to_be_bytes());
                wire::pad_to(&mut b, packet.len());
                s.key.seal(Dir::Server, &mut b);
                s.sent += b.len() as u64;
                vec![Out::Datagram(peer, b)]
            }
            kind::DOWN_TRAIN => {
                let req = match wire::TrainRequest::read(p.body) {
                    Ok(r) => r,
                    Err(_) => return self.ignore(Ignore::Truncated, peer),
                };
                let size = usize::from(req.size);
                if req.count == 0
                    || req.count > self.config.max_train.min(wire::MAX_TRAIN_PACKETS)
                    || !(wire::MIN_TRAIN_PACKET..=wire::MAX_DATAGRAM).contains(&size)
                    || req.gap_us > 1_000_000
                {
                    return self.ignore(Ignore::Malformed, peer);
                }
                if !s.fits(req.bytes()) {
                    return self.ignore(Ignore::OverBudget, peer);
                }
                s.sent += req.bytes();
                let first_seq = s.next_seq + 1;
                s.next_seq += u64::from(req.count);
                debug!(%peer, train = req.train, count = req.count, "down train");
                vec![Out::Train {
                    peer,
                    key: s.key.clone(),
                    session: p.session,
                    first_seq,
                    start: s.start,
                    req,
                }]
            }
            kind::TRAIN_DATA => {
                let d = match TrainData::read(p.body) {
                    Ok(d) => d,
                    Err(_) => return self.ignore(Ignore::Truncated, peer),
                };
                if d.count == 0
                    || d.count > self.config.max_train.min(wire::MAX_TRAIN_PACKETS)
                    || d.index >= d.count
                {
                    return self.ignore(Ignore::Malformed, peer);
                }
                if s.received > s.budget {
                    return self.ignore(Ignore::OverBudget, peer);
                }
                if !s.up.contains_key(&d.train) {
                    if s.up_order.len() >= MAX_UP_TRAINS {
                        let oldest = s.up_order.remove(0);
                        s.up.remove(&oldest);
                    }
                    s.up_order.push(d.train);
                }
                let train = s.up.entry(d.train).or_insert_with(|| UpTrain {
                    entries: Vec::new(),
                    reports: 0,
                });
                if train.entries.len() < usize::from(wire::MAX_TRAIN_PACKETS) {
                    train.entries.push(ReportEntry {
                        index: d.index,
                        size: u16::try_from(packet.len()).unwrap_or(u16::MAX),
                        arrival_us: u32::try_from(at.wall.saturating_sub(s.start_wall).as_micros())
                            .unwrap_or(u32::MAX),
                    });
                }
                Vec::new()
            }
            kind::UP_REPORT_REQ => {
                let mut r = wire::Reader::new(p.body);
                let Some(id) = r.u32() else {
                    return self.ignore(Ignore::Truncated, peer);
                };
                let seq = s.seq();
                let mut b = wire::session_header(kind::UP_REPORT, p.session, seq, 1400);
                let entries = match s.up.get_mut(&id) {
                    Some(t) if t.reports >= MAX_REPORTS_PER_TRAIN => {
                        return self.ignore(Ignore::OverBudget, peer);
                    }
                    Some(t) => {
                        t.reports += 1;
                        t.entries.as_slice()
                    }
                    None => &[],
                };
                wire::write_report(id, entries, &mut b);
                s.key.seal(Dir::Server, &mut b);
                if !s.fits(b.len() as u64) {
                    return self.ignore(Ignore::OverBudget, peer);
                }
                s.sent += b.len() as u64;
                vec![Out::Datagram(peer, b)]
            }
            kind::BYE => {
                info!(%peer, site = %s.site, sent = s.sent, received = s.received, "probe session ended");
                self.sessions.remove(&p.session);
                self.counters
                    .sessions_active
                    .store(self.sessions.len() as u64, Ordering::Relaxed);
                Vec::new()
            }
            _ => {
                warn!("unreachable probe packet type");
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_window() {
        let mut w = ReplayWindow::default();
        assert!(!w.accept(0));
        assert!(w.accept(1));
        assert!(!w.accept(1));
        assert!(w.accept(5));
        assert!(w.accept(3));
        assert!(!w.accept(3));
        assert!(w.accept(200));
        assert!(!w.accept(5), "too old");
        assert!(w.accept(199));
        assert!(w.accept(73));
        assert!(!w.accept(72));
        assert!(w.accept(1000));
        assert!(!w.accept(200));
    }
}
