//! Relay configuration.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Where the relay listens and what it advertises.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// The one UDP port for every peer's media; `None` switches UDP media off.
    pub udp_listen: Option<SocketAddr>,
    /// The passive ICE-TCP port (RFC 4571 framing); `None` switches it off.
    pub tcp_listen: Option<SocketAddr>,
    /// The address put into ICE candidates, for NAT or a link emulator in front of the relay. Defaults to
    /// the listening address.
    pub public_ip: Option<IpAddr>,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// Most participants in one room.
    pub max_participants_per_room: usize,
    /// Seconds a participant may take to connect its media, or stay disconnected, before it is removed.
    pub ice_timeout_secs: u64,
    /// End-to-end rate control: steer what publishers encode from their subscribers' lines (one
    /// adaptive layer for one bottleneck). Off: simulcast at the web client's default bitrates, with
    /// dynacast only.
    pub steering: bool,
    /// Also cap a steered publisher with REMB (RTCP on the media path) carrying the total of its
    /// layers' targets and audio, beside each layer's `maxBitrate` over signaling. Off by default:
    /// measured, Chromium followed `maxBitrate` alone faster (docs/benchmarks.md).
    pub remb: bool,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            udp_listen: Some(SocketAddr::from(([127, 0, 0, 1], 10_000))),
            tcp_listen: Some(SocketAddr::from(([127, 0, 0, 1], 10_000))),
            public_ip: None,
            workers: 0,
            max_participants_per_room: 16,
            ice_timeout_secs: 15,
            steering: true,
            remb: false,
        }
    }
}
