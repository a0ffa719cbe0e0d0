//! Per-connection activity for the HTTPS server: whether a request is in flight and since when
//! a connection has been idle, so that idle connections can be closed after a timeout and, when
//! the connection cap is reached, the one idle the longest can make room for a new client; and
//! since when an HTTP/1 request's head has been arriving ([`Watched`]), so that its deadline
//! runs from the request's first byte, not from the end of the previous response: hyper's own
//! header timeout closed keep-alive connections idle for 3 s, and the API server, which keeps
//! them for 90 s, had to handshake again after every pause (and could send a review on a
//! connection the moment it was closed).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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
    /// When the first byte of a request not yet dispatched arrived (HTTP/1 only).
    head_since: Option<Instant>,
}

/// What one connection is doing.
#[derive(Debug)]
pub(crate) struct Activity {
    state: Mutex<State>,
    evict: Notify,
    head_started: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            state: Mutex::new(State {
                in_flight: 0,
                idle_since: Some(Instant::now()),
                evicting: false,
                head_since: None,
            }),
            evict: Notify::new(),
            head_started: Notify::new(),
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
        state.head_since = None;
        Busy(self.clone())
    }

    /// Request bytes arrived: with nothing in flight, they start a request's head.
    fn bytes_arrived(&self) {
        let mut state = self.state();
        if state.in_flight == 0 && state.head_since.is_none() {
            state.head_since = Some(Instant::now());
            drop(state);
            self.head_started.notify_one();
        }
    }

    /// Resolves once a request's head has been arriving for `timeout` without being complete.
    pub(crate) async fn head_overdue(&self, timeout: Duration) {
        loop {
            // Registered before the check, so a head starting in between is not missed.
            let started = self.head_started.notified();
            let head_since = self.state().head_since;
            match head_since {
                Some(since) if since + timeout <= Instant::now() => return,
                Some(since) => tokio::time::sleep_until(since + timeout).await,
                None => started.await,
            }
        }
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

/// A connection's byte stream, telling its [`Activity`] when an HTTP/1 request starts to arrive.
/// HTTP/2 connections (by ALPN, or a client's connection preface) carry frames between requests
/// (PING, SETTINGS): not watched; idle ones are closed by the idle timeout.
pub(crate) struct Watched<S> {
    io: S,
    activity: Arc<Activity>,
    /// Still deciding whether the stream is HTTP/2 (until its first bytes), or watching it.
    watch: Watch,
}

#[derive(Clone, Copy, PartialEq)]
enum Watch {
    FirstBytes,
    Http1,
    Off,
}

/// What an HTTP/2 client sends first (RFC 9113 §3.4); no HTTP/1 request starts with it.
const H2_PREFACE_START: &[u8] = b"PRI ";

impl<S> Watched<S> {
    pub(crate) fn new(io: S, activity: Arc<Activity>, http2: bool) -> Self {
        let watch = if http2 { Watch::Off } else { Watch::FirstBytes };
        Self {
            io,
            activity,
            watch,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        let read = &buf.filled()[before..];
        if !read.is_empty() && self.watch != Watch::Off {
            if self.watch == Watch::FirstBytes {
                self.watch = if read.starts_with(H2_PREFACE_START) {
                    Watch::Off
                } else {
                    Watch::Http1
                };
            }
            if self.watch == Watch::Http1 {
                self.activity.bytes_arrived();
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
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

    #[tokio::test]
    async fn a_heads_deadline_runs_from_its_first_byte_not_from_idle() {
        let connections = Connections::default();
        let reg = connections.register();
        let activity = reg.activity().clone();
        // Idle with no bytes: never overdue, however long.
        let overdue = tokio::time::timeout(SHORT * 4, activity.head_overdue(SHORT));
        assert!(overdue.await.is_err(), "an idle connection's head overdue");
        // Bytes of a head that never completes: overdue after the timeout.
        activity.bytes_arrived();
        tokio::time::timeout(GENEROUS, activity.head_overdue(SHORT))
            .await
            .expect("an incomplete head never overdue");
        // A dispatched request clears it; bytes while it is in flight (its body) start nothing.
        let busy = activity.begin();
        activity.bytes_arrived();
        drop(busy);
        let overdue = tokio::time::timeout(SHORT * 4, activity.head_overdue(SHORT));
        assert!(
            overdue.await.is_err(),
            "overdue after the request was dispatched"
        );
    }

    #[tokio::test]
    async fn only_http1_streams_start_heads() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let connections = Connections::default();
        for (first, http2, watched) in [
            (&b"POST / HTTP/1.1\r\n"[..], false, true),
            (&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..], false, false),
            (&b"POST / HTTP/1.1\r\n"[..], true, false),
        ] {
            let reg = connections.register();
            let (mut client, server) = tokio::io::duplex(1024);
            let mut server = Watched::new(server, reg.activity().clone(), http2);
            client.write_all(first).await.unwrap();
            let mut buf = [0u8; 64];
            let n = server.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], first);
            assert_eq!(
                reg.activity().state().head_since.is_some(),
                watched,
                "{first:?} (ALPN h2: {http2})"
            );
        }
    }
}
