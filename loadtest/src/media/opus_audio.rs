//! Real Opus audio: a speech-like test signal encoded in 20 ms packets, and a receiver that
//! decodes what arrives (recovering single losses from in-band FEC) and counts gaps.
//!
//! The sender never uses DTX, so it sends a packet every 20 ms; an arrival more than 60 ms after
//! the previous one is an *audio gap* (three packets' worth of silence or concealment a listener
//! hears).

use std::f64::consts::TAU;
use std::time::Duration;

use opus::{Application, Bitrate, Channels};

use super::error::MediaError;

/// Opus's sample rate here (WebRTC's).
pub const SAMPLE_RATE: u32 = 48_000;
/// Audio per packet.
pub const FRAME_DURATION: Duration = Duration::from_millis(20);
/// Samples per packet (mono).
pub const FRAME_SAMPLES: usize = 960;
/// An arrival later than this after the previous one counts as a gap.
pub const GAP_THRESHOLD: Duration = Duration::from_millis(60);

/// A deterministic speech-like signal: a voiced buzz (a gliding fundamental of 100–220 Hz with
/// twelve falling harmonics) shaped into four syllables a second, with a short pause after every
/// fifth, plus a little noise.
#[derive(Debug, Clone)]
pub struct SpeechSignal {
    sample: u64,
    phase: f64,
    noise: u64,
}

impl SpeechSignal {
    /// A signal whose noise starts from `seed`.
    pub fn new(seed: u64) -> Self {
        SpeechSignal {
            sample: 0,
            phase: 0.0,
            noise: seed | 1,
        }
    }

    /// The next 20 ms.
    pub fn next_frame(&mut self) -> [i16; FRAME_SAMPLES] {
        let mut out = [0i16; FRAME_SAMPLES];
        let rate = f64::from(SAMPLE_RATE);
        for s in &mut out {
            let t = self.sample as f64 / rate;
            let f0 = 160.0 + 60.0 * (TAU * 0.3 * t).sin();
            self.phase = (self.phase + TAU * f0 / rate) % TAU;
            let voiced: f64 = (1..=12)
                .map(|k| (self.phase * f64::from(k)).sin() / f64::from(k))
                .sum();
            let syllable = (t * 4.0) % 5.0;
            let envelope = if syllable < 4.0 {
                (std::f64::consts::PI * syllable.fract()).sin()
            } else {
                0.0
            };
            self.noise ^= self.noise << 13;
            self.noise ^= self.noise >> 7;
            self.noise ^= self.noise << 17;
            let noise = (self.noise >> 40) as f64 / f64::from(1u32 << 24) - 0.5;
            *s = ((voiced * 0.5 * envelope + noise * 0.02) * 12_000.0) as i16;
            self.sample += 1;
        }
        out
    }
}

/// Encodes the speech-like signal: mono, 48 kHz, 20 ms packets, in-band FEC on (as browsers
/// negotiate `useinbandfec=1`), no DTX.
pub struct OpusSender {
    encoder: opus::Encoder,
    signal: SpeechSignal,
    buf: Vec<u8>,
}

impl OpusSender {
    /// An encoder at `bitrate_bps` that protects against the given expected loss (percent) with
    /// FEC; libopus adds FEC only when the expected loss is above zero.
    pub fn new(seed: u64, bitrate_bps: i32, expected_loss_pct: i32) -> Result<Self, MediaError> {
        let mut encoder = opus::Encoder::new(SAMPLE_RATE, Channels::Mono, Application::Voip)
            .map_err(MediaError::opus("create the encoder"))?;
        encoder
            .set_bitrate(Bitrate::Bits(bitrate_bps))
            .map_err(MediaError::opus("set the bitrate"))?;
        encoder
            .set_inband_fec(true)
            .map_err(MediaError::opus("turn on in-band FEC"))?;
        encoder
            .set_packet_loss_perc(expected_loss_pct)
            .map_err(MediaError::opus("set the expected loss"))?;
        Ok(OpusSender {
            encoder,
            signal: SpeechSignal::new(seed),
            buf: vec![0; 1500],
        })
    }

    /// The next 20 ms packet.
    pub fn next_packet(&mut self) -> Result<Vec<u8>, MediaError> {
        let pcm = self.signal.next_frame();
        let len = self
            .encoder
            .encode(&pcm, &mut self.buf)
            .map_err(MediaError::opus("encode"))?;
        Ok(self.buf[..len].to_vec())
    }
}

/// What an audio receiver saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AudioStats {
    /// Packets that arrived in order and decoded.
    pub decoded_packets: u64,
    /// Packets that never arrived (gaps in sequence numbers).
    pub lost_packets: u64,
    /// Lost packets decoded with the FEC flag from the packet after them: recovered from its
    /// in-band FEC, or concealed when it carried none (libopus does not say which).
    pub fec_decoded: u64,
    /// Packets that arrived after a later one (not played).
    pub late_packets: u64,
    /// Packets libopus could not decode.
    pub undecodable_packets: u64,
    /// Arrivals more than [`GAP_THRESHOLD`] after the previous one.
    pub gaps_over_60ms: u64,
    /// The longest time between two arrivals.
    pub max_gap: Duration,
}

/// Decodes one received Opus stream and counts losses and gaps.
pub struct OpusReceiver {
    decoder: opus::Decoder,
    pcm: Vec<i16>,
    last_seq: Option<u64>,
    last_arrival: Option<Duration>,
    stats: AudioStats,
}

impl OpusReceiver {
    /// A mono 48 kHz decoder.
    pub fn new() -> Result<Self, MediaError> {
        Ok(OpusReceiver {
            decoder: opus::Decoder::new(SAMPLE_RATE, Channels::Mono)
                .map_err(MediaError::opus("create the decoder"))?,
            pcm: vec![0; FRAME_SAMPLES * 6],
            last_seq: None,
            last_arrival: None,
            stats: AudioStats::default(),
        })
    }

    /// The counters so far.
    pub fn stats(&self) -> AudioStats {
        self.stats
    }

    /// One packet arrived at `arrival` with (extended) RTP sequence number `seq`.
    ///
    /// A single missing packet before it is rebuilt from this packet's FEC; longer losses are
    /// concealed (up to ten packets' worth) and counted.
    pub fn on_packet(&mut self, seq: u64, payload: &[u8], arrival: Duration) {
        if let Some(last) = self.last_arrival {
            let gap = arrival.saturating_sub(last);
            self.stats.max_gap = self.stats.max_gap.max(gap);
            if gap > GAP_THRESHOLD {
                self.stats.gaps_over_60ms += 1;
            }
        }
        self.last_arrival = Some(arrival);

        let missing = match self.last_seq {
            Some(last) if seq <= last => {
                self.stats.late_packets += 1;
                return;
            }
            Some(last) => seq - last - 1,
            None => 0,
        };
        self.last_seq = Some(seq);
        self.stats.lost_packets += missing;
        if missing > 0 {
            for _ in 1..missing.min(10) {
                // Concealment of all but the last missing packet: its output is not needed.
                let _ = self
                    .decoder
                    .decode(&[], &mut self.pcm[..FRAME_SAMPLES], false);
            }
            if self
                .decoder
                .decode(payload, &mut self.pcm[..FRAME_SAMPLES], true)
                .is_ok()
            {
                self.stats.fec_decoded += 1;
            }
        }
        match self.decoder.decode(payload, &mut self.pcm, false) {
            Ok(_) => self.stats.decoded_packets += 1,
            Err(_) => self.stats.undecodable_packets += 1,
        }
    }
}
