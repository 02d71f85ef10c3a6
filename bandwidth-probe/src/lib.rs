//! # bandwidth-probe: line probing for Telemed
//!
//! Measures a site's line to a Telemed server over UDP: the bottleneck capacity in each direction
//! separately (down = server → client, up = client → server), RTT (minimum and median), jitter
//! and loss, with a confidence figure, using a few hundred kilobytes at most (a small fraction of
//! what a throughput test sends) and under a second per direction.
//!
//! A short tour:
//!
//! - [`estimator`] is the method, sans-I/O: arrival timings of packet trains in, capacity out.
//!   Trains of back-to-back packets leave the bottleneck spaced by its rate; the receiver's
//!   dispersion over the train's tail (the head may ride a token-bucket burst) gives the
//!   capacity. Trains grow from a short first one to the burst seen plus a short tail (small
//!   packets on slow lines, so that a call sharing the line waits little behind them), and stop
//!   once two agree. Then a chirp (a rising sending rate) gives the bandwidth free now, beside
//!   other traffic. Also echo statistics.
//! - [`token`]: who may measure. HMAC-SHA256 signed tokens with site, byte budget, expiry and a
//!   nonce; each is good for one measurement.
//! - [`wire`]: the packet formats. After a hello carrying the token, every packet has a MAC under
//!   a key derived from the token and both sides' nonces, and a sequence number.
//! - [`server`]: [`server::ProbeServer`], the endpoint `telemed` embeds on its own UDP port and
//!   `bandwidth-probe serve` runs alone. It answers only token holders, never more than they
//!   asked for within their budget, and counts every packet it ignores.
//! - [`client`]: [`client::measure`] runs one measurement.
//! - [`rx`]: kernel receive timestamps (`SO_TIMESTAMPNS`), so arrival spacing is the line's, not
//!   the receiving process's scheduling.
//! - [`report`]: logs in to Telemed, fetches a probe token, posts results; agent mode.
//!
//! `docs/bandwidth-probe.md` describes the protocol, the security model, the rig and the limits.

#![warn(missing_docs)]

pub mod client;
pub mod estimator;
pub mod report;
pub mod rx;
pub mod server;
pub mod token;
pub mod wire;

/// Waits until `due` within a few microseconds: the timer for all but the last millisecond (its
/// resolution), then a spin. Used to pace chirps, whose gaps are a few milliseconds.
pub(crate) async fn pace_until(due: tokio::time::Instant) {
    let coarse = due.checked_sub(std::time::Duration::from_millis(1));
    if let Some(c) = coarse.filter(|c| *c > tokio::time::Instant::now()) {
        tokio::time::sleep_until(c).await;
    }
    while tokio::time::Instant::now() < due {
        std::hint::spin_loop();
    }
}

/// Unix time now in milliseconds.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
