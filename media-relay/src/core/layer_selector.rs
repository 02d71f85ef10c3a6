//! Which layer of a published video track one subscriber receives, packet by packet.
//!
//! A browser publishes VP8 as simulcast: up to three spatial layers (q/h/f, each its own SSRC), each with
//! temporal layers inside (L1T3: TID 0 at 7.5 fps, TID 0–1 at 15 fps, TID 0–2 at 30 fps). The
//! allocator picks a target [`Layer`] for every subscription; [`LayerSelector`] carries it out without
//! breaking the picture:
//!
//! - a switch of spatial layer happens only at a keyframe of the target layer; until one arrives the
//!   subscriber keeps receiving the layer it has, so a step down costs no freeze (the room asks the
//!   publisher for that keyframe);
//! - a step down in temporal layers takes effect at the next picture, a step up at the next picture of
//!   the base layer or one marked layer-sync, so every forwarded picture has its references;
//! - a paused subscription (no target: the subscriber is audio-only) forwards nothing.

/// A spatial and temporal layer: forward the spatial layer's packets whose temporal id is at most
/// `temporal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Layer {
    /// Spatial layer (simulcast stream), 0 is the lowest.
    pub spatial: u8,
    /// Highest temporal layer forwarded.
    pub temporal: u8,
}

impl Layer {
    /// The highest temporal layer there is.
    pub const ALL_TEMPORAL: u8 = 2;

    /// A spatial layer with all its temporal layers.
    pub const fn full(spatial: u8) -> Layer {
        Layer {
            spatial,
            temporal: Layer::ALL_TEMPORAL,
        }
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.spatial {
            0 => "q",
            1 => "h",
            2 => "f",
            _ => "?",
        };
        write!(f, "{name}/t{}", self.temporal)
    }
}

/// What the selector needs to know of one video packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerPacket {
    /// Its spatial layer.
    pub spatial: u8,
    /// Its temporal layer, when the VP8 descriptor carries one.
    pub temporal: Option<u8>,
    /// The layer-sync bit: this picture depends only on base-layer pictures.
    pub layer_sync: bool,
    /// Whether it starts a keyframe.
    pub keyframe: bool,
    /// Its picture id, which identifies the picture the packet belongs to.
    pub picture: Option<u16>,
}

/// The decision for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it. `switched` is true for the first packet of a new spatial layer.
    Forward {
        /// The subscriber now receives a new spatial layer.
        switched: bool,
    },
    /// It belongs to the forwarded spatial layer but a temporal layer the subscriber does not receive:
    /// drop it and close the gap it leaves in sequence numbers and picture ids.
    Skip,
    /// Not for this subscriber. `need_keyframe` is true when it is a packet of the target layer that
    /// could not be switched to because it is not a keyframe.
    Drop {
        /// Ask the publisher for a keyframe of the target layer.
        need_keyframe: bool,
    },
}

/// Per-subscription layer state.
#[derive(Debug, Clone, Default)]
pub struct LayerSelector {
    target: Option<Layer>,
    current: Option<Layer>,
    /// The last picture decided on, and whether it is forwarded.
    picture: Option<(u16, bool)>,
    switches: u64,
}

impl LayerSelector {
    /// A selector aiming at `target` (none: paused).
    pub fn new(target: Option<Layer>) -> Self {
        LayerSelector {
            target,
            ..Default::default()
        }
    }

    /// The layer the allocator asked for.
    pub fn target(&self) -> Option<Layer> {
        self.target
    }

    /// The layer being forwarded now.
    pub fn current(&self) -> Option<Layer> {
        self.current
    }

    /// Spatial layer switches so far (not counting the start).
    pub fn switches(&self) -> u64 {
        self.switches
    }

    /// Aim at a new layer. Returns true when this needs a keyframe of a spatial layer the subscriber
    /// does not receive yet.
    pub fn set_target(&mut self, target: Option<Layer>) -> bool {
        self.target = target;
        match target {
            None => {
                self.current = None;
                false
            }
            Some(t) => self.current.is_none_or(|c| c.spatial != t.spatial),
        }
    }

