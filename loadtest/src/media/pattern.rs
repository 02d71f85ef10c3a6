//! A deterministic, busy, moving test pattern in I420.
//!
//! Benchmark video must be hard enough to encode to need the bitrate under test, or the content,
//! not the line, caps what a publisher sends (design §7). The pattern therefore layers, on every
//! frame:
//!
//! - a diagonal sawtooth gradient and vertical bars, panning right together (large moving edges
//!   that motion search can follow);
//! - a box with a one-pixel checkerboard (fine detail, the costliest texture for a transform
//!   codec) travelling on a Lissajous path across the panning background;
//! - fresh luma and chroma noise on every frame, which no prediction removes.
//!
//! Measured with the realtime encoder of [`super::vp8_encoder`] (`examples/vp8_rate.rs`), the
//! content would take about 19 Mbit/s at 720p30 at the finest quantizer, so 1.5 Mbit/s at 720p or
//! 600 kbit/s at 360p is all used; at the coarsest quantizer it still needs about 290 kbit/s at
//! 720p, 100 kbit/s at 360p and 50 kbit/s at 180p, the lowest rates it can follow.
//!
//! The picture depends only on the seed, the time and the size; positions scale with the size, so
//! three simulcast layers rendered at the same time show the same scene. Rendering 1280x720 takes
//! about a millisecond (lookup tables per frame, a xorshift generator for the noise).

use std::time::Duration;

/// One picture in planar YUV 4:2:0 (I420), planes stored without padding: Y is `width` x `height`,
/// U and V are `(width + 1) / 2` x `(height + 1) / 2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct I420Frame {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl I420Frame {
    /// A mid-grey frame of this size.
    pub fn new(width: u32, height: u32) -> Self {
        let luma = width as usize * height as usize;
        let chroma = chroma_len(width) * chroma_len(height);
        I420Frame {
            width,
            height,
            data: vec![128; luma + 2 * chroma],
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The three planes, Y, U and V, each with its width (the stride) and height.
    pub fn planes(&self) -> [(&[u8], usize, usize); 3] {
        let (w, h) = (self.width as usize, self.height as usize);
        let (cw, ch) = (chroma_len(self.width), chroma_len(self.height));
        let (y, chroma) = self.data.split_at(w * h);
        let (u, v) = chroma.split_at(cw * ch);
        [(y, w, h), (u, cw, ch), (v, cw, ch)]
    }

    fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let luma = self.width as usize * self.height as usize;
        let chroma = chroma_len(self.width) * chroma_len(self.height);
        let (y, rest) = self.data.split_at_mut(luma);
        let (u, v) = rest.split_at_mut(chroma);
        (y, u, v)
    }
}

fn chroma_len(n: u32) -> usize {
    n.div_ceil(2) as usize
}

/// The moving busy pattern, seeded: the same seed, time and size give the same picture.
#[derive(Debug, Clone)]
pub struct TestPattern {
    seed: u64,
    /// Per-row noise, reused between frames.
    noise: Vec<u8>,
}

