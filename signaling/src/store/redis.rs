//! The Redis store, for several nodes sharing one Redis server (a single primary, optionally with
//! replicas; not Redis Cluster, see below).
//!
//! # Key schema
//!
//! Every key starts with the configured prefix `P` (e.g. `telemed:`).
//!
//! | key | type | content |
//! |---|---|---|
//! | `P site:{id}` | HASH | `id`, `name`, `kind` (wire name), `region`, `line_capacity_kbps` |
//! | `P sites` | SET | every site id |
//! | `P user:{username}` | HASH | `username`, `display_name`, `role` (wire name), `site_id`, `specialties` (JSON array), `password_hash`, `disabled` (`0`/`1`), `token_generation` |
//! | `P users` | SET | every user name |
//! | `P req:{id}` | HASH | one field per scalar field of [`Request`] (`state`, `urgency` as wire names, times as decimal Unix ms, `returned_to_queue` `0`/`1`, `version` decimal); a `None` option has no field; `consent`, `declined_by`, `referrals` and (if any) `opinion` as JSON |
//! | `P reqs:all` | ZSET | request ids, score `created_at` |
//! | `P reqs:by-requester:{user}` | SET | ids of requests by this referring doctor |
//! | `P reqs:by-specialist:{user}` | SET | ids of requests whose current `specialist` is this user |
//! | `P reqs:by-state:{state}` | SET | ids of requests in this state |
//! | `P reqs:by-specialty:{specialty}` | SET | ids of requests for this specialty |
//! | `P reqs:by-site:{site}` | SET | ids of requests whose `requester_site` or `centre` is this site |
//! | `P availability` | HASH | user name → `1:{since}` (available) or `0:{since}` |
//! | `P audit:next` | STRING | the last audit sequence number handed out (`INCR`, so seq starts at 1) |
//! | `P audit:ev:{seq}` | HASH | `seq`, `at`, `actor`, `action`, `detail`, and `request_id`, `address` when set |
//! | `P audit:all` | ZSET | every audit seq, score seq |
//! | `P audit:by-actor:{actor}` | ZSET | seqs of this actor's events, score seq |
//! | `P audit:by-request:{id}` | ZSET | seqs of events about this request, score seq |
//! | `P secret:{name}` | STRING | the secret's bytes (`SET NX`: first writer wins) |
//! | `P line:{site}` | LIST | the site's line measurements as JSON objects (the API's `LineMeasurement`), most recently stored first; at most 1000 (`LPUSH` then `LTRIM 0 999`) |
//!
//! # Atomicity
//!
//! Every write that touches more than one key is atomic. The conditional ones run as Lua scripts
//! (`EVALSHA`, loaded on first use), which Redis executes atomically: no other command runs in
//! between, so a script is a compare-and-swap with no window for another client. This stands in
//! for `WATCH`/`MULTI`/`EXEC`, which would need a dedicated (non-multiplexed) connection per
//! transaction, whereas scripts run on the shared, multiplexed [`ConnectionManager`]:
//!
//! - [`Store::create_request`]: if `req:{id}` exists return "exists" (→ `AlreadyExists`); else write
//!   the hash, add the id to its indexes, and append the audit event.
//! - [`Store::update_request`]: if `req:{id}` is missing → `NotFound`; if its `version` field is not
//!   the expected version → `Conflict`; else remove the id from the indexes of the old values,
//!   replace the hash, add the id to the indexes of the new values, and append the audit event.
//!   The audit sequence number is taken (`INCR P audit:next`) inside the same script, so a
//!   conflicting update uses no number and sequence numbers follow commit order.
//! - [`Store::create_user`] / [`Store::update_user`]: existence check and hash write in one script.
//! - [`Store::append_audit`]: `INCR`, the event hash and its index entries in one script.
//! - [`Store::put_site`] (unconditional): `MULTI` / `DEL` / `HSET` / `SADD` / `EXEC`.
//! - [`Store::add_line_measurement`] (unconditional): `MULTI` / `LPUSH` / `LTRIM` / `EXEC`, so the
//!   list never holds more than the bound.
//!
//! Single-key writes are plain commands: [`Store::set_availability`] is one `HSET`, and
//! [`Store::secret`] is `SET NX` followed by `GET`, so the first writer's value is the one every
//! caller gets.
//!
//! Replies time out after 10 s (reported as `Backend`); a write whose reply timed out may still
//! have been applied, so callers re-read before retrying.
//!
//! The scripts build index and audit key names from the prefix inside the script (the audit key
//! depends on the sequence number it takes), so they do not declare every key they touch, which
//! Redis Cluster requires. A script that fails halfway (only possible if a key was overwritten
//! with a value of the wrong type by something else) is not rolled back.
//!
//! Reads (`get_*`, `list_*`, `query_audit`) are not transactional across keys: a list reads the
//! index, then the hashes, and re-checks every filter condition on the hashes it got, so a request
//! that changed in between is never returned for a condition it no longer meets.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script, Value};

