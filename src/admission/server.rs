//! The accept loop of the admission (HTTPS) and health (plain HTTP) servers: a handshake with a
//! deadline under its own small budget (per peer, too), HTTP/1.1 or HTTP/2 via hyper-util, a
//! limit on established connections with an idle timeout (at the limit, the connection idle the
//! longest makes room for a newly established one, never for one still handshaking), an
//! optional lame duck before the stop (`stopping.rs`) and a bounded graceful drain.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::idle::{Caller, Connections, Watched};
use super::pending::{Pending, PendingPermit};
use super::stopping::{Phase, PhaseSender, PhaseWatch};

/// Limits of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Deadline for the TLS handshake of a new connection (plain HTTP: for its first byte),
    /// including the wait for a connection slot after it.
    pub tls_handshake_timeout: Duration,
    /// Connections still handshaking, at once. Apart from `max_connections`: at this limit the
    /// one handshaking the longest is closed, and established connections are never evicted
    /// for a handshaking one.
    pub max_handshaking: usize,
    /// Connections one peer address may have handshaking at once; more are closed at accept.
    pub max_handshaking_per_peer: usize,
    /// Deadline for an HTTP/1 request's headers, from the request's first byte (an idle
    /// keep-alive connection is left to `idle_timeout`).
    pub header_read_timeout: Duration,
    /// Established connections served at once. At the limit a newly established connection
    /// makes the connection idle the longest close; when none is idle, it waits for a slot
    /// until its handshake deadline.
    pub max_connections: usize,
    /// A connection with no request in flight for this long is closed (gracefully: HTTP/2 gets
    /// a GOAWAY). Covers TLS clients that never send a request and idle keep-alive connections
    /// of both protocols.
    pub idle_timeout: Duration,
    /// How long in-flight requests may run after shutdown begins.
    pub drain_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            tls_handshake_timeout: Duration::from_secs(3),
            // The API server calls webhooks over HTTP/1.1 from a pool of keep-alive connections,
            // each handshaking once. These bound only clients that have not proven anything yet.
            max_handshaking: 64,
            // When a pod leaves, the API server opens a new connection for each admission it
            // has in flight, all from one address: 16 refused part of such a burst
            // (tests/admission_lame_duck.rs). Below `max_handshaking`, so one peer never takes
            // every slot.
            max_handshaking_per_peer: 48,
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

/// How a connection's bytes arrive.
#[derive(Clone)]
enum Transport {
    Tls(TlsAcceptor),
    /// Plain HTTP (the health and metrics server).
    Plain,
}

/// A bound server; call [`Server::serve`] to run it.
pub struct Server {
    listener: TcpListener,
    transport: Transport,
    router: Router,
    limits: ServerLimits,
}

/// The admission webhook server (TLS).
pub type HttpsServer = Server;

impl Server {
    /// Bind `addr` (port 0 picks a free one) for HTTPS.
    pub async fn bind(
        addr: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
        router: Router,
        limits: ServerLimits,
    ) -> Result<Self, ServerError> {
        Self::bind_with(addr, Transport::Tls(TlsAcceptor::from(tls)), router, limits).await
    }

    /// Bind `addr` for plain HTTP, with the same limits as HTTPS.
    pub async fn bind_plain(
        addr: SocketAddr,
        router: Router,
        limits: ServerLimits,
    ) -> Result<Self, ServerError> {
        Self::bind_with(addr, Transport::Plain, router, limits).await
    }

