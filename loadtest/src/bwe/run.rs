//! One `loadtest bwe` run: a real `telemed` behind the link emulator, the consultations made
//! through its HTTP API, and the bots publishing and watching through the relay.
//!
//! Topology (all on loopback): the relay binds `127.0.0.1:P` and advertises `127.0.0.2:P`
//! (`--public-ip`), where the emulator listens and forwards to it, so the county's viewers reach it
//! through the emulated line. The specialists sit at east centres, not behind the county line: they
//! reach the relay directly ([`Reroute`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::analysis::{BweReport, LineInput, ViewerInput, analyse};
use super::scenario::Scenario;
use crate::bot::{self, BotConfig, BotError, BotReport, Reroute, VideoMode};
use crate::link::shell::{LinkShell, ShellConfig, ShellError, ShellReport};
use crate::media::PublisherConfig;

/// The county site whose line the scenarios emulate (`signaling/demo.toml`).
const COUNTY_SITE: &str = "county-renhe";
/// How long `telemed` may take to print its ready line.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest response body read from the relay (its `/metrics` with many participants is the
/// largest).
const MAX_BODY: usize = 16 << 20;
/// The longest ready line read from `telemed`.
const MAX_READY_LINE: u64 = 64 << 10;
/// How long any API call may take.
const API_TIMEOUT: Duration = Duration::from_secs(20);
/// Bots stay this long after the scenario's end (the last bin must be complete).
const TAIL: Duration = Duration::from_secs(2);
/// The address the relay advertises and the emulator listens on.
const ADVERTISED: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// What to run.
#[derive(Debug, Clone)]
pub struct BweOptions {
    /// The `telemed` binary.
    pub telemed: PathBuf,
    /// The scenario.
    pub scenario: Scenario,
    /// How long the call runs at the first capacity before scenario time starts.
    pub warmup: Duration,
    /// Extra arguments for `telemed` (e.g. `--no-steering`).
    pub relay_args: Vec<String>,
    /// The specialists' camera.
    pub camera: PublisherConfig,
}

