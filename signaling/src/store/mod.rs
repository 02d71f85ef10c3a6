//! Storage behind one trait, [`Store`], with two implementations: [`sqlite::SqliteStore`] (the
//! embedded default, one file in the data directory, with migrations) and [`redis::RedisStore`] (for
//! several nodes, using Redis hashes, sets and sorted sets, with Lua scripts as atomic
//! compare-and-swap transactions). The conformance suite in `tests/store_conformance.rs` runs the
//! same checks against both.
//!
//! Request updates are compare-and-swap on [`Request::version`] and carry their audit event, which is
//! written in the same transaction: a state change and its audit record are stored together or not
//! at all.

mod codec;
pub mod redis;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use crate::domain::line::LineMeasurement;
use crate::domain::{AuditEvent, AuditQuery, Millis, Request, RequestState, Site, User};

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record does not exist.
    #[error("not found")]
    NotFound,
    /// A record with this key exists already.
    #[error("already exists")]
    AlreadyExists,
    /// Someone else changed the record first (version mismatch).
    #[error("changed concurrently; reload and try again")]
    Conflict,
    /// The backend failed (I/O, connection, SQL).
    #[error("storage backend: {0}")]
    Backend(String),
    /// Stored data could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// Which requests [`Store::list_requests`] returns. All set conditions must hold. Results are
/// ordered by `created_at`, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFilter {
    /// Only requests by this referring doctor.
    pub requester: Option<String>,
    /// Only requests offered to or accepted by this specialist.
    pub specialist: Option<String>,
    /// Only requests from or answered at this site (requester site or centre).
    pub site: Option<String>,
    /// Only these states (`None`: any state).
    pub states: Option<Vec<RequestState>>,
    /// Only this specialty.
    pub specialty: Option<String>,
    /// At most this many (0: no limit).
    pub limit: usize,
}

impl RequestFilter {
    /// Whether `r` passes the filter (shared by the implementations).
    pub fn matches(&self, r: &Request) -> bool {
        self.requester.as_ref().is_none_or(|u| r.requester == *u)
            && self
                .specialist
                .as_ref()
                .is_none_or(|s| r.specialist.as_ref() == Some(s))
            && self
                .site
                .as_ref()
                .is_none_or(|s| r.requester_site == *s || r.centre.as_ref() == Some(s))
            && self.states.as_ref().is_none_or(|st| st.contains(&r.state))
            && self.specialty.as_ref().is_none_or(|s| r.specialty == *s)
    }

    /// Sort newest first and apply the limit (shared by the implementations).
    pub fn finish(&self, mut out: Vec<Request>) -> Vec<Request> {
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        if self.limit > 0 {
            out.truncate(self.limit);
        }
        out
    }
}

/// Line measurements kept per site; storing one more drops the oldest.
pub const MAX_LINE_MEASUREMENTS_PER_SITE: usize = 1000;

/// The effective limit of [`Store::list_line_measurements`]: 0 or anything above
/// [`MAX_LINE_MEASUREMENTS_PER_SITE`] means that many.
pub fn line_limit(limit: usize) -> usize {
    if limit == 0 {
        MAX_LINE_MEASUREMENTS_PER_SITE
    } else {
        limit.min(MAX_LINE_MEASUREMENTS_PER_SITE)
    }
}

/// A specialist's availability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Availability {
    /// User name.
    pub username: String,
    /// Marked available.
    pub available: bool,
    /// Since when (Unix ms).
    pub since: Millis,
}

/// The storage interface. Every method is atomic.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Insert or replace a site.
    async fn put_site(&self, site: &Site) -> Result<(), StoreError>;
    /// One site.
    async fn get_site(&self, id: &str) -> Result<Option<Site>, StoreError>;
    /// All sites, by id.
    async fn list_sites(&self) -> Result<Vec<Site>, StoreError>;

    /// Insert a new user; `AlreadyExists` if the user name is taken.
    async fn create_user(&self, user: &User) -> Result<(), StoreError>;
    /// Replace an existing user; `NotFound` if there is none.
    async fn update_user(&self, user: &User) -> Result<(), StoreError>;
    /// One user.
    async fn get_user(&self, username: &str) -> Result<Option<User>, StoreError>;
    /// All users, by user name.
    async fn list_users(&self) -> Result<Vec<User>, StoreError>;

    /// Insert a new request (version as given) with its audit event; `AlreadyExists` if the id is
    /// taken. Returns the audit event's sequence number.
    async fn create_request(&self, req: &Request, audit: &AuditEvent) -> Result<u64, StoreError>;
    /// Replace a request if its stored version is `expected_version`, with its audit event, in one
    /// transaction. `Conflict` if the version differs, `NotFound` if there is no such request.
    /// Exactly one of several concurrent updates with the same expected version succeeds.
    async fn update_request(
        &self,
        req: &Request,
        expected_version: u64,
        audit: &AuditEvent,
    ) -> Result<u64, StoreError>;
    /// One request.
    async fn get_request(&self, id: &str) -> Result<Option<Request>, StoreError>;
    /// Requests matching `filter`, newest first.
    async fn list_requests(&self, filter: &RequestFilter) -> Result<Vec<Request>, StoreError>;

    /// Record a specialist's availability.
    async fn set_availability(&self, a: &Availability) -> Result<(), StoreError>;
    /// Everyone's recorded availability.
    async fn list_availability(&self) -> Result<Vec<Availability>, StoreError>;

    /// Append an audit event; returns its sequence number (increasing from 1).
    async fn append_audit(&self, event: &AuditEvent) -> Result<u64, StoreError>;
    /// Audit events matching `q`, newest first.
    async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError>;

    /// Store a line measurement of `m.site`, keeping only the newest
    /// [`MAX_LINE_MEASUREMENTS_PER_SITE`] of that site. Ids are not checked for uniqueness (the
    /// server makes them as UUIDs).
    async fn add_line_measurement(&self, m: &LineMeasurement) -> Result<(), StoreError>;
    /// A site's line measurements, most recently stored first, at most `limit` (see
    /// [`line_limit`]).
    async fn list_line_measurements(
        &self,
        site: &str,
        limit: usize,
    ) -> Result<Vec<LineMeasurement>, StoreError>;
    /// A site's most recently stored line measurement.
    async fn latest_line_measurement(
        &self,
        site: &str,
    ) -> Result<Option<LineMeasurement>, StoreError>;

    /// The secret named `name`: the stored one, or `fresh` stored now if there is none (first
    /// writer wins, so every node ends up with the same secret).
    async fn secret(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>, StoreError>;
}

/// Which store to use (`[storage]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite` (default) or `redis`.
    pub backend: Backend,
    /// Directory for the SQLite database (created if missing).
    pub data_dir: String,
    /// Redis URL, e.g. `redis://127.0.0.1:6379/0`.
    pub redis_url: String,
    /// Prefix of every Redis key, so several deployments can share one Redis.
    pub redis_prefix: String,
}

/// Storage backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// One SQLite file.
    Sqlite,
    /// A Redis server.
    Redis,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: Backend::Sqlite,
            data_dir: "data".into(),
            redis_url: "redis://127.0.0.1:6379/0".into(),
            redis_prefix: "telemed:".into(),
        }
    }
}

/// Open the configured store.
pub async fn open(config: &StorageConfig) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match config.backend {
        Backend::Sqlite => {
            let dir = std::path::Path::new(&config.data_dir);
            Arc::new(sqlite::SqliteStore::open(&dir.join("telemed.sqlite3")).await?)
        }
        Backend::Redis => {
            Arc::new(redis::RedisStore::connect(&config.redis_url, &config.redis_prefix).await?)
        }
    })
}
