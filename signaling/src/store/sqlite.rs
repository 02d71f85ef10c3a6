//! The embedded store: one SQLite file (WAL mode with the default `synchronous = FULL`, so a
//! committed change survives a power cut; `busy_timeout` 5 s; foreign keys on).
//!
//! # Schema
//!
//! The schema is built by [`MIGRATIONS`], a numbered list of SQL steps applied in order, each in its
//! own transaction together with `PRAGMA user_version = <step number>`. Opening an existing database
//! applies only the steps it lacks; a database whose `user_version` is newer than this code knows is
//! refused. All tables are `STRICT`.
//!
//! | table | columns |
//! |---|---|
//! | `sites` | `id` (primary key), `name`, `kind` (wire name, e.g. `county_hospital`), `region`, `line_capacity_kbps` |
//! | `users` | `username` (primary key), `display_name`, `role` (wire name), `site_id`, `specialties` (JSON array), `password_hash`, `disabled` (0/1), `token_generation` |
//! | `requests` | `id` (primary key), every scalar field of [`Request`] as its own column (`state` and `urgency` as wire names, times as Unix ms, options as NULL), `consent`, `opinion` (NULL if none), `declined_by`, `referrals` as JSON text, `version` |
//! | `audit` | `seq INTEGER PRIMARY KEY AUTOINCREMENT` (so 1, 2, 3, ... never reused), `at`, `actor`, `action`, `request_id`, `address`, `detail` |
//! | `availability` | `username` (primary key), `available` (0/1), `since` |
//! | `secrets` | `name` (primary key), `value` (BLOB) |
//! | `line_measurements` | `seq INTEGER PRIMARY KEY AUTOINCREMENT` (storage order), `id`, `site`, `measured_at`, `source` (wire name), `measured_by`, `down_kbps`, `up_kbps`, `rtt_ms`, `jitter_ms`, `loss_pct`, `elapsed_ms` (REAL), `bytes_sent`, `bytes_received`, `confidence` (REAL or NULL); the newest 1000 per site are kept |
//!
//! Indexes: `requests` by `requester`, `specialist`, `state`, `specialty` (each with `created_at`),
//! by `created_at`, `requester_site` and `centre`; `audit` by `actor`, `request_id` (each with
//! `seq`) and `at`; `line_measurements` by `site` with `seq`.
//!
//! # Concurrency
//!
//! rusqlite is synchronous: the store keeps one connection behind a mutex and runs every operation
//! on tokio's blocking pool. Writes use `BEGIN IMMEDIATE`, so several processes (or several
//! `SqliteStore`s) on one file serialise on SQLite's write lock (waiting up to the busy timeout)
//! instead of failing on a lock upgrade. [`Store::update_request`] is
//! `UPDATE ... WHERE id = ? AND version = ?` plus the audit insert in one transaction, so of several
//! concurrent updates with the same expected version exactly one changes a row.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{
    Connection, ErrorCode, OptionalExtension, Row, Transaction, TransactionBehavior,
    params_from_iter,
};