/// Why a run failed.
#[derive(Debug, Error)]
pub enum BweError {
    /// `telemed` could not be started or stopped early.
    #[error("telemed: {0}")]
    Relay(String),
    /// An HTTP call failed.
    #[error("HTTP {what}: {cause}")]
    Http {
        /// The call.
        what: String,
        /// Why.
        cause: String,
    },
    /// The link emulator could not start.
    #[error(transparent)]
    Link(#[from] ShellError),
    /// A bot failed.
    #[error("bot {who}: {cause}")]
    Bot {
        /// Which.
        who: String,
        /// Why.
        cause: BotError,
    },
    /// A thread of the run died.
    #[error("a {0} thread ended without a result")]
    Thread(&'static str),
    /// Local I/O (temporary directory, process pipes).
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// The report, and the bots' own reports for whoever wants more.
#[derive(Debug)]
pub struct BweOutcome {
    /// The analysed figures.
    pub report: BweReport,
    /// The publishing bots (one per consultation).
    pub publishers: Vec<BotReport>,
    /// The county's viewers.
    pub viewers: Vec<BotReport>,
    /// The line.
    pub line: ShellReport,
    /// The relay's `/metrics` (Prometheus text) at the end of scenario time, the bots still in.
    pub relay_metrics: String,
}

/// Runs `options.scenario` once.
pub async fn run(options: BweOptions) -> Result<BweOutcome, BweError> {
    let scenario = &options.scenario;
    let warmup = options.warmup;
    let down = scenario.down_link(warmup);
    // The relay binds a free port on 127.0.0.1; the emulator takes the same one on 127.0.0.2.
    let relay = Relay::start(&options).await?;
    let port = relay.media.port();
    let api = Api::new(relay.http);
    let consultations = setup(&api, scenario).await?;

    // The emulator binds and runs on a thread of its own (its socket driven by that thread's
    // runtime), its clock starting at the bots' epoch.
    let epoch = Instant::now();
    let shell_config = ShellConfig::new(
        SocketAddr::new(ADVERTISED, port),
        relay.media,
        scenario.up.clone(),
        down,
    );
    let (bound_tx, bound) = oneshot::channel::<Result<(), ShellError>>();
    let (stop_line, line_stopped) = oneshot::channel::<()>();
    let line = on_thread("link", move || async move {
        let shell = match LinkShell::bind(shell_config).await {
            Ok(shell) => {
                let _ = bound_tx.send(Ok(()));
                shell
            }
            Err(e) => {
                let _ = bound_tx.send(Err(e));
                return None;
            }
        };
        let stop = async {
            let _ = line_stopped.await;
        };
        Some(shell.run_since(epoch.into(), stop).await)
    })?;
    bound.await.map_err(|_| BweError::Thread("link"))??;
    let bot_duration = warmup + scenario.duration + TAIL;
    let config = |token: &str, request_id: &str, video, seed, reroute| BotConfig {
        ws_url: format!("ws://{}/ws", relay.http),
        token: token.to_string(),
        request_id: request_id.to_string(),
        bind: LOOPBACK,
        video,
        seed,
        duration: bot_duration,
        epoch,
        reroute,
    };
    let reroute = Reroute {
        advertised: SocketAddr::new(ADVERTISED, port),
        actual: relay.media,
    };
    let mut publishers = Vec::new();
    let mut viewers = Vec::new();
    for (i, c) in consultations.iter().enumerate() {
        let seed = 10 * i as u64;
        let camera = PublisherConfig {
            seed: seed + 1,
            ..options.camera.clone()
        };
        let publisher = config(
            &c.specialist,
            &c.id,
            Some(VideoMode::Simulcast(camera)),
            seed + 1,
            Some(reroute),
        );
        publishers.push(on_thread("publisher", move || bot::run(publisher))?);
        for v in 0..scenario.consultations[i].county_viewers {
            let viewer = config(&c.doctor, &c.id, None, seed + 2 + v as u64, None);
            viewers.push((i, on_thread("viewer", move || bot::run(viewer))?));
        }
    }
    // While the bots are still in the room (their tail), so that per-participant series are there.
    tokio::time::sleep_until((epoch + warmup + scenario.duration + TAIL / 2).into()).await;
    let relay_metrics = api.metrics().await?;
    let mut publisher_reports = Vec::new();
    for (i, p) in publishers.into_iter().enumerate() {
        let report = p.await.map_err(|_| BweError::Thread("publisher"))?;
        publisher_reports.push(report.map_err(|cause| BweError::Bot {
            who: format!("specialist of consultation {i}"),
            cause,
        })?);
    }
    let mut viewer_reports = Vec::new();
    for (i, v) in viewers {
        let report = v.await.map_err(|_| BweError::Thread("viewer"))?;
        viewer_reports.push((
            i,
            report.map_err(|cause| BweError::Bot {
                who: format!("county viewer of consultation {i}"),
                cause,
            })?,
        ));
    }
    let _ = stop_line.send(());
    let line_report = line.await.ok().flatten().ok_or(BweError::Thread("link"))?;
    drop(relay);

    let inputs: Vec<ViewerInput> = viewer_reports
        .iter()
        .map(|(i, v)| viewer_input(v, &publisher_reports[*i], *i, scenario))
        .collect();
    let shifted = |r: std::ops::Range<Duration>| r.start + warmup..r.end + warmup;
    let segment_windows: Vec<_> = scenario.segments().into_iter().map(shifted).collect();
    let seconds: Vec<_> = (0..scenario.duration.as_secs())
        .map(|s| shifted(Duration::from_secs(s)..Duration::from_secs(s + 1)))
        .collect();
    let line_input = LineInput {
        segments: windows(&line_report, &segment_windows),
        seconds: windows(&line_report, &seconds),
    };
    let report = analyse(scenario, warmup, &inputs, &line_input);
    Ok(BweOutcome {
        report,
        publishers: publisher_reports,
        viewers: viewer_reports.into_iter().map(|(_, v)| v).collect(),
        line: line_report,
        relay_metrics,
    })
}

fn windows(
    line: &ShellReport,
    ranges: &[std::ops::Range<Duration>],
) -> Vec<crate::link::WindowSummary> {
    ranges
        .iter()
        .map(|r| line.down.window_summary(r.clone()))
        .collect()
}

/// What a county viewer got from its consultation's specialist (and, for the line's figures, from
/// everyone).
fn viewer_input(
    viewer: &BotReport,
    publisher: &BotReport,
    consultation: usize,
    scenario: &Scenario,
) -> ViewerInput {
    let from = viewer
        .received
        .iter()
        .find(|r| r.participant_id == publisher.participant_id);
    // Video figures are the specialist's; the line's media is everything the viewer received over
    // it (two county clients in one room also get each other's audio).
    let mut timeline = from.map(|r| r.timeline.clone()).unwrap_or_default();
    for other in viewer
        .received
        .iter()
        .filter(|r| r.participant_id != publisher.participant_id)
    {
        timeline
            .media_bytes
            .extend_from_slice(&other.timeline.media_bytes);
        timeline.dropped += other.timeline.dropped;
    }
    if timeline.dropped > 0 {
        warn!(
            viewer = %viewer.participant_id,
            dropped = timeline.dropped,
            "the viewer's timeline was full: later events are not in the figures"
        );
    }
    ViewerInput {
        participant_id: viewer.participant_id.clone(),
        consultation,
        emergency: scenario.consultations[consultation].emergency,
        timeline,
        layers: viewer
            .layers
            .iter()
            .filter(|l| l.participant_id == publisher.participant_id)
            .map(|l| (l.at, l.layer.clone()))
            .collect(),
        undecodable_frames: from.map_or(0, |r| r.video.undecodable_frames),
        audio_gaps_over_60ms: from.map_or(0, |r| r.audio.gaps_over_60ms),
    }
}

/// Runs `make()`'s future on a thread of its own (a bot encodes and decodes on its thread, and the
/// emulator's timing must not wait for them).
fn on_thread<F, Fut>(
    name: &'static str,
    make: F,
) -> Result<oneshot::Receiver<Fut::Output>, BweError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future,
    Fut::Output: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("bwe-{name}"))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                let _ = tx.send(runtime.block_on(make()));
            }
        })?;
    Ok(rx)
}

