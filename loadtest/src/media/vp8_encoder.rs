//! A realtime VP8 encoder: libvpx through FFmpeg, steered at run time like a browser's.
//!
//! Settings follow what libwebrtc gives libvpx for a camera: deadline realtime, a high `cpu-used`
//! (speed), no look-ahead (`lag-in-frames` 0, no alt-ref, so no frame is held back), error
//! resilient, CBR with a one-second buffer, quantizer 2..=56, 15 % overshoot, intra frames capped
//! at three times an average frame. Keyframes come every [`Vp8EncoderConfig::keyframe_interval`]
//! of presentation time and when [`Vp8Encoder::request_keyframe`] asks for one.
//!
//! # Rate changes and FFmpeg
//!
//! FFmpeg's libvpx wrapper (`libavcodec/libvpxenc.c`, 5.1 and later alike) reads `bit_rate` and
//! the size once, in its init function, and never calls `vpx_codec_enc_config_set`: a change of
//! `AVCodecContext::bit_rate` after opening has no effect. The only way to change the rate through
//! FFmpeg is to close and re-open the encoder, and a fresh libvpx encoder starts with a keyframe.
//! [`Vp8Encoder::set_target`] therefore re-opens only
//!
//! - on a change of size (a new `scale_down_by`), which needs a keyframe anyway, or
//! - when the new bitrate is more than [`REOPEN_RATE_CHANGE`] away from the rate the encoder was
//!   opened with;
//!
//! smaller changes are remembered (the next re-open uses them) but leave the encoder running, so
//! the encoded rate stays within 15 % of the target without a keyframe per step.

use std::collections::VecDeque;
use std::time::Duration;

use ffmpeg_next::util::error::EAGAIN;
use ffmpeg_next::{Dictionary, Rational, codec, encoder, format, frame, picture};
use tracing::debug;

use super::error::MediaError;
use super::pattern::I420Frame;

/// Re-open the encoder (and so send a keyframe) for a rate change larger than this fraction.
pub const REOPEN_RATE_CHANGE: f64 = 0.15;

/// How an encoder is set up.
#[derive(Debug, Clone, PartialEq)]
pub struct Vp8EncoderConfig {
    /// The source (camera) width; the encoded width is this divided by the scale.
    pub source_width: u32,
    /// The source height.
    pub source_height: u32,
    /// Nominal frames per second (the codec's time base).
    pub fps: u32,
    /// The initial target bitrate in bit/s.
    pub bitrate_bps: u32,
    /// The initial `scaleResolutionDownBy` (1 = source size).
    pub scale_down_by: f64,
    /// A keyframe at least this often, in presentation time.
    pub keyframe_interval: Duration,
    /// libvpx speed, -16..=16: higher is faster and worse (libwebrtc uses -6 to -12).
    pub cpu_used: i32,
    /// Encoder threads.
    pub threads: u32,
}

impl Default for Vp8EncoderConfig {
    fn default() -> Self {
        Vp8EncoderConfig {
            source_width: 1280,
            source_height: 720,
            fps: 30,
            bitrate_bps: 1_500_000,
            scale_down_by: 1.0,
            keyframe_interval: Duration::from_secs(3),
            cpu_used: 8,
            threads: 1,
        }
    }
}

/// One encoded VP8 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// The VP8 bitstream of the frame (what an RTP packetizer splits).
    pub data: Vec<u8>,
    /// Whether it is a keyframe.
    pub keyframe: bool,
    /// Presentation time, as given to [`Vp8Encoder::encode`].
    pub pts: Duration,
    /// Encoded width.
    pub width: u32,
    /// Encoded height.
    pub height: u32,
}

/// A VP8 encoder following a target bitrate and scale.
pub struct Vp8Encoder {
    config: Vp8EncoderConfig,
    encoder: encoder::video::Encoder,
    width: u32,
    height: u32,
    /// The rate the open encoder was configured with.
    opened_bps: u32,
    /// The latest target (may differ from `opened_bps` by up to the re-open threshold).
    target_bps: u32,
    keyframe_requested: bool,
    last_keyframe: Option<Duration>,
    /// Presentation times of frames sent to the encoder and not yet returned, with their ticks.
    in_flight: VecDeque<(i64, Duration)>,
    last_tick: Option<i64>,
    reopens: u64,
}