use super::codec::{audit_limit, audit_matches, enum_name, from_json, parse_enum, to_json};
use super::{
    Availability, MAX_LINE_MEASUREMENTS_PER_SITE, RequestFilter, Store, StoreError, line_limit,
};
use crate::domain::line::LineMeasurement;
use crate::domain::{AuditEvent, AuditQuery, Request, RequestState, Site, User};

/// Lua shared by the request and audit scripts. `ARGV[1]` is always the key prefix.
const LUA_COMMON: &str = r#"
local p = ARGV[1]

-- Add (op = 'SADD') or remove (op = 'SREM') request `id` in the index sets of the values
-- currently stored in its hash `key`.
local function index_request(op, key, id)
  local f = redis.call('HMGET', key, 'requester', 'specialist', 'state', 'specialty',
    'requester_site', 'centre')
  if f[1] then redis.call(op, p .. 'reqs:by-requester:' .. f[1], id) end
  if f[2] then redis.call(op, p .. 'reqs:by-specialist:' .. f[2], id) end
  if f[3] then redis.call(op, p .. 'reqs:by-state:' .. f[3], id) end
  if f[4] then redis.call(op, p .. 'reqs:by-specialty:' .. f[4], id) end
  if f[5] then redis.call(op, p .. 'reqs:by-site:' .. f[5], id) end
  if f[6] then redis.call(op, p .. 'reqs:by-site:' .. f[6], id) end
end

