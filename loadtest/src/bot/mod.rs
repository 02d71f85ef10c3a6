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

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

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
    /// The times in its report ([`Timeline`], [`LayerEvent`]) count from this instant; bots of one
    /// run share it.
    pub epoch: Instant,
    /// Reach the relay at another address than it advertises, if set.
    pub reroute: Option<Reroute>,
}

/// The bot sends what str0m addresses to `advertised` to `actual` instead, and takes what comes from
/// `actual` as coming from `advertised`: a host inside the relay's own network, which reaches it
/// directly while others go through the link emulator at the advertised address
/// (`--public-ip`). The relay accepts it: it matches datagrams to its candidate, not to the bound
/// address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reroute {
    /// The relay's candidate as it advertises it.
    pub advertised: SocketAddr,
    /// Where the bot really sends.
    pub actual: SocketAddr,
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
    /// When what arrived.
    pub timeline: Timeline,
}

/// Most events a [`Timeline`] keeps of each kind (about 9 hours of 30 fps video; 50 audio packets a
/// second fill it in 5.5 hours); later ones are counted in [`Timeline::dropped`] only.
pub const MAX_TIMELINE_EVENTS: usize = 1_000_000;

/// What one publisher's media did at the receiving bot, in time (since [`BotConfig::epoch`]): the
/// raw material of per-interval figures such as `loadtest bwe`'s segments.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// Media arrivals: when, and the payload bytes (an Opus packet or a depacketized VP8 frame: no
    /// RTP headers, padding, probes or retransmitted copies).
    pub media_bytes: Vec<(Duration, u32)>,
    /// Decoded video frames.
    pub frames: Vec<FrameEvent>,
    /// Complete video frames that reached the decoder.
    pub video_frames: u64,
    /// Video frames lost for good (see [`crate::media::FrameLoss`]).
    pub video_frames_lost: u64,
    /// Events not kept beyond [`MAX_TIMELINE_EVENTS`].
    pub dropped: u64,
}

impl Timeline {
    /// Video frames lost for good (a packet of theirs lost and not repaired in time), % of those
    /// sent. Counted in frames, not packets: a frame missing one packet is lost whole.
    pub fn video_loss_after_repair_pct(&self) -> f64 {
        frames_lost_pct(
            self.video_frames,
            self.video_frames + self.video_frames_lost,
        )
    }

    fn push<T>(events: &mut Vec<T>, dropped: &mut u64, event: T) {
        if events.len() < MAX_TIMELINE_EVENTS {
            events.push(event);
        } else {
            *dropped += 1;
        }
    }

    pub(crate) fn on_media(&mut self, at: Duration, bytes: usize) {
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        Self::push(&mut self.media_bytes, &mut self.dropped, (at, bytes));
    }

    pub(crate) fn on_frame(&mut self, frame: FrameEvent) {
        Self::push(&mut self.frames, &mut self.dropped, frame);
    }
}

/// The share of `sent` frames that never arrived complete, of which `arrived` did, % (0 when none
/// were sent).
pub fn frames_lost_pct(arrived: u64, sent: u64) -> f64 {
    if sent == 0 {
        return 0.0;
    }
    100.0 * sent.saturating_sub(arrived) as f64 / sent as f64
}

/// One decoded video frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameEvent {
    /// When it could be shown.
    pub at: Duration,
    /// Its height.
    pub height: u32,
    /// Whether the gap before it was a freeze ([`PlayoutStats::on_frame`]).
    pub after_freeze: bool,
}

/// The relay told the bot (`quality`) that it now forwards another layer of a publisher's video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerEvent {
    /// When (since [`BotConfig::epoch`]).
    pub at: Duration,
    /// The publisher.
    pub participant_id: String,
    /// The layer (`q`/`h`/`f` and the temporal layer, e.g. `h/t2`); `None`: paused.
    pub layer: Option<String>,
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
    /// The layers the relay forwarded to it, as it reported them, changes only (at most
    /// [`MAX_TIMELINE_EVENTS`]).
    pub layers: Vec<LayerEvent>,
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
