//! One bot's WebRTC session: str0m in frame mode on a UDP socket, fed by the encoders and feeding
//! the decoders, steered by the relay's signaling and RTCP.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{
    Direction, Frequency, KeyframeRequestKind, MediaData, MediaKind, MediaTime, Mid, Pt, Simulcast,
    SimulcastLayer,
};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcError};
use tokio::net::UdpSocket;
use tracing::{debug, warn};

use super::signaling::{ServerMessage, Signaling};
use super::{
    BotConfig, BotError, BotReport, FrameEvent, LayerEvent, MAX_TIMELINE_EVENTS, Received, Reroute,
    Timeline, VideoMode,
};
use crate::media::opus_audio::FRAME_DURATION;
use crate::media::{
    Decoded, FrameLoss, OpusReceiver, OpusSender, PlayoutStats, VideoPublisher, Vp8Decoder,
};

/// Opus at this rate, with FEC sized for this expected loss.
const AUDIO_BPS: i32 = 32_000;
const AUDIO_EXPECTED_LOSS_PCT: i32 = 10;
/// The estimator's starting point (Chrome's is 300 kbit/s).
const INITIAL_ESTIMATE_KBPS: u64 = 300;
/// At most one keyframe request per received video track this often.
const PLI_INTERVAL: Duration = Duration::from_millis(300);

/// A receive track.
enum Track {
    Video {
        decoder: Box<Vp8Decoder>,
        playout: PlayoutStats,
        last_pli: Option<Instant>,
        /// Frames that arrived and frames lost for good.
        frames: FrameLoss,
    },
    Audio(Box<OpusReceiver>),
}

/// The publishing side.
struct Sender {
    audio_mid: Mid,
    audio: OpusSender,
    audio_sent: u64,
    video: Option<(Mid, VideoPublisher, u32)>,
    video_sent: u32,
}

/// A joined bot with its str0m session.
pub struct Peer {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    signaling: Signaling,
    pending: Option<SdpPendingOffer>,
    start: Instant,
    epoch: Instant,
    reroute: Option<Reroute>,
    sender: Sender,
    /// Receive mid → publisher, from the relay's offers.
    owners: HashMap<Mid, String>,
    tracks: HashMap<Mid, Track>,
    /// Per publisher (or receive mid before its owner is known).
    timelines: HashMap<String, Timeline>,
    /// The layer the relay last reported per publisher.
    layers: HashMap<String, Option<String>>,
    report: BotReport,
}

impl Peer {
    /// Makes the str0m session and sends the bot's one offer (audio, and video if configured).
    pub async fn start(config: &BotConfig, mut signaling: Signaling) -> Result<Self, BotError> {
        let start = Instant::now();
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_bwe(Some(Bitrate::kbps(INITIAL_ESTIMATE_KBPS)))
            .build(start);
        let socket = UdpSocket::bind(SocketAddr::new(config.bind, 0)).await?;
        let local = socket.local_addr()?;
        let candidate = Candidate::host(local, "udp").map_err(RtcError::from)?;
        rtc.add_local_candidate(candidate.clone());

        let stream = format!("bot-{}", signaling.participant_id);
        let mut change = rtc.sdp_api();
        let audio_mid = change.add_media(
            MediaKind::Audio,
            Direction::SendOnly,
            Some(stream.clone()),
            Some(format!("{stream}-audio")),
            None,
        );
        let video = match &config.video {
            None => None,
            Some(mode) => {
                let (publisher, fps) = match mode {
                    VideoMode::Simulcast(c) => (VideoPublisher::simulcast(c.clone())?, c.fps),
                    VideoMode::Adaptive {
                        config: c,
                        max_bitrate_bps,
                        scale_resolution_down_by,
                    } => (
                        VideoPublisher::adaptive(
                            c.clone(),
                            *max_bitrate_bps,
                            *scale_resolution_down_by,
                        )?,
                        c.fps,
                    ),
                };
                let rids: Vec<String> = publisher
                    .parameters()
                    .into_iter()
                    .filter_map(|p| p.rid)
                    .collect();
                let simulcast = (!rids.is_empty()).then(|| {
                    let mut s = Simulcast::new();
                    for rid in &rids {
                        s.add_send_layer(SimulcastLayer::new(rid));
                    }
                    s
                });
                let mid = change.add_media(
                    MediaKind::Video,
                    Direction::SendOnly,
                    Some(stream.clone()),
                    Some(format!("{stream}-video")),
                    simulcast,
                );
                Some((mid, publisher, fps.max(1)))
            }
        };
        let (offer, pending) = change
            .apply()
            .ok_or_else(|| BotError::Signaling("nothing to offer".into()))?;
        signaling
            .send(json!({"type": "offer", "sdp": offer.to_sdp_string()}))
            .await?;
        signaling
            .send(
                json!({"type": "candidate", "candidate": candidate.to_sdp_string(),
                "sdp_mid": audio_mid.to_string(), "sdp_m_line_index": 0}),
            )
            .await?;
        signaling
            .send(json!({"type": "candidate", "candidate": null}))
            .await?;

        let report = BotReport {
            participant_id: signaling.participant_id.clone(),
            ..BotReport::default()
        };
        if let Some((_, publisher, _)) = &video {
            probe_for(&mut rtc, publisher);
        }
        Ok(Peer {
            rtc,
            socket,
            local,
            signaling,
            pending: Some(pending),
            start,
            epoch: config.epoch,
            reroute: config.reroute,
            sender: Sender {
                audio_mid,
                audio: OpusSender::new(config.seed, AUDIO_BPS, AUDIO_EXPECTED_LOSS_PCT)?,
                audio_sent: 0,
                video,
                video_sent: 0,
            },
            owners: HashMap::new(),
            tracks: HashMap::new(),
            timelines: HashMap::new(),
            layers: HashMap::new(),
            report,
        })
    }

