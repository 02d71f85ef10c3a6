//! One participant's WebRTC session: a str0m [`Rtc`] in RTP mode and ICE-lite, and the SDP bookkeeping
//! of the tracks it publishes and the tracks it receives.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind, Mid, Pt, Rid};
use str0m::net::TcpType;
use str0m::{Candidate, Rtc};
use tokio::sync::mpsc::UnboundedSender;

use crate::core::allocator::Allocator;
use crate::core::room::{Kind, ParticipantId, TrackId};
use crate::relay::{MediaState, QualityReport, RelayError, RelayEvent, TrackDesc};

/// The estimate a new session starts from, before TWCC feedback says more: enough for audio and the
/// lowest video layer on the slowest county line.
pub const INITIAL_ESTIMATE: Bitrate = Bitrate::kbps(300);
/// How often str0m reports statistics.
pub const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// The payload type the relay offers for Opus (Chrome's).
const PT_OPUS: u8 = 111;

/// Negotiation state of one receive track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvState {
    /// To be added by the next offer.
    ToOpen,
    /// Offered, answer outstanding.
    Negotiating(Mid),
    /// Negotiated: media flows.
    Open(Mid),
    /// To be stopped by the next offer.
    ToStop(Mid),
    /// Stop offered, answer outstanding.
    NegotiatingStop(Mid),
}

impl RecvState {
    /// The m-line, once it has one.
    pub fn mid(&self) -> Option<Mid> {
        match *self {
            RecvState::ToOpen => None,
            RecvState::Negotiating(m)
            | RecvState::Open(m)
            | RecvState::ToStop(m)
            | RecvState::NegotiatingStop(m) => Some(m),
        }
    }
}

/// A track this participant receives.
#[derive(Debug, Clone)]
pub struct RecvTrack {
    /// The published track.
    pub track: TrackId,
    /// Its publisher.
    pub publisher: ParticipantId,
    /// Audio or video.
    pub kind: Kind,
    /// Negotiation state.
    pub state: RecvState,
    /// The publisher's track is gone: stop this one at the next chance.
    pub gone: bool,
}

/// A track this participant publishes.
#[derive(Debug, Clone)]
pub struct PublishedTrack {
    /// The m-line in this participant's session.
    pub mid: Mid,
    /// The relay-wide track id.
    pub track: TrackId,
    /// Audio or video.
    pub kind: Kind,
    /// The simulcast RIDs seen, by spatial layer.
    pub rids: Vec<(u8, Rid)>,
}

/// The spatial layer of a simulcast RID: the web client and the load-test bot name their layers q, h
/// and f (quarter, half, full resolution); numeric RIDs count up from the lowest layer. Anything else is
/// treated as the only layer.
pub fn spatial_of(rid: Option<&Rid>) -> u8 {
    let Some(rid) = rid else {
        return 0;
    };
    match &**rid {
        "q" | "l" | "low" => 0,
        "h" | "m" | "mid" => 1,
        "f" | "high" => 2,
        other => other.parse::<u8>().map_or(0, |n| n.min(2)),
    }
}

/// Bandwidth state of one participant as a subscriber.
#[derive(Debug, Default)]
pub struct Downlink {
    /// The latest send-side estimate (str0m's TWCC estimator), bit/s.
    pub estimate_bps: Option<u64>,
    /// Splits it over the tracks.
    pub allocator: Allocator,
    /// The last allocation.
    pub allocation: Option<crate::core::allocator::Allocation>,
    /// The probe target last given to str0m, bit/s.
    pub probe_bps: u64,
    /// The padding minimum last given to str0m, bit/s.
    pub padding_bps: u64,
    /// The last report sent to the participant, and when.
    pub reported: Option<(QualityReport, Instant)>,
    /// Send statistics per receive m-line: NACKs, PLIs, RTT, loss.
    pub egress: HashMap<Mid, str0m::stats::MediaEgressStats>,
    /// Session statistics: RTT and loss.
    pub peer: Option<str0m::stats::PeerStats>,
    /// Per video track received: the room the last allocation leaves for it (what may be received
    /// minus the audio and the other video), bit/s. Steers what its publisher encodes.
    pub track_room: HashMap<crate::core::room::TrackId, u64>,
    /// When to probe its line again for an adaptive layer.
    pub reprobe: crate::core::probing::Reprobe,
}

