//! The consultation workflow's domain: sites, users, specialties, consultation requests, opinions,
//! referrals, audit events, and line measurements ([`line`]). Plain data with serde; the rules live
//! in [`consultation`] (the request state machine) and [`queue`] (ordering, pairing and the
//! estimated wait). Time is passed in as Unix milliseconds, so everything here is deterministic and
//! unit-tested without a clock.

pub mod consultation;
pub mod line;
pub mod queue;
pub mod validate;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Unix time in milliseconds.
pub type Millis = i64;

/// What kind of place a site is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SiteKind {
    /// A county hospital (县医院): asks for consultations.
    CountyHospital,
    /// A township clinic (乡镇卫生院): asks for consultations.
    TownshipClinic,
    /// A specialist centre (专科中心): answers them.
    SpecialistCentre,
}

impl SiteKind {
    /// Whether doctors at this kind of site ask for consultations.
    pub fn refers(self) -> bool {
        matches!(self, SiteKind::CountyHospital | SiteKind::TownshipClinic)
    }
}

/// A hospital, clinic or specialist centre.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// Short stable identifier (`[a-z0-9-]`, 1–32 characters).
    pub id: String,
    /// Name shown to users.
    pub name: String,
    /// County hospital, township clinic or specialist centre.
    pub kind: SiteKind,
    /// Region (province / prefecture), free text.
    pub region: String,
    /// Configured capacity of the site's line in kbit/s (the line budget until a measurement exists).
    pub line_capacity_kbps: u32,
}

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A doctor at a county hospital or township clinic who asks for consultations.
    ReferringDoctor,
    /// A specialist at a specialist centre.
    Specialist,
    /// Hospital IT: line and call quality, never clinical content.
    ItAdmin,
    /// Runs the service: users, sites, audit log.
    Operator,
}

/// A specialty (cardiology, neurology, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Specialty {
    /// Stable identifier (`[a-z0-9-]`), e.g. `cardiology`.
    pub id: String,
    /// Simplified Chinese name.
    pub name_zh: String,
    /// English name.
    pub name_en: String,
}

/// A stored user account. The password hash never leaves the server (see [`UserView`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Login name (`[a-z0-9._-]`, 1–64 characters).
    pub username: String,
    /// Name shown to others.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// The site the user works at.
    pub site_id: String,
    /// Specialties (specialists only).
    pub specialties: Vec<String>,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// A disabled account cannot log in and its tokens stop working.
    pub disabled: bool,
    /// Bumped when the password changes or the account is disabled; tokens carry it, so older tokens
    /// stop working.
    pub token_generation: u32,
}

/// What the API shows of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    /// Login name.
    pub username: String,
    /// Name shown to others.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// Site.
    pub site_id: String,
    /// Specialties (specialists only).
    pub specialties: Vec<String>,
    /// Whether the account is disabled.
    pub disabled: bool,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            role: u.role,
            site_id: u.site_id.clone(),
            specialties: u.specialties.clone(),
            disabled: u.disabled,
        }
    }
}

/// How urgent a request is. Emergency requests are served first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    /// Within the day.
    Routine,
    /// Within hours.
    Urgent,
    /// Now.
    Emergency,
}

impl Urgency {
    /// All values, most urgent first.
    pub const ALL: [Urgency; 3] = [Urgency::Emergency, Urgency::Urgent, Urgency::Routine];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::Routine => "routine",
            Urgency::Urgent => "urgent",
            Urgency::Emergency => "emergency",
        }
    }
}

/// Where a request is in its life. See [`consultation`] for the allowed transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Submitted, not yet in a queue.
    Requested,
    /// Waiting in its specialty's queue.
    Queued,
    /// Offered to one specialist, who has not answered yet.
    Offered,
    /// A specialist accepted; the room exists.
    Accepted,
    /// Someone joined the room.
    InConsultation,
    /// The specialist signed the opinion.
    OpinionWritten,
    /// The referring doctor acknowledged the opinion.
    Closed,
    /// The referring doctor withdrew the request.
    Cancelled,
    /// A specialist declined it as unsuitable for teleconsultation (with a reason).
    Declined,
    /// Nobody accepted it within the longest wait for its urgency.
    Expired,
}

impl RequestState {
    /// All states.
    pub const ALL: [RequestState; 10] = [
        RequestState::Requested,
        RequestState::Queued,
        RequestState::Offered,
        RequestState::Accepted,
        RequestState::InConsultation,
        RequestState::OpinionWritten,
        RequestState::Closed,
        RequestState::Cancelled,
        RequestState::Declined,
        RequestState::Expired,
    ];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Requested => "requested",
            RequestState::Queued => "queued",
            RequestState::Offered => "offered",
            RequestState::Accepted => "accepted",
            RequestState::InConsultation => "in_consultation",
            RequestState::OpinionWritten => "opinion_written",
            RequestState::Closed => "closed",
            RequestState::Cancelled => "cancelled",
            RequestState::Declined => "declined",
            RequestState::Expired => "expired",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<RequestState> {
        RequestState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the request waits for a specialist (in the queue or offered to one).
    pub fn waiting(self) -> bool {
        matches!(self, RequestState::Queued | RequestState::Offered)
    }

    /// Whether nothing more can happen to the request.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RequestState::Closed
                | RequestState::Cancelled
                | RequestState::Declined
                | RequestState::Expired
        )
    }
}

