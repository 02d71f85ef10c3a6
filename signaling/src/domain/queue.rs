//! The queue: one per specialty across all centres. Emergency first, then urgent, then routine; within
//! an urgency, requests put back after a declined or unanswered offer first, then the longest waiting.
//! Pure functions over a snapshot of requests and specialists, with `now` passed in.

use std::cmp::Reverse;

use serde::{Deserialize, Serialize};

use super::{Millis, Request, RequestState, Urgency};

/// Queue and pairing settings (`[workflow]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// How long a request with a preferred centre waits for a specialist there before any centre
    /// may be offered it (seconds).
    pub preferred_centre_wait_secs: u64,
    /// How long a specialist has to answer an offer before it goes back to the queue (seconds).
    pub offer_timeout_secs: u64,
    /// Longest wait in the queue before a request expires, per urgency (seconds).
    pub max_wait_emergency_secs: u64,
    /// See `max_wait_emergency_secs`.
    pub max_wait_urgent_secs: u64,
    /// See `max_wait_emergency_secs`.
    pub max_wait_routine_secs: u64,
    /// Assumed length of one consultation for the estimated wait until enough have been measured
    /// (seconds).
    pub default_consultation_secs: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            preferred_centre_wait_secs: 600,
            offer_timeout_secs: 120,
            max_wait_emergency_secs: 30 * 60,
            max_wait_urgent_secs: 4 * 3600,
            max_wait_routine_secs: 72 * 3600,
            default_consultation_secs: 20 * 60,
        }
    }
}

impl QueueConfig {
    /// Longest wait for `u`, in ms.
    pub fn max_wait_ms(&self, u: Urgency) -> Millis {
        let s = match u {
            Urgency::Emergency => self.max_wait_emergency_secs,
            Urgency::Urgent => self.max_wait_urgent_secs,
            Urgency::Routine => self.max_wait_routine_secs,
        };
        secs_to_ms(s)
    }
}

/// Seconds to milliseconds, saturating.
pub fn secs_to_ms(s: u64) -> Millis {
    Millis::try_from(s.saturating_mul(1000)).unwrap_or(Millis::MAX)
}

/// A specialist on duty, as the pairing engine sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnDuty {
    /// User name.
    pub username: String,
    /// Centre.
    pub site_id: String,
    /// Specialties.
    pub specialties: Vec<String>,
    /// Marked available.
    pub available: bool,
    /// Holds an offer or a consultation that is not finished.
    pub busy: bool,
}

impl OnDuty {
    /// Whether the pairing engine may offer them a request now.
    pub fn free(&self) -> bool {
        self.available && !self.busy
    }
}

/// Sort key: most urgent first, returned requests first, then longest waiting, then id.
fn key(r: &Request) -> (Reverse<Urgency>, Reverse<bool>, Millis, Millis, &str) {
    (
        Reverse(r.urgency),
        Reverse(r.returned_to_queue),
        r.queued_at.unwrap_or(r.created_at),
        r.created_at,
        r.id.as_str(),
    )
}

/// The queued requests of `specialty` in queue order.
pub fn ordered<'a>(requests: &'a [Request], specialty: &str) -> Vec<&'a Request> {
    let mut q: Vec<&Request> = requests
        .iter()
        .filter(|r| r.state == RequestState::Queued && r.specialty == specialty)
        .collect();
    q.sort_by(|a, b| key(a).cmp(&key(b)));
    q
}

/// Whether `spec` may be offered `r` at `now`: right specialty, has not declined it, and the
/// request's preferred centre (if any) is theirs or has had its wait.
pub fn eligible(r: &Request, spec: &OnDuty, now: Millis, cfg: &QueueConfig) -> bool {
    if r.state != RequestState::Queued
        || !spec.specialties.contains(&r.specialty)
        || r.declined_by.contains(&spec.username)
    {
        return false;
    }
    match &r.preferred_centre {
        None => true,
        Some(c) if *c == spec.site_id => true,
        Some(_) => {
            now - r.queued_at.unwrap_or(r.created_at) >= secs_to_ms(cfg.preferred_centre_wait_secs)
        }
    }
}

/// The offers to make now: each free specialist gets the first eligible request in queue order, most
/// urgent queue heads served first, each request to one specialist. Specialists are considered in the
/// given order (the caller orders them, e.g. longest available first).
pub fn pair(
    requests: &[Request],
    specialists: &[OnDuty],
    now: Millis,
    cfg: &QueueConfig,
) -> Vec<(String, String)> {
    let mut queued: Vec<&Request> = requests
        .iter()
        .filter(|r| r.state == RequestState::Queued)
        .collect();
    queued.sort_by(|a, b| key(a).cmp(&key(b)));
    let mut free: Vec<&OnDuty> = specialists.iter().filter(|s| s.free()).collect();
    let mut offers = vec![];
    for r in queued {
        if let Some(i) = free.iter().position(|s| eligible(r, s, now, cfg)) {
            let s = free.remove(i);
            offers.push((r.id.clone(), s.username.clone()));
        }
        if free.is_empty() {
            break;
        }
    }
    offers
}