    /// Whether the subscriber waits for a keyframe to start or switch.
    pub fn is_switching(&self) -> bool {
        match (self.target, self.current) {
            (Some(t), Some(c)) => t.spatial != c.spatial,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Decide on one packet.
    pub fn on_packet(&mut self, p: &LayerPacket) -> Verdict {
        let Some(target) = self.target else {
            return Verdict::Drop {
                need_keyframe: false,
            };
        };
        if p.spatial == target.spatial && self.current.is_none_or(|c| c.spatial != target.spatial) {
            if !p.keyframe {
                return Verdict::Drop {
                    need_keyframe: true,
                };
            }
            if self.current.is_some() {
                self.switches += 1;
            }
            // A keyframe resets every reference, so the target's temporal layers apply at once.
            self.current = Some(target);
            self.picture = None;
            self.decide_temporal(p, target);
            return Verdict::Forward { switched: true };
        }
        match self.current {
            Some(current) if current.spatial == p.spatial => {
                if self.decide_temporal(p, target) {
                    Verdict::Forward { switched: false }
                } else {
                    Verdict::Skip
                }
            }
            _ => Verdict::Drop {
                need_keyframe: false,
            },
        }
    }

    /// Whether the packet's picture is forwarded; moves the temporal layer towards the target at
    /// picture boundaries where that is safe.
    fn decide_temporal(&mut self, p: &LayerPacket, target: Layer) -> bool {
        let Some(tid) = p.temporal else {
            return true;
        };
        if let (Some(picture), Some((last, forwarded))) = (p.picture, self.picture)
            && picture == last
        {
            return forwarded;
        }
        let Some(current) = self.current.as_mut() else {
            return false;
        };
        // Only the temporal part of a target on another spatial layer waits for that layer's keyframe.
        if target.spatial == current.spatial
            && (target.temporal < current.temporal
                || (target.temporal > current.temporal && (tid == 0 || p.layer_sync)))
        {
            current.temporal = target.temporal;
        }
        let forwarded = tid <= current.temporal;
        self.picture = p.picture.map(|picture| (picture, forwarded));
        forwarded
    }
}

/// The temporal layer id and layer-sync bit of a VP8 payload descriptor (RFC 7741 §4.2), when present.
pub fn vp8_temporal(payload: &[u8]) -> Option<(u8, bool)> {
    let first = *payload.first()?;
    if first & 0x80 == 0 {
        return None;
    }
    let ext = *payload.get(1)?;
    let has_picture_id = ext & 0x80 != 0;
    let has_tl0 = ext & 0x40 != 0;
    let has_tid = ext & 0x20 != 0;
    if !has_tid {
        return None;
    }
    let mut at = 2;
    if has_picture_id {
        at += if payload.get(at)? & 0x80 != 0 { 2 } else { 1 };
    }
    if has_tl0 {
        at += 1;
    }
    let tk = *payload.get(at)?;
    Some((tk >> 6, tk & 0x20 != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(spatial: u8, tid: u8, picture: u16, keyframe: bool) -> LayerPacket {
        LayerPacket {
            spatial,
            temporal: Some(tid),
            layer_sync: false,
            keyframe,
            picture: Some(picture),
        }
    }

    /// The L1T3 pattern: TID of picture n.
    fn tid(n: u16) -> u8 {
        match n % 4 {
            0 => 0,
            2 => 1,
            _ => 2,
        }
    }

    #[test]
    fn starts_only_at_a_keyframe_of_the_target() {
        let mut s = LayerSelector::new(Some(Layer::full(1)));
        assert!(s.is_switching());
        assert_eq!(
            s.on_packet(&pkt(1, 0, 1, false)),
            Verdict::Drop {
                need_keyframe: true
            }
        );
        assert_eq!(
            s.on_packet(&pkt(0, 0, 1, true)),
            Verdict::Drop {
                need_keyframe: false
            },
            "a keyframe of another layer does not start it"
        );
        assert_eq!(
            s.on_packet(&pkt(1, 0, 2, true)),
            Verdict::Forward { switched: true }
        );
        assert_eq!(s.current(), Some(Layer::full(1)));
        assert_eq!(s.switches(), 0);
    }

    #[test]
    fn switches_spatial_layer_only_at_its_keyframe_and_keeps_the_old_one_meanwhile() {
        let mut s = LayerSelector::new(Some(Layer::full(2)));
        s.on_packet(&pkt(2, 0, 100, true));
        // Step down to h: f keeps flowing until h's keyframe.
        assert!(s.set_target(Some(Layer::full(1))));
        assert_eq!(
            s.on_packet(&pkt(2, 2, 101, false)),
            Verdict::Forward { switched: false }
        );
        assert_eq!(
            s.on_packet(&pkt(1, 2, 501, false)),
            Verdict::Drop {
                need_keyframe: true
            }
        );
        assert_eq!(
            s.on_packet(&pkt(1, 0, 502, true)),
            Verdict::Forward { switched: true }
        );
        assert_eq!(
            s.on_packet(&pkt(2, 2, 102, false)),
            Verdict::Drop {
                need_keyframe: false
            },
            "the old layer stops at the switch"
        );
        assert_eq!(s.switches(), 1);
        // Retargeting to the layer already forwarded needs no keyframe.
        assert!(!s.set_target(Some(Layer::full(1))));
    }

    #[test]
    fn temporal_layers_drop_at_once_and_return_at_a_base_picture() {
        let mut s = LayerSelector::new(Some(Layer::full(0)));
        s.on_packet(&pkt(0, 0, 0, true));
        let mut forwarded = vec![];
        for n in 1..=12u16 {
            if n == 3 {
                // Down to 15 fps: TID 2 pictures from the next one on are skipped.
                assert!(!s.set_target(Some(Layer {
                    spatial: 0,
                    temporal: 1
                })));
            }
            if n == 6 {
                // Back up to 30 fps: only from the next TID 0 picture (8) on.
                s.set_target(Some(Layer::full(0)));
            }
            // Two packets per picture get the same verdict.
            let a = s.on_packet(&pkt(0, tid(n), n, false));
            let b = s.on_packet(&pkt(0, tid(n), n, false));
            assert_eq!(a, b);
            if a == (Verdict::Forward { switched: false }) {
                forwarded.push(n);
            }
        }
        assert_eq!(forwarded, vec![1, 2, 4, 6, 8, 9, 10, 11, 12]);
    }

    #[test]
    fn layer_sync_picture_allows_an_earlier_step_up() {
        let mut s = LayerSelector::new(Some(Layer {
            spatial: 0,
            temporal: 0,
        }));
        s.on_packet(&pkt(0, 0, 0, true));
        assert_eq!(s.on_packet(&pkt(0, 2, 1, false)), Verdict::Skip);
        s.set_target(Some(Layer::full(0)));
        assert_eq!(s.on_packet(&pkt(0, 1, 2, false)), Verdict::Skip);
        let mut sync = pkt(0, 2, 3, false);
        sync.layer_sync = true;
        assert_eq!(s.on_packet(&sync), Verdict::Forward { switched: false });
    }

    #[test]
    fn paused_forwards_nothing_and_resumes_at_a_keyframe() {
        let mut s = LayerSelector::new(Some(Layer::full(0)));
        s.on_packet(&pkt(0, 0, 0, true));
        assert!(!s.set_target(None));
        assert_eq!(
            s.on_packet(&pkt(0, 0, 4, false)),
            Verdict::Drop {
                need_keyframe: false
            }
        );
        assert!(s.set_target(Some(Layer::full(0))));
        assert_eq!(
            s.on_packet(&pkt(0, 0, 8, false)),
            Verdict::Drop {
                need_keyframe: true
            }
        );
        assert_eq!(
            s.on_packet(&pkt(0, 0, 12, true)),
            Verdict::Forward { switched: true }
        );
    }

    #[test]
    fn packets_without_temporal_info_are_all_forwarded() {
        let mut s = LayerSelector::new(Some(Layer {
            spatial: 0,
            temporal: 0,
        }));
        let mut p = pkt(0, 0, 0, true);
        p.temporal = None;
        p.picture = None;
        assert_eq!(s.on_packet(&p), Verdict::Forward { switched: true });
        p.keyframe = false;
        assert_eq!(s.on_packet(&p), Verdict::Forward { switched: false });
    }

    #[test]
    fn parses_vp8_temporal_fields() {
        // X=1, S=1; I,L,T set; 15-bit picture id; TL0PICIDX; TID=2 Y=1 KEYIDX=0; then VP8 payload.
        let payload = [0x90, 0xe0, 0x80 | 0x12, 0x34, 7, 0b1010_0000, 0x9d];
        assert_eq!(vp8_temporal(&payload), Some((2, true)));
        // 7-bit picture id, TID=1, Y=0.
        let payload = [0x90, 0xe0, 0x12, 7, 0b0100_0000, 0x9d];
        assert_eq!(vp8_temporal(&payload), Some((1, false)));
        // No T bit.
        assert_eq!(vp8_temporal(&[0x90, 0x80, 0x12, 0x9d]), None);
        // Truncated.
        assert_eq!(vp8_temporal(&[0x90, 0xe0, 0x80]), None);
        assert_eq!(vp8_temporal(&[]), None);
    }
}
