//! The UDP shell on loopback: rate accuracy in real time, and the per-client mappings that carry
//! replies back.

use std::{net::SocketAddr, time::Duration};

use loadtest::link::{
    Capacity, LinkConfig, QueueLimit, Rate,
    shell::{LinkShell, ShellConfig, ShellReport},
};
use tokio::{
    net::UdpSocket,
    sync::oneshot,
    task::JoinHandle,
    time::{Instant, MissedTickBehavior, interval, timeout},
};

const LOOPBACK: &str = "127.0.0.1:0";

/// Starts a shell in front of `forward`; dropping or firing the sender stops it.
async fn start(
    forward: SocketAddr,
    up: LinkConfig,
    down: LinkConfig,
) -> (SocketAddr, oneshot::Sender<()>, JoinHandle<ShellReport>) {
    let config = ShellConfig::new(LOOPBACK.parse().unwrap(), forward, up, down);
    let shell = LinkShell::bind(config).await.unwrap();
    let listen = shell.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(shell.run(async {
        let _ = stopped.await;
    }));
    (listen, stop, run)
}

#[tokio::test]
async fn relays_at_the_configured_rate() {
    let server = UdpSocket::bind(LOOPBACK).await.unwrap();
    let up = LinkConfig {
        capacity: Capacity::Rate(Rate::from_kbps(2000)),
        queue: QueueLimit::Time(Duration::from_millis(200)),
        ..LinkConfig::default()
    };
    let (listen, stop, run) = start(server.local_addr().unwrap(), up, LinkConfig::default()).await;

    // Offer 2.4 Mbit/s for 2.2 s: 1200-byte datagrams every 4 ms.
    let sender = tokio::spawn(async move {
        let client = UdpSocket::bind(LOOPBACK).await.unwrap();
        let mut tick = interval(Duration::from_millis(4));
        tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
        for _ in 0..550 {
            tick.tick().await;
            client.send_to(&[0u8; 1200], listen).await.unwrap();
        }
    });

    let mut arrivals = Vec::new();
    let mut buf = vec![0u8; 2048];
    while let Ok(Ok(len)) = timeout(Duration::from_millis(300), server.recv(&mut buf)).await {
        arrivals.push((Instant::now(), len));
    }
    sender.await.unwrap();
    let _ = stop.send(());
    let report = run.await.unwrap();

    // The rate from 0.5 s to 2 s after the first datagram came through.
    let first = arrivals[0].0;
    let (from, to) = (
        first + Duration::from_millis(500),
        first + Duration::from_millis(2000),
    );
    let bytes: usize = arrivals
        .iter()
        .filter(|(at, _)| *at >= from && *at < to)
        .map(|(_, len)| len)
        .sum();
    let bps = bytes as f64 * 8.0 / 1.5;
    eprintln!(
        "loopback: {:.0} bit/s through a 2 Mbit/s link ({:+.2} %)",
        bps,
        (bps / 2e6 - 1.0) * 100.0
    );
    assert!((bps - 2e6).abs() <= 2e6 * 0.15, "{bps} bit/s");

    let up = report.up.counters();
    assert_eq!(up.packets_in, 550);
    assert!(up.packets_overflow > 0, "{up:?}");
    assert_eq!(
        up.packets_delivered as usize,
        arrivals.len() + report.send_errors as usize
    );
    assert_eq!(report.clients, 1);
}

#[tokio::test]
async fn replies_reach_each_client_through_its_own_mapping() {
    let server = UdpSocket::bind(LOOPBACK).await.unwrap();
    let delayed = LinkConfig {
        delay: Duration::from_millis(20),
        ..LinkConfig::default()
    };
    let (listen, stop, run) = start(server.local_addr().unwrap(), delayed.clone(), delayed).await;

    // The server echoes, prefixed with the address it saw.
    let echo = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 2048];
        while let Ok(Ok((len, from))) =
            timeout(Duration::from_millis(500), server.recv_from(&mut buf)).await
        {
            seen.push(from);
            server.send_to(&buf[..len], from).await.unwrap();
        }
        seen
    });

    let mut clients = Vec::new();
    for name in ["a", "b"] {
        let client = UdpSocket::bind(LOOPBACK).await.unwrap();
        let sent = Instant::now();
        client.send_to(name.as_bytes(), listen).await.unwrap();
        let mut buf = [0u8; 16];
        let (len, from) = timeout(Duration::from_secs(2), client.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((&buf[..len], from), (name.as_bytes(), listen));
        assert!(
            sent.elapsed() >= Duration::from_millis(40),
            "round trip {:?}",
            sent.elapsed()
        );
        clients.push(client.local_addr().unwrap());
    }

    let seen = echo.await.unwrap();
    assert_eq!(seen.len(), 2);
    assert_ne!(seen[0], seen[1], "one upstream 4-tuple per client");
    assert!(
        seen.iter().all(|addr| !clients.contains(addr)),
        "the server sees the emulator, not the clients"
    );

    let _ = stop.send(());
    let report = run.await.unwrap();
    assert_eq!(report.clients, 2);
    assert_eq!(
        (
            report.up.counters().packets_delivered,
            report.down.counters().packets_delivered
        ),
        (2, 2)
    );
}
