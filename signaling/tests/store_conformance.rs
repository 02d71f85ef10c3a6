//! The storage conformance suite: one set of checks, run against both [`Store`] implementations.
//!
//! SQLite tests use a fresh temporary directory each. Redis tests start their own `redis-server`
//! (Debian package `redis-server`, installed by `make deps`) on a free 127.0.0.1 port with a
//! temporary data directory and append-only persistence, and kill it when done, so every test has
//! its own server and the tests run in parallel.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use signaling::domain::line::{LineMeasurement, MeasurementSource};
use signaling::domain::{
    AuditEvent, AuditQuery, Consent, ConsentMethod, Millis, Opinion, Referral, ReferralDirection,
    Request, RequestState, Role, Signature, Site, SiteKind, Urgency, User,
};
use signaling::store::redis::RedisStore;
use signaling::store::sqlite::SqliteStore;
use signaling::store::{
    Availability, MAX_LINE_MEASUREMENTS_PER_SITE, RequestFilter, Store, StoreError,
};
use tempfile::TempDir;

// ------------------------------------------------------------------------------------------------
// Backends
// ------------------------------------------------------------------------------------------------

/// A `redis-server` child process with its own data directory; killed when dropped.
struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

fn redis_server_binary() -> PathBuf {
    let default = PathBuf::from("/usr/bin/redis-server");
    if default.is_file() {
        return default;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("redis-server");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "redis-server not found (looked at /usr/bin/redis-server and on PATH): run `make deps` \
         to install the Debian package redis-server"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

impl RedisServer {
    fn start() -> RedisServer {
        let mut dir = tempfile::tempdir().expect("temp dir");
        for _ in 0..5 {
            let port = free_port();
            let mut server = RedisServer {
                child: None,
                port,
                dir,
            };
            if server.spawn() {
                return server;
            }
            dir = std::mem::replace(&mut server.dir, tempfile::tempdir().expect("temp dir"));
        }
        panic!("could not start redis-server on a free port (see its log above)");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Start `redis-server` on `self.port` with `self.dir`; true once it answers PING.
    fn spawn(&mut self) -> bool {
        let child = Command::new(redis_server_binary())
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args(["--save", ""])
            .args(["--daemonize", "no"])
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                eprintln!("redis-server exited with {status}:\n{}", self.log());
                self.child = None;
                return false;
            }
            if self.ping() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server did not answer PING within 10 s:\n{}",
            self.log()
        );
    }

    fn ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
            return false;
        };
        redis::cmd("PING")
            .query::<String>(&mut conn)
            .is_ok_and(|p| p == "PONG")
    }

    /// A plain connection for inspecting keys.
    fn raw(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// Stop the server with SHUTDOWN (which flushes the append-only file), wait for the process to
    /// exit, and start a new one on the same port and data directory.
    fn restart(&mut self) {
        let mut conn = self.raw();
        // The server closes the connection instead of answering.
        let _ = redis::cmd("SHUTDOWN").query::<()>(&mut conn);
        let mut child = self.child.take().expect("server running");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    assert!(status.success(), "redis-server exited with {status}");
                    break;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => panic!("redis-server did not stop after SHUTDOWN"),
            }
        }
        assert!(!self.ping(), "the old server still answers");
        assert!(
            self.spawn(),
            "redis-server did not restart:\n{}",
            self.log()
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where a test's data lives; opens as many stores on it as a test needs.
enum Env {
    Sqlite { _dir: TempDir, path: PathBuf },
    Redis { server: RedisServer, prefix: String },
}

impl Env {
    fn sqlite() -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("data").join("telemed.sqlite3");
        Env::Sqlite { _dir: dir, path }
    }

    fn redis() -> Env {
        Env::Redis {
            server: RedisServer::start(),
            prefix: "telemed-test:".into(),
        }
    }

    async fn open(&self) -> Arc<dyn Store> {
        match self {
            Env::Sqlite { path, .. } => {
                Arc::new(SqliteStore::open(path).await.expect("open sqlite"))
            }
            Env::Redis { server, prefix } => Arc::new(
                RedisStore::connect(&server.url(), prefix)
                    .await
                    .expect("connect redis"),
            ),
        }
    }

    /// Stop and start the backend (SQLite: nothing to do, the caller drops its stores).
    fn restart(&mut self) {
        match self {
            Env::Sqlite { .. } => {}
            Env::Redis { server, .. } => server.restart(),
        }
    }
}

