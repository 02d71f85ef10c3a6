//! `loadtest link`: the UDP link emulator.

use std::{future::pending, net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Args;
use loadtest::link::{
    Capacity, DirectionSummary, GilbertElliott, Jitter, LinkConfig, MahimahiTrace, ParseError,
    QueueLimit, Rate, Schedule, parse_duration, parse_probability,
    shell::{LinkShell, ReportSummary, ShellConfig},
};

const AFTER_HELP: &str = "\
Packets from clients to --listen go \"up\" to --forward; the server's replies come back \"down\". \
Each setting applies to both directions; --up-* and --down-* override it for one direction (a \
direction's --up-rate, --up-schedule or --up-trace replaces the shared capacity as a whole).

Defaults: no bottleneck, a 500ms queue limit once there is one, no delay, jitter or loss, seed 1 \
for up and seed+1 for down.

Examples:
  loadtest link --listen 127.0.0.1:4000 --forward 127.0.0.1:3478 --rate 2M --delay 40ms --loss 1%
  loadtest link --listen 0.0.0.0:4000 --forward 10.0.0.2:3478 --up-rate 512k --down-rate 4M \\
      --queue 300ms --jitter normal:5ms --burst-loss 1%:3 --duration 60 --json
  loadtest link --listen 127.0.0.1:4000 --forward 127.0.0.1:3478 --schedule 0:1000k,40:2500k,60:600k
  loadtest link --listen 127.0.0.1:4000 --forward 127.0.0.1:3478 --trace cell.down --up-rate 1M

See docs/loadtest.md.";

/// Arguments of `loadtest link`.
#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct LinkArgs {
    /// UDP address clients send to.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// UDP address their datagrams are relayed to (the server).
    #[arg(long, value_name = "ADDR")]
    forward: SocketAddr,
    /// Stop after this many seconds (default: at Ctrl-C or SIGTERM).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    duration: Option<Duration>,
    /// On stop, print one JSON object on stdout instead of a table.
    #[arg(long)]
    json: bool,
    /// Also report these windows of the run, START:END in seconds, comma-separated (e.g. the
    /// segments of a capacity schedule: 0:40,40:60): capacity, delivered rate, queue delay
    /// percentiles and drops of each, per direction (in the JSON's `windows`).
    #[arg(long, value_name = "S:E,...", value_parser = parse_windows)]
    windows: Option<Windows>,
    #[command(flatten)]
    both: BothArgs,
    #[command(flatten)]
    up: UpArgs,
    #[command(flatten)]
    down: DownArgs,
}

/// One direction's settings, where given on the command line.
#[derive(Clone, Debug, Default)]
struct Settings {
    rate: Option<Rate>,
    schedule: Option<Schedule>,
    trace: Option<PathBuf>,
    queue: Option<QueueLimit>,
    delay: Option<Duration>,
    jitter: Option<Jitter>,
    loss: Option<f64>,
    burst_loss: Option<GilbertElliott>,
    seed: Option<u64>,
}

