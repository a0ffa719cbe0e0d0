//! Slow and abusive clients against the production HTTPS admission server: idle TCP connections
//! that never handshake, TLS connections idle after the handshake, slowloris clients trickling
//! partial headers, and oversized bodies (declared and chunked). While they are connected a
//! normal client's admissions all succeed, and the server closes the slowloris and idle-TCP
//! connections itself (handshake / header-read deadlines), while a keep-alive connection idle
//! past the header-read deadline stays open. More idle TLS connections than the
//! connection cap neither lock a normal client out: the cap evicts the connection idle the
//! longest and the idle timeout reaps the rest, also for HTTP/1.1 keep-alive clients that were
//! answered and then sit idle. Thousands of silent connects from one peer, renewed as fast as
//! the server closes them, hold neither the connection slots nor the handshake budget of a
//! client from another address. The plain-HTTP health server, on the same accept loop, sheds
//! silent and slowloris clients the same way while its probes are answered. Bounded: a few
//! seconds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use serde_json::Value;
use spin_operator::admission::{
    AdmissionMetrics, AdmissionState, HttpsServer, MAX_BODY_BYTES, Readiness, Server, ServerLimits,
    health_router, router,
};
use spin_operator::rules::Options;
use spin_operator::tls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

#[path = "support/pki.rs"]
mod support_pki;
use support_pki::{Pki, pki};
#[path = "support/hostile_bodies.rs"]
mod hostile;
use hostile::{VALIDATE_APP, inventory, normal_review as review};

const HOST: &str = "webhook.test";
/// Short server deadlines keep the test short; the behaviour is the same as with the defaults.
const LIMITS: ServerLimits = ServerLimits {
    tls_handshake_timeout: Duration::from_secs(1),
    max_handshaking: 64,
    max_handshaking_per_peer: 16,
    header_read_timeout: Duration::from_secs(1),
    max_connections: 512,
    idle_timeout: Duration::from_secs(60),
    drain_timeout: Duration::from_secs(2),
};
const WAIT: Duration = Duration::from_secs(10);

async fn start(pki: &Pki, limits: ServerLimits) -> SocketAddr {
    let resolver = Arc::new(tls::ReloadingResolver::new(None));
    resolver
        .offer_pem(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes(), "test")
        .unwrap();
    let config = Arc::new(tls::server_config(resolver).unwrap());
    let state = AdmissionState::new(
        Arc::new(inventory()),
        Options::default(),
        AdmissionMetrics::register(&mut Registry::default()),
    );
    let server = HttpsServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        config,
        router(state),
        limits,
    )
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(std::future::pending()));
    addr
}

