//! The HTTPS accept loop: TLS handshake with a deadline, HTTP/1.1 or HTTP/2 via hyper-util,
//! a connection limit with an idle timeout (and, at the limit, the connection idle the longest
//! makes room for a new one), and a bounded graceful drain on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::idle::Connections;

/// Limits of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Deadline for the TLS handshake of a new connection.
    pub tls_handshake_timeout: Duration,
    /// Deadline for an HTTP/1 request's headers.
    pub header_read_timeout: Duration,
    /// Connections served at once. At the limit a new client makes the connection idle the
    /// longest close; when none is idle, it waits in the listen backlog.
    pub max_connections: usize,
    /// A connection with no request in flight for this long is closed (gracefully: HTTP/2 gets
    /// a GOAWAY). Covers TLS clients that never send a request and idle HTTP/2 connections;
    /// hyper already closes an idle HTTP/1 keep-alive connection after `header_read_timeout`,
    /// whose timer runs from the end of the previous response.
    pub idle_timeout: Duration,
    /// How long in-flight requests may run after shutdown begins.
    pub drain_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            tls_handshake_timeout: Duration::from_secs(3),
            header_read_timeout: Duration::from_secs(3),
            max_connections: 512,
            // Longer than the apiserver's own idle timeout for pooled connections (Go's
            // http.Transport default, 90 s, which Kubernetes keeps), so that the client closes
            // an idle connection first and never races a request against our close. This only
            // reaps connections their client abandoned; under pressure the cap evicts sooner.
            idle_timeout: Duration::from_secs(120),
            // Below the pod's default terminationGracePeriodSeconds (30).
            drain_timeout: Duration::from_secs(20),
        }
    }
}

/// HTTP/2 concurrent streams per connection. RFC 9113 asks for no fewer than 100; more only
/// lets one connection hold more of the in-flight budget (which sheds past it anyway).
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Largest request header block (HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE, and the HTTP/1 read
/// buffer that holds the request head). The API server sends well under 1 KiB.
pub const MAX_HEADER_BYTES: u32 = 16 * 1024;
/// HTTP/2 flow-control windows: body bytes a connection may send ahead of the handler reading
/// them. The RFC's default, so that connections at the cap buffer at most 512 × 64 KiB.
pub const H2_WINDOW_BYTES: u32 = 65_535;
/// Rapid reset (CVE-2023-44487): streams a client opened and reset before we accepted them, and
/// streams we had to reset for its protocol errors, allowed before the connection is closed
/// with GOAWAY (ENHANCE_YOUR_CALM).
pub const H2_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
pub const H2_MAX_LOCAL_ERROR_RESET_STREAMS: usize = 100;
/// HTTP/2 PING interval and the wait for its answer: a peer that vanished without a FIN frees
/// its connection slot within a minute.
pub const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Errors of the admission server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("reading the bound address: {0}")]
    LocalAddr(std::io::Error),
}

/// A bound HTTPS server; call [`HttpsServer::serve`] to run it.
pub struct HttpsServer {
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    limits: ServerLimits,
}

impl HttpsServer {
    /// Bind `addr` (port 0 picks a free one).
    pub async fn bind(
        addr: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
        router: Router,
        limits: ServerLimits,
    ) -> Result<Self, ServerError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        Ok(Self {
            listener,
            tls,
            router,
            limits,
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        self.listener.local_addr().map_err(ServerError::LocalAddr)
    }

    /// Serve until `shutdown` completes, then stop accepting, let open connections finish their
    /// in-flight requests (up to `drain_timeout`) and return.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) {
        let Self {
            listener,
            tls,
            router,
            limits,
        } = self;
        let acceptor = TlsAcceptor::from(tls);
        let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        let open = Connections::default();
        let (drain_tx, drain_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);

        loop {
            // Without a free slot, accept anyway (one client at a time) and make room by
            // closing the connection idle the longest, rather than leaving the client in the
            // backlog behind connections that do nothing.
            let permit = match slots.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(TryAcquireError::NoPermits) => None,
                Err(TryAcquireError::Closed) => break,
            };
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let permit = match permit {
                Some(permit) => permit,
                None => {
                    if open.evict_oldest_idle() {
                        tracing::debug!(%peer, "connection limit reached: closing the connection idle the longest");
                    }
                    tokio::select! {
                        () = &mut shutdown => break,
                        permit = slots.clone().acquire_owned() => match permit {
                            Ok(permit) => permit,
                            Err(_) => break,
                        },
                    }
                }
            };
            // Small request/response exchanges: do not wait for Nagle.
            let _ = stream.set_nodelay(true);
            while connections.try_join_next().is_some() {}
            connections.spawn(serve_connection(
                stream,
                peer,
                acceptor.clone(),
                router.clone(),
                limits,
                open.clone(),
                drain_rx.clone(),
                permit,
            ));
        }

        drop(listener);
        let open = connections.len();
        tracing::info!(open, "admission server draining");
        let _ = drain_tx.send(true);
        let drained = tokio::time::timeout(limits.drain_timeout, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = connections.len(),
                "drain timeout: closing remaining connections"
            );
            connections.shutdown().await;
        }
        tracing::info!("admission server stopped");
    }
}

/// hyper's protocol settings, every memory-relevant one explicit rather than a default that could
/// change with an upgrade.
pub(crate) fn http_builder(limits: ServerLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES as usize)
        .max_headers(64);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_BYTES)
        .max_frame_size(16 * 1024)
        .initial_stream_window_size(H2_WINDOW_BYTES)
        .initial_connection_window_size(H2_WINDOW_BYTES)
        .adaptive_window(false)
        .max_send_buf_size(64 * 1024)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESET_STREAMS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESET_STREAMS)
        .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT);
    builder
}

#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    router: Router,
    limits: ServerLimits,
    open: Connections,
    mut drain: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let handshake = tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream));
    let tls = tokio::select! {
        done = handshake => match done {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        // No request can be in flight before the handshake: drop it when draining.
        _ = async { drain.wait_for(|draining| *draining).await.map(|_| ()) } => return,
    };
    let builder = http_builder(limits);
    let registration = open.register();
    let activity = registration.activity().clone();
    let conn = builder.serve_connection(TokioIo::new(tls), registration.service(router));
    tokio::pin!(conn);
    let why = tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            return;
        }
        _ = async { drain.wait_for(|draining| *draining).await.map(|_| ()) } => "draining",
        () = activity.idle_for(limits.idle_timeout) => "idle timeout",
        () = activity.evicted() => "evicted for a new connection",
    };
    tracing::debug!(%peer, reason = why, "closing connection");
    // Finish the request in flight (if any), then close; idle connections close now.
    conn.as_mut().graceful_shutdown();
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "connection ended with an error while closing");
    }
}
