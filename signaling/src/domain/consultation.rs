//! The request state machine and who may drive it.
//!
//! ```text
//! requested -> queued -> offered -> accepted -> in_consultation -> opinion_written -> closed
//!                ^  |       |  \______________________________________^  (sign without a call)
//!                |  |       |
//!                |  +-------+--> expired (nobody accepted in time)     declined (unsuitable, with reason)
//!                +--- offered: declined or unanswered offers go back to the head of the queue
//! requested | queued | offered | accepted -> cancelled (by the referring doctor)
//! ```
//!
//! [`apply`] checks the actor (role, ownership, site) and the transition and returns the changed
//! request; the caller stores it with compare-and-swap on `version`.

use sha2::{Digest, Sha256};

use super::{
    Millis, Opinion, Referral, ReferralDirection, Request, RequestState, Role, Signature, User,
};

/// Who acts.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    /// A logged-in user.
    User(&'a User),
    /// The server itself (pairing engine, expiry).
    System,
}

impl Actor<'_> {
    /// Name for the audit log.
    pub fn name(&self) -> &str {
        match self {
            Actor::User(u) => &u.username,
            Actor::System => "system",
        }
    }
}

/// The text of an opinion (also the body of `PUT /api/v1/requests/{id}/opinion`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpinionText {
    /// Findings.
    pub findings: String,
    /// Diagnosis.
    pub diagnosis: String,
    /// Recommendations.
    pub recommendations: String,
    /// Follow-up.
    pub follow_up: String,
}

/// Something that happens to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The server puts a new request into its queue.
    Enqueue,
    /// The pairing engine offers the request to a specialist.
    Offer {
        /// Specialist's user name.
        specialist: String,
        /// Specialist's centre.
        centre: String,
    },
    /// A specialist accepts (an offer made to them, or a request straight from the queue).
    Accept {
        /// The relay room created for the consultation.
        room: String,
    },
    /// The offered specialist passes; the request goes back to the head of the queue.
    DeclineOffer,
    /// An offer went unanswered; back to the head of the queue.
    OfferTimedOut,
    /// A specialist declines the request as unsuitable for teleconsultation.
    Decline {
        /// Why (shown to the referring doctor).
        reason: String,
    },
    /// The referring doctor withdraws the request.
    Cancel {
        /// Why.
        reason: String,
    },
    /// Nobody accepted within the longest wait.
    Expire,
    /// A participant joined the consultation room.
    Join,
    /// The specialist saves a draft opinion.
    SaveOpinion(OpinionText),
    /// The specialist signs the opinion.
    SignOpinion,
    /// The referring doctor acknowledges the signed opinion.
    Acknowledge,
    /// Either side proposes a referral.
    Refer {
        /// Up or down.
        direction: ReferralDirection,
        /// Receiving site.
        to_site: String,
        /// Why.
        reason: String,
    },
}

impl Action {
    /// Name for the audit log and error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Enqueue => "enqueue",
            Action::Offer { .. } => "offer",
            Action::Accept { .. } => "accept",
            Action::DeclineOffer => "decline_offer",
            Action::OfferTimedOut => "offer_timed_out",
            Action::Decline { .. } => "decline",
            Action::Cancel { .. } => "cancel",
            Action::Expire => "expire",
            Action::Join => "join",
            Action::SaveOpinion(_) => "save_opinion",
            Action::SignOpinion => "sign_opinion",
            Action::Acknowledge => "acknowledge",
            Action::Refer { .. } => "refer",
        }
    }
}

/// Why an action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    /// The actor's role may not do this at all.
    #[error("a {role} may not {action}")]
    WrongRole {
        /// Actor's role.
        role: &'static str,
        /// Action.
        action: &'static str,
    },
    /// The actor has no part in this request.
    #[error("this request is not yours")]
    NotYours,
    /// Not allowed in the current state.
    #[error("cannot {action} a request that is {state}")]
    IllegalTransition {
        /// Action.
        action: &'static str,
        /// Current state.
        state: &'static str,
    },
    /// The action itself is incomplete.
    #[error("{0}")]
    Invalid(String),
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::ReferringDoctor => "referring doctor",
        Role::Specialist => "specialist",
        Role::ItAdmin => "IT admin",
        Role::Operator => "operator",
    }
}