use super::codec::{audit_limit, enum_name, from_json, parse_enum, to_json};
use super::{
    Availability, MAX_LINE_MEASUREMENTS_PER_SITE, RequestFilter, Store, StoreError, line_limit,
};
use crate::domain::line::LineMeasurement;
use crate::domain::{AuditEvent, AuditQuery, Request, RequestState, Site, User};

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema, one step per entry; step `n` (1-based) leaves the database at `user_version = n`.
/// Append new steps; never edit a released one.
pub const MIGRATIONS: &[&str] = &[
    // 1: tables.
    "CREATE TABLE sites (
        id TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        region TEXT NOT NULL,
        line_capacity_kbps INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE users (
        username TEXT PRIMARY KEY NOT NULL,
        display_name TEXT NOT NULL,
        role TEXT NOT NULL,
        site_id TEXT NOT NULL,
        specialties TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        disabled INTEGER NOT NULL,
        token_generation INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE requests (
        id TEXT PRIMARY KEY NOT NULL,
        patient_pseudonym TEXT NOT NULL,
        specialty TEXT NOT NULL,
        urgency TEXT NOT NULL,
        question TEXT NOT NULL,
        preferred_centre TEXT,
        consent TEXT NOT NULL,
        requester TEXT NOT NULL,
        requester_site TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        queued_at INTEGER,
        returned_to_queue INTEGER NOT NULL,
        specialist TEXT,
        centre TEXT,
        offered_at INTEGER,
        declined_by TEXT NOT NULL,
        accepted_at INTEGER,
        room TEXT,
        opinion TEXT,
        acknowledged_at INTEGER,
        referrals TEXT NOT NULL,
        closing_reason TEXT,
        updated_at INTEGER NOT NULL,
        version INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        request_id TEXT,
        address TEXT,
        detail TEXT NOT NULL
    ) STRICT;
    CREATE TABLE availability (
        username TEXT PRIMARY KEY NOT NULL,
        available INTEGER NOT NULL,
        since INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE secrets (
        name TEXT PRIMARY KEY NOT NULL,
        value BLOB NOT NULL
    ) STRICT;",
    // 2: indexes.
    "CREATE INDEX requests_by_requester ON requests (requester, created_at);
    CREATE INDEX requests_by_specialist ON requests (specialist, created_at);
    CREATE INDEX requests_by_state ON requests (state, created_at);
    CREATE INDEX requests_by_specialty ON requests (specialty, created_at);
    CREATE INDEX requests_by_created ON requests (created_at);
    CREATE INDEX requests_by_requester_site ON requests (requester_site);
    CREATE INDEX requests_by_centre ON requests (centre);
    CREATE INDEX audit_by_actor ON audit (actor, seq);
    CREATE INDEX audit_by_request ON audit (request_id, seq);
    CREATE INDEX audit_by_at ON audit (at);",
    // 3: line measurements.
    "CREATE TABLE line_measurements (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL,
        site TEXT NOT NULL,
        measured_at INTEGER NOT NULL,
        source TEXT NOT NULL,
        measured_by TEXT NOT NULL,
        down_kbps REAL NOT NULL,
        up_kbps REAL NOT NULL,
        rtt_ms REAL NOT NULL,
        jitter_ms REAL NOT NULL,
        loss_pct REAL NOT NULL,
        elapsed_ms REAL NOT NULL,
        bytes_sent INTEGER NOT NULL,
        bytes_received INTEGER NOT NULL,
        confidence REAL
    ) STRICT;
    CREATE INDEX line_measurements_by_site ON line_measurements (site, seq);",
];

/// The columns of `requests`, in the order [`request_values`] produces and [`request_from_row`]
/// reads them. `id` must stay first and `version` last.
const REQUEST_COLUMNS: [&str; 25] = [
    "id",
    "patient_pseudonym",
    "specialty",
    "urgency",
    "question",
    "preferred_centre",
    "consent",
    "requester",
    "requester_site",
    "state",
    "created_at",
    "queued_at",
    "returned_to_queue",
    "specialist",
    "centre",
    "offered_at",
    "declined_by",
    "accepted_at",
    "room",
    "opinion",
    "acknowledged_at",
    "referrals",
    "closing_reason",
    "updated_at",
    "version",
];

const AUDIT_COLUMNS: &str = "seq, at, actor, action, request_id, address, detail";
const USER_COLUMNS: &str =
    "username, display_name, role, site_id, specialties, password_hash, disabled, token_generation";
const SITE_COLUMNS: &str = "id, name, kind, region, line_capacity_kbps";
const LINE_COLUMNS: &str = "id, site, measured_at, source, measured_by, down_kbps, up_kbps, rtt_ms, \
     jitter_ms, loss_pct, elapsed_ms, bytes_sent, bytes_received, confidence";

/// The SQLite store. Cheap to clone (the connection is shared).
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Open (or create) the database at `path`, creating its directory if missing, and bring the
    /// schema up to date.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let path = path.to_path_buf();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, StoreError> {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Backend(format!("creating {}: {e}", dir.display())))?;
            }
            let mut conn = Connection::open(&path)
                .map_err(|e| StoreError::Backend(format!("opening {}: {e}", path.display())))?;
            conn.busy_timeout(BUSY_TIMEOUT).map_err(db_err)?;
            // Switching a new database to WAL takes an exclusive lock, and SQLite answers "database
            // is locked" at once, without its busy handler, when another connection opening the
            // same new file holds a lock (several nodes or tests starting together): try again
            // for as long as the busy timeout.
            let started = std::time::Instant::now();
            let mode: String = loop {
                match conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)) {
                    Err(rusqlite::Error::SqliteFailure(e, _))
                        if e.code == rusqlite::ErrorCode::DatabaseBusy
                            && started.elapsed() < BUSY_TIMEOUT =>
                    {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    other => break other.map_err(db_err)?,
                }
            };
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(%mode, "SQLite did not switch to WAL mode");
            }
            conn.pragma_update(None, "foreign_keys", true)
                .map_err(db_err)?;
            migrate(&mut conn, MIGRATIONS)?;
            Ok(conn)
        })
        .await
        .map_err(join_err)??;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Run `f` with the connection on the blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock leaves no open transaction behind (rusqlite rolls back
            // on drop), so a poisoned lock is safe to keep using.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(join_err)?
    }

    /// Run `f` in a write transaction (`BEGIN IMMEDIATE`), committing if it succeeds.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let out = f(&tx)?;
            tx.commit().map_err(db_err)?;
            Ok(out)
        })
        .await
    }
}

