//! `bandwidth-probe`: serve, measure, issue tokens, and run as an agent.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bandwidth_probe::client::{MeasureConfig, Measurement, Progress, measure};
use bandwidth_probe::report::{Credentials, ReportConfig, Reporter, Source};
use bandwidth_probe::server::{ProbeServer, ServerConfig};
use bandwidth_probe::token::TokenKey;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tracing_subscriber::EnvFilter;

/// Line probing for Telemed: bottleneck capacity each way, RTT, jitter and loss over UDP.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a probe server (answers only clients with a valid token).
    Serve(ServeArgs),
    /// Measure the line to a probe server.
    Measure(MeasureArgs),
    /// Print a one-use probe token.
    Token(TokenArgs),
    /// Measure and report every N minutes until Ctrl-C or SIGTERM.
    Agent(AgentArgs),
}

#[derive(Args, Debug)]
struct SecretArgs {
    /// File holding the token secret (at least 16 bytes; surrounding whitespace is ignored).
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// UDP address to listen on.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    #[command(flatten)]
    secret: SecretArgs,
    /// Most sessions at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max_sessions: u32,
    /// Print the counters as one JSON object on stdout when stopped.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct TokenArgs {
    #[command(flatten)]
    secret: SecretArgs,
    /// Site id in the token.
    #[arg(long, default_value = "")]
    site: String,
    /// Byte budget of the measurement.
    #[arg(long, default_value_t = 3_000_000, value_parser = clap::value_parser!(u64).range(1_000..=100_000_000))]
    budget_bytes: u64,
    /// Seconds the token stays valid.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    ttl_secs: u64,
}

#[derive(Args, Debug)]
struct LoginArgs {
    /// Telemed base URL to report to, e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    report: Option<String>,
    /// Site id to report for.
    #[arg(long, value_name = "ID")]
    site: Option<String>,
    /// Telemed user to log in as.
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// File holding the password (else env TELEMED_PASSWORD).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct MeasureArgs {
    /// Probe server address (host:port); with --report, defaults to the one Telemed advertises.
    #[arg(long, value_name = "ADDR")]
    server: Option<String>,
    /// Probe token (with --report, fetched from Telemed when absent).
    #[arg(long, env = "BANDWIDTH_PROBE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Train packet size in bytes.
    #[arg(long, default_value_t = 1200, value_parser = clap::value_parser!(u16).range(53..=1472))]
    packet_size: u16,
    #[command(flatten)]
    login: LoginArgs,
}

#[derive(Args, Debug)]
struct AgentArgs {
    /// Probe server address (host:port); defaults to the one Telemed advertises.
    #[arg(long, value_name = "ADDR")]
    server: Option<String>,
    /// Minutes between measurements.
    #[arg(long, value_name = "MINUTES", value_parser = parse_minutes)]
    every: f64,
    #[command(flatten)]
    login: LoginArgs,
}

fn parse_minutes(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of minutes"))?;
    if !(0.05..=10_080.0).contains(&v) {
        return Err("minutes must be between 0.05 and 10080".into());
    }
    Ok(v)
}

const MAX_SECRET_FILE: u64 = 4096;

fn read_small(path: &Path, what: &str) -> Result<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).with_context(|| format!("{what} {}", path.display()))?;
    // Read at most one byte past the limit (a pipe or FIFO reports no length beforehand).
    let mut text = String::new();
    file.take(MAX_SECRET_FILE + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("{what} {}", path.display()))?;
    if text.len() as u64 > MAX_SECRET_FILE {
        bail!("{what} {} is over {MAX_SECRET_FILE} bytes", path.display());
    }
    Ok(text.trim().to_string())
}

fn secret(args: &SecretArgs) -> Result<TokenKey> {
    let s = match &args.secret_file {
        Some(p) => read_small(p, "secret file")?,
        None => std::env::var("BANDWIDTH_PROBE_SECRET")
            .context("give --secret-file FILE or set BANDWIDTH_PROBE_SECRET")?
            .trim()
            .to_string(),
    };
    if s.len() < 16 {
        bail!("the secret must be at least 16 bytes");
    }
    if s.len() > MAX_SECRET_FILE as usize {
        bail!("the secret is over {MAX_SECRET_FILE} bytes");
    }
    Ok(TokenKey::new(s.as_bytes()))
}

fn reporter(login: &LoginArgs) -> Result<Option<Reporter>> {
    let Some(url) = &login.report else {
        return Ok(None);
    };
    let site = login.site.clone().context("--report needs --site ID")?;
    let user = login.user.clone().context("--report needs --user USER")?;
    let password = match &login.password_file {
        Some(p) => read_small(p, "password file")?,
        None => std::env::var("TELEMED_PASSWORD")
            .context("give --password-file FILE or set TELEMED_PASSWORD")?,
    };
    Ok(Some(Reporter::new(ReportConfig {
        url: url.clone(),
        site,
        credentials: Credentials {
            username: user,
            password,
        },
    })?))
}

