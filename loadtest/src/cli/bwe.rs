//! `loadtest bwe`: the bandwidth-adaptation benchmark.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use loadtest::bwe::{self, BweOptions, BweReport, NAMES, Scenario};
use loadtest::media::PublisherConfig;

const AFTER_HELP: &str = "\
Starts a telemed (--telemed, default: next to this program) on a fresh data directory, sets the \
county site's line budget, makes the scenario's consultations through the HTTP API, and runs bots: \
each specialist publishes simulcast VP8 (a busy test pattern) and Opus from outside the county, and \
the county doctor's bots subscribe through the link emulator. After --warmup at the first capacity, \
the scenario's capacity steps run on the line.

Scenarios:
  rmcat-5.1     1.0 -> 2.5 (40 s) -> 0.6 (60 s) -> 1.0 (80 s) Mbit/s, 50 ms one way, 300 ms queue, 100 s
  lossy-768k    768 kbit/s each way, 100 ms round trip, 5 % random loss, 60 s
  county-512k   512 kbit/s each way, 60 ms round trip, 1 % burst loss, two county viewers, 60 s
  two-consults  two consultations from the county (one an emergency) on a 2 Mbit/s line, 60 s

Examples:
  loadtest bwe --scenario rmcat-5.1 --json --plot docs/bench/bwe-rmcat.svg
  loadtest bwe --scenario rmcat-5.1 --relay-arg=--no-steering
  loadtest bwe --scenario rmcat-5.1 --time-scale 0.2 --warmup 5

See docs/loadtest.md.";

/// At most this many `--relay-arg`.
const MAX_RELAY_ARGS: usize = 32;

/// Arguments of `loadtest bwe`.
#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct BweArgs {
    /// The scenario.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(NAMES))]
    scenario: String,
    /// Print one JSON object on stdout instead of a table.
    #[arg(long)]
    json: bool,
    /// Also draw capacity, received and offered rate and queueing delay over time into this SVG.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Also save the relay's /metrics at the end of the run (NACKs, PLIs, sequence gaps, layer
    /// switches per participant) into this file.
    #[arg(long, value_name = "FILE")]
    metrics: Option<PathBuf>,
    /// Seconds the call runs at the first capacity before the scenario starts.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    warmup: u64,
    /// Multiply the scenario's length and steps by this (0 < F <= 1; every segment stays at least
    /// 1 s), for a short run of the same shape. The warm-up, delay and queue are not scaled.
    #[arg(long, value_name = "F", default_value_t = 1.0)]
    time_scale: f64,
    /// The telemed binary.
    #[arg(long, value_name = "PATH")]
    telemed: Option<PathBuf>,
    /// An extra argument for telemed (repeat for more), e.g. --relay-arg=--no-steering.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    relay_arg: Vec<String>,
    /// The specialists' camera, WIDTHxHEIGHT.
    #[arg(long, value_name = "WxH", default_value = "1280x720", value_parser = parse_size)]
    camera: (u32, u32),
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{s:?}: expected WIDTHxHEIGHT, e.g. 1280x720, each 16 to 1920");
    let (w, h) = s.split_once('x').ok_or_else(bad)?;
    let (w, h): (u32, u32) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
    if !(16..=1920).contains(&w) || !(16..=1920).contains(&h) {
        return Err(bad());
    }
    Ok((w, h))
}

/// Runs the benchmark and prints its report.
pub async fn run(args: BweArgs) -> anyhow::Result<()> {
    if args.warmup > 600 {
        bail!("--warmup {} s: at most 600", args.warmup);
    }
    if args.relay_arg.len() > MAX_RELAY_ARGS {
        bail!(
            "{} --relay-arg: at most {MAX_RELAY_ARGS}",
            args.relay_arg.len()
        );
    }
    // Output files are checked now, not after the run.
    for path in [&args.plot, &args.metrics].into_iter().flatten() {
        // Opened for writing without truncating: a failed run leaves an earlier file as it was.
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let scenario = Scenario::named(&args.scenario)?.scaled(args.time_scale)?;
    let telemed = match args.telemed {
        Some(path) => path,
        None => std::env::current_exe()
            .context("cannot find this program's path; give --telemed")?
            .with_file_name("telemed"),
    };
    if !telemed.is_file() {
        bail!(
            "{} is not a file: build telemed (cargo build --release) or give --telemed",
            telemed.display()
        );
    }
    let options = BweOptions {
        telemed,
        scenario,
        warmup: Duration::from_secs(args.warmup),
        relay_args: args.relay_arg,
        camera: PublisherConfig {
            width: args.camera.0,
            height: args.camera.1,
            ..PublisherConfig::default()
        },
    };
    let outcome = bwe::run(options).await?;
    for p in &outcome.publishers {
        tracing::info!(participant = %p.participant_id, sent = ?p.sent, "publisher");
    }
    // The report first: a file that cannot be written after all loses nothing else.
    if args.json {
        println!("{}", serde_json::to_string(&outcome.report)?);
    } else {
        print_table(&outcome.report);
    }
    if let Some(path) = &args.plot {
        bwe::plot::svg(&outcome.report, path).map_err(anyhow::Error::msg)?;
    }
    if let Some(path) = &args.metrics {
        std::fs::write(path, &outcome.relay_metrics)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn print_table(r: &BweReport) {
    let opt = |v: Option<f64>, digits: usize| v.map_or("-".into(), |v| format!("{v:.digits$}"));
    println!("scenario {} ({} s)", r.scenario, r.duration_s);
    println!(
        "{:>11} {:>9} {:>6} {:>6} {:>17} {:>5} {:>6} {:>7} {:>9}",
        "segment s",
        "capacity",
        "util",
        "line",
        "queue p50/95/99",
        "fps",
        "height",
        "freezes",
        "sw/min"
    );
    for s in &r.segments {
        println!(
            "{:>11} {:>9} {:>6} {:>6} {:>17} {:>5.1} {:>6} {:>7} {:>9.1}",
            format!("{}-{}", s.start_s, s.end_s),
            s.capacity_kbps,
            opt(s.utilization, 2),
            opt(s.line_utilization, 2),
            format!(
                "{}/{}/{}",
                opt(s.queue_delay_p50_ms, 0),
                opt(s.queue_delay_p95_ms, 0),
                opt(s.queue_delay_p99_ms, 0)
            ),
            s.fps,
            s.height,
            s.freezes,
            s.switches_per_min
        );
    }
    println!("reconvergence s: {:?}", r.reconvergence_s);
    println!(
        "undecodable frames {}, audio gaps over 60 ms {}, video loss after repair {} %",
        r.undecodable_frames, r.audio_gaps_over_60ms, r.video_loss_after_repair_pct
    );
    println!(
        "line budget {} kbit/s; offered per second p95 {} max {} kbit/s",
        r.budget_kbps,
        opt(r.line_offered_p95_kbps, 0),
        opt(r.line_offered_max_kbps, 0)
    );
    for v in &r.viewers {
        println!(
            "viewer {} (consultation {}{}):",
            v.participant_id,
            v.consultation,
            if v.emergency { ", emergency" } else { "" }
        );
        for s in &v.segments {
            println!(
                "  {:>7.0} kbit/s {:>5.1} fps {:>5}p freezes {} layers {:?}",
                s.received_kbps, s.fps, s.height, s.freezes, s.layer_share
            );
        }
    }
}
