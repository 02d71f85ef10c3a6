//! The measuring side: [`measure`] runs one measurement against a probe server.
//!
//! 1. Hello with the token; the server's ack gives the session id, its nonce (the session key is
//!    derived from both nonces and the token), the byte budget and the longest train it sends.
//! 2. [`MeasureConfig::echoes`] small echoes, a few ms apart: RTT (minimum and median), jitter,
//!    loss.
//! 3. Down (server → client): train requests; the client timestamps the arrivals.
//! 4. Up (client → server): the client sends trains back to back, then asks for the server's
//!    arrival times (the request queues behind the train, so it arrives after its last packet).
//!
//! Each direction runs [`CapacityEstimator`]'s plan: short first train, longer trains sized from
//! the estimate, stop once stable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout_at};
use tracing::debug;

use crate::estimator::{
    Arrival, Capacity, CapacityEstimator, ChirpPacket, ChirpPlan, RttStats, Step, chirp_available,
};
use crate::rx;
use crate::wire::{self, Dir, SessionKey, TrainData, TrainRequest, kind};

/// How to measure.
#[derive(Debug, Clone)]
pub struct MeasureConfig {
    /// The probe server.
    pub server: SocketAddr,
    /// The probe token.
    pub token: String,
    /// Datagram size of train packets (at most [`wire::MAX_DATAGRAM`]).
    pub packet_size: u16,
    /// Echoes for RTT, jitter and loss.
    pub echoes: u16,
    /// Time between echoes.
    pub echo_interval: Duration,
    /// Longest wait for the server's first answer (the hello is sent three times within it).
    pub connect_timeout: Duration,
}

impl MeasureConfig {
    /// Measures against `server` with `token`: 1200-byte packets, 20 echoes 5 ms apart, 3 s to
    /// connect.
    pub fn new(server: SocketAddr, token: String) -> Self {
        MeasureConfig {
            server,
            token,
            packet_size: 1200,
            echoes: 20,
            echo_interval: Duration::from_millis(5),
            connect_timeout: Duration::from_secs(3),
        }
    }
}

/// The result. The first eight fields are the contract of `bandwidth-probe measure --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// Bottleneck capacity server → client, kbit/s (IP-level bytes).
    pub down_kbps: f64,
    /// Bottleneck capacity client → server, kbit/s.
    pub up_kbps: f64,
    /// Smallest RTT, ms.
    pub rtt_ms: f64,
    /// Jitter (mean absolute difference of consecutive RTTs), ms.
    pub jitter_ms: f64,
    /// Echoes lost, %.
    pub loss_pct: f64,
    /// Wall time of the whole measurement, ms.
    pub elapsed_ms: f64,
    /// UDP payload bytes the client sent.
    pub bytes_sent: u64,
    /// UDP payload bytes the client received.
    pub bytes_received: u64,
    /// Median RTT, ms.
    pub rtt_median_ms: f64,
    /// Lower of the two directions' confidences (0–1).
    pub confidence: f64,
    /// Confidence of the down estimate.
    pub down_confidence: f64,
    /// Confidence of the up estimate.
    pub up_confidence: f64,
    /// Wall time of the down direction, ms.
    pub down_ms: f64,
    /// Wall time of the up direction, ms.
    pub up_ms: f64,
    /// Train bytes server → client.
    pub down_bytes: u64,
    /// Train bytes client → server.
    pub up_bytes: u64,
    /// Trains each way.
    pub down_trains: usize,
    /// Trains each way.
    pub up_trains: usize,
    /// Bandwidth free server → client when measured, kbit/s: the capacity less the other traffic a
    /// chirp met once its queue built, at
    /// most `down_kbps` (see [`crate::estimator::chirp_available`]); absent when there was no
    /// time or budget left for the chirp, or it was lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_available_kbps: Option<f64>,
    /// Bandwidth free client → server, kbit/s, as `down_available_kbps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up_available_kbps: Option<f64>,
    /// The site measured, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
}

