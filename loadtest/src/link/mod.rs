//! The link emulator: one direction of a slow line as a sans-I/O [`Link`], and the UDP
//! [`shell`] that puts two of them between clients and a server.
//!
//! A packet pushed into a [`Link`] meets, in order:
//! 1. loss on entry: independent random loss, then [`GilbertElliott`] burst loss;
//! 2. the bottleneck: a drop-tail FIFO queue bounded by a [`QueueLimit`], drained at a
//!    [`Capacity`] (a fixed [`Rate`], a [`Schedule`] of rates, or a [`MahimahiTrace`]);
//! 3. the one-way delay plus [`Jitter`], keeping packets in order.
//!
//! [`LinkStats`] records what happened: [`Counters`], queue delay [`Histogram`]s and a time
//! series of [`Interval`]s.

mod capacity;
mod config;
mod error;
mod loss;
mod model;
mod random;
pub mod shell;
mod stats;
mod trace;
mod units;

pub use capacity::{Capacity, RateStep, Schedule};
pub use config::{Jitter, LinkConfig, QueueLimit};
pub use error::{ConfigError, ParseError, TraceError};
pub use loss::GilbertElliott;
pub use model::{Departure, DropReason, Link, Push};
pub use stats::{Counters, DirectionSummary, Histogram, Interval, LinkStats, WindowSummary};
pub use trace::{MahimahiTrace, OPPORTUNITY_BYTES};
pub use units::{Rate, parse_duration, parse_probability};
