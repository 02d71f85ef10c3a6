//! The relay's sockets: one UDP port shared by every peer and a passive ICE-TCP port. Socket threads
//! read datagrams, route them with the [`Router`] and hand them to the owning worker; workers send
//! directly on the shared UDP socket, and through a per-connection writer thread on TCP.

pub mod framing;
pub mod router;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use tracing::{debug, info, warn};

pub use router::{Route, Router, Transport};

use crate::core::room::ParticipantId;
use crate::worker::WorkerMsg;

/// Most ICE-TCP connections at once.
const MAX_TCP_CONNECTIONS: usize = 1024;
/// A TCP connection that has not sent a routable STUN request by then is closed.
const TCP_UNROUTED_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames queued for one TCP connection before new ones are dropped (as UDP would lose them).
const TCP_SEND_QUEUE: usize = 1024;
/// Largest UDP datagram read.
const UDP_BUF: usize = 2048;

/// One received datagram, routed to its participant.
#[derive(Debug)]
pub struct Datagram {
    /// UDP or TCP.
    pub transport: Transport,
    /// The remote address.
    pub source: SocketAddr,
    /// The relay's local address it arrived on.
    pub destination: SocketAddr,
    /// The bytes (one RFC 4571 frame for TCP).
    pub data: Vec<u8>,
    /// When it was read.
    pub received: Instant,
    /// The participant it belongs to.
    pub participant: ParticipantId,
}

/// Counters of the socket layer.
#[derive(Debug, Default)]
pub struct NetCounters {
    /// Datagrams that matched no participant.
    pub unrouted: AtomicU64,
    /// Datagrams dropped because a worker's queue was full.
    pub queue_full: AtomicU64,
    /// TCP connections closed for a bad frame.
    pub tcp_bad_frames: AtomicU64,
    /// TCP frames dropped because the connection's send queue was full.
    pub tcp_send_dropped: AtomicU64,
    /// UDP sends that failed.
    pub udp_send_errors: AtomicU64,
}

/// An ICE-TCP connection by its remote address: one listener, so the remote address names it (the
/// local side may be an unspecified bind, and str0m names the advertised address as the source).
type TcpKey = SocketAddr;

/// The relay's sockets.
#[derive(Debug)]
pub struct Net {
    udp: Option<Arc<UdpSocket>>,
    udp_addr: Option<SocketAddr>,
    tcp: Option<TcpListener>,
    tcp_addr: Option<SocketAddr>,
    tcp_conns: Mutex<HashMap<TcpKey, Sender<Vec<u8>>>>,
    /// Counters.
    pub counters: NetCounters,
}

impl Net {
    /// Bind the configured ports.
    pub fn bind(udp: Option<SocketAddr>, tcp: Option<SocketAddr>) -> std::io::Result<Net> {
        let udp = udp.map(UdpSocket::bind).transpose()?;
        let udp_addr = udp.as_ref().map(UdpSocket::local_addr).transpose()?;
        // The TCP port follows the UDP one when both ask for an ephemeral port on the same address.
        let tcp = tcp.map(TcpListener::bind).transpose()?;
        let tcp_addr = tcp.as_ref().map(TcpListener::local_addr).transpose()?;
        if let Some(l) = &tcp {
            l.set_nonblocking(true)?;
        }
        if let Some(s) = &udp {
            s.set_read_timeout(Some(Duration::from_millis(200)))?;
        }
        Ok(Net {
            udp: udp.map(Arc::new),
            udp_addr,
            tcp,
            tcp_addr,
            tcp_conns: Mutex::new(HashMap::new()),
            counters: NetCounters::default(),
        })
    }

