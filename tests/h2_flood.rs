//! HTTP/2 abuse with real clients against the production HTTPS admission server on loopback:
//! nghttp2's `nghttp` reads the server's SETTINGS (the explicit limits of
//! src/admission/server.rs), `h2load` floods it with streams (small reviews, and bodies of
//! megabytes that spend the in-flight memory budget), and an h2 client opens and resets
//! streams as fast as it can (rapid reset, CVE-2023-44487). Meanwhile and afterwards a normal
//! client's admissions are all answered correctly. Assertions are on outcomes only.
//!
//! Needs nghttp2-client (`h2load`, `nghttp`); `.ci/run` installs it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use serde_json::Value;
use spin_operator::admission::{
    AdmissionMetrics, AdmissionState, Budget, HttpsServer, ServerLimits, budget, router,
};
use spin_operator::rules::Options;
use spin_operator::tls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "support/pki.rs"]
mod support_pki;
use support_pki::{Pki, pki};
#[path = "support/hostile_bodies.rs"]
mod hostile;

const HOST: &str = "webhook.test";
const VALIDATE_APP: &str = "/validate-core-spinkube-dev-v1alpha1-spinapp";
const WAIT: Duration = Duration::from_secs(30);

/// The server with `budget`; its metrics registry for the shed count.
async fn start(pki: &Pki, budget: Budget) -> (SocketAddr, Arc<Registry>) {
    let resolver = Arc::new(tls::ReloadingResolver::new(None));
    resolver
        .offer_pem(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes(), "test")
        .unwrap();
    let config = Arc::new(tls::server_config(resolver).unwrap());
    let mut registry = Registry::default();
    let state = AdmissionState::new(
        Arc::new(hostile::inventory()),
        Options::default(),
        AdmissionMetrics::register(&mut registry),
    )
    .with_budget(budget)
    // Debug builds judge a megabyte body slowly; outcomes are asserted, not times.
    .with_deadline(WAIT);
    let server = HttpsServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        config,
        router(state),
        ServerLimits::default(),
    )
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(std::future::pending()));
    (addr, Arc::new(registry))
}

fn tool(name: &str) -> String {
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path.display().to_string();
        }
    }
    panic!("{name} not found: install nghttp2-client (.ci/run does)");
}

/// Runs a command to completion off the runtime; its stdout, asserting it succeeded.
async fn run(mut command: Command) -> String {
    let shown = format!("{command:?}");
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{shown} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `h2load`'s counts: (2xx, 4xx, 5xx, requests that got no answer).
fn h2load_counts(out: &str) -> (u64, u64, u64, u64) {
    // "status codes: 10 2xx, 0 3xx, 5 4xx, 0 5xx"
    // "requests: 20 total, 20 started, 20 done, 15 succeeded, 5 failed, 0 errored, 0 timeout"
    let count = |prefix: &str, what: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|rest| {
                rest.split(',')
                    .find_map(|part| part.trim().strip_suffix(what)?.trim().parse().ok())
            })
            .unwrap_or_else(|| panic!("no {prefix} {what} count in h2load output:\n{out}"))
    };
    (
        count("status codes:", "2xx"),
        count("status codes:", "4xx"),
        count("status codes:", "5xx"),
        count("requests:", "total") - count("requests:", "done") + count("requests:", "errored"),
    )
}

fn h2load(addr: SocketAddr, body: &Path, requests: u32, clients: u32, streams: u32) -> Command {
    let mut command = Command::new(tool("h2load"));
    command
        .arg(format!("-n{requests}"))
        .arg(format!("-c{clients}"))
        .arg(format!("-m{streams}"))
        .arg("-d")
        .arg(body)
        .args(["-H", "content-type: application/json"])
        .arg(format!("https://127.0.0.1:{}{VALIDATE_APP}", addr.port()));
    command
}

/// One admission as the API server makes it: retried after `Retry-After` when shed.
async fn admit(client: &reqwest::Client, url: &str) -> Value {
    for _ in 0..100 {
        let resp = client
            .post(url)
            .header("content-type", "application/json")
            .body(hostile::normal_review())
            .send()
            .await
            .unwrap();
        if resp.status() == 429 {
            assert!(resp.headers().contains_key("retry-after"));
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        assert_eq!(resp.status(), 200);
        return resp.json().await.unwrap();
    }
    panic!("shed 100 times in a row");
}

fn client(pki: &Pki, addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_der(pki.ca.der()).unwrap())
        .resolve(HOST, addr)
        .http2_prior_knowledge()
        .timeout(WAIT)
        .build()
        .unwrap()
}

