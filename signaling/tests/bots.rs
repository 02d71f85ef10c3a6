//! Two `loadtest` bots in one consultation: real VP8 (simulcast and one adaptive layer) and Opus,
//! negotiated over the real signaling and carried by the relay, decoded on the other side.

mod common;

use std::time::Duration;

use common::{Server, consultation};
use loadtest::bot::{self, BotConfig, VideoMode};
use loadtest::media::PublisherConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_exchange_real_vp8_and_opus_through_the_relay() {
    let server = Server::start();
    let consult = consultation(&server).await;
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
        duration: Duration::from_secs(10),
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
    let (doctor, specialist) = (doctor.unwrap(), specialist.unwrap());

    for (me, other, height) in [(&doctor, &specialist, 180), (&specialist, &doctor, 0)] {
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
