//! Target `http`: whole HTTP exchanges with the admission router, through the same hyper
//! connection settings the HTTPS server uses (without TLS): requests sent by hyper's client over
//! HTTP/1.1 or HTTP/2 (several at once on one connection), or raw bytes as an HTTP/1.1 stream.
//!
//! Oracles: every answer is one the server means to give (200, 400, 404, 405, 408, 413, 415,
//! 429 with `Retry-After`, 431), never a 500 or a caught panic; a POST to a webhook route that
//! is not shed is answered exactly as [`super::admission`]'s oracles expect of its body; a raw
//! stream is answered with HTTP/1.1 responses only, or closed.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Expect, Unstructured, inventory, lossy};
use crate::admission::budget::{self, Budget};
use crate::admission::routes::{ROUTES, route_for_path};
use crate::admission::server::http_builder;
use crate::admission::{AdmissionMetrics, AdmissionState, router};
use crate::rules::Options;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("fuzz runtime: {e}"))
});

/// Routers with a roomy budget and with a small one that sheds some bodies.
static ROUTERS: LazyLock<[Router; 2]> = LazyLock::new(|| {
    let state = AdmissionState::new(
        Arc::new(inventory()),
        Options::default(),
        AdmissionMetrics::default(),
    );
    [
        router(state.clone()),
        router(state.with_budget(Budget::new(budget::body_cost(1024) + 64 * 1024))),
    ]
});

/// Bounds one exchange: the server's own deadlines are longer than a fuzz input may take.
const EXCHANGE: Duration = Duration::from_secs(5);
const STATUSES: &[u16] = &[200, 400, 404, 405, 408, 413, 415, 429, 431];
const METHODS: &[&str] = &["POST", "POST", "POST", "GET", "PUT", "DELETE", "OPTIONS"];
const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "",
    "text/plain",
    "application/json; charset=utf-8",
];

/// One request of a structured input.
struct Call {
    method: &'static str,
    path: String,
    content_type: &'static str,
    body: Vec<u8>,
}

pub fn http(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mode = u.choose(3);
    let router = ROUTERS[u.choose(2)].clone();
    RUNTIME.block_on(async {
        let exchange = async {
            match mode {
                0 => raw(router, u.data).await,
                http2 => structured(router, http2 == 2, calls(&mut u)).await,
            }
        };
        if tokio::time::timeout(EXCHANGE, exchange).await.is_err() {
            panic!("exchange did not finish within {EXCHANGE:?}");
        }
    });
}

fn calls(u: &mut Unstructured) -> Vec<Call> {
    let count = 1 + u.choose(3);
    let mut calls = Vec::with_capacity(count);
    for i in 0..count {
        let method = *u.pick(METHODS);
        let path = match u.choose(ROUTES.len() + 2) {
            i if i < ROUTES.len() => ROUTES[i].path.to_string(),
            i if i == ROUTES.len() => format!("/{}", u.string(16)),
            _ => "/".to_string(),
        };
        let content_type = *u.pick(CONTENT_TYPES);
        // The last call takes the rest of the input as its body.
        let body = if i + 1 == count {
            std::mem::take(&mut u.data).to_vec()
        } else {
            let len = u.choose(64).min(u.data.len());
            let (body, rest) = u.data.split_at(len);
            u.data = rest;
            body.to_vec()
        };
        calls.push(Call {
            method,
            path,
            content_type,
            body,
        });
    }
    calls
}

/// Serves one connection of `io` with the production settings.
fn serve(router: Router, io: tokio::io::DuplexStream) {
    tokio::spawn(async move {
        let builder = http_builder();
        let _ = builder
            .serve_connection(TokioIo::new(io), TowerToHyperService::new(router))
            .await;
    });
}

