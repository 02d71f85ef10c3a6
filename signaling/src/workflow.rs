//! The consultation workflow service: requests, the queue and pairing, availability, opinions and
//! referrals, with every change stored (compare-and-swap) together with its audit event and pushed
//! live to the users concerned. The rules are the pure functions in [`crate::domain`]; this module
//! loads, applies, stores and notifies.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::consultation::{self, Action, Actor, WorkflowError};
use crate::domain::queue::{self, OnDuty, QueueConfig};
use crate::domain::validate::{Checker, FieldError};
use crate::domain::{
    AuditEvent, Consent, ConsentMethod, Millis, Request, RequestState, Role, SiteKind, Specialty,
    Urgency, User,
};
use crate::hub::Hub;
use crate::protocol::ServerMsg;
use crate::store::{Availability, RequestFilter, Store, StoreError};

/// Current Unix time in ms (the one clock of the service; the domain takes time as a parameter).
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX))
        .unwrap_or(0)
}

/// Why a workflow call failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The domain refused the action.
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    /// Storage failed or the record changed concurrently.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Input fields are invalid.
    #[error("some fields are invalid")]
    Invalid(Vec<FieldError>),
}

/// A request as the API and the notifications show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RequestView {
    /// The stored request.
    #[serde(flatten)]
    pub request: Request,
    /// Referring doctor's display name.
    pub requester_name: String,
    /// Specialist's display name, once one is involved.
    pub specialist_name: Option<String>,
    /// Position in its specialty's queue (0-based) while queued.
    pub queue_position: Option<usize>,
    /// Estimated wait in seconds while queued or offered; `null` when nobody of the specialty is on
    /// duty.
    pub estimated_wait_secs: Option<i64>,
}

/// A new request from a referring doctor.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    /// Patient pseudonym: 3–32 characters of `A-Z a-z 0-9 -`.
    pub patient_pseudonym: String,
    /// Specialty id.
    pub specialty: String,
    /// Urgency.
    pub urgency: Urgency,
    /// The clinical question, 1–2000 characters.
    pub question: String,
    /// Preferred specialist centre (site id), if any.
    #[serde(default)]
    pub preferred_centre: Option<String>,
    /// How the patient's consent was obtained (recorded now, by the requesting doctor).
    pub consent_method: ConsentMethod,
}

/// Longest clinical question.
pub const MAX_QUESTION: usize = 2000;
/// Longest opinion field.
pub const MAX_OPINION_FIELD: usize = 8000;
/// Longest reason (cancel, decline, referral).
pub const MAX_REASON: usize = 1000;

/// The workflow service.
pub struct Workflow {
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    cfg: QueueConfig,
    specialties: Vec<Specialty>,
    /// Serialises pairing runs on this node (other nodes are kept apart by compare-and-swap).
    pairing: tokio::sync::Mutex<()>,
}

/// Who acted and from where, for the audit log.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    /// The user (None: the server itself).
    pub user: Option<&'a User>,
    /// Client address.
    pub address: Option<String>,
}

