//! Packet formats (all integers big-endian).
//!
//! Every datagram starts with the magic `BWP1` and a type byte.
//!
//! Handshake (not in a session yet):
//!
//! | type | direction | layout after magic and type |
//! |---|---|---|
//! | `0x01` hello | client → server | client nonce (16), token length (u16), token (UTF-8) |
//! | `0x02` hello-ack | server → client | session id (u64), server nonce (16), budget (u64), max train packets (u16), MAC (16) |
//!
//! The ack (55 bytes) is always smaller than a hello carrying a real token (over 100 bytes); the
//! server checks this before it replies.
//!
//! Session packets: magic, type, session id (u64), sequence number (u64, per sender), the body,
//! and a 16-byte MAC: HMAC-SHA256 under the session key over a direction byte (`C` or `S`)
//! followed by everything before the MAC, truncated to 16 bytes. The session key is
//! HMAC-SHA256(key = the token, `bwp1 session` ‖ session id ‖ client nonce ‖ server nonce).
//!
//! | type | direction | body |
//! |---|---|---|
//! | `0x10` echo | client → server | client time µs (u64), padding |
//! | `0x11` echo-reply | server → client | client time µs (u64), echoed sequence (u64), padding: same length as the echo |
//! | `0x12` down-train request | client → server | train id (u32), packets (u16), packet size (u16), first gap µs (u32), gap ratio ‰ (u16), held packets (u16, optional) |
//! | `0x13` train data | both | train id (u32), index (u16), packets (u16), sender time µs (u64), padding to the packet size |
//! | `0x14` up-report request | client → server | train id (u32) |
//! | `0x15` up-report | server → client | train id (u32), entries (u16), then per entry: index (u16), size (u16), arrival µs since session start (u32) |
//! | `0x16` bye | client → server | nothing |
//!
//! A gap of 0 asks for a back-to-back train; a non-zero gap with a ratio below 1000 a chirp whose
//! gaps shrink by that factor per packet, except that the last `held` packets keep the gap reached
//! before them.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// First bytes of every datagram.
pub const MAGIC: [u8; 4] = *b"BWP1";
/// Bytes of a truncated MAC.
pub const MAC_LEN: usize = 16;
/// Magic, type, session id, sequence.
pub const SESSION_HEADER: usize = 4 + 1 + 8 + 8;
/// Largest datagram either side sends or accepts.
pub const MAX_DATAGRAM: usize = 1472;
/// Smallest train packet: header, train fields, MAC.
pub const MIN_TRAIN_PACKET: usize = SESSION_HEADER + 16 + MAC_LEN;
/// Most packets in one train (an up-report of them fits in one datagram).
pub const MAX_TRAIN_PACKETS: u16 = 160;
/// Bytes of one up-report entry.
pub const REPORT_ENTRY: usize = 8;
/// Length of a hello-ack.
pub const HELLO_ACK_LEN: usize = 4 + 1 + 8 + 16 + 8 + 2 + MAC_LEN;
/// Smallest hello: magic, type, nonce, token length.
pub const HELLO_MIN: usize = 4 + 1 + 16 + 2;
/// Smallest echo: header, client time, MAC.
pub const MIN_ECHO: usize = SESSION_HEADER + 16 + MAC_LEN;

/// Packet types.
pub mod kind {
    /// Client hello with token.
    pub const HELLO: u8 = 0x01;
    /// Server's answer to a valid hello.
    pub const HELLO_ACK: u8 = 0x02;
    /// Echo request.
    pub const ECHO: u8 = 0x10;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0x11;
    /// Request for a server → client train.
    pub const DOWN_TRAIN: u8 = 0x12;
    /// One packet of a train.
    pub const TRAIN_DATA: u8 = 0x13;
    /// Request for the arrival times of a client → server train.
    pub const UP_REPORT_REQ: u8 = 0x14;
    /// Arrival times of a client → server train.
    pub const UP_REPORT: u8 = 0x15;
    /// End of session.
    pub const BYE: u8 = 0x16;
}

/// Which side sent a session packet (part of the MAC input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client → server.
    Client,
    /// Server → client.
    Server,
}

impl Dir {
    fn byte(self) -> u8 {
        match self {
            Dir::Client => b'C',
            Dir::Server => b'S',
        }
    }
}

/// HMAC-SHA256 keyed with `key` over `data` (any key length works, so this cannot fail).
pub(crate) fn hmac_with(key: &[u8], data: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(data);
    mac
}

