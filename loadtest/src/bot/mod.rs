//! Bots: a participant that joins a Telemed consultation room over the real WebSocket signaling
//! and sends and receives real media through the relay.
//!
//! A bot publishes the [`media`](crate::media) test pattern as VP8 (three simulcast layers like the
//! web client, or one adaptive layer) and Opus speech, following what the relay asks of a
//! publisher: dynacast (`publisher_layers`), keyframe requests, and its own uplink estimate from
//! the relay's TWCC feedback. It subscribes to everything the relay offers, decodes it and counts
//! frame rate, freezes, undecodable frames and audio gaps per publisher.
//!
//! WebRTC is str0m in frame mode (it packetizes VP8 and Opus, writes the simulcast RIDs, runs
//! TWCC and the send-side estimator); [`signaling`] speaks the JSON protocol; [`peer`] drives
//! str0m and the media with the bot's clock.

pub mod peer;
pub mod signaling;

use std::net::IpAddr;
use std::time::Duration;

use thiserror::Error;

use crate::media::{
    AudioStats, DecoderStats, MediaCounters, MediaError, PlayoutStats, PublisherConfig,
};

/// What a bot does.
#[derive(Debug, Clone)]
pub struct BotConfig {
    /// The signaling WebSocket, e.g. `ws://127.0.0.1:8080/ws`.
    pub ws_url: String,
    /// A session token of a participant of the request.
    pub token: String,
    /// The consultation request whose room to join.
    pub request_id: String,
    /// The local address of the bot's UDP socket (its host candidate).
    pub bind: IpAddr,
    /// The video it publishes, if any (it always publishes audio: the relay waits for a
    /// participant's offer before it offers anything, as with the web client).
    pub video: Option<VideoMode>,
    /// Seed of the audio signal.
    pub seed: u64,
    /// How long it stays in the room once joined.
    pub duration: Duration,
}

/// How a bot publishes video.
#[derive(Debug, Clone)]
pub enum VideoMode {
    /// The web client's three layers `q`, `h`, `f`.
    Simulcast(PublisherConfig),
    /// One layer without RID at this cap and scale.
    Adaptive {
        /// Camera and encoder settings.
        config: PublisherConfig,
        /// `maxBitrate` in bit/s.
        max_bitrate_bps: u32,
        /// `scaleResolutionDownBy`.
        scale_resolution_down_by: f64,
    },
}

/// What went wrong in a bot.
#[derive(Debug, Error)]
pub enum BotError {
    /// The WebSocket failed.
    #[error("WebSocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The server answered something unexpected.
    #[error("signaling: {0}")]
    Signaling(String),
    /// str0m refused an SDP, a candidate or media.
    #[error("WebRTC: {0}")]
    Rtc(#[from] str0m::RtcError),
    /// The UDP socket failed.
    #[error("UDP: {0}")]
    Io(#[from] std::io::Error),
    /// An encoder or decoder failed.
    #[error(transparent)]
    Media(#[from] MediaError),
}

/// What a bot sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Video frames handed to str0m, all layers.
    pub video_frames: u64,
    /// Keyframes among them.
    pub video_keyframes: u64,
    /// Encoded video bytes.
    pub video_bytes: u64,
    /// Opus packets.
    pub audio_packets: u64,
    /// Keyframe requests (PLI or FIR) from the relay.
    pub keyframe_requests: u64,
    /// `publisher_layers` messages applied.
    pub layer_changes: u64,
}

/// What a bot received from one publisher.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// The publisher.
    pub participant_id: String,
    /// Shown video frames.
    pub playout: PlayoutStats,
    /// The video decoder's counters.
    pub video: DecoderStats,
    /// The audio receiver's counters.
    pub audio: AudioStats,
}

impl Received {
    /// The report counters (`fps`, `height`, `freezes`, ...).
    pub fn counters(&self) -> MediaCounters {
        MediaCounters::collect(&self.playout, &self.video, &self.audio)
    }
}

/// The outcome of one bot.
#[derive(Debug, Clone, Default)]
pub struct BotReport {
    /// The bot's participant id.
    pub participant_id: String,
    /// Whether media connected (ICE and DTLS).
    pub connected: bool,
    /// What it sent.
    pub sent: Sent,
    /// What it received, per publisher.
    pub received: Vec<Received>,
}

/// Joins the room, sends and receives for [`BotConfig::duration`], and reports.
pub async fn run(config: BotConfig) -> Result<BotReport, BotError> {
    let signaling =
        signaling::Signaling::join(&config.ws_url, &config.token, &config.request_id).await?;
    peer::Peer::start(&config, signaling)
        .await?
        .run(config.duration)
        .await
}