async fn structured(router: Router, http2: bool, calls: Vec<Call>) {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    serve(router, server_io);
    let io = TokioIo::new(client_io);
    let mut requests = Vec::new();
    for call in &calls {
        let mut builder = hyper::Request::builder()
            .method(call.method)
            .uri(format!("http://webhook.test{}", call.path));
        if !call.content_type.is_empty() {
            builder = builder.header("content-type", call.content_type);
        }
        // A request the client library refuses to build (bad path bytes) is not sent.
        if let Ok(request) = builder.body(http_body_util::Full::new(bytes_of(&call.body))) {
            requests.push((call, request));
        }
    }
    let mut answers = Vec::new();
    if http2 {
        let Ok((sender, conn)) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await
        else {
            panic!("HTTP/2 handshake with the server failed");
        };
        tokio::spawn(conn);
        // All at once, as concurrent streams.
        let sent = requests.into_iter().map(|(call, request)| {
            let mut sender = sender.clone();
            async move { (call, sender.send_request(request).await) }
        });
        for (call, response) in futures::future::join_all(sent).await {
            answers.push((call, response));
        }
    } else {
        let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(io).await else {
            panic!("HTTP/1.1 handshake with the server failed");
        };
        tokio::spawn(conn);
        for (call, request) in requests {
            if sender.ready().await.is_err() {
                break;
            }
            let response = sender.send_request(request).await;
            answers.push((call, response));
        }
    }
    for (call, response) in answers {
        let response = match response {
            Ok(response) => response,
            // The server may close a connection it refused a body on (HTTP/1.1 413, 429).
            Err(_) => continue,
        };
        let status = response.status().as_u16();
        let retry_after = response.headers().contains_key("retry-after");
        let body = match response.into_body().collect().await {
            Ok(body) => body.to_bytes().to_vec(),
            Err(_) => continue,
        };
        check(call, status, retry_after, body);
    }
}

fn check(call: &Call, status: u16, retry_after: bool, body: Vec<u8>) {
    let answer = (status, body);
    assert!(
        STATUSES.contains(&status),
        "{} {}: unexpected answer {:?}",
        call.method,
        call.path,
        lossy(&answer)
    );
    assert_eq!(
        status == 429,
        retry_after,
        "429 needs Retry-After: {:?}",
        lossy(&answer)
    );
    let route = route_for_path(&call.path);
    match (route, call.method) {
        // 429 (shed) and 413 (parse larger than the whole budget) are answered unjudged.
        (Some(route), "POST") if status != 429 && status != 413 => {
            Expect::new(&call.body).check(route, &answer)
        }
        (Some(_), "POST") => {}
        (Some(_), _) => assert_eq!(status, 405, "{:?}", lossy(&answer)),
        (None, _) => assert_eq!(status, 404, "{:?}", lossy(&answer)),
    }
}

/// Raw bytes as an HTTP/1.1 stream, then end of input.
async fn raw(router: Router, data: &[u8]) {
    let (mut client, server_io) = tokio::io::duplex(64 * 1024);
    serve(router, server_io);
    let data_is_h2 = data.starts_with(b"PRI");
    let data = data.to_vec();
    let (mut read, mut write) = tokio::io::split(&mut client);
    let writing = async move {
        let _ = write.write_all(&data).await;
        let _ = write.shutdown().await;
    };
    let mut out = Vec::new();
    let reading = read.read_to_end(&mut out);
    let _ = tokio::join!(writing, reading);
    // An HTTP/2 preface switches the connection to HTTP/2: its frames are not checked here.
    if out.is_empty() || data_is_h2 {
        return;
    }
    let code = out
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| out.strip_prefix(b"HTTP/1.0 "))
        .and_then(|rest| {
            std::str::from_utf8(rest.get(..3)?)
                .ok()?
                .parse::<u16>()
                .ok()
        });
    match code {
        Some(code) => assert!(
            code != 500,
            "a 500 answer: {:?}",
            String::from_utf8_lossy(&out[..out.len().min(400)])
        ),
        None => panic!(
            "not an HTTP/1 answer: {:?}",
            String::from_utf8_lossy(&out[..out.len().min(200)])
        ),
    }
}

fn bytes_of(body: &[u8]) -> axum::body::Bytes {
    axum::body::Bytes::copy_from_slice(body)
}