impl TestPattern {
    /// A pattern whose noise is drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        TestPattern {
            seed,
            noise: Vec::new(),
        }
    }

    /// The picture at time `t` at `width` x `height`, in a new frame.
    pub fn render(&mut self, t: Duration, width: u32, height: u32) -> I420Frame {
        let mut frame = I420Frame::new(width, height);
        self.render_into(t, &mut frame);
        frame
    }

    /// The picture at time `t` at the frame's size, written over the frame.
    pub fn render_into(&mut self, t: Duration, frame: &mut I420Frame) {
        let (w, h) = (frame.width as usize, frame.height as usize);
        if w == 0 || h == 0 {
            return;
        }
        let t_us = t.as_micros() as u64;
        let mut rng = XorShift::new(self.seed, t_us, w as u64);
        self.noise.resize(w.next_multiple_of(8), 0);

        // The background pans a fifth of the width per second to the right.
        let pan = (t_us * w as u64 / 5_000_000) as usize;
        // Gradient: a sawtooth of period w / 4 along x + y, values 40..=199.
        let diag: Vec<u8> = (0..w + h)
            .map(|i| {
                let phase = ((i + pan) * 4 * 256 / w) % 256;
                (40 + phase * 5 / 8) as u8
            })
            .collect();
        // Bars: 16 across, alternately +0 and +40.
        let bars: Vec<u8> = (0..w)
            .map(|x| {
                if ((x + pan) * 16 / w).is_multiple_of(2) {
                    0
                } else {
                    40
                }
            })
            .collect();
        // The detail box: a quarter of each dimension, on a Lissajous path.
        let secs = t.as_secs_f64();
        let (bw, bh) = ((w / 4).max(1), (h / 4).max(1));
        let bx = ((w - bw) as f64 * 0.5 * (1.0 + (secs * 0.35).sin())) as usize;
        let by = ((h - bh) as f64 * 0.5 * (1.0 + (secs * 0.5).cos())) as usize;

        let cw = chroma_len(frame.width);
        let (yp, up, vp) = frame.planes_mut();
        for (y, row) in yp.chunks_exact_mut(w).enumerate() {
            rng.fill(&mut self.noise);
            let diag_row = &diag[y..y + w];
            for x in 0..w {
                let noise = i32::from(self.noise[x] & 15) - 8;
                let v = i32::from(diag_row[x]) + i32::from(bars[x]) + noise;
                row[x] = v.clamp(16, 235) as u8;
            }
            if (by..by + bh).contains(&y) {
                for (x, px) in row.iter_mut().enumerate().skip(bx).take(bw) {
                    let detail = if (x - bx + y - by).is_multiple_of(2) {
                        20
                    } else {
                        -20
                    };
                    *px = (i32::from(*px) + detail).clamp(16, 235) as u8;
                }
            }
        }

        // Chroma: colour ramps that pan with the background, plus ±4 of noise.
        for (plane, vertical) in [(up, false), (vp, true)] {
            for (y, row) in plane.chunks_exact_mut(cw).enumerate() {
                rng.fill(&mut self.noise);
                for (x, px) in row.iter_mut().enumerate() {
                    let along = if vertical { y * 2 } else { x * 2 + pan };
                    let ramp = ((along * 2 * 64 / w) % 64) as i32 - 32;
                    let noise = i32::from(self.noise[x] & 7) - 4;
                    *px = (128 + ramp + noise).clamp(16, 240) as u8;
                }
            }
        }
    }
}

/// xorshift64*: fast, and good enough for picture noise.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64, t_us: u64, width: u64) -> Self {
        // SplitMix64 of the inputs, so that nearby times give unrelated noise; never zero.
        let mut z = seed ^ t_us.rotate_left(17) ^ width.rotate_left(41);
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        XorShift((z ^ (z >> 31)) | 1)
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_exact_mut(8) {
            let mut s = self.0;
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            self.0 = s;
            chunk.copy_from_slice(&s.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_inputs_same_picture_and_the_picture_moves() {
        let t = Duration::from_millis(1_000);
        let a = TestPattern::new(7).render(t, 320, 180);
        let b = TestPattern::new(7).render(t, 320, 180);
        assert_eq!(a, b);
        let later = TestPattern::new(7).render(t + Duration::from_millis(33), 320, 180);
        let changed = a
            .data
            .iter()
            .zip(&later.data)
            .filter(|(x, y)| x != y)
            .count();
        assert!(changed > a.data.len() / 2, "only {changed} bytes changed");
        let other_seed = TestPattern::new(8).render(t, 320, 180);
        assert_ne!(a, other_seed);
    }

    #[test]
    fn odd_sizes_have_rounded_up_chroma_planes() {
        let f = TestPattern::new(1).render(Duration::ZERO, 33, 17);
        let [(y, yw, yh), (u, uw, uh), (v, vw, vh)] = f.planes();
        assert_eq!((y.len(), yw, yh), (33 * 17, 33, 17));
        assert_eq!((u.len(), uw, uh), (17 * 9, 17, 9));
        assert_eq!((v.len(), vw, vh), (17 * 9, 17, 9));
    }
}