/// The key of one session.
#[derive(Clone)]
pub struct SessionKey([u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    /// Derives the key from the token and the handshake values.
    pub fn derive(
        token: &str,
        session: u64,
        client_nonce: &[u8; 16],
        server_nonce: &[u8; 16],
    ) -> SessionKey {
        let mut mac = hmac_with(token.as_bytes(), b"bwp1 session");
        mac.update(&session.to_be_bytes());
        mac.update(client_nonce);
        mac.update(server_nonce);
        SessionKey(mac.finalize().into_bytes().into())
    }

    fn tag(&self, dir: Dir, data: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = hmac_with(&self.0, &[dir.byte()]);
        mac.update(data);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// Appends the MAC of `buf` (everything so far) sent by `dir`.
    pub fn seal(&self, dir: Dir, buf: &mut Vec<u8>) {
        let tag = self.tag(dir, buf);
        buf.extend_from_slice(&tag);
    }

    /// Whether the last [`MAC_LEN`] bytes of `packet` are the MAC of the rest, sent by `dir`.
    /// Compares in constant time.
    pub fn check(&self, dir: Dir, packet: &[u8]) -> bool {
        if packet.len() < MAC_LEN {
            return false;
        }
        let (data, tag) = packet.split_at(packet.len() - MAC_LEN);
        let mut mac = hmac_with(&self.0, &[dir.byte()]);
        mac.update(data);
        mac.verify_truncated_left(tag).is_ok()
    }
}

/// Reads big-endian fields from a slice; every read checks the length.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads `buf` from its start.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }
    /// A u8.
    pub fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }
    /// A u16.
    pub fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    /// A u32.
    pub fn u32(&mut self) -> Option<u32> {
        self.bytes(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
    }
    /// A u64.
    pub fn u64(&mut self) -> Option<u64> {
        self.bytes(8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
    }
    /// 16 bytes.
    pub fn nonce(&mut self) -> Option<[u8; 16]> {
        self.bytes(16).and_then(|b| b.try_into().ok())
    }
}

/// A hello.
pub fn hello(client_nonce: &[u8; 16], token: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(HELLO_MIN + token.len());
    b.extend_from_slice(&MAGIC);
    b.push(kind::HELLO);
    b.extend_from_slice(client_nonce);
    b.extend_from_slice(&u16::try_from(token.len()).unwrap_or(u16::MAX).to_be_bytes());
    b.extend_from_slice(token.as_bytes());
    b
}

/// A parsed hello.
#[derive(Debug, PartialEq, Eq)]
pub struct Hello<'a> {
    /// The client's nonce.
    pub client_nonce: [u8; 16],
    /// The token as sent.
    pub token: &'a str,
}

/// Why a datagram could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than its fields say.
    Truncated,
    /// Not ours, or fields out of range.
    Malformed,
}

/// Parses a hello (after the magic and type were checked).
pub fn parse_hello(packet: &[u8]) -> Result<Hello<'_>, ParseError> {
    let mut r = Reader::new(packet.get(5..).ok_or(ParseError::Truncated)?);
    let client_nonce = r.nonce().ok_or(ParseError::Truncated)?;
    let len = usize::from(r.u16().ok_or(ParseError::Truncated)?);
    let token = r.bytes(len).ok_or(ParseError::Truncated)?;
    let token = std::str::from_utf8(token).map_err(|_| ParseError::Malformed)?;
    Ok(Hello {
        client_nonce,
        token,
    })
}

/// What a hello-ack says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloAck {
    /// Session id.
    pub session: u64,
    /// The server's nonce.
    pub server_nonce: [u8; 16],
    /// The token's byte budget.
    pub budget: u64,
    /// Most packets per train the server takes.
    pub max_train: u16,
}

/// A hello-ack sealed with `key`.
pub fn hello_ack(ack: &HelloAck, key: &SessionKey) -> Vec<u8> {
    let mut b = Vec::with_capacity(HELLO_ACK_LEN);
    b.extend_from_slice(&MAGIC);
    b.push(kind::HELLO_ACK);
    b.extend_from_slice(&ack.session.to_be_bytes());
    b.extend_from_slice(&ack.server_nonce);
    b.extend_from_slice(&ack.budget.to_be_bytes());
    b.extend_from_slice(&ack.max_train.to_be_bytes());
    key.seal(Dir::Server, &mut b);
    b
}

/// Parses a hello-ack (MAC not checked: the key depends on its fields).
pub fn parse_hello_ack(packet: &[u8]) -> Result<HelloAck, ParseError> {
    if packet.len() != HELLO_ACK_LEN || packet[..4] != MAGIC || packet[4] != kind::HELLO_ACK {
        return Err(ParseError::Malformed);
    }
    let mut r = Reader::new(&packet[5..]);
    let session = r.u64().ok_or(ParseError::Truncated)?;
    let server_nonce = r.nonce().ok_or(ParseError::Truncated)?;
    let budget = r.u64().ok_or(ParseError::Truncated)?;
    let max_train = r.u16().ok_or(ParseError::Truncated)?;
    Ok(HelloAck {
        session,
        server_nonce,
        budget,
        max_train,
    })
}

