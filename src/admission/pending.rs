//! Connections that have not finished their handshake yet (TLS, or for plain HTTP their first
//! byte) get a budget of their own, apart from the established connections' slots: silent or
//! stalled connects can then neither hold the slots of served clients (the API server's pooled
//! connections) nor make them be evicted. One peer may hold only a few of these at once; past
//! the whole budget, the connection pending the longest makes room.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

#[derive(Debug, Default)]
struct State {
    /// Pending connections by age (ids increase), with the switch that evicts each.
    open: BTreeMap<u64, Arc<Notify>>,
    per_peer: HashMap<IpAddr, usize>,
    next_id: u64,
}

/// The pending connections of one server.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    state: Arc<Mutex<State>>,
    budget: usize,
    per_peer: usize,
}

/// Why a new connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The peer already has `per_peer` connections pending.
    PeerLimit,
}

impl Pending {
    pub(crate) fn new(budget: usize, per_peer: usize) -> Self {
        Self {
            state: Arc::default(),
            budget: budget.max(1),
            per_peer: per_peer.max(1),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Plain maps and counters: consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a new connection from `peer` until the returned permit drops. At the whole
    /// budget the connection pending the longest is told to close (see
    /// [`PendingPermit::evicted`]); a peer at its own limit is refused instead, so that one
    /// client cannot churn everyone else's handshakes.
    pub(crate) fn admit(&self, peer: IpAddr) -> Result<PendingPermit, Refused> {
        let peer = peer.to_canonical();
        let mut state = self.state();
        let held = state.per_peer.get(&peer).copied().unwrap_or(0);
        if held >= self.per_peer {
            return Err(Refused::PeerLimit);
        }
        if state.open.len() >= self.budget
            && let Some((_, oldest)) = state.open.pop_first()
        {
            // Stored if its task is not waiting yet; it stops at its next look.
            oldest.notify_one();
        }
        let id = state.next_id;
        state.next_id += 1;
        let evict = Arc::new(Notify::new());
        state.open.insert(id, evict.clone());
        *state.per_peer.entry(peer).or_default() += 1;
        Ok(PendingPermit {
            pending: self.clone(),
            id,
            peer,
            evict,
        })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state().open.len()
    }
}

/// One pending connection's place in the budget; released on drop.
#[derive(Debug)]
pub(crate) struct PendingPermit {
    pending: Pending,
    id: u64,
    peer: IpAddr,
    evict: Arc<Notify>,
}

impl PendingPermit {
    /// Resolves when a newer connection needs this one's place.
    pub(crate) async fn evicted(&self) {
        self.evict.notified().await;
    }
}

impl Drop for PendingPermit {
    fn drop(&mut self) {
        let mut state = self.pending.state();
        state.open.remove(&self.id);
        if let Some(held) = state.per_peer.get_mut(&self.peer) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                state.per_peer.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const GENEROUS: Duration = Duration::from_secs(10);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_peer_at_its_limit_is_refused_and_others_are_not() {
        let pending = Pending::new(10, 2);
        let a1 = pending.admit(ip("10.0.0.1")).unwrap();
        let _a2 = pending.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            pending.admit(ip("10.0.0.1")).unwrap_err(),
            Refused::PeerLimit
        );
        // The same address written as IPv4-mapped IPv6 counts as the same peer.
        assert_eq!(
            pending.admit(ip("::ffff:10.0.0.1")).unwrap_err(),
            Refused::PeerLimit
        );
        let _b = pending.admit(ip("10.0.0.2")).unwrap();
        drop(a1);
        let _a3 = pending.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(pending.len(), 3);
    }

    #[tokio::test]
    async fn at_the_budget_the_oldest_pending_connection_makes_room() {
        let pending = Pending::new(2, 2);
        let first = pending.admit(ip("10.0.0.1")).unwrap();
        let second = pending.admit(ip("10.0.0.2")).unwrap();
        let _third = pending.admit(ip("10.0.0.3")).unwrap();
        tokio::time::timeout(GENEROUS, first.evicted())
            .await
            .expect("the oldest is evicted");
        assert_eq!(pending.len(), 2);
        // The evicted one still counts for its peer until it has closed.
        drop(first);
        let _fourth = pending.admit(ip("10.0.0.4")).unwrap();
        tokio::time::timeout(GENEROUS, second.evicted())
            .await
            .expect("then the next oldest");
    }
}
