//! The UDP shell: relays datagrams between clients and a server through two [`Link`]s.
//!
//! Datagrams from any client to the listen address go through the *up* link to the forward
//! address, from a socket of their own per client (bound to the listen IP on an ephemeral port,
//! like a NAT), so the server sees one 4-tuple per client. What the server sends back to that
//! socket goes through the *down* link to the client, from the listen address. Datagrams are not
//! inspected, so STUN, DTLS and SRTP pass as they are. A client's mapping expires after
//! [`ShellConfig::idle_timeout`] without traffic either way.
//!
//! Departures are sent when due, waking on tokio's timer (millisecond resolution). The rate does
//! not depend on the timer: every departure time comes from the model, and a late wake-up sends
//! all that are due, so the timer only decides how closely packets follow their schedule.

use std::{
    collections::HashMap,
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use serde::Serialize;
use thiserror::Error;
use tokio::{
    net::UdpSocket,
    sync::mpsc,
    task::JoinHandle,
    time::{Instant, MissedTickBehavior, interval, sleep_until},
};
use tracing::{debug, info, warn};

use super::{ConfigError, DirectionSummary, Link, LinkConfig, LinkStats, Push};

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;
/// Beyond this many client mappings, datagrams from new clients are dropped: each mapping holds a
/// socket and a task.
const MAX_CLIENTS: usize = 1_024;
/// Replies waiting for the shell's loop; the upstream readers wait when it is full.
const REPLY_CHANNEL: usize = 1_024;

/// What the shell relays, between which addresses, through which links.
#[derive(Clone, Debug)]
pub struct ShellConfig {
    /// Where clients send to. Port 0 picks a free port ([`LinkShell::local_addr`] tells which).
    pub listen: SocketAddr,
    /// Where their datagrams go (the server).
    pub forward: SocketAddr,
    /// Client → server.
    pub up: LinkConfig,
    /// Server → client.
    pub down: LinkConfig,
    /// A client mapping without traffic for this long is removed.
    pub idle_timeout: Duration,
}

impl ShellConfig {
    /// Relays from `listen` to `forward` through `up` and `down`; mappings expire after 60 s.
    pub fn new(listen: SocketAddr, forward: SocketAddr, up: LinkConfig, down: LinkConfig) -> Self {
        ShellConfig {
            listen,
            forward,
            up,
            down,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Why the shell could not start or run.
#[derive(Debug, Error)]
pub enum ShellError {
    /// A link configuration is invalid.
    #[error("the {direction} link: {cause}")]
    Config {
        /// `up` or `down`.
        direction: &'static str,
        /// What is wrong.
        cause: ConfigError,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {cause}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        cause: io::Error,
    },
}

/// What a finished run did.
#[derive(Clone, Debug)]
pub struct ShellReport {
    /// How long the shell ran.
    pub elapsed: Duration,
    /// Client mappings made.
    pub clients: usize,
    /// Datagrams the operating system refused to send (after passing the links).
    pub send_errors: u64,
    /// Client → server.
    pub up: LinkStats,
    /// Server → client.
    pub down: LinkStats,
}

impl ShellReport {
    /// The summary `loadtest link --json` prints.
    pub fn summary(&self) -> ReportSummary {
        self.summary_with_windows(&[])
    }

    /// The summary with each direction's [`LinkStats::window_summary`] for `windows` (since the
    /// start).
    pub fn summary_with_windows(&self, windows: &[std::ops::Range<Duration>]) -> ReportSummary {
        let direction = |stats: &LinkStats| DirectionSummary {
            windows: windows
                .iter()
                .map(|w| stats.window_summary(w.clone()))
                .collect(),
            ..stats.summary()
        };
        ReportSummary {
            elapsed_s: self.elapsed.as_secs_f64(),
            clients: self.clients,
            send_errors: self.send_errors,
            up: direction(&self.up),
            down: direction(&self.down),
        }
    }
}

/// The JSON object `loadtest link --json` prints.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReportSummary {
    /// How long the shell ran, s.
    pub elapsed_s: f64,
    /// Client mappings made.
    pub clients: usize,
    /// Datagrams the operating system refused to send.
    pub send_errors: u64,
    /// Client → server.
    pub up: DirectionSummary,
    /// Server → client.
    pub down: DirectionSummary,
}

/// A bound, not yet running, link emulator.
pub struct LinkShell {
    config: ShellConfig,
    socket: UdpSocket,
    up: Link<Upstream>,
    down: Link<Downstream>,
}

/// A datagram on its way to the server, with the upstream socket of its client.
struct Upstream {
    socket: Arc<UdpSocket>,
    data: Vec<u8>,
}

/// A datagram on its way back to a client.
struct Downstream {
    client: SocketAddr,
    data: Vec<u8>,
}

impl LinkShell {
    /// Checks both link configurations and binds the listen address.
    pub async fn bind(config: ShellConfig) -> Result<Self, ShellError> {
        let up = Link::new(config.up.clone()).map_err(|cause| ShellError::Config {
            direction: "up",
            cause,
        })?;
        let down = Link::new(config.down.clone()).map_err(|cause| ShellError::Config {
            direction: "down",
            cause,
        })?;
        let socket = UdpSocket::bind(config.listen)
            .await
            .map_err(|cause| ShellError::Bind {
                addr: config.listen,
                cause,
            })?;
        Ok(LinkShell {
            config,
            socket,
            up,
            down,
        })
    }

    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        // A bound socket knows its address; fall back to the configured one all the same.
        self.socket.local_addr().unwrap_or(self.config.listen)
    }

    /// Relays until `shutdown` completes, then returns what happened. Packets still in the links
    /// are discarded.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> ShellReport {
        self.run_since(Instant::now(), shutdown).await
    }

    /// [`Self::run`] with the links' clock starting at `start` (at or before now): a caller that
    /// measures in the same time base (the bots of `loadtest bwe`) passes its own epoch.
    pub async fn run_since(
        self,
        start: Instant,
        shutdown: impl Future<Output = ()>,
    ) -> ShellReport {
        let listen = self.local_addr();
        let LinkShell {
            config,
            socket,
            mut up,
            mut down,
        } = self;
        let (replies_tx, mut replies) = mpsc::channel::<Downstream>(REPLY_CHANNEL);
        let mut clients = Clients::new(&config, replies_tx);
        let mut send_errors = 0;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut sweep = interval(
            config
                .idle_timeout
                .clamp(Duration::from_millis(10), Duration::from_secs(1)),
        );
        sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        info!(%listen, forward = %config.forward, "link emulator running");

        loop {
            let now = start.elapsed();
            while let Some(d) = up.poll(now) {
                if let Err(e) = d.payload.socket.try_send(&d.payload.data) {
                    send_errors += 1;
                    debug!(error = %e, "sending to the server failed");
                }
            }
            while let Some(d) = down.poll(now) {
                if let Err(e) = socket.try_send_to(&d.payload.data, d.payload.client) {
                    send_errors += 1;
                    debug!(client = %d.payload.client, error = %e, "sending to a client failed");
                }
            }
            let next = [up.poll_timeout(), down.poll_timeout()]
                .into_iter()
                .flatten()
                .min();

            tokio::select! {
                () = &mut shutdown => break,
                () = wake_at(next.and_then(|t| start.checked_add(t))) => {}
                received = socket.recv_from(&mut buf) => match received {
                    Ok((len, client)) => {
                        let now = start.elapsed();
                        if let Some(upstream) = clients.upstream(client).await {
                            let packet = Upstream { socket: upstream, data: buf[..len].to_vec() };
                            if let Push::Dropped(reason) = up.push(now, len, packet) {
                                debug!(%client, ?reason, "up: dropped");
                            }
                        }
                    }
                    Err(e) => debug!(error = %e, "receiving from clients failed"),
                },
                Some(reply) = replies.recv() => {
                    clients.touch(reply.client);
                    let len = reply.data.len();
                    if let Push::Dropped(reason) = down.push(start.elapsed(), len, reply) {
                        debug!(?reason, "down: dropped");
                    }
                }
                _ = sweep.tick() => clients.expire(),
            }
        }

        let elapsed = start.elapsed();
        info!(
            elapsed_s = elapsed.as_secs_f64(),
            clients = clients.opened,
            "link emulator stopped"
        );
        ShellReport {
            elapsed,
            clients: clients.opened,
            send_errors,
            up: up.finish(elapsed),
            down: down.finish(elapsed),
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn wake_at(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The client mappings: per client address, an upstream socket and the task reading the
/// server's replies from it.
struct Clients {
    bind_ip: IpAddr,
    forward: SocketAddr,
    idle_timeout: Duration,
    replies: mpsc::Sender<Downstream>,
    mappings: HashMap<SocketAddr, Mapping>,
    /// Mappings opened so far.
    opened: usize,
}

struct Mapping {
    socket: Arc<UdpSocket>,
    reader: JoinHandle<()>,
    last_seen: Instant,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Clients {
    fn new(config: &ShellConfig, replies: mpsc::Sender<Downstream>) -> Self {
        Clients {
            bind_ip: config.listen.ip(),
            forward: config.forward,
            idle_timeout: config.idle_timeout,
            replies,
            mappings: HashMap::new(),
            opened: 0,
        }
    }

    /// The upstream socket for `client`, opened on its first datagram; `None` when it cannot be.
    async fn upstream(&mut self, client: SocketAddr) -> Option<Arc<UdpSocket>> {
        if !self.mappings.contains_key(&client) {
            if self.mappings.len() >= MAX_CLIENTS {
                warn!(%client, "too many clients ({MAX_CLIENTS}): datagram dropped");
                return None;
            }
            match self.open(client).await {
                Ok(mapping) => {
                    self.mappings.insert(client, mapping);
                    self.opened += 1;
                }
                Err(e) => {
                    warn!(%client, forward = %self.forward, error = %e, "cannot open an upstream socket: datagram dropped");
                    return None;
                }
            }
        }
        let mapping = self.mappings.get_mut(&client)?;
        mapping.last_seen = Instant::now();
        Some(Arc::clone(&mapping.socket))
    }

    async fn open(&self, client: SocketAddr) -> io::Result<Mapping> {
        let socket = UdpSocket::bind(SocketAddr::new(self.bind_ip, 0)).await?;
        socket.connect(self.forward).await?;
        // The loop sends with `try_send`, which fails with WouldBlock until the reactor has seen the
        // new socket writable once: without this the first datagrams of every client were lost.
        socket.writable().await?;
        let socket = Arc::new(socket);
        debug!(%client, upstream = %socket.local_addr()?, "client mapping opened");
        let reader = tokio::spawn(read_replies(
            Arc::clone(&socket),
            client,
            self.replies.clone(),
        ));
        Ok(Mapping {
            socket,
            reader,
            last_seen: Instant::now(),
        })
    }

    fn touch(&mut self, client: SocketAddr) {
        if let Some(mapping) = self.mappings.get_mut(&client) {
            mapping.last_seen = Instant::now();
        }
    }

    fn expire(&mut self) {
        let before = self.mappings.len();
        self.mappings
            .retain(|_, m| m.last_seen.elapsed() < self.idle_timeout);
        if self.mappings.len() < before {
            debug!(
                expired = before - self.mappings.len(),
                "client mappings expired"
            );
        }
    }
}

/// Reads the server's replies to one client and hands them to the shell's loop.
async fn read_replies(
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    replies: mpsc::Sender<Downstream>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match socket.recv(&mut buf).await {
            Ok(len) => {
                if replies
                    .send(Downstream {
                        client,
                        data: buf[..len].to_vec(),
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            // E.g. an ICMP port unreachable from the server reported on this connected socket.
            Err(e) => debug!(%client, error = %e, "receiving from the server failed"),
        }
    }
}
