//! How a server stops, as its connections see it. A client's keep-alive connection must never
//! be closed while a request may be on its way: kube-apiserver calls webhooks over HTTP/1.1 from
//! a pool of keep-alive connections, resolves the Service to a pod only when it dials (so its
//! pooled connections keep reaching a pod the Endpoints dropped), and never retries a POST whose
//! bytes were written. So from the lame duck on, every HTTP/1 response carries
//! `Connection: close` (hyper closes the connection after writing it, and the client knows not to
//! reuse it) and HTTP/2 connections get a GOAWAY, while new connections are still accepted: each
//! request finishes and the client's next one dials a replica that is still serving. Idle HTTP/1
//! connections are left open until the drain, as the client may be writing to them; those still
//! open then are ones the client left unused through the whole lame duck.

use std::future::Future;
use std::pin::Pin;

use axum::http::header::CONNECTION;
use axum::http::{HeaderValue, Request, Response, Version};
use tokio::sync::watch;

/// Where a server is in its stop sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Serving,
    /// Still accepting and answering, but asking every client to take its next request
    /// elsewhere.
    LameDuck,
    /// No longer accepting: requests in flight finish, then every connection closes.
    Draining,
}

/// Sets a server's [`Phase`]; it only ever moves forward.
pub(crate) struct PhaseSender(watch::Sender<Phase>);

impl PhaseSender {
    pub(crate) fn new() -> (Self, PhaseWatch) {
        let (tx, rx) = watch::channel(Phase::Serving);
        (Self(tx), PhaseWatch(rx))
    }

    pub(crate) fn enter(&self, phase: Phase) {
        self.0.send_if_modified(|now| {
            let forward = phase > *now;
            if forward {
                *now = phase;
            }
            forward
        });
    }
}

/// What every connection of a server watches to know its [`Phase`].
#[derive(Debug, Clone)]
pub(crate) struct PhaseWatch(watch::Receiver<Phase>);

impl PhaseWatch {
    pub(crate) fn now(&self) -> Phase {
        *self.0.borrow()
    }

    /// Resolves once the server is at `phase` or past it (also when the server is gone).
    pub(crate) async fn reached(&mut self, phase: Phase) {
        let _ = self.0.wait_for(|now| *now >= phase).await;
    }

    /// A hyper service whose HTTP/1 responses carry `Connection: close` once the lame duck has
    /// begun (checked when the response is ready, so a request that was in flight as it began
    /// closes its connection too).
    pub(crate) fn close_http1_when_stopping<S>(&self, inner: S) -> CloseWhenStopping<S> {
        CloseWhenStopping {
            inner,
            phase: self.clone(),
        }
    }
}

/// See [`PhaseWatch::close_http1_when_stopping`].
#[derive(Clone)]
pub(crate) struct CloseWhenStopping<S> {
    inner: S,
    phase: PhaseWatch,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> hyper::service::Service<Request<ReqBody>> for CloseWhenStopping<S>
where
    S: hyper::service::Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<ResBody>, S::Error>>;

    fn call(&self, req: Request<ReqBody>) -> Self::Future {
        // HTTP/2 has no `Connection` header (RFC 9113 §8.2.2): it gets a GOAWAY instead.
        let http1 = req.version() < Version::HTTP_2;
        let phase = self.phase.clone();
        let response = self.inner.call(req);
        Box::pin(async move {
            let mut response = response.await?;
            if http1 && phase.now() >= Phase::LameDuck {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Duration;

    use super::*;

    #[derive(Clone)]
    struct Ok200;

    impl hyper::service::Service<Request<()>> for Ok200 {
        type Response = Response<()>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<()>, Infallible>>;
        fn call(&self, _: Request<()>) -> Self::Future {
            std::future::ready(Ok(Response::new(())))
        }
    }

    async fn connection_header(service: &CloseWhenStopping<Ok200>, version: Version) -> String {
        use hyper::service::Service;
        let req = Request::builder().version(version).body(()).unwrap();
        let resp = service.call(req).await.unwrap();
        resp.headers()
            .get(CONNECTION)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn http1_responses_close_their_connection_from_the_lame_duck_on() {
        let (sender, watch) = PhaseSender::new();
        let service = watch.close_http1_when_stopping(Ok200);
        assert_eq!(connection_header(&service, Version::HTTP_11).await, "");
        sender.enter(Phase::LameDuck);
        for version in [Version::HTTP_10, Version::HTTP_11] {
            assert_eq!(connection_header(&service, version).await, "close");
        }
        assert_eq!(connection_header(&service, Version::HTTP_2).await, "");
        sender.enter(Phase::Draining);
        assert_eq!(connection_header(&service, Version::HTTP_11).await, "close");
    }

    #[tokio::test]
    async fn phases_only_move_forward_and_waiters_see_later_ones() {
        let (sender, mut watch) = PhaseSender::new();
        let waiting =
            tokio::time::timeout(Duration::from_millis(50), watch.reached(Phase::LameDuck));
        assert!(waiting.await.is_err(), "lame duck reached while serving");
        sender.enter(Phase::Draining);
        sender.enter(Phase::LameDuck);
        assert_eq!(watch.now(), Phase::Draining);
        // Past the lame duck counts as having reached it.
        tokio::time::timeout(Duration::from_secs(10), watch.reached(Phase::LameDuck))
            .await
            .expect("lame duck never reached");
    }
}