async fn server_addr(s: &Option<String>) -> Result<Option<SocketAddr>> {
    match s {
        None => Ok(None),
        Some(s) => Ok(Some(bandwidth_probe::report::resolve(s).await?)),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

fn progress_bar(enabled: bool) -> Option<ProgressBar> {
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(4);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:20}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    bar.set_message("connecting");
    Some(bar)
}

fn on_progress(bar: &Option<ProgressBar>, p: Progress) {
    let Some(bar) = bar else { return };
    let mbps = |b: Option<f64>| b.map_or("?".to_string(), |b| format!("{:.2} Mbit/s", b / 1e6));
    match p {
        Progress::Connected => {
            bar.set_position(1);
            bar.set_message("measuring round trip");
        }
        Progress::Rtt(r) => bar.set_message(format!("RTT {:.1} ms; measuring down", r.min_ms)),
        Progress::Train {
            direction,
            trains,
            bps,
        } => bar.set_message(format!("{direction}: train {trains}, {}", mbps(bps))),
        Progress::Done { direction, bps } => {
            bar.inc(1);
            bar.set_message(format!("{direction} {}", mbps(Some(bps))));
        }
    }
}

fn summary(m: &Measurement) -> String {
    let free = |k: Option<f64>| k.map_or("not measured".to_string(), |k| format!("{k:.0} kbit/s"));
    format!(
        "down   {:>9.0} kbit/s   ({:.0} ms, {} trains, {} bytes, confidence {:.2})\n\
         up     {:>9.0} kbit/s   ({:.0} ms, {} trains, {} bytes, confidence {:.2})\n\
         RTT    {:>9.1} ms       (median {:.1} ms)\n\
         jitter {:>9.2} ms\n\
         loss   {:>9.1} %\n\
         took   {:>9.0} ms, sent {} bytes, received {} bytes\n\
         free now: down {}, up {} (capacity less the other traffic a chirp met)",
        m.down_kbps,
        m.down_ms,
        m.down_trains,
        m.down_bytes,
        m.down_confidence,
        m.up_kbps,
        m.up_ms,
        m.up_trains,
        m.up_bytes,
        m.up_confidence,
        m.rtt_ms,
        m.rtt_median_ms,
        m.jitter_ms,
        m.loss_pct,
        m.elapsed_ms,
        m.bytes_sent,
        m.bytes_received,
        free(m.down_available_kbps),
        free(m.up_available_kbps)
    )
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(a) => {
            let mut config = ServerConfig::new(a.listen, secret(&a.secret)?);
            config.max_sessions = a.max_sessions as usize;
            let server = ProbeServer::bind(config).await?;
            eprintln!("bandwidth-probe serving on udp {}", server.local_addr());
            let stats = server.run(shutdown_signal()).await;
            if a.json {
                println!("{}", serde_json::to_string(&stats)?);
            } else {
                eprintln!("{}", serde_json::to_string_pretty(&stats)?);
            }
        }
        Command::Token(a) => {
            let key = secret(&a.secret)?;
            let t = key.issue(
                &a.site,
                a.budget_bytes,
                Duration::from_secs(a.ttl_secs),
                bandwidth_probe::unix_ms(),
            )?;
            println!("{t}");
        }
        Command::Measure(a) => {
            let bar = progress_bar(!a.json);
            let progress = |p: Progress| on_progress(&bar, p);
            let server = server_addr(&a.server).await?;
            let m = match reporter(&a.login)? {
                Some(r) => {
                    let (m, _) = r
                        .measure_and_report(
                            server,
                            a.token.clone(),
                            Some(a.packet_size),
                            Source::Cli,
                            &progress,
                        )
                        .await?;
                    m
                }
                None => {
                    let server =
                        server.context("give --server ADDR (or --report URL --site ID)")?;
                    let token = a
                        .token
                        .clone()
                        .context("give --token TOKEN or set BANDWIDTH_PROBE_TOKEN")?;
                    let mut cfg = MeasureConfig::new(server, token);
                    cfg.packet_size = a.packet_size;
                    let mut m = measure(&cfg, &progress).await?;
                    m.site = a.login.site.clone();
                    m
                }
            };
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            if a.json {
                println!("{}", serde_json::to_string(&m)?);
            } else {
                println!("{}", summary(&m));
                if a.login.report.is_some() {
                    println!("reported to {}", a.login.report.as_deref().unwrap_or(""));
                }
            }
        }
        Command::Agent(a) => {
            let r =
                reporter(&a.login)?.context("agent needs --report URL --site ID --user USER")?;
            let server = server_addr(&a.server).await?;
            r.agent(
                server,
                Duration::from_secs_f64(a.every * 60.0),
                shutdown_signal(),
            )
            .await;
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(run(cli))
}
