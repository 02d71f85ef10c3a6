//! Two `loadtest` bots in one consultation: real VP8 (simulcast and one adaptive layer) and Opus,
//! negotiated over the real signaling and carried by the relay, decoded on the other side; directly,
//! and through the link emulator in front of a relay that advertises the emulator's address
//! (`--public-ip`, as behind NAT).

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::{Server, consultation};
use loadtest::bot::{self, BotConfig, BotReport, VideoMode};
use loadtest::link::LinkConfig;
use loadtest::link::shell::{LinkShell, ShellConfig};
use loadtest::media::PublisherConfig;
use tokio::sync::oneshot;

/// Runs the doctor (simulcast) and the specialist (one adaptive 320x180 layer) for `duration`.
async fn call(server: &Server, duration: Duration) -> (BotReport, BotReport) {
    let consult = consultation(server).await;
    let camera = PublisherConfig {
        width: 640,
        height: 360,
        ..PublisherConfig::default()
    };
    let config = |token: &str, video: VideoMode, seed: u64| BotConfig {
        ws_url: server.ws_url(),
        token: token.to_string(),
        request_id: consult.id.clone(),
        bind: "127.0.0.1".parse().unwrap(),
        video: Some(video),
        seed,
        duration,
        epoch: std::time::Instant::now(),
        reroute: None,
    };
    let doctor = config(&consult.doctor, VideoMode::Simulcast(camera.clone()), 1);
    let specialist = config(
        &consult.specialist,
        VideoMode::Adaptive {
            config: PublisherConfig { seed: 2, ..camera },
            max_bitrate_bps: 400_000,
            scale_resolution_down_by: 2.0,
        },
        2,
    );
    let (doctor, specialist) = tokio::join!(bot::run(doctor), bot::run(specialist));
    (doctor.unwrap(), specialist.unwrap())
}

/// Each side connected and decoded the other's video and audio; the doctor sees the specialist's
/// adaptive layer at its size.
fn assert_exchanged(doctor: &BotReport, specialist: &BotReport) {
    for (me, other, height) in [(doctor, specialist, 180), (specialist, doctor, 0)] {
        let context = format!(
            "{} receiving from {}",
            me.participant_id, other.participant_id
        );
        assert!(me.connected, "{context}: media never connected");
        assert!(
            other.sent.video_frames > 0 && other.sent.audio_packets > 0,
            "{context}: {:?}",
            other.sent
        );
        assert_eq!(me.received.len(), 1, "{context}: {:?}", me.received);
        let got = &me.received[0];
        assert_eq!(got.participant_id, other.participant_id, "{context}");
        // Video starts once the relay's estimate has room for it and a keyframe came.
        assert!(got.video.decoded_frames >= 20, "{context}: {:?}", got.video);
        assert!(
            got.audio.decoded_packets >= 100,
            "{context}: {:?}",
            got.audio
        );
        if height > 0 {
            assert_eq!(
                got.video.height, height,
                "{context}: the adaptive layer is 320x180"
            );
        } else {
            assert!(
                [90, 180, 360].contains(&got.video.height),
                "{context}: {:?}",
                got.video
            );
        }
        eprintln!(
            "{context}: sent {:?}, received {:?} {:?}",
            other.sent,
            got.counters(),
            got.video
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_exchange_real_vp8_and_opus_through_the_relay() {
    let server = Server::start();
    let (doctor, specialist) = call(&server, Duration::from_secs(10)).await;
    assert_exchanged(&doctor, &specialist);
}

/// The relay listens on 127.0.0.1 and advertises 127.0.0.2, where the link emulator listens and
/// forwards to it: str0m must accept datagrams whose destination is the advertised address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_call_through_the_link_emulator_with_the_advertised_address() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .unwrap()
        .port();
    let link = LinkConfig {
        delay: Duration::from_millis(10),
        ..LinkConfig::default()
    };
    let shell = LinkShell::bind(ShellConfig::new(
        format!("127.0.0.2:{port}").parse().unwrap(),
        format!("127.0.0.1:{port}").parse().unwrap(),
        link.clone(),
        link,
    ))
    .await
    .expect("the link emulator binds 127.0.0.2 (loopback covers 127.0.0.0/8)");
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(shell.run(async {
        let _ = stopped.await;
    }));
    let media = format!("127.0.0.1:{port}");
    let server = Server::start_with(
        &[
            "--media-udp",
            &media,
            "--no-tcp",
            "--public-ip",
            "127.0.0.2",
        ],
        None,
    );
    let (doctor, specialist) = call(&server, Duration::from_secs(8)).await;
    let _ = stop.send(());
    let report = running.await.unwrap();
    assert_exchanged(&doctor, &specialist);
    // All of it crossed the emulator: one mapping per bot, media both ways.
    assert_eq!(report.clients, 2, "{:?}", report.summary());
    for (direction, stats) in [("up", &report.up), ("down", &report.down)] {
        let delivered = stats.counters().bytes_delivered;
        assert!(delivered > 200_000, "{direction}: {delivered} bytes");
    }
}
