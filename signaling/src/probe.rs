//! The embedded line-probe endpoint: a [`bandwidth_probe::server::ProbeServer`] on its own UDP
//! port (`[probe]` in the configuration), and the one-use tokens `POST
//! /api/v1/sites/{site}/line-probe` hands out for it.
//!
//! The token key is the store's secret `probe-token-key`, so every node behind one Redis issues
//! tokens every other node's endpoint accepts. The endpoint answers only token holders and never
//! more than a token's byte budget (see `docs/bandwidth-probe.md`).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bandwidth_probe::server::{ProbeServer, ServerConfig, ServerError, ServerStats};
use bandwidth_probe::token::{IssueError, TokenKey};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::ProbeConfig;
use crate::domain::Millis;
use crate::store::{Store, StoreError};

/// Byte budget of a line-probe token (enough for both directions at 20 Mbit/s and more).
pub const TOKEN_BUDGET_BYTES: u64 = 3_000_000;
/// How long a line-probe token is good for.
pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// Name of the token key among the store's secrets.
pub const SECRET_NAME: &str = "probe-token-key";

/// Why the endpoint could not start or a token could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The store failed (reading the key).
    #[error("probe token key: {0}")]
    Store(#[from] StoreError),
    /// No random bytes for a fresh key.
    #[error("probe token key: no random bytes: {0}")]
    Random(String),
    /// Binding the socket failed.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// Issuing a token failed.
    #[error(transparent)]
    Issue(#[from] IssueError),
}

/// A one-use probe token and where to use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `host:port` of the endpoint.
    pub server: String,
    /// The token.
    pub token: String,
    /// Its byte budget.
    pub budget_bytes: u64,
    /// Its expiry (Unix ms).
    pub expires_at: Millis,
}

/// The running endpoint.
pub struct Probe {
    server: Arc<ProbeServer>,
    key: TokenKey,
    advertised: String,
    stop: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    task: std::sync::Mutex<Option<JoinHandle<ServerStats>>>,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("addr", &self.local_addr())
            .field("advertised", &self.advertised)
            .finish_non_exhaustive()
    }
}

/// The address clients are told: `advertise` if configured, else `public_ip` with the bound port
/// if set and the endpoint is not bound to loopback (reachable only from this machine, whatever
/// the media's public address), else the bound address.
pub fn advertised(config: &ProbeConfig, public_ip: Option<IpAddr>, bound: SocketAddr) -> String {
    if let Some(a) = &config.advertise {
        return a.clone();
    }
    match public_ip {
        Some(ip) if !bound.ip().is_loopback() => SocketAddr::new(ip, bound.port()).to_string(),
        _ => bound.to_string(),
    }
}