impl Vp8Encoder {
    /// Opens an encoder.
    pub fn new(config: Vp8EncoderConfig) -> Result<Self, MediaError> {
        init_ffmpeg()?;
        if config.fps == 0 || config.bitrate_bps == 0 {
            return Err(MediaError::Invalid {
                what: "frame rate and bitrate (must be positive)",
                value: format!("{} fps, {} bit/s", config.fps, config.bitrate_bps),
            });
        }
        let (width, height) = scaled_size(
            config.source_width,
            config.source_height,
            config.scale_down_by,
        )?;
        let encoder = open(&config, width, height, config.bitrate_bps)?;
        Ok(Vp8Encoder {
            width,
            height,
            opened_bps: config.bitrate_bps,
            target_bps: config.bitrate_bps,
            encoder,
            config,
            keyframe_requested: false,
            last_keyframe: None,
            in_flight: VecDeque::new(),
            last_tick: None,
            reopens: 0,
        })
    }

    /// The size frames must have: the source size divided by the current scale.
    pub fn frame_size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The latest target bitrate in bit/s.
    pub fn target_bps(&self) -> u32 {
        self.target_bps
    }

    /// The bitrate the running encoder was opened with (within 15 % of the target).
    pub fn encoder_bps(&self) -> u32 {
        self.opened_bps
    }

    /// How often the encoder has been re-opened for a rate or size change.
    pub fn reopens(&self) -> u64 {
        self.reopens
    }

    /// Follows a rate instruction: target bitrate and `scaleResolutionDownBy`. A new size re-opens
    /// the encoder (the next frame is a keyframe at the new size); so does a bitrate more than
    /// [`REOPEN_RATE_CHANGE`] away from the open encoder's (see the module doc).
    pub fn set_target(&mut self, bitrate_bps: u32, scale_down_by: f64) -> Result<(), MediaError> {
        if bitrate_bps == 0 {
            return Err(MediaError::Invalid {
                what: "bitrate",
                value: "0".into(),
            });
        }
        let (width, height) = scaled_size(
            self.config.source_width,
            self.config.source_height,
            scale_down_by,
        )?;
        self.target_bps = bitrate_bps;
        let rate_change = f64::from(bitrate_bps) / f64::from(self.opened_bps) - 1.0;
        if (width, height) == (self.width, self.height) && rate_change.abs() <= REOPEN_RATE_CHANGE {
            return Ok(());
        }
        debug!(
            from = self.opened_bps,
            to = bitrate_bps,
            width,
            height,
            "re-opening the VP8 encoder"
        );
        self.encoder = open(&self.config, width, height, bitrate_bps)?;
        (self.width, self.height, self.opened_bps) = (width, height, bitrate_bps);
        self.in_flight.clear();
        self.reopens += 1;
        Ok(())
    }

    /// Makes the next encoded frame a keyframe (a PLI or FIR arrived).
    pub fn request_keyframe(&mut self) {
        self.keyframe_requested = true;
    }

    /// Encodes one frame of [`Self::frame_size`] shown at `pts` (increasing). With no look-ahead
    /// the frame comes back at once, so the result holds this frame (libvpx drops none, its frame
    /// dropping being off).
    pub fn encode(
        &mut self,
        picture: &I420Frame,
        pts: Duration,
    ) -> Result<Vec<EncodedFrame>, MediaError> {
        if (picture.width(), picture.height()) != (self.width, self.height) {
            return Err(MediaError::FrameSize {
                width: self.width,
                height: self.height,
                got_width: picture.width(),
                got_height: picture.height(),
            });
        }
        // Ticks of 1/fps; two frames within one tick are shifted, libvpx needs increasing ones.
        let mut tick = (pts.as_secs_f64() * f64::from(self.config.fps)).round() as i64;
        if let Some(last) = self.last_tick {
            tick = tick.max(last + 1);
        }
        self.last_tick = Some(tick);

        let mut input = frame::Video::new(format::Pixel::YUV420P, self.width, self.height);
        for (index, (plane, stride, rows)) in picture.planes().into_iter().enumerate() {
            let dst_stride = input.stride(index);
            let dst = input.data_mut(index);
            for (row, src) in plane.chunks_exact(stride).take(rows).enumerate() {
                dst[row * dst_stride..row * dst_stride + stride].copy_from_slice(src);
            }
        }
        input.set_pts(Some(tick));
        let keyframe_due = self
            .last_keyframe
            .is_none_or(|last| pts.saturating_sub(last) >= self.config.keyframe_interval);
        if self.keyframe_requested || keyframe_due {
            input.set_kind(picture::Type::I);
        }
        self.encoder
            .send_frame(&input)
            .map_err(MediaError::ffmpeg("encode a frame"))?;
        self.in_flight.push_back((tick, pts));
        self.keyframe_requested = false;

        let mut out = Vec::new();
        let mut packet = codec::packet::Packet::empty();
        loop {
            match self.encoder.receive_packet(&mut packet) {
                Ok(()) => {}
                Err(ffmpeg_next::Error::Other { errno: EAGAIN } | ffmpeg_next::Error::Eof) => break,
                Err(e) => return Err(MediaError::ffmpeg("take an encoded frame")(e)),
            }
            let Some(data) = packet.data() else { continue };
            // Match the packet to its frame by tick; frames without a packet were dropped.
            let tick = packet.pts().unwrap_or(tick);
            while self.in_flight.front().is_some_and(|&(t, _)| t < tick) {
                self.in_flight.pop_front();
            }
            let pts = self.in_flight.pop_front().map_or(pts, |(_, pts)| pts);
            let keyframe = packet.is_key();
            if keyframe {
                self.last_keyframe = Some(pts);
            }
            out.push(EncodedFrame {
                data: data.to_vec(),
                keyframe,
                pts,
                width: self.width,
                height: self.height,
            });
        }
        Ok(out)
    }
}

