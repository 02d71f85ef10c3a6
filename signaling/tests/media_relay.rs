//! Real RTP over DTLS-SRTP through the relay, negotiated over the real WebSocket signaling: two str0m
//! clients publish audio and video to each other and check what arrives byte for byte.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, Ws, connect, send};
use futures_util::StreamExt;
use serde_json::{Value, json};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const FRAME: Duration = Duration::from_millis(20);

/// One received RTP packet.
#[derive(Debug, Clone)]
struct Got {
    ssrc: u32,
    seq: u64,
    video: bool,
    payload: Vec<u8>,
}

/// What a client did and saw, shared with the test.
#[derive(Default, Clone)]
struct Shared {
    participant_id: Option<String>,
    connected: bool,
    sent: HashSet<Vec<u8>>,
    sent_audio: u64,
    sent_video: u64,
    sent_keyframes: u64,
    keyframe_requests: u64,
    /// RTP datagrams put on the wire, by payload type.
    wire_rtp: BTreeMap<u8, u64>,
    /// RTP datagrams that arrived from the relay, by payload type (including dropped ones).
    wire_rtp_in: BTreeMap<u8, u64>,
    /// Wire sequence numbers of incoming video packets this client dropped on purpose.
    dropped_video: Vec<u16>,
    /// Those of them the next video datagram followed within [`NACK_WINDOW`]: the client saw the
    /// gap, and NACKed it, while the relay still held the packet. (A subscriber the relay pauses
    /// right after a drop sees the gap only when its video resumes, seconds later.)
    dropped_followed: Vec<u16>,
    /// Incoming datagrams on the RTX payload type of VP8.
    video_rtx_in: u64,
    received: Vec<Got>,
    ws_log: Vec<Value>,
    problems: Vec<String>,
}

impl Shared {
    fn count(&self, video: bool) -> usize {
        self.received.iter().filter(|g| g.video == video).count()
    }
}

enum Cmd {
    Leave,
}

struct Client {
    tag: u8,
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    ws: Ws,
    shared: Arc<Mutex<Shared>>,
    pending: Option<SdpPendingOffer>,
    audio_mid: Mid,
    video_mid: Mid,
    audio_seq: u64,
    video_seq: u64,
    audio_ts: u32,
    video_ts: u32,
    frame: u64,
    want_keyframe: bool,
    next_send: Instant,
    sending: bool,
    /// Drop every Nth incoming VP8 datagram (not retransmissions) before str0m sees it, to make
    /// str0m send NACKs to the relay.
    drop_video_every: Option<u64>,
    video_in: u64,
    /// The last dropped video datagram, until the next one arrives.
    last_drop: Option<(u16, Instant)>,
}

/// A dropped packet is judged only if the next video datagram came this soon after it: well inside
/// the relay's retransmission cache (str0m keeps 3 s).
const NACK_WINDOW: Duration = Duration::from_secs(1);

fn problem(shared: &Arc<Mutex<Shared>>, p: String) {
    shared.lock().unwrap().problems.push(p);
}