/// Apply the steps of `migrations` that the database lacks, each in its own transaction.
fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<(), StoreError> {
    let known = migrations.len();
    loop {
        // The version is read inside the write transaction, so two processes opening a new
        // database at the same time apply each step once: the second waits for the first's step
        // and then sees its version.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let current: i64 = tx
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(db_err)?;
        let current = usize::try_from(current).map_err(|_| {
            StoreError::Backend(format!("database has invalid user_version {current}"))
        })?;
        if current > known {
            return Err(StoreError::Backend(format!(
                "database schema version {current} is newer than this program knows ({known}); \
                 use a newer telemed or another data directory"
            )));
        }
        let Some(sql) = migrations.get(current) else {
            return Ok(());
        };
        let version = current + 1;
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Backend(format!("schema migration {version}: {e}")))?;
        let stamp = i64::try_from(version)
            .map_err(|_| StoreError::Backend(format!("schema version {version} too large")))?;
        tx.pragma_update(None, "user_version", stamp)
            .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        tracing::info!(version, "applied SQLite schema migration");
    }
}

fn join_err(e: tokio::task::JoinError) -> StoreError {
    StoreError::Backend(format!("storage task failed: {e}"))
}

/// Map a rusqlite error: unique/primary-key violations to `AlreadyExists`, undecodable values to
/// `Corrupt`, the rest to `Backend`.
fn db_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ffi::{SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE};
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == ErrorCode::ConstraintViolation
                && (f.extended_code == SQLITE_CONSTRAINT_PRIMARYKEY
                    || f.extended_code == SQLITE_CONSTRAINT_UNIQUE) =>
        {
            StoreError::AlreadyExists
        }
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::Utf8Error(..)
        | rusqlite::Error::InvalidColumnType(..) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Backend(e.to_string()),
    }
}

fn get<T: rusqlite::types::FromSql>(row: &Row<'_>, i: usize) -> Result<T, StoreError> {
    row.get(i).map_err(db_err)
}

fn to_i64(what: &str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Backend(format!("{what} {v} is too large to store")))
}

fn to_u64(what: &str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} is negative: {v}")))
}

fn opt_text(v: &Option<String>) -> Value {
    v.clone().map_or(Value::Null, Value::Text)
}

fn opt_int(v: Option<i64>) -> Value {
    v.map_or(Value::Null, Value::Integer)
}

/// A request's column values, in [`REQUEST_COLUMNS`] order.
fn request_values(r: &Request) -> Result<Vec<Value>, StoreError> {
    Ok(vec![
        Value::Text(r.id.clone()),
        Value::Text(r.patient_pseudonym.clone()),
        Value::Text(r.specialty.clone()),
        Value::Text(r.urgency.as_str().to_owned()),
        Value::Text(r.question.clone()),
        opt_text(&r.preferred_centre),
        Value::Text(to_json(&r.consent)?),
        Value::Text(r.requester.clone()),
        Value::Text(r.requester_site.clone()),
        Value::Text(r.state.as_str().to_owned()),
        Value::Integer(r.created_at),
        opt_int(r.queued_at),
        Value::Integer(i64::from(r.returned_to_queue)),
        opt_text(&r.specialist),
        opt_text(&r.centre),
        opt_int(r.offered_at),
        Value::Text(to_json(&r.declined_by)?),
        opt_int(r.accepted_at),
        opt_text(&r.room),
        match &r.opinion {
            Some(o) => Value::Text(to_json(o)?),
            None => Value::Null,
        },
        opt_int(r.acknowledged_at),
        Value::Text(to_json(&r.referrals)?),
        opt_text(&r.closing_reason),
        Value::Integer(r.updated_at),
        Value::Integer(to_i64("version", r.version)?),
    ])
}

