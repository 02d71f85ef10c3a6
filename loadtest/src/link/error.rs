//! What can go wrong when describing a link: a malformed value, an inconsistent configuration, a
//! broken trace file.

use std::time::Duration;

use thiserror::Error;

/// A value on the command line (or in a string) that does not parse. The message says what was
/// expected, with examples; clap prefixes it with the flag's name.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ParseError {
    /// Not a rate such as `512k`.
    #[error("'{0}' is not a rate; use e.g. 512k, 2M or 1500000 (bit/s)")]
    Rate(String),
    /// Not a duration such as `50ms`.
    #[error("'{0}' is not a duration; use e.g. 50ms, 1.5s or 500us")]
    Duration(String),
    /// Not a probability such as `5%`.
    #[error("'{0}' is not a probability; use e.g. 5% or 0.05")]
    Probability(String),
    /// Not a queue limit such as `300ms` or `64kB`.
    #[error("'{0}' is not a queue limit; use a time (300ms) or a size (64kB, 1500B)")]
    Queue(String),
    /// Not a jitter such as `5ms` or `normal:5ms`.
    #[error("'{0}' is not a jitter; use e.g. 5ms (uniform), uniform:5ms or normal:5ms")]
    Jitter(String),
    /// Not a burst loss such as `1%:3`.
    #[error("'{0}' is not a burst loss; use MEAN_LOSS:MEAN_BURST_PACKETS, e.g. 1%:3")]
    BurstLoss(String),
    /// Not a capacity schedule such as `0:1000k,40:2500k`.
    #[error(
        "'{0}' is not a capacity schedule; use SECONDS:RATE steps separated by commas, e.g. 0:1000k,40:2500k"
    )]
    Schedule(String),
    /// Well-formed, but the values do not make a valid configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// A link configuration that cannot be emulated.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ConfigError {
    /// A probability outside 0..=1 (or not a number).
    #[error("{what} must be a probability between 0 and 1, got {value}")]
    Probability {
        /// Which parameter.
        what: &'static str,
        /// The value given.
        value: f64,
    },
    /// A capacity schedule without steps.
    #[error("the capacity schedule has no steps")]
    EmptySchedule,
    /// A capacity schedule whose first step is not at time 0.
    #[error("the capacity schedule must start at 0 s; its first step is at {0:?}")]
    ScheduleStart(Duration),
    /// Capacity schedule steps out of order.
    #[error(
        "capacity schedule steps must be in increasing time order: {later:?} comes after {earlier:?}"
    )]
    ScheduleOrder {
        /// The earlier step's time.
        earlier: Duration,
        /// The step that should have come later.
        later: Duration,
    },
    /// A mean burst length below one packet.
    #[error("the mean burst length must be at least 1 packet, got {0}")]
    BurstLength(f64),
    /// A mean loss that bursts of the given length cannot produce.
    #[error(
        "a mean loss of {loss} cannot come in bursts of {burst} packets on average (at most burst/(burst+1))"
    )]
    BurstTooShort {
        /// The mean loss asked for.
        loss: f64,
        /// The mean burst length asked for.
        burst: f64,
    },
    /// A delay, jitter or queue limit beyond what the emulator holds in memory for a line.
    #[error("{what} must be at most {limit}")]
    TooLarge {
        /// Which parameter.
        what: &'static str,
        /// Its largest value, as text.
        limit: &'static str,
    },
    /// A statistics interval of zero.
    #[error("the statistics interval must be above 0")]
    StatsInterval,
}

/// A Mahimahi trace that cannot be used. `origin` is the file name (or another description of
/// where the trace came from); `line` counts from 1.
#[derive(Debug, Error)]
pub enum TraceError {
    /// The file could not be read.
    #[error("{origin}: cannot read the trace: {cause}")]
    Read {
        /// The file.
        origin: String,
        /// Why (part of the message, so not also a `source`).
        cause: std::io::Error,
    },
    /// The file is larger than any real trace needs to be.
    #[error("{origin}: the trace is larger than {limit} bytes; is it a Mahimahi trace?")]
    TooLarge {
        /// The file.
        origin: String,
        /// The largest trace accepted, in bytes.
        limit: u64,
    },
    /// A line that is not an integer millisecond timestamp.
    #[error(
        "{origin}:{line}: '{text}' is not a millisecond timestamp (one non-negative integer per line)"
    )]
    Timestamp {
        /// The file.
        origin: String,
        /// The line number.
        line: usize,
        /// The line's text.
        text: String,
    },
    /// A timestamp smaller than the one before it.
    #[error("{origin}:{line}: timestamp {value} is smaller than the one before it ({previous})")]
    Order {
        /// The file.
        origin: String,
        /// The line number.
        line: usize,
        /// The timestamp on this line.
        value: u64,
        /// The timestamp before it.
        previous: u64,
    },
    /// A trace without timestamps.
    #[error("{origin}: the trace has no timestamps")]
    Empty {
        /// The file.
        origin: String,
    },
    /// A trace whose last timestamp (its period) is 0.
    #[error("{origin}: the last timestamp is the trace's period and must be above 0")]
    ZeroPeriod {
        /// The file.
        origin: String,
    },
}
