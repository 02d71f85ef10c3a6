//! Serve and measure over loopback through the library, and crafted packets at a running server:
//! truncated, forged, replayed, without or with a bad, expired or reused token. Nothing is
//! rate-shaped here; negative checks wait a generous window for a reply that must not come.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bandwidth_probe::client::{MeasureConfig, MeasureError, measure};
use bandwidth_probe::server::{ProbeServer, ServerConfig, ServerStats};
use bandwidth_probe::token::TokenKey;
use bandwidth_probe::unix_ms;
use bandwidth_probe::wire::{self, Dir, SessionKey, kind};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

const SECRET: &[u8] = b"loopback test secret, 32 bytes!!";
/// How long a negative check waits for a reply that must not come.
const SILENCE: Duration = Duration::from_millis(400);

struct Running {
    server: Arc<ProbeServer>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<ServerStats>,
}

async fn start(config: impl FnOnce(&mut ServerConfig)) -> Running {
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap(), TokenKey::new(SECRET));
    config(&mut cfg);
    let server = Arc::new(ProbeServer::bind(cfg).await.unwrap());
    let addr = server.local_addr();
    let (tx, rx) = oneshot::channel::<()>();
    let s = server.clone();
    let task = tokio::spawn(async move {
        s.run(async {
            let _ = rx.await;
        })
        .await
    });
    Running {
        server,
        addr,
        stop: Some(tx),
        task,
    }
}

impl Running {
    async fn stop(mut self) -> ServerStats {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.await.unwrap()
    }
    /// Waits until the server has processed `n` datagrams.
    async fn wait_received(&self, n: u64) -> ServerStats {
        for _ in 0..200 {
            let s = self.server.stats();
            if s.packets_received >= n {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.server.stats()
    }
}

fn token(budget: u64) -> String {
    TokenKey::new(SECRET)
        .issue("site-a", budget, Duration::from_secs(60), unix_ms())
        .unwrap()
}

async fn client(server: SocketAddr) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.connect(server).await.unwrap();
    s
}

/// Whether anything arrives within [`SILENCE`].
async fn silent(s: &UdpSocket) -> bool {
    let mut buf = [0u8; 2048];
    tokio::time::timeout(SILENCE, s.recv(&mut buf))
        .await
        .is_err()
}

async fn recv(s: &UdpSocket) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(5), s.recv(&mut buf))
        .await
        .expect("a reply")
        .unwrap();
    buf.truncate(n);
    buf
}

/// A session opened by hand: socket, id, key.
async fn handshake(server: SocketAddr, tok: &str) -> (UdpSocket, u64, SessionKey) {
    let s = client(server).await;
    let nonce = [7u8; 16];
    let hello = wire::hello(&nonce, tok);
    s.send(&hello).await.unwrap();
    let ack = recv(&s).await;
    assert!(
        ack.len() <= hello.len(),
        "the ack is not bigger than the hello"
    );
    let a = wire::parse_hello_ack(&ack).unwrap();
    let key = SessionKey::derive(tok, a.session, &nonce, &a.server_nonce);
    assert!(key.check(Dir::Server, &ack));
    (s, a.session, key)
}

fn echo(session: u64, seq: u64, key: &SessionKey) -> Vec<u8> {
    let mut b = wire::session_header(kind::ECHO, session, seq, 64);
    b.extend_from_slice(&1234u64.to_be_bytes());
    wire::pad_to(&mut b, 64);
    key.seal(Dir::Client, &mut b);
    b
}

