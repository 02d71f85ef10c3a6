//! Real VP8 and Opus through the media modules: the encoder's keyframes and rate, the decoder's
//! loss handling, simulcast steering and Opus gaps. Everything runs on media time, not the clock.

use std::time::Duration;

use loadtest::media::{
    Decoded, EncodedFrame, LayerParameters, OpusReceiver, OpusSender, TestPattern, VideoPublisher,
    Vp8Decoder, Vp8Encoder, Vp8EncoderConfig, opus_audio::FRAME_DURATION,
    simulcast::PublisherConfig,
};

const FPS: u32 = 30;

fn frame_time(i: u32) -> Duration {
    Duration::from_secs(u64::from(i)) / FPS
}

fn encoder(width: u32, height: u32, bitrate_bps: u32) -> Vp8Encoder {
    Vp8Encoder::new(Vp8EncoderConfig {
        source_width: width,
        source_height: height,
        fps: FPS,
        bitrate_bps,
        ..Vp8EncoderConfig::default()
    })
    .unwrap()
}

/// Encodes frames `from..to` of the pattern at the encoder's current size.
fn encode(
    enc: &mut Vp8Encoder,
    pattern: &mut TestPattern,
    from: u32,
    to: u32,
) -> Vec<EncodedFrame> {
    let mut out = Vec::new();
    for i in from..to {
        let (w, h) = enc.frame_size();
        let picture = pattern.render(frame_time(i), w, h);
        let frames = enc.encode(&picture, frame_time(i)).unwrap();
        assert_eq!(frames.len(), 1, "frame {i}: one frame in, one out");
        out.extend(frames);
    }
    out
}

/// Bits per second of media time over the frames (their span plus one frame interval).
fn bitrate(frames: &[EncodedFrame]) -> f64 {
    let bytes: usize = frames.iter().map(|f| f.data.len()).sum();
    let span = frames.last().unwrap().pts - frames[0].pts + frame_time(1);
    bytes as f64 * 8.0 / span.as_secs_f64()
}

fn keyframe_times(frames: &[EncodedFrame]) -> Vec<Duration> {
    frames
        .iter()
        .filter(|f| f.keyframe)
        .map(|f| f.pts)
        .collect()
}

#[test]
fn every_frame_decodes_with_keyframes_every_3_s_and_on_request() {
    let mut enc = encoder(640, 360, 600_000);
    let mut pattern = TestPattern::new(1);
    let mut frames = encode(&mut enc, &mut pattern, 0, 50);
    enc.request_keyframe();
    frames.extend(encode(&mut enc, &mut pattern, 50, 200));

    assert_eq!(
        keyframe_times(&frames),
        vec![frame_time(0), frame_time(50), frame_time(140)],
        "at start, on request, then 3 s after the last keyframe"
    );
    let mut dec = Vp8Decoder::new().unwrap();
    for f in &frames {
        assert!(matches!(
            dec.decode(&f.data, false),
            Decoded::Picture {
                width: 640,
                height: 360,
                ..
            }
        ));
    }
    let stats = dec.stats();
    assert_eq!(
        (
            stats.decoded_frames,
            stats.keyframes,
            stats.undecodable_frames
        ),
        (200, 3, 0)
    );
    assert_eq!((stats.width, stats.height), (640, 360));
}

#[test]
fn bitrate_follows_the_target() {
    let mut enc = encoder(640, 360, 600_000);
    let mut pattern = TestPattern::new(2);
    let first = encode(&mut enc, &mut pattern, 0, 120);
    let rate = bitrate(&first[30..]);
    assert!(
        (0.75..1.2).contains(&(rate / 600_000.0)),
        "600k target: {rate:.0} bit/s"
    );

    // Down to 300k: more than 15 %, so the encoder re-opens with a keyframe.
    enc.set_target(300_000, 1.0).unwrap();
    assert_eq!((enc.reopens(), enc.encoder_bps()), (1, 300_000));
    let second = encode(&mut enc, &mut pattern, 120, 240);
    assert!(second[0].keyframe);
    let rate = bitrate(&second[30..]);
    assert!(
        (0.75..1.2).contains(&(rate / 300_000.0)),
        "300k target: {rate:.0} bit/s"
    );

    // A 10 % step keeps the running encoder (no keyframe); the target is remembered.
    enc.set_target(330_000, 1.0).unwrap();
    assert_eq!(
        (enc.reopens(), enc.encoder_bps(), enc.target_bps()),
        (1, 300_000, 330_000)
    );
    assert!(!encode(&mut enc, &mut pattern, 240, 241)[0].keyframe);
}