-- Store the audit event whose field/value pairs are ARGV[first .. #ARGV]; returns its seq.
local function append_audit(first)
  local seq = redis.call('INCR', p .. 'audit:next')
  local key = p .. 'audit:ev:' .. seq
  redis.call('HSET', key, 'seq', seq, unpack(ARGV, first, #ARGV))
  redis.call('ZADD', p .. 'audit:all', seq, seq)
  local actor = redis.call('HGET', key, 'actor')
  if actor then redis.call('ZADD', p .. 'audit:by-actor:' .. actor, seq, seq) end
  local rid = redis.call('HGET', key, 'request_id')
  if rid then redis.call('ZADD', p .. 'audit:by-request:' .. rid, seq, seq) end
  return seq
end
"#;

/// ARGV: prefix, id, (unused), n, n request field/value args, audit field/value pairs.
/// Returns -1 if the request exists, else the audit seq.
const LUA_CREATE_REQUEST: &str = r#"
local id = ARGV[2]
local key = p .. 'req:' .. id
if redis.call('EXISTS', key) == 1 then return -1 end
local n = tonumber(ARGV[4])
redis.call('HSET', key, unpack(ARGV, 5, 4 + n))
index_request('SADD', key, id)
redis.call('ZADD', p .. 'reqs:all', redis.call('HGET', key, 'created_at'), id)
return append_audit(5 + n)
"#;

/// ARGV: prefix, id, expected version, n, n request field/value args, audit field/value pairs.
/// Returns -1 if there is no such request, -2 if its version differs, else the audit seq.
const LUA_UPDATE_REQUEST: &str = r#"
local id = ARGV[2]
local key = p .. 'req:' .. id
if redis.call('EXISTS', key) == 0 then return -1 end
if redis.call('HGET', key, 'version') ~= ARGV[3] then return -2 end
local n = tonumber(ARGV[4])
index_request('SREM', key, id)
redis.call('DEL', key)
redis.call('HSET', key, unpack(ARGV, 5, 4 + n))
index_request('SADD', key, id)
redis.call('ZADD', p .. 'reqs:all', redis.call('HGET', key, 'created_at'), id)
return append_audit(5 + n)
"#;

/// ARGV: prefix, audit field/value pairs. Returns the seq.
const LUA_APPEND_AUDIT: &str = "return append_audit(2)\n";

/// ARGV: prefix, username, user field/value pairs. Returns 0 if the user exists, else 1.
const LUA_CREATE_USER: &str = r#"
local key = p .. 'user:' .. ARGV[2]
if redis.call('EXISTS', key) == 1 then return 0 end
redis.call('HSET', key, unpack(ARGV, 3, #ARGV))
redis.call('SADD', p .. 'users', ARGV[2])
return 1
"#;

/// ARGV: prefix, username, user field/value pairs. Returns 0 if there is no such user, else 1.
const LUA_UPDATE_USER: &str = r#"
local key = p .. 'user:' .. ARGV[2]
if redis.call('EXISTS', key) == 0 then return 0 end
redis.call('DEL', key)
redis.call('HSET', key, unpack(ARGV, 3, #ARGV))
redis.call('SADD', p .. 'users', ARGV[2])
return 1
"#;

/// How many audit ids [`Store::query_audit`] reads from an index per round trip.
const AUDIT_BATCH: usize = 200;

struct Scripts {
    create_request: Script,
    update_request: Script,
    append_audit: Script,
    create_user: Script,
    update_user: Script,
}

impl Scripts {
    fn new() -> Scripts {
        let with_common = |body: &str| Script::new(&format!("{LUA_COMMON}\n{body}"));
        Scripts {
            create_request: with_common(LUA_CREATE_REQUEST),
            update_request: with_common(LUA_UPDATE_REQUEST),
            append_audit: with_common(LUA_APPEND_AUDIT),
            create_user: with_common(LUA_CREATE_USER),
            update_user: with_common(LUA_UPDATE_USER),
        }
    }
}

/// The Redis store. Cheap to share: one multiplexed, automatically reconnecting connection.
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    scripts: Scripts,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn backend(e: RedisError) -> StoreError {
    StoreError::Backend(format!("redis: {e}"))
}

/// A hash as field → value; `Corrupt` if it is not one (or not UTF-8).
fn decode_hash(what: &str, v: Value) -> Result<HashMap<String, String>, StoreError> {
    redis::from_redis_value(v).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Field accessors with `Corrupt` errors naming the record.
struct Fields<'a> {
    what: String,
    h: &'a HashMap<String, String>,
}

impl<'a> Fields<'a> {
    fn str(&self, name: &str) -> Result<&'a str, StoreError> {
        self.h
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| StoreError::Corrupt(format!("{}: field {name} missing", self.what)))
    }

    fn string(&self, name: &str) -> Result<String, StoreError> {
        self.str(name).map(str::to_owned)
    }

    fn opt_string(&self, name: &str) -> Option<String> {
        self.h.get(name).cloned()
    }

    fn num<T: std::str::FromStr>(&self, name: &str) -> Result<T, StoreError> {
        let s = self.str(name)?;
        s.parse()
            .map_err(|_| StoreError::Corrupt(format!("{}: field {name} = {s:?}", self.what)))
    }

    fn opt_num<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, StoreError> {
        if self.h.contains_key(name) {
            self.num(name).map(Some)
        } else {
            Ok(None)
        }
    }

    fn flag(&self, name: &str) -> Result<bool, StoreError> {
        match self.str(name)? {
            "1" => Ok(true),
            "0" => Ok(false),
            s => Err(StoreError::Corrupt(format!(
                "{}: field {name} = {s:?}",
                self.what
            ))),
        }
    }

    fn json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, StoreError> {
        from_json(&format!("{} field {name}", self.what), self.str(name)?)
    }
}

fn flag(b: bool) -> String {
    if b { "1" } else { "0" }.to_owned()
}

/// Field/value pairs; `None` options are left out.
#[derive(Default)]
struct Pairs(Vec<String>);

impl Pairs {
    fn put(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.0.push(name.to_owned());
        self.0.push(value.into());
        self
    }

    fn opt(&mut self, name: &str, value: Option<impl Into<String>>) -> &mut Self {
        if let Some(v) = value {
            self.put(name, v);
        }
        self
    }
}

fn site_pairs(s: &Site) -> Result<Pairs, StoreError> {
    let mut p = Pairs::default();
    p.put("id", s.id.as_str())
        .put("name", s.name.as_str())
        .put("kind", enum_name(&s.kind)?)
        .put("region", s.region.as_str())
        .put("line_capacity_kbps", s.line_capacity_kbps.to_string());
    Ok(p)
}

fn site_from_hash(h: &HashMap<String, String>) -> Result<Site, StoreError> {
    let f = Fields {
        what: format!("site {:?}", h.get("id")),
        h,
    };
    Ok(Site {
        id: f.string("id")?,
        name: f.string("name")?,
        kind: parse_enum("site kind", f.str("kind")?)?,
        region: f.string("region")?,
        line_capacity_kbps: f.num("line_capacity_kbps")?,
    })
}

fn user_pairs(u: &User) -> Result<Pairs, StoreError> {
    let mut p = Pairs::default();
    p.put("username", u.username.as_str())
        .put("display_name", u.display_name.as_str())
        .put("role", enum_name(&u.role)?)
        .put("site_id", u.site_id.as_str())
        .put("specialties", to_json(&u.specialties)?)
        .put("password_hash", u.password_hash.as_str())
        .put("disabled", flag(u.disabled))
        .put("token_generation", u.token_generation.to_string());
    Ok(p)
}

fn user_from_hash(h: &HashMap<String, String>) -> Result<User, StoreError> {
    let f = Fields {
        what: format!("user {:?}", h.get("username")),
        h,
    };
    Ok(User {
        username: f.string("username")?,
        display_name: f.string("display_name")?,
        role: parse_enum("user role", f.str("role")?)?,
        site_id: f.string("site_id")?,
        specialties: f.json("specialties")?,
        password_hash: f.string("password_hash")?,
        disabled: f.flag("disabled")?,
        token_generation: f.num("token_generation")?,
    })
}

fn request_pairs(r: &Request) -> Result<Pairs, StoreError> {
    let mut p = Pairs::default();
    p.put("id", r.id.as_str())
        .put("patient_pseudonym", r.patient_pseudonym.as_str())
        .put("specialty", r.specialty.as_str())
        .put("urgency", r.urgency.as_str())
        .put("question", r.question.as_str())
        .opt("preferred_centre", r.preferred_centre.as_deref())
        .put("consent", to_json(&r.consent)?)
        .put("requester", r.requester.as_str())
        .put("requester_site", r.requester_site.as_str())
        .put("state", r.state.as_str())
        .put("created_at", r.created_at.to_string())
        .opt("queued_at", r.queued_at.map(|t| t.to_string()))
        .put("returned_to_queue", flag(r.returned_to_queue))
        .opt("specialist", r.specialist.as_deref())
        .opt("centre", r.centre.as_deref())
        .opt("offered_at", r.offered_at.map(|t| t.to_string()))
        .put("declined_by", to_json(&r.declined_by)?)
        .opt("accepted_at", r.accepted_at.map(|t| t.to_string()))
        .opt("room", r.room.as_deref())
        .opt("opinion", r.opinion.as_ref().map(to_json).transpose()?)
        .opt("acknowledged_at", r.acknowledged_at.map(|t| t.to_string()))
        .put("referrals", to_json(&r.referrals)?)
        .opt("closing_reason", r.closing_reason.as_deref())
        .put("updated_at", r.updated_at.to_string())
        .put("version", r.version.to_string());
    Ok(p)
}

fn request_from_hash(h: &HashMap<String, String>) -> Result<Request, StoreError> {
    let f = Fields {
        what: format!("request {:?}", h.get("id")),
        h,
    };
    let state = f.str("state")?;
    Ok(Request {
        id: f.string("id")?,
        patient_pseudonym: f.string("patient_pseudonym")?,
        specialty: f.string("specialty")?,
        urgency: parse_enum("request urgency", f.str("urgency")?)?,
        question: f.string("question")?,
        preferred_centre: f.opt_string("preferred_centre"),
        consent: f.json("consent")?,
        requester: f.string("requester")?,
        requester_site: f.string("requester_site")?,
        state: RequestState::parse(state)
            .ok_or_else(|| StoreError::Corrupt(format!("{}: state {state:?}", f.what)))?,
        created_at: f.num("created_at")?,
        queued_at: f.opt_num("queued_at")?,
        returned_to_queue: f.flag("returned_to_queue")?,
        specialist: f.opt_string("specialist"),
        centre: f.opt_string("centre"),
        offered_at: f.opt_num("offered_at")?,
        declined_by: f.json("declined_by")?,
        accepted_at: f.opt_num("accepted_at")?,
        room: f.opt_string("room"),
        opinion: if h.contains_key("opinion") {
            Some(f.json("opinion")?)
        } else {
            None
        },
        acknowledged_at: f.opt_num("acknowledged_at")?,
        referrals: f.json("referrals")?,
        closing_reason: f.opt_string("closing_reason"),
        updated_at: f.num("updated_at")?,
        version: f.num("version")?,
    })
}

fn audit_pairs(e: &AuditEvent) -> Pairs {
    let mut p = Pairs::default();
    p.put("at", e.at.to_string())
        .put("actor", e.actor.as_str())
        .put("action", e.action.as_str())
        .opt("request_id", e.request_id.as_deref())
        .opt("address", e.address.as_deref())
        .put("detail", e.detail.as_str());
    p
}

fn audit_from_hash(h: &HashMap<String, String>) -> Result<AuditEvent, StoreError> {
    let f = Fields {
        what: format!("audit event {:?}", h.get("seq")),
        h,
    };
    Ok(AuditEvent {
        seq: f.num("seq")?,
        at: f.num("at")?,
        actor: f.string("actor")?,
        action: f.string("action")?,
        request_id: f.opt_string("request_id"),
        address: f.opt_string("address"),
        detail: f.string("detail")?,
    })
}

/// The result of a write script: a sequence number, or one of the negative codes it documents.
fn script_seq(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v)
        .ok()
        .filter(|&s| s > 0)
        .ok_or_else(|| StoreError::Backend(format!("unexpected script result {v}")))
}

impl RedisStore {
    /// Connect to the Redis server at `url` (e.g. `redis://127.0.0.1:6379/0`); every key starts
    /// with `prefix`. Fails with `Backend` if the server does not answer.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Backend(format!("redis URL {url:?}: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(3);
        let mut conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| StoreError::Backend(format!("connecting to redis at {url}: {e}")))?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| StoreError::Backend(format!("redis at {url} does not answer: {e}")))?;
        Ok(RedisStore {
            conn,
            prefix: prefix.to_owned(),
            scripts: Scripts::new(),
        })
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut k = self.prefix.clone();
        for p in parts {
            k.push_str(p);
        }
        k
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// HGETALL of each key in one pipeline; empty hashes (missing keys) come back as `None`.
    async fn hashes(
        &self,
        what: &str,
        keys: &[String],
    ) -> Result<Vec<Option<HashMap<String, String>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.cmd("HGETALL").arg(k);
        }
        let values: Vec<Value> = pipe.query_async(&mut self.conn()).await.map_err(backend)?;
        values
            .into_iter()
            .map(|v| {
                let h = decode_hash(what, v)?;
                Ok((!h.is_empty()).then_some(h))
            })
            .collect()
    }

    async fn hash(
        &self,
        what: &str,
        key: String,
    ) -> Result<Option<HashMap<String, String>>, StoreError> {
        let v: Value = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        let h = decode_hash(what, v)?;
        Ok((!h.is_empty()).then_some(h))
    }

    /// The members of a set, sorted.
    async fn members(&self, key: String) -> Result<Vec<String>, StoreError> {
        let v: Value = redis::cmd("SMEMBERS")
            .arg(&key)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        let set: BTreeSet<String> = redis::from_redis_value(v)
            .map_err(|e| StoreError::Corrupt(format!("set {key}: {e}")))?;
        Ok(set.into_iter().collect())
    }

    /// Run a write script with the prefix as `ARGV[1]` followed by `args`.
    async fn run_script(&self, script: &Script, args: &[String]) -> Result<i64, StoreError> {
        let mut inv = script.prepare_invoke();
        inv.arg(&self.prefix);
        for a in args {
            inv.arg(a);
        }
        inv.invoke_async(&mut self.conn()).await.map_err(backend)
    }

    /// The script arguments after the prefix for a request write.
    fn request_args(
        req: &Request,
        expected_version: Option<u64>,
        audit: &AuditEvent,
    ) -> Result<Vec<String>, StoreError> {
        let fields = request_pairs(req)?.0;
        let mut args = vec![
            req.id.clone(),
            expected_version.map_or_else(String::new, |v| v.to_string()),
            fields.len().to_string(),
        ];
        args.extend(fields);
        args.extend(audit_pairs(audit).0);
        Ok(args)
    }

    /// Candidate request ids for `filter` from the indexes (a superset of the matches).
    async fn request_candidates(&self, filter: &RequestFilter) -> Result<Vec<String>, StoreError> {
        let mut sets: Vec<String> = Vec::new();
        if let Some(u) = &filter.requester {
            sets.push(self.key(&["reqs:by-requester:", u]));
        }
        if let Some(u) = &filter.specialist {
            sets.push(self.key(&["reqs:by-specialist:", u]));
        }
        if let Some(s) = &filter.site {
            sets.push(self.key(&["reqs:by-site:", s]));
        }
        if let Some(s) = &filter.specialty {
            sets.push(self.key(&["reqs:by-specialty:", s]));
        }
        let states = filter.states.as_deref();
        let (cmd, keys) = match (sets.is_empty(), states) {
            (_, Some([])) => return Ok(Vec::new()),
            // Intersect the other conditions' sets; the states are checked on the hashes.
            (false, _) => ("SINTER", sets),
            (true, Some(states)) => (
                "SUNION",
                states
                    .iter()
                    .map(|s| self.key(&["reqs:by-state:", s.as_str()]))
                    .collect(),
            ),
            (true, None) => {
                let stop: isize = if filter.limit == 0 {
                    -1
                } else {
                    isize::try_from(filter.limit).map_or(-1, |l| l - 1)
                };
                let v: Value = redis::cmd("ZREVRANGE")
                    .arg(self.key(&["reqs:all"]))
                    .arg(0)
                    .arg(stop)
                    .query_async(&mut self.conn())
                    .await
                    .map_err(backend)?;
                return redis::from_redis_value(v)
                    .map_err(|e| StoreError::Corrupt(format!("request index: {e}")));
            }
        };
        let v: Value = redis::cmd(cmd)
            .arg(&keys)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        redis::from_redis_value(v).map_err(|e| StoreError::Corrupt(format!("request index: {e}")))
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn put_site(&self, site: &Site) -> Result<(), StoreError> {
        let key = self.key(&["site:", &site.id]);
        let fields = site_pairs(site)?.0;
        redis::pipe()
            .atomic()
            .cmd("DEL")
            .arg(&key)
            .ignore()
            .cmd("HSET")
            .arg(&key)
            .arg(&fields)
            .ignore()
            .cmd("SADD")
            .arg(self.key(&["sites"]))
            .arg(&site.id)
            .ignore()
            .exec_async(&mut self.conn())
            .await
            .map_err(backend)
    }

    async fn get_site(&self, id: &str) -> Result<Option<Site>, StoreError> {
        self.hash("site", self.key(&["site:", id]))
            .await?
            .map(|h| site_from_hash(&h))
            .transpose()
    }

    async fn list_sites(&self) -> Result<Vec<Site>, StoreError> {
        let ids = self.members(self.key(&["sites"])).await?;
        let keys: Vec<String> = ids.iter().map(|id| self.key(&["site:", id])).collect();
        let hashes = self.hashes("site", &keys).await?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, h) in ids.iter().zip(hashes) {
            let h =
                h.ok_or_else(|| StoreError::Corrupt(format!("site {id:?} listed but missing")))?;
            out.push(site_from_hash(&h)?);
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn create_user(&self, user: &User) -> Result<(), StoreError> {
        let mut args = vec![user.username.clone()];
        args.extend(user_pairs(user)?.0);
        match self.run_script(&self.scripts.create_user, &args).await? {
            1 => Ok(()),
            _ => Err(StoreError::AlreadyExists),
        }
    }

    async fn update_user(&self, user: &User) -> Result<(), StoreError> {
        let mut args = vec![user.username.clone()];
        args.extend(user_pairs(user)?.0);
        match self.run_script(&self.scripts.update_user, &args).await? {
            1 => Ok(()),
            _ => Err(StoreError::NotFound),
        }
    }

    async fn get_user(&self, username: &str) -> Result<Option<User>, StoreError> {
        self.hash("user", self.key(&["user:", username]))
            .await?
            .map(|h| user_from_hash(&h))
            .transpose()
    }

    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let names = self.members(self.key(&["users"])).await?;
        let keys: Vec<String> = names.iter().map(|n| self.key(&["user:", n])).collect();
        let hashes = self.hashes("user", &keys).await?;
        let mut out = Vec::with_capacity(names.len());
        for (name, h) in names.iter().zip(hashes) {
            let h =
                h.ok_or_else(|| StoreError::Corrupt(format!("user {name:?} listed but missing")))?;
            out.push(user_from_hash(&h)?);
        }
        out.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(out)
    }

    async fn create_request(&self, req: &Request, audit: &AuditEvent) -> Result<u64, StoreError> {
        let args = Self::request_args(req, None, audit)?;
        match self.run_script(&self.scripts.create_request, &args).await? {
            -1 => Err(StoreError::AlreadyExists),
            seq => script_seq(seq),
        }
    }

    async fn update_request(
        &self,
        req: &Request,
        expected_version: u64,
        audit: &AuditEvent,
    ) -> Result<u64, StoreError> {
        let args = Self::request_args(req, Some(expected_version), audit)?;
        match self.run_script(&self.scripts.update_request, &args).await? {
            -1 => Err(StoreError::NotFound),
            -2 => Err(StoreError::Conflict),
            seq => script_seq(seq),
        }
    }

    async fn get_request(&self, id: &str) -> Result<Option<Request>, StoreError> {
        self.hash("request", self.key(&["req:", id]))
            .await?
            .map(|h| request_from_hash(&h))
            .transpose()
    }

    async fn list_requests(&self, filter: &RequestFilter) -> Result<Vec<Request>, StoreError> {
        let ids = self.request_candidates(filter).await?;
        let keys: Vec<String> = ids.iter().map(|id| self.key(&["req:", id])).collect();
        let mut out = Vec::new();
        for h in self.hashes("request", &keys).await?.into_iter().flatten() {
            let r = request_from_hash(&h)?;
            if filter.matches(&r) {
                out.push(r);
            }
        }
        Ok(filter.finish(out))
    }

    async fn set_availability(&self, a: &Availability) -> Result<(), StoreError> {
        let value = format!("{}:{}", u8::from(a.available), a.since);
        redis::cmd("HSET")
            .arg(self.key(&["availability"]))
            .arg(&a.username)
            .arg(value)
            .exec_async(&mut self.conn())
            .await
            .map_err(backend)
    }

    async fn list_availability(&self) -> Result<Vec<Availability>, StoreError> {
        let h = self
            .hash("availability", self.key(&["availability"]))
            .await?
            .unwrap_or_default();
        let mut out = Vec::with_capacity(h.len());
        for (username, value) in h {
            let parsed = value.split_once(':').and_then(|(a, since)| {
                let available = match a {
                    "1" => true,
                    "0" => false,
                    _ => return None,
                };
                Some((available, since.parse().ok()?))
            });
            let (available, since) = parsed.ok_or_else(|| {
                StoreError::Corrupt(format!("availability of {username:?}: {value:?}"))
            })?;
            out.push(Availability {
                username,
                available,
                since,
            });
        }
        out.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(out)
    }

    async fn append_audit(&self, event: &AuditEvent) -> Result<u64, StoreError> {
        let args = audit_pairs(event).0;
        script_seq(self.run_script(&self.scripts.append_audit, &args).await?)
    }

    async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        let limit = audit_limit(q);
        // The most selective index; the other conditions are checked on the events.
        let index = match (&q.request_id, &q.actor) {
            (Some(r), _) => self.key(&["audit:by-request:", r]),
            (None, Some(a)) => self.key(&["audit:by-actor:", a]),
            (None, None) => self.key(&["audit:all"]),
        };
        let mut max = match q.before_seq {
            Some(b) => format!("({b}"),
            None => "+inf".to_owned(),
        };
        let batch = limit.clamp(AUDIT_BATCH, 1000);
        let mut out = Vec::new();
        loop {
            let v: Value = redis::cmd("ZREVRANGEBYSCORE")
                .arg(&index)
                .arg(&max)
                .arg("-inf")
                .arg("LIMIT")
                .arg(0)
                .arg(batch)
                .query_async(&mut self.conn())
                .await
                .map_err(backend)?;
            let seqs: Vec<u64> = redis::from_redis_value(v)
                .map_err(|e| StoreError::Corrupt(format!("audit index: {e}")))?;
            let Some(&last) = seqs.last() else { break };
            let keys: Vec<String> = seqs
                .iter()
                .map(|s| self.key(&["audit:ev:", &s.to_string()]))
                .collect();
            for h in self
                .hashes("audit event", &keys)
                .await?
                .into_iter()
                .flatten()
            {
                let e = audit_from_hash(&h)?;
                if audit_matches(q, &e) {
                    out.push(e);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            if seqs.len() < batch {
                break;
            }
            max = format!("({last}");
        }
        Ok(out)
    }

    async fn add_line_measurement(&self, m: &LineMeasurement) -> Result<(), StoreError> {
        let key = self.key(&["line:", &m.site]);
        let keep = isize::try_from(MAX_LINE_MEASUREMENTS_PER_SITE).unwrap_or(isize::MAX);
        redis::pipe()
            .atomic()
            .cmd("LPUSH")
            .arg(&key)
            .arg(to_json(m)?)
            .ignore()
            .cmd("LTRIM")
            .arg(&key)
            .arg(0)
            .arg(keep - 1)
            .ignore()
            .exec_async(&mut self.conn())
            .await
            .map_err(backend)
    }

    async fn list_line_measurements(
        &self,
        site: &str,
        limit: usize,
    ) -> Result<Vec<LineMeasurement>, StoreError> {
        let key = self.key(&["line:", site]);
        let stop = isize::try_from(line_limit(limit)).unwrap_or(isize::MAX) - 1;
        let v: Value = redis::cmd("LRANGE")
            .arg(&key)
            .arg(0)
            .arg(stop)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        let items: Vec<String> = redis::from_redis_value(v)
            .map_err(|e| StoreError::Corrupt(format!("line measurements of {site:?}: {e}")))?;
        items
            .iter()
            .map(|j| from_json("line measurement", j))
            .collect()
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
        let key = self.key(&["secret:", name]);
        let (value,): (Option<Vec<u8>>,) = redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(fresh)
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(&key)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        value.ok_or_else(|| StoreError::Backend(format!("secret {name:?} vanished after SET NX")))
    }
}