/// Why a measurement failed.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// A socket failed.
    #[error("probe socket: {0}")]
    Io(#[from] std::io::Error),
    /// No hello-ack: the server ignores every hello without a valid, unexpired, unused token.
    #[error(
        "no answer from the probe server {0}: it is unreachable, or the token is invalid, expired or already used (the server does not answer those)"
    )]
    NoAnswer(SocketAddr),
    /// The token is too long to send.
    #[error("the token is longer than {} bytes", crate::token::MAX_TOKEN_LEN)]
    TokenTooLong,
    /// The packet size is out of range.
    #[error(
        "packet size must be between {} and {} bytes",
        wire::MIN_TRAIN_PACKET,
        wire::MAX_DATAGRAM
    )]
    PacketSize,
}

/// Where a measurement is, for a progress display.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Session open.
    Connected,
    /// RTT measured.
    Rtt(RttStats),
    /// A train was measured.
    Train {
        /// `down` or `up`.
        direction: &'static str,
        /// Trains so far in this direction.
        trains: usize,
        /// The estimate so far, bit/s.
        bps: Option<f64>,
    },
    /// A direction is done.
    Done {
        /// `down` or `up`.
        direction: &'static str,
        /// The estimate, bit/s.
        bps: f64,
    },
}

struct Conn {
    socket: UdpSocket,
    key: SessionKey,
    session: u64,
    seq: u64,
    start: Instant,
    /// `start` on the wall clock of receive timestamps.
    start_wall: Duration,
    sent: u64,
    received: u64,
    buf: Vec<u8>,
}

/// A session packet from the server, checked.
struct Incoming {
    at: Instant,
    /// Arrival, µs since the connection started, from the kernel's receive timestamp
    /// ([`crate::rx`]).
    at_us: u64,
    kind: u8,
    len: usize,
    body: Vec<u8>,
}

impl Conn {
    fn header(&mut self, k: u8, capacity: usize) -> Vec<u8> {
        self.seq += 1;
        wire::session_header(k, self.session, self.seq, capacity)
    }

    async fn send_sealed(&mut self, mut b: Vec<u8>) -> std::io::Result<()> {
        self.key.seal(Dir::Client, &mut b);
        let n = self.socket.send(&b).await?;
        self.sent += n as u64;
        Ok(())
    }

    fn us(&self, at: Instant) -> u64 {
        at.duration_since(self.start).as_micros() as u64
    }

