//! The link model's rate, delay and loss accuracy, on a simulated clock.

use std::time::Duration;

use loadtest::link::{
    Capacity, Departure, DropReason, GilbertElliott, Jitter, Link, LinkConfig, MahimahiTrace, Push,
    QueueLimit, Rate, Schedule,
};

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn secs(v: f64) -> Duration {
    Duration::from_secs_f64(v)
}

fn rate_link(kbps: u64) -> LinkConfig {
    LinkConfig {
        capacity: Capacity::Rate(Rate::from_kbps(kbps)),
        ..LinkConfig::default()
    }
}

/// `count` packets of `len` bytes, one every `gap`, numbered from 0.
fn constant_bitrate(
    gap: Duration,
    len: usize,
    count: u32,
) -> impl Iterator<Item = (Duration, usize, u32)> {
    (0..count).map(move |i| (gap * i, len, i))
}

/// Offers the arrivals in time order, polling departures as the simulated clock passes them, and
/// returns every departure.
fn simulate<P>(
    link: &mut Link<P>,
    arrivals: impl IntoIterator<Item = (Duration, usize, P)>,
) -> Vec<Departure<P>> {
    let mut departures = Vec::new();
    for (at, len, payload) in arrivals {
        deliver_until(link, at, &mut departures);
        let _ = link.push(at, len, payload);
    }
    deliver_until(link, Duration::MAX, &mut departures);
    departures
}

fn deliver_until<P>(link: &mut Link<P>, until: Duration, out: &mut Vec<Departure<P>>) {
    while let Some(due) = link.poll_timeout().filter(|&due| due <= until) {
        out.push(link.poll(due).expect("a packet is due"));
    }
}

/// bit/s of the departures that left the bottleneck within `from..to`.
fn delivered_bps<P>(departures: &[Departure<P>], from: Duration, to: Duration) -> f64 {
    let bytes: usize = departures
        .iter()
        .filter(|d| d.departed >= from && d.departed < to)
        .map(|d| d.len)
        .sum();
    bytes as f64 * 8.0 / (to - from).as_secs_f64()
}

fn assert_within(got: f64, want: f64, tolerance: f64, what: &str) {
    assert!(
        (got - want).abs() <= want * tolerance,
        "{what}: got {got}, want {want} ± {:.1} %",
        tolerance * 100.0
    );
}

#[test]
fn delivered_rate_equals_capacity_under_twice_the_load() {
    for (kbps, len) in [(500, 1000), (1000, 1200), (20_000, 1200)] {
        let mut link = Link::new(rate_link(kbps)).unwrap();
        // Offer twice the capacity for 10 s.
        let gap = Duration::from_secs_f64(len as f64 * 8.0 / (2.0 * kbps as f64 * 1e3));
        let count = (10.0 / gap.as_secs_f64()) as u32;
        let departures = simulate(&mut link, constant_bitrate(gap, len, count));
        let want = kbps as f64 * 1e3;
        assert_within(
            delivered_bps(&departures, secs(1.0), secs(10.0)),
            want,
            0.02,
            "departures",
        );
        let stats_bps = link.stats().delivered_bytes(secs(1.0)..secs(10.0)) as f64 * 8.0 / 9.0;
        assert_within(stats_bps, want, 0.02, "statistics");
        let c = link.stats().counters();
        assert!(c.packets_overflow > 0);
        assert_eq!(
            c.packets_in,
            c.packets_delivered + c.packets_overflow + c.packets_lost
        );
    }
}