    /// Runs until `duration` has passed since the start; then reports.
    pub async fn run(mut self, duration: Duration) -> Result<BotReport, BotError> {
        let end = self.start + duration;
        let mut buf = vec![0u8; 2000];
        loop {
            let timeout = self.drain().await?;
            let now = Instant::now();
            if now >= end {
                break;
            }
            let wake = timeout.min(self.next_media_time()).min(end);
            tokio::select! {
                msg = self.signaling.next() => match msg? {
                    Some(msg) => self.on_signaling(msg).await?,
                    None => return Err(BotError::Signaling("the server closed the WebSocket".into())),
                },
                received = self.socket.recv_from(&mut buf) => {
                    let (n, mut source) = received?;
                    if let Some(r) = self.reroute.filter(|r| r.actual == source) {
                        source = r.advertised;
                    }
                    if let Ok(receive) = Receive::new(Protocol::Udp, source, self.local, &buf[..n]) {
                        self.rtc.handle_input(Input::Receive(Instant::now(), receive))?;
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    let now = Instant::now();
                    self.send_media(now)?;
                    self.rtc.handle_input(Input::Timeout(now))?;
                }
            }
        }
        Ok(self.finish())
    }

    /// When the next audio packet or video frame is due.
    fn next_media_time(&self) -> Instant {
        let s = &self.sender;
        let audio = self.start + FRAME_DURATION * (s.audio_sent as u32);
        let video = s.video.as_ref().map_or(audio, |(_, _, fps)| {
            self.start + Duration::from_secs(u64::from(s.video_sent)) / *fps
        });
        audio.min(video)
    }

    /// Encodes and writes whatever is due (nothing is sent before media connects: str0m would
    /// drop it).
    fn send_media(&mut self, now: Instant) -> Result<(), BotError> {
        let connected = self.report.connected;
        let s = &mut self.sender;
        while self.start + FRAME_DURATION * (s.audio_sent as u32) <= now {
            let pts = FRAME_DURATION * (s.audio_sent as u32);
            s.audio_sent += 1;
            let packet = s.audio.next_packet()?;
            if !connected {
                continue;
            }
            if let (Some(pt), Some(writer)) =
                (pt_of(&self.rtc, Codec::Opus), self.rtc.writer(s.audio_mid))
            {
                let time = MediaTime::new(
                    pts.as_micros() as u64 * 48 / 1000,
                    Frequency::FORTY_EIGHT_KHZ,
                );
                match writer.write(pt, self.start + pts, time, packet) {
                    Ok(()) => self.report.sent.audio_packets += 1,
                    Err(e) => debug!(error = %e, "audio not written"),
                }
            }
        }
        let Some((mid, publisher, fps)) = s.video.as_mut() else {
            return Ok(());
        };
        let due = |n: u32| Duration::from_secs(u64::from(n)) / *fps;
        if self.start + due(s.video_sent) > now {
            return Ok(());
        }
        // One frame per wake-up: if encoding fell behind, skip to the latest due frame.
        while self.start + due(s.video_sent + 1) <= now {
            s.video_sent += 1;
        }
        let pts = due(s.video_sent);
        s.video_sent += 1;
        if !connected {
            return Ok(());
        }
        let Some(pt) = pt_of(&self.rtc, Codec::Vp8) else {
            return Ok(());
        };
        for frame in publisher.encode(pts)? {
            let Some(writer) = self.rtc.writer(*mid) else {
                break;
            };
            let writer = match &frame.rid {
                Some(rid) => writer.rid(rid.as_str().into()),
                None => writer,
            };
            let time = MediaTime::new(pts.as_micros() as u64 * 9 / 100, Frequency::NINETY_KHZ);
            let (keyframe, bytes) = (frame.frame.keyframe, frame.frame.data.len() as u64);
            // A layer the relay's answer did not accept is refused here; the others go on.
            if let Err(e) = writer.write(pt, self.start + pts, time, frame.frame.data) {
                debug!(error = %e, rid = ?frame.rid, "video not written");
                continue;
            }
            let sent = &mut self.report.sent;
            sent.video_frames += 1;
            sent.video_keyframes += u64::from(keyframe);
            sent.video_bytes += bytes;
        }
        Ok(())
    }

    /// Sends what str0m wants sent and handles its events; returns its next timeout.
    async fn drain(&mut self) -> Result<Instant, BotError> {
        loop {
            match self.rtc.poll_output()? {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    let to = match self.reroute {
                        Some(r) if r.advertised == t.destination => r.actual,
                        _ => t.destination,
                    };
                    if let Err(e) = self.socket.send_to(&t.contents, to).await {
                        debug!(error = %e, to = %t.destination, "UDP send failed");
                    }
                }
                Output::Event(e) => self.on_event(e)?,
            }
        }
    }