/// A test for both backends: `$check` takes the store (or `store_env` checks take the `Env`).
macro_rules! both {
    ($check:ident => $sqlite:ident, $redis:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $sqlite() {
            let env = Env::sqlite();
            $check(env.open().await).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $redis() {
            let env = Env::redis();
            $check(env.open().await).await;
        }
    };
    (env $check:ident => $sqlite:ident, $redis:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $sqlite() {
            let mut env = Env::sqlite();
            $check(&mut env).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $redis() {
            let mut env = Env::redis();
            $check(&mut env).await;
        }
    };
}

both!(sites_and_users => sqlite_sites_and_users, redis_sites_and_users);
both!(requests_create_update => sqlite_requests_create_update, redis_requests_create_update);
both!(request_filters => sqlite_request_filters, redis_request_filters);
both!(env concurrent_updates => sqlite_concurrent_updates, redis_concurrent_updates);
both!(audit_queries => sqlite_audit_queries, redis_audit_queries);
both!(availability_and_secrets => sqlite_availability_and_secrets, redis_availability_and_secrets);
both!(env restart => sqlite_restart, redis_restart);
both!(hostile_input => sqlite_hostile_input, redis_hostile_input);
both!(line_measurements => sqlite_line_measurements, redis_line_measurements);

// ------------------------------------------------------------------------------------------------
// Data
// ------------------------------------------------------------------------------------------------

fn site(id: &str, kind: SiteKind) -> Site {
    Site {
        id: id.into(),
        name: format!("{id} 医院"),
        kind,
        region: "四川 / 甘孜".into(),
        line_capacity_kbps: 2048,
    }
}

fn user(name: &str, role: Role, site: &str) -> User {
    User {
        username: name.into(),
        display_name: format!("{name} 医生"),
        role,
        site_id: site.into(),
        specialties: if role == Role::Specialist {
            vec!["cardiology".into(), "neurology".into()]
        } else {
            vec![]
        },
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        disabled: false,
        token_generation: 0,
    }
}

fn request(id: &str, requester: &str, site: &str, specialty: &str, created: Millis) -> Request {
    Request {
        id: id.into(),
        patient_pseudonym: "P-001".into(),
        specialty: specialty.into(),
        urgency: Urgency::Urgent,
        question: "ST elevation?".into(),
        preferred_centre: None,
        consent: Consent {
            recorded_by: requester.into(),
            recorded_at: created,
            method: ConsentMethod::Written,
        },
        requester: requester.into(),
        requester_site: site.into(),
        state: RequestState::Requested,
        created_at: created,
        queued_at: None,
        returned_to_queue: false,
        specialist: None,
        centre: None,
        offered_at: None,
        declined_by: vec![],
        accepted_at: None,
        room: None,
        opinion: None,
        acknowledged_at: None,
        referrals: vec![],
        closing_reason: None,
        updated_at: created,
        version: 1,
    }
}

/// A request with every optional and nested field set.
fn full_request(id: &str, created: Millis) -> Request {
    let mut r = request(id, "doc", "county", "cardiology", created);
    r.urgency = Urgency::Emergency;
    r.preferred_centre = Some("centre".into());
    r.consent.method = ConsentMethod::Verbal;
    r.state = RequestState::Closed;
    r.queued_at = Some(created + 1);
    r.returned_to_queue = true;
    r.specialist = Some("spec".into());
    r.centre = Some("centre".into());
    r.offered_at = Some(created + 2);
    r.declined_by = vec!["spec2".into(), "spec3".into()];
    r.accepted_at = Some(created + 3);
    r.room = Some(format!("room-{id}"));
    r.opinion = Some(Opinion {
        findings: "窦性心律\nST 段抬高".into(),
        diagnosis: "急性心肌梗死".into(),
        recommendations: "转诊 \"上级\" 医院".into(),
        follow_up: "one week".into(),
        author: "spec".into(),
        updated_at: created + 4,
        signature: Some(Signature {
            signed_by: "spec".into(),
            signer_name: "王医生".into(),
            signed_at: created + 5,
            digest: "ab".repeat(32),
        }),
    });
    r.acknowledged_at = Some(created + 6);
    r.referrals = vec![
        Referral {
            direction: ReferralDirection::Up,
            to_site: "centre".into(),
            reason: "PCI".into(),
            proposed_by: "spec".into(),
            proposed_at: created + 7,
        },
        Referral {
            direction: ReferralDirection::Down,
            to_site: "county".into(),
            reason: "follow-up 随访".into(),
            proposed_by: "spec".into(),
            proposed_at: created + 8,
        },
    ];
    r.closing_reason = Some("done".into());
    r.updated_at = created + 9;
    r.version = 7;
    r
}

fn event(actor: &str, action: &str, request_id: Option<&str>, at: Millis) -> AuditEvent {
    AuditEvent {
        seq: 0,
        at,
        actor: actor.into(),
        action: action.into(),
        request_id: request_id.map(Into::into),
        address: Some("10.0.0.7:51234".into()),
        detail: "requested -> queued".into(),
    }
}

fn line(site: &str, n: u32) -> LineMeasurement {
    LineMeasurement {
        id: format!("{site}-{n}"),
        site: site.into(),
        measured_at: 1_700_000_000_000 + i64::from(n),
        source: MeasurementSource::ALL[n as usize % 3],
        measured_by: "itadmin".into(),
        down_kbps: 1000.0 + f64::from(n) + 0.125,
        up_kbps: 512.3456789,
        rtt_ms: 41.7,
        jitter_ms: 0.35,
        loss_pct: 5.0,
        elapsed_ms: 1234.5,
        bytes_sent: 123_456 + u64::from(n),
        bytes_received: 9_876_543_210,
        confidence: n.is_multiple_of(2).then_some(0.93),
    }
}

fn all_audit() -> AuditQuery {
    AuditQuery {
        limit: 1000,
        ..AuditQuery::default()
    }
}

fn for_request(id: &str) -> AuditQuery {
    AuditQuery {
        request_id: Some(id.into()),
        ..all_audit()
    }
}

// ------------------------------------------------------------------------------------------------
// Checks
// ------------------------------------------------------------------------------------------------

async fn sites_and_users(store: Arc<dyn Store>) {
    assert!(store.list_sites().await.unwrap().is_empty());
    assert_eq!(store.get_site("county").await.unwrap(), None);
    let county = site("county", SiteKind::CountyHospital);
    let centre = site("centre", SiteKind::SpecialistCentre);
    let clinic = site("clinic", SiteKind::TownshipClinic);
    for s in [&county, &centre, &clinic] {
        store.put_site(s).await.unwrap();
    }
    assert_eq!(
        store.get_site("county").await.unwrap().as_ref(),
        Some(&county)
    );
    assert_eq!(
        store.list_sites().await.unwrap(),
        vec![centre.clone(), clinic.clone(), county.clone()],
        "sites by id"
    );
    // put_site replaces.
    let mut renamed = county.clone();
    renamed.name = "县人民医院".into();
    renamed.line_capacity_kbps = 512;
    store.put_site(&renamed).await.unwrap();
    assert_eq!(
        store.get_site("county").await.unwrap(),
        Some(renamed.clone())
    );
    assert_eq!(store.list_sites().await.unwrap().len(), 3);

    assert!(store.list_users().await.unwrap().is_empty());
    assert_eq!(store.get_user("doc").await.unwrap(), None);
    let doc = user("doc", Role::ReferringDoctor, "county");
    let spec = user("spec", Role::Specialist, "centre");
    let it = user("it", Role::ItAdmin, "county");
    let op = user("op", Role::Operator, "centre");
    for u in [&spec, &doc, &op, &it] {
        store.create_user(u).await.unwrap();
    }
    assert!(matches!(
        store.create_user(&doc).await,
        Err(StoreError::AlreadyExists)
    ));
    let mut other_doc = doc.clone();
    other_doc.display_name = "imposter".into();
    assert!(matches!(
        store.create_user(&other_doc).await,
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(store.get_user("doc").await.unwrap(), Some(doc.clone()));
    assert_eq!(store.get_user("spec").await.unwrap(), Some(spec.clone()));

    let mut changed = spec.clone();
    changed.display_name = "王主任".into();
    changed.specialties = vec!["neurology".into()];
    changed.disabled = true;
    changed.token_generation = 3;
    changed.password_hash = "$argon2id$new".into();
    store.update_user(&changed).await.unwrap();
    assert_eq!(store.get_user("spec").await.unwrap(), Some(changed.clone()));

    let ghost = user("ghost", Role::Specialist, "centre");
    assert!(matches!(
        store.update_user(&ghost).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.get_user("ghost").await.unwrap(), None);
    assert_eq!(
        store.list_users().await.unwrap(),
        vec![doc, it, op, changed],
        "users by name"
    );
}

async fn requests_create_update(store: Arc<dyn Store>) {
    let r = request("r1", "doc", "county", "cardiology", 1_000);
    let created = event("doc", "request.created", Some("r1"), 1_000);
    let seq1 = store.create_request(&r, &created).await.unwrap();
    assert!(seq1 >= 1);
    assert_eq!(store.get_request("r1").await.unwrap(), Some(r.clone()));
    assert_eq!(store.get_request("r2").await.unwrap(), None);

    // Creating it again fails and writes no audit event.
    let mut dup = r.clone();
    dup.question = "another".into();
    assert!(matches!(
        store.create_request(&dup, &created).await,
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(store.get_request("r1").await.unwrap(), Some(r.clone()));
    assert_eq!(
        store.query_audit(&for_request("r1")).await.unwrap().len(),
        1
    );

    // Update with the right version.
    let mut queued = r.clone();
    queued.state = RequestState::Queued;
    queued.queued_at = Some(1_100);
    queued.updated_at = 1_100;
    queued.version = 2;
    let ev2 = event("system", "request.queued", Some("r1"), 1_100);
    let seq2 = store.update_request(&queued, 1, &ev2).await.unwrap();
    assert!(seq2 > seq1);
    assert_eq!(store.get_request("r1").await.unwrap(), Some(queued.clone()));

    // A stale version conflicts and changes nothing.
    let mut stale = r.clone();
    stale.state = RequestState::Cancelled;
    stale.version = 2;
    let ev_stale = event("doc", "request.cancelled", Some("r1"), 1_150);
    assert!(matches!(
        store.update_request(&stale, 1, &ev_stale).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.get_request("r1").await.unwrap(), Some(queued.clone()));

    // Updating a request that does not exist.
    let ghost = request("ghost", "doc", "county", "cardiology", 1_000);
    assert!(matches!(
        store
            .update_request(&ghost, 1, &event("doc", "request.x", Some("ghost"), 1))
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.get_request("ghost").await.unwrap(), None);

    // Every nested and optional field round-trips, and back to None again.
    let mut full = full_request("r1", 1_000);
    full.version = 3;
    let ev3 = event("spec", "request.closed", Some("r1"), 1_200);
    let seq3 = store.update_request(&full, 2, &ev3).await.unwrap();
    assert!(seq3 > seq2);
    assert_eq!(store.get_request("r1").await.unwrap(), Some(full.clone()));
    let mut bare = r.clone();
    bare.version = 4;
    bare.state = RequestState::Queued;
    let ev4 = event("system", "request.requeued", Some("r1"), 1_300);
    let seq4 = store.update_request(&bare, 3, &ev4).await.unwrap();
    assert_eq!(store.get_request("r1").await.unwrap(), Some(bare.clone()));

    // The audit events written with the changes, newest first, and nothing from the failures.
    let events = store.query_audit(&for_request("r1")).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![seq4, seq3, seq2, seq1]);
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        vec![
            "request.requeued",
            "request.closed",
            "request.queued",
            "request.created"
        ]
    );
    for (e, want) in events.iter().zip([&ev4, &ev3, &ev2, &created]) {
        assert_eq!(
            e,
            &AuditEvent {
                seq: e.seq,
                ..(*want).clone()
            }
        );
    }
    assert!(
        store
            .query_audit(&for_request("ghost"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.query_audit(&all_audit()).await.unwrap().len(), 4);

    // Large versions survive.
    let mut big = request("big", "doc", "county", "cardiology", 5);
    big.version = i64::MAX as u64;
    store
        .create_request(&big, &event("doc", "request.created", Some("big"), 5))
        .await
        .unwrap();
    assert_eq!(store.get_request("big").await.unwrap(), Some(big));
}

/// What `filter` must return from `all`.
fn expected(all: &[Request], filter: &RequestFilter) -> Vec<Request> {
    filter.finish(all.iter().filter(|r| filter.matches(r)).cloned().collect())
}

async fn request_filters(store: Arc<dyn Store>) {
    use RequestState::*;
    let mk = |id: &str, who: &str, site: &str, specialty: &str, created, state, assigned| {
        let mut r = request(id, who, site, specialty, created);
        r.state = state;
        if let Some((spec, centre)) = assigned {
            r.specialist = Some(String::from(spec));
            r.centre = Some(String::from(centre));
        }
        r
    };
    let mut all = vec![
        mk("a", "doc1", "county1", "cardiology", 100, Requested, None),
        mk("b", "doc1", "county1", "neurology", 200, Queued, None),
        mk(
            "c",
            "doc2",
            "county2",
            "cardiology",
            300,
            Offered,
            Some(("spec1", "centre1")),
        ),
        mk(
            "d",
            "doc2",
            "county2",
            "cardiology",
            400,
            Accepted,
            Some(("spec1", "centre1")),
        ),
        mk(
            "e",
            "doc1",
            "county1",
            "cardiology",
            500,
            Closed,
            Some(("spec2", "centre2")),
        ),
        mk("f", "doc3", "centre1", "neurology", 600, Queued, None),
        // Same created_at as "f": ties are broken by id, so newest first lists "g" before "f".
        mk(
            "g",
            "doc3",
            "county2",
            "neurology",
            600,
            InConsultation,
            Some(("spec2", "county1")),
        ),
        mk("h", "doc1", "county1", "cardiology", 50, Cancelled, None),
    ];
    for r in &all {
        store
            .create_request(
                r,
                &event(&r.requester, "request.created", Some(&r.id), r.created_at),
            )
            .await
            .unwrap();
    }

    let mut filters = vec![
        RequestFilter::default(),
        RequestFilter {
            requester: Some("doc1".into()),
            ..Default::default()
        },
        RequestFilter {
            requester: Some("nobody".into()),
            ..Default::default()
        },
        RequestFilter {
            specialist: Some("spec1".into()),
            ..Default::default()
        },
        RequestFilter {
            specialist: Some("spec2".into()),
            ..Default::default()
        },
        RequestFilter {
            site: Some("county1".into()),
            ..Default::default()
        },
        RequestFilter {
            site: Some("centre1".into()),
            ..Default::default()
        },
        RequestFilter {
            states: Some(vec![RequestState::Queued]),
            ..Default::default()
        },
        RequestFilter {
            states: Some(vec![RequestState::Queued, RequestState::Offered]),
            ..Default::default()
        },
        RequestFilter {
            states: Some(vec![]),
            ..Default::default()
        },
        RequestFilter {
            specialty: Some("neurology".into()),
            ..Default::default()
        },
        RequestFilter {
            requester: Some("doc1".into()),
            specialty: Some("cardiology".into()),
            states: Some(vec![RequestState::Requested, RequestState::Closed]),
            ..Default::default()
        },
        RequestFilter {
            site: Some("county2".into()),
            specialist: Some("spec2".into()),
            ..Default::default()
        },
        RequestFilter {
            requester: Some("doc1".into()),
            states: Some(vec![]),
            ..Default::default()
        },
    ];
    let with_limits: Vec<RequestFilter> = filters
        .iter()
        .flat_map(|f| [1, 2, 100].map(|limit| RequestFilter { limit, ..f.clone() }))
        .collect();
    filters.extend(with_limits);

    let check = |got: Vec<Request>, all: &[Request], f: &RequestFilter| {
        let want = expected(all, f);
        let ids = |v: &[Request]| v.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&got), ids(&want), "filter {f:?}");
        assert_eq!(got, want, "filter {f:?}");
    };
    for f in &filters {
        check(store.list_requests(f).await.unwrap(), &all, f);
    }

    // Spot checks, so the comparison above is not against a vacuous expectation.
    let ids = |v: Vec<Request>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store
            .list_requests(&RequestFilter::default())
            .await
            .unwrap()),
        ["g", "f", "e", "d", "c", "b", "a", "h"]
    );
    assert_eq!(
        ids(store
            .list_requests(&RequestFilter {
                site: Some("county1".into()),
                ..Default::default()
            })
            .await
            .unwrap()),
        ["g", "e", "b", "a", "h"],
        "requester_site or centre"
    );
    assert_eq!(
        ids(store
            .list_requests(&RequestFilter {
                specialist: Some("spec1".into()),
                limit: 1,
                ..Default::default()
            })
            .await
            .unwrap()),
        ["d"]
    );

    // Changing state, specialist and centre moves the request between the indexes.
    let mut d = all[3].clone();
    assert_eq!(d.id, "d");
    d.state = RequestState::Queued;
    d.specialist = Some("spec3".into());
    d.centre = Some("centre3".into());
    d.specialty = "neurology".into();
    d.version = 2;
    store
        .update_request(&d, 1, &event("system", "request.requeued", Some("d"), 700))
        .await
        .unwrap();
    all[3] = d.clone();
    let mut c = all[2].clone();
    c.specialist = None;
    c.centre = None;
    c.state = RequestState::Queued;
    c.version = 2;
    store
        .update_request(&c, 1, &event("system", "request.requeued", Some("c"), 710))
        .await
        .unwrap();
    all[2] = c;
    filters.push(RequestFilter {
        specialist: Some("spec3".into()),
        ..Default::default()
    });
    filters.push(RequestFilter {
        site: Some("centre3".into()),
        ..Default::default()
    });
    for f in &filters {
        check(store.list_requests(f).await.unwrap(), &all, f);
    }
    assert!(
        store
            .list_requests(&RequestFilter {
                specialist: Some("spec1".into()),
                ..Default::default()
            })
            .await
            .unwrap()
            .is_empty(),
        "spec1 no longer has any request"
    );
    assert_eq!(
        ids(store
            .list_requests(&RequestFilter {
                states: Some(vec![RequestState::Queued]),
                ..Default::default()
            })
            .await
            .unwrap()),
        ["f", "d", "c", "b"]
    );
}

/// Several tasks update the same request with the same expected version at the same moment (like
/// two specialists accepting it together): exactly one wins.
async fn race(stores: &[Arc<dyn Store>], id: &str, contenders: usize) {
    let base = {
        let mut r = request(id, "doc", "county", "cardiology", 1_000);
        r.state = RequestState::Offered;
        r
    };
    let created_seq = stores[0]
        .create_request(&base, &event("doc", "request.created", Some(id), 1_000))
        .await
        .unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(contenders));
    let mut tasks = Vec::new();
    for i in 0..contenders {
        let store = Arc::clone(&stores[i % stores.len()]);
        let barrier = Arc::clone(&barrier);
        let mut mine = base.clone();
        mine.state = RequestState::Accepted;
        mine.specialist = Some(format!("spec{i}"));
        mine.centre = Some("centre".into());
        mine.room = Some(format!("room-{id}-{i}"));
        mine.accepted_at = Some(2_000 + i as Millis);
        mine.version = base.version + 1;
        let ev = event(
            &format!("spec{i}"),
            "request.accepted",
            Some(id),
            2_000 + i as Millis,
        );
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let result = store.update_request(&mine, base.version, &ev).await;
            (mine, result)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (mine, result) = t.await.unwrap();
        match result {
            Ok(seq) => winners.push((mine, seq)),
            Err(StoreError::Conflict) => {}
            Err(e) => panic!("unexpected error from a concurrent update: {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one of {contenders} updates wins");
    let (winner, seq) = winners.pop().unwrap();
    for store in stores {
        assert_eq!(store.get_request(id).await.unwrap().as_ref(), Some(&winner));
    }
    let events = stores[0].query_audit(&for_request(id)).await.unwrap();
    assert_eq!(
        events.len(),
        2,
        "one audit event for the create, one for the win"
    );
    assert_eq!(events[0].seq, seq);
    assert_eq!(Some(&events[0].actor), winner.specialist.as_ref());
    assert_eq!(events[0].action, "request.accepted");
    assert_eq!(events[1].seq, created_seq);
}

async fn concurrent_updates(env: &mut Env) {
    // Two stores on the same data, like two nodes (SQLite: two connections to one file).
    let one = env.open().await;
    let stores = vec![Arc::clone(&one), env.open().await];
    for round in 0..5 {
        race(&stores[..1], &format!("pair-{round}"), 2).await;
        race(&stores, &format!("pair2-{round}"), 2).await;
        race(&stores, &format!("eight-{round}"), 8).await;
    }
    race(&stores, "thirty-two", 32).await;

    // Audit sequence numbers are unique and increasing.
    let events = one.query_audit(&all_audit()).await.unwrap();
    assert_eq!(events.len(), 2 * 16);
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
}

async fn audit_queries(store: Arc<dyn Store>) {
    assert!(store.query_audit(&all_audit()).await.unwrap().is_empty());
    let actors = ["alice", "bob", "system"];
    let actions = [
        "request.created",
        "request.accepted",
        "login.failed",
        "request_x",
        "room.joined",
    ];
    let mut events = Vec::new();
    for i in 0..450u64 {
        let mut e = event(
            actors[(i % 3) as usize],
            actions[(i % 5) as usize],
            match i % 4 {
                0 => None,
                n => Some(["r1", "r2", "r3"][n as usize - 1]),
            },
            // Non-decreasing, with repeats.
            10_000 + (i as Millis / 2) * 10,
        );
        if i % 7 == 0 {
            e.address = None;
        }
        if i == 3 || i == 444 {
            e.actor = "carol".into();
            e.action = "rare.event".into();
        }
        let seq = store.append_audit(&e).await.unwrap();
        assert_eq!(seq, i + 1, "seq counts from 1 without gaps here");
        e.seq = seq;
        events.push(e);
    }
    let newest_first: Vec<AuditEvent> = events.iter().rev().cloned().collect();
    let expect = |q: &AuditQuery| -> Vec<AuditEvent> {
        let limit = if q.limit == 0 {
            1000
        } else {
            q.limit.min(1000)
        };
        newest_first
            .iter()
            .filter(|e| {
                q.actor.as_ref().is_none_or(|a| &e.actor == a)
                    && q.request_id
                        .as_ref()
                        .is_none_or(|r| e.request_id.as_ref() == Some(r))
                    && q.action_prefix
                        .as_ref()
                        .is_none_or(|p| e.action.starts_with(p.as_str()))
                    && q.since.is_none_or(|s| e.at >= s)
                    && q.before_seq.is_none_or(|b| e.seq < b)
            })
            .take(limit)
            .cloned()
            .collect()
    };
    let queries = [
        all_audit(),
        AuditQuery::default(),
        AuditQuery {
            limit: 5,
            ..Default::default()
        },
        AuditQuery {
            actor: Some("bob".into()),
            ..all_audit()
        },
        AuditQuery {
            actor: Some("carol".into()),
            ..all_audit()
        },
        AuditQuery {
            request_id: Some("r2".into()),
            ..all_audit()
        },
        AuditQuery {
            action_prefix: Some("request.".into()),
            ..all_audit()
        },
        AuditQuery {
            action_prefix: Some("request".into()),
            ..all_audit()
        },
        AuditQuery {
            action_prefix: Some("rare.".into()),
            limit: 1000,
            ..Default::default()
        },
        // Not a LIKE pattern: `_` and `%` are literal, and the case matters.
        AuditQuery {
            action_prefix: Some("login_".into()),
            ..all_audit()
        },
        AuditQuery {
            action_prefix: Some("%".into()),
            ..all_audit()
        },
        AuditQuery {
            action_prefix: Some("Request.".into()),
            ..all_audit()
        },
        AuditQuery {
            since: Some(11_000),
            ..all_audit()
        },
        AuditQuery {
            since: Some(99_999),
            ..all_audit()
        },
        AuditQuery {
            before_seq: Some(100),
            ..all_audit()
        },
        AuditQuery {
            before_seq: Some(1),
            ..all_audit()
        },
        AuditQuery {
            before_seq: Some(u64::MAX),
            limit: 3,
            ..Default::default()
        },
        AuditQuery {
            actor: Some("alice".into()),
            request_id: Some("r1".into()),
            action_prefix: Some("request.".into()),
            since: Some(10_500),
            before_seq: Some(400),
            limit: 4,
        },
        AuditQuery {
            actor: Some("system".into()),
            before_seq: Some(300),
            limit: 2,
            ..Default::default()
        },
    ];
    for q in &queries {
        let got = store.query_audit(q).await.unwrap();
        let want = expect(q);
        assert_eq!(
            got.iter().map(|e| e.seq).collect::<Vec<_>>(),
            want.iter().map(|e| e.seq).collect::<Vec<_>>(),
            "query {q:?}"
        );
        assert_eq!(got, want, "query {q:?}");
    }
    // Not vacuous.
    assert_eq!(
        store
            .query_audit(&AuditQuery {
                actor: Some("carol".into()),
                ..all_audit()
            })
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        [445, 4]
    );
    assert!(
        store
            .query_audit(&AuditQuery {
                action_prefix: Some("login_".into()),
                ..all_audit()
            })
            .await
            .unwrap()
            .is_empty()
    );

    // Paging backwards with before_seq visits every event once, newest first.
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .query_audit(&AuditQuery {
                action_prefix: Some("request.".into()),
                before_seq: before,
                limit: 17,
                ..Default::default()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.seq);
        paged.extend(page);
    }
    assert_eq!(
        paged,
        expect(&AuditQuery {
            action_prefix: Some("request.".into()),
            ..all_audit()
        })
    );
}

async fn availability_and_secrets(store: Arc<dyn Store>) {
    assert!(store.list_availability().await.unwrap().is_empty());
    let a = Availability {
        username: "spec-b".into(),
        available: true,
        since: 1_000,
    };
    let b = Availability {
        username: "spec-a".into(),
        available: false,
        since: 2_000,
    };
    store.set_availability(&a).await.unwrap();
    store.set_availability(&b).await.unwrap();
    assert_eq!(
        store.list_availability().await.unwrap(),
        vec![b.clone(), a.clone()]
    );
    let a2 = Availability {
        available: false,
        since: 3_000,
        ..a
    };
    store.set_availability(&a2).await.unwrap();
    assert_eq!(store.list_availability().await.unwrap(), vec![b, a2]);

    // First writer wins, binary-safe.
    let first = [0u8, 255, 10, 13, 0, b'\'', 7];
    assert_eq!(store.secret("token-key", &first).await.unwrap(), first);
    assert_eq!(store.secret("token-key", b"second").await.unwrap(), first);
    assert_eq!(store.secret("other", b"x").await.unwrap(), b"x");

    // Concurrent first writers all end up with the same secret.
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store.secret("raced", &[i; 32]).await.unwrap()
        }));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        seen.insert(t.await.unwrap());
    }
    assert_eq!(seen.len(), 1, "every caller got the same secret");
    let winner = seen.into_iter().next().unwrap();
    assert_eq!(store.secret("raced", b"late").await.unwrap(), winner);
}

async fn line_measurements(store: Arc<dyn Store>) {
    assert!(
        store
            .list_line_measurements("county", 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.latest_line_measurement("county").await.unwrap(), None);
    for n in 0..5 {
        store
            .add_line_measurement(&line("county", n))
            .await
            .unwrap();
    }
    store
        .add_line_measurement(&line("other", 99))
        .await
        .unwrap();
    // Most recently stored first, every field as stored (floats exactly), per site.
    let got = store.list_line_measurements("county", 3).await.unwrap();
    assert_eq!(
        got,
        vec![line("county", 4), line("county", 3), line("county", 2)]
    );
    assert_eq!(
        store.latest_line_measurement("county").await.unwrap(),
        Some(line("county", 4))
    );
    assert_eq!(
        store.list_line_measurements("other", 0).await.unwrap(),
        vec![line("other", 99)]
    );
    assert_eq!(
        store
            .list_line_measurements("county", 0)
            .await
            .unwrap()
            .len(),
        5
    );
    // Storage order decides, not measured_at.
    let mut old = line("county", 5);
    old.measured_at = 1;
    store.add_line_measurement(&old).await.unwrap();
    assert_eq!(
        store.latest_line_measurement("county").await.unwrap(),
        Some(old)
    );
    // Hostile site ids are plain data.
    let nasty = "it's \"x\" ; DROP TABLE line_measurements; -- 中文";
    store.add_line_measurement(&line(nasty, 7)).await.unwrap();
    assert_eq!(
        store.latest_line_measurement(nasty).await.unwrap(),
        Some(line(nasty, 7))
    );

    // Bounded: the newest MAX per site are kept; the oldest are dropped.
    let many = MAX_LINE_MEASUREMENTS_PER_SITE as u32 + 20;
    for n in 0..many {
        store.add_line_measurement(&line("seq", n)).await.unwrap();
    }
    let kept = store.list_line_measurements("seq", 0).await.unwrap();
    assert_eq!(kept.len(), MAX_LINE_MEASUREMENTS_PER_SITE);
    assert_eq!(
        store
            .list_line_measurements("seq", 5000)
            .await
            .unwrap()
            .len(),
        MAX_LINE_MEASUREMENTS_PER_SITE
    );
    assert_eq!(kept[0], line("seq", many - 1));
    assert_eq!(kept.last(), Some(&line("seq", 20)));
    // Other sites are untouched by the trimming.
    assert_eq!(
        store
            .list_line_measurements("county", 0)
            .await
            .unwrap()
            .len(),
        6
    );
}

/// Everything a restart must keep.
#[derive(Debug, PartialEq)]
struct Snapshot {
    sites: Vec<Site>,
    users: Vec<User>,
    requests: Vec<Request>,
    audit: Vec<AuditEvent>,
    availability: Vec<Availability>,
    lines: Vec<LineMeasurement>,
    secret: Vec<u8>,
}

async fn snapshot(store: &dyn Store) -> Snapshot {
    Snapshot {
        sites: store.list_sites().await.unwrap(),
        users: store.list_users().await.unwrap(),
        requests: store
            .list_requests(&RequestFilter::default())
            .await
            .unwrap(),
        audit: store.query_audit(&all_audit()).await.unwrap(),
        availability: store.list_availability().await.unwrap(),
        lines: store.list_line_measurements("county", 0).await.unwrap(),
        secret: store.secret("k", b"after restart").await.unwrap(),
    }
}

async fn restart(env: &mut Env) {
    let store = env.open().await;
    store
        .put_site(&site("county", SiteKind::CountyHospital))
        .await
        .unwrap();
    store
        .put_site(&site("centre", SiteKind::SpecialistCentre))
        .await
        .unwrap();
    store
        .create_user(&user("doc", Role::ReferringDoctor, "county"))
        .await
        .unwrap();
    let mut spec = user("spec", Role::Specialist, "centre");
    spec.token_generation = 9;
    store.create_user(&spec).await.unwrap();
    let full = full_request("full", 5_000);
    store
        .create_request(&full, &event("doc", "request.created", Some("full"), 5_000))
        .await
        .unwrap();
    let plain = request("plain", "doc", "county", "neurology", 6_000);
    store
        .create_request(
            &plain,
            &event("doc", "request.created", Some("plain"), 6_000),
        )
        .await
        .unwrap();
    let mut queued = plain.clone();
    queued.state = RequestState::Queued;
    queued.version = 2;
    store
        .update_request(
            &queued,
            1,
            &event("system", "request.queued", Some("plain"), 6_100),
        )
        .await
        .unwrap();
    store
        .append_audit(&event("op", "user.created", None, 6_200))
        .await
        .unwrap();
    store
        .set_availability(&Availability {
            username: "spec".into(),
            available: true,
            since: 6_300,
        })
        .await
        .unwrap();
    store.secret("k", b"before restart").await.unwrap();
    for n in 0..3 {
        store
            .add_line_measurement(&line("county", n))
            .await
            .unwrap();
    }
    let before = snapshot(store.as_ref()).await;
    assert_eq!(before.lines.len(), 3);
    assert_eq!(before.secret, b"before restart");
    assert_eq!(before.requests.len(), 2);
    assert_eq!(before.audit.len(), 4);
    drop(store);

    env.restart();
    let store = env.open().await;
    let after = snapshot(store.as_ref()).await;
    assert_eq!(after, before);
    assert_eq!(store.get_request("full").await.unwrap(), Some(full.clone()));
    assert_eq!(
        store
            .list_requests(&RequestFilter {
                states: Some(vec![RequestState::Queued]),
                ..Default::default()
            })
            .await
            .unwrap(),
        vec![queued.clone()],
        "indexes survive too"
    );

    // Writing goes on where it stopped: versions are still checked, seqs keep increasing.
    assert!(matches!(
        store
            .update_request(&queued, 1, &event("x", "request.x", Some("plain"), 7_000))
            .await,
        Err(StoreError::Conflict)
    ));
    let mut accepted = queued.clone();
    accepted.state = RequestState::Accepted;
    accepted.version = 3;
    let seq = store
        .update_request(
            &accepted,
            2,
            &event("spec", "request.accepted", Some("plain"), 7_000),
        )
        .await
        .unwrap();
    assert!(seq > before.audit[0].seq);
    assert!(matches!(
        store
            .create_request(&full, &event("doc", "request.created", Some("full"), 1))
            .await,
        Err(StoreError::AlreadyExists)
    ));
    assert!(matches!(
        store
            .create_user(&user("doc", Role::ReferringDoctor, "county"))
            .await,
        Err(StoreError::AlreadyExists)
    ));
}

async fn hostile_input(store: Arc<dyn Store>) {
    let nasty = [
        "it's",
        "\"quoted\"",
        "'; DROP TABLE requests; --",
        "中文 病人",
        "line\nbreak\r\nand\ttab",
        "a:b:c",
        "req:x",
        "{braces} [brackets] ]] --[[ lua",
        "%_*?\\",
        "😀 emoji",
        "",
    ];
    for (i, s) in nasty.iter().enumerate() {
        let id = format!("{s}#{i}");
        let mut st = site(&id, SiteKind::CountyHospital);
        st.name = s.to_string();
        st.region = s.to_string();
        store.put_site(&st).await.unwrap();
        assert_eq!(store.get_site(&id).await.unwrap(), Some(st));

        let mut u = user(&id, Role::Specialist, s);
        u.display_name = s.to_string();
        u.specialties = vec![s.to_string(), "x".into()];
        u.password_hash = s.to_string();
        store.create_user(&u).await.unwrap();
        assert_eq!(store.get_user(&id).await.unwrap(), Some(u.clone()));
        assert!(matches!(
            store.create_user(&u).await,
            Err(StoreError::AlreadyExists)
        ));

        let mut r = full_request(&id, 1_000 + i as Millis);
        r.patient_pseudonym = s.to_string();
        r.question = format!("{s}?");
        r.requester = format!("doc {s}");
        r.requester_site = s.to_string();
        r.specialty = s.to_string();
        r.specialist = Some(s.to_string());
        r.closing_reason = Some(s.to_string());
        if let Some(o) = r.opinion.as_mut() {
            o.findings = s.to_string();
        }
        r.declined_by = vec![s.to_string()];
        let mut ev = event(&format!("actor {s}"), &format!("act.{s}"), Some(&id), 1);
        ev.detail = s.to_string();
        ev.address = Some(s.to_string());
        let seq = store.create_request(&r, &ev).await.unwrap();
        assert_eq!(store.get_request(&id).await.unwrap(), Some(r.clone()));
        let mut r2 = r.clone();
        r2.version += 1;
        r2.question = format!("{s}!!");
        store.update_request(&r2, r.version, &ev).await.unwrap();
        assert!(matches!(
            store.update_request(&r2, r.version, &ev).await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(store.get_request(&id).await.unwrap(), Some(r2.clone()));

        for f in [
            RequestFilter {
                requester: Some(format!("doc {s}")),
                ..Default::default()
            },
            RequestFilter {
                specialist: Some(s.to_string()),
                ..Default::default()
            },
            RequestFilter {
                specialty: Some(s.to_string()),
                ..Default::default()
            },
            RequestFilter {
                site: Some(s.to_string()),
                ..Default::default()
            },
        ] {
            assert_eq!(
                store.list_requests(&f).await.unwrap(),
                vec![r2.clone()],
                "{f:?}"
            );
        }

        let got = store
            .query_audit(&AuditQuery {
                actor: Some(format!("actor {s}")),
                request_id: Some(id.clone()),
                action_prefix: Some(format!("act.{s}")),
                ..all_audit()
            })
            .await
            .unwrap();
        assert_eq!(got.len(), 2, "{s:?}");
        assert_eq!(got[1], AuditEvent { seq, ..ev.clone() });

        assert_eq!(
            store
                .secret(&format!("secret {s}"), s.as_bytes())
                .await
                .unwrap(),
            s.as_bytes()
        );
        let av = Availability {
            username: id.clone(),
            available: true,
            since: i as Millis,
        };
        store.set_availability(&av).await.unwrap();
        assert!(store.list_availability().await.unwrap().contains(&av));
    }
    assert_eq!(store.list_sites().await.unwrap().len(), nasty.len());
    assert_eq!(store.list_users().await.unwrap().len(), nasty.len());
    assert_eq!(
        store
            .list_requests(&RequestFilter::default())
            .await
            .unwrap()
            .len(),
        nasty.len()
    );

    // Chinese action prefixes compare by characters, not bytes.
    store
        .append_audit(&event("spec", "会诊.接受", None, 1))
        .await
        .unwrap();
    let got = store
        .query_audit(&AuditQuery {
            action_prefix: Some("会诊.".into()),
            ..all_audit()
        })
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].action, "会诊.接受");
    assert!(
        store
            .query_audit(&AuditQuery {
                action_prefix: Some("会".repeat(3)),
                ..all_audit()
            })
            .await
            .unwrap()
            .is_empty()
    );
}

// ------------------------------------------------------------------------------------------------
// Backend-specific checks
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn sqlite_open_fails_cleanly_on_a_bad_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let err = SqliteStore::open(&file.join("telemed.sqlite3"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    let garbage = dir.path().join("garbage.sqlite3");
    std::fs::write(&garbage, vec![0x55u8; 8192]).unwrap();
    let err = SqliteStore::open(&garbage).await.unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
}

#[tokio::test]
async fn sqlite_open_via_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = signaling::store::StorageConfig {
        data_dir: dir.path().join("new-dir").to_string_lossy().into_owned(),
        ..Default::default()
    };
    let store = signaling::store::open(&config).await.unwrap();
    store
        .put_site(&site("county", SiteKind::CountyHospital))
        .await
        .unwrap();
    assert!(dir.path().join("new-dir/telemed.sqlite3").is_file());
}

#[tokio::test]
async fn redis_connect_fails_cleanly() {
    let port = free_port();
    let err = RedisStore::connect(&format!("redis://127.0.0.1:{port}/0"), "x:")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    let err = RedisStore::connect("not a url", "x:").await.unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_key_schema_and_prefixes() {
    let server = RedisServer::start();
    let a = RedisStore::connect(&server.url(), "dept-a:").await.unwrap();
    let b = RedisStore::connect(&server.url(), "dept-b:").await.unwrap();
    a.put_site(&site("county", SiteKind::CountyHospital))
        .await
        .unwrap();
    a.create_user(&user("doc", Role::ReferringDoctor, "county"))
        .await
        .unwrap();
    let mut r = request("r1", "doc", "county", "cardiology", 1_000);
    r.state = RequestState::Queued;
    a.create_request(&r, &event("doc", "request.created", Some("r1"), 1_000))
        .await
        .unwrap();
    a.set_availability(&Availability {
        username: "spec".into(),
        available: true,
        since: 1,
    })
    .await
    .unwrap();
    a.secret("s", b"v").await.unwrap();
    a.add_line_measurement(&line("county", 1)).await.unwrap();

    // The other prefix sees nothing and can hold the same ids.
    assert!(b.list_sites().await.unwrap().is_empty());
    assert!(b.get_request("r1").await.unwrap().is_none());
    assert!(b.query_audit(&all_audit()).await.unwrap().is_empty());
    assert_eq!(
        b.create_request(&r, &event("doc", "request.created", Some("r1"), 1))
            .await
            .unwrap(),
        1
    );

    let mut raw = server.raw();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut raw).unwrap();
    assert!(
        keys.iter()
            .all(|k| k.starts_with("dept-a:") || k.starts_with("dept-b:")),
        "{keys:?}"
    );
    let type_of = |raw: &mut redis::Connection, key: &str| -> String {
        redis::cmd("TYPE").arg(key).query(raw).unwrap()
    };
    for (key, ty) in [
        ("dept-a:site:county", "hash"),
        ("dept-a:sites", "set"),
        ("dept-a:user:doc", "hash"),
        ("dept-a:users", "set"),
        ("dept-a:req:r1", "hash"),
        ("dept-a:reqs:all", "zset"),
        ("dept-a:reqs:by-requester:doc", "set"),
        ("dept-a:reqs:by-state:queued", "set"),
        ("dept-a:reqs:by-specialty:cardiology", "set"),
        ("dept-a:reqs:by-site:county", "set"),
        ("dept-a:availability", "hash"),
        ("dept-a:audit:next", "string"),
        ("dept-a:audit:ev:1", "hash"),
        ("dept-a:audit:all", "zset"),
        ("dept-a:audit:by-actor:doc", "zset"),
        ("dept-a:audit:by-request:r1", "zset"),
        ("dept-a:secret:s", "string"),
        ("dept-a:line:county", "list"),
    ] {
        assert_eq!(type_of(&mut raw, key), ty, "{key}");
    }
    let state: String = redis::cmd("HGET")
        .arg("dept-a:req:r1")
        .arg("state")
        .query(&mut raw)
        .unwrap();
    assert_eq!(state, "queued");

    // A state change moves the request between the state sets.
    let mut accepted = r.clone();
    accepted.state = RequestState::Accepted;
    accepted.specialist = Some("spec".into());
    accepted.version = 2;
    a.update_request(
        &accepted,
        1,
        &event("spec", "request.accepted", Some("r1"), 2),
    )
    .await
    .unwrap();
    let member = |raw: &mut redis::Connection, key: &str| -> bool {
        redis::cmd("SISMEMBER")
            .arg(key)
            .arg("r1")
            .query(raw)
            .unwrap()
    };
    assert!(!member(&mut raw, "dept-a:reqs:by-state:queued"));
    assert!(member(&mut raw, "dept-a:reqs:by-state:accepted"));
    assert!(member(&mut raw, "dept-a:reqs:by-specialist:spec"));
    assert!(
        member(&mut raw, "dept-b:reqs:by-state:queued"),
        "the other prefix is untouched"
    );
}

#[tokio::test]
async fn redis_corrupt_data_is_reported() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url(), "p:").await.unwrap();
    let mut r = request("r1", "doc", "county", "cardiology", 1);
    r.opinion = None;
    store
        .create_request(&r, &event("doc", "request.created", Some("r1"), 1))
        .await
        .unwrap();
    let mut raw = server.raw();
    let _: () = redis::cmd("HSET")
        .arg("p:req:r1")
        .arg("state")
        .arg("bogus")
        .query(&mut raw)
        .unwrap();
    assert!(matches!(
        store.get_request("r1").await,
        Err(StoreError::Corrupt(_))
    ));
    let _: () = redis::cmd("HSET")
        .arg("p:req:r1")
        .arg("state")
        .arg("queued")
        .arg("consent")
        .arg("{not json")
        .query(&mut raw)
        .unwrap();
    assert!(matches!(
        store.get_request("r1").await,
        Err(StoreError::Corrupt(_))
    ));
    let _: () = redis::cmd("HDEL")
        .arg("p:req:r1")
        .arg("version")
        .query(&mut raw)
        .unwrap();
    assert!(matches!(
        store.list_requests(&RequestFilter::default()).await,
        Err(StoreError::Corrupt(_))
    ));
    let _: () = redis::cmd("HSET")
        .arg("p:availability")
        .arg("spec")
        .arg("maybe")
        .query(&mut raw)
        .unwrap();
    assert!(matches!(
        store.list_availability().await,
        Err(StoreError::Corrupt(_))
    ));
}
