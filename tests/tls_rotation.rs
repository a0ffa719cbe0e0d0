//! Certificate rotation under load through a kubelet-style `..data` symlink swap, and refusal of
//! a mismatched pair, against a real HTTPS server using the reloading resolver.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::routing::post;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use spin_operator::tls::{
    CertInfo, ReloadingResolver, TlsMetrics, cert_info, reload_from_dir, server_config,
    spawn_cert_dir_reloader,
};

#[path = "support/logs.rs"]
mod support_logs;
use support_logs::Logs;

const HOST: &str = "localhost";

/// A test CA that signs every rotated leaf, so clients trust all of them while each rotation
/// still changes serial and key.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    der: CertificateDer<'static>,
}

impl TestCa {
    fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// (cert PEM, key PEM, info) of a fresh leaf for `localhost`.
    fn leaf(&self) -> (String, String, CertInfo) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![HOST.to_string()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        let info = cert_info(cert.der()).unwrap();
        (cert.pem(), key.serialize_pem(), info)
    }
}

/// A directory laid out like a kubelet Secret volume.
struct SecretVolume {
    root: PathBuf,
    version: u32,
}

impl SecretVolume {
    fn new(root: &Path, cert: &str, key: &str) -> Self {
        let mut v = Self {
            root: root.to_path_buf(),
            version: 0,
        };
        v.swap(cert, key);
        std::os::unix::fs::symlink("..data/tls.crt", root.join("tls.crt")).unwrap();
        std::os::unix::fs::symlink("..data/tls.key", root.join("tls.key")).unwrap();
        v
    }

    /// Write a new timestamped directory, point a fresh symlink at it and rename it over
    /// `..data`: one atomic step, exactly what kubelet's AtomicWriter does.
    fn swap(&mut self, cert: &str, key: &str) {
        self.version += 1;
        let dir = format!("..2026_11_26_15_00_{:02}.{}", self.version, self.version);
        std::fs::create_dir(self.root.join(&dir)).unwrap();
        std::fs::write(self.root.join(&dir).join("tls.crt"), cert).unwrap();
        std::fs::write(self.root.join(&dir).join("tls.key"), key).unwrap();
        let tmp = self.root.join("..data_tmp");
        std::os::unix::fs::symlink(&dir, &tmp).unwrap();
        std::fs::rename(&tmp, self.root.join("..data")).unwrap();
    }
}

async fn admit(Json(review): Json<Value>) -> Json<Value> {
    let uid = review["request"]["uid"].clone();
    Json(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": true}
    }))
}

async fn serve(resolver: Arc<ReloadingResolver>) -> (SocketAddr, axum_server::Handle) {
    let config = Arc::new(server_config(resolver).unwrap());
    let app = axum::Router::new().route("/validate", post(admit));
    let handle = axum_server::Handle::new();
    let server = axum_server::bind_rustls(
        "127.0.0.1:0".parse().unwrap(),
        axum_server::tls_rustls::RustlsConfig::from_config(config),
    )
    .handle(handle.clone());
    tokio::spawn(async move { server.serve(app.into_make_service()).await });
    let addr = handle.listening().await.unwrap();
    (addr, handle)
}

/// Handshake directly and describe the certificate the server presents.
async fn presented(addr: SocketAddr, ca: &CertificateDer<'static>) -> CertInfo {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(HOST).unwrap(), tcp)
        .await
        .unwrap();
    let (_, conn) = tls.get_ref();
    cert_info(&conn.peer_certificates().unwrap()[0]).unwrap()
}

fn client(addr: SocketAddr, ca_pem: &str, keep_alive: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .resolve(HOST, addr);
    if !keep_alive {
        // No idle connection is kept, so every request is a new TCP + TLS handshake.
        b = b.pool_max_idle_per_host(0).http1_only();
    }
    b.build().unwrap()
}

#[derive(Default)]
struct Load {
    ok: AtomicU64,
    failed: AtomicU64,
    errors: Mutex<Vec<String>>,
}

async fn drive(client: reqwest::Client, url: String, load: Arc<Load>, stop: Arc<AtomicBool>) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let uid = format!("req-{n}");
        let body = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {"uid": uid, "operation": "CREATE"}
        });
        let result = async {
            let resp = client.post(&url).json(&body).send().await?;
            let status = resp.status();
            let v: Value = resp.json().await?;
            Ok::<_, reqwest::Error>((status, v))
        }
        .await;
        match result {
            Ok((s, v)) if s.is_success() && v["response"]["uid"] == uid.as_str() => {
                load.ok.fetch_add(1, Ordering::Relaxed);
            }
            other => {
                load.failed.fetch_add(1, Ordering::Relaxed);
                load.errors.lock().unwrap().push(format!("{other:?}"));
            }
        }
    }
}