/// An HTTP/2 frame: 9-byte header (RFC 9113 section 4.1) and payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The rapid-reset attack as published: `streams` HEADERS frames each followed at once by
/// RST_STREAM(CANCEL), in one write, so they arrive faster than any server accepts them. Hand
/// framed because client libraries (h2, nghttp2) pace their own streams and would not produce
/// the burst. Returns the error code of the server's GOAWAY, if it sent one before closing.
async fn rapid_reset(pki: &Pki, addr: SocketAddr, streams: u32) -> Option<u32> {
    const HEADERS: u8 = 0x1;
    const RST_STREAM: u8 = 0x3;
    const SETTINGS: u8 = 0x4;
    const GOAWAY: u8 = 0x7;
    const END_HEADERS: u8 = 0x4;
    const CANCEL: u32 = 0x8;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.der().clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(HOST.try_into().unwrap(), tcp)
        .await
        .unwrap();
    let mut burst = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    burst.extend(frame(SETTINGS, 0, 0, &[]));
    // HPACK static table: :method POST (3), :scheme https (7), :path / (4).
    let block = [0x83, 0x87, 0x84];
    for i in 0..streams {
        let id = 1 + 2 * i;
        burst.extend(frame(HEADERS, END_HEADERS, id, &block));
        burst.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
    }
    // The server may close before taking it all.
    let _ = tls.write_all(&burst).await;
    let _ = tls.flush().await;
    let mut received = Vec::new();
    let read = tokio::time::timeout(WAIT, tls.read_to_end(&mut received)).await;
    assert!(
        read.is_ok(),
        "rapid-reset connection not closed by the server"
    );
    let mut rest = received.as_slice();
    while rest.len() >= 9 {
        let len = (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
        let kind = rest[3];
        let Some(payload) = rest.get(9..9 + len) else {
            break;
        };
        if kind == GOAWAY && payload.len() >= 8 {
            return Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
        }
        rest = &rest[9 + len..];
    }
    None
}

fn shed_count(registry: &Registry) -> u64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text.lines()
        .find(|l| l.starts_with("spin_operator_admission_shed_total{webhook=\"vspinapp.kb.io\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_settings_are_explicit_limits_a_real_client_sees() {
    let pki = pki(HOST);
    let (addr, _) = start(&pki, Budget::default()).await;
    let mut nghttp = Command::new(tool("nghttp"));
    nghttp
        .arg("-nv")
        .arg(format!("https://127.0.0.1:{}/", addr.port()));
    let out = run(nghttp).await;
    let settings: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.contains("recv SETTINGS frame"))
        .skip(1)
        .take_while(|l| l.trim_start().starts_with('('))
        .chain(
            out.lines()
                .skip_while(|l| !l.contains("recv SETTINGS frame"))
                .skip(2)
                .take_while(|l| l.trim_start().starts_with('[')),
        )
        .map(str::trim)
        .collect();
    for expected in [
        "[SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100]",
        "[SETTINGS_INITIAL_WINDOW_SIZE(0x04):65535]",
        "[SETTINGS_MAX_HEADER_LIST_SIZE(0x06):16384]",
    ] {
        assert!(
            settings.contains(&expected),
            "{expected} not in the server's SETTINGS {settings:?}\n{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_floods_and_rapid_resets_leave_other_clients_served() {
    let pki = pki(HOST);
    // Room for two big bodies at a time: the big-body flood must be shed.
    let big_size = 2 << 20;
    let (_, _, big_body) = hostile::hostile_bodies(big_size)
        .into_iter()
        .find(|(name, path, _)| name.contains("huge string") && *path == VALIDATE_APP)
        .unwrap();
    let each = budget::body_cost(big_body.len()) + budget::tree_cost(&big_body);
    let (addr, registry) = start(&pki, Budget::new(each * 2 + (1 << 20))).await;
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.json");
    std::fs::write(&small, hostile::normal_review()).unwrap();
    let big = dir.path().join("big.json");
    std::fs::write(&big, big_body).unwrap();

    let url = format!("https://{HOST}:{}{VALIDATE_APP}", addr.port());
    let normal = client(&pki, addr);
    let floods = async {
        let small_flood = run(h2load(addr, &small, 5_000, 4, 1000));
        let big_flood = run(h2load(addr, &big, 400, 8, 100));
        let resets = rapid_reset(&pki, addr, 5_000);
        tokio::join!(small_flood, big_flood, resets)
    };
    let meanwhile = async {
        let mut answers = Vec::new();
        for _ in 0..50 {
            answers.push(admit(&normal, &url).await);
        }
        answers
    };
    let ((small_out, big_out, reset_reason), answers) = tokio::join!(floods, meanwhile);

    for body in answers {
        assert_eq!(body["response"]["uid"], "u-1", "{body}");
        assert_eq!(body["response"]["allowed"], true, "{body}");
    }
    // Streams beyond the server's 100 wait their turn; every small review is answered.
    let (ok, client_errors, server_errors, unanswered) = h2load_counts(&small_out);
    assert_eq!(
        (ok, client_errors, server_errors, unanswered),
        (5_000, 0, 0, 0),
        "{small_out}"
    );
    // Big bodies: judged (a denial is a 200) while the budget has room, else shed with 429.
    let (ok, shed, server_errors, unanswered) = h2load_counts(&big_out);
    assert_eq!(server_errors, 0, "{big_out}");
    assert_eq!(ok + shed + unanswered, 400, "{big_out}");
    assert!(ok > 0 && shed > 0, "{big_out}");
    assert!(
        shed_count(&registry) >= shed,
        "shed metric behind h2load's 429s"
    );
    // The resetting client is told to calm down, its connection closed.
    const ENHANCE_YOUR_CALM: u32 = 0xb;
    assert_eq!(reset_reason, Some(ENHANCE_YOUR_CALM));

    // And afterwards, a fresh client is served.
    let body = admit(&client(&pki, addr), &url).await;
    assert_eq!(body["response"]["allowed"], true, "{body}");
}
