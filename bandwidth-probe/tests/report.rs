//! Reporting and agent mode against a stand-in Telemed HTTP server (axum) that implements the
//! three endpoints and records what arrives; the probe endpoint is a real `ProbeServer` on
//! loopback, so the token it hands out is real.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use bandwidth_probe::report::{Credentials, ReportConfig, Reporter, Source};
use bandwidth_probe::server::{ProbeServer, ServerConfig};
use bandwidth_probe::token::TokenKey;
use bandwidth_probe::unix_ms;
use serde_json::{Value, json};

const SECRET: &[u8] = b"report test secret, 32 bytes !!!";
const BEARER: &str = "login-token-123";

#[derive(Default)]
struct Seen {
    logins: Vec<Value>,
    probes: Vec<String>,
    measurements: Vec<(String, Value)>,
    /// Fail this many line-probe calls first (500).
    fail_probes: usize,
}

#[derive(Clone)]
struct App {
    seen: Arc<Mutex<Seen>>,
    probe_addr: SocketAddr,
    key: TokenKey,
}

fn bearer_ok(h: &HeaderMap) -> bool {
    h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {BEARER}"))
}

async fn login(State(app): State<App>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    app.seen.lock().unwrap().logins.push(body.clone());
    if body == json!({"username": "itadmin", "password": "demo-itadmin"}) {
        (
            StatusCode::OK,
            Json(json!({"token": BEARER, "expires_at": 0, "user": {}, "site": null})),
        )
    } else {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "bad_credentials"})),
        )
    }
}

async fn line_probe(
    State(app): State<App>,
    Path(site): Path<String>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    if !bearer_ok(&headers) {
        return (StatusCode::UNAUTHORIZED, Json(json!({})));
    }
    let mut seen = app.seen.lock().unwrap();
    seen.probes.push(site.clone());
    if seen.fail_probes > 0 {
        seen.fail_probes -= 1;
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "boom"})),
        );
    }
    let token = app
        .key
        .issue(&site, 3_000_000, Duration::from_secs(60), unix_ms())
        .unwrap();
    (
        StatusCode::OK,
        Json(json!({"server": app.probe_addr.to_string(), "token": token})),
    )
}

async fn line_measurements(
    State(app): State<App>,
    Path(site): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if !bearer_ok(&headers) {
        return (StatusCode::UNAUTHORIZED, Json(json!({})));
    }
    let mut stored = body.clone();
    stored["id"] = json!(app.seen.lock().unwrap().measurements.len() + 1);
    app.seen.lock().unwrap().measurements.push((site, body));
    (StatusCode::CREATED, Json(stored))
}

async fn start(fail_probes: usize) -> (String, Arc<Mutex<Seen>>) {
    let key = TokenKey::new(SECRET);
    let probe = Arc::new(
        ProbeServer::bind(ServerConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            key.clone(),
        ))
        .await
        .unwrap(),
    );
    let probe_addr = probe.local_addr();
    tokio::spawn(async move { probe.run(std::future::pending()).await });
    let seen = Arc::new(Mutex::new(Seen {
        fail_probes,
        ..Seen::default()
    }));
    let app = App {
        seen: seen.clone(),
        probe_addr,
        key,
    };
    let router = Router::new()
        .route("/api/v1/login", post(login))
        .route("/api/v1/sites/{site}/line-probe", post(line_probe))
        .route(
            "/api/v1/sites/{site}/line-measurements",
            post(line_measurements),
        )
        .with_state(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, seen)
}

fn reporter(url: &str, password: &str) -> Reporter {
    Reporter::new(ReportConfig {
        url: url.to_string(),
        site: "county-renhe".into(),
        credentials: Credentials {
            username: "itadmin".into(),
            password: password.into(),
        },
    })
    .unwrap()
}

const FIELDS: [&str; 8] = [
    "down_kbps",
    "up_kbps",
    "rtt_ms",
    "jitter_ms",
    "loss_pct",
    "elapsed_ms",
    "bytes_sent",
    "bytes_received",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_fetches_a_probe_token_and_reports() {
    let (url, seen) = start(0).await;
    let r = reporter(&url, "demo-itadmin");
    let (m, stored) = r
        .measure_and_report(None, None, None, Source::Cli, &|_| {})
        .await
        .unwrap();
    assert!(m.down_kbps > 0.0);
    assert_eq!(stored["id"], 1);
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.logins,
        vec![json!({"username": "itadmin", "password": "demo-itadmin"})]
    );
    assert_eq!(seen.probes, vec!["county-renhe".to_string()]);
    let (site, body) = &seen.measurements[0];
    assert_eq!(site, "county-renhe");
    for f in FIELDS {
        assert!(body[f].is_number(), "{f} in {body}");
    }
    assert_eq!(body["source"], "cli");
    assert_eq!(body["site"], "county-renhe");
    assert_eq!(body["down_kbps"], json!(m.down_kbps));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_an_error_and_nothing_is_posted() {
    let (url, seen) = start(0).await;
    let err = reporter(&url, "wrong")
        .measure_and_report(None, None, None, Source::Cli, &|_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    assert!(
        !err.to_string().contains("wrong"),
        "no password in errors: {err}"
    );
    let seen = seen.lock().unwrap();
    assert!(seen.probes.is_empty() && seen.measurements.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_keeps_going_after_a_failure_and_stops_on_shutdown() {
    // The first line-probe call fails; the agent logs it and measures at the next ticks.
    let (url, seen) = start(1).await;
    let r = reporter(&url, "demo-itadmin");
    let watch = seen.clone();
    // Stop once a third measurement arrives: by then the agent has finished its second run (a
    // shutdown at the second would race that run's response).
    let shutdown = async move {
        loop {
            if watch.lock().unwrap().measurements.len() >= 3 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (ok, failed) = tokio::time::timeout(
        Duration::from_secs(60),
        r.agent(None, Duration::from_millis(100), shutdown),
    )
    .await
    .expect("the agent stops on shutdown");
    assert_eq!(failed, 1);
    assert!(ok >= 2);
    let seen = seen.lock().unwrap();
    assert!(seen.probes.len() >= 3);
    for (_, body) in &seen.measurements {
        assert_eq!(body["source"], "agent");
        for f in FIELDS {
            assert!(body[f].is_number(), "{f} in {body}");
        }
    }
}
