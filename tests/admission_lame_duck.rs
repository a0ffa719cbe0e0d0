//! A replica stopping under load, as the API server sees it. kube-apiserver calls a webhook
//! Service over HTTP/1.1 (it sets ALPN to http/1.1 so that load spreads over replicas), keeps up
//! to 25 idle keep-alive connections per host, and resolves the Service to a pod only when it
//! dials (`--enable-aggregator-routing`): once the Endpoints drop a terminating pod, its pooled
//! connections still carry requests to it. Go never retries a POST whose bytes were written, so a
//! connection the server closes while a request is on its way fails that admission ("connection
//! reset by peer", "broken pipe", EOF).
//!
//! Here two `spin-operator run` processes stand for two pods; a pooled hyper-util client with the
//! API server's settings (HTTP/1.1, 25 idle connections, a retry only for requests none of whose
//! bytes were written) posts reviews from many tasks at once and dials whichever process is "the
//! endpoint" at dial time. The first process gets SIGTERM mid-load as the endpoint flips to the
//! second; it serves its lame-duck period, drains and exits. No request may fail. The same for
//! HTTP/2 clients (one multiplexed connection), which get a GOAWAY.

use std::future::Ready;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

mod admission_fake_api;
use admission_fake_api::{Calls, fake_api};

#[path = "support/ports.rs"]
mod ports;
use ports::free_port;
#[path = "support/pki.rs"]
mod support_pki;
use support_pki::pki;

const HOST: &str = "webhook.test";
const MUTATE: &str = "/mutate-core-spinkube-dev-v1alpha1-spinapp";
/// Requests in flight at once. A cold pool dials one connection per request in flight, all from
/// one address, as the API server does when a pod leaves: with `max_handshaking_per_peer` at 16,
/// 32 workers failed 79–99 requests at the cold start ("tls handshake eof").
const WORKERS: usize = 32;
/// Requests the first replica answers before it is told to stop (the pool is then full).
const WARM_UP: u64 = 300;
/// Requests after the first replica exited, so that the second one is proven to serve.
const AFTER: u64 = 300;

/// Where the webhook Service resolves at dial time (the API server's Dial hook): a port on
/// loopback, changed when "the Endpoints" drop the stopping replica.
#[derive(Clone)]
struct Endpoint(Arc<AtomicU16>);

impl tower::Service<Name> for Endpoint {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Name) -> Self::Future {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.0.load(Ordering::SeqCst)));
        std::future::ready(Ok(vec![addr].into_iter()))
    }
}

type Pooled = Client<hyper_rustls::HttpsConnector<HttpConnector<Endpoint>>, Full<Bytes>>;

/// A client pooled like the API server's (Go's http.Transport with client-go's defaults).
fn api_server_like_client(ca: &rcgen::Certificate, endpoint: Endpoint, http2: bool) -> Pooled {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new_with_resolver(endpoint);
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only();
    // ALPN offers only what the client speaks: http/1.1 as the API server, or h2.
    let https = if http2 {
        https.enable_http2().wrap_connector(http)
    } else {
        https.enable_http1().wrap_connector(http)
    };
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        // MaxIdleConnsPerHost and IdleConnTimeout of client-go's transport.
        .pool_max_idle_per_host(25)
        .pool_idle_timeout(Duration::from_secs(90))
        // Go retries a request on a reused connection only when none of its bytes were written;
        // hyper-util's "canceled" requests are the same case.
        .retry_canceled_requests(true)
        .http2_only(http2)
        .build(https)
}

fn review(seq: u64) -> Bytes {
    Bytes::from(
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": format!("load-{seq}"),
                "kind": {"group": "core.spinkube.dev", "version": "v1alpha1", "kind": "SpinApp"},
                "resource": {"group": "core.spinkube.dev", "version": "v1alpha1", "resource": "spinapps"},
                "name": format!("app-{seq}"), "namespace": "apps", "operation": "CREATE",
                "userInfo": {"username": "alice"},
                "object": {
                    "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
                    "metadata": {"name": format!("app-{seq}"), "namespace": "apps"},
                    "spec": {"image": "ghcr.io/example/web:v1", "executor": "containerd-shim-spin", "replicas": 1},
                },
            },
        }))
        .unwrap(),
    )
}

/// One admission: `Err` with the client's error chain, or what was wrong with the answer.
async fn admit(client: &Pooled, seq: u64) -> Result<(), String> {
    let req = hyper::Request::post(format!("https://{HOST}{MUTATE}"))
        .header("content-type", "application/json")
        .body(Full::new(review(seq)))
        .unwrap();
    let resp = client.request(req).await.map_err(|e| {
        let mut chain = format!("{e}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            chain.push_str(&format!(": {s}"));
            source = s.source();
        }
        chain
    })?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e}"))?
        .to_bytes();
    let body: Value = serde_json::from_slice(&body).map_err(|e| format!("{status}: {e}"))?;
    if status != 200 || body["response"]["uid"] != format!("load-{seq}") {
        return Err(format!("{status}: {body}"));
    }
    Ok(())
}

/// A `spin-operator run` process serving admissions (no controllers), its output collected.
struct Replica {
    child: Child,
    webhook_port: u16,
    health_port: u16,
    stdout: JoinHandle<String>,
}