impl Client {
    async fn start(
        server: &Server,
        tag: u8,
        token: &str,
        request_id: &str,
        shared: Arc<Mutex<Shared>>,
    ) -> Client {
        let mut ws = connect(server).await;
        let joined = common::auth_join(&mut ws, token, request_id).await;
        shared.lock().unwrap().participant_id = Some(
            joined["participant_id"]
                .as_str()
                .expect("participant_id")
                .to_string(),
        );

        let now = Instant::now();
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(now);
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
        let local = socket.local_addr().unwrap();
        let cand = Candidate::host(local, "udp").expect("host candidate");
        rtc.add_local_candidate(cand.clone());

        let mut change = rtc.sdp_api();
        let stream_id = format!("client-{}", tag as char);
        let audio_mid = change.add_media(
            MediaKind::Audio,
            Direction::SendOnly,
            Some(stream_id.clone()),
            Some(format!("{stream_id}-audio")),
            None,
        );
        let video_mid = change.add_media(
            MediaKind::Video,
            Direction::SendOnly,
            Some(stream_id.clone()),
            Some(format!("{stream_id}-video")),
            None,
        );
        let (offer, pending) = change.apply().expect("local offer");
        send(&mut ws, json!({"type":"offer","sdp":offer.to_sdp_string()})).await;
        // str0m writes the line without "a=", as RTCIceCandidate.candidate does.
        let line = cand.to_sdp_string();
        assert!(line.starts_with("candidate:"), "{line}");
        send(
            &mut ws,
            json!({"type":"candidate","candidate":line,"sdp_mid":audio_mid.to_string(),"sdp_m_line_index":0}),
        )
        .await;
        send(&mut ws, json!({"type":"candidate","candidate":null})).await;

        Client {
            tag,
            rtc,
            socket,
            local,
            ws,
            shared,
            pending: Some(pending),
            audio_mid,
            video_mid,
            audio_seq: 1_000 + u64::from(tag) * 10,
            video_seq: 20_000 + u64::from(tag) * 10,
            audio_ts: 12_345,
            video_ts: 67_890,
            frame: 0,
            want_keyframe: true,
            next_send: now,
            sending: true,
            drop_video_every: None,
            video_in: 0,
            last_drop: None,
        }
    }