/// One participant's session.
pub struct Peer {
    /// Who.
    pub id: ParticipantId,
    /// Its room.
    pub room: String,
    /// The WebRTC session.
    pub rtc: Rtc,
    /// Where events for its signaling session go.
    pub events: UnboundedSender<RelayEvent>,
    /// The relay's ICE ufrag for this session.
    pub ufrag: String,
    /// Tracks it publishes.
    pub published: Vec<PublishedTrack>,
    /// Tracks it receives.
    pub receiving: Vec<RecvTrack>,
    /// When str0m next wants a timeout.
    pub next_timeout: Instant,
    /// When the session was created.
    pub created: Instant,
    /// Whether ICE ever connected.
    pub ever_connected: bool,
    /// Since when ICE has been disconnected.
    pub disconnected_since: Option<Instant>,
    /// The participant's site, for the line budget.
    pub site: Option<String>,
    /// Whether its consultation is an emergency (first claim on the site's line).
    pub emergency: bool,
    /// Whether this is a line test (see [`crate::JoinOptions::line_test`]).
    pub line_test: bool,
    /// Its downlink: estimate, allocation, statistics.
    pub downlink: Downlink,
    /// Statistics of what it publishes, per m-line and RID.
    pub ingress: HashMap<(Mid, Option<Rid>), str0m::stats::MediaIngressStats>,
    pending: Option<SdpPendingOffer>,
    has_remote_description: bool,
    media_state: Option<MediaState>,
}

/// The parser's own message names memory offsets; clients get a plain sentence, the log gets the detail.
fn sdp_parse_error(e: str0m::error::SdpError) -> RelayError {
    tracing::debug!("SDP parse error: {e}");
    RelayError::BadSdp("the SDP could not be parsed".into())
}

/// Map str0m's media kind to ours.
pub fn kind_of(kind: MediaKind) -> Kind {
    match kind {
        MediaKind::Audio => Kind::Audio,
        MediaKind::Video => Kind::Video,
    }
}

fn media_kind(kind: Kind) -> MediaKind {
    match kind {
        Kind::Audio => MediaKind::Audio,
        Kind::Video => MediaKind::Video,
    }
}

/// The RTP clock rate of the relay's codecs.
pub fn clock_rate(kind: Kind) -> u32 {
    match kind {
        Kind::Audio => 48_000,
        Kind::Video => 90_000,
    }
}

impl Peer {
    /// A new session advertising the relay's UDP and passive TCP candidates at `public` addresses.
    pub fn new(
        now: Instant,
        id: ParticipantId,
        room: String,
        events: UnboundedSender<RelayEvent>,
        udp: Option<SocketAddr>,
        tcp: Option<SocketAddr>,
    ) -> Result<Peer, RelayError> {
        let mut config = Rtc::builder()
            .set_rtp_mode(true)
            .set_ice_lite(true)
            .clear_codecs()
            .enable_vp8(true)
            .enable_bwe(Some(INITIAL_ESTIMATE))
            .set_stats_interval(Some(STATS_INTERVAL));
        // Opus with in-band FEC on (a lost packet is rebuilt from the next one) and DTX allowed (silence
        // costs almost nothing on a slow line).
        config.codec_config().add_config(
            PT_OPUS.into(),
            None,
            Codec::Opus,
            Frequency::FORTY_EIGHT_KHZ,
            Some(2),
            FormatParams {
                min_p_time: Some(10),
                use_inband_fec: Some(true),
                use_dtx: Some(true),
                ..Default::default()
            },
        );
        let mut rtc = config.build(now);
        if let Some(addr) = udp {
            let c = Candidate::host(addr, "udp")
                .map_err(|e| RelayError::BadCandidate(e.to_string()))?;
            rtc.add_local_candidate(c);
        }
        if let Some(addr) = tcp {
            let c = Candidate::builder()
                .tcp()
                .host(addr)
                .tcptype(TcpType::Passive)
                .build()
                .map_err(|e| RelayError::BadCandidate(e.to_string()))?;
            rtc.add_local_candidate(c);
        }
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        Ok(Peer {
            id,
            room,
            rtc,
            events,
            ufrag,
            published: vec![],
            receiving: vec![],
            next_timeout: now,
            created: now,
            ever_connected: false,
            disconnected_since: None,
            site: None,
            emergency: false,
            line_test: false,
            downlink: Downlink::default(),
            ingress: HashMap::new(),
            pending: None,
            has_remote_description: false,
            media_state: None,
        })
    }

    /// Tell the signaling session something. A closed session is not an error here: its leave follows.
    pub fn send(&self, event: RelayEvent) {
        let _ = self.events.send(event);
    }