#[test]
fn the_pattern_is_busy_enough_for_720p_at_1500k() {
    let mut enc = encoder(1280, 720, 1_500_000);
    let mut pattern = TestPattern::new(3);
    let frames = encode(&mut enc, &mut pattern, 0, 60);
    let rate = bitrate(&frames[15..]);
    assert!(
        rate > 0.8 * 1_500_000.0,
        "720p reached only {rate:.0} bit/s of 1500k"
    );
}

#[test]
fn a_new_scale_gives_a_keyframe_at_the_new_size() {
    let mut enc = encoder(640, 360, 500_000);
    let mut pattern = TestPattern::new(4);
    let before = encode(&mut enc, &mut pattern, 0, 10);
    enc.set_target(500_000, 2.0).unwrap();
    assert_eq!(enc.frame_size(), (320, 180));
    let after = encode(&mut enc, &mut pattern, 10, 20);
    assert!(after[0].keyframe && !after[1].keyframe);
    assert_eq!((after[0].width, after[0].height), (320, 180));

    let mut dec = Vp8Decoder::new().unwrap();
    for f in before.iter().chain(&after) {
        dec.decode(&f.data, false);
    }
    let stats = dec.stats();
    assert_eq!(
        (stats.decoded_frames, stats.width, stats.height),
        (20, 320, 180)
    );
    // A frame of the wrong size is refused.
    let wrong = pattern.render(frame_time(20), 640, 360);
    assert!(enc.encode(&wrong, frame_time(20)).is_err());
}

#[test]
fn after_a_lost_frame_nothing_decodes_until_the_next_keyframe() {
    let mut enc = encoder(320, 180, 200_000);
    let mut pattern = TestPattern::new(5);
    let mut frames = encode(&mut enc, &mut pattern, 0, 30);
    enc.request_keyframe();
    frames.extend(encode(&mut enc, &mut pattern, 30, 40));
    assert!(frames[30].keyframe && !frames[10].keyframe);

    let mut dec = Vp8Decoder::new().unwrap();
    let mut lost = false;
    for (i, f) in frames.iter().enumerate() {
        if i == 10 {
            lost = true; // frame 10 never arrives
            continue;
        }
        let got = dec.decode(&f.data, std::mem::take(&mut lost));
        let decodable = !(10..30).contains(&i);
        assert_eq!(
            matches!(got, Decoded::Picture { .. }),
            decodable,
            "frame {i}"
        );
        assert_eq!(dec.needs_keyframe(), !decodable, "frame {i}");
    }
    let stats = dec.stats();
    assert_eq!((stats.decoded_frames, stats.undecodable_frames), (20, 19));
    // Garbage and empty frames are undecodable, not errors.
    assert_eq!(
        dec.decode(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a], false),
        Decoded::Undecodable
    );
    assert_eq!(dec.decode(&[], false), Decoded::Undecodable);
}