/// Starts a session packet: magic, type, session id, sequence.
pub fn session_header(kind: u8, session: u64, seq: u64, capacity: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(capacity.max(SESSION_HEADER + MAC_LEN));
    b.extend_from_slice(&MAGIC);
    b.push(kind);
    b.extend_from_slice(&session.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b
}

/// Pads `b` with zeros so that, with the MAC, it is `total` bytes long.
pub fn pad_to(b: &mut Vec<u8>, total: usize) {
    let want = total.saturating_sub(MAC_LEN);
    if b.len() < want {
        b.resize(want, 0);
    }
}

/// The fixed part of a session packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPacket<'a> {
    /// Packet type.
    pub kind: u8,
    /// Session id.
    pub session: u64,
    /// Sender's sequence number.
    pub seq: u64,
    /// Bytes between the header and the MAC.
    pub body: &'a [u8],
}

/// Splits a session packet (MAC not checked).
pub fn parse_session(packet: &[u8]) -> Result<SessionPacket<'_>, ParseError> {
    if packet.len() < SESSION_HEADER + MAC_LEN {
        return Err(ParseError::Truncated);
    }
    let mut r = Reader::new(packet);
    r.bytes(4);
    let kind = r.u8().ok_or(ParseError::Truncated)?;
    let session = r.u64().ok_or(ParseError::Truncated)?;
    let seq = r.u64().ok_or(ParseError::Truncated)?;
    Ok(SessionPacket {
        kind,
        session,
        seq,
        body: &packet[SESSION_HEADER..packet.len() - MAC_LEN],
    })
}

/// A down-train request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainRequest {
    /// Train id.
    pub train: u32,
    /// Packets.
    pub count: u16,
    /// Datagram size of each packet.
    pub size: u16,
    /// First gap in µs (0: back to back).
    pub gap_us: u32,
    /// Each gap is the previous one times this / 1000 (chirps).
    pub ratio_milli: u16,
    /// The last this many packets of a chirp keep the gap reached before them (optional on the
    /// wire; 0 when absent).
    pub hold: u16,
}

impl TrainRequest {
    /// Encodes the body.
    pub fn write(&self, b: &mut Vec<u8>) {
        b.extend_from_slice(&self.train.to_be_bytes());
        b.extend_from_slice(&self.count.to_be_bytes());
        b.extend_from_slice(&self.size.to_be_bytes());
        b.extend_from_slice(&self.gap_us.to_be_bytes());
        b.extend_from_slice(&self.ratio_milli.to_be_bytes());
        b.extend_from_slice(&self.hold.to_be_bytes());
    }
    /// Decodes a body.
    pub fn read(body: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body);
        let t = || ParseError::Truncated;
        Ok(TrainRequest {
            train: r.u32().ok_or_else(t)?,
            count: r.u16().ok_or_else(t)?,
            size: r.u16().ok_or_else(t)?,
            gap_us: r.u32().ok_or_else(t)?,
            ratio_milli: r.u16().ok_or_else(t)?,
            hold: r.u16().unwrap_or(0),
        })
    }
    /// Bytes the train carries.
    pub fn bytes(&self) -> u64 {
        u64::from(self.count) * u64::from(self.size)
    }
    /// The gap before packet `index` (µs; 0 for the first).
    pub fn gap_before(&self, index: u16) -> u64 {
        if self.gap_us == 0 {
            return 0;
        }
        crate::estimator::ChirpPlan {
            count: self.count,
            size: self.size,
            first_gap_us: self.gap_us,
            ratio_milli: self.ratio_milli,
            hold: self.hold,
        }
        .gap_before(index)
    }
}

/// The fields of a train packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainData {
    /// Train id.
    pub train: u32,
    /// Index in the train.
    pub index: u16,
    /// Packets in the train.
    pub count: u16,
    /// Sender's clock, µs.
    pub sent_us: u64,
}

impl TrainData {
    /// Encodes the body (before padding).
    pub fn write(&self, b: &mut Vec<u8>) {
        b.extend_from_slice(&self.train.to_be_bytes());
        b.extend_from_slice(&self.index.to_be_bytes());
        b.extend_from_slice(&self.count.to_be_bytes());
        b.extend_from_slice(&self.sent_us.to_be_bytes());
    }
    /// Decodes a body.
    pub fn read(body: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(body);
        let t = || ParseError::Truncated;
        Ok(TrainData {
            train: r.u32().ok_or_else(t)?,
            index: r.u16().ok_or_else(t)?,
            count: r.u16().ok_or_else(t)?,
            sent_us: r.u64().ok_or_else(t)?,
        })
    }
}