/// Declares the arguments of one set of link settings: the shared ones (`prefix` "") and each
/// direction's overrides (`prefix` "up-" or "down-"); clap needs distinct names and ids.
macro_rules! settings_args {
    ($(#[$attr:meta])* $name:ident, $prefix:literal, $heading:literal, $only:literal) => {
        $(#[$attr])*
        #[derive(Args, Debug, Clone)]
        #[command(next_help_heading = $heading)]
        struct $name {
            #[arg(help = concat!("Bottleneck capacity in bit/s: 512k, 2M, 1500000", $only),
                  long = concat!($prefix, "rate"), id = concat!($prefix, "rate"), value_name = "RATE",
                  conflicts_with_all = [concat!($prefix, "schedule"), concat!($prefix, "trace")])]
            rate: Option<Rate>,
            #[arg(help = concat!("Capacity steps SECONDS:RATE,..., e.g. 0:1000k,40:2500k (from 0 s)", $only),
                  long = concat!($prefix, "schedule"), id = concat!($prefix, "schedule"),
                  value_name = "STEPS", conflicts_with = concat!($prefix, "trace"))]
            schedule: Option<Schedule>,
            #[arg(help = concat!("Capacity from a Mahimahi trace file (ms timestamps of 1500-byte opportunities)", $only),
                  long = concat!($prefix, "trace"), id = concat!($prefix, "trace"), value_name = "FILE")]
            trace: Option<PathBuf>,
            #[arg(help = concat!("Queue limit as queueing time (300ms) or bytes (64kB); drop-tail", $only),
                  long = concat!($prefix, "queue"), id = concat!($prefix, "queue"), value_name = "LIMIT")]
            queue: Option<QueueLimit>,
            #[arg(help = concat!("One-way propagation delay, e.g. 50ms", $only),
                  long = concat!($prefix, "delay"), id = concat!($prefix, "delay"), value_name = "TIME",
                  value_parser = parse_duration)]
            delay: Option<Duration>,
            #[arg(help = concat!("Extra random delay: 5ms (uniform 0–5 ms) or normal:5ms (|N(0, 5 ms)|); never reorders", $only),
                  long = concat!($prefix, "jitter"), id = concat!($prefix, "jitter"), value_name = "JITTER")]
            jitter: Option<Jitter>,
            #[arg(help = concat!("Random loss probability on entry: 5% or 0.05", $only),
                  long = concat!($prefix, "loss"), id = concat!($prefix, "loss"), value_name = "P",
                  value_parser = parse_probability)]
            loss: Option<f64>,
            #[arg(help = concat!("Gilbert–Elliott burst loss MEAN_LOSS:MEAN_BURST_PACKETS, e.g. 1%:3", $only),
                  long = concat!($prefix, "burst-loss"), id = concat!($prefix, "burst-loss"), value_name = "LOSS:BURST")]
            burst_loss: Option<GilbertElliott>,
            #[arg(help = concat!("Seed of the loss and jitter processes", $only),
                  long = concat!($prefix, "seed"), id = concat!($prefix, "seed"), value_name = "N")]
            seed: Option<u64>,
        }

        impl From<&$name> for Settings {
            fn from(a: &$name) -> Self {
                Settings {
                    rate: a.rate,
                    schedule: a.schedule.clone(),
                    trace: a.trace.clone(),
                    queue: a.queue,
                    delay: a.delay,
                    jitter: a.jitter,
                    loss: a.loss,
                    burst_loss: a.burst_loss,
                    seed: a.seed,
                }
            }
        }
    };
}

settings_args!(
    /// The settings of both directions.
    BothArgs, "", "Link (both directions)", ""
);
settings_args!(
    /// Overrides for client → server.
    UpArgs, "up-", "Up direction only (client → forward address)", " [up]"
);
settings_args!(
    /// Overrides for server → client.
    DownArgs, "down-", "Down direction only (forward address → client)", " [down]"
);

impl Settings {
    /// These settings where given, `base` elsewhere. The capacity (rate, schedule or trace) is
    /// taken as a whole from one or the other.
    fn over(self, base: &Settings) -> Settings {
        let own_capacity = self.rate.is_some() || self.schedule.is_some() || self.trace.is_some();
        let (rate, schedule, trace) = if own_capacity {
            (self.rate, self.schedule, self.trace)
        } else {
            (base.rate, base.schedule.clone(), base.trace.clone())
        };
        Settings {
            rate,
            schedule,
            trace,
            queue: self.queue.or(base.queue),
            delay: self.delay.or(base.delay),
            jitter: self.jitter.or(base.jitter),
            loss: self.loss.or(base.loss),
            burst_loss: self.burst_loss.or(base.burst_loss),
            seed: self.seed.or(base.seed),
        }
    }

