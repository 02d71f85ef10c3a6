//! Synthetic media for the load and adaptation bots: real VP8 video and Opus audio, sans-I/O.
//!
//! Nothing here touches a socket or a clock: every call takes the media time (`Duration`) it
//! concerns, so a bot can drive the modules from its own loop, and the tests from a simulated one.
//!
//! Sending side:
//! - [`pattern`]: a seeded, moving, busy test picture ([`TestPattern`]) in I420 at any size, hard
//!   enough to encode that the bitrate, not the content, limits quality (720p wants well over
//!   1.5 Mbit/s).
//! - [`vp8_encoder`]: libvpx through FFmpeg in realtime CBR mode ([`Vp8Encoder`]), with keyframes
//!   every 3 s and on request, following [`Vp8Encoder::set_target`] (bitrate and
//!   `scaleResolutionDownBy`); its module doc says what FFmpeg allows for rate changes.
//! - [`simulcast`]: the web client's three layers `q`/`h`/`f` or one adaptive layer
//!   ([`VideoPublisher`]), steered by dynacast (`publisher_layers`), by `setParameters`-style
//!   encodings and by an uplink estimate.
//! - [`opus_audio`]: a speech-like signal in 20 ms Opus packets with in-band FEC ([`OpusSender`]).
//!
//! Receiving side:
//! - [`vp8_decoder`]: FFmpeg's VP8 decoder ([`Vp8Decoder`]), counting decoded and undecodable
//!   frames (a loss makes inter frames undecodable until the next keyframe).
//! - [`frame_loss`]: video frames lost for good, from RTP timestamps ([`FrameLoss`]).
//! - [`opus_audio`]: [`OpusReceiver`] decodes Opus (FEC for a single loss) and counts gaps of more
//!   than 60 ms between arrivals.
//! - [`playout_stats`]: frame times to frame rate and freezes ([`PlayoutStats`]), and the
//!   counters of a (planned) `loadtest bwe` report ([`MediaCounters`]).

mod error;
pub mod frame_loss;
pub mod opus_audio;
pub mod pattern;
pub mod playout_stats;
pub mod simulcast;
pub mod vp8_decoder;
pub mod vp8_encoder;

pub use error::MediaError;
pub use frame_loss::FrameLoss;
pub use opus_audio::{AudioStats, OpusReceiver, OpusSender, SpeechSignal};
pub use pattern::{I420Frame, TestPattern};
pub use playout_stats::{MediaCounters, PlayoutStats};
pub use simulcast::{
    LayerFrame, LayerParameters, LayerState, PublisherConfig, VideoPublisher, web_client_layers,
};
pub use vp8_decoder::{Decoded, DecoderStats, Vp8Decoder};
pub use vp8_encoder::{EncodedFrame, Vp8Encoder, Vp8EncoderConfig};