    /// Accept the participant's offer and send the answer.
    pub fn accept_offer(&mut self, sdp: &str) -> Result<(), RelayError> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(sdp_parse_error)?;
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| RelayError::BadSdp(e.to_string()))?;
        // We are the polite side: our own outstanding offer is dropped and made again afterwards.
        if self.pending.take().is_some() {
            for r in &mut self.receiving {
                r.state = match r.state {
                    RecvState::Negotiating(_) => RecvState::ToOpen,
                    RecvState::NegotiatingStop(m) => RecvState::ToStop(m),
                    s => s,
                };
            }
        }
        self.has_remote_description = true;
        self.send(RelayEvent::Answer {
            sdp: answer.to_sdp_string(),
        });
        Ok(())
    }

    /// Accept the participant's answer to our offer. Returns the receive tracks that became open.
    pub fn accept_answer(&mut self, sdp: &str) -> Result<Vec<RecvTrack>, RelayError> {
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(sdp_parse_error)?;
        let Some(pending) = self.pending.take() else {
            return Err(RelayError::NoPendingOffer);
        };
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| RelayError::BadSdp(e.to_string()))?;
        let mut opened = vec![];
        for r in &mut self.receiving {
            if let RecvState::Negotiating(m) = r.state {
                r.state = RecvState::Open(m);
                opened.push(r.clone());
            }
        }
        self.receiving
            .retain(|r| !matches!(r.state, RecvState::NegotiatingStop(_)));
        Ok(opened)
    }

    /// Add a remote ICE candidate. mDNS (`.local`) candidates are ignored: the relay is ICE-lite and learns
    /// the browser's address from its connectivity checks.
    pub fn add_remote_candidate(&mut self, candidate: &str) -> Result<(), RelayError> {
        let line = candidate.trim().trim_start_matches("a=");
        if line.is_empty() {
            return Ok(());
        }
        if line
            .split_whitespace()
            .nth(4)
            .is_some_and(|addr| addr.ends_with(".local"))
        {
            return Ok(());
        }
        let c = Candidate::from_sdp_string(line)
            .map_err(|e| RelayError::BadCandidate(e.to_string()))?;
        self.rtc.add_remote_candidate(c);
        Ok(())
    }

    /// Start receiving a published track.
    pub fn add_receive(&mut self, track: TrackId, publisher: ParticipantId, kind: Kind) {
        self.receiving.push(RecvTrack {
            track,
            publisher,
            kind,
            state: RecvState::ToOpen,
            gone: false,
        });
    }

    /// Stop receiving a track whose publisher is gone.
    pub fn remove_receive(&mut self, track: TrackId) {
        self.receiving
            .retain(|r| !(r.track == track && r.state == RecvState::ToOpen));
        for r in &mut self.receiving {
            if r.track == track {
                r.gone = true;
            }
        }
    }

    /// The open receive track carrying `track`.
    pub fn open_mid(&self, track: TrackId) -> Option<Mid> {
        self.receiving.iter().find_map(|r| match r.state {
            RecvState::Open(m) if r.track == track && !r.gone => Some(m),
            _ => None,
        })
    }

    /// The published track behind a receive m-line.
    pub fn track_of_mid(&self, mid: Mid) -> Option<TrackId> {
        self.receiving
            .iter()
            .find(|r| r.state.mid() == Some(mid))
            .map(|r| r.track)
    }

    /// This session's payload type for the relay's codec of `kind`.
    pub fn pt_for(&self, kind: Kind) -> Option<Pt> {
        let codec = match kind {
            Kind::Audio => Codec::Opus,
            Kind::Video => Codec::Vp8,
        };
        self.rtc
            .codec_config()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
    }

    /// Make an offer if receive tracks must be added or stopped and nothing is outstanding.
    pub fn negotiate(&mut self) {
        if !self.has_remote_description || self.pending.is_some() || !self.rtc.is_alive() {
            return;
        }
        for r in &mut self.receiving {
            if r.gone
                && let RecvState::Open(m) = r.state
            {
                r.state = RecvState::ToStop(m);
            }
        }
        if !self
            .receiving
            .iter()
            .any(|r| matches!(r.state, RecvState::ToOpen | RecvState::ToStop(_)))
        {
            return;
        }
        let mut change = self.rtc.sdp_api();
        for r in &mut self.receiving {
            match r.state {
                RecvState::ToOpen => {
                    let mid = change.add_media(
                        media_kind(r.kind),
                        Direction::SendOnly,
                        Some(r.publisher.to_string()),
                        Some(format!("{}-{}", r.publisher, r.track.0)),
                        None,
                    );
                    r.state = RecvState::Negotiating(mid);
                }
                RecvState::ToStop(mid) => {
                    change.stop_media(mid);
                    r.state = RecvState::NegotiatingStop(mid);
                }
                _ => {}
            }
        }
        let Some((offer, pending)) = change.apply() else {
            return;
        };
        self.pending = Some(pending);
        let tracks = self
            .receiving
            .iter()
            .filter_map(|r| match r.state {
                RecvState::Negotiating(m) | RecvState::Open(m) if !r.gone => Some(TrackDesc {
                    mid: m.to_string(),
                    participant_id: r.publisher.to_string(),
                    kind: r.kind,
                }),
                _ => None,
            })
            .collect();
        self.send(RelayEvent::Offer {
            sdp: offer.to_sdp_string(),
            tracks,
        });
    }

    /// Record an ICE state change; returns the media state to report, if it changed.
    pub fn on_ice_state(
        &mut self,
        now: Instant,
        state: str0m::IceConnectionState,
    ) -> Option<MediaState> {
        use str0m::IceConnectionState as S;
        let reported = match state {
            S::New | S::Checking => Some(MediaState::Connecting),
            S::Connected | S::Completed => {
                self.ever_connected = true;
                self.disconnected_since = None;
                Some(MediaState::Connected)
            }
            S::Disconnected => {
                self.disconnected_since.get_or_insert(now);
                Some(MediaState::Disconnected)
            }
        };
        if reported == self.media_state {
            return None;
        }
        self.media_state = reported;
        reported
    }
}