    fn into_config(self) -> anyhow::Result<LinkConfig> {
        let capacity = match (self.rate, self.schedule, self.trace) {
            (Some(rate), _, _) => Capacity::Rate(rate),
            (_, Some(schedule), _) => Capacity::Schedule(schedule),
            (_, _, Some(path)) => Capacity::Trace(MahimahiTrace::load(&path)?),
            _ => Capacity::Unlimited,
        };
        let defaults = LinkConfig::default();
        Ok(LinkConfig {
            capacity,
            queue: self.queue.unwrap_or(defaults.queue),
            delay: self.delay.unwrap_or(defaults.delay),
            jitter: self.jitter,
            loss: self.loss.unwrap_or(defaults.loss),
            burst_loss: self.burst_loss,
            seed: self.seed.unwrap_or(defaults.seed),
            ..defaults
        })
    }
}

impl LinkArgs {
    /// The up and down link configurations.
    fn links(&self) -> anyhow::Result<(LinkConfig, LinkConfig)> {
        let both = Settings::from(&self.both);
        let seed = both.seed.unwrap_or(LinkConfig::default().seed);
        let up = Settings {
            seed: Some(self.up.seed.unwrap_or(seed)),
            ..Settings::from(&self.up)
        };
        let down = Settings {
            seed: Some(self.down.seed.unwrap_or(seed.wrapping_add(1))),
            ..Settings::from(&self.down)
        };
        let up = up.over(&both).into_config().context("up link")?;
        let down = down.over(&both).into_config().context("down link")?;
        Ok((up, down))
    }
}

/// Runs the emulator until `--duration`, Ctrl-C or SIGTERM, then prints the report.
pub async fn run(args: LinkArgs) -> anyhow::Result<()> {
    let (up, down) = args.links()?;
    tracing::debug!(up = %serde_json::to_string(&up)?, down = %serde_json::to_string(&down)?, "links");
    let shell = LinkShell::bind(ShellConfig::new(args.listen, args.forward, up, down)).await?;
    let report = shell.run(shutdown(args.duration)).await;
    let summary = report.summary_with_windows(args.windows.as_ref().map_or(&[], |w| &w.0));
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print!("{}", table(&summary));
    }
    Ok(())
}

/// Windows of a run (`--windows`).
#[derive(Clone, Debug)]
struct Windows(Vec<std::ops::Range<Duration>>);

fn parse_windows(s: &str) -> Result<Windows, String> {
    let seconds = |x: &str| -> Result<Duration, String> {
        x.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0 && *v <= 86_400.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("{x:?} is not a number of seconds (0-86400)"))
    };
    let windows = s
        .split(',')
        .map(|w| {
            let (a, b) = w
                .split_once(':')
                .ok_or_else(|| format!("window {w:?} is not START:END"))?;
            let (a, b) = (seconds(a)?, seconds(b)?);
            if a >= b {
                return Err(format!("window {w:?} ends before it starts"));
            }
            Ok(a..b)
        })
        .collect::<Result<Vec<_>, String>>()?;
    if windows.len() > 1000 {
        return Err("at most 1000 windows".into());
    }
    Ok(Windows(windows))
}

/// Completes at Ctrl-C, SIGTERM, or after `duration`.
async fn shutdown(duration: Option<Duration>) {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            pending::<()>().await;
        }
    };
    let terminate = async {
        #[cfg(unix)]
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            term.recv().await;
            return;
        }
        pending::<()>().await;
    };
    let timer = async {
        match duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
        () = timer => {}
    }
}

/// A duration in seconds (`30`, `1.5`) or with a unit (`90s`, `500ms`).
fn parse_seconds(s: &str) -> Result<Duration, ParseError> {
    match s.trim().parse::<f64>() {
        Ok(seconds) if seconds.is_finite() => {
            Duration::try_from_secs_f64(seconds).map_err(|_| ParseError::Duration(s.to_owned()))
        }
        _ => parse_duration(s),
    }
}