/// Whether `user` takes part in `req` (its referring doctor, or the specialist it is offered to or
/// accepted by). Only participants see clinical content or join the room.
pub fn is_participant(req: &Request, user: &User) -> bool {
    match user.role {
        Role::ReferringDoctor => req.requester == user.username,
        Role::Specialist => req.specialist.as_deref() == Some(user.username.as_str()),
        Role::ItAdmin | Role::Operator => false,
    }
}

/// Whether `user` may read `req`: its participants; specialists of its specialty while it waits in
/// the queue (they pick from it); and, once the opinion is signed, the clinicians of both sites (the
/// record is kept at the county and at the centre: referring doctors of the requesting site,
/// specialists of the answering centre).
pub fn may_read(req: &Request, user: &User) -> bool {
    let signed = matches!(
        req.state,
        RequestState::OpinionWritten | RequestState::Closed
    );
    is_participant(req, user)
        || (user.role == Role::Specialist
            && req.state.waiting()
            && user.specialties.contains(&req.specialty))
        || (signed
            && match user.role {
                Role::ReferringDoctor => user.site_id == req.requester_site,
                Role::Specialist => req.centre.as_deref() == Some(user.site_id.as_str()),
                Role::ItAdmin | Role::Operator => false,
            })
}

/// The canonical text a signature covers.
pub fn signed_text(o: &Opinion, signed_by: &str, signed_at: Millis) -> String {
    format!(
        "findings:{}\ndiagnosis:{}\nrecommendations:{}\nfollow_up:{}\nsigned_by:{}\nsigned_at:{}",
        o.findings, o.diagnosis, o.recommendations, o.follow_up, signed_by, signed_at
    )
}

