//! What can go wrong in the media modules.

use thiserror::Error;

/// An encoder or decoder could not be set up or did not accept its input.
#[derive(Debug, Error)]
pub enum MediaError {
    /// FFmpeg has no encoder or decoder of that name (FFmpeg built without libvpx?).
    #[error("FFmpeg has no {0} (is libavcodec built with libvpx?)")]
    CodecMissing(&'static str),
    /// FFmpeg refused a call.
    #[error("FFmpeg {what}: {source}")]
    Ffmpeg {
        /// What was being done.
        what: &'static str,
        /// FFmpeg's error.
        #[source]
        source: ffmpeg_next::Error,
    },
    /// libopus refused a call.
    #[error("Opus {what}: {source}")]
    Opus {
        /// What was being done.
        what: &'static str,
        /// libopus's error.
        #[source]
        source: opus::Error,
    },
    /// A frame of the wrong size was handed to an encoder.
    #[error("frame is {got_width}x{got_height}, the encoder expects {width}x{height}")]
    FrameSize {
        /// The encoder's size.
        width: u32,
        /// The encoder's size.
        height: u32,
        /// The frame's size.
        got_width: u32,
        /// The frame's size.
        got_height: u32,
    },
    /// A size, rate or scale that cannot be encoded.
    #[error("invalid {what}: {value}")]
    Invalid {
        /// Which parameter.
        what: &'static str,
        /// The value given.
        value: String,
    },
}

impl MediaError {
    pub(crate) fn ffmpeg(what: &'static str) -> impl FnOnce(ffmpeg_next::Error) -> Self {
        move |source| MediaError::Ffmpeg { what, source }
    }

    pub(crate) fn opus(what: &'static str) -> impl FnOnce(opus::Error) -> Self {
        move |source| MediaError::Opus { what, source }
    }
}