/// Registers FFmpeg's codecs (once) and keeps its logging to errors: libvpx's wrapper would
/// otherwise print its version at every open.
pub(crate) fn init_ffmpeg() -> Result<(), MediaError> {
    ffmpeg_next::init().map_err(MediaError::ffmpeg("initialise"))?;
    ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Error);
    Ok(())
}

/// The source size divided by `scale`, rounded down to even numbers (at least 2x2), as a browser
/// scales for `scaleResolutionDownBy`.
pub(crate) fn scaled_size(width: u32, height: u32, scale: f64) -> Result<(u32, u32), MediaError> {
    if !(scale.is_finite() && scale >= 1.0) {
        return Err(MediaError::Invalid {
            what: "scale_down_by (must be at least 1)",
            value: scale.to_string(),
        });
    }
    let even = |n: u32| (((f64::from(n) / scale) as u32) & !1).max(2);
    Ok((even(width), even(height)))
}

fn open(
    config: &Vp8EncoderConfig,
    width: u32,
    height: u32,
    bitrate_bps: u32,
) -> Result<encoder::video::Encoder, MediaError> {
    let codec = encoder::find_by_name("libvpx").ok_or(MediaError::CodecMissing("libvpx"))?;
    let mut video = codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(MediaError::ffmpeg("create the VP8 encoder"))?;
    video.set_width(width);
    video.set_height(height);
    video.set_format(format::Pixel::YUV420P);
    let fps = i32::try_from(config.fps).map_err(|_| MediaError::Invalid {
        what: "frame rate",
        value: config.fps.to_string(),
    })?;
    video.set_time_base(Rational::new(1, fps));
    video.set_frame_rate(Some(Rational::new(fps, 1)));
    video.set_max_b_frames(0);

    let bitrate = bitrate_bps.to_string();
    let mut options = Dictionary::new();
    for (key, value) in [
        // CBR: libvpxenc picks it when minrate == maxrate == bitrate.
        ("b", bitrate.as_str()),
        ("minrate", bitrate.as_str()),
        ("maxrate", bitrate.as_str()),
        // A one-second buffer (bits), starting half full; libvpxenc turns these into ms.
        ("bufsize", bitrate.as_str()),
        ("rc_init_occupancy", &(bitrate_bps / 2).to_string()),
        ("undershoot-pct", "100"),
        ("overshoot-pct", "15"),
        ("max-intra-rate", "300"),
        ("qmin", "2"),
        ("qmax", "56"),
        ("deadline", "realtime"),
        ("cpu-used", &config.cpu_used.to_string()),
        ("lag-in-frames", "0"),
        ("auto-alt-ref", "0"),
        ("error-resilient", "default"),
        ("static-thresh", "1"),
        // Keyframes are forced by presentation time; libvpx's own interval is only a backstop.
        ("g", &(config.fps * 3600).to_string()),
        ("threads", &config.threads.to_string()),
    ] {
        options.set(key, value);
    }
    video
        .open_as_with(codec, options)
        .map_err(MediaError::ffmpeg("open the VP8 encoder"))
}