/// Hex SHA-256 of an opinion's signed text.
pub fn opinion_digest(o: &Opinion, signed_by: &str, signed_at: Millis) -> String {
    let digest = Sha256::digest(signed_text(o, signed_by, signed_at).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Apply `action` by `actor` at `now` to `req`. Returns the changed request (version bumped) or why
/// not. Pure: nothing is stored here.
pub fn apply(
    req: &Request,
    actor: Actor<'_>,
    action: Action,
    now: Millis,
) -> Result<Request, WorkflowError> {
    use RequestState as S;
    let name = action.name();
    let illegal = || WorkflowError::IllegalTransition {
        action: name,
        state: req.state.as_str(),
    };
    let need_role = |roles: &[Role]| -> Result<Option<&User>, WorkflowError> {
        match actor {
            Actor::System => Ok(None),
            Actor::User(u) if roles.contains(&u.role) => Ok(Some(u)),
            Actor::User(u) => Err(WorkflowError::WrongRole {
                role: role_name(u.role),
                action: name,
            }),
        }
    };
    let system_only = || -> Result<(), WorkflowError> {
        match actor {
            Actor::System => Ok(()),
            Actor::User(u) => Err(WorkflowError::WrongRole {
                role: role_name(u.role),
                action: name,
            }),
        }
    };
    let mut r = req.clone();
    match action {
        Action::Enqueue => {
            system_only()?;
            if req.state != S::Requested {
                return Err(illegal());
            }
            r.state = S::Queued;
            r.queued_at = Some(now);
        }
        Action::Offer { specialist, centre } => {
            system_only()?;
            if req.state != S::Queued {
                return Err(illegal());
            }
            r.state = S::Offered;
            r.specialist = Some(specialist);
            r.centre = Some(centre);
            r.offered_at = Some(now);
        }
        Action::Accept { room } => {
            let Some(u) = need_role(&[Role::Specialist])? else {
                return Err(WorkflowError::Invalid("only a specialist accepts".into()));
            };
            if !u.specialties.contains(&req.specialty) {
                return Err(WorkflowError::Invalid(format!(
                    "the request asks for {}, which is not among your specialties",
                    req.specialty
                )));
            }
            match req.state {
                S::Offered if req.specialist.as_deref() == Some(u.username.as_str()) => {}
                S::Offered => {
                    return Err(WorkflowError::IllegalTransition {
                        action: name,
                        state: "offered to another specialist",
                    });
                }
                S::Queued => {}
                _ => return Err(illegal()),
            }
            r.state = S::Accepted;
            r.specialist = Some(u.username.clone());
            r.centre = Some(u.site_id.clone());
            r.accepted_at = Some(now);
            r.room = Some(room);
            r.returned_to_queue = false;
        }
        Action::DeclineOffer | Action::OfferTimedOut => {
            if matches!(action, Action::OfferTimedOut) {
                system_only()?;
            } else {
                need_role(&[Role::Specialist])?;
            }
            if req.state != S::Offered {
                return Err(illegal());
            }
            if let Actor::User(u) = actor
                && req.specialist.as_deref() != Some(u.username.as_str())
            {
                return Err(WorkflowError::NotYours);
            }
            if let Some(s) = r.specialist.take()
                && !r.declined_by.contains(&s)
            {
                r.declined_by.push(s);
            }
            r.state = S::Queued;
            r.centre = None;
            r.offered_at = None;
            r.returned_to_queue = true;
        }
        Action::Decline { reason } => {
            let Some(u) = need_role(&[Role::Specialist])? else {
                return Err(WorkflowError::Invalid("only a specialist declines".into()));
            };
            if !req.state.waiting() {
                return Err(illegal());
            }
            let offered_to_me = req.specialist.as_deref() == Some(u.username.as_str());
            if !(offered_to_me
                || (req.state == S::Queued && u.specialties.contains(&req.specialty)))
            {
                return Err(WorkflowError::NotYours);
            }
            r.state = S::Declined;
            r.specialist = Some(u.username.clone());
            r.centre = Some(u.site_id.clone());
            r.closing_reason = Some(reason);
        }
        Action::Cancel { reason } => {
            let Some(u) = need_role(&[Role::ReferringDoctor])? else {
                return Err(WorkflowError::Invalid(
                    "only the referring doctor cancels".into(),
                ));
            };
            if req.requester != u.username {
                return Err(WorkflowError::NotYours);
            }
            if !matches!(
                req.state,
                S::Requested | S::Queued | S::Offered | S::Accepted
            ) {
                return Err(illegal());
            }
            r.state = S::Cancelled;
            r.closing_reason = Some(reason);
        }
        Action::Expire => {
            system_only()?;
            if !req.state.waiting() {
                return Err(illegal());
            }
            r.state = S::Expired;
        }
        Action::Join => {
            if let Actor::User(u) = actor
                && !is_participant(req, u)
            {
                return Err(WorkflowError::NotYours);
            }
            match req.state {
                S::Accepted => r.state = S::InConsultation,
                // Rejoining after a dropped line, or a follow-up talk about the opinion.
                S::InConsultation | S::OpinionWritten => {}
                _ => return Err(illegal()),
            }
        }
        Action::SaveOpinion(text) => {
            let Some(u) = need_role(&[Role::Specialist])? else {
                return Err(WorkflowError::Invalid(
                    "only the specialist writes the opinion".into(),
                ));
            };
            if !is_participant(req, u) {
                return Err(WorkflowError::NotYours);
            }
            if !matches!(req.state, S::Accepted | S::InConsultation) {
                return Err(illegal());
            }
            r.opinion = Some(Opinion {
                findings: text.findings,
                diagnosis: text.diagnosis,
                recommendations: text.recommendations,
                follow_up: text.follow_up,
                author: u.username.clone(),
                updated_at: now,
                signature: None,
            });
        }
        Action::SignOpinion => {
            let Some(u) = need_role(&[Role::Specialist])? else {
                return Err(WorkflowError::Invalid("only the specialist signs".into()));
            };
            if !is_participant(req, u) {
                return Err(WorkflowError::NotYours);
            }
            if !matches!(req.state, S::Accepted | S::InConsultation) {
                return Err(illegal());
            }
            let Some(opinion) = r.opinion.as_mut() else {
                return Err(WorkflowError::Invalid(
                    "write the opinion before signing it".into(),
                ));
            };
            if opinion.diagnosis.trim().is_empty() || opinion.recommendations.trim().is_empty() {
                return Err(WorkflowError::Invalid(
                    "an opinion needs a diagnosis and recommendations before it is signed".into(),
                ));
            }
            let digest = opinion_digest(opinion, &u.username, now);
            opinion.signature = Some(Signature {
                signed_by: u.username.clone(),
                signer_name: u.display_name.clone(),
                signed_at: now,
                digest,
            });
            r.state = S::OpinionWritten;
        }
        Action::Acknowledge => {
            let Some(u) = need_role(&[Role::ReferringDoctor])? else {
                return Err(WorkflowError::Invalid(
                    "only the referring doctor acknowledges".into(),
                ));
            };
            if req.requester != u.username {
                return Err(WorkflowError::NotYours);
            }
            if req.state != S::OpinionWritten {
                return Err(illegal());
            }
            r.state = S::Closed;
            r.acknowledged_at = Some(now);
        }
        Action::Refer {
            direction,
            to_site,
            reason,
        } => {
            let Some(u) = need_role(&[Role::ReferringDoctor, Role::Specialist])? else {
                return Err(WorkflowError::Invalid(
                    "only a participant proposes a referral".into(),
                ));
            };
            if !is_participant(req, u) {
                return Err(WorkflowError::NotYours);
            }
            if !matches!(req.state, S::InConsultation | S::OpinionWritten | S::Closed) {
                return Err(illegal());
            }
            r.referrals.push(Referral {
                direction,
                to_site,
                reason,
                proposed_by: u.username.clone(),
                proposed_at: now,
            });
        }
    }
    r.updated_at = now;
    r.version = req.version + 1;
    Ok(r)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::{Consent, ConsentMethod, Urgency};

    pub(crate) fn user(name: &str, role: Role, site: &str) -> User {
        User {
            username: name.into(),
            display_name: name.to_uppercase(),
            role,
            site_id: site.into(),
            specialties: if role == Role::Specialist {
                vec!["cardiology".into()]
            } else {
                vec![]
            },
            password_hash: String::new(),
            disabled: false,
            token_generation: 0,
        }
    }

    pub(crate) fn request(id: &str, urgency: Urgency, created: Millis) -> Request {
        Request {
            id: id.into(),
            patient_pseudonym: "P-001".into(),
            specialty: "cardiology".into(),
            urgency,
            question: "ST elevation?".into(),
            preferred_centre: None,
            consent: Consent {
                recorded_by: "doc".into(),
                recorded_at: created,
                method: ConsentMethod::Written,
            },
            requester: "doc".into(),
            requester_site: "county".into(),
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

    fn text() -> OpinionText {
        OpinionText {
            findings: "sinus rhythm".into(),
            diagnosis: "no infarction".into(),
            recommendations: "troponin in 3 h".into(),
            follow_up: "recheck ECG".into(),
        }
    }

    #[test]
    fn the_whole_happy_path() {
        let doc = user("doc", Role::ReferringDoctor, "county");
        let spec = user("spec", Role::Specialist, "centre");
        let r = request("r1", Urgency::Urgent, 1_000);
        let r = apply(&r, Actor::System, Action::Enqueue, 1_100).unwrap();
        assert_eq!(
            (r.state, r.queued_at, r.version),
            (RequestState::Queued, Some(1_100), 2)
        );
        let r = apply(
            &r,
            Actor::System,
            Action::Offer {
                specialist: "spec".into(),
                centre: "centre".into(),
            },
            1_200,
        )
        .unwrap();
        assert_eq!(r.state, RequestState::Offered);
        let r = apply(
            &r,
            Actor::User(&spec),
            Action::Accept {
                room: "room-1".into(),
            },
            1_300,
        )
        .unwrap();
        assert_eq!(r.state, RequestState::Accepted);
        assert_eq!(r.room.as_deref(), Some("room-1"));
        let r = apply(&r, Actor::User(&doc), Action::Join, 1_400).unwrap();
        assert_eq!(r.state, RequestState::InConsultation);
        let r = apply(&r, Actor::User(&spec), Action::Join, 1_450).unwrap();
        assert_eq!(r.state, RequestState::InConsultation);
        let r = apply(&r, Actor::User(&spec), Action::SaveOpinion(text()), 1_500).unwrap();
        let r = apply(&r, Actor::User(&spec), Action::SignOpinion, 1_600).unwrap();
        assert_eq!(r.state, RequestState::OpinionWritten);
        let sig = r.opinion.as_ref().unwrap().signature.clone().unwrap();
        assert_eq!(
            sig.digest,
            opinion_digest(r.opinion.as_ref().unwrap(), "spec", 1_600)
        );
        assert_eq!(sig.digest.len(), 64);
        // A signed opinion cannot change.
        assert!(matches!(
            apply(&r, Actor::User(&spec), Action::SaveOpinion(text()), 1_650),
            Err(WorkflowError::IllegalTransition { .. })
        ));
        let r = apply(
            &r,
            Actor::User(&spec),
            Action::Refer {
                direction: ReferralDirection::Down,
                to_site: "county".into(),
                reason: "follow-up at home".into(),
            },
            1_700,
        )
        .unwrap();
        assert_eq!(r.referrals.len(), 1);
        let r = apply(&r, Actor::User(&doc), Action::Acknowledge, 1_800).unwrap();
        assert_eq!(
            (r.state, r.acknowledged_at),
            (RequestState::Closed, Some(1_800))
        );
        assert_eq!(r.version, 10);
    }

    #[test]
    fn illegal_transitions_are_refused_with_the_state() {
        let doc = user("doc", Role::ReferringDoctor, "county");
        let spec = user("spec", Role::Specialist, "centre");
        let r = request("r1", Urgency::Routine, 0);
        let e = apply(&r, Actor::User(&doc), Action::Acknowledge, 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot acknowledge a request that is requested"
        );
        assert!(
            apply(
                &r,
                Actor::User(&spec),
                Action::Accept { room: "x".into() },
                1
            )
            .is_err()
        );
        let q = apply(&r, Actor::System, Action::Enqueue, 1).unwrap();
        assert!(apply(&q, Actor::System, Action::Enqueue, 2).is_err());
        assert!(apply(&q, Actor::User(&spec), Action::SignOpinion, 2).is_err());
        let c = apply(
            &q,
            Actor::User(&doc),
            Action::Cancel {
                reason: "resolved".into(),
            },
            3,
        )
        .unwrap();
        assert_eq!(c.state, RequestState::Cancelled);
        for a in [
            Action::Enqueue,
            Action::Expire,
            Action::Join,
            Action::Cancel { reason: "x".into() },
        ] {
            assert!(
                apply(&c, Actor::System, a, 4).is_err(),
                "cancelled is final"
            );
        }
    }

    #[test]
    fn roles_and_ownership_are_checked() {
        let doc = user("doc", Role::ReferringDoctor, "county");
        let other_doc = user("other", Role::ReferringDoctor, "county");
        let spec = user("spec", Role::Specialist, "centre");
        let spec2 = user("spec2", Role::Specialist, "centre");
        let it = user("it", Role::ItAdmin, "county");
        let q = apply(
            &request("r", Urgency::Routine, 0),
            Actor::System,
            Action::Enqueue,
            1,
        )
        .unwrap();
        assert!(matches!(
            apply(
                &q,
                Actor::User(&doc),
                Action::Accept { room: "x".into() },
                2
            ),
            Err(WorkflowError::WrongRole { .. })
        ));
        assert!(matches!(
            apply(
                &q,
                Actor::User(&other_doc),
                Action::Cancel { reason: "x".into() },
                2
            ),
            Err(WorkflowError::NotYours)
        ));
        assert!(matches!(
            apply(&q, Actor::User(&it), Action::Join, 2),
            Err(WorkflowError::NotYours)
        ));
        assert!(matches!(
            apply(
                &q,
                Actor::User(&spec),
                Action::Offer {
                    specialist: "s".into(),
                    centre: "c".into()
                },
                2
            ),
            Err(WorkflowError::WrongRole { .. })
        ));
        // Offered to spec: spec2 cannot take it or pass on it.
        let o = apply(
            &q,
            Actor::System,
            Action::Offer {
                specialist: "spec".into(),
                centre: "centre".into(),
            },
            2,
        )
        .unwrap();
        assert!(
            apply(
                &o,
                Actor::User(&spec2),
                Action::Accept { room: "x".into() },
                3
            )
            .is_err()
        );
        assert!(matches!(
            apply(&o, Actor::User(&spec2), Action::DeclineOffer, 3),
            Err(WorkflowError::NotYours)
        ));
        // A specialist of another specialty cannot take it from the queue.
        let mut neuro = user("neuro", Role::Specialist, "centre");
        neuro.specialties = vec!["neurology".into()];
        assert!(matches!(
            apply(
                &q,
                Actor::User(&neuro),
                Action::Accept { room: "x".into() },
                3
            ),
            Err(WorkflowError::Invalid(_))
        ));
        // The doctor reads their own request; the IT admin reads nothing clinical.
        assert!(may_read(&q, &doc) && !may_read(&q, &other_doc) && !may_read(&q, &it));
        assert!(may_read(&q, &spec) && !may_read(&q, &neuro));
    }

    #[test]
    fn a_declined_offer_goes_back_to_the_head_and_skips_the_decliner() {
        let spec = user("spec", Role::Specialist, "centre");
        let q = apply(
            &request("r", Urgency::Routine, 0),
            Actor::System,
            Action::Enqueue,
            1,
        )
        .unwrap();
        let o = apply(
            &q,
            Actor::System,
            Action::Offer {
                specialist: "spec".into(),
                centre: "centre".into(),
            },
            2,
        )
        .unwrap();
        let back = apply(&o, Actor::User(&spec), Action::DeclineOffer, 3).unwrap();
        assert_eq!(back.state, RequestState::Queued);
        assert!(back.returned_to_queue);
        assert_eq!(back.declined_by, vec!["spec".to_string()]);
        assert_eq!(back.specialist, None);
        assert_eq!(
            back.queued_at,
            Some(1),
            "waiting time keeps counting from the first queueing"
        );
        // Declining the request itself is final and keeps the reason.
        let d = apply(
            &o,
            Actor::User(&spec),
            Action::Decline {
                reason: "needs surgery now".into(),
            },
            3,
        )
        .unwrap();
        assert_eq!(d.state, RequestState::Declined);
        assert_eq!(d.closing_reason.as_deref(), Some("needs surgery now"));
    }

    #[test]
    fn signing_needs_a_diagnosis() {
        let spec = user("spec", Role::Specialist, "centre");
        let q = apply(
            &request("r", Urgency::Routine, 0),
            Actor::System,
            Action::Enqueue,
            1,
        )
        .unwrap();
        let a = apply(
            &q,
            Actor::User(&spec),
            Action::Accept { room: "x".into() },
            2,
        )
        .unwrap();
        assert!(matches!(
            apply(&a, Actor::User(&spec), Action::SignOpinion, 3),
            Err(WorkflowError::Invalid(_))
        ));
        let mut t = text();
        t.diagnosis = "  ".into();
        let a = apply(&a, Actor::User(&spec), Action::SaveOpinion(t), 3).unwrap();
        assert!(matches!(
            apply(&a, Actor::User(&spec), Action::SignOpinion, 4),
            Err(WorkflowError::Invalid(_))
        ));
    }
}