/// A running `telemed` on a fresh data directory; killed when dropped.
struct Relay {
    _child: Child,
    http: SocketAddr,
    /// Its media UDP socket.
    media: SocketAddr,
    _data: tempfile::TempDir,
}

impl Relay {
    async fn start(options: &BweOptions) -> Result<Self, BweError> {
        let data = tempfile::Builder::new().prefix("telemed-bwe-").tempdir()?;
        let mut command = Command::new(&options.telemed);
        command
            .args(["--listen", "127.0.0.1:0", "--probe-listen", "127.0.0.1:0"])
            .args(["--media-udp", "127.0.0.1:0", "--no-tcp"])
            .args(["--public-ip", &ADVERTISED.to_string()])
            .args(["--web-root", "/nonexistent", "--json", "--data-dir"])
            .arg(data.path())
            .args(&options.relay_args)
            .env(
                "RUST_LOG",
                std::env::var("TELEMED_BWE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        // The run's settings, not the caller's environment.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TELEMED_") {
                command.env_remove(key);
            }
        }
        let mut child = command.spawn().map_err(|e| {
            BweError::Relay(format!("cannot start {}: {e}", options.telemed.display()))
        })?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| BweError::Relay("no stdout".into()))?;
        let mut stdout = BufReader::new(stdout);
        let mut line = Vec::new();
        let mut limited = (&mut stdout).take(MAX_READY_LINE);
        tokio::time::timeout(START_TIMEOUT, limited.read_until(b'\n', &mut line))
            .await
            .map_err(|_| BweError::Relay(format!("no ready line within {START_TIMEOUT:?}")))??;
        if !line.ends_with(b"\n") {
            return Err(BweError::Relay(format!(
                "exited before it was ready, or its ready line is over {MAX_READY_LINE} bytes"
            )));
        }
        let ready = String::from_utf8_lossy(&line).trim().to_string();
        // Keep reading (and discarding) so that it never blocks on a full pipe.
        tokio::spawn(async move { tokio::io::copy(&mut stdout, &mut tokio::io::sink()).await });
        let ready_line = serde_json::from_str::<Value>(&ready).unwrap_or_default();
        let address = |key: &str| -> Result<SocketAddr, BweError> {
            ready_line[key]
                .as_str()
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| BweError::Relay(format!("no {key} in the ready line {ready:?}")))
        };
        let (http, media) = (address("http")?, address("media_udp")?);
        info!(%http, %media, "telemed started");
        Ok(Relay {
            _child: child,
            http,
            media,
            _data: data,
        })
    }
}

/// The relay's HTTP API.
struct Api {
    client: reqwest::Client,
    /// `http://ADDR`.
    root: String,
}

impl Api {
    fn new(http: SocketAddr) -> Self {
        Api {
            client: reqwest::Client::builder()
                .timeout(API_TIMEOUT)
                .build()
                .unwrap_or_default(),
            root: format!("http://{http}"),
        }
    }