impl Workflow {
    /// A service over `store`, pushing to `hub`.
    pub fn new(
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        cfg: QueueConfig,
        specialties: Vec<Specialty>,
    ) -> Workflow {
        Workflow {
            store,
            hub,
            cfg,
            specialties,
            pairing: tokio::sync::Mutex::new(()),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Specialties.
    pub fn specialties(&self) -> &[Specialty] {
        &self.specialties
    }

    fn audit(
        origin: &Origin<'_>,
        action: &str,
        request_id: Option<&str>,
        detail: String,
    ) -> AuditEvent {
        AuditEvent {
            seq: 0,
            at: now_ms(),
            actor: origin
                .user
                .map_or_else(|| "system".to_string(), |u| u.username.clone()),
            action: action.into(),
            request_id: request_id.map(str::to_string),
            address: origin.address.clone(),
            detail,
        }
    }

    /// Record an audit event that is not a request change (logins, room joins, account changes).
    pub async fn record(
        &self,
        origin: &Origin<'_>,
        action: &str,
        request_id: Option<&str>,
        detail: String,
    ) -> Result<(), StoreError> {
        self.store
            .append_audit(&Self::audit(origin, action, request_id, detail))
            .await
            .map(|_| ())
    }

    /// Validate and store a new request, queue it and run pairing.
    pub async fn create_request(
        &self,
        user: &User,
        new: NewRequest,
        address: Option<String>,
    ) -> Result<RequestView, ServiceError> {
        if user.role != Role::ReferringDoctor {
            return Err(WorkflowError::WrongRole {
                role: "user who is not a referring doctor",
                action: "create a request",
            }
            .into());
        }
        let mut c = Checker::new();
        c.pseudonym("patient_pseudonym", &new.patient_pseudonym);
        c.text("question", &new.question, 1, MAX_QUESTION);
        if !self.specialties.iter().any(|s| s.id == new.specialty) {
            c.fail(
                "specialty",
                if new.specialty.is_empty() {
                    "required"
                } else {
                    "unknown_reference"
                },
                format!("unknown specialty {:?}", truncate(&new.specialty, 40)),
            );
        }
        let preferred = new.preferred_centre.filter(|c| !c.is_empty());
        if let Some(p) = &preferred {
            match self.store.get_site(p).await? {
                Some(site) if site.kind == SiteKind::SpecialistCentre => {}
                _ => c.fail(
                    "preferred_centre",
                    "unknown_reference",
                    format!("{:?} is not a specialist centre", truncate(p, 40)),
                ),
            }
        }
        c.finish().map_err(ServiceError::Invalid)?;
        let now = now_ms();
        let req = Request {
            id: uuid::Uuid::new_v4().to_string(),
            patient_pseudonym: new.patient_pseudonym,
            specialty: new.specialty,
            urgency: new.urgency,
            question: new.question,
            preferred_centre: preferred,
            consent: Consent {
                recorded_by: user.username.clone(),
                recorded_at: now,
                method: new.consent_method,
            },
            requester: user.username.clone(),
            requester_site: user.site_id.clone(),
            state: RequestState::Requested,
            created_at: now,
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
            updated_at: now,
            version: 1,
        };
        let origin = Origin {
            user: Some(user),
            address,
        };
        let detail = format!("{} {}", req.specialty, req.urgency.as_str());
        self.store
            .create_request(
                &req,
                &Self::audit(&origin, "request.created", Some(&req.id), detail),
            )
            .await?;
        let system = Origin {
            user: None,
            address: None,
        };
        let queued = self
            .transition(&req, Actor::System, Action::Enqueue, &system)
            .await?;
        self.after_queue_change(&queued.specialty).await;
        let fresh = self.store.get_request(&queued.id).await?.unwrap_or(queued);
        self.view(&fresh).await.map_err(Into::into)
    }

    /// Apply `action` by `user` to request `id` (checked by the domain), store it, notify, and run
    /// pairing when the queue changed.
    pub async fn act(
        &self,
        user: &User,
        id: &str,
        action: Action,
        address: Option<String>,
    ) -> Result<RequestView, ServiceError> {
        let req = match self.readable(user, id).await {
            // Lost the race for a request of one's own specialty: say so, not "not yours".
            Err(ServiceError::Workflow(WorkflowError::NotYours))
                if matches!(action, Action::Accept { .. }) =>
            {
                return Err(WorkflowError::IllegalTransition {
                    action: "accept",
                    state: "already taken by another specialist",
                }
                .into());
            }
            other => other?,
        };
        let origin = Origin {
            user: Some(user),
            address,
        };
        let changed = self
            .transition(&req, Actor::User(user), action, &origin)
            .await?;
        // A state change can move the queue or free (or occupy) a specialist: pair and refresh the
        // waiting requesters' positions and waits.
        if changed.state != req.state {
            self.after_queue_change(&req.specialty).await;
        }
        self.view(&changed).await.map_err(Into::into)
    }

    /// Request `id` if `user` may read it (`NotFound` / `NotYours` otherwise).
    pub async fn readable(&self, user: &User, id: &str) -> Result<Request, ServiceError> {
        let req = self
            .store
            .get_request(id)
            .await?
            .ok_or(StoreError::NotFound)?;
        if !consultation::may_read(&req, user) {
            return Err(WorkflowError::NotYours.into());
        }
        Ok(req)
    }

    /// Apply, store with compare-and-swap and its audit event, and notify both sides.
    async fn transition(
        &self,
        req: &Request,
        actor: Actor<'_>,
        action: Action,
        origin: &Origin<'_>,
    ) -> Result<Request, ServiceError> {
        let name = action.name();
        let next = consultation::apply(req, actor, action, now_ms())?;
        let detail = if next.state == req.state {
            req.state.as_str().to_string()
        } else {
            format!("{} -> {}", req.state.as_str(), next.state.as_str())
        };
        let event = Self::audit(origin, &format!("request.{name}"), Some(&req.id), detail);
        self.store
            .update_request(&next, req.version, &event)
            .await?;
        match self.view(&next).await {
            Ok(view) => {
                self.notify(&view, name == "accept");
                // A specialist who passed on an offer, or whose offer timed out, sees it go.
                if let Some(previous) = &req.specialist
                    && next.specialist.as_ref() != Some(previous)
                {
                    self.hub.send(
                        previous,
                        &ServerMsg::RequestUpdated {
                            request: Box::new(view),
                        },
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot build a request view for a notification"),
        }
        Ok(next)
    }

    /// Push the request to its participants (and `paired` to both on accept).
    fn notify(&self, view: &RequestView, paired: bool) {
        let req = &view.request;
        let boxed = || Box::new(view.clone());
        let msg = if paired {
            ServerMsg::Paired { request: boxed() }
        } else {
            ServerMsg::RequestUpdated { request: boxed() }
        };
        self.hub.send(&req.requester, &msg);
        if let Some(s) = &req.specialist {
            let to_specialist = if req.state == RequestState::Offered {
                ServerMsg::OfferMade { request: boxed() }
            } else {
                msg
            };
            self.hub.send(s, &to_specialist);
        }
    }

    /// The view of `req`: names, queue position and estimated wait.
    pub async fn view(&self, req: &Request) -> Result<RequestView, StoreError> {
        Ok(self.snapshot().await?.view(req))
    }

    /// The views of `requests`, from one snapshot of the queue.
    pub async fn views(&self, requests: &[Request]) -> Result<Vec<RequestView>, StoreError> {
        let snapshot = self.snapshot().await?;
        Ok(requests.iter().map(|r| snapshot.view(r)).collect())
    }

    /// Waiting and active requests, finished ones with signed opinions (for the mean consultation
    /// length), and the specialists on duty.
    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        use RequestState as S;
        let requests = self
            .store
            .list_requests(&RequestFilter {
                states: Some(vec![S::Queued, S::Offered, S::Accepted, S::InConsultation]),
                ..RequestFilter::default()
            })
            .await?;
        let finished = self
            .store
            .list_requests(&RequestFilter {
                states: Some(vec![S::OpinionWritten, S::Closed]),
                limit: 50,
                ..RequestFilter::default()
            })
            .await?;
        let mean_consultation_ms = queue::mean_consultation_ms(
            &finished,
            20,
            queue::secs_to_ms(self.cfg.default_consultation_secs),
        );
        let busy: HashSet<&str> = requests
            .iter()
            .filter(|r| matches!(r.state, S::Offered | S::Accepted | S::InConsultation))
            .filter_map(|r| r.specialist.as_deref())
            .collect();
        let mut availability = self.store.list_availability().await?;
        // Longest available first: they get the next offer.
        availability.sort_by_key(|a| a.since);
        let users: HashMap<String, User> = self
            .store
            .list_users()
            .await?
            .into_iter()
            .map(|u| (u.username.clone(), u))
            .collect();
        let on_duty = availability
            .iter()
            .filter(|a| a.available)
            .filter_map(|a| users.get(&a.username))
            .filter(|u| u.role == Role::Specialist && !u.disabled)
            .map(|u| OnDuty {
                username: u.username.clone(),
                site_id: u.site_id.clone(),
                specialties: u.specialties.clone(),
                available: true,
                busy: busy.contains(u.username.as_str()),
            })
            .collect();
        let names = users
            .into_values()
            .map(|u| (u.username, u.display_name))
            .collect();
        Ok(Snapshot {
            requests,
            on_duty,
            names,
            mean_consultation_ms,
        })
    }

    /// Mark a specialist available or not, then run pairing.
    pub async fn set_available(
        &self,
        user: &User,
        available: bool,
        address: Option<String>,
    ) -> Result<Availability, ServiceError> {
        if user.role != Role::Specialist {
            return Err(WorkflowError::WrongRole {
                role: "user who is not a specialist",
                action: "mark availability",
            }
            .into());
        }
        let a = Availability {
            username: user.username.clone(),
            available,
            since: now_ms(),
        };
        self.store.set_availability(&a).await?;
        let origin = Origin {
            user: Some(user),
            address,
        };
        self.record(
            &origin,
            "availability.changed",
            None,
            if available {
                "available"
            } else {
                "unavailable"
            }
            .into(),
        )
        .await?;
        for s in &user.specialties {
            self.after_queue_change(s).await;
        }
        Ok(a)
    }

    /// A specialist's recorded availability.
    pub async fn availability(&self, username: &str) -> Result<Option<Availability>, StoreError> {
        Ok(self
            .store
            .list_availability()
            .await?
            .into_iter()
            .find(|a| a.username == username))
    }

    /// Pair, then refresh everyone waiting in `specialty`: requesters get their new position and
    /// wait, available specialists of the specialty get `queue_changed`.
    async fn after_queue_change(&self, specialty: &str) {
        if let Err(e) = self.pair().await {
            tracing::warn!(error = %e, "pairing failed");
        }
        let snapshot = match self.snapshot().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot refresh the queue");
                return;
            }
        };
        for r in snapshot
            .requests
            .iter()
            .filter(|r| r.specialty == specialty && r.state == RequestState::Queued)
        {
            if self.hub.online(&r.requester) {
                self.notify(&snapshot.view(r), false);
            }
        }
        let msg = ServerMsg::QueueChanged {
            specialty: specialty.to_string(),
        };
        for s in snapshot
            .on_duty
            .iter()
            .filter(|s| s.specialties.iter().any(|x| x == specialty))
        {
            self.hub.send(&s.username, &msg);
        }
    }

    /// Offer queued requests to free specialists (see [`queue::pair`]).
    pub async fn pair(&self) -> Result<(), ServiceError> {
        let _guard = self.pairing.lock().await;
        let snapshot = self.snapshot().await?;
        let now = now_ms();
        let system = Origin {
            user: None,
            address: None,
        };
        for (id, username) in queue::pair(&snapshot.requests, &snapshot.on_duty, now, &self.cfg) {
            let Some(req) = snapshot.requests.iter().find(|r| r.id == id) else {
                continue;
            };
            let Some(spec) = snapshot.on_duty.iter().find(|s| s.username == username) else {
                continue;
            };
            let action = Action::Offer {
                specialist: spec.username.clone(),
                centre: spec.site_id.clone(),
            };
            match self.transition(req, Actor::System, action, &system).await {
                Ok(_) => {}
                // Another node or an accept from the queue got there first.
                Err(ServiceError::Store(StoreError::Conflict)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Expire overdue requests, return unanswered offers to the queue, then pair. Called
    /// periodically by the server.
    pub async fn tick(&self) -> Result<(), ServiceError> {
        // A request whose queueing failed right after it was stored (storage hiccup) is queued now.
        let stuck = self
            .store
            .list_requests(&RequestFilter {
                states: Some(vec![RequestState::Requested]),
                ..RequestFilter::default()
            })
            .await?;
        let system = Origin {
            user: None,
            address: None,
        };
        for req in stuck.iter().filter(|r| now_ms() - r.created_at > 5_000) {
            match self
                .transition(req, Actor::System, Action::Enqueue, &system)
                .await
            {
                Ok(_) | Err(ServiceError::Store(StoreError::Conflict)) => {}
                Err(e) => return Err(e),
            }
        }
        let snapshot = self.snapshot().await?;
        let (expired, timed_out) = queue::overdue(&snapshot.requests, now_ms(), &self.cfg);
        let mut specialties = HashSet::new();
        for (ids, action) in [
            (expired, Action::Expire),
            (timed_out, Action::OfferTimedOut),
        ] {
            for id in ids {
                let Some(req) = snapshot.requests.iter().find(|r| r.id == id) else {
                    continue;
                };
                match self
                    .transition(req, Actor::System, action.clone(), &system)
                    .await
                {
                    Ok(r) => {
                        specialties.insert(r.specialty);
                    }
                    Err(ServiceError::Store(StoreError::Conflict)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        for s in specialties {
            self.after_queue_change(&s).await;
        }
        self.pair().await
    }

    /// A participant enters the consultation room: `accepted` becomes `in_consultation`; every
    /// join is audited. Returns the room name.
    /// Returns the room and whether the consultation is an emergency (its media has first claim on the
    /// site's line).
    pub async fn join(
        &self,
        user: &User,
        id: &str,
        address: Option<String>,
    ) -> Result<(String, bool), ServiceError> {
        let origin = Origin {
            user: Some(user),
            address,
        };
        // Both sides often join at the same moment: the one who loses the compare-and-swap finds
        // the request already in consultation on the next try.
        let mut attempts = 0;
        let (room, emergency) = loop {
            let req = self.readable(user, id).await?;
            let emergency = req.urgency == Urgency::Emergency;
            let next = consultation::apply(&req, Actor::User(user), Action::Join, now_ms())?;
            let room = next
                .room
                .clone()
                .ok_or_else(|| WorkflowError::Invalid("the request has no room".into()))?;
            if next.state == req.state {
                break (room, emergency);
            }
            match self
                .transition(&req, Actor::User(user), Action::Join, &origin)
                .await
            {
                Ok(_) => break (room, emergency),
                Err(ServiceError::Store(StoreError::Conflict)) if attempts < 3 => attempts += 1,
                Err(e) => return Err(e),
            }
        };
        self.record(&origin, "room.joined", Some(id), room.clone())
            .await?;
        Ok((room, emergency))
    }

    /// A participant left the room (or their connection dropped).
    pub async fn left(&self, user: &User, id: &str, address: Option<String>, reason: &str) {
        let origin = Origin {
            user: Some(user),
            address,
        };
        if let Err(e) = self
            .record(&origin, "room.left", Some(id), reason.into())
            .await
        {
            tracing::warn!(error = %e, "cannot audit a room leave");
        }
    }
}

/// Waiting and active requests and the specialists on duty at one moment, with what a view needs.
struct Snapshot {
    requests: Vec<Request>,
    on_duty: Vec<OnDuty>,
    /// Display names by user name.
    names: HashMap<String, String>,
    /// Mean consultation length for the estimated wait.
    mean_consultation_ms: Millis,
}

impl Snapshot {
    fn name(&self, username: &str) -> String {
        self.names
            .get(username)
            .cloned()
            .unwrap_or_else(|| username.to_string())
    }

    /// The view of `req`; `req` itself is used for its own state (the snapshot may be a moment
    /// newer or older).
    fn view(&self, req: &Request) -> RequestView {
        let queue_position = (req.state == RequestState::Queued)
            .then(|| {
                queue::ordered(&self.requests, &req.specialty)
                    .iter()
                    .position(|q| q.id == req.id)
            })
            .flatten();
        let estimated_wait_secs = req
            .state
            .waiting()
            .then(|| {
                queue::estimated_wait(
                    &self.requests,
                    &self.on_duty,
                    req,
                    self.mean_consultation_ms,
                )
            })
            .flatten()
            .map(|ms| ms / 1000);
        RequestView {
            request: req.clone(),
            requester_name: self.name(&req.requester),
            specialist_name: req.specialist.as_deref().map(|s| self.name(s)),
            queue_position,
            estimated_wait_secs,
        }
    }
}

/// The first `n` characters of `s` (for echoing bad input in messages).
pub fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
