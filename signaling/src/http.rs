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
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
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