impl Replica {
    fn start(cert_dir: &std::path::Path, kubeconfig: &std::path::Path, lame_duck: u64) -> Self {
        let webhook_port = free_port();
        let health_port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_spin-operator"))
            .args([
                "run",
                "--webhook-addr",
                &format!("127.0.0.1:{webhook_port}"),
                "--health-addr",
                &format!("127.0.0.1:{health_port}"),
                "--cert-dir",
                cert_dir.to_str().unwrap(),
                "--disable-controllers",
                &format!("--shutdown-lame-duck-seconds={lame_duck}"),
                "--shutdown-drain-seconds=10",
            ])
            .env("KUBECONFIG", kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // Read as it comes: one audit line per admission would fill the pipe and block it.
        let mut out = child.stdout.take().unwrap();
        let stdout = tokio::spawn(async move {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text).await;
            text
        });
        Self {
            child,
            webhook_port,
            health_port,
            stdout,
        }
    }

    async fn wait_ready(&mut self) {
        let readyz = format!("http://127.0.0.1:{}/readyz", self.health_port);
        for _ in 0..600 {
            if let Ok(resp) = reqwest::get(&readyz).await
                && resp.status() == 200
            {
                return;
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "replica exited before it was ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("replica never ready");
    }

    fn sigterm(&self) {
        let pid = self.child.id().unwrap().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
    }

    /// Sequence numbers of the reviews this replica decided (its audit lines), once it exited.
    async fn decided(self) -> Vec<u64> {
        let Self {
            mut child, stdout, ..
        } = self;
        let _ = child.kill().await;
        let out = stdout.await.unwrap();
        out.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["message"] == "admission decision")
            .filter_map(|l| l["uid"].as_str()?.strip_prefix("load-")?.parse().ok())
            .collect()
    }
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    next: AtomicU64,
    ok: AtomicU64,
    failed: std::sync::Mutex<Vec<(u64, String)>>,
    stop: AtomicBool,
}

async fn wait_for(what: &str, done: impl Fn() -> bool) {
    for _ in 0..2_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never: {what}");
}

async fn replica_stops_under_load(http2: bool) {
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = api.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(api, fake_api(Calls::default())).await });
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(HOST);
    std::fs::write(dir.path().join("tls.crt"), &pki.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &pki.key_pem).unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{api_addr}\n\
             users:\n- name: u\n  user:\n    token: not-a-real-token\ncontexts:\n- name: c\n  context:\n    \
             cluster: fake\n    user: u\n    namespace: default\ncurrent-context: c\n"
        ),
    )
    .unwrap();

    let mut old = Replica::start(dir.path(), &kubeconfig, 1);
    let mut new = Replica::start(dir.path(), &kubeconfig, 1);
    old.wait_ready().await;
    new.wait_ready().await;

    let endpoint = Endpoint(Arc::new(AtomicU16::new(old.webhook_port)));
    let client = api_server_like_client(&pki.ca, endpoint.clone(), http2);
    let tally = Arc::new(Tally::default());
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (client, tally) = (client.clone(), tally.clone());
            tokio::spawn(async move {
                while !tally.stop.load(Ordering::SeqCst) {
                    let seq = tally.next.fetch_add(1, Ordering::SeqCst);
                    match admit(&client, seq).await {
                        Ok(()) => tally.ok.fetch_add(1, Ordering::SeqCst),
                        Err(e) => {
                            tally.failed.lock().unwrap().push((seq, e));
                            0
                        }
                    };
                }
            })
        })
        .collect();

    wait_for("the old replica warmed up", || {
        tally.ok.load(Ordering::SeqCst) >= WARM_UP
    })
    .await;
    // A pod deletion: the kubelet signals the pod as the Endpoints drop it.
    let signalled_at = tally.next.load(Ordering::SeqCst);
    old.sigterm();
    endpoint.0.store(new.webhook_port, Ordering::SeqCst);
    let exited = tokio::time::timeout(Duration::from_secs(30), old.child.wait())
        .await
        .expect("the old replica exits after its lame duck and drain")
        .unwrap();
    assert!(exited.success(), "{exited}");
    let exited_at = tally.next.load(Ordering::SeqCst);
    wait_for("requests after the old replica exited", || {
        tally.ok.load(Ordering::SeqCst) >= exited_at + AFTER
    })
    .await;
    tally.stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }

    let old_decided = old.decided().await;
    let new_decided = new.decided().await;
    let failed = tally.failed.lock().unwrap();
    let ok = tally.ok.load(Ordering::SeqCst);
    eprintln!(
        "http2={http2}: {ok} admitted, {} failed; old replica decided {} ({} after SIGTERM), \
         new {}",
        failed.len(),
        old_decided.len(),
        old_decided.iter().filter(|s| **s >= signalled_at).count(),
        new_decided.len()
    );
    // The load was on the old replica's pooled connections when it was told to stop.
    // (HTTP/2 may get its GOAWAY before any further request: nothing to require there.)
    assert!(
        http2 || old_decided.iter().any(|s| *s >= signalled_at),
        "the old replica answered nothing after SIGTERM"
    );
    assert!(!new_decided.is_empty());
    assert!(
        failed.is_empty(),
        "{} of {} admissions failed, e.g. {:?}",
        failed.len(),
        failed.len() as u64 + ok,
        &failed[..failed.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_keep_alive_clients_lose_no_request_when_a_replica_stops() {
    replica_stops_under_load(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_lose_no_request_when_a_replica_stops() {
    replica_stops_under_load(true).await;
}
