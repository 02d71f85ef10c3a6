//! Reporting to the Telemed server, and agent mode.
//!
//! The calls, all JSON, under a base URL such as `http://127.0.0.1:8080`:
//!
//! - `POST /api/v1/login` `{"username","password"}` → 200 `{"token", ...}`;
//! - `POST /api/v1/sites/{site}/line-probe` with `Authorization: Bearer <token>` → 200
//!   `{"server": "host:port", "token": "<probe token>", "budget_bytes", "expires_at"}` (the last two
//!   are not used here);
//! - `POST /api/v1/sites/{site}/line-measurements` with the bearer and the object that
//!   `measure --json` prints plus `"source": "agent"` or `"cli"` → 201 with the stored measurement.
//!
//! The password is never logged ([`Credentials`] prints as `..`).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::client::{MeasureConfig, MeasureError, Measurement, Progress, measure};

/// Largest response body read from the server.
const MAX_BODY: usize = 256 * 1024;
/// Longest site id.
const MAX_SITE: usize = 64;

/// Why reporting failed.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The base URL or site id is not usable.
    #[error("{0}")]
    Config(String),
    /// The HTTP request failed.
    #[error("{what}: {source}")]
    Http {
        /// Which call.
        what: &'static str,
        /// The cause.
        source: reqwest::Error,
    },
    /// The server answered with an unexpected status.
    #[error("{what}: the server answered {status}: {body}")]
    Status {
        /// Which call.
        what: &'static str,
        /// HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The answer is not what the contract says.
    #[error("{what}: unexpected answer: {detail}")]
    BadResponse {
        /// Which call.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The probe server address does not resolve.
    #[error("probe server address {0:?} does not resolve")]
    Resolve(String),
    /// No probe server: neither given nor in the line-probe answer.
    #[error("no probe server address")]
    NoServer,
    /// The measurement failed.
    #[error(transparent)]
    Measure(#[from] MeasureError),
}

/// Who logs in.
#[derive(Clone)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password (never printed).
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, ..)", self.username)
    }
}

/// Where results go.
#[derive(Debug, Clone)]
pub struct ReportConfig {
    /// Base URL of the Telemed server.
    pub url: String,
    /// Site id.
    pub site: String,
    /// Login.
    pub credentials: Credentials,
}

/// What `line-probe` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineProbe {
    /// Probe endpoint, `host:port`.
    pub server: String,
    /// One-use probe token.
    pub token: String,
}

#[derive(Debug, Deserialize)]
struct LoginResponse {
    token: String,
}

#[derive(Serialize)]
struct LoginBody<'a> {
    username: &'a str,
    password: &'a str,
}

/// Who ran a measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `bandwidth-probe agent`.
    Agent,
    /// `bandwidth-probe measure --report`.
    Cli,
}

/// An HTTP client for the three calls.
#[derive(Debug, Clone)]
pub struct Reporter {
    http: reqwest::Client,
    base: String,
    config: ReportConfig,
}

fn site_ok(site: &str) -> bool {
    !site.is_empty()
        && site.len() <= MAX_SITE
        && site
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && site != "."
        && site != ".."
}

