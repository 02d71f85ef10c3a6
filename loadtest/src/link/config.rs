//! The description of one direction of a line: [`LinkConfig`].

use std::{str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

use super::{
    Capacity, ConfigError, GilbertElliott, ParseError,
    loss::check_probability,
    units::{duration_ms, parse_bytes, parse_duration},
};

/// One direction of an emulated line. Packets go through, in order: loss on entry (random, then
/// burst), the bottleneck queue drained at the [`Capacity`], then the one-way `delay` plus
/// `jitter`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkConfig {
    /// How fast the bottleneck drains.
    pub capacity: Capacity,
    /// How much the bottleneck queue holds before it drops arrivals (drop-tail).
    pub queue: QueueLimit,
    /// Fixed one-way propagation delay.
    #[serde(rename = "delay_ms", with = "duration_ms")]
    pub delay: Duration,
    /// Random extra delay on top of `delay`; never reorders packets.
    pub jitter: Option<Jitter>,
    /// Probability that a packet is lost on entry, independently of the others.
    pub loss: f64,
    /// Gilbert–Elliott burst loss on entry, on top of `loss`.
    pub burst_loss: Option<GilbertElliott>,
    /// Seed of the loss and jitter processes: the same seed and the same arrivals give the same
    /// departures.
    pub seed: u64,
    /// The length of one interval of the statistics' time series.
    #[serde(rename = "stats_interval_ms", with = "duration_ms")]
    pub stats_interval: Duration,
}

impl Default for LinkConfig {
    /// No bottleneck, a 500 ms queue limit (used once a capacity is set), no delay, jitter or
    /// loss, seed 1, 100 ms statistics intervals.
    fn default() -> Self {
        LinkConfig {
            capacity: Capacity::Unlimited,
            queue: QueueLimit::Time(Duration::from_millis(500)),
            delay: Duration::ZERO,
            jitter: None,
            loss: 0.0,
            burst_loss: None,
            seed: 1,
            stats_interval: Duration::from_millis(100),
        }
    }
}

impl LinkConfig {
    /// Checks what the types alone do not: probabilities within 0..=1 and a non-zero statistics
    /// interval.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_probability("the loss", self.loss)?;
        if let Some(ge) = &self.burst_loss {
            ge.validate()?;
        }
        if self.stats_interval.is_zero() {
            return Err(ConfigError::StatsInterval);
        }
        // Packets in flight are held in memory: bound how long and how much.
        let too_large = |what, limit| Err(ConfigError::TooLarge { what, limit });
        if self.delay > MAX_DELAY {
            return too_large("the one-way delay", "10 s");
        }
        let jitter = match self.jitter {
            Some(Jitter::Uniform { max }) => max,
            Some(Jitter::Normal { std_dev }) => std_dev,
            None => Duration::ZERO,
        };
        if jitter > MAX_DELAY {
            return too_large("the jitter", "10 s");
        }
        match self.queue {
            QueueLimit::Time(t) if t > MAX_DELAY => too_large("the queue limit", "10 s"),
            QueueLimit::Bytes(b) if b > MAX_QUEUE_BYTES => too_large("the queue limit", "64 MiB"),
            _ => Ok(()),
        }
    }
}

/// The longest one-way delay, jitter or queueing time a link takes.
pub const MAX_DELAY: Duration = Duration::from_secs(10);
/// The largest byte queue limit a link takes.
pub const MAX_QUEUE_BYTES: u64 = 64 * 1024 * 1024;

/// The bottleneck queue's limit. A packet that would take the queue beyond it is dropped
/// (drop-tail), except that an empty queue always takes one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueLimit {
    /// At most this many bytes waiting or in transmission. Parses from `64kB`, `1500B`, `1MB`.
    Bytes(u64),
    /// At most this much queueing delay: the bytes the capacity drains in this time at the
    /// current rate (for a trace: the opportunities within this time from now). Parses from
    /// `300ms`, `1s`.
    #[serde(rename = "time_ms", with = "duration_ms")]
    Time(Duration),
}

impl FromStr for QueueLimit {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(bytes) = parse_bytes(s) {
            return Ok(QueueLimit::Bytes(bytes));
        }
        parse_duration(s)
            .map(QueueLimit::Time)
            .map_err(|_| ParseError::Queue(s.to_owned()))
    }
}