/// Decode a row selected with [`REQUEST_COLUMNS`].
fn request_from_row(row: &Row<'_>) -> Result<Request, StoreError> {
    let id: String = get(row, 0)?;
    let state: String = get(row, 9)?;
    let opinion: Option<String> = get(row, 19)?;
    Ok(Request {
        patient_pseudonym: get(row, 1)?,
        specialty: get(row, 2)?,
        urgency: parse_enum("request urgency", &get::<String>(row, 3)?)?,
        question: get(row, 4)?,
        preferred_centre: get(row, 5)?,
        consent: from_json("request consent", &get::<String>(row, 6)?)?,
        requester: get(row, 7)?,
        requester_site: get(row, 8)?,
        state: RequestState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("request {id}: unknown state {state:?}")))?,
        created_at: get(row, 10)?,
        queued_at: get(row, 11)?,
        returned_to_queue: get::<i64>(row, 12)? != 0,
        specialist: get(row, 13)?,
        centre: get(row, 14)?,
        offered_at: get(row, 15)?,
        declined_by: from_json("request declined_by", &get::<String>(row, 16)?)?,
        accepted_at: get(row, 17)?,
        room: get(row, 18)?,
        opinion: opinion
            .map(|o| from_json("request opinion", &o))
            .transpose()?,
        acknowledged_at: get(row, 20)?,
        referrals: from_json("request referrals", &get::<String>(row, 21)?)?,
        closing_reason: get(row, 22)?,
        updated_at: get(row, 23)?,
        version: to_u64("request version", get(row, 24)?)?,
        id,
    })
}

fn site_from_row(row: &Row<'_>) -> Result<Site, StoreError> {
    let capacity: i64 = get(row, 4)?;
    Ok(Site {
        id: get(row, 0)?,
        name: get(row, 1)?,
        kind: parse_enum("site kind", &get::<String>(row, 2)?)?,
        region: get(row, 3)?,
        line_capacity_kbps: u32::try_from(capacity)
            .map_err(|_| StoreError::Corrupt(format!("site line capacity {capacity}")))?,
    })
}

fn user_from_row(row: &Row<'_>) -> Result<User, StoreError> {
    let generation: i64 = get(row, 7)?;
    Ok(User {
        username: get(row, 0)?,
        display_name: get(row, 1)?,
        role: parse_enum("user role", &get::<String>(row, 2)?)?,
        site_id: get(row, 3)?,
        specialties: from_json("user specialties", &get::<String>(row, 4)?)?,
        password_hash: get(row, 5)?,
        disabled: get::<i64>(row, 6)? != 0,
        token_generation: u32::try_from(generation)
            .map_err(|_| StoreError::Corrupt(format!("user token generation {generation}")))?,
    })
}

fn audit_from_row(row: &Row<'_>) -> Result<AuditEvent, StoreError> {
    Ok(AuditEvent {
        seq: to_u64("audit seq", get(row, 0)?)?,
        at: get(row, 1)?,
        actor: get(row, 2)?,
        action: get(row, 3)?,
        request_id: get(row, 4)?,
        address: get(row, 5)?,
        detail: get(row, 6)?,
    })
}

fn line_from_row(row: &Row<'_>) -> Result<LineMeasurement, StoreError> {
    Ok(LineMeasurement {
        id: get(row, 0)?,
        site: get(row, 1)?,
        measured_at: get(row, 2)?,
        source: parse_enum("line measurement source", &get::<String>(row, 3)?)?,
        measured_by: get(row, 4)?,
        down_kbps: get(row, 5)?,
        up_kbps: get(row, 6)?,
        rtt_ms: get(row, 7)?,
        jitter_ms: get(row, 8)?,
        loss_pct: get(row, 9)?,
        elapsed_ms: get(row, 10)?,
        bytes_sent: to_u64("line measurement bytes_sent", get(row, 11)?)?,
        bytes_received: to_u64("line measurement bytes_received", get(row, 12)?)?,
        confidence: get(row, 13)?,
    })
}

