//! Decoding received VP8 frames with FFmpeg's VP8 decoder, counting what could be shown.
//!
//! A frame is *undecodable* when the decoder rejects it, or when it follows a loss: an inter frame
//! after a gap references a picture the receiver never had, so, like a browser, the receiver shows
//! nothing new until the next keyframe. Such frames are counted, not decoded.

use ffmpeg_next::{codec, decoder, frame};
use tracing::debug;

use super::error::MediaError;
use super::vp8_encoder::init_ffmpeg;

/// What the decoder saw so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// Frames decoded to a picture.
    pub decoded_frames: u64,
    /// Keyframes among them.
    pub keyframes: u64,
    /// Frames rejected by the decoder or received while waiting for a keyframe after a loss.
    pub undecodable_frames: u64,
    /// Width of the last decoded picture (0 before the first).
    pub width: u32,
    /// Height of the last decoded picture (0 before the first).
    pub height: u32,
}

/// What became of one received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// A picture of this size.
    Picture {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Whether the frame was a keyframe.
        keyframe: bool,
    },
    /// Not decodable (see the module doc); the receiver should ask for a keyframe.
    Undecodable,
}

/// A VP8 decoder for one received stream.
pub struct Vp8Decoder {
    decoder: decoder::Video,
    picture: frame::Video,
    /// A frame was lost or broken and no keyframe came since.
    waiting_for_keyframe: bool,
    stats: DecoderStats,
}

impl Vp8Decoder {
    /// Opens FFmpeg's VP8 decoder (single-threaded, so each frame comes out at once).
    pub fn new() -> Result<Self, MediaError> {
        init_ffmpeg()?;
        let codec = decoder::find(codec::Id::VP8).ok_or(MediaError::CodecMissing("VP8 decoder"))?;
        let decoder = codec::context::Context::new_with_codec(codec)
            .decoder()
            .video()
            .map_err(MediaError::ffmpeg("open the VP8 decoder"))?;
        Ok(Vp8Decoder {
            decoder,
            picture: frame::Video::empty(),
            // Nothing can be decoded before the first keyframe.
            waiting_for_keyframe: true,
            stats: DecoderStats::default(),
        })
    }

    /// The counters so far.
    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Whether the decoder needs a keyframe before it can show anything new.
    pub fn needs_keyframe(&self) -> bool {
        self.waiting_for_keyframe
    }

    /// Decodes one complete frame. `follows_loss` says that a frame before this one was lost (a
    /// gap in picture ids or sequence numbers), so an inter frame cannot be decoded.
    pub fn decode(&mut self, data: &[u8], follows_loss: bool) -> Decoded {
        let keyframe = is_keyframe(data);
        // An empty packet would tell FFmpeg to drain: it counts as broken and is never sent.
        if data.is_empty() || (follows_loss && !keyframe) {
            self.waiting_for_keyframe = true;
        }
        if self.waiting_for_keyframe && !keyframe {
            self.stats.undecodable_frames += 1;
            return Decoded::Undecodable;
        }
        match self.decode_picture(data) {
            Ok(()) => {
                self.waiting_for_keyframe = false;
                let (width, height) = (self.picture.width(), self.picture.height());
                self.stats.decoded_frames += 1;
                self.stats.keyframes += u64::from(keyframe);
                (self.stats.width, self.stats.height) = (width, height);
                Decoded::Picture {
                    width,
                    height,
                    keyframe,
                }
            }
            Err(e) => {
                debug!(error = %e, keyframe, "VP8 frame not decodable");
                self.waiting_for_keyframe = true;
                self.stats.undecodable_frames += 1;
                Decoded::Undecodable
            }
        }
    }

    fn decode_picture(&mut self, data: &[u8]) -> Result<(), ffmpeg_next::Error> {
        let packet = codec::packet::Packet::copy(data);
        self.decoder.send_packet(&packet)?;
        self.decoder.receive_frame(&mut self.picture)
    }
}

/// Whether a VP8 frame is a keyframe: bit 0 of its first byte (RFC 6386 §9.1) is 0.
pub fn is_keyframe(data: &[u8]) -> bool {
    data.first().is_some_and(|b| b & 1 == 0)
}