#[tokio::test]
async fn serve_and_measure_over_loopback() {
    let srv = start(|_| {}).await;
    let m = measure(&MeasureConfig::new(srv.addr, token(3_000_000)), &|_| {})
        .await
        .unwrap();
    assert!(m.down_kbps > 1000.0, "{m:?}");
    assert!(m.up_kbps > 1000.0, "{m:?}");
    assert_eq!(m.loss_pct, 0.0);
    assert!(m.rtt_ms >= 0.0 && m.rtt_ms <= m.rtt_median_ms);
    assert!(m.down_trains >= 1 && m.up_trains >= 1);
    let json = serde_json::to_value(&m).unwrap();
    for field in [
        "down_kbps",
        "up_kbps",
        "rtt_ms",
        "jitter_ms",
        "loss_pct",
        "elapsed_ms",
        "bytes_sent",
        "bytes_received",
    ] {
        assert!(json.get(field).is_some_and(|v| v.is_number()), "{field}");
    }
    // The bye reaches the server and ends the session. Loopback may drop datagrams of an
    // unpaced up train when a socket buffer fills, so bytes are compared as bounds.
    let mut stats = srv.server.stats();
    for _ in 0..200 {
        if stats.sessions_active == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        stats = srv.server.stats();
    }
    assert_eq!(stats.sessions_accepted, 1);
    assert_eq!(stats.sessions_active, 0);
    assert!(stats.bytes_received <= m.bytes_sent && stats.bytes_received > m.bytes_sent / 2);
    assert!(m.bytes_received <= stats.bytes_sent && m.bytes_received > stats.bytes_sent / 2);
    assert!(m.down_bytes <= stats.bytes_sent && m.up_bytes <= m.bytes_sent);
    assert!(stats.bytes_sent <= 3_000_000);
    assert_eq!(stats.ignored.total(), 0, "{stats:?}");
    srv.stop().await;
}

#[tokio::test]
async fn truncated_forged_and_replayed_packets_are_ignored_and_counted() {
    let srv = start(|_| {}).await;
    let tok = token(100_000);
    let (s, session, key) = handshake(srv.addr, &tok).await;
    // A valid echo gets its reply, the same length.
    let e = echo(session, 1, &key);
    s.send(&e).await.unwrap();
    let reply = recv(&s).await;
    assert_eq!(reply.len(), e.len());
    assert!(key.check(Dir::Server, &reply));
    // Replayed: the same echo again.
    s.send(&e).await.unwrap();
    // Forged: a wrong MAC, a wrong key, a changed body.
    let mut forged = echo(session, 2, &key);
    let last = forged.len() - 1;
    forged[last] ^= 0xff;
    s.send(&forged).await.unwrap();
    let other = SessionKey::derive("not the token", session, &[7; 16], &[0; 16]);
    s.send(&echo(session, 3, &other)).await.unwrap();
    let mut changed = echo(session, 4, &key);
    changed[wire::SESSION_HEADER] ^= 1;
    s.send(&changed).await.unwrap();
    // The right key from another address is forged too.
    let elsewhere = client(srv.addr).await;
    elsewhere.send(&echo(session, 5, &key)).await.unwrap();
    // Truncated: too short for anything, and a cut session packet.
    s.send(b"BWP").await.unwrap();
    s.send(&e[..wire::SESSION_HEADER + 4]).await.unwrap();
    let stats = srv.wait_received(1 + 1 + 1 + 3 + 1 + 2).await;
    assert!(silent(&s).await, "no reply to any of them");
    assert!(silent(&elsewhere).await);
    assert_eq!(stats.ignored.replayed, 1, "{stats:?}");
    assert_eq!(stats.ignored.bad_mac, 4, "{stats:?}");
    assert_eq!(stats.ignored.truncated, 2, "{stats:?}");
    // Still usable after all that: a fresh sequence number is answered.
    s.send(&echo(session, 6, &key)).await.unwrap();
    assert_eq!(recv(&s).await.len(), 64);
    let stats = srv.stop().await;
    assert_eq!(stats.ignored.total(), 7);
    assert_eq!(stats.sessions_accepted, 1);
}