#[test]
fn time_queue_limit_bounds_queue_delay() {
    let config = LinkConfig {
        queue: QueueLimit::Time(ms(100)),
        ..rate_link(1000)
    };
    let mut link = Link::new(config).unwrap();
    let departures = simulate(&mut link, constant_bitrate(ms(3), 1000, 3000)); // 2.7 Mbit/s
    // The limit counts the packet in transmission whole, so a full queue holds 84–100 ms of
    // packets (of 8 ms each at 1 Mbit/s).
    let full = ms(100 - 2 * 8)..=ms(100 + 8);
    let max = departures.iter().map(|d| d.queue_delay).max().unwrap();
    assert!(full.contains(&max), "max queue delay {max:?}");
    let p99 = link
        .stats()
        .queue_delay(secs(1.0)..secs(9.0))
        .percentile(99.0)
        .unwrap();
    assert!(full.contains(&p99), "p99 {p99:?}");
    assert!(link.stats().counters().packets_overflow > 1000);
}

#[test]
fn byte_queue_limit_bounds_bytes_queued() {
    let config = LinkConfig {
        queue: QueueLimit::Bytes(10_000),
        ..rate_link(1000)
    };
    let mut link = Link::new(config).unwrap();
    let mut max_queued = 0;
    let mut overflows = 0;
    for (at, len, id) in constant_bitrate(ms(4), 1200, 2000) {
        while link.poll(at).is_some() {}
        if link.push(at, len, id) == Push::Dropped(DropReason::QueueOverflow) {
            overflows += 1;
        }
        max_queued = max_queued.max(link.queued_bytes(at));
    }
    assert!(max_queued <= 10_000, "{max_queued}");
    assert!(max_queued > 10_000 - 1200, "{max_queued}");
    assert_eq!(overflows, link.stats().counters().packets_overflow);
    assert!(overflows > 0);
}

#[test]
fn idle_link_gives_exactly_the_one_way_delay_plus_serialisation() {
    let config = LinkConfig {
        delay: ms(50),
        ..rate_link(1000)
    };
    let mut link = Link::new(config).unwrap();
    assert_eq!(link.push(secs(1.0), 1250, 'a'), Push::Queued);
    let d = link.poll(Duration::MAX).unwrap();
    // 1250 bytes = 10 ms at 1 Mbit/s.
    assert_eq!(
        (d.departed, d.delivered, d.delay, d.queue_delay),
        (ms(1010), ms(1060), ms(60), Duration::ZERO)
    );

    // A packet right behind another waits for the first one's transmission.
    assert_eq!(link.push(secs(2.0), 1250, 'b'), Push::Queued);
    assert_eq!(link.push(secs(2.0), 1250, 'c'), Push::Queued);
    let b = link.poll(Duration::MAX).unwrap();
    let c = link.poll(Duration::MAX).unwrap();
    assert_eq!(
        (b.queue_delay, c.queue_delay, c.delay),
        (Duration::ZERO, ms(10), ms(70))
    );

    // Without a bottleneck, just the delay.
    let mut link = Link::new(LinkConfig {
        delay: ms(50),
        ..LinkConfig::default()
    })
    .unwrap();
    let _ = link.push(ms(3), 1500, ());
    assert_eq!(link.poll_timeout(), Some(ms(53)));
}

#[test]
fn jitter_never_reorders() {
    for jitter in [
        Jitter::Uniform { max: ms(20) },
        Jitter::Normal { std_dev: ms(10) },
    ] {
        let config = LinkConfig {
            delay: ms(30),
            jitter: Some(jitter),
            ..rate_link(10_000)
        };
        let mut link = Link::new(config).unwrap();
        let departures = simulate(&mut link, constant_bitrate(ms(1), 1000, 5000));
        assert_eq!(departures.len(), 5000);
        for pair in departures.windows(2) {
            assert_eq!(pair[1].payload, pair[0].payload + 1);
            assert!(pair[1].delivered >= pair[0].delivered);
        }
        let delays: Vec<Duration> = departures.iter().map(|d| d.delay).collect();
        let (min, max) = (delays.iter().min().unwrap(), delays.iter().max().unwrap());
        // At least propagation plus 0.8 ms of serialisation; the jitter spreads delays widely.
        assert!(
            *min >= ms(30) + Duration::from_micros(800),
            "{jitter:?}: min {min:?}"
        );
        assert!(
            *max - *min >= ms(15),
            "{jitter:?}: spread {:?}",
            *max - *min
        );
    }
}

