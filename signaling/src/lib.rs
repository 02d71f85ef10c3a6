//! The Telemed server as a library: configuration, the consultation workflow's domain and storage,
//! HTTP and WebSocket signaling. The `telemed` binary (`main.rs`) wires them together.

pub mod config;
pub mod domain;
pub mod http;
pub mod protocol;
pub mod session;
pub mod store;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use media_relay::Relay;

use crate::config::Config;

/// Shared state of the server.
pub struct AppState {
    /// Configuration in force.
    pub config: Config,
    /// The media relay.
    pub relay: Arc<Relay>,
    /// Open signaling sessions.
    pub ws_connections: AtomicUsize,
}