fn connector(pki: &Pki) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(pki: &Pki, addr: SocketAddr) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector(pki)
        .connect(HOST.try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// Resolves when the server closes the connection (EOF or reset).
async fn closed_by_server<S: AsyncReadExt + Unpin>(s: &mut S) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(WAIT, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abusive_clients_do_not_starve_a_normal_client() {
    let pki = pki(HOST);
    let addr = start(&pki, LIMITS).await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_der(pki.ca.der()).unwrap())
        .resolve(HOST, addr)
        .timeout(WAIT)
        .build()
        .unwrap();
    let url = format!("https://{HOST}:{}{VALIDATE_APP}", addr.port());

    // 100 TCP connections that never start TLS, from addresses of their own (one address may
    // hold only `max_handshaking_per_peer` handshaking connections; the rest are closed at once).
    let mut raw = Vec::new();
    for i in 0..100u8 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::from(([127, 0, 1, i % 8 + 1], 0)))
            .unwrap();
        raw.push(socket.connect(addr).await.unwrap());
    }
    // 50 TLS connections idle after the handshake.
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(tls_connect(&pki, addr).await);
    }
    // 50 slowloris clients: a request line and one header, then a byte now and then.
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut s = tls_connect(&pki, addr).await;
        s.write_all(format!("POST {VALIDATE_APP} HTTP/1.1\r\nHost: {HOST}\r\n").as_bytes())
            .await
            .unwrap();
        s.flush().await.unwrap();
        slow.push(s);
    }
    let trickle = tokio::spawn(async move {
        for _ in 0..20 {
            for s in &mut slow {
                let _ = s.write_all(b"X").await;
                let _ = s.flush().await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        slow
    });

    // Oversized bodies: declared (Content-Length) and streamed without a length.
    let big = vec![b' '; MAX_BODY_BYTES + 1];
    let resp = client.post(&url).body(big.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    let mut s = tls_connect(&pki, addr).await;
    s.write_all(
        format!(
            "POST {VALIDATE_APP} HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..=(MAX_BODY_BYTES / chunk.len()) {
        let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        // The server may stop reading (and close) once the limit is exceeded.
        if s.write_all(&frame).await.is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut head = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut head)).await;
    let head = String::from_utf8_lossy(&head);
    // The server answers 413 or closes the stream it refuses to read; either way it survives.
    assert!(
        head.is_empty() || head.starts_with("HTTP/1.1 413"),
        "chunked oversized body: {}",
        head.lines().next().unwrap_or_default()
    );

    // A normal client, meanwhile: every admission answered and allowed.
    for _ in 0..20 {
        let resp = client
            .post(&url)
            .header("content-type", "application/json")
            .body(review())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["response"]["allowed"], true, "{body}");
        assert_eq!(body["response"]["uid"], "u-1");
    }

    // The server sheds the abusers itself: header-read and handshake deadlines close them.
    let mut slow = trickle.await.unwrap();
    for s in &mut slow {
        assert!(closed_by_server(s).await, "slowloris connection kept open");
    }
    for s in &mut raw {
        assert!(
            closed_by_server(s).await,
            "never-handshaking connection kept open"
        );
    }

    // And a fresh connection still gets answers after all that.
    let fresh = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_der(pki.ca.der()).unwrap())
        .resolve(HOST, addr)
        .timeout(WAIT)
        .build()
        .unwrap();
    let resp = fresh.post(&url).body(review()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(idle);
}

fn client(pki: &Pki, addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_der(pki.ca.der()).unwrap())
        .resolve(HOST, addr)
        .timeout(WAIT)
        .build()
        .unwrap()
}

/// A normal admission, answered and allowed.
async fn admitted(client: &reqwest::Client, addr: SocketAddr) {
    let url = format!("https://{HOST}:{}{VALIDATE_APP}", addr.port());
    let resp = client
        .post(&url)
        .header("content-type", "application/json")
        .body(review())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["response"]["allowed"], true, "{body}");
}

