//! One WebSocket signaling session: login, join, SDP and candidate exchange, relay events.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use media_relay::{LeaveReason, Membership, RelayError, RelayEvent};
use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::AppState;
use crate::config::User;
use crate::protocol::{
    self, ClientMsg, ErrorCode, MAX_MESSAGE_BYTES, Participant, ServerMsg, UserInfo,
};

/// Most messages a client may send per second.
const RATE_LIMIT_PER_SEC: u32 = 50;

struct Joined {
    membership: Membership,
    events: mpsc::UnboundedReceiver<RelayEvent>,
}

struct Session {
    state: Arc<AppState>,
    peer_addr: SocketAddr,
    user: Option<User>,
    joined: Option<Joined>,
    window: Instant,
    count: u32,
    rate_error_sent: bool,
}

/// Whether a room name is acceptable: 1 to 64 characters of `A-Z a-z 0-9 _ - .`.
pub fn valid_room(room: &str) -> bool {
    (1..=64).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Constant-time comparison of two byte strings (length is not hidden).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn next_event(joined: &mut Option<Joined>) -> Option<RelayEvent> {
    match joined {
        Some(j) => j.events.recv().await,
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
        joined: None,
        window: Instant::now(),
        count: 0,
        rate_error_sent: false,
    };
    loop {
        let out: Vec<ServerMsg> = tokio::select! {
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
            Some(event) = next_event(&mut s.joined) => s.on_relay_event(event),
        };
        for m in out {
            if tx.send(Message::Text(m.to_json().into())).await.is_err() {
                break;
            }
        }
    }
    if let Some(j) = s.joined.take() {
        state.relay.leave(j.membership, LeaveReason::Disconnected);
    }
    state.ws_connections.fetch_sub(1, Ordering::Relaxed);
    debug!(peer = %peer_addr, "signaling session closed");
}

impl Session {
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
        if !matches!(msg, ClientMsg::Login { .. } | ClientMsg::Ping) && self.user.is_none() {
            return Err((ErrorCode::NotLoggedIn, "log in first".into()));
        }
        let relay = self.state.relay.clone();
        match msg {
            ClientMsg::Ping => Ok(vec![ServerMsg::Pong]),
            ClientMsg::Login { username, password } => {
                if self.user.is_some() {
                    return Err((ErrorCode::AlreadyLoggedIn, "already logged in".into()));
                }
                if username.len() > 256 || password.len() > 256 {
                    return Err((
                        ErrorCode::BadCredentials,
                        "wrong user name or password".into(),
                    ));
                }
                let user = self
                    .state
                    .config
                    .users
                    .iter()
                    .find(|u| {
                        u.username == username && same(u.password.as_bytes(), password.as_bytes())
                    })
                    .cloned();
                let Some(user) = user else {
                    info!(peer = %self.peer_addr, "failed login");
                    return Err((
                        ErrorCode::BadCredentials,
                        "wrong user name or password".into(),
                    ));
                };
                info!(peer = %self.peer_addr, user = %user.username, "login");
                let info = UserInfo {
                    username: user.username.clone(),
                    display_name: user.display_name.clone(),
                    role: user.role,
                };
                self.user = Some(user);
                Ok(vec![ServerMsg::LoginOk { user: info }])
            }
            ClientMsg::Join { room } => {
                if self.joined.is_some() {
                    return Err((
                        ErrorCode::AlreadyJoined,
                        "already in a room; leave first".into(),
                    ));
                }
                if !valid_room(&room) {
                    return Err((
                        ErrorCode::InvalidRoom,
                        "a room name is 1 to 64 characters of A-Z a-z 0-9 _ - .".into(),
                    ));
                }
                let display_name = self
                    .user
                    .as_ref()
                    .map(|u| u.display_name.clone())
                    .unwrap_or_default();
                let (events_tx, events) = mpsc::unbounded_channel();
                let info = relay
                    .join(&room, &display_name, events_tx)
                    .await
                    .map_err(|e| self.relay_error(e))?;
                self.joined = Some(Joined {
                    membership: info.membership,
                    events,
                });
                Ok(vec![ServerMsg::Joined {
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
                let m = self.membership()?;
                relay.leave(m, LeaveReason::Left);
                self.joined = None;
                Ok(vec![ServerMsg::Left])
            }
        }
    }

    fn on_relay_event(&mut self, event: RelayEvent) -> Vec<ServerMsg> {
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
            RelayEvent::Removed { .. } => {
                self.joined = None;
                return vec![];
            }
        };
        vec![msg]
    }
}

fn msg_type(msg: &ClientMsg) -> &'static str {
    match msg {
        ClientMsg::Login { .. } => "login",
        ClientMsg::Join { .. } => "join",
        ClientMsg::Offer { .. } => "offer",
        ClientMsg::Answer { .. } => "answer",
        ClientMsg::Candidate { .. } => "candidate",
        ClientMsg::Leave => "leave",
        ClientMsg::Ping => "ping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        assert!(valid_room("demo"));
        assert!(valid_room("county-1.cardio_2"));
        assert!(!valid_room(""));
        assert!(!valid_room("has space"));
        assert!(!valid_room("会诊"));
        assert!(!valid_room(&"x".repeat(65)));
    }

    #[test]
    fn constant_time_compare() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
