//! The WebSocket signaling protocol, version 1 (see `docs/signaling.md`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this server speaks.
pub const VERSION: u64 = 1;
/// Largest WebSocket message accepted.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// A message from the client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// Authenticate with the token from `POST /api/v1/login`.
    Auth {
        /// Login token.
        token: String,
    },
    /// Enter the consultation room of an accepted request.
    Join {
        /// The request.
        request_id: String,
    },
    /// SDP offer.
    Offer {
        /// SDP.
        sdp: String,
    },
    /// SDP answer.
    Answer {
        /// SDP.
        sdp: String,
    },
    /// Trickled ICE candidate; `None` or empty for end of candidates.
    Candidate {
        /// The `candidate:` line.
        candidate: Option<String>,
        /// Its m-line id (unused: everything is bundled).
        #[serde(default)]
        sdp_mid: Option<String>,
        /// Its m-line index (unused).
        #[serde(default)]
        sdp_m_line_index: Option<u32>,
    },
    /// Start a line test: a room of one's own whose media the relay sends back, with the downlink
    /// probed up to what the line carries. Leave it with `leave`; the relay ends it after 30 s.
    LineTest,
    /// Leave the room.
    Leave,
    /// Keep-alive.
    Ping,
}

/// The message types the client may send, for `unknown_type` detection.
const CLIENT_TYPES: &[&str] = &[
    "auth",
    "join",
    "offer",
    "answer",
    "candidate",
    "line_test",
    "leave",
    "ping",
];

/// Machine-readable error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not a JSON object.
    BadJson,
    /// A known type with missing or wrongly typed fields.
    BadMessage,
    /// Unknown type.
    UnknownType,
    /// `v` is not 1.
    UnsupportedVersion,
    /// Message over 64 KiB.
    TooLarge,
    /// Binary frame.
    BinaryNotSupported,
    /// Not authenticated yet.
    NotLoggedIn,
    /// The token is malformed, forged, revoked or its account disabled.
    InvalidToken,
    /// The token has expired.
    ExpiredToken,
    /// Second authentication.
    AlreadyLoggedIn,
    /// No such request.
    NotFound,
    /// The request is not this user's.
    NotYours,
    /// The request is not in a state whose room can be joined.
    IllegalTransition,
    /// Storage is unavailable.
    StorageUnavailable,
    /// Already in a room.
    AlreadyJoined,
    /// Room is full.
    RoomFull,
    /// Not in a room.
    NotJoined,
    /// Bad SDP.
    BadSdp,
    /// Answer without an offer.
    NoPendingOffer,
    /// Bad ICE candidate.
    BadCandidate,
    /// Too many messages.
    RateLimited,
    /// The relay could not do it.
    Internal,
}

/// A participant as announced to others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Participant {
    /// Its id.
    pub participant_id: String,
    /// Its display name.
    pub display_name: String,
}

/// A message to the client.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// Authentication succeeded.
    AuthOk {
        /// Who.
        user: crate::domain::UserView,
    },
    /// A request changed (sent to both of its sides), or its queue position or wait did.
    RequestUpdated {
        /// The request.
        request: Box<crate::workflow::RequestView>,
    },
    /// A request is offered to this specialist.
    OfferMade {
        /// The request.
        request: Box<crate::workflow::RequestView>,
    },
    /// A specialist accepted: sent to both sides at once.
    Paired {
        /// The request, with its room.
        request: Box<crate::workflow::RequestView>,
    },
    /// The queue of a specialty changed (sent to available specialists of it).
    QueueChanged {
        /// Specialty id.
        specialty: String,
    },
    /// Joined a room.
    Joined {
        /// The request whose room this is (absent for a line test).
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        /// Room name.
        room: String,
        /// Own id.
        participant_id: String,
        /// The others.
        participants: Vec<Participant>,
    },
    /// SDP answer.
    Answer {
        /// SDP.
        sdp: String,
    },
    /// SDP offer with the receive tracks.
    Offer {
        /// SDP.
        sdp: String,
        /// Receive tracks by mid.
        tracks: Vec<media_relay::TrackDesc>,
    },
    /// Someone joined.
    ParticipantJoined {
        /// Who.
        participant: Participant,
    },
    /// Someone left.
    ParticipantLeft {
        /// Who.
        participant_id: String,
        /// Why.
        reason: media_relay::LeaveReason,
    },
    /// Media connection state.
    MediaState {
        /// State.
        state: media_relay::MediaState,
    },
    /// What this participant receives and why: the relay's downlink estimate, the layer of each
    /// publisher's video and the reason (`best`, `line_limited`, `site_budget`, `audio_only`,
    /// `no_video`). Sent when it changes.
    Quality(media_relay::QualityReport),
    /// Dynacast and end-to-end rate control: how to send each simulcast layer of the client's own
    /// video track `mid`, by RID: send it or pause it, its maximum bitrate and its downscale of the
    /// camera. The web client applies it with `RTCRtpSender.setParameters`.
    PublisherLayers {
        /// The track's mid in the client's session.
        mid: String,
        /// Per RID: `{rid, active, max_bitrate_bps, scale_resolution_down_by}`.
        layers: Vec<media_relay::LayerActivity>,
    },
    /// Left the room.
    Left,
    /// Keep-alive answer.
    Pong,
    /// Something went wrong.
    Error {
        /// Code.
        code: ErrorCode,
        /// English text for logs.
        message: String,
        /// The type of the failed message, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        request_type: Option<String>,
    },
}

