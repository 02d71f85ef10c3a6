//! One WebSocket signaling session: token authentication, live workflow notifications, joining a
//! consultation's room, SDP and candidate exchange, relay events.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use media_relay::{JoinOptions, LeaveReason, Membership, RelayError, RelayEvent};
use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::domain::{User, UserView};
use crate::hub::Subscription;
use crate::protocol::{self, ClientMsg, ErrorCode, MAX_MESSAGE_BYTES, Participant, ServerMsg};
use crate::workflow::ServiceError;
use crate::{AppState, AuthFailure};

/// How often an authenticated session's token is checked again.
const TOKEN_RECHECK: Duration = Duration::from_secs(60);

/// Most messages a client may send per second.
const RATE_LIMIT_PER_SEC: u32 = 50;

struct Joined {
    /// The consultation, or `None` for a line test.
    request_id: Option<String>,
    membership: Membership,
    events: mpsc::UnboundedReceiver<RelayEvent>,
}

struct Session {
    state: Arc<AppState>,
    peer_addr: SocketAddr,
    user: Option<User>,
    /// The token the session authenticated with, checked again every minute.
    token: Option<String>,
    notices: Option<Subscription>,
    joined: Option<Joined>,
    window: Instant,
    count: u32,
    rate_error_sent: bool,
}

