//! `telemed`: the Telemed server (HTTP, WebSocket signaling, embedded media relay).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use media_relay::Relay;
use tracing_subscriber::EnvFilter;

use signaling::config::Config;
use signaling::store::Backend;
use signaling::{AppState, http, line_budget};

/// Telemed: telemedicine video consultations through a bandwidth-adaptive relay.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file (TOML). Without it the embedded demo configuration is used.
    #[arg(long, env = "TELEMED_CONFIG")]
    config: Option<PathBuf>,
    /// HTTP listen address (overrides server.listen).
    #[arg(long, env = "TELEMED_LISTEN")]
    listen: Option<SocketAddr>,
    /// UDP media address for every peer (overrides media.udp_listen).
    #[arg(long, env = "TELEMED_MEDIA_UDP")]
    media_udp: Option<SocketAddr>,
    /// Passive ICE-TCP media address (overrides media.tcp_listen).
    #[arg(long, env = "TELEMED_MEDIA_TCP")]
    media_tcp: Option<SocketAddr>,
    /// Switch the UDP media port off (media then flows over ICE-TCP only).
    #[arg(long, env = "TELEMED_NO_UDP")]
    no_udp: bool,
    /// Switch the ICE-TCP port off.
    #[arg(long, env = "TELEMED_NO_TCP", conflicts_with = "no_udp")]
    no_tcp: bool,
    /// Switch end-to-end rate control off (media.steering = false): publishers send simulcast at
    /// the web client's default bitrates, paused only by dynacast.
    #[arg(long, env = "TELEMED_NO_STEERING")]
    no_steering: bool,
    /// Also cap steered publishers with REMB carrying their total (media.remb = true).
    #[arg(long, env = "TELEMED_REMB")]
    remb: bool,
    /// Address advertised in ICE candidates (for NAT or a link emulator in front of the relay).
    #[arg(long, env = "TELEMED_PUBLIC_IP")]
    public_ip: Option<IpAddr>,
    /// UDP address of the line-probe endpoint (overrides probe.listen).
    #[arg(long, env = "TELEMED_PROBE_LISTEN")]
    probe_listen: Option<SocketAddr>,
    /// `host:port` given to clients for the line-probe endpoint (overrides probe.advertise).
    #[arg(long, env = "TELEMED_PROBE_ADVERTISE")]
    probe_advertise: Option<String>,
    /// Switch the line-probe endpoint off (line-probe then answers 503).
    #[arg(long, env = "TELEMED_NO_PROBE")]
    no_probe: bool,
    /// Relay worker threads (0: one per core).
    #[arg(long, env = "TELEMED_WORKERS")]
    workers: Option<usize>,
    /// Directory of the built web client.
    #[arg(long, env = "TELEMED_WEB_ROOT")]
    web_root: Option<String>,
    /// Data directory of the SQLite store (overrides storage.data_dir).
    #[arg(long, env = "TELEMED_DATA_DIR")]
    data_dir: Option<String>,
    /// Storage backend, `sqlite` or `redis` (overrides storage.backend).
    #[arg(long, env = "TELEMED_STORAGE")]
    storage: Option<String>,
    /// Redis URL (overrides storage.redis_url).
    #[arg(long, env = "TELEMED_REDIS_URL")]
    redis_url: Option<String>,
    /// Prefix of every Redis key (overrides storage.redis_prefix).
    #[arg(long, env = "TELEMED_REDIS_PREFIX")]
    redis_prefix: Option<String>,
    /// Print one JSON object with the bound addresses on stdout once ready, instead of the banner.
    #[arg(long)]
    json: bool,
}

