//! Status writes held back for a bounded time.
//!
//! A Deployment this operator has just created or changed has not been reported on by the
//! Deployment controller yet: writing the app's status then and again at that controller's first
//! report (a new ReplicaSet, pods unavailable) is two writes where one says the same. The write
//! waits instead, until the report arrives (the Deployment watch re-triggers the app) or the
//! window has passed since it was first held, whichever comes first; a missing or stalled
//! kube-controller-manager delays a status by one window, never longer. Entries are per app,
//! hold no objects, and go away when the write is made or by [`Held::prune`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When each app's held status write was first held back.
#[derive(Default)]
pub struct Held {
    since: Mutex<HashMap<String, Instant>>,
}

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.since.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How much longer the write of `key` waits: the rest of `window` from the first time it
    /// was held (`now` when this is the first), or None when it has passed (the write goes
    /// ahead and the entry is dropped). A zero window never holds.
    pub fn wait(&self, key: &str, now: Instant, window: Duration) -> Option<Duration> {
        let mut since = self.lock();
        let first = *since.entry(key.to_string()).or_insert(now);
        let left = window.saturating_sub(now.saturating_duration_since(first));
        if left.is_zero() {
            since.remove(key);
            return None;
        }
        Some(left)
    }

    /// Drops the entry of `key`: its status was written, or needs no write.
    pub fn release(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Drops entries held longer than `window` (apps deleted while held).
    pub fn prune(&self, now: Instant, window: Duration) {
        self.lock()
            .retain(|_, first| now.saturating_duration_since(*first) < window);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_waits_at_most_one_window_from_its_first_hold() {
        let held = Held::default();
        let t0 = Instant::now();
        let window = Duration::from_secs(5);
        assert_eq!(held.wait("ns/a", t0, window), Some(window));
        // Held again later (another trigger): the window still counts from the first hold.
        assert_eq!(
            held.wait("ns/a", t0 + Duration::from_secs(2), window),
            Some(Duration::from_secs(3))
        );
        assert_eq!(held.wait("ns/a", t0 + window, window), None);
        assert_eq!(held.len(), 0, "the write went ahead: entry dropped");
        // Next time (a new Deployment generation) it is held a full window again.
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(held.wait("ns/a", t1, window), Some(window));
        held.release("ns/a");
        assert_eq!(held.len(), 0);
        assert_eq!(held.wait("ns/b", t1, Duration::ZERO), None);
        assert_eq!(held.len(), 0);
    }

    #[test]
    fn prune_drops_only_entries_past_their_window() {
        let held = Held::default();
        let t0 = Instant::now();
        let window = Duration::from_secs(5);
        held.wait("ns/old", t0, window);
        held.wait("ns/new", t0 + Duration::from_secs(4), window);
        held.prune(t0 + Duration::from_secs(6), window);
        assert_eq!(held.len(), 1);
        assert_eq!(
            held.wait("ns/new", t0 + Duration::from_secs(6), window),
            Some(Duration::from_secs(3))
        );
    }
}