fn line_values(m: &LineMeasurement) -> Result<Vec<Value>, StoreError> {
    Ok(vec![
        Value::Text(m.id.clone()),
        Value::Text(m.site.clone()),
        Value::Integer(m.measured_at),
        Value::Text(enum_name(&m.source)?),
        Value::Text(m.measured_by.clone()),
        Value::Real(m.down_kbps),
        Value::Real(m.up_kbps),
        Value::Real(m.rtt_ms),
        Value::Real(m.jitter_ms),
        Value::Real(m.loss_pct),
        Value::Real(m.elapsed_ms),
        Value::Integer(to_i64("bytes_sent", m.bytes_sent)?),
        Value::Integer(to_i64("bytes_received", m.bytes_received)?),
        m.confidence.map_or(Value::Null, Value::Real),
    ])
}

fn user_values(u: &User) -> Result<Vec<Value>, StoreError> {
    Ok(vec![
        Value::Text(u.username.clone()),
        Value::Text(u.display_name.clone()),
        Value::Text(enum_name(&u.role)?),
        Value::Text(u.site_id.clone()),
        Value::Text(to_json(&u.specialties)?),
        Value::Text(u.password_hash.clone()),
        Value::Integer(i64::from(u.disabled)),
        Value::Integer(i64::from(u.token_generation)),
    ])
}

/// Insert an audit event inside `tx`; returns its sequence number.
fn insert_audit(tx: &Connection, e: &AuditEvent) -> Result<u64, StoreError> {
    tx.execute(
        "INSERT INTO audit (at, actor, action, request_id, address, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        rusqlite::params![e.at, e.actor, e.action, e.request_id, e.address, e.detail],
    )
    .map_err(db_err)?;
    to_u64("audit seq", tx.last_insert_rowid())
}

/// Append `v` to `params`; returns its placeholder (`?n`).
fn param(v: Value, params: &mut Vec<Value>) -> String {
    params.push(v);
    format!("?{}", params.len())
}