    async fn bind_with(
        addr: SocketAddr,
        transport: Transport,
        router: Router,
        limits: ServerLimits,
    ) -> Result<Self, ServerError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        Ok(Self {
            listener,
            transport,
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
        self.serve_with_lame_duck(std::future::pending(), shutdown)
            .await;
    }

    /// As [`Server::serve`], with a lame duck from when `lame_duck` completes until `stop` does:
    /// new connections are still accepted and every request answered, but each HTTP/1 response
    /// closes its connection (`Connection: close`) and HTTP/2 connections get a GOAWAY, so that
    /// clients move their keep-alive connections elsewhere before any is closed under them.
    pub async fn serve_with_lame_duck(
        self,
        lame_duck: impl Future<Output = ()> + Send,
        stop: impl Future<Output = ()> + Send,
    ) {
        let Self {
            listener,
            transport,
            router,
            limits,
        } = self;
        let shared = Shared {
            transport,
            router,
            limits,
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            open: Connections::default(),
        };
        let pending = Pending::new(limits.max_handshaking, limits.max_handshaking_per_peer);
        let (phase_tx, phase) = PhaseSender::new();
        let mut connections = JoinSet::new();
        tokio::pin!(lame_duck, stop);
        let mut lame = false;

        loop {
            // Accept at once, always: what a connection may hold is decided per phase, so no
            // client waits in the backlog behind connections that do nothing.
            let (stream, peer) = tokio::select! {
                () = &mut stop => break,
                () = &mut lame_duck, if !lame => {
                    lame = true;
                    tracing::info!(open = connections.len(), "lame duck: every response now closes its connection");
                    phase_tx.enter(Phase::LameDuck);
                    continue;
                }
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
            let handshaking = match pending.admit(peer.ip()) {
                Ok(permit) => permit,
                Err(refused) => {
                    tracing::debug!(%peer, ?refused, "closing a new connection: too many handshaking from this peer");
                    continue;
                }
            };
            // Small request/response exchanges: do not wait for Nagle.
            let _ = stream.set_nodelay(true);
            while connections.try_join_next().is_some() {}
            connections.spawn(connection(
                stream,
                peer,
                shared.clone(),
                handshaking,
                phase.clone(),
            ));
        }

        drop(listener);
        let open = connections.len();
        tracing::info!(open, "server draining");
        phase_tx.enter(Phase::Draining);
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
        tracing::info!("server stopped");
    }
}

/// hyper's protocol settings, every memory-relevant one explicit rather than a default that could
/// change with an upgrade.
pub(crate) fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // hyper's timer runs from the end of the previous response, so it closed idle keep-alive
        // connections; the server's own deadline runs from a request's first byte (`Watched`).
        .header_read_timeout(None)
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

/// What every connection task of one server shares.
#[derive(Clone)]
struct Shared {
    transport: Transport,
    router: Router,
    limits: ServerLimits,
    /// Established connections' slots.
    slots: Arc<Semaphore>,
    open: Connections,
}

/// One connection: handshake and a slot under the handshaking budget, then served.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Shared,
    handshaking: PendingPermit,
    phase: PhaseWatch,
) {
    let deadline = Instant::now() + shared.limits.tls_handshake_timeout;
    match shared.transport.clone() {
        Transport::Tls(acceptor) => {
            let Some(tls) = handshake(
                acceptor.accept(stream),
                deadline,
                &handshaking,
                peer,
                phase.clone(),
            )
            .await
            else {
                return;
            };
            // Only a verified client certificate makes the caller known (`--client-ca-file`).
            let caller = Caller {
                authenticated: tls.get_ref().1.peer_certificates().is_some(),
            };
            let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let accepted = Accepted {
                io: tls,
                http2,
                caller,
            };
            established(accepted, peer, shared, handshaking, deadline, phase).await;
        }
        Transport::Plain => {
            let first_byte = async move {
                let mut byte = [0u8; 1];
                match stream.peek(&mut byte).await? {
                    0 => Err(io::ErrorKind::UnexpectedEof.into()),
                    _ => Ok(stream),
                }
            };
            let Some(stream) =
                handshake(first_byte, deadline, &handshaking, peer, phase.clone()).await
            else {
                return;
            };
            let accepted = Accepted {
                io: stream,
                http2: false,
                caller: Caller {
                    authenticated: false,
                },
            };
            established(accepted, peer, shared, handshaking, deadline, phase).await;
        }
    }
}

/// Runs a connection's handshake until `deadline`; `None` when it failed, timed out, was
/// evicted for a newer one or the server is draining (no request can be in flight yet).
async fn handshake<S>(
    handshake: impl Future<Output = io::Result<S>>,
    deadline: Instant,
    handshaking: &PendingPermit,
    peer: SocketAddr,
    mut phase: PhaseWatch,
) -> Option<S> {
    tokio::select! {
        done = tokio::time::timeout_at(deadline, handshake) => match done {
            Ok(Ok(io)) => Some(io),
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "handshake timed out");
                None
            }
        },
        () = handshaking.evicted() => {
            tracing::debug!(%peer, "handshaking connections at their limit: closing the oldest");
            None
        }
        () = phase.reached(Phase::Draining) => None,
    }
}

