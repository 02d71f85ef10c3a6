//! RFC 4571 framing for ICE-TCP: every packet is preceded by its length as a 16-bit big-endian number.

/// Largest frame the relay accepts. STUN, DTLS and RTP packets of a WebRTC session stay below the path
/// MTU; anything much larger is a broken or hostile peer.
pub const MAX_FRAME: usize = 4096;

/// The peer sent a frame larger than [`MAX_FRAME`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ICE-TCP frame of {0} bytes is over the limit of {MAX_FRAME}")]
pub struct FrameTooLarge(pub usize);

/// Reassembles frames from a TCP byte stream.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// A decoder with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, if there is one.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameTooLarge> {
        if self.buf.len() < 2 {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]]));
        if len > MAX_FRAME {
            return Err(FrameTooLarge(len));
        }
        if self.buf.len() < 2 + len {
            return Ok(None);
        }
        let frame = self.buf[2..2 + len].to_vec();
        self.buf.drain(..2 + len);
        Ok(Some(frame))
    }
}

/// Frame one packet for sending; `None` when it is too large for a 16-bit length.
pub fn encode(packet: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(packet.len()).ok()?;
    let mut out = Vec::with_capacity(packet.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(packet);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_joined_anywhere() {
        let a = encode(b"hello").unwrap();
        let b = encode(&[7u8; 1200]).unwrap();
        let stream: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
        for split in 0..stream.len() {
            let mut d = FrameDecoder::new();
            let mut got = vec![];
            d.push(&stream[..split]);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
            d.push(&stream[split..]);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
            assert_eq!(got, vec![b"hello".to_vec(), vec![7u8; 1200]]);
        }
    }

    #[test]
    fn oversized_frame_is_an_error() {
        let mut d = FrameDecoder::new();
        d.push(&[0xff, 0xff, 1, 2, 3]);
        assert_eq!(d.next_frame(), Err(FrameTooLarge(65_535)));
    }
}