/// `n` TLS connections that complete the handshake and then send nothing.
async fn idle_tls(pki: &Pki, addr: SocketAddr, n: usize) -> Vec<TlsStream<TcpStream>> {
    let mut idle = Vec::new();
    for i in 0..n {
        let s = tokio::time::timeout(WAIT, tls_connect(pki, addr))
            .await
            .unwrap_or_else(|_| panic!("idle connection {i}: no handshake (locked out)"));
        idle.push(s);
    }
    idle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_the_cap_are_reaped_and_a_normal_client_is_served() {
    let pki = pki(HOST);
    let limits = ServerLimits {
        max_connections: 16,
        idle_timeout: Duration::from_secs(1),
        ..LIMITS
    };
    let addr = start(&pki, limits).await;
    // 40 idle TLS connections against 16 slots: each one past the cap still gets a handshake.
    let mut idle = idle_tls(&pki, addr, 40).await;
    // A normal client is served meanwhile.
    let normal = client(&pki, addr);
    for _ in 0..5 {
        admitted(&normal, addr).await;
    }
    // The server closes every idle connection itself (evicted at the cap or idle timeout).
    for (i, s) in idle.iter_mut().enumerate() {
        assert!(closed_by_server(s).await, "idle connection {i} kept open");
    }
    // And a fresh client is served afterwards.
    admitted(&client(&pki, addr), addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_connection_idle_the_longest_makes_room() {
    let pki = pki(HOST);
    // An idle timeout far beyond the test's waits: only eviction can close connections here.
    let limits = ServerLimits {
        max_connections: 16,
        idle_timeout: Duration::from_secs(600),
        ..LIMITS
    };
    let addr = start(&pki, limits).await;
    let mut idle = idle_tls(&pki, addr, 40).await;
    // The normal client's connection is the 41st: it evicts one more.
    admitted(&client(&pki, addr), addr).await;
    // Connections 0..=24 were idle the longest when each newcomer arrived: closed by the server.
    for (i, s) in idle.iter_mut().take(25).enumerate() {
        assert!(closed_by_server(s).await, "idle connection {i} not evicted");
    }
}

/// Sends one admission over an HTTP/1.1 keep-alive connection and reads the whole answer,
/// leaving the connection open for the next request.
async fn keep_alive_admission(s: &mut TlsStream<TcpStream>) {
    let body = review();
    let head = format!(
        "POST {VALIDATE_APP} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(&[head.as_bytes(), &body].concat())
        .await
        .unwrap();
    s.flush().await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (header_end, length) = loop {
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .expect("answer in time")
            .unwrap();
        assert!(n > 0, "server closed a keep-alive connection mid-answer");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let headers = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            assert!(headers.starts_with("http/1.1 200"), "{headers}");
            assert!(!headers.contains("connection: close"), "{headers}");
            let length = headers
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse::<usize>().unwrap())
                .expect("content-length");
            break (end + 4, length);
        }
    };
    while buf.len() < header_end + length {
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .expect("body in time")
            .unwrap();
        assert!(n > 0, "server closed a keep-alive connection mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let answer: Value = serde_json::from_slice(&buf[header_end..header_end + length]).unwrap();
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_clients_beyond_the_cap_are_closed_after_the_idle_timeout() {
    let pki = pki(HOST);
    // hyper's own keep-alive timer (the header-read deadline) far beyond the idle timeout, so
    // only the server's idle timeout (or eviction at the cap) can close these connections.
    let idle_timeout = Duration::from_secs(1);
    let limits = ServerLimits {
        max_connections: 8,
        idle_timeout,
        header_read_timeout: Duration::from_secs(60),
        ..LIMITS
    };
    let addr = start(&pki, limits).await;
    // 12 keep-alive clients against 8 slots; each is answered, then keeps its connection idle.
    let mut clients = Vec::new();
    for _ in 0..12 {
        let mut s = tls_connect(&pki, addr).await;
        keep_alive_admission(&mut s).await;
        clients.push(s);
    }
    // Keep-alive is real: the newest client reuses its connection before the timeout.
    let last = clients.last_mut().unwrap();
    keep_alive_admission(last).await;
    let answered = tokio::time::Instant::now();
    // Every connection is closed by the server: the 4 oldest evicted for newcomers, the others
    // once idle for the timeout, and not before it (the newest was busy a moment ago).
    for (i, s) in clients.iter_mut().enumerate() {
        assert!(
            closed_by_server(s).await,
            "idle keep-alive client {i} kept open"
        );
    }
    assert!(
        answered.elapsed() >= idle_timeout - Duration::from_millis(50),
        "closed after {:?}, before the idle timeout",
        answered.elapsed()
    );
    // With every slot free again, a new client is served.
    admitted(&client(&pki, addr), addr).await;
    let mut fresh = tls_connect(&pki, addr).await;
    keep_alive_admission(&mut fresh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_connection_idle_past_the_header_deadline_stays_open() {
    // The API server keeps its webhook connections for 90 s between calls: a pause longer than
    // the header-read deadline must not cost it a new handshake (the deadline runs from a
    // request's first byte, not from the previous response).
    let pki = pki(HOST);
    let addr = start(&pki, LIMITS).await;
    let mut s = tls_connect(&pki, addr).await;
    keep_alive_admission(&mut s).await;
    tokio::time::sleep(LIMITS.header_read_timeout * 3).await;
    keep_alive_admission(&mut s).await;
}

/// `n` TCP connects from 127.0.0.1 that never send a byte, each renewed as soon as the server
/// closes it, until `stop` is set (the renewals of an attacker that keeps its connects alive).
fn silent_connects(
    addr: SocketAddr,
    n: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinSet<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let mut stop = stop.clone();
        tasks.spawn(async move {
            while !*stop.borrow() {
                let Ok(mut s) = TcpStream::connect(addr).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let mut buf = [0u8; 16];
                tokio::select! {
                    _ = s.read(&mut buf) => {}
                    _ = stop.wait_for(|stop| *stop) => return,
                }
                // Bounded renewal rate per connection: no busy loop on a shared machine.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connects_from_one_peer_do_not_lock_out_a_fresh_client() {
    let pki = pki(HOST);
    // The default deadlines and budgets: what a silent connect can hold in production.
    let addr = start(&pki, ServerLimits::default()).await;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let attacker = silent_connects(addr, 2000, stop);
    // Give the attacker time to fill every slot it can get (and then some renewals).
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A client on another address, with a fresh connection each time and a timeout shorter
    // than the server's handshake deadline: it must not wait behind the silent connects.
    for i in 0..5 {
        let fresh = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_der(pki.ca.der()).unwrap())
            .resolve(HOST, addr)
            .local_address(Some("127.0.0.2".parse().unwrap()))
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let url = format!("https://{HOST}:{}{VALIDATE_APP}", addr.port());
        let resp = fresh
            .post(&url)
            .header("content-type", "application/json")
            .body(review())
            .send()
            .await
            .unwrap_or_else(|e| panic!("fresh client {i} not served: {e}"));
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["response"]["allowed"], true, "{body}");
    }
    let _ = stop_tx.send(true);
    attacker.join_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_server_sheds_silent_and_slowloris_clients_and_keeps_answering_probes() {
    let readiness = Readiness::new();
    readiness.register("test").set_ready(true);
    let server = Server::bind_plain(
        "127.0.0.1:0".parse().unwrap(),
        health_router(readiness, Arc::new(Registry::default()), None),
        LIMITS,
    )
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(std::future::pending()));

    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let http = reqwest::Client::builder().timeout(WAIT).build().unwrap();
    for path in ["/healthz", "/readyz", "/metrics"] {
        let resp = http
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    let trickle = async {
        for _ in 0..30 {
            if slow.write_all(b"X").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    trickle.await;
    assert!(closed_by_server(&mut slow).await, "slowloris kept open");
    assert!(
        closed_by_server(&mut silent).await,
        "silent connection kept open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connects_never_evict_established_connections() {
    let pki = pki(HOST);
    // Every slot taken by an established, idle keep-alive connection (the API server's pool).
    let limits = ServerLimits {
        max_connections: 8,
        idle_timeout: Duration::from_secs(600),
        header_read_timeout: Duration::from_secs(600),
        ..LIMITS
    };
    let addr = start(&pki, limits).await;
    let mut pooled = Vec::new();
    for _ in 0..8 {
        let mut s = tls_connect(&pki, addr).await;
        keep_alive_admission(&mut s).await;
        pooled.push(s);
    }
    // 200 connects that never start TLS, each closed by the client after a moment.
    for _ in 0..200 {
        let s = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
        drop(s);
    }
    // Let the handshake deadline pass for the ones the server still held.
    tokio::time::sleep(LIMITS.tls_handshake_timeout * 2).await;
    // Every pooled connection is still open and answers.
    for s in &mut pooled {
        keep_alive_admission(s).await;
    }
}
