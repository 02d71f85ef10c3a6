//! The Telemed server as a library: configuration, the consultation workflow's domain, service and
//! storage, the HTTP API and WebSocket signaling. The `telemed` binary (`main.rs`) wires them
//! together.

pub mod api;
pub mod auth;
pub mod config;
pub mod domain;
pub mod http;
pub mod hub;
pub mod line_budget;
pub mod probe;
pub mod protocol;
pub mod seed;
pub mod session;
pub mod store;
pub mod workflow;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use media_relay::Relay;

use crate::auth::{TokenError, TokenKey};
use crate::config::Config;
use crate::domain::User;
use crate::hub::Hub;
use crate::store::{Store, StoreError};
use crate::workflow::{Workflow, now_ms};

/// Shared state of the server.
pub struct AppState {
    /// Configuration in force.
    pub config: Config,
    /// The media relay.
    pub relay: Arc<Relay>,
    /// Storage.
    pub store: Arc<dyn Store>,
    /// Live notifications.
    pub hub: Arc<Hub>,
    /// The consultation workflow.
    pub workflow: Workflow,
    /// Signs and checks login tokens.
    pub tokens: TokenKey,
    /// Failed-login throttle.
    pub login_throttle: api::LoginThrottle,
    /// Open signaling sessions.
    pub ws_connections: AtomicUsize,
    /// The line-probe endpoint (`None` when switched off).
    pub probe: Option<Arc<probe::Probe>>,
}

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    /// Malformed, forged, or revoked by a password change.
    #[error("the token is not valid; log in again")]
    Invalid,
    /// Expired.
    #[error("the token has expired; log in again")]
    Expired,
    /// The account is disabled.
    #[error("the account is disabled")]
    Disabled,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AppState {
    /// The state for `config` over `store`, with `relay` running.
    pub fn new(config: Config, relay: Arc<Relay>, store: Arc<dyn Store>, tokens: TokenKey) -> Self {
        // Each configured site's line budget starts from its configured capacity; `line_budget`
        // replaces it with the latest measurement (for every stored site) once the server runs.
        for site in &config.sites {
            relay.set_site_budget(&site.id, Some(u64::from(site.line_capacity_kbps) * 1000));
        }
        let hub = Arc::new(Hub::default());
        let workflow = Workflow::new(
            store.clone(),
            hub.clone(),
            config.workflow.clone(),
            config.specialties.clone(),
        );
        AppState {
            config,
            relay,
            store,
            hub,
            workflow,
            tokens,
            login_throttle: api::LoginThrottle::default(),
            ws_connections: AtomicUsize::new(0),
            probe: None,
        }
    }

    /// The same state with the line-probe endpoint `probe`.
    pub fn with_probe(mut self, probe: Option<Arc<probe::Probe>>) -> Self {
        self.probe = probe;
        self
    }

    /// The user a token belongs to, if the token is valid, unexpired, not revoked and the account
    /// is enabled.
    pub async fn authenticate(&self, token: &str) -> Result<User, AuthFailure> {
        let claims = self.tokens.verify(token, now_ms()).map_err(|e| match e {
            TokenError::Invalid => AuthFailure::Invalid,
            TokenError::Expired => AuthFailure::Expired,
        })?;
        let user = self
            .store
            .get_user(&claims.sub)
            .await?
            .ok_or(AuthFailure::Invalid)?;
        if user.disabled {
            return Err(AuthFailure::Disabled);
        }
        if user.token_generation != claims.generation {
            return Err(AuthFailure::Invalid);
        }
        Ok(user)
    }
}