    fn on_event(&mut self, event: Event) -> Result<(), BotError> {
        match event {
            Event::Connected => self.report.connected = true,
            Event::KeyframeRequest(r) => {
                if let Some((mid, publisher, _)) = self.sender.video.as_mut()
                    && *mid == r.mid
                {
                    publisher.request_keyframe(r.rid.as_deref());
                    self.report.sent.keyframe_requests += 1;
                }
            }
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                debug!(estimate = estimate.as_u64(), "uplink estimate");
                if let Some((_, publisher, _)) = self.sender.video.as_mut() {
                    let video = estimate.as_u64().saturating_sub(AUDIO_BPS as u64);
                    publisher.set_available_bitrate(u32::try_from(video).unwrap_or(u32::MAX))?;
                }
            }
            Event::MediaData(data) => self.on_media(data),
            _ => {}
        }
        Ok(())
    }

    fn on_media(&mut self, data: MediaData) {
        let at = data.network_time.saturating_duration_since(self.epoch);
        let owner = self
            .owners
            .get(&data.mid)
            .cloned()
            .unwrap_or_else(|| data.mid.to_string());
        let timeline = self.timelines.entry(owner).or_default();
        timeline.on_media(at, data.data.len());
        let kind = self.rtc.media(data.mid).map(|m| m.kind());
        let track = match self.tracks.entry(data.mid) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let track = match kind {
                    Some(MediaKind::Video) => Vp8Decoder::new().map(|decoder| Track::Video {
                        decoder: Box::new(decoder),
                        playout: PlayoutStats::new(),
                        last_pli: None,
                        frames: FrameLoss::default(),
                    }),
                    Some(MediaKind::Audio) => {
                        OpusReceiver::new().map(|r| Track::Audio(Box::new(r)))
                    }
                    None => return,
                };
                match track {
                    Ok(track) => e.insert(track),
                    Err(error) => {
                        warn!(%error, "cannot decode a received track");
                        return;
                    }
                }
            }
        };
        match track {
            Track::Audio(receiver) => {
                receiver.on_packet(**data.seq_range.start(), &data.data, at);
            }
            Track::Video {
                decoder,
                playout,
                last_pli,
                frames,
            } => {
                frames.on_frame(data.time.numer(), data.contiguous);
                if let Decoded::Picture { height, .. } =
                    decoder.decode(&data.data, !data.contiguous)
                {
                    let after_freeze = playout.on_frame(at, height);
                    timeline.on_frame(FrameEvent {
                        at,
                        height,
                        after_freeze,
                    });
                }
                let now = data.network_time;
                if decoder.needs_keyframe()
                    && last_pli.is_none_or(|t| now.saturating_duration_since(t) >= PLI_INTERVAL)
                    && let Some(mut writer) = self.rtc.writer(data.mid)
                    && writer
                        .request_keyframe(data.rid, KeyframeRequestKind::Pli)
                        .is_ok()
                {
                    *last_pli = Some(now);
                }
            }
        }
    }

    async fn on_signaling(&mut self, msg: ServerMessage) -> Result<(), BotError> {
        match msg {
            ServerMessage::Answer(sdp) => {
                let Some(pending) = self.pending.take() else {
                    return Err(BotError::Signaling("an answer without an offer".into()));
                };
                let answer = SdpAnswer::from_sdp_string(&sdp).map_err(RtcError::from)?;
                self.rtc.sdp_api().accept_answer(pending, answer)?;
            }
            ServerMessage::Offer { sdp, tracks } => {
                for (mid, owner) in tracks {
                    self.owners.insert(mid.as_str().into(), owner);
                }
                let offer = SdpOffer::from_sdp_string(&sdp).map_err(RtcError::from)?;
                let answer = self.rtc.sdp_api().accept_offer(offer)?;
                self.signaling
                    .send(json!({"type": "answer", "sdp": answer.to_sdp_string()}))
                    .await?;
            }
            ServerMessage::PublisherLayers(layers) => {
                if let Some((_, publisher, _)) = self.sender.video.as_mut() {
                    publisher.follow(&layers)?;
                    probe_for(&mut self.rtc, publisher);
                    self.report.sent.layer_changes += 1;
                }
            }
            ServerMessage::Quality(video) => {
                let at = Instant::now().saturating_duration_since(self.epoch);
                for (participant_id, layer) in video {
                    if self.layers.get(&participant_id) != Some(&layer)
                        && self.report.layers.len() < MAX_TIMELINE_EVENTS
                    {
                        self.layers.insert(participant_id.clone(), layer.clone());
                        self.report.layers.push(LayerEvent {
                            at,
                            participant_id,
                            layer,
                        });
                    }
                }
            }
            ServerMessage::Error(e) => return Err(BotError::Signaling(e)),
            ServerMessage::Other => {}
        }
        Ok(())
    }

    /// The report: the receive tracks grouped by publisher.
    fn finish(mut self) -> BotReport {
        let mut by_publisher: BTreeMap<String, Received> = BTreeMap::new();
        for (mid, track) in self.tracks {
            let owner = self
                .owners
                .get(&mid)
                .cloned()
                .unwrap_or_else(|| mid.to_string());
            let received = by_publisher
                .entry(owner.clone())
                .or_insert_with(|| Received {
                    participant_id: owner,
                    ..Received::default()
                });
            match track {
                Track::Video {
                    decoder,
                    playout,
                    frames,
                    ..
                } => {
                    received.video = decoder.stats();
                    received.playout = playout;
                    received.timeline.video_frames += frames.arrived();
                    received.timeline.video_frames_lost += frames.lost();
                }
                Track::Audio(receiver) => received.audio = receiver.stats(),
            }
        }
        for (owner, timeline) in self.timelines {
            let received = by_publisher
                .entry(owner.clone())
                .or_insert_with(|| Received {
                    participant_id: owner,
                    ..Received::default()
                });
            received.timeline.media_bytes = timeline.media_bytes;
            received.timeline.frames = timeline.frames;
            received.timeline.dropped = timeline.dropped;
        }
        self.report.received = by_publisher.into_values().collect();
        self.report
    }
}

/// Lets the uplink estimator probe for what the active layers could use, as a browser does (it
/// probes up to the sum of its encodings' `maxBitrate`): without it the estimate stays near where
/// it started, since media alone never asks for more.
fn probe_for(rtc: &mut Rtc, publisher: &VideoPublisher) {
    let video: u64 = publisher
        .parameters()
        .iter()
        .filter(|p| p.active)
        .map(|p| u64::from(p.max_bitrate_bps))
        .sum();
    let audio = AUDIO_BPS as u64;
    rtc.bwe()
        .set_bitrate(Bitrate::bps(audio), Bitrate::bps(audio + video));
}

fn pt_of(rtc: &Rtc, codec: Codec) -> Option<Pt> {
    rtc.codec_config()
        .find(|p| p.spec().codec == codec)
        .map(|p| p.pt())
}