impl Probe {
    /// Load (or create) the token key from `store`, bind the endpoint and start serving it. `None`
    /// when `config.enabled` is false.
    pub async fn start(
        config: &ProbeConfig,
        public_ip: Option<IpAddr>,
        store: &dyn Store,
    ) -> Result<Option<Probe>, ProbeError> {
        if !config.enabled {
            return Ok(None);
        }
        let fresh = crate::auth::random_key().map_err(|e| ProbeError::Random(e.to_string()))?;
        let key = TokenKey::new(&store.secret(SECRET_NAME, &fresh).await?);
        let server =
            Arc::new(ProbeServer::bind(ServerConfig::new(config.listen, key.clone())).await?);
        let advertised = advertised(config, public_ip, server.local_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let running = server.clone();
        let task = tokio::spawn(async move {
            running
                .run(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Some(Probe {
            server,
            key,
            advertised,
            stop: std::sync::Mutex::new(Some(stop)),
            task: std::sync::Mutex::new(Some(task)),
        }))
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The address given to clients.
    pub fn advertised(&self) -> &str {
        &self.advertised
    }

    /// The endpoint's counters.
    pub fn stats(&self) -> ServerStats {
        self.server.stats()
    }

    /// A one-use token for measuring `site`'s line, valid [`TOKEN_TTL`] from `now`.
    pub fn grant(&self, site: &str, now: Millis) -> Result<Grant, ProbeError> {
        let now = u64::try_from(now).unwrap_or(0);
        let token = self.key.issue(site, TOKEN_BUDGET_BYTES, TOKEN_TTL, now)?;
        let ttl = u64::try_from(TOKEN_TTL.as_millis()).unwrap_or(u64::MAX);
        Ok(Grant {
            server: self.advertised.clone(),
            token,
            budget_bytes: TOKEN_BUDGET_BYTES,
            expires_at: Millis::try_from(now.saturating_add(ttl)).unwrap_or(Millis::MAX),
        })
    }

    /// Stop serving (sessions in progress end) and wait for the endpoint to finish.
    pub async fn shutdown(&self) {
        let stop = self.stop.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::warn!(error = %e, "probe endpoint task failed");
        }
    }
}

/// The endpoint's counters in Prometheus text.
pub fn metrics(out: &mut String, s: &ServerStats) {
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "telemed_probe_sessions_total",
        "counter",
        "Line-probe sessions started (valid tokens accepted).",
        s.sessions_accepted,
    );
    metric(
        "telemed_probe_sessions_active",
        "gauge",
        "Line-probe sessions open.",
        s.sessions_active,
    );
    metric(
        "telemed_probe_packets_received_total",
        "counter",
        "Datagrams the probe endpoint received.",
        s.packets_received,
    );
    metric(
        "telemed_probe_bytes_received_total",
        "counter",
        "UDP payload bytes the probe endpoint received.",
        s.bytes_received,
    );
    metric(
        "telemed_probe_packets_sent_total",
        "counter",
        "Datagrams the probe endpoint sent.",
        s.packets_sent,
    );
    metric(
        "telemed_probe_bytes_sent_total",
        "counter",
        "UDP payload bytes the probe endpoint sent.",
        s.bytes_sent,
    );
    let i = &s.ignored;
    let name = "telemed_probe_ignored_packets_total";
    let _ = writeln!(
        out,
        "# HELP {name} Datagrams the probe endpoint ignored (never answered), by reason.\n# TYPE {name} counter"
    );
    for (reason, n) in [
        ("truncated", i.truncated),
        ("malformed", i.malformed),
        ("bad_mac", i.bad_mac),
        ("replayed", i.replayed),
        ("no_token", i.no_token),
        ("invalid_token", i.invalid_token),
        ("expired_token", i.expired_token),
        ("reused_token", i.reused_token),
        ("over_budget", i.over_budget),
        ("too_many_sessions", i.too_many_sessions),
    ] {
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    #[test]
    fn the_advertised_address() {
        let bound: SocketAddr = "0.0.0.0:3479".parse().unwrap();
        let mut c = ProbeConfig::default();
        let ip: IpAddr = "203.0.113.10".parse().unwrap();
        assert_eq!(advertised(&c, Some(ip), bound), "203.0.113.10:3479");
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        assert_eq!(advertised(&c, None, local), "127.0.0.1:40000");
        // Bound to loopback: only local clients reach it, so the public address is not given.
        assert_eq!(advertised(&c, Some(ip), local), "127.0.0.1:40000");
        c.advertise = Some("probe.example.cn:3479".into());
        assert_eq!(advertised(&c, Some(ip), bound), "probe.example.cn:3479");
    }

    #[tokio::test]
    async fn tokens_are_for_the_site_and_nodes_share_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.sqlite3"))
            .await
            .unwrap();
        let config = ProbeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..ProbeConfig::default()
        };
        let a = Probe::start(&config, None, &store).await.unwrap().unwrap();
        let b = Probe::start(&config, None, &store).await.unwrap().unwrap();
        assert_ne!(a.local_addr().port(), 0);
        assert_eq!(a.advertised(), a.local_addr().to_string());
        let now = 1_700_000_000_000;
        let g = a.grant("county", now).unwrap();
        assert_eq!(g.budget_bytes, TOKEN_BUDGET_BYTES);
        assert_eq!(g.expires_at, now + 60_000);
        // The other node's key checks it.
        let claims = b.key.verify(&g.token, 1_700_000_000_001).unwrap();
        assert_eq!(claims.site, "county");
        assert_eq!(claims.exp, 1_700_000_060_000);
        let mut out = String::new();
        metrics(&mut out, &a.stats());
        assert!(out.contains("telemed_probe_sessions_total 0"), "{out}");
        assert!(
            out.contains("telemed_probe_ignored_packets_total{reason=\"reused_token\"} 0"),
            "{out}"
        );
        a.shutdown().await;
        b.shutdown().await;
        a.shutdown().await; // twice is fine
        let off = ProbeConfig {
            enabled: false,
            ..config
        };
        assert!(Probe::start(&off, None, &store).await.unwrap().is_none());
    }
}