/// Requests that waited longer than their urgency allows, or whose offer went unanswered: (expired
/// ids, timed-out offer ids).
pub fn overdue(requests: &[Request], now: Millis, cfg: &QueueConfig) -> (Vec<String>, Vec<String>) {
    let mut expired = vec![];
    let mut timed_out = vec![];
    for r in requests.iter().filter(|r| r.state.waiting()) {
        let since = r.queued_at.unwrap_or(r.created_at);
        if now - since >= cfg.max_wait_ms(r.urgency) {
            expired.push(r.id.clone());
        } else if r.state == RequestState::Offered
            && r.offered_at
                .is_some_and(|t| now - t >= secs_to_ms(cfg.offer_timeout_secs))
        {
            timed_out.push(r.id.clone());
        }
    }
    (expired, timed_out)
}

/// Estimated wait for `r` in ms: `Some(0)` when it is offered or a free specialist will get it now,
/// `None` when no specialist of its specialty is on duty. Otherwise the requests ahead of it are
/// shared among the specialists on duty, each taking `consultation_ms`.
pub fn estimated_wait(
    requests: &[Request],
    specialists: &[OnDuty],
    r: &Request,
    consultation_ms: Millis,
) -> Option<Millis> {
    if r.state == RequestState::Offered {
        return Some(0);
    }
    if r.state != RequestState::Queued {
        return None;
    }
    let serving: Vec<&OnDuty> = specialists
        .iter()
        .filter(|s| s.available && s.specialties.contains(&r.specialty))
        .collect();
    if serving.is_empty() {
        return None;
    }
    let position = ordered(requests, &r.specialty)
        .iter()
        .position(|q| q.id == r.id)
        .unwrap_or(0) as i64;
    let free = serving.iter().filter(|s| !s.busy).count() as i64;
    if position < free {
        return Some(0);
    }
    let n = serving.len() as i64;
    let rounds = (position - free) / n + 1;
    Some(rounds * consultation_ms)
}

