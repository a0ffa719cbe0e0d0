//! Per-connection activity for the HTTPS server: whether a request is in flight and since when
//! a connection has been idle, so that idle connections can be closed after a timeout and, when
//! the connection cap is reached, the one idle the longest can make room for a new client.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::ServiceExt;

#[derive(Debug)]
struct State {
    in_flight: usize,
    /// When the last request finished (or the connection was registered); `None` while busy.
    idle_since: Option<Instant>,
    /// Asked to close to make room; not picked again.
    evicting: bool,
}

/// What one connection is doing.
#[derive(Debug)]
pub(crate) struct Activity {
    state: Mutex<State>,
    evict: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            state: Mutex::new(State {
                in_flight: 0,
                idle_since: Some(Instant::now()),
                evicting: false,
            }),
            evict: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under a panic elsewhere (plain counters).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks a request in flight until the returned guard drops.
    fn begin(self: &Arc<Self>) -> Busy {
        let mut state = self.state();
        state.in_flight += 1;
        state.idle_since = None;
        Busy(self.clone())
    }

    /// Resolves once the connection has had no request in flight for `timeout`.
    pub(crate) async fn idle_for(&self, timeout: Duration) {
        loop {
            let since = self.state().idle_since;
            let deadline = since.unwrap_or_else(Instant::now) + timeout;
            tokio::time::sleep_until(deadline).await;
            if let Some(since) = self.state().idle_since
                && since + timeout <= Instant::now()
            {
                return;
            }
        }
    }

    /// Resolves when the server wants this connection closed to make room for another.
    pub(crate) async fn evicted(&self) {
        self.evict.notified().await;
    }
}

/// A request in flight on a connection.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.idle_since = Some(Instant::now());
        }
    }
}

/// The server's open (handshaken) connections.
#[derive(Debug, Default, Clone)]
pub(crate) struct Connections {
    open: Arc<Mutex<HashMap<u64, Arc<Activity>>>>,
    next_id: Arc<AtomicU64>,
}

impl Connections {
    fn open(&self) -> MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tracks a new connection until the returned registration drops.
    pub(crate) fn register(&self) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new());
        self.open().insert(id, activity.clone());
        Registration {
            connections: self.clone(),
            id,
            activity,
        }
    }

    /// Asks the connection idle the longest to close. False when none is idle.
    pub(crate) fn evict_oldest_idle(&self) -> bool {
        let open = self.open();
        let oldest = open
            .values()
            .filter_map(|a| {
                let state = a.state();
                (!state.evicting)
                    .then_some(state.idle_since)
                    .flatten()
                    .map(|since| (since, a))
            })
            .min_by_key(|(since, _)| *since);
        let Some((_, activity)) = oldest else {
            return false;
        };
        activity.state().evicting = true;
        // Stored if the connection is not waiting yet; it closes at its next look.
        activity.evict.notify_one();
        true
    }
}

/// Who is calling over a connection, as far as its transport proves it; every request carries
/// it as an extension, so the audit line never takes a review's own `userInfo` for proof.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caller {
    /// The client presented a certificate that chains to `--client-ca-file`.
    pub authenticated: bool,
}

/// A connection's entry in [`Connections`]; removes it on drop.
pub(crate) struct Registration {
    connections: Connections,
    id: u64,
    activity: Arc<Activity>,
}

impl Registration {
    pub(crate) fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }

    /// The router as this connection's hyper service, counting requests in flight and
    /// marking each with the connection's [`Caller`].
    pub(crate) fn service(&self, router: Router, caller: Caller) -> Tracked {
        Tracked {
            router,
            activity: self.activity.clone(),
            caller,
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.connections.open().remove(&self.id);
    }
}

/// The router, with each request marked in flight until its response is ready.
#[derive(Clone)]
pub(crate) struct Tracked {
    router: Router,
    activity: Arc<Activity>,
    caller: Caller,
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(self.caller);
        let busy = self.activity.begin();
        let response = self.router.clone().oneshot(req);
        Box::pin(async move {
            let response = response.await;
            drop(busy);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(50);
    const GENEROUS: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn idle_only_with_nothing_in_flight() {
        let connections = Connections::default();
        let reg = connections.register();
        let activity = reg.activity().clone();
        let busy = activity.begin();
        // While a request is in flight the connection never counts as idle.
        let idle = tokio::time::timeout(SHORT * 6, activity.idle_for(SHORT));
        assert!(idle.await.is_err(), "idle while a request is in flight");
        drop(busy);
        let idle = tokio::time::timeout(GENEROUS, activity.idle_for(SHORT));
        assert!(idle.await.is_ok());
    }

    #[tokio::test]
    async fn eviction_picks_the_connection_idle_the_longest_and_skips_busy_ones() {
        let connections = Connections::default();
        let first = connections.register();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let second = connections.register();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let third = connections.register();
        let _busy = first.activity().begin();

        assert!(connections.evict_oldest_idle());
        // `second` is the oldest idle one: its notification is stored for it.
        tokio::time::timeout(GENEROUS, second.activity().evicted())
            .await
            .expect("second evicted");
        assert!(connections.evict_oldest_idle());
        tokio::time::timeout(GENEROUS, third.activity().evicted())
            .await
            .expect("third evicted");
        // Only the busy one is left, and evicted ones are not picked twice.
        assert!(!connections.evict_oldest_idle());
        drop(second);
        assert_eq!(connections.open().len(), 2);
    }
}
