//! HTTP routes: health, metrics, the WebSocket endpoint and the built web client.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tower_http::services::{ServeDir, ServeFile};

use crate::AppState;
use crate::protocol::MAX_MESSAGE_BYTES;

/// All routes.
pub fn router(state: Arc<AppState>) -> Router {
    let root = Path::new(&state.config.server.web_root).to_path_buf();
    let index = root.join("index.html");
    let mut app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/ws", get(ws))
        .nest("/api", crate::api::router())
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::api::MAX_BODY_BYTES,
        ));
    if index.exists() {
        app = app.fallback_service(ServeDir::new(&root).fallback(ServeFile::new(index)));
    } else {
        tracing::warn!(
            "web client not found at {} (build it with `make web`); serving the API only",
            root.display()
        );
        app = app.fallback(not_built);
    }
    app.with_state(state)
}

async fn not_built() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "The web client is not built. Run `make run` (or `make web`) from the repository.\n",
    )
        .into_response()
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let stats = state.relay.stats();
    axum::Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "media": {
            "udp": state.relay.udp_addr().map(|a| a.to_string()),
            "tcp": state.relay.tcp_addr().map(|a| a.to_string()),
            "workers": stats.workers,
        },
        "probe": {
            "udp": state.probe.as_ref().map(|p| p.local_addr().to_string()),
            "advertised": state.probe.as_ref().map(|p| p.advertised().to_string()),
        },
        "rooms": stats.rooms,
        "participants": stats.participants,
        "ws_connections": state.ws_connections.load(Ordering::Relaxed),
    }))
    .into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let s = state.relay.stats();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "telemed_rooms",
        "gauge",
        "Rooms open on the relay.",
        s.rooms as u64,
    );
    metric(
        "telemed_participants",
        "gauge",
        "Participants in rooms.",
        s.participants as u64,
    );
    metric(
        "telemed_ws_connections",
        "gauge",
        "Open signaling WebSocket connections.",
        state.ws_connections.load(Ordering::Relaxed) as u64,
    );
    metric(
        "telemed_relay_workers",
        "gauge",
        "Relay worker threads.",
        s.workers as u64,
    );
    metric(
        "telemed_rtp_packets_in_total",
        "counter",
        "RTP packets received from publishers.",
        s.rtp_in,
    );
    metric(
        "telemed_rtp_packets_out_total",
        "counter",
        "RTP packets forwarded to subscribers.",
        s.rtp_out,
    );
    metric(
        "telemed_keyframe_requests_total",
        "counter",
        "Keyframe requests sent to publishers after aggregation.",
        s.keyframe_requests,
    );
    metric(
        "telemed_unrouted_datagrams_total",
        "counter",
        "Media datagrams that matched no participant.",
        s.unrouted_datagrams,
    );
    metric(
        "telemed_dropped_datagrams_total",
        "counter",
        "Media datagrams dropped on a full worker queue.",
        s.dropped_datagrams,
    );
    metric(
        "telemed_peer_panics_total",
        "counter",
        "WebRTC sessions dropped after a panic in the stack.",
        s.peer_panics,
    );
    adaptation_metrics(&mut out, &state.relay);
    if let Some(p) = &state.probe {
        crate::probe::metrics(&mut out, &p.stats());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One metric family with labelled samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str, rows: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in rows {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// Bandwidth adaptation: the sites' line budgets, every participant's downlink estimate and allocation,
/// and per track what is sent, at which layer, with how many switches, NACKs and PLIs.
fn adaptation_metrics(out: &mut String, relay: &media_relay::Relay) {
    let sites = relay.site_budgets();
    let by_site =
        |f: &dyn Fn(&media_relay::budget::SiteBudget) -> Option<f64>| -> Vec<(String, f64)> {
            sites
                .iter()
                .filter_map(|s| f(s).map(|v| (format!("site=\"{}\"", label(&s.site)), v)))
                .collect()
        };
    family(
        out,
        "telemed_site_line_budget_bps",
        "gauge",
        "A site's line budget: its latest line measurement's downlink, else its configured capacity.",
        &by_site(&|s| s.budget_bps.map(|b| b as f64)),
    );
    family(
        out,
        "telemed_site_allocated_bps",
        "gauge",
        "What the relay sends to a site's subscribers (sum of their allocations).",
        &by_site(&|s| Some(s.allocated_bps as f64)),
    );
    family(
        out,
        "telemed_site_subscribers",
        "gauge",
        "Subscribers at a site on the relay.",
        &by_site(&|s| Some(s.subscribers as f64)),
    );

    let participants = relay.participant_stats();
    let who = |p: &media_relay::ParticipantStats| {
        format!(
            "participant=\"{}\",site=\"{}\"",
            label(&p.participant),
            label(p.site.as_deref().unwrap_or(""))
        )
    };
    let per = |f: &dyn Fn(&media_relay::ParticipantStats) -> Option<f64>| -> Vec<(String, f64)> {
        participants
            .iter()
            .filter_map(|p| f(p).map(|v| (who(p), v)))
            .collect()
    };
    family(
        out,
        "telemed_downlink_estimate_bps",
        "gauge",
        "The relay's estimate of a participant's downlink (TWCC).",
        &per(&|p| p.estimate_bps.map(|b| b as f64)),
    );
    family(
        out,
        "telemed_downlink_available_bps",
        "gauge",
        "The estimate capped by the site's line budget.",
        &per(&|p| Some(p.available_bps as f64)),
    );
    family(
        out,
        "telemed_downlink_allocated_bps",
        "gauge",
        "What the chosen layers and the audio take.",
        &per(&|p| Some(p.allocated_bps as f64)),
    );
    family(
        out,
        "telemed_rtt_seconds",
        "gauge",
        "Round-trip time of a participant's session.",
        &per(&|p| p.rtt_ms.map(|ms| ms / 1000.0)),
    );
    family(
        out,
        "telemed_egress_loss_ratio",
        "gauge",
        "Loss a participant reports on what the relay sends it.",
        &per(&|p| p.egress_loss.map(f64::from)),
    );
    family(
        out,
        "telemed_ingress_loss_ratio",
        "gauge",
        "Loss the relay sees on what a participant publishes.",
        &per(&|p| p.ingress_loss.map(f64::from)),
    );
    let reasons: Vec<(String, f64)> = participants
        .iter()
        .map(|p| (format!("{},reason=\"{}\"", who(p), p.reason.as_str()), 1.0))
        .collect();
    family(
        out,
        "telemed_downlink_reason",
        "gauge",
        "Why a participant receives what it receives (1 for the current reason).",
        &reasons,
    );

    let received = |f: &dyn Fn(&media_relay::ReceivedStats) -> f64| -> Vec<(String, f64)> {
        participants
            .iter()
            .flat_map(|p| {
                p.received.iter().map(move |r| {
                    (
                        format!(
                            "{},publisher=\"{}\",kind=\"{}\"",
                            who(p),
                            label(&r.publisher),
                            r.kind.as_str()
                        ),
                        f(r),
                    )
                })
            })
            .collect()
    };
    family(
        out,
        "telemed_sent_bps",
        "gauge",
        "What the relay sends a subscriber on one track.",
        &received(&|r| r.bps as f64),
    );
    family(
        out,
        "telemed_sent_spatial_layer",
        "gauge",
        "The simulcast layer a subscriber receives (0 q, 1 h, 2 f; -1 none).",
        &received(&|r| {
            r.layer
                .as_deref()
                .map_or(-1.0, |l| match l.as_bytes().first() {
                    Some(b'q') => 0.0,
                    Some(b'h') => 1.0,
                    Some(b'f') => 2.0,
                    _ => -1.0,
                })
        }),
    );
    family(
        out,
        "telemed_layer_switches_total",
        "counter",
        "Simulcast layer switches of a subscription.",
        &received(&|r| r.layer_switches as f64),
    );
    family(
        out,
        "telemed_sent_seq_gaps_total",
        "counter",
        "Outgoing sequence numbers the relay jumped over on a subscription (upstream loss passed on).",
        &received(&|r| r.seq_gaps as f64),
    );
    family(
        out,
        "telemed_subscriber_nacks_total",
        "counter",
        "NACKs a subscriber sent on a track.",
        &received(&|r| r.nacks as f64),
    );
    family(
        out,
        "telemed_subscriber_plis_total",
        "counter",
        "PLIs a subscriber sent on a track.",
        &received(&|r| r.plis as f64),
    );

    let published = |f: &dyn Fn(&media_relay::PublishedStats) -> f64| -> Vec<(String, f64)> {
        participants
            .iter()
            .flat_map(|p| {
                p.published.iter().map(move |s| {
                    (
                        format!(
                            "{},kind=\"{}\",rid=\"{}\"",
                            who(p),
                            s.kind.as_str(),
                            label(s.rid.as_deref().unwrap_or(""))
                        ),
                        f(s),
                    )
                })
            })
            .collect()
    };
    family(
        out,
        "telemed_published_bytes_total",
        "counter",
        "Payload bytes received from a publisher per track and layer.",
        &published(&|s| s.bytes as f64),
    );
    family(
        out,
        "telemed_publisher_nacks_total",
        "counter",
        "NACKs the relay sent to a publisher.",
        &published(&|s| s.nacks as f64),
    );
    family(
        out,
        "telemed_publisher_plis_total",
        "counter",
        "PLIs the relay sent to a publisher.",
        &published(&|s| s.plis as f64),
    );
    let steered: Vec<(String, f64)> = published(&|s| s.steered_bps.map_or(f64::NAN, |b| b as f64))
        .into_iter()
        .filter(|(_, v)| !v.is_nan())
        .collect();
    family(
        out,
        "telemed_publisher_steered_bps",
        "gauge",
        "The maximum bitrate the relay last asked a publisher to send a video layer at (0: paused).",
        &steered,
    );
}

async fn ws(
    upgrade: WebSocketUpgrade,
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    // Frames up to 1 MiB reach the session, which refuses anything over 64 KiB with a reason; larger
    // ones are cut off by the WebSocket layer itself.
    upgrade
        .max_message_size(16 * MAX_MESSAGE_BYTES)
        .max_frame_size(16 * MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| crate::session::run(socket, state, peer))
}