async fn next_event(joined: &mut Option<Joined>) -> Option<RelayEvent> {
    match joined {
        Some(j) => j.events.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_notice(notices: &mut Option<Subscription>) -> Option<ServerMsg> {
    match notices {
        Some(n) => n.rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Run one session until the socket closes.
pub async fn run(socket: WebSocket, state: Arc<AppState>, peer_addr: SocketAddr) {
    state.ws_connections.fetch_add(1, Ordering::Relaxed);
    let (mut tx, mut rx) = socket.split();
    let mut s = Session {
        state: state.clone(),
        peer_addr,
        user: None,
        token: None,
        notices: None,
        joined: None,
        window: Instant::now(),
        count: 0,
        rate_error_sent: false,
    };
    // A password change, a disabled account or an expired token ends an open session too.
    let mut recheck = tokio::time::interval(TOKEN_RECHECK);
    recheck.tick().await;
    loop {
        let out: Vec<ServerMsg> = tokio::select! {
            _ = recheck.tick() => match s.recheck().await {
                Ok(()) => vec![],
                Err(err) => {
                    let _ = tx.send(Message::Text(err.to_json().into())).await;
                    let _ = tx
                        .send(Message::Close(Some(CloseFrame {
                            code: 1008,
                            reason: Utf8Bytes::from_static("log in again"),
                        })))
                        .await;
                    break;
                }
            },
            msg = rx.next() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(Message::Text(text))) => {
                    if text.len() > MAX_MESSAGE_BYTES {
                        let err = ServerMsg::error(
                            ErrorCode::TooLarge,
                            format!("message of {} bytes is over the limit of {MAX_MESSAGE_BYTES}", text.len()),
                            None,
                        );
                        let _ = tx.send(Message::Text(err.to_json().into())).await;
                        let _ = tx
                            .send(Message::Close(Some(CloseFrame {
                                code: 1009,
                                reason: Utf8Bytes::from_static("message too big"),
                            })))
                            .await;
                        break;
                    }
                    s.on_text(&text).await
                }
                Some(Ok(Message::Binary(_))) => vec![ServerMsg::error(
                    ErrorCode::BinaryNotSupported,
                    "binary frames are not part of the protocol; send JSON text",
                    None,
                )],
                Some(Ok(_)) => vec![],
            },
            Some(event) = next_event(&mut s.joined) => s.on_relay_event(event).await,
            Some(notice) = next_notice(&mut s.notices) => vec![notice],
        };
        for m in out {
            if tx.send(Message::Text(m.to_json().into())).await.is_err() {
                break;
            }
        }
    }
    s.leave_room(LeaveReason::Disconnected, "disconnected")
        .await;
    state.ws_connections.fetch_sub(1, Ordering::Relaxed);
    debug!(peer = %peer_addr, "signaling session closed");
}

impl Session {
    /// Check the session's token again; an error means the session must end.
    async fn recheck(&self) -> Result<(), ServerMsg> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        match self.state.authenticate(token).await {
            Ok(_) | Err(AuthFailure::Store(_)) => Ok(()),
            Err(e) => {
                let (code, message) = auth_error(e);
                Err(ServerMsg::error(code, message, None))
            }
        }
    }

    fn over_rate(&mut self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.count = 0;
            self.rate_error_sent = false;
        }
        self.count += 1;
        self.count > RATE_LIMIT_PER_SEC
    }

    async fn on_text(&mut self, text: &str) -> Vec<ServerMsg> {
        if self.over_rate() {
            if self.rate_error_sent {
                return vec![];
            }
            self.rate_error_sent = true;
            return vec![ServerMsg::error(
                ErrorCode::RateLimited,
                format!("more than {RATE_LIMIT_PER_SEC} messages a second; message dropped"),
                None,
            )];
        }
        let msg = match protocol::parse(text) {
            Ok(m) => m,
            Err(rejected) => return vec![rejected.into()],
        };
        let ty = msg_type(&msg);
        match self.on_message(msg).await {
            Ok(out) => out,
            Err((code, message)) => vec![ServerMsg::error(code, message, Some(ty))],
        }
    }

    fn membership(&self) -> Result<Membership, (ErrorCode, String)> {
        self.joined
            .as_ref()
            .map(|j| j.membership)
            .ok_or((ErrorCode::NotJoined, "join a room first".into()))
    }

    fn relay_error(&mut self, e: RelayError) -> (ErrorCode, String) {
        let code = match e {
            RelayError::RoomFull(_) => ErrorCode::RoomFull,
            RelayError::BadSdp(_) => ErrorCode::BadSdp,
            RelayError::NoPendingOffer => ErrorCode::NoPendingOffer,
            RelayError::BadCandidate(_) => ErrorCode::BadCandidate,
            RelayError::NotInRoom => {
                self.joined = None;
                ErrorCode::NotJoined
            }
            RelayError::Unavailable | RelayError::Io(_) => ErrorCode::Internal,
        };
        (code, e.to_string())
    }

    async fn on_message(&mut self, msg: ClientMsg) -> Result<Vec<ServerMsg>, (ErrorCode, String)> {
        if !matches!(msg, ClientMsg::Auth { .. } | ClientMsg::Ping) && self.user.is_none() {
            return Err((
                ErrorCode::NotLoggedIn,
                "authenticate first with {\"type\":\"auth\",\"token\":...}".into(),
            ));
        }
        let relay = self.state.relay.clone();
        match msg {
            ClientMsg::Ping => Ok(vec![ServerMsg::Pong]),
            ClientMsg::Auth { token } => {
                if self.user.is_some() {
                    return Err((ErrorCode::AlreadyLoggedIn, "already authenticated".into()));
                }
                let user = self.state.authenticate(&token).await.map_err(auth_error)?;
                self.token = Some(token);
                debug!(peer = %self.peer_addr, user = %user.username, "signaling session authenticated");
                self.notices = Some(self.state.hub.subscribe(&user.username));
                let view = UserView::from(&user);
                self.user = Some(user);
                Ok(vec![ServerMsg::AuthOk { user: view }])
            }
            ClientMsg::Join { request_id } => {
                if self.joined.is_some() {
                    return Err((
                        ErrorCode::AlreadyJoined,
                        "already in a room; leave first".into(),
                    ));
                }
                let Some(user) = self.user.clone() else {
                    return Err((ErrorCode::NotLoggedIn, "authenticate first".into()));
                };
                let address = Some(self.peer_addr.ip().to_string());
                let (room, emergency) = self
                    .state
                    .workflow
                    .join(&user, &request_id, address.clone())
                    .await
                    .map_err(join_error)?;
                let (events_tx, events) = mpsc::unbounded_channel();
                let options = JoinOptions {
                    display_name: user.display_name.clone(),
                    site: Some(user.site_id.clone()),
                    emergency,
                    line_test: false,
                };
                let info = match relay.join(&room, options, events_tx).await {
                    Ok(info) => info,
                    Err(e) => {
                        self.state
                            .workflow
                            .left(&user, &request_id, address, "relay refused the join")
                            .await;
                        return Err(self.relay_error(e));
                    }
                };
                info!(peer = %self.peer_addr, user = %user.username, participant = %info.membership.participant, "joined a consultation room");
                self.joined = Some(Joined {
                    request_id: Some(request_id.clone()),
                    membership: info.membership,
                    events,
                });
                Ok(vec![ServerMsg::Joined {
                    request_id: Some(request_id),
                    room,
                    participant_id: info.membership.participant.to_string(),
                    participants: info
                        .others
                        .into_iter()
                        .map(|m| Participant {
                            participant_id: m.id.to_string(),
                            display_name: m.display_name,
                        })
                        .collect(),
                }])
            }
            ClientMsg::LineTest => {
                if self.joined.is_some() {
                    return Err((
                        ErrorCode::AlreadyJoined,
                        "already in a room; leave first".into(),
                    ));
                }
                let Some(user) = self.user.clone() else {
                    return Err((ErrorCode::NotLoggedIn, "authenticate first".into()));
                };
                let (events_tx, events) = mpsc::unbounded_channel();
                let options = JoinOptions {
                    display_name: user.display_name.clone(),
                    site: Some(user.site_id.clone()),
                    emergency: false,
                    line_test: true,
                };
                let room = format!("line-test-{}", uuid::Uuid::new_v4());
                let info = relay
                    .join(&room, options, events_tx)
                    .await
                    .map_err(|e| self.relay_error(e))?;
                info!(peer = %self.peer_addr, user = %user.username, participant = %info.membership.participant, "started a line test");
                self.joined = Some(Joined {
                    request_id: None,
                    membership: info.membership,
                    events,
                });
                Ok(vec![ServerMsg::Joined {
                    request_id: None,
                    room,
                    participant_id: info.membership.participant.to_string(),
                    participants: vec![],
                }])
            }
            ClientMsg::Offer { sdp } => {
                let m = self.membership()?;
                relay.offer(m, sdp).await.map_err(|e| self.relay_error(e))?;
                Ok(vec![])
            }
            ClientMsg::Answer { sdp } => {
                let m = self.membership()?;
                relay
                    .answer(m, sdp)
                    .await
                    .map_err(|e| self.relay_error(e))?;
                Ok(vec![])
            }
            ClientMsg::Candidate { candidate, .. } => {
                let m = self.membership()?;
                if let Some(c) = candidate.filter(|c| !c.trim().is_empty()) {
                    relay
                        .candidate(m, c)
                        .await
                        .map_err(|e| self.relay_error(e))?;
                }
                Ok(vec![])
            }
            ClientMsg::Leave => {
                self.membership()?;
                self.leave_room(LeaveReason::Left, "left").await;
                Ok(vec![ServerMsg::Left])
            }
        }
    }

    /// Leave the room, if in one, and audit it.
    async fn leave_room(&mut self, reason: LeaveReason, why: &str) {
        let Some(j) = self.joined.take() else {
            return;
        };
        self.state.relay.leave(j.membership, reason);
        if let (Some(user), Some(request_id)) = (&self.user, &j.request_id) {
            let address = Some(self.peer_addr.ip().to_string());
            self.state
                .workflow
                .left(user, request_id, address, why)
                .await;
        }
    }

    async fn on_relay_event(&mut self, event: RelayEvent) -> Vec<ServerMsg> {
        let msg = match event {
            RelayEvent::Answer { sdp } => ServerMsg::Answer { sdp },
            RelayEvent::Offer { sdp, tracks } => ServerMsg::Offer { sdp, tracks },
            RelayEvent::ParticipantJoined(m) => ServerMsg::ParticipantJoined {
                participant: Participant {
                    participant_id: m.id.to_string(),
                    display_name: m.display_name,
                },
            },
            RelayEvent::ParticipantLeft {
                participant,
                reason,
            } => ServerMsg::ParticipantLeft {
                participant_id: participant.to_string(),
                reason,
            },
            RelayEvent::MediaState(state) => ServerMsg::MediaState { state },
            RelayEvent::Quality(report) => ServerMsg::Quality(report),
            RelayEvent::PublisherLayers { mid, layers } => {
                ServerMsg::PublisherLayers { mid, layers }
            }
            RelayEvent::Removed { reason } => {
                // The relay already dropped the participant (ICE timed out, or a line test ran out of
                // time); audit a consultation, tell a line test's client it is over.
                let Some(j) = self.joined.take() else {
                    return vec![];
                };
                let Some(request_id) = j.request_id else {
                    return vec![ServerMsg::Left];
                };
                if let Some(user) = &self.user {
                    let address = Some(self.peer_addr.ip().to_string());
                    let why = format!("removed by the relay: {reason:?}");
                    self.state
                        .workflow
                        .left(user, &request_id, address, &why)
                        .await;
                }
                return vec![];
            }
        };
        vec![msg]
    }
}

