//! # loadtest: Telemed's load and network test tools
//!
//! The link emulator ([`link`]), which stands in for `netem` (absent from this kernel)
//! to make slow hospital lines in user space:
//!
//! - [`link::Link`] is one direction of a line, sans-I/O: packets are pushed in with the current
//!   time and polled out when they are due. It models a bottleneck rate (fixed, scheduled, or
//!   replayed from a Mahimahi trace) with a bounded drop-tail queue, one-way delay and jitter, and
//!   random and Gilbert–Elliott burst loss, all seeded and deterministic, and records counters,
//!   queue delay percentiles and a time series ([`link::LinkStats`]). Its tests run on a simulated
//!   clock.
//! - [`link::shell`] relays UDP datagrams between clients and a server through two links (up and
//!   down), one upstream socket per client like a NAT. The `loadtest link` command runs it; other
//!   tools can start it in-process with [`link::shell::LinkShell`].
//!
//! And the synthetic media of the bots ([`media`]): a busy moving test pattern encoded live to
//! VP8 (libvpx through FFmpeg) in simulcast or one adaptive layer, Opus audio, and the receiving
//! side that decodes both and counts frame rate, freezes, undecodable frames and audio gaps.
//!
//! And the bots ([`bot`]) that use it: a participant that joins a consultation room over the real
//! WebSocket signaling and sends and receives that media through the relay (str0m in frame mode).
//!
//! And the bandwidth-adaptation benchmark ([`bwe`]) that puts them together: a real relay, the
//! consultations of a scenario, the county's line in the emulator, and the report of what the
//! county saw.
//!
//! `docs/loadtest.md` describes the options and the output.

#![warn(missing_docs)]

pub mod bot;
pub mod bwe;
pub mod link;
pub mod media;