/// Mean consultation length (accepted to opinion signed) over the last `window` finished requests,
/// or `default_ms` when fewer than 3 have finished.
pub fn mean_consultation_ms(requests: &[Request], window: usize, default_ms: Millis) -> Millis {
    let mut done: Vec<(Millis, Millis)> = requests
        .iter()
        .filter_map(|r| {
            let signed = r.opinion.as_ref()?.signature.as_ref()?.signed_at;
            Some((signed, signed - r.accepted_at?))
        })
        .filter(|(_, d)| *d > 0)
        .collect();
    if done.len() < 3 {
        return default_ms;
    }
    done.sort_by_key(|(signed, _)| Reverse(*signed));
    done.truncate(window.max(1));
    done.iter().map(|(_, d)| d).sum::<Millis>() / done.len() as Millis
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::consultation::tests::request;

    fn queued(id: &str, u: Urgency, at: Millis) -> Request {
        let mut r = request(id, u, at);
        r.state = RequestState::Queued;
        r.queued_at = Some(at);
        r
    }

    fn spec(name: &str, site: &str) -> OnDuty {
        OnDuty {
            username: name.into(),
            site_id: site.into(),
            specialties: vec!["cardiology".into()],
            available: true,
            busy: false,
        }
    }

    fn ids(q: &[&Request]) -> Vec<String> {
        q.iter().map(|r| r.id.clone()).collect()
    }

    #[test]
    fn emergency_first_then_returned_then_waiting_time() {
        let mut back = queued("back", Urgency::Routine, 50);
        back.returned_to_queue = true;
        let mut other = queued("neuro", Urgency::Emergency, 0);
        other.specialty = "neurology".into();
        let all = vec![
            queued("r-old", Urgency::Routine, 10),
            queued("u", Urgency::Urgent, 40),
            queued("r-new", Urgency::Routine, 20),
            queued("e", Urgency::Emergency, 90),
            back,
            other,
        ];
        assert_eq!(
            ids(&ordered(&all, "cardiology")),
            ["e", "u", "back", "r-old", "r-new"]
        );
    }

    #[test]
    fn each_free_specialist_gets_the_next_request_once() {
        let cfg = QueueConfig::default();
        let all = vec![
            queued("a", Urgency::Routine, 10),
            queued("b", Urgency::Emergency, 20),
            queued("c", Urgency::Routine, 30),
        ];
        let mut busy = spec("busy", "c1");
        busy.busy = true;
        let mut away = spec("away", "c1");
        away.available = false;
        let offers = pair(
            &all,
            &[spec("s1", "c1"), busy, away, spec("s2", "c2")],
            100,
            &cfg,
        );
        assert_eq!(
            offers,
            vec![
                ("b".to_string(), "s1".to_string()),
                ("a".to_string(), "s2".to_string())
            ]
        );
    }

    #[test]
    fn a_decliner_is_not_offered_the_same_request_again() {
        let cfg = QueueConfig::default();
        let mut r = queued("a", Urgency::Routine, 10);
        r.declined_by = vec!["s1".into()];
        assert!(pair(std::slice::from_ref(&r), &[spec("s1", "c1")], 100, &cfg).is_empty());
        assert_eq!(
            pair(&[r], &[spec("s1", "c1"), spec("s2", "c1")], 100, &cfg).len(),
            1
        );
    }

    #[test]
    fn the_preferred_centre_is_honoured_for_its_wait() {
        let cfg = QueueConfig {
            preferred_centre_wait_secs: 60,
            ..QueueConfig::default()
        };
        let mut r = queued("a", Urgency::Routine, 0);
        r.preferred_centre = Some("east".into());
        let west = spec("w", "west");
        let east = spec("e", "east");
        assert!(!eligible(&r, &west, 59_999, &cfg));
        assert!(eligible(&r, &east, 1, &cfg));
        assert!(eligible(&r, &west, 60_000, &cfg));
        // With both free, the preferred centre wins even when listed second.
        assert_eq!(
            pair(std::slice::from_ref(&r), &[west.clone(), east], 10, &cfg),
            vec![("a".to_string(), "e".to_string())]
        );
        assert!(pair(&[r], &[west], 10, &cfg).is_empty());
    }

    #[test]
    fn overdue_requests_and_offers() {
        let cfg = QueueConfig::default();
        let e = queued("e", Urgency::Emergency, 0);
        let mut o = queued("o", Urgency::Routine, 0);
        o.state = RequestState::Offered;
        o.offered_at = Some(1_000);
        let (expired, timed_out) = overdue(&[e.clone(), o.clone()], 1_000 + 120_000, &cfg);
        assert!(expired.is_empty());
        assert_eq!(timed_out, ["o"]);
        let (expired, _) = overdue(&[e, o], 30 * 60 * 1000, &cfg);
        assert_eq!(expired, ["e"]);
    }

    #[test]
    fn estimated_wait_shares_the_queue_among_specialists() {
        let minute = 60_000;
        let all: Vec<Request> = (0..5)
            .map(|i| queued(&format!("r{i}"), Urgency::Routine, i))
            .collect();
        let mut s1 = spec("s1", "c");
        s1.busy = true;
        let mut s2 = spec("s2", "c");
        s2.busy = true;
        let duty = [s1.clone(), s2.clone()];
        // Two busy specialists: r0, r1 go in the first round, r2, r3 in the second, r4 in the third.
        let waits: Vec<_> = all
            .iter()
            .map(|r| estimated_wait(&all, &duty, r, 20 * minute))
            .collect();
        assert_eq!(
            waits,
            [20, 20, 40, 40, 60].map(|m| Some(m * minute)).to_vec()
        );
        // One of them free: r0 is served now.
        s2.busy = false;
        assert_eq!(
            estimated_wait(&all, &[s1, s2], &all[0], 20 * minute),
            Some(0)
        );
        // Nobody on duty: unknown.
        assert_eq!(estimated_wait(&all, &[], &all[0], 20 * minute), None);
    }

    #[test]
    fn mean_consultation_uses_measured_lengths() {
        use crate::domain::{Opinion, Signature};
        let done = |id: &str, accepted: Millis, signed: Millis| {
            let mut r = request(id, Urgency::Routine, 0);
            r.accepted_at = Some(accepted);
            r.opinion = Some(Opinion {
                findings: String::new(),
                diagnosis: "d".into(),
                recommendations: "r".into(),
                follow_up: String::new(),
                author: "s".into(),
                updated_at: signed,
                signature: Some(Signature {
                    signed_by: "s".into(),
                    signer_name: "S".into(),
                    signed_at: signed,
                    digest: String::new(),
                }),
            });
            r
        };
        let two = vec![done("a", 0, 100), done("b", 0, 300)];
        assert_eq!(mean_consultation_ms(&two, 10, 5), 5);
        let three = vec![
            done("a", 0, 100),
            done("b", 0, 300),
            done("c", 1_000, 1_500),
        ];
        assert_eq!(mean_consultation_ms(&three, 10, 5), 300);
    }
}