fn msg_type(msg: &ClientMsg) -> &'static str {
    match msg {
        ClientMsg::Auth { .. } => "auth",
        ClientMsg::Join { .. } => "join",
        ClientMsg::LineTest => "line_test",
        ClientMsg::Offer { .. } => "offer",
        ClientMsg::Answer { .. } => "answer",
        ClientMsg::Candidate { .. } => "candidate",
        ClientMsg::Leave => "leave",
        ClientMsg::Ping => "ping",
    }
}

fn auth_error(e: AuthFailure) -> (ErrorCode, String) {
    let code = match e {
        AuthFailure::Expired => ErrorCode::ExpiredToken,
        AuthFailure::Store(_) => ErrorCode::StorageUnavailable,
        AuthFailure::Invalid | AuthFailure::Disabled => ErrorCode::InvalidToken,
    };
    (code, e.to_string())
}

fn join_error(e: ServiceError) -> (ErrorCode, String) {
    use crate::domain::consultation::WorkflowError;
    use crate::store::StoreError;
    let code = match &e {
        ServiceError::Store(StoreError::NotFound) => ErrorCode::NotFound,
        ServiceError::Store(_) => ErrorCode::StorageUnavailable,
        ServiceError::Workflow(WorkflowError::NotYours | WorkflowError::WrongRole { .. }) => {
            ErrorCode::NotYours
        }
        ServiceError::Workflow(_) | ServiceError::Invalid(_) => ErrorCode::IllegalTransition,
    };
    (code, e.to_string())
}