#[tokio::test]
async fn clients_without_a_good_token_get_nothing() {
    let srv = start(|_| {}).await;
    let key = TokenKey::new(SECRET);
    let s = client(srv.addr).await;
    // No token.
    s.send(&wire::hello(&[1; 16], "")).await.unwrap();
    // Garbage, a token signed with another key, an expired one.
    s.send(&wire::hello(&[1; 16], &"x".repeat(120)))
        .await
        .unwrap();
    let foreign = TokenKey::new(b"some other secret, 32 bytes long")
        .issue("", 100_000, Duration::from_secs(60), unix_ms())
        .unwrap();
    s.send(&wire::hello(&[1; 16], &foreign)).await.unwrap();
    let expired = key
        .issue("", 100_000, Duration::from_secs(1), unix_ms() - 10_000)
        .unwrap();
    s.send(&wire::hello(&[1; 16], &expired)).await.unwrap();
    // Not ours at all, and a session packet for no session.
    s.send(&[0u8; 100]).await.unwrap();
    s.send(&echo(
        42,
        1,
        &SessionKey::derive("t", 42, &[0; 16], &[0; 16]),
    ))
    .await
    .unwrap();
    let stats = srv.wait_received(6).await;
    assert!(silent(&s).await, "no reply to any of them");
    assert_eq!(stats.ignored.no_token, 2, "{stats:?}");
    assert_eq!(stats.ignored.invalid_token, 2, "{stats:?}");
    assert_eq!(stats.ignored.expired_token, 1, "{stats:?}");
    assert_eq!(stats.ignored.malformed, 1, "{stats:?}");
    assert_eq!(stats.packets_sent, 0);
    assert_eq!(stats.bytes_sent, 0);

    // A token works once; a second measurement with it gets no answer.
    let tok = token(3_000_000);
    let (_s1, _, _) = handshake(srv.addr, &tok).await;
    let again = client(srv.addr).await;
    again.send(&wire::hello(&[2; 16], &tok)).await.unwrap();
    assert!(silent(&again).await);
    let mut cfg = MeasureConfig::new(srv.addr, tok);
    cfg.connect_timeout = Duration::from_millis(600);
    let err = measure(&cfg, &|_| {}).await.unwrap_err();
    assert!(matches!(err, MeasureError::NoAnswer(_)), "{err}");
    let stats = srv.stop().await;
    assert_eq!(stats.ignored.reused_token, 1 + 3, "{stats:?}");
    assert_eq!(stats.sessions_accepted, 1);
}

#[tokio::test]
async fn trains_stay_within_the_budget_and_sessions_are_capped() {
    let srv = start(|c| c.max_sessions = 1).await;
    let tok = token(5_000);
    let (s, session, key) = handshake(srv.addr, &tok).await;
    // 10 x 1200 bytes is over a 5000-byte budget: ignored, nothing sent.
    let mut b = wire::session_header(kind::DOWN_TRAIN, session, 1, 64);
    wire::TrainRequest {
        train: 1,
        count: 10,
        size: 1200,
        gap_us: 0,
        ratio_milli: 1000,
        hold: 0,
    }
    .write(&mut b);
    key.seal(Dir::Client, &mut b);
    s.send(&b).await.unwrap();
    // A second client while the one session exists: ignored.
    let other = client(srv.addr).await;
    other
        .send(&wire::hello(&[3; 16], &token(5_000)))
        .await
        .unwrap();
    let stats = srv.wait_received(3).await;
    assert!(silent(&s).await);
    assert!(silent(&other).await);
    assert_eq!(stats.ignored.over_budget, 1, "{stats:?}");
    assert_eq!(stats.ignored.too_many_sessions, 1, "{stats:?}");
    // Three packets fit: exactly three arrive.
    let mut b = wire::session_header(kind::DOWN_TRAIN, session, 2, 64);
    wire::TrainRequest {
        train: 2,
        count: 3,
        size: 1200,
        gap_us: 0,
        ratio_milli: 1000,
        hold: 0,
    }
    .write(&mut b);
    key.seal(Dir::Client, &mut b);
    s.send(&b).await.unwrap();
    for _ in 0..3 {
        assert_eq!(recv(&s).await.len(), 1200);
    }
    assert!(silent(&s).await);
    let stats = srv.stop().await;
    assert!(stats.bytes_sent <= 5_000, "{stats:?}");
}
