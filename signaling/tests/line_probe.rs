//! Line measurement against the real server: `bandwidth-probe`'s own reporting flow (login,
//! line-probe token, measurement over loopback against the embedded probe endpoint, post) and what
//! follows from it (stored, listed, the relay's line budget, the probe counters, the audit), plus
//! the denials and validation of the line endpoints.

mod common;

use bandwidth_probe::client::{MeasureConfig, MeasureError, measure};
use bandwidth_probe::report::{Credentials, ReportConfig, Reporter, Source};
use common::{Server, http, http_get, http_raw, login};
use serde_json::{Value, json};

const SITE: &str = "county-renhe";

/// The value of the sample `name` (with its labels, exactly as printed) in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

async fn metrics(server: &Server) -> String {
    http_get(server, "/metrics").await.1
}

fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("")
}

/// The names of the fields a 422 complains about.
fn bad_fields(v: &Value) -> Vec<String> {
    v["fields"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["field"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn measurement() -> Value {
    json!({
        "down_kbps": 1800.25, "up_kbps": 950.5, "rtt_ms": 42.0, "jitter_ms": 1.25,
        "loss_pct": 0.0, "elapsed_ms": 1100.0, "bytes_sent": 120000, "bytes_received": 260000
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_and_report_through_the_embedded_probe() {
    let server = Server::start();
    let probe_udp = server.ready["probe_udp"]
        .as_str()
        .unwrap_or_else(|| panic!("no probe_udp in the ready line {}", server.ready));
    assert!(probe_udp.starts_with("127.0.0.1:"), "{probe_udp}");

    // What `bandwidth-probe measure --report URL --site county-renhe --user itadmin` does.
    let reporter = Reporter::new(ReportConfig {
        url: format!("http://{}", server.http),
        site: SITE.into(),
        credentials: Credentials {
            username: "itadmin".into(),
            password: "demo-itadmin".into(),
        },
    })
    .expect("reporter");
    let (m, stored) = reporter
        .measure_and_report(None, None, None, Source::Cli, &|_| {})
        .await
        .unwrap_or_else(|e| panic!("measure and report: {e}\n{}", server.logs()));
    assert!(m.down_kbps > 0.0 && m.up_kbps > 0.0, "{m:?}");
    assert_eq!(stored["site"], SITE, "{stored}");
    assert_eq!(stored["measured_by"], "itadmin");
    assert_eq!(stored["source"], "cli");
    assert!(
        stored["id"].as_str().is_some_and(|s| s.len() == 36),
        "{stored}"
    );
    assert!(stored["measured_at"].as_i64().is_some_and(|t| t > 0));
    let down = stored["down_kbps"].as_f64().expect("down_kbps");
    assert!(
        (down - m.down_kbps).abs() <= 1e-9 * m.down_kbps,
        "{down} vs {m:?}"
    );
    assert_eq!(stored["bytes_sent"].as_u64(), Some(m.bytes_sent));
    assert!(stored["confidence"].is_number(), "{stored}");

    // Listed, and the latest for the dashboard.
    let it = login(&server, "itadmin", "demo-itadmin").await;
    let path = format!("/api/v1/sites/{SITE}/line-measurements");
    let (status, list) = http(&server, "GET", &path, Some(&it), None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list, json!([stored.clone()]));
    let (status, latest) = http(
        &server,
        "GET",
        "/api/v1/line-measurements/latest",
        Some(&it),
        None,
    )
    .await;
    assert_eq!(status, 200, "{latest}");
    let entries = latest.as_array().expect("array");
    assert_eq!(entries.len(), 4, "every demo site: {latest}");
    let ours = entries.iter().find(|e| e["site"] == SITE).expect("site");
    assert_eq!(ours["measurement"], stored);
    assert_eq!(ours["budget_source"], "measured");
    let budget_kbps = ours["budget_kbps"].as_f64().expect("budget_kbps");
    assert!(
        (budget_kbps - down).abs() < 0.001,
        "{budget_kbps} vs {down}"
    );
    let other = entries
        .iter()
        .find(|e| e["site"] == "township-baima")
        .expect("township");
    assert_eq!(other["measurement"], Value::Null);
    assert_eq!(other["budget_source"], "configured");
    assert_eq!(other["budget_kbps"].as_f64(), Some(512.0));

    // The relay's budget for the site is the measured downlink; the probe counters moved.
    let text = metrics(&server).await;
    let budget = metric(
        &text,
        &format!("telemed_site_line_budget_bps{{site=\"{SITE}\"}}"),
    )
    .unwrap_or_else(|| panic!("no budget for {SITE} in\n{text}"));
    assert!(
        (budget - (down * 1000.0).round()).abs() <= 1.0,
        "budget {budget} vs measured {down} kbit/s"
    );
    assert_eq!(
        metric(
            &text,
            "telemed_site_line_budget_bps{site=\"township-baima\"}"
        ),
        Some(512_000.0)
    );
    assert_eq!(metric(&text, "telemed_probe_sessions_total"), Some(1.0));
    assert!(metric(&text, "telemed_probe_bytes_sent_total").is_some_and(|b| b > 10_000.0));
    assert!(metric(&text, "telemed_probe_packets_received_total").is_some_and(|p| p > 10.0));

    // The audit has the measurement (no clinical content anyway).
    let op = login(&server, "operator", "demo-operator").await;
    let (status, audit) = http(
        &server,
        "GET",
        "/api/v1/audit?action=line.",
        Some(&op),
        None,
    )
    .await;
    assert_eq!(status, 200, "{audit}");
    let events = audit.as_array().expect("array");
    assert_eq!(events.len(), 1, "{audit}");
    assert_eq!(events[0]["action"], "line.measured");
    assert_eq!(events[0]["actor"], "itadmin");
    assert!(
        events[0]["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with(SITE)),
        "{audit}"
    );

    // A probe token is good for one measurement: the second use gets no answer at all.
    let (status, grant) = http(
        &server,
        "POST",
        &format!("/api/v1/sites/{SITE}/line-probe"),
        Some(&it),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{grant}");
    assert_eq!(grant["server"], probe_udp);
    assert_eq!(grant["budget_bytes"], 3_000_000);
    assert!(grant["expires_at"].as_i64().is_some_and(|t| t > 0));
    let token = grant["token"].as_str().expect("token").to_string();
    let mut config = MeasureConfig::new(probe_udp.parse().expect("address"), token);
    measure(&config, &|_| {}).await.expect("first use");
    // The endpoint never answers a used token; this bounds how long the client waits for it.
    config.connect_timeout = std::time::Duration::from_millis(500);
    match measure(&config, &|_| {}).await {
        Err(MeasureError::NoAnswer(_)) => {}
        other => panic!("a used token was answered: {other:?}"),
    }
    let text = metrics(&server).await;
    assert_eq!(metric(&text, "telemed_probe_sessions_total"), Some(2.0));
    assert!(
        metric(
            &text,
            "telemed_probe_ignored_packets_total{reason=\"reused_token\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_endpoints_check_who_and_what() {
    let server = Server::start();
    let it = login(&server, "itadmin", "demo-itadmin").await;
    let doctor = login(&server, "doctor", "demo-doctor").await; // at county-renhe
    let own = format!("/api/v1/sites/{SITE}/line-measurements");
    let other = "/api/v1/sites/township-baima/line-measurements";

    // Without a token.
    for (method, path) in [
        ("POST", format!("/api/v1/sites/{SITE}/line-probe")),
        ("POST", own.clone()),
        ("GET", own.clone()),
        ("GET", "/api/v1/line-measurements/latest".to_string()),
    ] {
        let body = (method == "POST").then(measurement);
        let (status, v) = http(&server, method, &path, None, body).await;
        assert_eq!(status, 401, "{method} {path}: {v}");
    }

    // A doctor: their own site only.
    let (status, v) = http(
        &server,
        "POST",
        "/api/v1/sites/township-baima/line-probe",
        Some(&doctor),
        Some(json!({})),
    )
    .await;
    assert_eq!((status, code(&v)), (403, "not_yours"), "{v}");
    let (status, v) = http(&server, "POST", other, Some(&doctor), Some(measurement())).await;
    assert_eq!((status, code(&v)), (403, "not_yours"), "{v}");
    let (status, v) = http(&server, "GET", other, Some(&doctor), None).await;
    assert_eq!((status, code(&v)), (403, "not_yours"), "{v}");
    let (status, v) = http(
        &server,
        "POST",
        &format!("/api/v1/sites/{SITE}/line-probe"),
        Some(&doctor),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        status, 200,
        "the pre-call line test runs as the doctor: {v}"
    );
    let mut browser = measurement();
    browser["source"] = json!("browser");
    browser["site"] = json!(SITE);
    browser["down_confidence"] = json!(0.9); // extra fields are ignored
    let (status, v) = http(&server, "POST", &own, Some(&doctor), Some(browser)).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["measured_by"], "doctor");
    assert_eq!(v["source"], "browser");
    assert_eq!(v["confidence"], Value::Null);
    assert_eq!(v["down_kbps"].as_f64(), Some(1800.25));
    let (status, v) = http(
        &server,
        "GET",
        "/api/v1/line-measurements/latest",
        Some(&doctor),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v.as_array().map(Vec::len), Some(1), "own site only: {v}");
    assert_eq!(v[0]["site"], SITE);

    // Unknown sites.
    for (method, path) in [
        ("POST", "/api/v1/sites/nowhere/line-probe".to_string()),
        (
            "POST",
            "/api/v1/sites/nowhere/line-measurements".to_string(),
        ),
        ("GET", "/api/v1/sites/nowhere/line-measurements".to_string()),
        (
            "GET",
            format!("/api/v1/sites/{}/line-measurements", "x".repeat(200)),
        ),
    ] {
        let body = (method == "POST").then(measurement);
        let (status, v) = http(&server, method, &path, Some(&it), body).await;
        assert_eq!(
            (status, code(&v)),
            (404, "not_found"),
            "{method} {path}: {v}"
        );
    }

    // Bad numbers, each named; nothing is stored.
    let cases: Vec<(&str, Value, &str)> = vec![
        ("down_kbps", json!(-1.0), "down_kbps"),
        ("up_kbps", json!(1e9), "up_kbps"),
        ("rtt_ms", json!(60_001), "rtt_ms"),
        ("jitter_ms", json!(-0.5), "jitter_ms"),
        ("loss_pct", json!(100.5), "loss_pct"),
        ("bytes_sent", json!(1.5), "bytes_sent"),
        ("bytes_received", json!(-3), "bytes_received"),
        ("confidence", json!(1.5), "confidence"),
        ("source", json!("robot"), "source"),
        ("site", json!("township-baima"), "site"),
        ("rtt_median_ms", json!(1e300), "rtt_median_ms"),
    ];
    for (field, value, expect) in cases {
        let mut body = measurement();
        body[field] = value.clone();
        let (status, v) = http(&server, "POST", &own, Some(&it), Some(body)).await;
        assert_eq!(
            (status, code(&v)),
            (422, "validation_failed"),
            "{field}={value}: {v}"
        );
        assert_eq!(bad_fields(&v), [expect], "{field}={value}: {v}");
    }
    let mut missing = measurement();
    missing.as_object_mut().unwrap().remove("rtt_ms");
    let (status, v) = http(&server, "POST", &own, Some(&it), Some(missing)).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(bad_fields(&v), ["rtt_ms"], "{v}");
    assert_eq!(v["fields"][0]["code"], "required");
    let mut zero = measurement();
    zero["down_kbps"] = json!(0);
    zero["up_kbps"] = json!(0);
    let (status, v) = http(&server, "POST", &own, Some(&it), Some(zero)).await;
    assert_eq!(
        (status, bad_fields(&v)),
        (422, vec!["down_kbps".to_string()]),
        "{v}"
    );
    let (status, v) = http(&server, "POST", &own, Some(&it), Some(json!("text"))).await;
    assert_eq!(status, 422, "{v}");
    let (status, _) = http_raw(
        &server,
        "POST",
        &own,
        Some(&it),
        Some("{not json"),
        "application/json",
    )
    .await;
    assert_eq!(status, 400);

    // Over 16 KiB is refused; a body under it with extra fields is fine.
    let mut big = measurement();
    big["padding"] = json!("x".repeat(17 * 1024));
    let (status, v) = http(&server, "POST", &own, Some(&it), Some(big)).await;
    assert_eq!((status, code(&v)), (413, "too_large"), "{v}");
    let mut padded = measurement();
    padded["padding"] = json!("x".repeat(15 * 1024));
    let (status, v) = http(&server, "POST", &own, Some(&it), Some(padded)).await;
    assert_eq!(status, 201, "{v}");

    // Listing: newest first, limit checked.
    let (status, v) = http(&server, "GET", &format!("{own}?limit=1"), Some(&it), None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    assert_eq!(v[0]["measured_by"], "itadmin", "newest first: {v}");
    let (status, v) = http(&server, "GET", &own, Some(&doctor), None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v.as_array().map(Vec::len),
        Some(2),
        "the rejected ones were not stored: {v}"
    );
    for bad in ["0", "501", "x"] {
        let (status, v) = http(
            &server,
            "GET",
            &format!("{own}?limit={bad}"),
            Some(&it),
            None,
        )
        .await;
        assert_eq!(status, 422, "limit={bad}: {v}");
    }

    // Changing a site's capacity moves an unmeasured site's budget at once, not a measured one's.
    let op = login(&server, "operator", "demo-operator").await;
    for (id, kind) in [
        ("township-baima", "township_clinic"),
        (SITE, "county_hospital"),
    ] {
        let (status, v) = http(
            &server,
            "PUT",
            &format!("/api/v1/sites/{id}"),
            Some(&op),
            Some(json!({"id": id, "name": "N", "kind": kind, "region": "R", "line_capacity_kbps": 700})),
        )
        .await;
        assert_eq!(status, 200, "{v}");
    }
    let text = metrics(&server).await;
    assert_eq!(
        metric(
            &text,
            "telemed_site_line_budget_bps{site=\"township-baima\"}"
        ),
        Some(700_000.0)
    );
    assert_eq!(
        metric(
            &text,
            &format!("telemed_site_line_budget_bps{{site=\"{SITE}\"}}")
        ),
        Some(1_800_250.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switched_off_probe_answers_503() {
    let server = Server::start_with(&["--no-probe"], None);
    assert_eq!(server.ready["probe_udp"], Value::Null, "{}", server.ready);
    let it = login(&server, "itadmin", "demo-itadmin").await;
    let (status, v) = http(
        &server,
        "POST",
        &format!("/api/v1/sites/{SITE}/line-probe"),
        Some(&it),
        Some(json!({})),
    )
    .await;
    assert_eq!((status, code(&v)), (503, "probe_disabled"), "{v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("switched off")),
        "{v}"
    );
    // Measurements made otherwise (the browser's line test) are still stored.
    let (status, v) = http(
        &server,
        "POST",
        &format!("/api/v1/sites/{SITE}/line-measurements"),
        Some(&it),
        Some(measurement()),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert!(!metrics(&server).await.contains("telemed_probe_"));
}