/// A connection past its handshake.
struct Accepted<S> {
    io: S,
    /// HTTP/2 negotiated by ALPN.
    http2: bool,
    caller: Caller,
}

/// Takes an established connection's slot (at the cap, the connection idle the longest makes
/// room) and serves the connection.
async fn established<S>(
    accepted: Accepted<S>,
    peer: SocketAddr,
    shared: Shared,
    handshaking: PendingPermit,
    deadline: Instant,
    mut phase: PhaseWatch,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let permit = match shared.slots.clone().try_acquire_owned() {
        Ok(permit) => permit,
        Err(TryAcquireError::Closed) => return,
        Err(TryAcquireError::NoPermits) => {
            if shared.open.evict_oldest_idle() {
                tracing::debug!(%peer, "connection limit reached: closing the connection idle the longest");
            }
            // Still under the handshaking budget and deadline while it waits.
            tokio::select! {
                permit = tokio::time::timeout_at(deadline, shared.slots.clone().acquire_owned()) => match permit {
                    Ok(Ok(permit)) => permit,
                    _ => {
                        tracing::debug!(%peer, "no connection slot before the handshake deadline");
                        return;
                    }
                },
                () = handshaking.evicted() => return,
                () = phase.reached(Phase::Draining) => return,
            }
        }
    };
    drop(handshaking);
    serve_connection(
        accepted,
        peer,
        shared.router,
        shared.limits,
        shared.open,
        phase,
        permit,
    )
    .await;
}

async fn serve_connection<S>(
    accepted: Accepted<S>,
    peer: SocketAddr,
    router: Router,
    limits: ServerLimits,
    open: Connections,
    mut phase: PhaseWatch,
    _permit: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let builder = http_builder();
    let registration = open.register();
    let activity = registration.activity().clone();
    let Accepted { io, http2, caller } = accepted;
    let io = Watched::new(io, activity.clone(), http2);
    let service = phase.close_http1_when_stopping(registration.service(router, caller));
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    // HTTP/2 connections open when the lame duck begins get their GOAWAY then; one opened
    // during it (a client moving off a GOAWAY, while the Endpoints still list this pod) is
    // served until the drain, not sent away before its first request. An HTTP/1 connection
    // stays open through it: its client may be writing a request to it, which is answered and
    // then closes it.
    let close_from = if http2 && phase.now() == Phase::Serving {
        Phase::LameDuck
    } else {
        Phase::Draining
    };
    let why = tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            return;
        }
        () = activity.head_overdue(limits.header_read_timeout) => {
            // No request is in flight to finish: closed at once, as hyper's own timeout did.
            tracing::debug!(%peer, "request head not complete in time: closing");
            return;
        }
        () = phase.reached(close_from) => "stopping",
        () = activity.idle_for(limits.idle_timeout) => "idle timeout",
        () = activity.evicted() => "evicted for a new connection",
    };
    tracing::debug!(%peer, reason = why, "closing connection");
    // Finish the request in flight (if any), then close; idle connections close now (HTTP/2:
    // GOAWAY, and the streams opened before it finish).
    conn.as_mut().graceful_shutdown();
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "connection ended with an error while closing");
    }
}