    /// Drain str0m's output; returns when it wants the next timeout.
    async fn drain(&mut self) -> Instant {
        loop {
            let out = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    problem(&self.shared, format!("poll_output: {e}"));
                    return Instant::now() + Duration::from_secs(3600);
                }
            };
            match out {
                Output::Timeout(t) => return t,
                Output::Transmit(t) => {
                    let d: &[u8] = &t.contents;
                    if d.len() > 12 && d[0] >> 6 == 2 && !(200..=206).contains(&d[1]) {
                        *self
                            .shared
                            .lock()
                            .unwrap()
                            .wire_rtp
                            .entry(d[1] & 0x7f)
                            .or_default() += 1;
                    }
                    if let Err(e) = self.socket.send_to(&t.contents, t.destination).await {
                        problem(&self.shared, format!("UDP send to {}: {e}", t.destination));
                    }
                }
                Output::Event(e) => self.on_event(e),
            }
        }
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::Connected => self.shared.lock().unwrap().connected = true,
            Event::KeyframeRequest(r) if r.mid == self.video_mid => {
                self.want_keyframe = true;
                self.shared.lock().unwrap().keyframe_requests += 1;
            }
            Event::RtpPacket(pkt) => {
                let ssrc = pkt.header.ssrc;
                let mid = self.rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid());
                let Some(kind) = mid.and_then(|m| self.rtc.media(m)).map(|m| m.kind()) else {
                    problem(&self.shared, format!("RTP packet on unknown SSRC {ssrc:?}"));
                    return;
                };
                self.shared.lock().unwrap().received.push(Got {
                    ssrc: *ssrc,
                    seq: *pkt.seq_no,
                    video: kind == MediaKind::Video,
                    payload: pkt.payload.to_vec(),
                });
            }
            _ => {}
        }
    }

    /// Counts an incoming datagram and says whether to drop it (see `drop_video_every`).
    /// SRTP leaves the RTP header in the clear, so payload type and sequence number are readable.
    fn drop_incoming(&mut self, d: &[u8]) -> bool {
        if d.len() < 12 || d[0] >> 6 != 2 || (200..=206).contains(&d[1]) {
            return false;
        }
        let pt = d[1] & 0x7f;
        let vp8 = self
            .rtc
            .codec_config()
            .find(|p| p.spec().codec == Codec::Vp8)
            .map(|p| (*p.pt(), p.resend().map(|r| *r)));
        {
            let mut s = self.shared.lock().unwrap();
            *s.wire_rtp_in.entry(pt).or_default() += 1;
            if vp8.is_some_and(|(_, rtx)| rtx == Some(pt)) {
                s.video_rtx_in += 1;
            }
        }
        let Some(every) = self.drop_video_every else {
            return false;
        };
        if !self.shared.lock().unwrap().connected || vp8.map(|(p, _)| p) != Some(pt) {
            return false;
        }
        self.video_in += 1;
        let now = Instant::now();
        if let Some((dropped, at)) = self.last_drop.take()
            && now.duration_since(at) <= NACK_WINDOW
        {
            self.shared.lock().unwrap().dropped_followed.push(dropped);
        }
        if !self.video_in.is_multiple_of(every) {
            return false;
        }
        let seq = u16::from_be_bytes([d[2], d[3]]);
        self.shared.lock().unwrap().dropped_video.push(seq);
        self.last_drop = Some((seq, now));
        true
    }

    fn pt(&self, codec: Codec) -> str0m::media::Pt {
        self.rtc
            .codec_config()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
            .expect("negotiated codec")
    }

    /// Send one 20 ms audio packet and one video frame (one packet, marker set).
    async fn send_media(&mut self, now: Instant) {
        if !self.shared.lock().unwrap().connected {
            return;
        }
        let audio_pt = self.pt(Codec::Opus);
        let video_pt = self.pt(Codec::Vp8);
        let mut api = self.rtc.direct_api();
        if api.stream_tx_by_mid(self.audio_mid, None).is_none()
            || api.stream_tx_by_mid(self.video_mid, None).is_none()
        {
            return;
        }
        let n = self.frame;
        self.frame += 1;

        let mut audio = b"AUD".to_vec();
        audio.push(self.tag);
        audio.extend_from_slice(&n.to_be_bytes());
        audio.extend(std::iter::repeat_n(0xa5u8, 48));

        let keyframe = self.want_keyframe || n.is_multiple_of(30);
        self.want_keyframe = false;
        // VP8 payload descriptor: S=1, PID=0, no extensions; then the VP8 payload header whose P bit
        // (bit 0 of the first byte) is 0 for a keyframe.
        let mut video = vec![0x10];
        if keyframe {
            video.extend_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00]);
        } else {
            video.extend_from_slice(&[0x11, 0x02, 0x00]);
        }
        video.extend_from_slice(b"VID");
        video.push(self.tag);
        video.extend_from_slice(&n.to_be_bytes());
        video.extend(std::iter::repeat_n(0x5au8, 200));

        let tx = api.stream_tx_by_mid(self.audio_mid, None).unwrap();
        tx.write_rtp(RtpWrite::new(
            audio_pt,
            self.audio_seq.into(),
            self.audio_ts,
            now,
            audio.clone(),
        ));
        // str0m's rule: drain the output after every mutation.
        self.drain().await;
        let mut api = self.rtc.direct_api();
        let tx = api.stream_tx_by_mid(self.video_mid, None).unwrap();
        tx.write_rtp(
            RtpWrite::new(
                video_pt,
                self.video_seq.into(),
                self.video_ts,
                now,
                video.clone(),
            )
            .marker(true),
        );
        self.audio_seq += 1;
        self.video_seq += 1;
        self.audio_ts = self.audio_ts.wrapping_add(960);
        self.video_ts = self.video_ts.wrapping_add(1800);

        let mut s = self.shared.lock().unwrap();
        s.sent.insert(audio);
        s.sent.insert(video);
        s.sent_audio += 1;
        s.sent_video += 1;
        if keyframe {
            s.sent_keyframes += 1;
        }
    }

    async fn on_ws(&mut self, v: Value) {
        self.shared.lock().unwrap().ws_log.push(v.clone());
        match v["type"].as_str() {
            Some("answer") => {
                let Some(pending) = self.pending.take() else {
                    problem(&self.shared, format!("answer without own offer: {v}"));
                    return;
                };
                let answer = SdpAnswer::from_sdp_string(v["sdp"].as_str().unwrap_or_default())
                    .expect("server answer parses");
                if let Err(e) = self.rtc.sdp_api().accept_answer(pending, answer) {
                    problem(&self.shared, format!("accept_answer: {e}"));
                }
            }
            Some("offer") => {
                if self.pending.is_some() {
                    problem(
                        &self.shared,
                        "server offer while own offer is outstanding".into(),
                    );
                }
                let offer = SdpOffer::from_sdp_string(v["sdp"].as_str().unwrap_or_default())
                    .expect("server offer parses");
                match self.rtc.sdp_api().accept_offer(offer) {
                    Ok(answer) => {
                        send(
                            &mut self.ws,
                            json!({"type":"answer","sdp":answer.to_sdp_string()}),
                        )
                        .await
                    }
                    Err(e) => problem(&self.shared, format!("accept_offer: {e}")),
                }
            }
            Some("error") => problem(&self.shared, format!("server error: {v}")),
            Some("left") => self.sending = false,
            _ => {}
        }
    }

    async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
        let mut buf = vec![0u8; 2000];
        loop {
            let timeout = self.drain().await;
            let wake = if self.sending {
                timeout.min(self.next_send)
            } else {
                timeout
            };
            tokio::select! {
                msg = self.ws.next() => match msg {
                    Some(Ok(Message::Text(t))) => match serde_json::from_str::<Value>(t.as_str()) {
                        Ok(v) => self.on_ws(v).await,
                        Err(e) => problem(&self.shared, format!("non-JSON from server: {e}")),
                    },
                    Some(Ok(_)) => {}
                    other => {
                        problem(&self.shared, format!("WebSocket ended: {other:?}"));
                        return;
                    }
                },
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, source)) => {
                        if self.drop_incoming(&buf[..n]) {
                            continue;
                        }
                        if let Ok(receive) = Receive::new(Protocol::Udp, source, self.local, &buf[..n])
                            && let Err(e) = self.rtc.handle_input(Input::Receive(Instant::now(), receive))
                        {
                            problem(&self.shared, format!("handle_input: {e}"));
                        }
                    }
                    Err(e) => problem(&self.shared, format!("UDP recv: {e}")),
                },
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::Leave) => send(&mut self.ws, json!({"type":"leave"})).await,
                    None => return,
                },
                _ = tokio::time::sleep_until(wake.into()) => {
                    let now = Instant::now();
                    if self.sending && now >= self.next_send {
                        self.send_media(now).await;
                        self.drain().await;
                        self.next_send += FRAME;
                        if self.next_send < now {
                            self.next_send = now + FRAME;
                        }
                    }
                    if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
                        problem(&self.shared, format!("timeout input: {e}"));
                    }
                }
            }
        }
    }
}