/// Pushes `count` packets through a link without a bottleneck and returns which were lost.
fn loss_pattern(config: LinkConfig, count: u32) -> Vec<bool> {
    let mut link = Link::new(config).unwrap();
    let lost = (0..count)
        .map(|i| {
            let at = ms(u64::from(i));
            let lost = link.push(at, 100, i) == Push::Dropped(DropReason::Loss);
            while link.poll(at).is_some() {}
            lost
        })
        .collect::<Vec<_>>();
    assert_eq!(
        link.stats().counters().packets_lost,
        lost.iter().filter(|&&l| l).count() as u64
    );
    lost
}

#[test]
fn random_loss_matches_its_probability() {
    let lost = loss_pattern(
        LinkConfig {
            loss: 0.05,
            ..LinkConfig::default()
        },
        100_000,
    );
    let rate = lost.iter().filter(|&&l| l).count() as f64 / lost.len() as f64;
    assert!((rate - 0.05).abs() <= 0.005, "{rate}");
}

#[test]
fn gilbert_elliott_matches_mean_loss_and_burst_length() {
    let burst_loss = GilbertElliott::from_mean(0.02, 4.0).unwrap();
    let lost = loss_pattern(
        LinkConfig {
            burst_loss: Some(burst_loss),
            ..LinkConfig::default()
        },
        500_000,
    );
    let rate = lost.iter().filter(|&&l| l).count() as f64 / lost.len() as f64;
    let bursts = lost.windows(2).filter(|w| w[1] && !w[0]).count() + usize::from(lost[0]);
    let mean_burst = lost.iter().filter(|&&l| l).count() as f64 / bursts as f64;
    assert_within(rate, 0.02, 0.1, "mean loss");
    assert_within(mean_burst, 4.0, 0.1, "mean burst length");

    // Burst loss clusters: far fewer bursts than independent loss at the same rate would give.
    let random = loss_pattern(
        LinkConfig {
            loss: 0.02,
            ..LinkConfig::default()
        },
        500_000,
    );
    let random_bursts = random.windows(2).filter(|w| w[1] && !w[0]).count();
    assert!(bursts * 3 < random_bursts, "{bursts} vs {random_bursts}");
}

#[test]
fn schedule_steps_change_the_delivered_rate_at_the_step_time() {
    let schedule: Schedule = "0:1000k,5:3000k,10:500k".parse().unwrap();
    let config = LinkConfig {
        capacity: Capacity::Schedule(schedule),
        ..LinkConfig::default()
    };
    let mut link = Link::new(config).unwrap();
    let departures = simulate(&mut link, constant_bitrate(ms(2), 1000, 7500)); // 4 Mbit/s for 15 s
    assert_within(
        delivered_bps(&departures, secs(1.0), secs(5.0)),
        1e6,
        0.02,
        "0–5 s",
    );
    assert_within(
        delivered_bps(&departures, secs(5.0), secs(10.0)),
        3e6,
        0.02,
        "5–10 s",
    );
    assert_within(
        delivered_bps(&departures, secs(10.0), secs(15.0)),
        5e5,
        0.02,
        "10–15 s",
    );
    // The change shows in the 100 ms intervals right around the step.
    let intervals = link.stats().intervals();
    let at = |t: f64| &intervals[(t * 10.0) as usize];
    assert_eq!(
        (at(4.9).capacity_bps, at(5.0).capacity_bps),
        (Some(1_000_000), Some(3_000_000))
    );
    assert_within(at(4.9).delivered_bps() as f64, 1e6, 0.1, "4.9–5.0 s");
    assert_within(at(5.0).delivered_bps() as f64, 3e6, 0.1, "5.0–5.1 s");
}