#[test]
fn simulcast_layers_follow_dynacast_parameters_and_the_estimate() {
    let config = PublisherConfig {
        seed: 6,
        ..PublisherConfig::default()
    };
    let mut publisher = VideoPublisher::simulcast(config).unwrap();
    let sizes = |frames: &[loadtest::media::LayerFrame]| {
        frames
            .iter()
            .map(|f| {
                (
                    f.rid.clone().unwrap(),
                    f.frame.width,
                    f.frame.height,
                    f.frame.keyframe,
                )
            })
            .collect::<Vec<_>>()
    };
    let first = publisher.encode(frame_time(0)).unwrap();
    assert_eq!(
        sizes(&first),
        [
            ("q".into(), 320, 180, true),
            ("h".into(), 640, 360, true),
            ("f".into(), 1280, 720, true)
        ]
    );

    // Dynacast pauses f; resuming it starts with a keyframe.
    let f = |active| LayerParameters {
        rid: Some("f".into()),
        active,
        max_bitrate_bps: 1_500_000,
        scale_resolution_down_by: 1.0,
    };
    publisher.follow(&[f(false)]).unwrap();
    let paused = publisher.encode(frame_time(1)).unwrap();
    assert_eq!(
        paused
            .iter()
            .map(|f| f.rid.as_deref().unwrap())
            .collect::<Vec<_>>(),
        ["q", "h"]
    );
    publisher.follow(&[f(true)]).unwrap();
    let resumed = publisher.encode(frame_time(2)).unwrap();
    assert!(resumed[2].frame.keyframe && !resumed[0].frame.keyframe);

    // 400 kbit/s of uplink: q gets its 150k, h the remaining 250k, f (600k minimum) is paused.
    publisher.set_available_bitrate(400_000).unwrap();
    let states = publisher.layer_states();
    assert_eq!(
        states
            .iter()
            .map(|s| (s.sending, s.target_bps))
            .collect::<Vec<_>>(),
        [(true, 150_000), (true, 250_000), (false, 1_500_000)]
    );

    // setParameters must keep the layers; a new scale takes effect at once.
    let mut params = publisher.parameters();
    params.pop();
    assert!(publisher.set_parameters(&params).is_err());
}

#[test]
fn the_adaptive_layer_follows_set_parameters() {
    let config = PublisherConfig {
        width: 640,
        height: 360,
        seed: 7,
        ..PublisherConfig::default()
    };
    let mut publisher = VideoPublisher::adaptive(config, 800_000, 1.0).unwrap();
    publisher.encode(frame_time(0)).unwrap();
    let mut params = publisher.parameters();
    params[0].max_bitrate_bps = 250_000;
    params[0].scale_resolution_down_by = 2.0;
    publisher.set_parameters(&params).unwrap();
    let frames = publisher.encode(frame_time(1)).unwrap();
    assert_eq!(frames.len(), 1);
    let f = &frames[0];
    assert_eq!(
        (
            f.rid.clone(),
            f.frame.width,
            f.frame.height,
            f.frame.keyframe
        ),
        (None, 320, 180, true)
    );
    assert_eq!(publisher.layer_states()[0].target_bps, 250_000);
}

#[test]
fn opus_round_trip_with_a_loss_and_a_gap() {
    let mut sender = OpusSender::new(8, 32_000, 10).unwrap();
    let mut receiver = OpusReceiver::new().unwrap();
    let mut arrival = Duration::ZERO;
    for seq in 0..100u64 {
        let packet = sender.next_packet().unwrap();
        assert!(
            (20..400).contains(&packet.len()),
            "packet {seq}: {} bytes",
            packet.len()
        );
        arrival += FRAME_DURATION;
        match seq {
            40 => continue,                             // lost: the next one is 40 ms later
            70 => arrival += Duration::from_millis(80), // held up: a 100 ms gap
            _ => {}
        }
        receiver.on_packet(seq, &packet, arrival);
    }
    receiver.on_packet(50, &[0xff], arrival); // a late duplicate
    let stats = receiver.stats();
    assert_eq!(stats.decoded_packets, 99);
    assert_eq!(
        (stats.lost_packets, stats.fec_decoded, stats.late_packets),
        (1, 1, 1)
    );
    assert_eq!(stats.gaps_over_60ms, 1);
    assert_eq!(stats.max_gap, Duration::from_millis(100));
}
