//! Demultiplexing of the shared media ports: a datagram goes to the participant whose ICE username it
//! names (STUN), and after that by its 4-tuple.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use str0m::ice::StunMessage;

use crate::core::room::ParticipantId;

/// Most 4-tuples remembered for one participant (a browser tries a handful of candidate pairs).
const MAX_TUPLES_PER_PEER: usize = 16;

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The worker thread that owns the participant.
    pub worker: usize,
    /// The participant.
    pub participant: ParticipantId,
}

/// Transport of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Udp,
    /// ICE-TCP.
    Tcp,
}

type Tuple = (Transport, SocketAddr, SocketAddr);

#[derive(Debug, Default)]
struct Inner {
    by_ufrag: HashMap<String, Route>,
    by_tuple: HashMap<Tuple, Route>,
    tuples_of: HashMap<ParticipantId, Vec<Tuple>>,
}

/// The routing table shared by the socket threads and the workers.
#[derive(Debug, Default)]
pub struct Router {
    inner: Mutex<Inner>,
}

/// The local (relay side) ICE ufrag named in a STUN binding request, if `data` is one.
pub fn stun_local_ufrag(data: &[u8]) -> Option<String> {
    // STUN: first two bits zero and the magic cookie (RFC 5389).
    if data.len() < 20 || data[0] & 0xc0 != 0 || data[4..8] != [0x21, 0x12, 0xa4, 0x42] {
        return None;
    }
    let msg = StunMessage::parse(data).ok()?;
    let (local, _remote) = msg.split_username()?;
    Some(local.to_string())
}

impl Router {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain maps behind, still consistent enough to route.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A participant's session exists with local ICE ufrag `ufrag`.
    pub fn register(&self, ufrag: &str, route: Route) {
        self.lock().by_ufrag.insert(ufrag.to_string(), route);
    }

    /// Forget a participant and its 4-tuples.
    pub fn unregister(&self, participant: ParticipantId) {
        let mut inner = self.lock();
        inner.by_ufrag.retain(|_, r| r.participant != participant);
        if let Some(tuples) = inner.tuples_of.remove(&participant) {
            for t in tuples {
                inner.by_tuple.remove(&t);
            }
        }
    }

    /// Where a datagram that arrived on `local` from `remote` goes.
    pub fn route(
        &self,
        transport: Transport,
        remote: SocketAddr,
        local: SocketAddr,
        data: &[u8],
    ) -> Option<Route> {
        let tuple = (transport, remote, local);
        let ufrag = stun_local_ufrag(data);
        let mut inner = self.lock();
        if let Some(ufrag) = ufrag
            && let Some(route) = inner.by_ufrag.get(&ufrag).copied()
        {
            if inner.by_tuple.get(&tuple) != Some(&route) {
                let Inner {
                    by_tuple,
                    tuples_of,
                    ..
                } = &mut *inner;
                let list = tuples_of.entry(route.participant).or_default();
                if list.len() >= MAX_TUPLES_PER_PEER {
                    let oldest = list.remove(0);
                    by_tuple.remove(&oldest);
                }
                list.push(tuple);
                by_tuple.insert(tuple, route);
            }
            return Some(route);
        }
        inner.by_tuple.get(&tuple).copied()
    }

    /// Number of registered sessions.
    pub fn sessions(&self) -> usize {
        self.lock().by_ufrag.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ICE connectivity check (STUN binding request with USERNAME, PRIORITY, MESSAGE-INTEGRITY), built by hand (RFC 5389 §6, §15.3).
    fn binding_request(username: &str) -> Vec<u8> {
        let mut attr = vec![0x00, 0x06];
        attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attr.extend_from_slice(username.as_bytes());
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        // PRIORITY, as every ICE connectivity check carries.
        attr.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x1e, 0xff]);
        // MESSAGE-INTEGRITY (not checked by the router; the session checks it with its password).
        attr.extend_from_slice(&[0x00, 0x08, 0x00, 0x14]);
        attr.extend_from_slice(&[0xab; 20]);
        let mut msg = vec![0x00, 0x01];
        msg.extend_from_slice(&(attr.len() as u16).to_be_bytes());
        msg.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        msg.extend_from_slice(&[7u8; 12]);
        msg.extend_from_slice(&attr);
        msg
    }

    #[test]
    fn routes_by_ufrag_then_by_tuple() {
        let router = Router::new();
        let route = Route {
            worker: 1,
            participant: ParticipantId(7),
        };
        router.register("relayufrag", route);
        let remote: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let local: SocketAddr = "10.0.0.1:10000".parse().unwrap();
        // Media before any STUN from this tuple: unknown.
        assert_eq!(
            router.route(Transport::Udp, remote, local, &[0x80, 0x60, 0, 1]),
            None
        );
        let stun = binding_request("relayufrag:browserufrag");
        assert_eq!(
            router.route(Transport::Udp, remote, local, &stun),
            Some(route)
        );
        // Now the tuple is known.
        assert_eq!(
            router.route(Transport::Udp, remote, local, &[0x80, 0x60, 0, 1]),
            Some(route)
        );
        // The same address over TCP is another tuple.
        assert_eq!(
            router.route(Transport::Tcp, remote, local, &[0x80, 0x60, 0, 1]),
            None
        );
        // A username nobody registered routes nowhere.
        let other = binding_request("nobody:browserufrag");
        let stranger: SocketAddr = "10.0.0.3:5000".parse().unwrap();
        assert_eq!(router.route(Transport::Udp, stranger, local, &other), None);
        router.unregister(ParticipantId(7));
        assert_eq!(
            router.route(Transport::Udp, remote, local, &[0x80, 0x60, 0, 1]),
            None
        );
        assert_eq!(router.sessions(), 0);
    }

    #[test]
    fn garbage_is_not_stun() {
        assert_eq!(stun_local_ufrag(&[]), None);
        assert_eq!(stun_local_ufrag(&[0u8; 19]), None);
        assert_eq!(stun_local_ufrag(&[0u8; 64]), None);
    }
}