/// Poll `cond` until it holds or `limit` passes.
async fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

fn summary(name: &str, s: &Shared) -> String {
    format!(
        "{name}: connected={} wire RTP by PT {:?} sent audio={} video={} (keyframes {}, keyframe requests {}), received audio={} video={}, problems={:?}, ws={:?}",
        s.connected,
        s.wire_rtp,
        s.sent_audio,
        s.sent_video,
        s.sent_keyframes,
        s.keyframe_requests,
        s.count(false),
        s.count(true),
        s.problems,
        s.ws_log
            .iter()
            .map(|v| {
                let mut v = v.clone();
                if v.get("sdp").is_some() {
                    v["sdp"] = json!("…");
                }
                v.to_string()
            })
            .collect::<Vec<_>>()
    )
}

/// Check what `receiver` got against what `sender` sent.
fn check_direction(from: &str, sender: &Shared, to: &str, receiver: &Shared) -> Vec<String> {
    let tag = from.as_bytes()[0];
    for g in &receiver.received {
        assert!(
            sender.sent.contains(&g.payload),
            "{to} received a payload {from} never sent (video={}, seq={}): {:02x?}",
            g.video,
            g.seq,
            &g.payload[..g.payload.len().min(24)]
        );
        let who = if g.video {
            g.payload
                .windows(3)
                .position(|w| w == b"VID")
                .and_then(|i| g.payload.get(i + 3).copied())
        } else {
            g.payload.get(3).copied()
        };
        assert_eq!(who, Some(tag), "{to} got a packet not from {from}");
    }
    let mut streams: BTreeMap<u32, (bool, Vec<u64>)> = BTreeMap::new();
    for g in &receiver.received {
        let e = streams.entry(g.ssrc).or_insert((g.video, vec![]));
        assert_eq!(e.0, g.video, "SSRC {} carries audio and video", g.ssrc);
        e.1.push(g.seq);
    }
    assert_eq!(
        streams.len(),
        2,
        "{to} should receive exactly one audio and one video stream from {from}: {:?}",
        streams.keys().collect::<Vec<_>>()
    );
    // The first video packet a subscriber gets must start a keyframe (the relay waits for one).
    let first_video = receiver
        .received
        .iter()
        .find(|g| g.video)
        .expect("some video");
    assert_eq!(
        first_video.payload[1] & 0x01,
        0,
        "{to}: first forwarded video packet is not a keyframe: {:02x?}",
        &first_video.payload[..12]
    );
    // Loss-free loopback: every stream must arrive without gaps (the relay rewrites sequence numbers
    // into one continuous range per subscriber). Reported, not asserted here, so the rest still runs.
    let mut gaps = vec![];
    for (ssrc, (video, seqs)) in &streams {
        let missing: u64 = seqs.windows(2).map(|w| w[1].saturating_sub(w[0] + 1)).sum();
        let unordered = seqs.windows(2).filter(|w| w[1] <= w[0]).count();
        if missing > 0 || unordered > 0 {
            gaps.push(format!(
                "{to}: {} stream SSRC {ssrc} from {from}: {} packets received, {missing} missing in between, {unordered} out of order; seqs {}..={}",
                if *video { "video" } else { "audio" },
                seqs.len(),
                seqs.first().unwrap(),
                seqs.last().unwrap(),
            ));
        }
    }
    gaps
}

