//! The bot's side of the WebSocket signaling (`docs/signaling.md`): authenticate, join a
//! consultation room, exchange SDP and candidates, and read what the relay tells a client.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::BotError;

/// Longest wait for the server to accept the bot's token and let it join.
const JOIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
/// Largest signaling message the bot accepts.
const MAX_MESSAGE: usize = 1 << 20;
use crate::media::LayerParameters;

/// What the bot acts on from the server; everything else is ignored.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// The answer to the bot's offer.
    Answer(String),
    /// The relay offers a change (subscriptions), with the publisher of each receive mid.
    Offer {
        /// SDP.
        sdp: String,
        /// `(mid, participant_id)` of each receive track.
        tracks: Vec<(String, String)>,
    },
    /// How to send the bot's own simulcast layers, by RID (dynacast and end-to-end rate control).
    PublisherLayers(Vec<LayerParameters>),
    /// What the relay forwards to the bot: `(publisher, layer)` per publisher's video (`None`:
    /// paused).
    Quality(Vec<(String, Option<String>)>),
    /// An error about one of the bot's messages.
    Error(String),
    /// Anything else (notifications, quality reports, keep-alive).
    Other,
}

/// An authenticated WebSocket joined to a room.
pub struct Signaling {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The bot's participant id in the room.
    pub participant_id: String,
}

impl Signaling {
    /// Connects to `ws_url`, authenticates with `token` and joins the room of `request_id`.
    pub async fn join(ws_url: &str, token: &str, request_id: &str) -> Result<Self, BotError> {
        tokio::time::timeout(JOIN_TIMEOUT, Self::join_now(ws_url, token, request_id))
            .await
            .map_err(|_| {
                BotError::Signaling(format!(
                    "no auth_ok and joined from {ws_url} within {JOIN_TIMEOUT:?}"
                ))
            })?
    }

    async fn join_now(ws_url: &str, token: &str, request_id: &str) -> Result<Self, BotError> {
        // Server messages are small JSON (SDP is the largest): refuse anything over 1 MiB.
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let (ws, _) =
            tokio_tungstenite::connect_async_with_config(ws_url, Some(config), false).await?;
        let mut s = Signaling {
            ws,
            participant_id: String::new(),
        };
        s.send(json!({"type": "auth", "token": token})).await?;
        s.expect("auth_ok").await?;
        s.send(json!({"type": "join", "request_id": request_id}))
            .await?;
        let joined = s.expect("joined").await?;
        s.participant_id = joined["participant_id"]
            .as_str()
            .ok_or_else(|| BotError::Signaling(format!("joined without participant_id: {joined}")))?
            .to_string();
        Ok(s)
    }

    /// Sends one JSON message.
    pub async fn send(&mut self, msg: Value) -> Result<(), BotError> {
        self.ws.send(Message::text(msg.to_string())).await?;
        Ok(())
    }

    /// The next message the bot acts on; `None` when the server closed the connection.
    pub async fn next(&mut self) -> Result<Option<ServerMessage>, BotError> {
        Ok(self.next_json().await?.map(|v| parse(&v)))
    }

    /// Waits for a message of type `ty`, skipping notifications; an `error` fails.
    async fn expect(&mut self, ty: &str) -> Result<Value, BotError> {
        loop {
            let Some(v) = self.next_json().await? else {
                return Err(BotError::Signaling(format!(
                    "closed while waiting for {ty}"
                )));
            };
            match v["type"].as_str() {
                Some(t) if t == ty => return Ok(v),
                Some("error") => {
                    return Err(BotError::Signaling(format!("waiting for {ty}: {v}")));
                }
                _ => {}
            }
        }
    }

    async fn next_json(&mut self) -> Result<Option<Value>, BotError> {
        while let Some(msg) = self.ws.next().await {
            if let Message::Text(text) = msg? {
                let v = serde_json::from_str(text.as_str())
                    .map_err(|e| BotError::Signaling(format!("non-JSON message: {e}")))?;
                return Ok(Some(v));
            }
        }
        Ok(None)
    }
}

fn parse(v: &Value) -> ServerMessage {
    let text = |key: &str| v[key].as_str().unwrap_or_default().to_string();
    match v["type"].as_str() {
        Some("answer") => ServerMessage::Answer(text("sdp")),
        Some("offer") => ServerMessage::Offer {
            sdp: text("sdp"),
            tracks: v["tracks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| {
                    Some((
                        t["mid"].as_str()?.to_string(),
                        t["participant_id"].as_str()?.to_string(),
                    ))
                })
                .collect(),
        },
        Some("publisher_layers") => ServerMessage::PublisherLayers(
            v["layers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| {
                    Some(LayerParameters {
                        rid: Some(l["rid"].as_str()?.to_string()),
                        active: l["active"].as_bool()?,
                        max_bitrate_bps: u32::try_from(l["max_bitrate_bps"].as_u64()?).ok()?,
                        scale_resolution_down_by: l["scale_resolution_down_by"].as_f64()?,
                    })
                })
                .collect(),
        ),
        Some("quality") => ServerMessage::Quality(
            v["video"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|q| {
                    Some((
                        q["participant_id"].as_str()?.to_string(),
                        q["layer"].as_str().map(str::to_string),
                    ))
                })
                .collect(),
        ),
        Some("error") => ServerMessage::Error(v.to_string()),
        _ => ServerMessage::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_messages_a_bot_acts_on() {
        let offer = json!({"v":1,"type":"offer","sdp":"v=0","tracks":[
            {"mid":"2","participant_id":"p1","kind":"audio"},{"mid":"3","participant_id":"p1","kind":"video"}]});
        assert_eq!(
            parse(&offer),
            ServerMessage::Offer {
                sdp: "v=0".into(),
                tracks: vec![("2".into(), "p1".into()), ("3".into(), "p1".into())]
            }
        );
        let layers = json!({"v":1,"type":"publisher_layers","mid":"1",
            "layers":[{"rid":"f","active":false,"max_bitrate_bps":1500000,"scale_resolution_down_by":1.0},
                      {"rid":"h","active":true,"max_bitrate_bps":720000,"scale_resolution_down_by":2.0},
                      {"rid":"q","active":true}]});
        let plan = |rid: &str, active, max_bitrate_bps, scale_resolution_down_by| LayerParameters {
            rid: Some(rid.into()),
            active,
            max_bitrate_bps,
            scale_resolution_down_by,
        };
        // An entry without every field is skipped.
        assert_eq!(
            parse(&layers),
            ServerMessage::PublisherLayers(vec![
                plan("f", false, 1_500_000, 1.0),
                plan("h", true, 720_000, 2.0)
            ])
        );
        let quality = json!({"type":"quality","estimate_kbps":900,"reason":"best","video":[
            {"participant_id":"p1","layer":"h/t2","target":"h/t2"},{"participant_id":"p2","layer":null}]});
        assert_eq!(
            parse(&quality),
            ServerMessage::Quality(vec![
                ("p1".into(), Some("h/t2".into())),
                ("p2".into(), None)
            ])
        );
        assert_eq!(parse(&json!({"type":"pong"})), ServerMessage::Other);
    }
}