/// Run a query and decode every row with `decode`.
fn query_all<T>(
    conn: &Connection,
    sql: &str,
    params: Vec<Value>,
    decode: fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
    let mut rows = stmt.query(params_from_iter(params)).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db_err)? {
        out.push(decode(row)?);
    }
    Ok(out)
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_site(&self, site: &Site) -> Result<(), StoreError> {
        let values = vec![
            Value::Text(site.id.clone()),
            Value::Text(site.name.clone()),
            Value::Text(enum_name(&site.kind)?),
            Value::Text(site.region.clone()),
            Value::Integer(i64::from(site.line_capacity_kbps)),
        ];
        self.write(move |tx| {
            tx.execute(
                &format!(
                    "INSERT OR REPLACE INTO sites ({SITE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"
                ),
                params_from_iter(values),
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn get_site(&self, id: &str) -> Result<Option<Site>, StoreError> {
        let id = id.to_owned();
        self.run(move |conn| {
            let sql = format!("SELECT {SITE_COLUMNS} FROM sites WHERE id = ?1");
            Ok(query_all(conn, &sql, vec![Value::Text(id)], site_from_row)?
                .into_iter()
                .next())
        })
        .await
    }

    async fn list_sites(&self) -> Result<Vec<Site>, StoreError> {
        self.run(move |conn| {
            let sql = format!("SELECT {SITE_COLUMNS} FROM sites ORDER BY id");
            query_all(conn, &sql, Vec::new(), site_from_row)
        })
        .await
    }

    async fn create_user(&self, user: &User) -> Result<(), StoreError> {
        let values = user_values(user)?;
        self.write(move |tx| {
            tx.execute(
                &format!(
                    "INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ),
                params_from_iter(values),
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn update_user(&self, user: &User) -> Result<(), StoreError> {
        let values = user_values(user)?;
        self.write(move |tx| {
            let changed = tx
                .execute(
                    "UPDATE users SET display_name = ?2, role = ?3, site_id = ?4, specialties = ?5,
                     password_hash = ?6, disabled = ?7, token_generation = ?8
                     WHERE username = ?1",
                    params_from_iter(values),
                )
                .map_err(db_err)?;
            if changed == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
        .await
    }

    async fn get_user(&self, username: &str) -> Result<Option<User>, StoreError> {
        let username = username.to_owned();
        self.run(move |conn| {
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?1");
            Ok(
                query_all(conn, &sql, vec![Value::Text(username)], user_from_row)?
                    .into_iter()
                    .next(),
            )
        })
        .await
    }

    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        self.run(move |conn| {
            let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username");
            query_all(conn, &sql, Vec::new(), user_from_row)
        })
        .await
    }

    async fn create_request(&self, req: &Request, audit: &AuditEvent) -> Result<u64, StoreError> {
        let values = request_values(req)?;
        let audit = audit.clone();
        self.write(move |tx| {
            let placeholders: Vec<String> = (1..=REQUEST_COLUMNS.len())
                .map(|i| format!("?{i}"))
                .collect();
            let sql = format!(
                "INSERT INTO requests ({}) VALUES ({})",
                REQUEST_COLUMNS.join(", "),
                placeholders.join(", ")
            );
            tx.execute(&sql, params_from_iter(values)).map_err(db_err)?;
            insert_audit(tx, &audit)
        })
        .await
    }

    async fn update_request(
        &self,
        req: &Request,
        expected_version: u64,
        audit: &AuditEvent,
    ) -> Result<u64, StoreError> {
        let mut values = request_values(req)?;
        values.push(Value::Integer(to_i64(
            "expected version",
            expected_version,
        )?));
        let audit = audit.clone();
        let id = req.id.clone();
        self.write(move |tx| {
            let n = REQUEST_COLUMNS.len();
            let sets: Vec<String> = REQUEST_COLUMNS
                .iter()
                .enumerate()
                .skip(1)
                .map(|(i, c)| format!("{c} = ?{}", i + 1))
                .collect();
            let sql = format!(
                "UPDATE requests SET {} WHERE id = ?1 AND version = ?{}",
                sets.join(", "),
                n + 1
            );
            let changed = tx.execute(&sql, params_from_iter(values)).map_err(db_err)?;
            if changed == 0 {
                let exists = tx
                    .query_row("SELECT 1 FROM requests WHERE id = ?1", [&id], |_| Ok(()))
                    .optional()
                    .map_err(db_err)?
                    .is_some();
                return Err(if exists {
                    StoreError::Conflict
                } else {
                    StoreError::NotFound
                });
            }
            insert_audit(tx, &audit)
        })
        .await
    }

    async fn get_request(&self, id: &str) -> Result<Option<Request>, StoreError> {
        let id = id.to_owned();
        self.run(move |conn| {
            let sql = format!(
                "SELECT {} FROM requests WHERE id = ?1",
                REQUEST_COLUMNS.join(", ")
            );
            Ok(
                query_all(conn, &sql, vec![Value::Text(id)], request_from_row)?
                    .into_iter()
                    .next(),
            )
        })
        .await
    }

    async fn list_requests(&self, filter: &RequestFilter) -> Result<Vec<Request>, StoreError> {
        let filter = filter.clone();
        self.run(move |conn| {
            let mut conds: Vec<String> = Vec::new();
            let mut params: Vec<Value> = Vec::new();
            if let Some(u) = &filter.requester {
                let p = param(Value::Text(u.clone()), &mut params);
                conds.push(format!("requester = {p}"));
            }
            if let Some(s) = &filter.specialist {
                let p = param(Value::Text(s.clone()), &mut params);
                conds.push(format!("specialist = {p}"));
            }
            if let Some(s) = &filter.site {
                let p = param(Value::Text(s.clone()), &mut params);
                conds.push(format!("(requester_site = {p} OR centre = {p})"));
            }
            if let Some(states) = &filter.states {
                if states.is_empty() {
                    return Ok(Vec::new());
                }
                let ps: Vec<String> = states
                    .iter()
                    .map(|st| param(Value::Text(st.as_str().to_owned()), &mut params))
                    .collect();
                conds.push(format!("state IN ({})", ps.join(", ")));
            }
            if let Some(s) = &filter.specialty {
                let p = param(Value::Text(s.clone()), &mut params);
                conds.push(format!("specialty = {p}"));
            }
            let mut sql = format!("SELECT {} FROM requests", REQUEST_COLUMNS.join(", "));
            if !conds.is_empty() {
                sql.push_str(" WHERE ");
                sql.push_str(&conds.join(" AND "));
            }
            sql.push_str(" ORDER BY created_at DESC, id DESC");
            if filter.limit > 0 {
                let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
                let p = param(Value::Integer(limit), &mut params);
                sql.push_str(&format!(" LIMIT {p}"));
            }
            let out = query_all(conn, &sql, params, request_from_row)?;
            Ok(filter.finish(out))
        })
        .await
    }

    async fn set_availability(&self, a: &Availability) -> Result<(), StoreError> {
        let a = a.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO availability (username, available, since) VALUES (?1, ?2, ?3)
                 ON CONFLICT (username) DO UPDATE SET available = excluded.available,
                 since = excluded.since",
                rusqlite::params![a.username, a.available, a.since],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn list_availability(&self) -> Result<Vec<Availability>, StoreError> {
        self.run(move |conn| {
            query_all(
                conn,
                "SELECT username, available, since FROM availability ORDER BY username",
                Vec::new(),
                |row| {
                    Ok(Availability {
                        username: get(row, 0)?,
                        available: get::<i64>(row, 1)? != 0,
                        since: get(row, 2)?,
                    })
                },
            )
        })
        .await
    }

    async fn append_audit(&self, event: &AuditEvent) -> Result<u64, StoreError> {
        let event = event.clone();
        self.write(move |tx| insert_audit(tx, &event)).await
    }

    async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        let q = q.clone();
        self.run(move |conn| {
            let mut conds: Vec<String> = Vec::new();
            let mut params: Vec<Value> = Vec::new();
            if let Some(a) = &q.actor {
                let p = param(Value::Text(a.clone()), &mut params);
                conds.push(format!("actor = {p}"));
            }
            if let Some(r) = &q.request_id {
                let p = param(Value::Text(r.clone()), &mut params);
                conds.push(format!("request_id = {p}"));
            }
            if let Some(prefix) = &q.action_prefix {
                // Exact, case-sensitive prefix (LIKE would fold ASCII case and treat % and _ as
                // wildcards).
                let p = param(Value::Text(prefix.clone()), &mut params);
                conds.push(format!("substr(action, 1, length({p})) = {p}"));
            }
            if let Some(since) = q.since {
                let p = param(Value::Integer(since), &mut params);
                conds.push(format!("at >= {p}"));
            }
            if let Some(before) = q.before_seq {
                // Every stored seq is below i64::MAX, so a larger bound excludes nothing.
                let before = i64::try_from(before).unwrap_or(i64::MAX);
                let p = param(Value::Integer(before), &mut params);
                conds.push(format!("seq < {p}"));
            }
            let mut sql = format!("SELECT {AUDIT_COLUMNS} FROM audit");
            if !conds.is_empty() {
                sql.push_str(" WHERE ");
                sql.push_str(&conds.join(" AND "));
            }
            let limit = i64::try_from(audit_limit(&q)).unwrap_or(i64::MAX);
            let p = param(Value::Integer(limit), &mut params);
            sql.push_str(&format!(" ORDER BY seq DESC LIMIT {p}"));
            query_all(conn, &sql, params, audit_from_row)
        })
        .await
    }

    async fn add_line_measurement(&self, m: &LineMeasurement) -> Result<(), StoreError> {
        let values = line_values(m)?;
        let site = m.site.clone();
        let keep = to_i64(
            "line measurements kept",
            MAX_LINE_MEASUREMENTS_PER_SITE as u64,
        )?;
        self.write(move |tx| {
            tx.execute(
                &format!(
                    "INSERT INTO line_measurements ({LINE_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
                ),
                params_from_iter(values),
            )
            .map_err(db_err)?;
            // Drop what is beyond the newest `keep` of the site.
            tx.execute(
                "DELETE FROM line_measurements WHERE site = ?1 AND seq <= (
                     SELECT seq FROM line_measurements WHERE site = ?1
                     ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
                rusqlite::params![site, keep],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn list_line_measurements(
        &self,
        site: &str,
        limit: usize,
    ) -> Result<Vec<LineMeasurement>, StoreError> {
        let site = site.to_owned();
        let limit = to_i64("limit", line_limit(limit) as u64)?;
        self.run(move |conn| {
            let sql = format!(
                "SELECT {LINE_COLUMNS} FROM line_measurements WHERE site = ?1
                 ORDER BY seq DESC LIMIT ?2"
            );
            query_all(
                conn,
                &sql,
                vec![Value::Text(site), Value::Integer(limit)],
                line_from_row,
            )
        })
        .await
    }

    async fn latest_line_measurement(
        &self,
        site: &str,
    ) -> Result<Option<LineMeasurement>, StoreError> {
        Ok(self
            .list_line_measurements(site, 1)
            .await?
            .into_iter()
            .next())
    }

    async fn secret(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>, StoreError> {
        let name = name.to_owned();
        let fresh = fresh.to_vec();
        self.write(move |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO secrets (name, value) VALUES (?1, ?2)",
                rusqlite::params![name, fresh],
            )
            .map_err(db_err)?;
            tx.query_row(
                "SELECT value FROM secrets WHERE name = ?1",
                [&name],
                |row| row.get::<_, Vec<u8>>(0),
            )
            .map_err(db_err)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_version(path: &Path) -> i64 {
        let conn = Connection::open(path).unwrap();
        conn.pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn open_creates_directory_and_applies_every_migration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/deeper/telemed.sqlite3");
        let store = SqliteStore::open(&path).await.unwrap();
        drop(store);
        assert_eq!(user_version(&path), MIGRATIONS.len() as i64);
        let conn = Connection::open(&path).unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode.to_lowercase(), "wal");
    }

    #[tokio::test]
    async fn opening_twice_keeps_data_and_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite3");
        let store = SqliteStore::open(&path).await.unwrap();
        assert_eq!(store.secret("k", b"one").await.unwrap(), b"one");
        drop(store);
        let store = SqliteStore::open(&path).await.unwrap();
        assert_eq!(store.secret("k", b"two").await.unwrap(), b"one");
        drop(store);
        assert_eq!(user_version(&path), MIGRATIONS.len() as i64);
    }

    #[tokio::test]
    async fn opening_applies_only_missing_steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite3");
        {
            let mut conn = Connection::open(&path).unwrap();
            migrate(&mut conn, &MIGRATIONS[..1]).unwrap();
            conn.execute("INSERT INTO secrets (name, value) VALUES ('k', x'01')", [])
                .unwrap();
        }
        assert_eq!(user_version(&path), 1);
        let store = SqliteStore::open(&path).await.unwrap();
        assert_eq!(store.secret("k", b"new").await.unwrap(), vec![1u8]);
        drop(store);
        assert_eq!(user_version(&path), MIGRATIONS.len() as i64);
        let conn = Connection::open(&path).unwrap();
        let indexes: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'requests_by_state'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_opens_of_a_new_database_migrate_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite3");
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let path = path.clone();
                tokio::spawn(async move { SqliteStore::open(&path).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(user_version(&path), MIGRATIONS.len() as i64);
    }

    #[tokio::test]
    async fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite3");
        drop(SqliteStore::open(&path).await.unwrap());
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", MIGRATIONS.len() as i64 + 1)
                .unwrap();
        }
        let err = SqliteStore::open(&path).await.unwrap_err();
        match err {
            StoreError::Backend(msg) => {
                assert!(msg.contains("newer than this program knows"), "{msg}")
            }
            other => panic!("expected Backend, got {other:?}"),
        }
        // Refusing left the database alone.
        assert_eq!(user_version(&path), MIGRATIONS.len() as i64 + 1);
    }

    #[tokio::test]
    async fn a_failing_migration_rolls_back_its_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite3");
        let mut conn = Connection::open(&path).unwrap();
        let steps = [
            "CREATE TABLE a (x INTEGER);",
            "CREATE TABLE b (x INTEGER); CREATE TABLE a (y INTEGER);",
        ];
        let err = migrate(&mut conn, &steps).unwrap_err();
        assert!(matches!(err, StoreError::Backend(ref m) if m.contains("migration 2")));
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, 1);
        let b: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'b'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(b, 0, "the failed step left table b behind");
    }

    #[tokio::test]
    async fn corrupt_rows_are_reported_not_panicked_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite3");
        let store = SqliteStore::open(&path).await.unwrap();
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute(
                "INSERT INTO sites (id, name, kind, region, line_capacity_kbps)
                 VALUES ('x', 'X', 'castle', 'r', 10)",
                [],
            )
            .unwrap();
        }
        assert!(matches!(
            store.get_site("x").await,
            Err(StoreError::Corrupt(_))
        ));
    }
}