#[test]
fn mahimahi_trace_of_one_opportunity_every_12_ms_delivers_1_mbps() {
    let trace = MahimahiTrace::parse("12\n", "12ms.trace").unwrap();
    assert_eq!(trace.mean_rate(), Rate::from_kbps(1000));
    let config = LinkConfig {
        capacity: Capacity::Trace(trace),
        ..LinkConfig::default()
    };
    let mut link = Link::new(config).unwrap();
    let departures = simulate(
        &mut link,
        constant_bitrate(Duration::from_micros(4800), 1200, 2083),
    ); // 2 Mbit/s
    assert_within(
        delivered_bps(&departures, secs(1.0), secs(10.0)),
        1e6,
        0.02,
        "trace",
    );
    // Departures happen only at opportunities.
    assert!(departures.iter().all(|d| d.departed.as_millis() % 12 == 0 && d.departed.subsec_nanos() % 1_000_000 == 0));
    assert_eq!(link.stats().intervals()[50].capacity_bps, Some(960_000)); // 8 opportunities in 5.0–5.1 s
}

#[test]
fn queue_delay_percentiles_per_window() {
    // 5 s under capacity (no queueing), then 5 s at twice the capacity against a 200 ms queue.
    let config = LinkConfig {
        queue: QueueLimit::Time(ms(200)),
        ..rate_link(1000)
    };
    let mut link = Link::new(config).unwrap();
    let calm = (0..500u32).map(|i| (ms(10) * i, 1000, i)); // 0.8 Mbit/s
    let busy = (0..1250u32).map(|i| (secs(5.0) + ms(4) * i, 1000, 500 + i)); // 2 Mbit/s
    simulate(&mut link, calm.chain(busy));
    let stats = link.stats();
    assert_eq!(
        stats.queue_delay(secs(0.0)..secs(5.0)).percentile(99.0),
        Some(Duration::ZERO)
    );
    let busy = stats.queue_delay(secs(6.0)..secs(10.0));
    for p in [50.0, 95.0, 99.0] {
        let got = busy.percentile(p).unwrap();
        assert!(got >= ms(185) && got <= ms(208), "p{p}: {got:?}");
    }
    let summary = stats.summary();
    assert_eq!(summary.counters.packets_in, 1750);
    assert!(summary.queue_delay_p99_ms.unwrap() >= 185.0, "{summary:?}");
    // The same as `loadtest link --windows 0:5,6:10` reports it.
    let calm = stats.window_summary(secs(0.0)..secs(5.0));
    assert_eq!(calm.capacity_kbps, Some(1000.0));
    assert!((calm.offered_kbps - 800.0).abs() < 1.0, "{calm:?}");
    assert!((calm.delivered_kbps - 800.0).abs() < 20.0, "{calm:?}");
    assert_eq!(
        (calm.queue_delay_p99_ms, calm.overflow_packets),
        (Some(0.0), 0)
    );
    let busy = stats.window_summary(secs(6.0)..secs(10.0));
    assert!((busy.delivered_kbps - 1000.0).abs() < 20.0, "{busy:?}");
    assert!(
        busy.overflow_packets > 0 && busy.queue_delay_p95_ms.unwrap() >= 185.0,
        "{busy:?}"
    );
}

#[test]
fn same_seed_same_departures_different_seed_different() {
    let run = |seed| {
        let config = LinkConfig {
            delay: ms(20),
            jitter: Some(Jitter::Normal { std_dev: ms(5) }),
            loss: 0.05,
            burst_loss: Some(GilbertElliott::from_mean(0.02, 3.0).unwrap()),
            queue: QueueLimit::Bytes(20_000),
            seed,
            ..rate_link(2000)
        };
        let mut link = Link::new(config).unwrap();
        simulate(&mut link, constant_bitrate(ms(3), 1200, 5000))
            .into_iter()
            .map(|d| (d.payload, d.delivered))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}