impl ServerMsg {
    /// An error answer.
    pub fn error(code: ErrorCode, message: impl Into<String>, request_type: Option<&str>) -> Self {
        ServerMsg::Error {
            code,
            message: message.into(),
            request_type: request_type.map(str::to_string),
        }
    }

    /// Serialise with the version field.
    pub fn to_json(&self) -> String {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            map.insert("v".into(), Value::from(VERSION));
        }
        value.to_string()
    }
}

/// A message that could not be understood, as an error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Code.
    pub code: ErrorCode,
    /// Text.
    pub message: String,
    /// The type, when it could be read.
    pub request_type: Option<String>,
}

impl From<Rejected> for ServerMsg {
    fn from(r: Rejected) -> Self {
        ServerMsg::Error {
            code: r.code,
            message: r.message,
            request_type: r.request_type,
        }
    }
}

/// Parse one client message.
pub fn parse(text: &str) -> Result<ClientMsg, Rejected> {
    let reject = |code, message: String, request_type: Option<String>| Rejected {
        code,
        message,
        request_type,
    };
    let value: Value = serde_json::from_str(text)
        .map_err(|e| reject(ErrorCode::BadJson, format!("not JSON: {e}"), None))?;
    let Value::Object(map) = &value else {
        return Err(reject(
            ErrorCode::BadJson,
            "a message must be a JSON object".into(),
            None,
        ));
    };
    let ty = match map.get("type") {
        Some(Value::String(t)) => t.clone(),
        _ => {
            return Err(reject(
                ErrorCode::BadMessage,
                "missing string field \"type\"".into(),
                None,
            ));
        }
    };
    match map.get("v") {
        None => {}
        Some(v) if v.as_u64() == Some(VERSION) => {}
        Some(v) => {
            return Err(reject(
                ErrorCode::UnsupportedVersion,
                format!("protocol version {v} is not supported; this server speaks {VERSION}"),
                Some(ty),
            ));
        }
    }
    if !CLIENT_TYPES.contains(&ty.as_str()) {
        let shown: String = ty.chars().take(64).collect();
        return Err(reject(
            ErrorCode::UnknownType,
            format!("unknown message type {shown:?}"),
            Some(shown),
        ));
    }
    serde_json::from_value(value.clone())
        .map_err(|e| reject(ErrorCode::BadMessage, e.to_string(), Some(ty)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_messages() {
        assert_eq!(
            parse(r#"{"v":1,"type":"join","request_id":"r-1","extra":true}"#),
            Ok(ClientMsg::Join {
                request_id: "r-1".into()
            })
        );
        assert_eq!(parse(r#"{"type":"ping"}"#), Ok(ClientMsg::Ping));
        assert!(matches!(
            parse(r#"{"type":"candidate","candidate":null}"#),
            Ok(ClientMsg::Candidate {
                candidate: None,
                ..
            })
        ));
    }

    #[test]
    fn rejects_with_codes() {
        let code = |t: &str| parse(t).unwrap_err().code;
        assert_eq!(code("{nope"), ErrorCode::BadJson);
        assert_eq!(code("[1,2]"), ErrorCode::BadJson);
        assert_eq!(code(r#"{"room":"x"}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"join"}"#), ErrorCode::BadMessage);
        assert_eq!(
            code(r#"{"type":"join","request_id":5}"#),
            ErrorCode::BadMessage
        );
        assert_eq!(
            code(r#"{"v":2,"type":"ping"}"#),
            ErrorCode::UnsupportedVersion
        );
    }

    #[test]
    fn server_messages_carry_version() {
        let s = ServerMsg::Pong.to_json();
        assert_eq!(s, r#"{"type":"pong","v":1}"#);
        let e = ServerMsg::error(ErrorCode::NotLoggedIn, "log in first", Some("join")).to_json();
        assert!(e.contains(r#""code":"not_logged_in""#), "{e}");
    }
}