/// Bounded wait (no timing assertion: the bound only turns a hang into a failure).
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("gave up waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_fails_no_request_and_new_handshakes_see_new_cert() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, mut expected) = ca.leaf();
    let mut volume = SecretVolume::new(dir.path(), &cert, &key);

    let metrics = TlsMetrics::default();
    let resolver = Arc::new(ReloadingResolver::new(Some(metrics.clone())));
    let poller = spawn_cert_dir_reloader(
        resolver.clone(),
        dir.path().to_path_buf(),
        Duration::from_millis(20),
    );
    assert!(resolver.has_certificate(), "first load is synchronous");
    let (addr, handle) = serve(resolver.clone()).await;
    assert_eq!(presented(addr, &ca.der).await, expected);

    let url = format!("https://{HOST}:{}/validate", addr.port());
    let stop = Arc::new(AtomicBool::new(false));
    let keep_alive = Arc::new(Load::default());
    let fresh = Arc::new(Load::default());
    let tasks = [
        tokio::spawn(drive(
            client(addr, &ca.pem, true),
            url.clone(),
            keep_alive.clone(),
            stop.clone(),
        )),
        tokio::spawn(drive(
            client(addr, &ca.pem, false),
            url.clone(),
            fresh.clone(),
            stop.clone(),
        )),
    ];

    for rotation in 1..=4u64 {
        // Let both clients make progress on the current certificate before swapping.
        let (k0, f0) = (
            keep_alive.ok.load(Ordering::Relaxed),
            fresh.ok.load(Ordering::Relaxed),
        );
        wait_until("requests before rotation", || {
            keep_alive.ok.load(Ordering::Relaxed) >= k0 + 5
                && fresh.ok.load(Ordering::Relaxed) >= f0 + 5
        })
        .await;
        let (cert, key, info) = ca.leaf();
        assert_ne!(info.spki_sha256, expected.spki_sha256);
        volume.swap(&cert, &key);
        wait_until("reload", || resolver.generation() > rotation).await;
        assert_eq!(resolver.generation(), rotation + 1);
        expected = info;
        let seen = presented(addr, &ca.der).await;
        assert_eq!(seen.serial, expected.serial, "rotation {rotation}");
        assert_eq!(
            seen.spki_sha256, expected.spki_sha256,
            "rotation {rotation}"
        );
    }
    let (k0, f0) = (
        keep_alive.ok.load(Ordering::Relaxed),
        fresh.ok.load(Ordering::Relaxed),
    );
    wait_until("requests after last rotation", || {
        keep_alive.ok.load(Ordering::Relaxed) >= k0 + 5
            && fresh.ok.load(Ordering::Relaxed) >= f0 + 5
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    poller.abort();
    handle.shutdown();

    let (ko, kf) = (
        keep_alive.ok.load(Ordering::Relaxed),
        keep_alive.failed.load(Ordering::Relaxed),
    );
    let (fo, ff) = (
        fresh.ok.load(Ordering::Relaxed),
        fresh.failed.load(Ordering::Relaxed),
    );
    eprintln!("keep-alive: {ko} ok / {kf} failed; new connections: {fo} ok / {ff} failed");
    assert_eq!(kf, 0, "{:?}", keep_alive.errors.lock().unwrap());
    assert_eq!(ff, 0, "{:?}", fresh.errors.lock().unwrap());
    assert_eq!(metrics.reloads("loaded"), 5);
    assert_eq!(metrics.reloads("rejected"), 0);
    assert_eq!(metrics.not_after(), expected.not_after);
}

#[tokio::test(flavor = "current_thread")]
async fn mismatched_pair_is_refused_and_old_certificate_keeps_serving() {
    // Thread-local: the reloads below run on this thread (current_thread runtime, no poller).
    let (logs, _guard) = Logs::capture();

    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert_a, key_a, info_a) = ca.leaf();
    let mut volume = SecretVolume::new(dir.path(), &cert_a, &key_a);
    let metrics = TlsMetrics::default();
    let resolver = Arc::new(ReloadingResolver::new(Some(metrics.clone())));
    reload_from_dir(&resolver, dir.path()).unwrap();
    let (addr, handle) = serve(resolver.clone()).await;

    // Certificate of B with the key of A: what a half-done rotation would look like.
    let (cert_b, key_b, info_b) = ca.leaf();
    volume.swap(&cert_b, &key_a);
    for _ in 0..5 {
        assert!(reload_from_dir(&resolver, dir.path()).is_err());
    }
    assert_eq!(resolver.generation(), 1);
    assert_eq!(
        presented(addr, &ca.der).await,
        info_a,
        "old certificate still served"
    );
    let reqs = client(addr, &ca.pem, false);
    let url = format!("https://{HOST}:{}/validate", addr.port());
    let body = json!({"request": {"uid": "x"}});
    assert!(
        reqs.post(&url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    assert_eq!(
        logs.count("serving certificate refused"),
        1,
        "logged once per change"
    );
    assert_eq!(metrics.reloads("rejected"), 1);

    // A different bad pair is a new change: logged again.
    let (_, key_c, _) = ca.leaf();
    volume.swap(&cert_b, &key_c);
    assert!(reload_from_dir(&resolver, dir.path()).is_err());
    assert_eq!(logs.count("serving certificate refused"), 2);

    // The completed rotation is then picked up.
    volume.swap(&cert_b, &key_b);
    reload_from_dir(&resolver, dir.path()).unwrap();
    assert_eq!(presented(addr, &ca.der).await, info_b);
    assert_eq!(metrics.reloads("loaded"), 2);
    handle.shutdown();
}