/// Random extra delay added to each packet after the bottleneck. A packet still never leaves
/// before the one ahead of it, as on a serial line.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// Uniform between 0 and `max`. Parses from `5ms` or `uniform:5ms`.
    Uniform {
        /// The largest extra delay.
        #[serde(rename = "max_ms", with = "duration_ms")]
        max: Duration,
    },
    /// The absolute value of a normal variable with mean 0 and standard deviation `std_dev`
    /// (a half-normal: extra delay is never negative). Parses from `normal:5ms`.
    Normal {
        /// The normal variable's standard deviation.
        #[serde(rename = "std_dev_ms", with = "duration_ms")]
        std_dev: Duration,
    },
}

impl FromStr for Jitter {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |_| ParseError::Jitter(s.to_owned());
        match s.split_once(':') {
            None => parse_duration(s)
                .map(|max| Jitter::Uniform { max })
                .map_err(err),
            Some(("uniform", d)) => parse_duration(d)
                .map(|max| Jitter::Uniform { max })
                .map_err(err),
            Some(("normal", d)) => parse_duration(d)
                .map(|std_dev| Jitter::Normal { std_dev })
                .map_err(err),
            Some(_) => Err(ParseError::Jitter(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{Rate, Schedule};

    #[test]
    fn queue_limits_and_jitters_parse() {
        assert_eq!(
            "300ms".parse(),
            Ok(QueueLimit::Time(Duration::from_millis(300)))
        );
        assert_eq!("64kB".parse(), Ok(QueueLimit::Bytes(64_000)));
        assert_eq!(
            "300".parse::<QueueLimit>(),
            Err(ParseError::Queue("300".into()))
        );
        assert_eq!(
            "5ms".parse(),
            Ok(Jitter::Uniform {
                max: Duration::from_millis(5)
            })
        );
        assert_eq!(
            "normal:2ms".parse(),
            Ok(Jitter::Normal {
                std_dev: Duration::from_millis(2)
            })
        );
        assert_eq!(
            "gauss:2ms".parse::<Jitter>(),
            Err(ParseError::Jitter("gauss:2ms".into()))
        );
    }

    #[test]
    fn validation_bounds_what_is_held_in_memory() {
        let with = |f: fn(&mut LinkConfig)| {
            let mut c = LinkConfig::default();
            f(&mut c);
            c.validate()
        };
        assert!(with(|c| c.delay = MAX_DELAY).is_ok());
        let err = with(|c| c.delay = Duration::from_secs(3600)).unwrap_err();
        assert_eq!(err.to_string(), "the one-way delay must be at most 10 s");
        assert!(
            with(|c| c.jitter = Some(Jitter::Normal {
                std_dev: Duration::from_secs(11)
            }))
            .is_err()
        );
        assert!(with(|c| c.queue = QueueLimit::Time(Duration::from_secs(60))).is_err());
        assert!(with(|c| c.queue = QueueLimit::Bytes(1 << 40)).is_err());
        assert!(with(|c| c.queue = QueueLimit::Bytes(MAX_QUEUE_BYTES)).is_ok());
    }

    #[test]
    fn validation_catches_bad_probabilities() {
        let config = LinkConfig {
            loss: 1.5,
            ..LinkConfig::default()
        };
        assert_eq!(
            config.validate(),
            Err(ConfigError::Probability {
                what: "the loss",
                value: 1.5
            })
        );
        let config = LinkConfig {
            loss: f64::NAN,
            ..LinkConfig::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn round_trips_through_json() {
        let config = LinkConfig {
            capacity: Capacity::Schedule("0:1M,10:2M".parse::<Schedule>().unwrap()),
            queue: QueueLimit::Time(Duration::from_millis(300)),
            delay: Duration::from_millis(50),
            jitter: Some(Jitter::Normal {
                std_dev: Duration::from_millis(5),
            }),
            loss: 0.01,
            burst_loss: Some("1%:3".parse().unwrap()),
            ..LinkConfig::default()
        };
        let json = serde_json::to_string(&config).unwrap();
        assert!(json.contains(r#""delay_ms":50.0"#), "{json}");
        assert_eq!(serde_json::from_str::<LinkConfig>(&json).unwrap(), config);
        let partial: LinkConfig = serde_json::from_str(r#"{"capacity":{"rate":2000000}}"#).unwrap();
        assert_eq!(partial.capacity, Capacity::Rate(Rate::from_kbps(2000)));
        let bad = serde_json::from_str::<LinkConfig>(
            r#"{"capacity":{"schedule":[{"at_ms":5,"rate":1}]}}"#,
        );
        assert!(bad.is_err());
    }
}
