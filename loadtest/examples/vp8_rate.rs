//! Measures the VP8 encoder on the test pattern: the bitrate reached against the target (over
//! media time) and the time spent per frame rendering and encoding (wall clock).
//!
//! `cargo run --release -p loadtest --example vp8_rate -- WIDTHxHEIGHT TARGET_KBPS... [--seconds N]`,
//! for example `... -- 1280x720 300 800 1500 3000 20000 --seconds 10`.

use std::time::{Duration, Instant};

use loadtest::media::{TestPattern, Vp8Encoder, Vp8EncoderConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: vp8_rate WIDTHxHEIGHT TARGET_KBPS... [--seconds N]";
    let size = args.next().ok_or(usage)?;
    let (w, h) = size.split_once('x').ok_or(usage)?;
    let (width, height): (u32, u32) = (w.parse()?, h.parse()?);
    let mut seconds = 10u32;
    let mut targets = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--seconds" {
            seconds = args.next().ok_or(usage)?.parse()?;
        } else {
            targets.push(arg.parse::<u32>()? * 1000);
        }
    }
    let fps = 30;
    println!("{width}x{height} {fps} fps, {seconds} s per target (first second not counted)");
    println!("target_kbps achieved_kbps keyframes render_ms encode_ms");
    for target in targets {
        let mut encoder = Vp8Encoder::new(Vp8EncoderConfig {
            source_width: width,
            source_height: height,
            fps,
            bitrate_bps: target,
            ..Vp8EncoderConfig::default()
        })?;
        let mut pattern = TestPattern::new(1);
        let (mut bytes, mut keyframes) = (0usize, 0u32);
        let (mut render, mut encode) = (Duration::ZERO, Duration::ZERO);
        let frames = seconds * fps;
        for i in 0..frames {
            let pts = Duration::from_secs(u64::from(i)) / fps;
            let start = Instant::now();
            let picture = pattern.render(pts, width, height);
            let rendered = Instant::now();
            let out = encoder.encode(&picture, pts)?;
            encode += rendered.elapsed();
            render += rendered - start;
            if i >= fps {
                bytes += out.iter().map(|f| f.data.len()).sum::<usize>();
                keyframes += out.iter().filter(|f| f.keyframe).count() as u32;
            }
        }
        let counted = f64::from(seconds - 1);
        println!(
            "{:11} {:13.0} {:9} {:9.2} {:9.2}",
            target / 1000,
            bytes as f64 * 8.0 / counted / 1000.0,
            keyframes,
            render.as_secs_f64() * 1000.0 / f64::from(frames),
            encode.as_secs_f64() * 1000.0 / f64::from(frames),
        );
    }
    Ok(())
}
