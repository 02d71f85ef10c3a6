//! # media-relay: Telemed's SFU
//!
//! A tour, from the inside out:
//!
//! - [`core`] is sans-I/O. [`core::room::Room`] holds who is in a room, what each participant publishes
//!   and who receives what, and decides for every incoming packet where it goes.
//!   [`core::rewrite`] keeps each subscriber's outgoing streams continuous (sequence numbers, RTP
//!   timestamps, VP8 picture ids) across publisher restarts, and [`core::keyframe`] aggregates keyframe
//!   requests. Everything takes the current time as an argument and is unit-tested in simulated time.
//!   Bandwidth adaptation lives here too: [`core::layer_selector`] switches a subscriber between
//!   simulcast and temporal layers at safe points, [`core::allocator`] splits a subscriber's downlink
//!   estimate over its tracks by priority with hysteresis, [`core::line_budget`] splits a site's line
//!   between its subscribers (emergencies first), and [`core::rate`] measures bitrates.
//! - [`budget`] is the board on which the workers share the sites' line budgets.
//! - [`peer`] wraps one str0m [`str0m::Rtc`] (RTP mode, ICE-lite) per participant: SDP negotiation of
//!   the tracks it publishes and receives, and translation between str0m's events and the core.
//! - [`net`] owns the sockets: one UDP port for every peer, demultiplexed by ICE username and then by
//!   4-tuple ([`net::Router`]), and a passive ICE-TCP port with RFC 4571 framing ([`net::framing`]).
//! - [`worker`] runs one thread per core. A room lives on exactly one worker, so forwarding never
//!   crosses threads; signaling talks to workers over channels.
//! - [`Relay`] is the handle the signaling server holds.

pub mod budget;
pub mod config;
pub mod core;
pub mod net;
pub mod peer;
mod relay;
pub mod worker;

pub use config::RelayConfig;
pub use relay::{
    JoinInfo, JoinOptions, LINE_TEST_LIMIT, LayerActivity, LeaveReason, MediaState, Membership,
    ParticipantStats, PublishedStats, QualityReport, ReceivedStats, Relay, RelayCounters,
    RelayError, RelayEvent, RelayStats, TrackDesc, VideoQuality,
};