    /// The next valid packet of this session before `deadline`.
    async fn recv(&mut self, deadline: Instant) -> std::io::Result<Option<Incoming>> {
        loop {
            let (n, _, arrived) =
                match timeout_at(deadline, rx::recv_from(&self.socket, &mut self.buf)).await {
                    Err(_) => return Ok(None),
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                    Ok(r) => r?,
                };
            let at = Instant::now();
            self.received += n as u64;
            let packet = &self.buf[..n];
            let Ok(p) = wire::parse_session(packet) else {
                continue;
            };
            if packet[..4] != wire::MAGIC
                || p.session != self.session
                || !self.key.check(Dir::Server, packet)
            {
                debug!("ignored a packet that is not from this session");
                continue;
            }
            return Ok(Some(Incoming {
                at,
                at_us: arrived.saturating_sub(self.start_wall).as_micros() as u64,
                kind: p.kind,
                len: n,
                body: p.body.to_vec(),
            }));
        }
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    let _ = getrandom::fill(&mut b);
    b
}

/// IP and UDP header bytes, counted with every datagram in the capacity.
fn overhead(addr: &SocketAddr) -> u32 {
    if addr.is_ipv4() { 28 } else { 48 }
}

/// Runs one measurement; `progress` hears where it is.
pub async fn measure(
    config: &MeasureConfig,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<Measurement, MeasureError> {
    if config.token.len() > crate::token::MAX_TOKEN_LEN {
        return Err(MeasureError::TokenTooLong);
    }
    let size = usize::from(config.packet_size);
    if !(wire::MIN_TRAIN_PACKET..=wire::MAX_DATAGRAM).contains(&size) {
        return Err(MeasureError::PacketSize);
    }
    let started = Instant::now();
    let started_wall = rx::wall_now();
    let bind: SocketAddr = if config.server.is_ipv4() {
        "0.0.0.0:0".parse().unwrap_or_else(|_| unreachable!())
    } else {
        "[::]:0".parse().unwrap_or_else(|_| unreachable!())
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(config.server).await?;
    rx::enable(&socket);

    // Handshake.
    let client_nonce: [u8; 16] = random();
    let hello = wire::hello(&client_nonce, &config.token);
    let mut buf = vec![0u8; 2048];
    let mut sent = 0u64;
    let mut received = 0u64;
    let deadline = started + config.connect_timeout;
    let mut ack = None;
    'tries: for attempt in 0..3u32 {
        sent += socket.send(&hello).await? as u64;
        let try_until =
            (Instant::now() + config.connect_timeout / 7 * 2u32.pow(attempt)).min(deadline);
        loop {
            let n = match timeout_at(try_until, socket.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                Ok(r) => r?,
            };
            received += n as u64;
            let Ok(a) = wire::parse_hello_ack(&buf[..n]) else {
                continue;
            };
            let key = SessionKey::derive(&config.token, a.session, &client_nonce, &a.server_nonce);
            if key.check(Dir::Server, &buf[..n]) {
                ack = Some((a, key));
                break 'tries;
            }
        }
    }
    let Some((ack, key)) = ack else {
        return Err(MeasureError::NoAnswer(config.server));
    };
    progress(Progress::Connected);
    let mut conn = Conn {
        socket,
        key,
        session: ack.session,
        seq: 0,
        start: started,
        start_wall: started_wall,
        sent,
        received,
        buf,
    };

    let rtt = echoes(&mut conn, config).await?;
    if let Some(r) = rtt {
        progress(Progress::Rtt(r));
    }
    let rtt_us = rtt.map_or(200_000, |r| (r.median_ms * 1000.0) as u64);
    let over = overhead(&config.server);
    let wire_bytes = u32::from(config.packet_size) + over;

    let mut train_id = 0u32;
    let path = TrainPath {
        wire_bytes,
        max_train: ack.max_train,
        budget: ack.budget,
        rtt_us,
        over,
    };
    let down = trains(
        &mut conn,
        config,
        Direction::Down,
        &path,
        &mut train_id,
        progress,
    )
    .await?;
    let up = trains(
        &mut conn,
        config,
        Direction::Up,
        &path,
        &mut train_id,
        progress,
    )
    .await?;
    let (down_cap, up_cap) = (down.capacity, up.capacity);

    let bye = conn.header(kind::BYE, 64);
    conn.send_sealed(bye).await?;

    let kbps = |bps: Option<f64>| bps.map_or(0.0, |b| (b / 1000.0 * 10.0).round() / 10.0);
    let conf = |c: Option<Capacity>| c.map_or(0.0, |c| c.confidence);
    let r = rtt.unwrap_or(RttStats {
        min_ms: 0.0,
        median_ms: 0.0,
        jitter_ms: 0.0,
        loss_pct: 100.0,
    });
    let round = |x: f64| (x * 100.0).round() / 100.0;
    Ok(Measurement {
        down_kbps: kbps(down_cap.map(|c| c.bps)),
        up_kbps: kbps(up_cap.map(|c| c.bps)),
        rtt_ms: round(r.min_ms),
        jitter_ms: round(r.jitter_ms),
        loss_pct: round(r.loss_pct),
        elapsed_ms: round(started.elapsed().as_secs_f64() * 1000.0),
        bytes_sent: conn.sent,
        bytes_received: conn.received,
        rtt_median_ms: round(r.median_ms),
        confidence: conf(down_cap).min(conf(up_cap)),
        down_confidence: conf(down_cap),
        up_confidence: conf(up_cap),
        down_ms: round(down.ms),
        up_ms: round(up.ms),
        down_bytes: down.bytes,
        up_bytes: up.bytes,
        down_trains: down.trains,
        up_trains: up.trains,
        down_available_kbps: down.available_bps.map(|b| kbps(Some(b))),
        up_available_kbps: up.available_bps.map(|b| kbps(Some(b))),
        site: None,
    })
}

/// Sends the echoes and collects the replies.
async fn echoes(conn: &mut Conn, config: &MeasureConfig) -> std::io::Result<Option<RttStats>> {
    let count = config.echoes.clamp(1, 200);
    let mut sent_at: HashMap<u64, Instant> = HashMap::new();
    let mut order: Vec<u64> = Vec::new();
    let mut rtts: HashMap<u64, u64> = HashMap::new();
    let mut next_send = Instant::now();
    let mut sent = 0u16;
    let mut max_rtt = 0u64;
    let mut last_deadline = None;
    loop {
        if sent < count && Instant::now() >= next_send {
            let mut b = conn.header(kind::ECHO, 64);
            let seq = conn.seq;
            let now = Instant::now();
            b.extend_from_slice(&conn.us(now).to_be_bytes());
            wire::pad_to(&mut b, 64);
            conn.send_sealed(b).await?;
            sent_at.insert(seq, now);
            order.push(seq);
            sent += 1;
            next_send = now + config.echo_interval;
            continue;
        }
        let deadline = if sent < count {
            next_send
        } else {
            *last_deadline.get_or_insert_with(|| {
                let wait = if rtts.is_empty() {
                    Duration::from_secs(1)
                } else {
                    Duration::from_micros((max_rtt * 3).max(100_000))
                };
                Instant::now() + wait
            })
        };
        match conn.recv(deadline).await? {
            Some(p) if p.kind == kind::ECHO_REPLY => {
                let mut r = wire::Reader::new(&p.body);
                let (Some(_), Some(seq)) = (r.u64(), r.u64()) else {
                    continue;
                };
                if let Some(t) = sent_at.get(&seq) {
                    let rtt = p.at.duration_since(*t).as_micros() as u64;
                    max_rtt = max_rtt.max(rtt);
                    rtts.entry(seq).or_insert(rtt);
                }
                if sent == count && rtts.len() == usize::from(count) {
                    break;
                }
            }
            Some(_) => {}
            None if sent >= count => break,
            None => {}
        }
    }
    let in_order: Vec<u64> = order.iter().filter_map(|s| rtts.get(s).copied()).collect();
    Ok(RttStats::from_samples(usize::from(count), &in_order))
}

/// Which way a train goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Server → client.
    Down,
    /// Client → server.
    Up,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::Down => "down",
            Direction::Up => "up",
        }
    }
}