/// One running client of a test call.
struct Running {
    shared: Arc<Mutex<Shared>>,
    cmd: mpsc::UnboundedSender<Cmd>,
    task: tokio::task::JoinHandle<()>,
}

/// A server with an accepted consultation, and its doctor (A) and specialist (B) in the room,
/// publishing; B drops every `b_drops_every`th incoming video packet if set.
async fn call(b_drops_every: Option<u64>) -> (Server, Running, Running) {
    str0m::crypto::from_feature_flags().install_process_default();
    let server = Server::start();
    let c = common::consultation(&server).await;
    let run = |client: Client, shared| {
        let (cmd, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(client.run(rx));
        Running { shared, cmd, task }
    };
    let shared = Arc::new(Mutex::new(Shared::default()));
    let a = Client::start(&server, b'A', &c.doctor, &c.id, shared.clone()).await;
    let a = run(a, shared);
    let shared = Arc::new(Mutex::new(Shared::default()));
    let mut b = Client::start(&server, b'B', &c.specialist, &c.id, shared.clone()).await;
    b.drop_video_every = b_drops_every;
    let b = run(b, shared);
    (server, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_flows_both_ways_through_the_relay() {
    let (server, a, b) = call(None).await;
    let (shared_a, cmd_a, task_a) = (a.shared, a.cmd, a.task);
    let (shared_b, cmd_b, task_b) = (b.shared, b.cmd, b.task);

    let enough = |s: &Arc<Mutex<Shared>>| {
        let s = s.lock().unwrap();
        s.count(false) >= 50 && s.count(true) >= 20
    };
    let ok = wait_for(Duration::from_secs(20), || {
        enough(&shared_a) && enough(&shared_b)
    })
    .await;
    let report = || {
        format!(
            "{}\n{}\nserver log:\n{}",
            summary("A", &shared_a.lock().unwrap()),
            summary("B", &shared_b.lock().unwrap()),
            server.logs()
        )
    };
    assert!(ok, "not enough media within 20 s\n{}", report());

    let metrics = common::http_get(&server, "/metrics").await.1;
    eprintln!("{}\nmetrics:\n{metrics}", report());
    let mut gaps = vec![];
    {
        let sa = shared_a.lock().unwrap().clone();
        let sb = shared_b.lock().unwrap().clone();
        assert!(sa.problems.is_empty(), "A problems\n{}", report());
        assert!(sb.problems.is_empty(), "B problems\n{}", report());
        gaps.extend(check_direction("A", &sa, "B", &sb));
        gaps.extend(check_direction("B", &sb, "A", &sa));
        // Each got an offer listing the other's two tracks, marked with the other's participant id.
        for (me, other) in [(&sa, &sb), (&sb, &sa)] {
            let pid = other.participant_id.clone().unwrap();
            let offer = me
                .ws_log
                .iter()
                .rev()
                .find(|v| v["type"] == "offer")
                .expect("a server offer");
            let tracks = offer["tracks"].as_array().expect("tracks");
            let mut kinds: Vec<&str> = tracks
                .iter()
                .inspect(|t| assert_eq!(t["participant_id"], pid.as_str(), "{offer}"))
                .filter_map(|t| t["kind"].as_str())
                .collect();
            kinds.sort();
            assert_eq!(kinds, ["audio", "video"], "{offer}");
        }
    }

    // A leaves; B is told.
    let pid_a = shared_a.lock().unwrap().participant_id.clone().unwrap();
    cmd_a.send(Cmd::Leave).unwrap();
    let told = wait_for(Duration::from_secs(10), || {
        shared_b
            .lock()
            .unwrap()
            .ws_log
            .iter()
            .any(|v| v["type"] == "participant_left" && v["participant_id"] == pid_a.as_str())
    })
    .await;
    assert!(told, "B was not told that A left\n{}", report());
    let left = wait_for(Duration::from_secs(10), || {
        shared_a
            .lock()
            .unwrap()
            .ws_log
            .iter()
            .any(|v| v["type"] == "left")
    })
    .await;
    assert!(left, "A got no `left`\n{}", report());
    {
        let sb = shared_b.lock().unwrap();
        let v = sb
            .ws_log
            .iter()
            .find(|v| v["type"] == "participant_left")
            .unwrap();
        assert_eq!(v["reason"], "left", "{v}");
    }

    drop(cmd_a);
    drop(cmd_b);
    let _ = tokio::time::timeout(Duration::from_secs(5), task_a).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), task_b).await;

    assert!(
        gaps.is_empty(),
        "packets lost inside the relay on a loss-free loopback:\n{}\nmetrics:\n{metrics}",
        gaps.join("\n")
    );
}

/// The subscriber loses every 10th video packet on the way in; its NACKs reach the relay, which
/// retransmits the packets from its cache as RTX, so the subscriber ends up with every packet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_video_is_repaired_by_nack_and_rtx() {
    let (server, a, b) = call(Some(10)).await;
    let (shared_a, _cmd_a, task_a) = (a.shared, a.cmd, a.task);
    let (shared_b, _cmd_b, task_b) = (b.shared, b.cmd, b.task);

    let report = || {
        format!(
            "{}\n{}\nserver log:\n{}",
            summary("A", &shared_a.lock().unwrap()),
            summary("B", &shared_b.lock().unwrap()),
            server.logs()
        )
    };
    let ok = wait_for(Duration::from_secs(30), || {
        shared_b.lock().unwrap().dropped_video.len() >= 15
    })
    .await;
    assert!(
        ok,
        "B did not drop 15 video packets within 30 s\n{}",
        report()
    );
    // Give the last NACKs time to be answered, then look.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sb = shared_b.lock().unwrap().clone();
    task_a.abort();
    task_b.abort();

    assert!(sb.problems.is_empty(), "B problems\n{}", report());
    let received: HashSet<u16> = sb
        .received
        .iter()
        .filter(|g| g.video)
        .map(|g| g.seq as u16)
        .collect();
    // Only drops the client could NACK while the relay still held the packet are judged; the relay
    // may pause B's video (audio only) when its estimate dips under 10 % loss.
    let dropped = &sb.dropped_followed;
    assert!(
        dropped.len() >= 10,
        "only {} of {} drops were followed by more video within {NACK_WINDOW:?}\n{}",
        dropped.len(),
        sb.dropped_video.len(),
        report()
    );
    let repaired = dropped.iter().filter(|s| received.contains(s)).count();
    assert!(
        sb.video_rtx_in > 0,
        "no VP8 retransmission (RTX) reached B; incoming RTP by PT {:?}\n{}",
        sb.wire_rtp_in,
        report()
    );
    // Every packet dropped more than a round trip before the end must have been repaired; allow the
    // last one, whose NACK may still be in flight.
    assert!(
        repaired + 1 >= dropped.len(),
        "only {repaired} of {} dropped video packets were repaired by RTX (dropped {:?})\n{}",
        dropped.len(),
        dropped,
        report()
    );
}