    /// `method path` with an optional bearer token and JSON body; the JSON answer of a 2xx.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Value, BweError> {
        let what = format!("{method} {path}");
        let url = format!("{}/api/v1{path}", self.root);
        let mut request = self.client.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let failed = |cause: String| BweError::Http {
            what: what.clone(),
            cause,
        };
        let response = request.send().await.map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        let text = read_body(response).await.map_err(&failed)?;
        if !status.is_success() {
            return Err(failed(format!("{status}: {}", excerpt(&text))));
        }
        serde_json::from_str(&text)
            .map_err(|e| failed(format!("not JSON ({e}): {}", excerpt(&text))))
    }

    /// The relay's `/metrics`.
    async fn metrics(&self) -> Result<String, BweError> {
        let url = format!("{}/metrics", self.root);
        let response = self.client.get(url).send().await;
        let failed = |cause: String| BweError::Http {
            what: "GET /metrics".into(),
            cause,
        };
        let response = response.map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        let text = read_body(response).await.map_err(failed)?;
        if !status.is_success() {
            return Err(failed(format!("{status}: {}", excerpt(&text))));
        }
        Ok(text)
    }

    async fn login(&self, user: &str) -> Result<String, BweError> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/login",
                None,
                Some(json!({"username": user, "password": format!("demo-{user}")})),
            )
            .await?;
        v["token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| BweError::Http {
                what: "POST /login".into(),
                cause: format!("no token in {v}"),
            })
    }
}

/// A response body as text, refused beyond [`MAX_BODY`].
async fn read_body(mut response: reqwest::Response) -> Result<String, String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if bytes.len() + chunk.len() > MAX_BODY {
            return Err(format!("response body over {MAX_BODY} bytes"));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|e| format!("response body not UTF-8: {e}"))
}

/// The start of `text` for an error message.
fn excerpt(text: &str) -> &str {
    let end = text.char_indices().nth(500).map_or(text.len(), |(i, _)| i);
    &text[..end]
}

/// One accepted consultation: its request and the tokens of both sides.
struct Consultation {
    id: String,
    doctor: String,
    specialist: String,
}

/// Sets the county's line budget and makes the scenario's consultations with the demo users: the
/// county doctor asks, `specialist` (cardiology) accepts the first and `specialist2` (neurology)
/// the second.
async fn setup(api: &Api, scenario: &Scenario) -> Result<Vec<Consultation>, BweError> {
    use reqwest::Method;
    let operator = api.login("operator").await?;
    let sites = api
        .call(Method::GET, "/sites", Some(&operator), None)
        .await?;
    let list = sites.get("sites").unwrap_or(&sites);
    let mut site = list
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == COUNTY_SITE))
        .cloned()
        .ok_or_else(|| BweError::Http {
            what: "GET /sites".into(),
            cause: format!("no site {COUNTY_SITE}"),
        })?;
    site["line_capacity_kbps"] = json!(scenario.budget_kbps);
    api.call(
        Method::PUT,
        &format!("/sites/{COUNTY_SITE}"),
        Some(&operator),
        Some(site),
    )
    .await?;

    let doctor = api.login("doctor").await?;
    let mut out = Vec::new();
    for (i, plan) in scenario.consultations.iter().enumerate() {
        let (user, specialty) = match i {
            0 => ("specialist", "cardiology"),
            1 => ("specialist2", "neurology"),
            _ => {
                return Err(BweError::Relay(
                    "the demo has two specialists: at most two consultations".into(),
                ));
            }
        };
        let specialist = api.login(user).await?;
        let request = api
            .call(
                Method::POST,
                "/requests",
                Some(&doctor),
                Some(json!({
                    "patient_pseudonym": format!("BWE-{}-{i}", scenario.name.replace('.', "")),
                    "specialty": specialty,
                    "urgency": if plan.emergency { "emergency" } else { "urgent" },
                    "question": "Bandwidth benchmark consultation",
                    "preferred_centre": null,
                    "consent_method": "written",
                })),
            )
            .await?;
        let id = request["id"]
            .as_str()
            .ok_or_else(|| BweError::Http {
                what: "POST /requests".into(),
                cause: format!("no id in {request}"),
            })?
            .to_string();
        api.call(
            Method::PUT,
            "/availability",
            Some(&specialist),
            Some(json!({"available": true})),
        )
        .await?;
        api.call(
            Method::POST,
            &format!("/requests/{id}/accept"),
            Some(&specialist),
            None,
        )
        .await?;
        out.push(Consultation {
            id,
            doctor: doctor.clone(),
            specialist,
        });
    }
    Ok(out)
}
