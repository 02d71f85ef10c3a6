//! Live notifications to logged-in users: every authenticated WebSocket session subscribes under its
//! user name; the workflow pushes request updates, offers and pairings to the users concerned.
//! Node-local: with several nodes behind Redis, a user connected to another node sees the change on
//! their next reload (cross-node fan-out over Redis pub/sub is not built yet).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::protocol::ServerMsg;

/// Most notifications queued for one session; a session that falls further behind misses some
/// (it reloads its lists on reconnect).
const QUEUE: usize = 256;

/// The sessions of each user name: (subscription id, sender).
type Sessions = HashMap<String, Vec<(u64, mpsc::Sender<ServerMsg>)>>;

/// Subscriptions by user name.
#[derive(Default)]
pub struct Hub {
    next: AtomicU64,
    subs: Mutex<Sessions>,
}

/// A subscription; unsubscribes when dropped.
pub struct Subscription {
    hub: Arc<Hub>,
    username: String,
    id: u64,
    /// Notifications for this session.
    pub rx: mpsc::Receiver<ServerMsg>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = self.hub.lock();
        if let Some(list) = subs.get_mut(&self.username) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                subs.remove(&self.username);
            }
        }
    }
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts and
        // removals), so a poisoned lock is still usable.
        self.subs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribe a session of `username`.
    pub fn subscribe(self: &Arc<Self>, username: &str) -> Subscription {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(QUEUE);
        self.lock()
            .entry(username.to_string())
            .or_default()
            .push((id, tx));
        Subscription {
            hub: self.clone(),
            username: username.to_string(),
            id,
            rx,
        }
    }

    /// Send `msg` to every session of `username` (dropped for a session whose queue is full).
    pub fn send(&self, username: &str, msg: &ServerMsg) {
        if let Some(list) = self.lock().get(username) {
            for (_, tx) in list {
                let _ = tx.try_send(msg.clone());
            }
        }
    }

    /// Whether `username` has a session open here.
    pub fn online(&self, username: &str) -> bool {
        self.lock().contains_key(username)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_every_session_of_the_user_until_dropped() {
        let hub = Arc::new(Hub::default());
        let mut a1 = hub.subscribe("a");
        let mut a2 = hub.subscribe("a");
        let mut b = hub.subscribe("b");
        hub.send("a", &ServerMsg::Pong);
        assert_eq!(a1.rx.try_recv().ok(), Some(ServerMsg::Pong));
        assert_eq!(a2.rx.try_recv().ok(), Some(ServerMsg::Pong));
        assert!(b.rx.try_recv().is_err());
        drop(a1);
        assert!(hub.online("a"));
        drop(a2);
        assert!(!hub.online("a"));
        hub.send("a", &ServerMsg::Pong);
    }
}