/// What the trains of both directions share: packet size on the wire, the server's limits, the RTT.
struct TrainPath {
    wire_bytes: u32,
    max_train: u16,
    budget: u64,
    rtt_us: u64,
    over: u32,
}

/// What the trains of one direction measured.
struct DirectionResult {
    capacity: Option<Capacity>,
    available_bps: Option<f64>,
    ms: f64,
    bytes: u64,
    trains: usize,
}

/// Sends trains in one direction until the estimator is stable, the byte budget is spent or the
/// direction's time is up; then, if time and budget allow, one chirp for the bandwidth free now.
async fn trains(
    conn: &mut Conn,
    config: &MeasureConfig,
    direction: Direction,
    path: &TrainPath,
    train_id: &mut u32,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<DirectionResult, MeasureError> {
    let start = Instant::now();
    // What already crossed the line this way counts against the token's budget.
    let used = match direction {
        Direction::Down => conn.received,
        Direction::Up => conn.sent,
    };
    let budget = path.budget.saturating_sub(used + 8_000);
    let mut estimator = CapacityEstimator::new(path.wire_bytes, path.max_train, budget);
    let mut bytes = 0u64;
    let min_size = u16::try_from(wire::MIN_TRAIN_PACKET).unwrap_or(config.packet_size);
    // A train leaves a queue at the bottleneck that a call sharing the line waits behind, and
    // empties a shaper's burst allowance. The next train (or the chirp) waits twice the last one's
    // time at the estimate: with a call using half the line, long enough for the queue to drain
    // and the allowance to refill, so that the next train's head passes in the burst again.
    let mut settle = Duration::ZERO;
    while let Step::Train {
        count: n,
        wire_bytes,
    } = estimator.next(bytes, start.elapsed().as_micros() as u64)
    {
        let est = estimator.estimate().map(|c| c.bps);
        let length = train_time(n, u64::from(wire_bytes), est);
        if estimator.trains().len() >= 2 && !time_left(start, path.rtt_us, settle + length) {
            break;
        }
        tokio::time::sleep(settle).await;
        let size = u16::try_from(wire_bytes.saturating_sub(path.over))
            .unwrap_or(config.packet_size)
            .clamp(min_size, config.packet_size);
        *train_id += 1;
        let req = TrainRequest {
            train: *train_id,
            count: n,
            size,
            gap_us: 0,
            ratio_milli: 1000,
            hold: 0,
        };
        let got = send_train(conn, direction, &req, path, length).await?;
        bytes += req.bytes();
        let arrivals: Vec<Arrival> = got
            .iter()
            .map(|p| Arrival {
                index: p.index,
                bytes: p.bytes,
                at_us: p.at_us,
            })
            .collect();
        let t = estimator.add_train(n, u32::from(size) + path.over, &arrivals);
        settle = 2 * train_time(
            n,
            u64::from(size) + u64::from(path.over),
            estimator.estimate().map(|c| c.bps),
        );
        debug!(direction = direction.name(), train = req.train, sent = n, estimate = ?t, "train measured");
        progress(Progress::Train {
            direction: direction.name(),
            trains: estimator.trains().len(),
            bps: estimator.estimate().map(|c| c.bps),
        });
    }
    let capacity = estimator.estimate();
    let mut available_bps = None;
    if let Some(c) = capacity {
        let plan = ChirpPlan::new(c.bps, path.over, min_size, config.packet_size);
        let length = Duration::from_micros(plan.duration_us());
        let chirp_bytes = u64::from(plan.count) * u64::from(plan.size);
        if time_left(start, path.rtt_us, settle + length) && bytes + chirp_bytes <= budget {
            tokio::time::sleep(settle).await;
            *train_id += 1;
            let req = TrainRequest {
                train: *train_id,
                count: plan.count,
                size: plan.size,
                gap_us: plan.first_gap_us,
                ratio_milli: plan.ratio_milli,
                hold: plan.hold,
            };
            let got = send_train(conn, direction, &req, path, length).await?;
            bytes += chirp_bytes;
            available_bps = chirp_available(&plan, &got, c.bps, path.over);
            debug!(direction = direction.name(), received = got.len(), available = ?available_bps, "chirp measured");
        }
    }
    progress(Progress::Done {
        direction: direction.name(),
        bps: capacity.map_or(0.0, |c| c.bps),
    });
    Ok(DirectionResult {
        capacity,
        available_bps,
        ms: start.elapsed().as_secs_f64() * 1000.0,
        bytes,
        trains: estimator.trains().len(),
    })
}

/// Whether something lasting `length`, started now, ends within the direction's time
/// ([`crate::estimator::MAX_DIRECTION_US`]), counting an RTT to ask for it and hear back.
fn time_left(start: Instant, rtt_us: u64, length: Duration) -> bool {
    let end = start.elapsed() + Duration::from_micros(rtt_us) + length;
    end.as_micros() <= u128::from(crate::estimator::MAX_DIRECTION_US)
}

/// How long a train of `n` packets takes at `bps` (or at 0.4 Mbit/s when unknown).
fn train_time(n: u16, wire_bytes: u64, bps: Option<f64>) -> Duration {
    let bps = bps.unwrap_or(400_000.0).max(100_000.0);
    Duration::from_secs_f64(f64::from(n) * wire_bytes as f64 * 8.0 / bps)
}

/// Sends a train or chirp one way and returns what arrived (sender and receiver times).
/// `length` is how long it should take to cross the line.
async fn send_train(
    conn: &mut Conn,
    direction: Direction,
    req: &TrainRequest,
    path: &TrainPath,
    length: Duration,
) -> std::io::Result<Vec<ChirpPacket>> {
    match direction {
        Direction::Down => down_train(conn, req, path, length).await,
        Direction::Up => up_train(conn, req, path, length).await,
    }
}

async fn down_train(
    conn: &mut Conn,
    req: &TrainRequest,
    path: &TrainPath,
    length: Duration,
) -> std::io::Result<Vec<ChirpPacket>> {
    let mut b = conn.header(kind::DOWN_TRAIN, 64);
    req.write(&mut b);
    conn.send_sealed(b).await?;
    let rtt = Duration::from_micros(path.rtt_us);
    let first_deadline = Instant::now() + rtt * 2 + Duration::from_millis(250) + length;
    let mut got: Vec<ChirpPacket> = Vec::new();
    let mut last: Option<Instant> = None;
    loop {
        let deadline = match last {
            None => first_deadline,
            // After an arrival: the time a few packets take at the pace so far (or the chirp's
            // first gap), at least 40 ms.
            Some(t) => {
                let pace = if got.len() >= 2 {
                    // Wall-clock arrivals: a clock stepped back must not underflow.
                    let span = got[got.len() - 1].at_us.saturating_sub(got[0].at_us);
                    Duration::from_micros(span / (got.len() as u64 - 1))
                } else {
                    Duration::from_micros(req.gap_before(1))
                };
                (t + (pace * 6).max(Duration::from_millis(40))).min(first_deadline.max(t) + rtt)
            }
        };
        let Some(p) = conn.recv(deadline).await? else {
            break;
        };
        if p.kind != kind::TRAIN_DATA {
            continue;
        }
        let Ok(d) = TrainData::read(&p.body) else {
            continue;
        };
        if d.train != req.train {
            continue;
        }
        got.push(ChirpPacket {
            index: d.index,
            bytes: u32::try_from(p.len).unwrap_or(0) + path.over,
            sent_us: d.sent_us,
            at_us: p.at_us,
        });
        last = Some(p.at);
        if got.len() >= usize::from(req.count) || d.index + 1 >= req.count {
            break;
        }
    }
    debug!(
        train = req.train,
        sent = req.count,
        received = got.len(),
        "down train"
    );
    Ok(got)
}

async fn up_train(
    conn: &mut Conn,
    req: &TrainRequest,
    path: &TrainPath,
    length: Duration,
) -> std::io::Result<Vec<ChirpPacket>> {
    let size = usize::from(req.size);
    let start = Instant::now();
    let mut due = start;
    let mut sent_us = Vec::with_capacity(usize::from(req.count));
    for index in 0..req.count {
        let gap = req.gap_before(index);
        if gap > 0 {
            due += Duration::from_micros(gap);
            crate::pace_until(due).await;
        }
        let mut b = conn.header(kind::TRAIN_DATA, size);
        let now_us = conn.us(Instant::now());
        TrainData {
            train: req.train,
            index,
            count: req.count,
            sent_us: now_us,
        }
        .write(&mut b);
        wire::pad_to(&mut b, size);
        conn.send_sealed(b).await?;
        sent_us.push(now_us);
    }
    let rtt = Duration::from_micros(path.rtt_us);
    for attempt in 0..3u32 {
        let mut b = conn.header(kind::UP_REPORT_REQ, 64);
        b.extend_from_slice(&req.train.to_be_bytes());
        conn.send_sealed(b).await?;
        let wait = if attempt == 0 {
            rtt * 2 + Duration::from_millis(250) + length * 2
        } else {
            rtt * 2 + Duration::from_millis(250)
        };
        let deadline = Instant::now().max(start) + wait;
        while let Some(p) = conn.recv(deadline).await? {
            if p.kind != kind::UP_REPORT {
                continue;
            }
            let Ok((id, entries)) = wire::read_report(&p.body) else {
                continue;
            };
            if id != req.train {
                continue;
            }
            return Ok(entries
                .iter()
                .filter_map(|e| {
                    Some(ChirpPacket {
                        index: e.index,
                        bytes: u32::from(e.size) + path.over,
                        sent_us: *sent_us.get(usize::from(e.index))?,
                        at_us: u64::from(e.arrival_us),
                    })
                })
                .collect());
        }
        debug!(train = req.train, attempt, "no up-report yet");
    }
    Ok(Vec::new())
}