/// How the patient's consent was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentMethod {
    /// Signed form (kept at the referring site).
    Written,
    /// Spoken, witnessed and noted in the chart.
    Verbal,
    /// Electronic signature.
    Electronic,
}

/// The patient's consent to the teleconsultation, as recorded by the referring doctor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Consent {
    /// Who recorded it (user name).
    pub recorded_by: String,
    /// When (Unix ms).
    pub recorded_at: Millis,
    /// How it was given.
    pub method: ConsentMethod,
}

/// The specialist's written opinion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Opinion {
    /// Findings.
    pub findings: String,
    /// Diagnosis.
    pub diagnosis: String,
    /// Recommendations.
    pub recommendations: String,
    /// Follow-up.
    pub follow_up: String,
    /// Who wrote it (user name).
    pub author: String,
    /// Last change (Unix ms).
    pub updated_at: Millis,
    /// Set once signed; a signed opinion cannot change.
    pub signature: Option<Signature>,
}

/// A signature over an opinion: who, when, and the SHA-256 of the signed text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Signature {
    /// Signer (user name).
    pub signed_by: String,
    /// Signer's display name at signing time.
    pub signer_name: String,
    /// When (Unix ms).
    pub signed_at: Millis,
    /// Hex SHA-256 of the canonical opinion text (findings, diagnosis, recommendations, follow-up,
    /// signer and time), so later tampering in the store is detectable.
    pub digest: String,
}

/// Which way a referral goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReferralDirection {
    /// Transfer the patient up to the specialist centre.
    Up,
    /// Send the patient back down to the county for follow-up.
    Down,
}

/// A proposed two-way referral.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Referral {
    /// Up to the centre or down to the county.
    pub direction: ReferralDirection,
    /// Receiving site.
    pub to_site: String,
    /// Why.
    pub reason: String,
    /// Who proposed it (user name).
    pub proposed_by: String,
    /// When (Unix ms).
    pub proposed_at: Millis,
}

/// A consultation request and everything that happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Request {
    /// Identifier (UUID).
    pub id: String,
    /// Patient pseudonym (never a name or ID number).
    pub patient_pseudonym: String,
    /// Specialty asked for.
    pub specialty: String,
    /// Urgency.
    pub urgency: Urgency,
    /// The clinical question.
    pub question: String,
    /// Preferred specialist centre, if any.
    pub preferred_centre: Option<String>,
    /// Consent on record.
    pub consent: Consent,
    /// Referring doctor (user name).
    pub requester: String,
    /// Referring doctor's site.
    pub requester_site: String,
    /// Current state.
    pub state: RequestState,
    /// Submitted (Unix ms).
    pub created_at: Millis,
    /// Entered the queue (Unix ms); waiting time counts from here.
    pub queued_at: Option<Millis>,
    /// Put back at the head of the queue after a declined or unanswered offer.
    pub returned_to_queue: bool,
    /// The specialist the request is offered to or was accepted by.
    pub specialist: Option<String>,
    /// That specialist's centre.
    pub centre: Option<String>,
    /// When the current offer was made (Unix ms).
    pub offered_at: Option<Millis>,
    /// Specialists who declined the offer (not offered again).
    pub declined_by: Vec<String>,
    /// Accepted (Unix ms).
    pub accepted_at: Option<Millis>,
    /// Relay room name, once accepted.
    pub room: Option<String>,
    /// The opinion (draft or signed).
    pub opinion: Option<Opinion>,
    /// Referring doctor acknowledged the opinion (Unix ms).
    pub acknowledged_at: Option<Millis>,
    /// Proposed referrals.
    pub referrals: Vec<Referral>,
    /// Reason given on cancel or decline.
    pub closing_reason: Option<String>,
    /// Last change (Unix ms).
    pub updated_at: Millis,
    /// Bumped on every change; updates are compare-and-swap on it.
    pub version: u64,
}

/// One audit event: who did what, when, from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEvent {
    /// Sequence number assigned by the store (0 before it is stored).
    pub seq: u64,
    /// When (Unix ms).
    pub at: Millis,
    /// Who (user name, or `system` for the pairing engine and expiry).
    pub actor: String,
    /// What, e.g. `request.accept`, `room.joined`, `user.created`, `login.failed`.
    pub action: String,
    /// The request concerned, if any.
    pub request_id: Option<String>,
    /// Client address, if the action came from a client.
    pub address: Option<String>,
    /// Details (no clinical content), e.g. `queued -> offered`.
    pub detail: String,
}

/// Which audit events to return (newest first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this request.
    pub request_id: Option<String>,
    /// Only actions starting with this prefix (e.g. `request.`).
    pub action_prefix: Option<String>,
    /// Only at or after (Unix ms).
    pub since: Option<Millis>,
    /// Only events with a sequence number below this (paging backwards).
    pub before_seq: Option<u64>,
    /// At most this many (1–1000).
    pub limit: usize,
}
