//! The publisher's camera: three VP8 simulcast layers, or one adaptive layer, steered as the web
//! client's `RTCRtpSender` is.
//!
//! The web client (`web-client/src/call.ts`) publishes [`web_client_layers`]: RIDs `q`, `h` and
//! `f` at 1/4, 1/2 and full size of a 1280x720 camera, capped at 150, 500 and 1500 kbit/s. The
//! relay steers a publisher in two ways, and [`VideoPublisher`] follows both:
//!
//! - the `publisher_layers` message (`{mid, layers: [{rid, active, max_bitrate_bps,
//!   scale_resolution_down_by}]}`: dynacast and end-to-end rate control), which the client applies
//!   with `setParameters` on the encodings it names: [`VideoPublisher::follow`];
//! - `setParameters` with every encoding (a bot sending one adaptive layer of its own):
//!   [`VideoPublisher::set_parameters`].
//!
//! Within those caps the browser splits its own uplink estimate across the active layers, lowest
//! first, and pauses a layer whose minimum no longer fits (libwebrtc's simulcast rate allocator);
//! [`VideoPublisher::set_available_bitrate`] does the same with an estimate passed in.

use std::time::Duration;

use super::error::MediaError;
use super::pattern::{I420Frame, TestPattern};
use super::vp8_encoder::{EncodedFrame, Vp8Encoder, Vp8EncoderConfig, scaled_size};

/// One encoding of the video track, the fields of `RTCRtpEncodingParameters` that Telemed uses.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerParameters {
    /// The RID (`None` for a single, non-simulcast layer).
    pub rid: Option<String>,
    /// Whether the layer is sent.
    pub active: bool,
    /// `maxBitrate` in bit/s.
    pub max_bitrate_bps: u32,
    /// `scaleResolutionDownBy` (1 = camera size).
    pub scale_resolution_down_by: f64,
}

/// The web client's three simulcast layers (`SIMULCAST` in `web-client/src/call.ts`).
pub fn web_client_layers() -> Vec<LayerParameters> {
    [
        ("q", 4.0, 150_000),
        ("h", 2.0, 500_000),
        ("f", 1.0, 1_500_000),
    ]
    .into_iter()
    .map(|(rid, scale, max)| LayerParameters {
        rid: Some(rid.into()),
        active: true,
        max_bitrate_bps: max,
        scale_resolution_down_by: scale,
    })
    .collect()
}

/// The camera and encoder settings shared by the layers.
#[derive(Debug, Clone, PartialEq)]
pub struct PublisherConfig {
    /// Camera width.
    pub width: u32,
    /// Camera height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Seed of the test pattern.
    pub seed: u64,
    /// Keyframe interval of every layer.
    pub keyframe_interval: Duration,
    /// libvpx speed (see [`Vp8EncoderConfig::cpu_used`]).
    pub cpu_used: i32,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        let encoder = Vp8EncoderConfig::default();
        PublisherConfig {
            width: encoder.source_width,
            height: encoder.source_height,
            fps: encoder.fps,
            seed: 1,
            keyframe_interval: encoder.keyframe_interval,
            cpu_used: encoder.cpu_used,
        }
    }
}

/// One encoded frame of one layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerFrame {
    /// The layer's RID (`None` for a single layer).
    pub rid: Option<String>,
    /// The frame.
    pub frame: EncodedFrame,
}

/// What one layer does now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerState {
    /// The RID (`None` for a single layer).
    pub rid: Option<String>,
    /// Whether it is encoded and sent (active, and the estimate leaves room for it).
    pub sending: bool,
    /// Its encoder's target bitrate in bit/s.
    pub target_bps: u32,
    /// Its encoded size.
    pub size: (u32, u32),
}

struct Layer {
    params: LayerParameters,
    encoder: Vp8Encoder,
    picture: I420Frame,
    /// Whether the rate allocation leaves room for this layer.
    allocated: bool,
    /// Whether the last frame time encoded this layer (to ask for a keyframe on resume).
    sending: bool,
}

impl Layer {
    fn sends(&self) -> bool {
        self.params.active && self.allocated
    }
}

/// The publisher's video track: a moving busy pattern encoded into one or more layers.
pub struct VideoPublisher {
    source: (u32, u32),
    pattern: TestPattern,
    layers: Vec<Layer>,
    available_bps: Option<u32>,
}

impl VideoPublisher {
    /// Three simulcast layers like the web client's.
    pub fn simulcast(config: PublisherConfig) -> Result<Self, MediaError> {
        Self::new(config, web_client_layers())
    }

    /// One adaptive layer (no RID) starting at this cap and scale.
    pub fn adaptive(
        config: PublisherConfig,
        max_bitrate_bps: u32,
        scale_resolution_down_by: f64,
    ) -> Result<Self, MediaError> {
        let layer = LayerParameters {
            rid: None,
            active: true,
            max_bitrate_bps,
            scale_resolution_down_by,
        };
        Self::new(config, vec![layer])
    }

    /// The layers given, lowest first.
    pub fn new(config: PublisherConfig, params: Vec<LayerParameters>) -> Result<Self, MediaError> {
        let layers = params
            .into_iter()
            .map(|params| {
                let encoder = Vp8Encoder::new(Vp8EncoderConfig {
                    source_width: config.width,
                    source_height: config.height,
                    fps: config.fps,
                    bitrate_bps: params.max_bitrate_bps,
                    scale_down_by: params.scale_resolution_down_by,
                    keyframe_interval: config.keyframe_interval,
                    cpu_used: config.cpu_used,
                    threads: 1,
                })?;
                let (w, h) = encoder.frame_size();
                Ok(Layer {
                    params,
                    encoder,
                    picture: I420Frame::new(w, h),
                    allocated: true,
                    sending: false,
                })
            })
            .collect::<Result<Vec<_>, MediaError>>()?;
        Ok(VideoPublisher {
            source: (config.width, config.height),
            pattern: TestPattern::new(config.seed),
            layers,
            available_bps: None,
        })
    }