    /// The bound UDP address, if UDP is on.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp_addr
    }

    /// The bound TCP address, if ICE-TCP is on.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// Start the socket threads.
    pub fn start(
        self: &Arc<Self>,
        router: Arc<Router>,
        workers: Vec<Sender<WorkerMsg>>,
        shutdown: Arc<AtomicBool>,
    ) -> std::io::Result<Vec<thread::JoinHandle<()>>> {
        let mut handles = vec![];
        if self.udp.is_some() {
            let net = self.clone();
            let (router, workers, shutdown) = (router.clone(), workers.clone(), shutdown.clone());
            handles.push(
                thread::Builder::new()
                    .name("relay-udp".into())
                    .spawn(move || net.udp_loop(&router, &workers, &shutdown))?,
            );
        }
        if self.tcp.is_some() {
            let net = self.clone();
            handles.push(
                thread::Builder::new()
                    .name("relay-tcp".into())
                    .spawn(move || net.tcp_accept_loop(router, workers, shutdown))?,
            );
        }
        Ok(handles)
    }

    fn dispatch(&self, workers: &[Sender<WorkerMsg>], route: Route, d: Datagram) {
        let Some(tx) = workers.get(route.worker) else {
            return;
        };
        match tx.try_send(WorkerMsg::Datagram(d)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    fn udp_loop(&self, router: &Router, workers: &[Sender<WorkerMsg>], shutdown: &AtomicBool) {
        let (Some(socket), Some(local)) = (&self.udp, self.udp_addr) else {
            return;
        };
        let mut buf = vec![0u8; UDP_BUF];
        while !shutdown.load(Ordering::Relaxed) {
            let (n, source) = match socket.recv_from(&mut buf) {
                Ok(v) => v,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue;
                }
                Err(e) => {
                    // ICMP errors (port unreachable from a gone peer) surface here on Linux.
                    debug!("udp recv: {e}");
                    continue;
                }
            };
            let data = &buf[..n];
            match router.route(Transport::Udp, source, local, data) {
                Some(route) => self.dispatch(
                    workers,
                    route,
                    Datagram {
                        transport: Transport::Udp,
                        source,
                        destination: local,
                        data: data.to_vec(),
                        received: Instant::now(),
                        participant: route.participant,
                    },
                ),
                None => {
                    self.counters.unrouted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn tcp_accept_loop(
        self: Arc<Self>,
        router: Arc<Router>,
        workers: Vec<Sender<WorkerMsg>>,
        shutdown: Arc<AtomicBool>,
    ) {
        let Some(listener) = &self.tcp else {
            return;
        };
        while !shutdown.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, remote)) => {
                    if self.lock_conns().len() >= MAX_TCP_CONNECTIONS {
                        warn!("ICE-TCP connection limit reached; refusing {remote}");
                        continue;
                    }
                    let net = self.clone();
                    let (router, workers, shutdown) =
                        (router.clone(), workers.clone(), shutdown.clone());
                    let spawned = thread::Builder::new()
                        .name("relay-tcp-conn".into())
                        .spawn(move || net.tcp_conn(stream, remote, &router, &workers, &shutdown));
                    if let Err(e) = spawned {
                        warn!("ICE-TCP: cannot start a connection thread: {e}");
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(50))
                }
                Err(e) => {
                    warn!("ICE-TCP accept: {e}");
                    thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    fn lock_conns(&self) -> std::sync::MutexGuard<'_, HashMap<TcpKey, Sender<Vec<u8>>>> {
        self.tcp_conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tcp_conn(
        &self,
        stream: TcpStream,
        remote: SocketAddr,
        router: &Router,
        workers: &[Sender<WorkerMsg>],
        shutdown: &AtomicBool,
    ) {
        let Ok(local) = stream.local_addr() else {
            return;
        };
        let setup = stream
            .set_nonblocking(false)
            .and_then(|_| stream.set_nodelay(true))
            .and_then(|_| stream.set_read_timeout(Some(Duration::from_millis(500))))
            .and_then(|_| stream.try_clone());
        let mut writer = match setup {
            Ok(w) => w,
            Err(e) => {
                warn!("ICE-TCP {remote}: {e}");
                return;
            }
        };
        let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(TCP_SEND_QUEUE);
        self.lock_conns().insert(remote, tx.clone());
        let writer_thread =
            thread::Builder::new()
                .name("relay-tcp-write".into())
                .spawn(move || {
                    for frame in rx {
                        if writer.write_all(&frame).is_err() {
                            break;
                        }
                    }
                    let _ = writer.shutdown(std::net::Shutdown::Both);
                });
        debug!("ICE-TCP connection from {remote}");
        let mut reader = stream;
        let mut decoder = framing::FrameDecoder::new();
        let mut buf = vec![0u8; 8192];
        let opened = Instant::now();
        let mut routed = false;
        'read: while !shutdown.load(Ordering::Relaxed) {
            if !routed && opened.elapsed() > TCP_UNROUTED_TIMEOUT {
                debug!("ICE-TCP {remote}: no ICE request in time, closing");
                break;
            }
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue;
                }
                Err(_) => break,
            };
            decoder.push(&buf[..n]);
            loop {
                match decoder.next_frame() {
                    Ok(Some(frame)) => match router.route(Transport::Tcp, remote, local, &frame) {
                        Some(route) => {
                            routed = true;
                            self.dispatch(
                                workers,
                                route,
                                Datagram {
                                    transport: Transport::Tcp,
                                    source: remote,
                                    destination: local,
                                    data: frame,
                                    received: Instant::now(),
                                    participant: route.participant,
                                },
                            );
                        }
                        None => {
                            self.counters.unrouted.fetch_add(1, Ordering::Relaxed);
                        }
                    },
                    Ok(None) => break,
                    Err(e) => {
                        info!("ICE-TCP {remote}: {e}; closing");
                        self.counters.tcp_bad_frames.fetch_add(1, Ordering::Relaxed);
                        break 'read;
                    }
                }
            }
        }
        // Only this connection's entry: a new connection from the same address may have replaced it.
        {
            let mut conns = self.lock_conns();
            if conns.get(&remote).is_some_and(|c| c.same_channel(&tx)) {
                conns.remove(&remote);
            }
        }
        drop(tx);
        let _ = reader.shutdown(std::net::Shutdown::Both);
        if let Ok(h) = writer_thread {
            let _ = h.join();
        }
    }

    /// Send one packet to `destination` (from the one UDP socket, or on the ICE-TCP connection from
    /// that address).
    pub fn send(&self, transport: Transport, destination: SocketAddr, data: &[u8]) {
        match transport {
            Transport::Udp => {
                if let Some(s) = &self.udp
                    && s.send_to(data, destination).is_err()
                {
                    self.counters
                        .udp_send_errors
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            Transport::Tcp => {
                let Some(frame) = framing::encode(data) else {
                    return;
                };
                let conns = self.lock_conns();
                if let Some(tx) = conns.get(&destination)
                    && tx.try_send(frame).is_err()
                {
                    self.counters
                        .tcp_send_dropped
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}