/// Other things the binary does besides serving.
#[derive(Debug, Subcommand)]
enum Command {
    /// Print the Argon2id hash of a password read from stdin (for `password_hash` in a config).
    HashPassword,
    /// Print the OpenAPI document of the HTTP API (what docs/openapi.json holds).
    Openapi,
    /// Check a configuration file and exit.
    CheckConfig,
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(a) = cli.listen {
        config.server.listen = a;
    }
    if let Some(a) = cli.media_udp {
        config.media.udp_listen = Some(a);
    }
    if let Some(a) = cli.media_tcp {
        config.media.tcp_listen = Some(a);
    }
    if cli.no_udp {
        config.media.udp_listen = None;
    }
    if cli.no_tcp {
        config.media.tcp_listen = None;
    }
    if let Some(ip) = cli.public_ip {
        config.media.public_ip = Some(ip);
    }
    if cli.no_steering {
        config.media.steering = false;
    }
    if cli.remb {
        config.media.remb = true;
    }
    if let Some(a) = cli.probe_listen {
        config.probe.listen = a;
    }
    if let Some(a) = &cli.probe_advertise {
        config.probe.advertise = Some(a.clone());
    }
    if cli.no_probe {
        config.probe.enabled = false;
    }
    if let Some(n) = cli.workers {
        config.media.workers = n;
    }
    if let Some(w) = &cli.web_root {
        config.server.web_root = w.clone();
    }
    if let Some(d) = &cli.data_dir {
        config.storage.data_dir = d.clone();
    }
    if let Some(b) = &cli.storage {
        config.storage.backend = match b.as_str() {
            "sqlite" => Backend::Sqlite,
            "redis" => Backend::Redis,
            other => anyhow::bail!("--storage must be sqlite or redis, not {other:?}"),
        };
    }
    if let Some(u) = &cli.redis_url {
        config.storage.redis_url = u.clone();
    }
    if let Some(p) = &cli.redis_prefix {
        config.storage.redis_prefix = p.clone();
    }
    config.revalidate()?;
    Ok(config)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,str0m=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Some(Command::Openapi) => {
            println!("{}", signaling::api::openapi_document());
            return Ok(());
        }
        Some(Command::HashPassword) => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("reading the password from stdin")?;
            let password = password.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(
                password.chars().count() >= 8,
                "a password needs at least 8 characters"
            );
            println!("{}", signaling::auth::hash_password(password)?);
            return Ok(());
        }
        Some(Command::CheckConfig) => {
            load_config(&cli)?;
            println!("configuration is valid");
            return Ok(());
        }
        None => {}
    }
    let config = load_config(&cli)?;
    let demo = cli.config.is_none();
    let store = signaling::store::open(&config.storage)
        .await
        .context("opening the store")?;
    let created = signaling::seed::seed(&config, store.as_ref())
        .await
        .context("seeding sites and users")?;
    if created > 0 {
        tracing::info!(users = created, "created configured users");
    }
    let tokens = signaling::seed::token_key(&config, store.as_ref())
        .await
        .context("loading the token key")?;
    let relay = Arc::new(Relay::start(config.media.clone()).context("starting the media relay")?);
    let probe =
        signaling::probe::Probe::start(&config.probe, config.media.public_ip, store.as_ref())
            .await
            .context("starting the line-probe endpoint")?
            .map(Arc::new);
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding HTTP on {}", config.server.listen))?;
    let http_addr = listener.local_addr()?;
    let state = Arc::new(
        AppState::new(config, relay.clone(), store.clone(), tokens).with_probe(probe.clone()),
    );
    // Every stored site's line budget from its latest measurement, now and every 30 s.
    if let Err(e) = line_budget::refresh_all(store.as_ref(), relay.as_ref()).await {
        tracing::warn!(error = %e, "setting line budgets from the store failed; configured capacities apply");
    }
    let budgets = tokio::spawn(line_budget::run(
        store,
        relay.clone(),
        line_budget::REFRESH_EVERY,
    ));
    let ticker = tokio::spawn(tick(state.clone()));
    if cli.json {
        let ready = serde_json::json!({
            "http": http_addr.to_string(),
            "media_udp": relay.udp_addr().map(|a| a.to_string()),
            "media_tcp": relay.tcp_addr().map(|a| a.to_string()),
            "probe_udp": probe.as_ref().map(|p| p.local_addr().to_string()),
        });
        println!("{ready}");
    } else {
        print_banner(&state, http_addr, demo);
    }
    let app = http::router(state.clone());
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .context("HTTP server")?;
    ticker.abort();
    budgets.abort();
    if let Some(p) = &probe {
        p.shutdown().await;
    }
    relay.shutdown();
    Ok(())
}

/// Expire overdue requests, time out unanswered offers and pair, every few seconds.
async fn tick(state: Arc<AppState>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(e) = state.workflow.tick().await {
            tracing::warn!(error = %e, "workflow tick failed");
        }
    }
}

fn print_banner(state: &AppState, http: SocketAddr, demo: bool) {
    println!("Telemed {} is running.", env!("CARGO_PKG_VERSION"));
    println!("  Open   http://{http}/ in two browser tabs or on two machines");
    let fmt = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_string(), |a| a.to_string());
    println!(
        "  Media  UDP {}  ICE-TCP {}",
        fmt(state.relay.udp_addr()),
        fmt(state.relay.tcp_addr())
    );
    match &state.probe {
        Some(p) => println!(
            "  Probe  UDP {} (clients are told {})",
            p.local_addr(),
            p.advertised()
        ),
        None => println!("  Probe  off"),
    }
    if demo {
        println!("  Demo logins (embedded demo configuration):");
        for u in &state.config.users {
            if let Some(p) = &u.password {
                println!(
                    "    {:<12} password {:<18} {:?} at {}  {}",
                    u.username, p, u.role, u.site, u.display_name
                );
            }
        }
        println!("  Data   {}", state.config.storage.data_dir);
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
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
