//! Encoding shared by the backends: unit enums are stored as their serde wire names
//! (`county_hospital`, `specialist`, `emergency`, ...), nested values (consent, opinion, declined
//! specialists, referrals, specialties) as JSON text.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::StoreError;
use crate::domain::AuditQuery;

/// Most audit events one query returns ([`AuditQuery::limit`] is 1–1000; 0 means this many).
pub(crate) const MAX_AUDIT_LIMIT: usize = 1000;

/// The effective limit of an audit query: `limit` clamped to 1–[`MAX_AUDIT_LIMIT`], 0 meaning the
/// maximum.
pub(crate) fn audit_limit(q: &AuditQuery) -> usize {
    if q.limit == 0 {
        MAX_AUDIT_LIMIT
    } else {
        q.limit.min(MAX_AUDIT_LIMIT)
    }
}

/// Whether an audit event passes every condition of `q` (the limit aside).
pub(crate) fn audit_matches(q: &AuditQuery, e: &crate::domain::AuditEvent) -> bool {
    q.actor.as_ref().is_none_or(|a| e.actor == *a)
        && q.request_id
            .as_ref()
            .is_none_or(|r| e.request_id.as_ref() == Some(r))
        && q.action_prefix
            .as_ref()
            .is_none_or(|p| e.action.starts_with(p.as_str()))
        && q.since.is_none_or(|s| e.at >= s)
        && q.before_seq.is_none_or(|b| e.seq < b)
}

/// The wire name of a unit enum (`SiteKind`, `Role`, `Urgency`).
pub(crate) fn enum_name<T: Serialize>(v: &T) -> Result<String, StoreError> {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => Ok(s),
        Ok(other) => Err(StoreError::Backend(format!(
            "cannot store {other} as an enum name"
        ))),
        Err(e) => Err(StoreError::Backend(format!("encoding an enum: {e}"))),
    }
}

/// Parse the wire name of a unit enum; `Corrupt` if it is unknown.
pub(crate) fn parse_enum<T: DeserializeOwned>(what: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_value(Value::String(s.to_owned()))
        .map_err(|_| StoreError::Corrupt(format!("{what}: unknown value {s:?}")))
}

/// JSON text of a nested value.
pub(crate) fn to_json<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(format!("encoding JSON: {e}")))
}

/// Decode the JSON text of a nested value; `Corrupt` if it does not decode.
pub(crate) fn from_json<T: DeserializeOwned>(what: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}
