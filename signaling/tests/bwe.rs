//! One short real `loadtest bwe` run (rmcat-5.1 at a fifth of its length) through the real
//! `telemed`, the link emulator and the media bots. Only generous sanity bounds: the adaptation
//! targets are benchmarks (`make bench-bwe`, docs/benchmarks.md), not tests.

use std::path::PathBuf;
use std::time::Duration;

use loadtest::bwe::{self, BweOptions, Scenario};
use loadtest::media::PublisherConfig;

const WARMUP: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_rmcat_run_carries_video_within_the_line() {
    let scenario = Scenario::named("rmcat-5.1").unwrap().scaled(0.2).unwrap();
    let outcome = bwe::run(BweOptions {
        telemed: PathBuf::from(env!("CARGO_BIN_EXE_telemed")),
        scenario: scenario.clone(),
        warmup: WARMUP,
        relay_args: vec![],
        // A light camera: the suite runs on two cores.
        camera: PublisherConfig {
            width: 640,
            height: 360,
            ..PublisherConfig::default()
        },
    })
    .await
    .expect("the run completes");
    let r = &outcome.report;
    let json = serde_json::to_value(r).unwrap();
    eprintln!("{json}");
    for key in [
        "scenario",
        "duration_s",
        "segments",
        "reconvergence_s",
        "undecodable_frames",
        "audio_gaps_over_60ms",
        "video_loss_after_repair_pct",
    ] {
        assert!(json.get(key).is_some(), "no {key} in {json}");
    }
    assert_eq!(r.duration_s, 20.0);
    assert_eq!(r.segments.len(), 4);
    assert_eq!(r.reconvergence_s.len(), 3);
    assert_eq!(r.series.len(), 20);
    assert!(outcome.publishers[0].connected && outcome.viewers[0].connected);
    assert_eq!(r.viewers.len(), 1);
    for (i, (segment, viewer)) in r.segments.iter().zip(&r.viewers[0].segments).enumerate() {
        // Media flowed, and no more than the line can carry. Right after a drop the queue still
        // holds up to 300 ms admitted at the previous capacity, so the bound is the larger of the
        // two (generous: counting padding or retransmitted copies as media would break it).
        let previous = i.checked_sub(1).map_or(0, |p| r.segments[p].capacity_kbps);
        let cap = f64::from(segment.capacity_kbps.max(previous));
        assert!(
            viewer.received_kbps > 50.0 && viewer.received_kbps < 1.1 * cap,
            "segment {i}: {viewer:?} under {cap} kbit/s"
        );
        assert!(viewer.fps > 5.0, "segment {i}: {viewer:?}");
        assert!(
            segment.queue_delay_p50_ms.is_some(),
            "segment {i}: nothing crossed the line"
        );
    }
    assert!(
        r.video_loss_after_repair_pct < 50.0,
        "{}",
        r.video_loss_after_repair_pct
    );
    // Over scenario time, the media the viewer counted crossed the emulated line: no more than the
    // line delivered then (plus the 300 ms its queue may hold at the start, at most 2.5 Mbit/s), and
    // at least 30 % of it (the rest is headers, retransmissions, padding and probes).
    let window = WARMUP..WARMUP + scenario.duration;
    let delivered = outcome.line.down.window_summary(window).delivered_kbps * r.duration_s;
    let received: f64 = r.series.iter().map(|p| p.received_kbps).sum();
    assert!(
        received <= delivered + 0.3 * 2_500.0 && received >= 0.3 * delivered,
        "the line delivered {delivered:.0} kbit, the viewer got {received:.0} kbit of media"
    );
}