/// One arrival in an up-report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportEntry {
    /// Index in the train.
    pub index: u16,
    /// Datagram size.
    pub size: u16,
    /// Arrival, µs since the session started (server clock).
    pub arrival_us: u32,
}

/// Encodes an up-report body.
pub fn write_report(train: u32, entries: &[ReportEntry], b: &mut Vec<u8>) {
    b.extend_from_slice(&train.to_be_bytes());
    b.extend_from_slice(&u16::try_from(entries.len()).unwrap_or(0).to_be_bytes());
    for e in entries {
        b.extend_from_slice(&e.index.to_be_bytes());
        b.extend_from_slice(&e.size.to_be_bytes());
        b.extend_from_slice(&e.arrival_us.to_be_bytes());
    }
}

/// Decodes an up-report body.
pub fn read_report(body: &[u8]) -> Result<(u32, Vec<ReportEntry>), ParseError> {
    let mut r = Reader::new(body);
    let train = r.u32().ok_or(ParseError::Truncated)?;
    let n = r.u16().ok_or(ParseError::Truncated)?;
    if n > MAX_TRAIN_PACKETS {
        return Err(ParseError::Malformed);
    }
    let mut out = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        out.push(ReportEntry {
            index: r.u16().ok_or(ParseError::Truncated)?,
            size: r.u16().ok_or(ParseError::Truncated)?,
            arrival_us: r.u32().ok_or(ParseError::Truncated)?,
        });
    }
    Ok((train, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_detects_changes_and_direction() {
        let key = SessionKey::derive("tok", 7, &[1; 16], &[2; 16]);
        let mut p = session_header(kind::ECHO, 7, 1, 64);
        p.extend_from_slice(&42u64.to_be_bytes());
        key.seal(Dir::Client, &mut p);
        assert!(key.check(Dir::Client, &p));
        assert!(!key.check(Dir::Server, &p));
        let other = SessionKey::derive("tok2", 7, &[1; 16], &[2; 16]);
        assert!(!other.check(Dir::Client, &p));
        let mut flipped = p.clone();
        flipped[SESSION_HEADER] ^= 1;
        assert!(!key.check(Dir::Client, &flipped));
        assert!(!key.check(Dir::Client, &p[..10]));
    }

    #[test]
    fn hello_and_ack_round_trip_and_ack_is_small() {
        let token = "bp1.".to_string() + &"x".repeat(100);
        let h = hello(&[9; 16], &token);
        let parsed = parse_hello(&h).unwrap();
        assert_eq!(parsed.token, token);
        assert_eq!(parse_hello(&h[..h.len() - 1]), Err(ParseError::Truncated));
        let key = SessionKey::derive(&token, 5, &[9; 16], &[3; 16]);
        let ack = HelloAck {
            session: 5,
            server_nonce: [3; 16],
            budget: 1000,
            max_train: 100,
        };
        let a = hello_ack(&ack, &key);
        assert_eq!(a.len(), HELLO_ACK_LEN);
        assert!(a.len() < h.len());
        assert_eq!(parse_hello_ack(&a).unwrap(), ack);
        assert!(key.check(Dir::Server, &a));
    }

    #[test]
    fn bodies_round_trip() {
        let req = TrainRequest {
            train: 3,
            count: 50,
            size: 1200,
            gap_us: 1000,
            ratio_milli: 800,
            hold: 3,
        };
        let mut b = Vec::new();
        req.write(&mut b);
        assert_eq!(TrainRequest::read(&b), Ok(req));
        assert_eq!(TrainRequest::read(&b[..5]), Err(ParseError::Truncated));
        assert_eq!(req.gap_before(0), 0);
        assert_eq!(req.gap_before(1), 1000);
        assert_eq!(req.gap_before(2), 800);
        let entries = vec![
            ReportEntry {
                index: 0,
                size: 1200,
                arrival_us: 10,
            },
            ReportEntry {
                index: 2,
                size: 1200,
                arrival_us: 99,
            },
        ];
        let mut b = Vec::new();
        write_report(4, &entries, &mut b);
        assert_eq!(read_report(&b), Ok((4, entries)));
        assert_eq!(read_report(&b[..b.len() - 1]), Err(ParseError::Truncated));
        let full: Vec<ReportEntry> = (0..MAX_TRAIN_PACKETS)
            .map(|index| ReportEntry {
                index,
                size: 1,
                arrival_us: 1,
            })
            .collect();
        let mut b = session_header(kind::UP_REPORT, 1, 1, 0);
        write_report(1, &full, &mut b);
        assert!(b.len() + MAC_LEN <= MAX_DATAGRAM);
    }
}