async fn read_limited(
    mut resp: reqwest::Response,
    what: &'static str,
) -> Result<Vec<u8>, ReportError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|source| ReportError::Http { what, source })?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ReportError::BadResponse {
                what,
                detail: format!("body over {MAX_BODY} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl Reporter {
    /// A client for `config` (10 s timeout per call).
    pub fn new(config: ReportConfig) -> Result<Reporter, ReportError> {
        let base = config.url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ReportError::Config(format!(
                "--report must be an http:// or https:// URL, not {base:?}"
            )));
        }
        if !site_ok(&config.site) {
            return Err(ReportError::Config(format!(
                "site id {:?} must be 1 to {MAX_SITE} letters, digits, '-', '_' or '.'",
                config.site
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|source| ReportError::Http {
                what: "HTTP client",
                source,
            })?;
        Ok(Reporter { http, base, config })
    }

    async fn post<T: Serialize + ?Sized>(
        &self,
        what: &'static str,
        path: &str,
        bearer: Option<&str>,
        body: &T,
        expect: u16,
    ) -> Result<Vec<u8>, ReportError> {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|source| ReportError::Http { what, source })?;
        let status = resp.status().as_u16();
        let body = read_limited(resp, what).await?;
        if status != expect {
            let text = String::from_utf8_lossy(&body);
            return Err(ReportError::Status {
                what,
                status,
                body: text.chars().take(300).collect(),
            });
        }
        Ok(body)
    }

    /// Logs in; returns the bearer token.
    pub async fn login(&self) -> Result<String, ReportError> {
        let what = "login";
        let body = self
            .post(
                what,
                "/api/v1/login",
                None,
                &LoginBody {
                    username: &self.config.credentials.username,
                    password: &self.config.credentials.password,
                },
                200,
            )
            .await?;
        let r: LoginResponse =
            serde_json::from_slice(&body).map_err(|e| ReportError::BadResponse {
                what,
                detail: e.to_string(),
            })?;
        Ok(r.token)
    }

    /// Asks for a one-use probe token.
    pub async fn line_probe(&self, bearer: &str) -> Result<LineProbe, ReportError> {
        let what = "line-probe";
        let path = format!("/api/v1/sites/{}/line-probe", self.config.site);
        let body = self
            .post(what, &path, Some(bearer), &serde_json::json!({}), 200)
            .await?;
        serde_json::from_slice(&body).map_err(|e| ReportError::BadResponse {
            what,
            detail: e.to_string(),
        })
    }

    /// Stores a measurement; returns what the server stored.
    pub async fn post_measurement(
        &self,
        bearer: &str,
        m: &Measurement,
        source: Source,
    ) -> Result<serde_json::Value, ReportError> {
        let what = "line-measurements";
        let mut value = serde_json::to_value(m).map_err(|e| ReportError::BadResponse {
            what,
            detail: e.to_string(),
        })?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert(
                "source".into(),
                serde_json::to_value(source).unwrap_or_default(),
            );
            obj.insert("site".into(), self.config.site.clone().into());
        }
        let path = format!("/api/v1/sites/{}/line-measurements", self.config.site);
        let body = self.post(what, &path, Some(bearer), &value, 201).await?;
        serde_json::from_slice(&body).map_err(|e| ReportError::BadResponse {
            what,
            detail: e.to_string(),
        })
    }

    /// Logs in, gets a probe token unless `token` is given (and uses the server address it names
    /// unless `server` is given), measures (with train packets of `packet_size` bytes, the default
    /// when `None`), and posts the result.
    pub async fn measure_and_report(
        &self,
        server: Option<SocketAddr>,
        token: Option<String>,
        packet_size: Option<u16>,
        source: Source,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<(Measurement, serde_json::Value), ReportError> {
        let bearer = self.login().await?;
        let (token, advertised) = match token {
            Some(t) => (t, None),
            None => {
                let p = self.line_probe(&bearer).await?;
                (p.token, Some(p.server))
            }
        };
        let server = match (server, advertised) {
            (Some(s), _) => s,
            (None, Some(a)) => resolve(&a).await?,
            (None, None) => return Err(ReportError::NoServer),
        };
        let mut config = MeasureConfig::new(server, token);
        if let Some(size) = packet_size {
            config.packet_size = size;
        }
        let mut m = measure(&config, progress).await?;
        m.site = Some(self.config.site.clone());
        let stored = self.post_measurement(&bearer, &m, source).await?;
        Ok((m, stored))
    }

    /// Measures and reports every `every` until `shutdown` completes. Failures are logged and
    /// retried at the next tick; it never stops on a failed measurement. Returns how many
    /// measurements were stored and how many failed.
    pub async fn agent(
        &self,
        server: Option<SocketAddr>,
        every: Duration,
        shutdown: impl Future<Output = ()>,
    ) -> (u64, u64) {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let (mut ok, mut failed) = (0, 0);
        info!(site = %self.config.site, every_s = every.as_secs_f64(), "agent started");
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = tick.tick() => {}
            }
            let run = self.measure_and_report(server, None, None, Source::Agent, &|_| {});
            tokio::select! {
                () = &mut shutdown => break,
                r = run => match r {
                    Ok((m, _)) => {
                        ok += 1;
                        info!(
                            site = %self.config.site,
                            down_kbps = m.down_kbps,
                            up_kbps = m.up_kbps,
                            rtt_ms = m.rtt_ms,
                            jitter_ms = m.jitter_ms,
                            loss_pct = m.loss_pct,
                            confidence = m.confidence,
                            "line measured and reported"
                        );
                    }
                    Err(e) => {
                        failed += 1;
                        error!(site = %self.config.site, error = %e, "measurement failed; retrying at the next tick");
                    }
                }
            }
        }
        if failed > 0 {
            warn!(ok, failed, "agent stopped");
        } else {
            info!(ok, "agent stopped");
        }
        (ok, failed)
    }
}

/// Resolves `host:port` to one address.
pub async fn resolve(addr: &str) -> Result<SocketAddr, ReportError> {
    if addr.len() > 300 {
        return Err(ReportError::Resolve(addr.chars().take(40).collect()));
    }
    tokio::net::lookup_host(addr)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ReportError::Resolve(addr.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_ids_are_checked_and_password_is_not_printed() {
        assert!(site_ok("county-renhe"));
        assert!(!site_ok("../x"));
        assert!(!site_ok(""));
        assert!(!site_ok("a/b"));
        let c = Credentials {
            username: "itadmin".into(),
            password: "secret-pw".into(),
        };
        let cfg = ReportConfig {
            url: "http://x".into(),
            site: "s".into(),
            credentials: c,
        };
        assert!(!format!("{cfg:?}").contains("secret-pw"));
        assert!(
            Reporter::new(ReportConfig {
                url: "ftp://x".into(),
                ..cfg.clone()
            })
            .is_err()
        );
    }
}