    /// The current encodings (`getParameters`).
    pub fn parameters(&self) -> Vec<LayerParameters> {
        self.layers.iter().map(|l| l.params.clone()).collect()
    }

    /// What each layer does now, lowest first.
    pub fn layer_states(&self) -> Vec<LayerState> {
        self.layers
            .iter()
            .map(|l| LayerState {
                rid: l.params.rid.clone(),
                sending: l.sends(),
                target_bps: l.encoder.target_bps(),
                size: l.encoder.frame_size(),
            })
            .collect()
    }

    /// The relay's `publisher_layers`: the layers it names by RID take its parameters (`active`,
    /// `maxBitrate`, `scaleResolutionDownBy`; a new scale re-opens that layer's encoder); others
    /// keep theirs.
    pub fn follow(&mut self, plans: &[LayerParameters]) -> Result<(), MediaError> {
        for p in plans {
            scaled_size(self.source.0, self.source.1, p.scale_resolution_down_by)?;
        }
        for layer in &mut self.layers {
            if let Some(p) = plans
                .iter()
                .find(|p| p.rid.is_some() && p.rid == layer.params.rid)
            {
                layer.params = p.clone();
            }
        }
        self.allocate()
    }

    /// `setParameters`: the same encodings, in the same order with the same RIDs, with new
    /// `active`, `maxBitrate` or `scaleResolutionDownBy`. A new scale re-opens that layer's
    /// encoder (a keyframe at the new size).
    pub fn set_parameters(&mut self, params: &[LayerParameters]) -> Result<(), MediaError> {
        let same_layers = params.len() == self.layers.len()
            && params
                .iter()
                .zip(&self.layers)
                .all(|(p, l)| p.rid == l.params.rid);
        if !same_layers {
            return Err(MediaError::Invalid {
                what: "encodings (setParameters cannot add, remove or rename layers)",
                value: format!("{:?}", params.iter().map(|p| &p.rid).collect::<Vec<_>>()),
            });
        }
        for p in params {
            scaled_size(self.source.0, self.source.1, p.scale_resolution_down_by)?;
        }
        for (layer, p) in self.layers.iter_mut().zip(params) {
            layer.params = p.clone();
        }
        self.allocate()
    }

    /// The sender's uplink estimate in bit/s (a browser's bandwidth estimate): split across the
    /// active layers, lowest first, each up to its `maxBitrate`; a layer above the lowest whose
    /// minimum does not fit is paused.
    pub fn set_available_bitrate(&mut self, bps: u32) -> Result<(), MediaError> {
        self.available_bps = Some(bps);
        self.allocate()
    }

    /// A keyframe on the layer with this RID (`None`: the single layer, or every layer).
    pub fn request_keyframe(&mut self, rid: Option<&str>) {
        for layer in &mut self.layers {
            if rid.is_none() || layer.params.rid.as_deref() == rid {
                layer.encoder.request_keyframe();
            }
        }
    }

    /// Renders the pattern at `pts` and encodes it on every layer that is sent.
    pub fn encode(&mut self, pts: Duration) -> Result<Vec<LayerFrame>, MediaError> {
        let mut out = Vec::new();
        for layer in &mut self.layers {
            let sends = layer.sends();
            if sends && !layer.sending {
                layer.encoder.request_keyframe();
            }
            layer.sending = sends;
            if !sends {
                continue;
            }
            let (w, h) = layer.encoder.frame_size();
            if (layer.picture.width(), layer.picture.height()) != (w, h) {
                layer.picture = I420Frame::new(w, h);
            }
            self.pattern.render_into(pts, &mut layer.picture);
            for frame in layer.encoder.encode(&layer.picture, pts)? {
                out.push(LayerFrame {
                    rid: layer.params.rid.clone(),
                    frame,
                });
            }
        }
        Ok(out)
    }

    /// Gives each active layer its bitrate and scale; see [`Self::set_available_bitrate`].
    fn allocate(&mut self) -> Result<(), MediaError> {
        let mut left = self.available_bps.unwrap_or(u32::MAX);
        let mut first = true;
        for layer in self.layers.iter_mut().filter(|l| l.params.active) {
            let scale = layer.params.scale_resolution_down_by;
            let (w, h) = scaled_size(self.source.0, self.source.1, scale)?;
            let min = min_bitrate(w, h).min(layer.params.max_bitrate_bps);
            // The lowest active layer always runs, at no less than its minimum.
            layer.allocated = first || left >= min;
            if layer.allocated {
                let rate = left.clamp(min, layer.params.max_bitrate_bps);
                left = left.saturating_sub(rate);
                layer.encoder.set_target(rate, scale)?;
            } else {
                left = 0;
            }
            first = false;
        }
        Ok(())
    }
}

/// The least bitrate worth sending a layer of this size at (libwebrtc's simulcast table).
fn min_bitrate(width: u32, height: u32) -> u32 {
    match width * height {
        p if p <= 320 * 180 => 30_000,
        p if p <= 640 * 360 => 150_000,
        p if p <= 960 * 540 => 350_000,
        _ => 600_000,
    }
}