/// The readable report.
fn table(summary: &ReportSummary) -> String {
    let mut out = format!(
        "loadtest link: {:.1} s, {} client(s), {} send error(s)\n{:<5} {:>10} {:>10} {:>8} {:>9} {:>10} {:>22}\n",
        summary.elapsed_s,
        summary.clients,
        summary.send_errors,
        "",
        "packets in",
        "delivered",
        "lost",
        "overflow",
        "kbit/s",
        "queue p50/p95/p99 ms",
    );
    for (name, d) in [("up", &summary.up), ("down", &summary.down)] {
        out += &format!(
            "{:<5} {:>10} {:>10} {:>8} {:>9} {:>10.1} {:>22}\n",
            name,
            d.counters.packets_in,
            d.counters.packets_delivered,
            d.counters.packets_lost,
            d.counters.packets_overflow,
            d.delivered_kbps,
            percentiles(d),
        );
    }
    out
}

fn percentiles(d: &DirectionSummary) -> String {
    match (
        d.queue_delay_p50_ms,
        d.queue_delay_p95_ms,
        d.queue_delay_p99_ms,
    ) {
        (Some(p50), Some(p95), Some(p99)) => format!("{p50:.1} / {p95:.1} / {p99:.1}"),
        _ => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        link: LinkArgs,
    }

    fn parse(args: &str) -> Result<LinkArgs, clap::Error> {
        let argv = [
            "link",
            "--listen",
            "127.0.0.1:4000",
            "--forward",
            "127.0.0.1:5000",
        ];
        Cli::try_parse_from(argv.into_iter().chain(args.split_whitespace())).map(|cli| cli.link)
    }

    #[test]
    fn direction_overrides_apply_to_one_direction() {
        let args =
            parse("--rate 1M --delay 50ms --loss 5% --up-rate 512k --down-delay 10ms --seed 7")
                .unwrap();
        let (up, down) = args.links().unwrap();
        assert_eq!(up.capacity, Capacity::Rate(Rate::from_kbps(512)));
        assert_eq!(down.capacity, Capacity::Rate(Rate::from_kbps(1000)));
        assert_eq!(
            (up.delay, down.delay),
            (Duration::from_millis(50), Duration::from_millis(10))
        );
        assert_eq!((up.loss, down.loss), (0.05, 0.05));
        assert_eq!((up.seed, down.seed), (7, 8));

        // A direction's own capacity replaces the shared one whatever its kind.
        let (up, down) = parse("--rate 1M --up-schedule 0:100k,5:200k")
            .unwrap()
            .links()
            .unwrap();
        assert!(matches!(up.capacity, Capacity::Schedule(_)));
        assert_eq!(down.capacity, Capacity::Rate(Rate::from_kbps(1000)));
    }

    #[test]
    fn bad_values_get_clear_messages() {
        let message = |args| parse(args).expect_err("an error").to_string();
        assert!(
            message("--rate 10x").contains("'10x' is not a rate; use e.g. 512k, 2M or 1500000")
        );
        assert!(message("--up-delay 50").contains("'50' is not a duration"));
        assert!(message("--loss 150%").contains("is not a probability"));
        assert!(message("--queue 10").contains("is not a queue limit"));
        assert!(message("--burst-loss 60%:1").contains("cannot come in bursts"));
        assert!(message("--schedule 5:1M").contains("must start at 0 s"));
        assert!(message("--rate 1M --schedule 0:1M").contains("cannot be used with"));
        assert!(message("--duration soon").contains("is not a duration"));

        let missing = parse("--trace /nonexistent/line.trace")
            .unwrap()
            .links()
            .unwrap_err();
        assert!(format!("{missing:#}").contains("/nonexistent/line.trace: cannot read the trace"));
    }

    #[test]
    fn durations_in_seconds_or_with_units() {
        assert_eq!(parse_seconds("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_seconds("500ms"), Ok(Duration::from_millis(500)));
    }
}
