//! Self-signed bootstrap against a scripted in-memory API server: one Secret even when two
//! replicas race, caBundle patched into both webhook configurations only when it differs, the
//! CA verifies the serving certificate for the Service names, renewals re-patch.
//!
//! The mock speaks just enough of the Kubernetes REST API for Secrets and webhook
//! configurations (get/create/replace with resourceVersion checks/JSON patch) behind a real
//! `kube::Client`, so the production code path is exercised end to end.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{Method, Request, Response, StatusCode};
use k8s_openapi::ByteString;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::{Value, json};
use spin_operator::tls::selfsigned::{Lifetimes, SelfSigned, SelfSignedConfig};
use spin_operator::tls::webhook_configs::{CA_BUNDLE_SOURCE_ANNOTATION, WriterRole};
use spin_operator::tls::{ReloadingResolver, cert_info};
use tokio::sync::Barrier;

const NS: &str = "spin-operator";
const SVC: &str = "spin-operator-webhook";
const HOUR: i64 = 3600;

#[derive(Debug, Clone)]
struct Record {
    method: Method,
    path: String,
    status: u16,
}

#[derive(Default)]
struct State {
    /// Objects by request path (collection path + "/" + name).
    objects: BTreeMap<String, Value>,
    rv: u64,
    records: Vec<Record>,
}

/// A barrier and how many more GETs of the Secret still go through it.
type Gate = (Arc<Barrier>, usize);

#[derive(Clone)]
struct MockApi {
    state: Arc<Mutex<State>>,
    /// When set, the next two GETs of the Secret are answered together, so both replicas have
    /// read it before either writes: the worst-case interleaving, deterministically.
    get_gate: Arc<Mutex<Option<Gate>>>,
}

fn status(code: StatusCode, reason: &str) -> (StatusCode, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "reason": reason, "message": reason, "code": code.as_u16()}),
    )
}

impl MockApi {
    fn new() -> Self {
        Self {
            state: Arc::default(),
            get_gate: Arc::default(),
        }
    }

    fn client(&self) -> kube::Client {
        let mock = self.clone();
        let svc = tower::service_fn(move |req: Request<kube::client::Body>| {
            let mock = mock.clone();
            async move { Ok::<_, std::convert::Infallible>(mock.handle(req).await) }
        });
        kube::Client::new(svc, "default")
    }

    fn secret_path() -> String {
        format!("/api/v1/namespaces/{NS}/secrets/spin-operator-webhook-cert")
    }

    fn webhook_path(kind: &str, name: &str) -> String {
        format!("/apis/admissionregistration.k8s.io/v1/{kind}/{name}")
    }

    fn put_webhook_config(&self, kind: &str, api_kind: &str, name: &str) {
        let obj = json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": api_kind,
            "metadata": {"name": name, "resourceVersion": "1"},
            "webhooks": [
                {"name": "a.spinkube.dev", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                 "clientConfig": {"service": {"name": SVC, "namespace": NS, "path": "/a"}}},
                {"name": "b.spinkube.dev", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                 "clientConfig": {"service": {"name": SVC, "namespace": NS, "path": "/b"}, "caBundle": "c3RhbGU="}}
            ]
        });
        self.state
            .lock()
            .unwrap()
            .objects
            .insert(Self::webhook_path(kind, name), obj);
    }

    fn object(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(path).cloned()
    }

    fn records(&self) -> Vec<Record> {
        self.state.lock().unwrap().records.clone()
    }

    fn clear_records(&self) {
        self.state.lock().unwrap().records.clear();
    }

    fn writes(&self) -> Vec<Record> {
        self.records()
            .into_iter()
            .filter(|r| r.method != Method::GET)
            .collect()
    }

    async fn handle(&self, req: Request<kube::client::Body>) -> Response<kube::client::Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let body = req.into_body().collect_bytes().await.unwrap_or_default();
        let (code, value) = self.apply(&method, &path, &body);
        // Answer only once both replicas have read: neither can have written in between.
        if method == Method::GET && path == Self::secret_path() {
            let gate = {
                let mut g = self.get_gate.lock().unwrap();
                let barrier = g.as_ref().map(|(b, _)| b.clone());
                if let Some((_, left)) = g.as_mut() {
                    *left -= 1;
                    if *left == 0 {
                        *g = None;
                    }
                }
                barrier
            };
            if let Some(barrier) = gate {
                barrier.wait().await;
            }
        }
        self.state.lock().unwrap().records.push(Record {
            method,
            path,
            status: code.as_u16(),
        });
        Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(kube::client::Body::from(
                serde_json::to_vec(&value).unwrap(),
            ))
            .unwrap()
    }

    fn apply(&self, method: &Method, path: &str, body: &[u8]) -> (StatusCode, Value) {
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        let rv = st.rv.to_string();
        match *method {
            Method::GET => match st.objects.get(path) {
                Some(v) => (StatusCode::OK, v.clone()),
                None => status(StatusCode::NOT_FOUND, "NotFound"),
            },
            Method::POST => {
                let mut obj: Value = serde_json::from_slice(body).unwrap();
                let name = obj["metadata"]["name"].as_str().unwrap().to_string();
                let key = format!("{path}/{name}");
                if st.objects.contains_key(&key) {
                    return status(StatusCode::CONFLICT, "AlreadyExists");
                }
                obj["metadata"]["resourceVersion"] = json!(rv);
                obj["metadata"]["uid"] = json!(format!("uid-{rv}"));
                st.objects.insert(key, obj.clone());
                (StatusCode::CREATED, obj)
            }
            Method::PUT => {
                let mut obj: Value = serde_json::from_slice(body).unwrap();
                let Some(current) = st.objects.get(path) else {
                    return status(StatusCode::NOT_FOUND, "NotFound");
                };
                if obj["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                    return status(StatusCode::CONFLICT, "Conflict");
                }
                obj["metadata"]["resourceVersion"] = json!(rv);
                st.objects.insert(path.to_string(), obj.clone());
                (StatusCode::OK, obj)
            }
            Method::PATCH => {
                let Some(mut current) = st.objects.get(path).cloned() else {
                    return status(StatusCode::NOT_FOUND, "NotFound");
                };
                let patch: json_patch::Patch = serde_json::from_slice(body).unwrap();
                if json_patch::patch(&mut current, &patch).is_err() {
                    return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid");
                }
                current["metadata"]["resourceVersion"] = json!(rv);
                st.objects.insert(path.to_string(), current.clone());
                (StatusCode::OK, current)
            }
            _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
        }
    }
}

fn lifetimes() -> Lifetimes {
    Lifetimes {
        ca: Duration::from_secs(300 * HOUR as u64),
        serving: Duration::from_secs(30 * HOUR as u64),
    }
}

fn setup() -> (MockApi, SelfSignedConfig) {
    let mock = MockApi::new();
    let mut config = SelfSignedConfig::new(SVC, NS);
    config.lifetimes = lifetimes();
    config.mutating_webhook_configuration = Some("spin-mutating".into());
    config.validating_webhook_configuration = Some("spin-validating".into());
    mock.put_webhook_config(
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        "spin-mutating",
    );
    mock.put_webhook_config(
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        "spin-validating",
    );
    (mock, config)
}

fn replica(mock: &MockApi, config: &SelfSignedConfig) -> (SelfSigned, Arc<ReloadingResolver>) {
    let resolver = Arc::new(ReloadingResolver::default());
    (
        SelfSigned::new(mock.client(), config.clone(), resolver.clone()),
        resolver,
    )
}

fn secret_field(mock: &MockApi, key: &str) -> Vec<u8> {
    let secret = mock.object(&MockApi::secret_path()).expect("secret exists");
    let b: ByteString = serde_json::from_value(secret["data"][key].clone()).unwrap();
    b.0
}

/// caBundle of every webhook in both configurations, as stored (base64 text).
fn ca_bundles(mock: &MockApi) -> Vec<Option<String>> {
    [
        "mutatingwebhookconfigurations/spin-mutating",
        "validatingwebhookconfigurations/spin-validating",
    ]
    .iter()
    .flat_map(|p| {
        let obj = mock
            .object(&format!("/apis/admissionregistration.k8s.io/v1/{p}"))
            .unwrap();
        obj["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["clientConfig"]["caBundle"].as_str().map(str::to_string))
            .collect::<Vec<_>>()
    })
    .collect()
}

fn b64(bytes: &[u8]) -> String {
    serde_json::to_value(ByteString(bytes.to_vec()))
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

/// Verify the served leaf with the CA bundle, for `name`, at `now` (unix seconds).
fn verifies(bundle_pem: &[u8], leaf: &CertificateDer<'_>, name: &str, now: i64) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut &bundle_pem[..]) {
        roots.add(ca.unwrap()).unwrap();
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    verifier
        .verify_server_cert(
            leaf,
            &[],
            &ServerName::try_from(name.to_string()).unwrap(),
            &[],
            UnixTime::since_unix_epoch(Duration::from_secs(now as u64)),
        )
        .is_ok()
}

fn served_leaf(resolver: &ReloadingResolver) -> CertificateDer<'static> {
    resolver.current().expect("serving").cert[0].clone()
}

#[tokio::test]
async fn two_replicas_starting_together_create_one_secret_and_share_one_ca() {
    let (mock, config) = setup();
    *mock.get_gate.lock().unwrap() = Some((Arc::new(Barrier::new(2)), 2));
    let (a, ra) = replica(&mock, &config);
    let (b, rb) = replica(&mock, &config);
    let now = jiff::Timestamp::now().as_second();
    // Both believe they lead (a leadership hand-over moment): the worst case for the race.
    let (sa, sb) = tokio::join!(a.sync_once(true, now), b.sync_once(true, now));
    *mock.get_gate.lock().unwrap() = None;
    let (sa, sb) = (sa.unwrap(), sb.unwrap());

    let posts: Vec<u16> = mock
        .records()
        .iter()
        .filter(|r| r.method == Method::POST)
        .map(|r| r.status)
        .collect();
    let mut sorted = posts.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![201, 409],
        "both tried, exactly one created: {posts:?}"
    );
    assert!(mock.records().iter().all(|r| !r.path.is_empty()));
    assert_eq!(u8::from(sa.created) + u8::from(sb.created), 1);
    assert!(sa.serving && sb.serving);
    assert!(ra.has_certificate() && rb.has_certificate());
    assert_eq!(
        ra.info(),
        rb.info(),
        "both replicas serve the one certificate"
    );

    let bundle = secret_field(&mock, "ca.crt");
    let leaf = served_leaf(&ra);
    let ns_names = [
        format!("{SVC}.{NS}.svc"),
        format!("{SVC}.{NS}.svc.cluster.local"),
        format!("{SVC}.{NS}"),
        SVC.to_string(),
    ];
    for name in &ns_names {
        assert!(verifies(&bundle, &leaf, name, now), "{name}");
    }
    assert!(!verifies(&bundle, &leaf, "evil.example", now));
    let served_info = cert_info(&leaf).unwrap();
    let stored_info = cert_info(
        &rustls_pemfile::certs(&mut &secret_field(&mock, "tls.crt")[..])
            .next()
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(served_info, stored_info);

    // caBundle is in every webhook of both configurations (the stale one was replaced).
    assert_eq!(ca_bundles(&mock), vec![Some(b64(&bundle)); 4]);

    // A steady-state pass writes nothing.
    mock.clear_records();
    let again = a.sync_once(true, now + HOUR).await.unwrap();
    assert_eq!(again.patched, Vec::<String>::new());
    assert!(!again.renewed && !again.created);
    assert!(mock.writes().is_empty(), "{:?}", mock.writes());
}

/// Replace the caBundle of the mutating configuration's first webhook.
fn stale_bundle(mock: &MockApi) {
    let path = MockApi::webhook_path("mutatingwebhookconfigurations", "spin-mutating");
    let mut obj = mock.object(&path).unwrap();
    obj["webhooks"][0]["clientConfig"]["caBundle"] = json!("c3RhbGU=");
    mock.state.lock().unwrap().objects.insert(path, obj);
}

#[tokio::test]
async fn followers_write_only_to_repair_what_keeps_them_from_being_called() {
    let (mock, config) = setup();
    let (leader, rl) = replica(&mock, &config);
    let (follower, rf) = replica(&mock, &config);
    let now = jiff::Timestamp::now().as_second();

    // A stopping replica writes nothing, not even a missing Secret.
    let early = follower.sync_once(WriterRole::Stopping, now).await.unwrap();
    assert!(!early.serving);
    assert!(
        !rf.has_certificate(),
        "not ready before anyone wrote the Secret"
    );
    assert!(mock.writes().is_empty());

    leader.sync_once(true, now).await.unwrap();
    assert_eq!(mock.writes().len(), 3, "leader: one create, two patches");
    // A follower that can be called writes nothing, even with its certificate due for renewal
    // (renewal is the leader's).
    mock.clear_records();
    let later = follower.sync_once(false, now + 29 * HOUR).await.unwrap();
    assert!(later.serving && later.published && !later.renewed && later.patched.is_empty());
    assert_eq!(rf.info(), rl.info());
    assert!(mock.writes().is_empty(), "{:?}", mock.writes());
    assert!(!mock.records().is_empty());

    // A caBundle that does not verify it: the follower repairs it from the Secret (its leader
    // may be a pod of another mode, mid-switch, that never will), and renews nothing.
    stale_bundle(&mock);
    mock.clear_records();
    let repaired = follower.sync_once(false, now).await.unwrap();
    assert_eq!(repaired.patched, vec!["spin-mutating".to_string()]);
    assert!(repaired.published && !repaired.renewed && !repaired.created);
    assert_eq!(mock.writes().len(), 1, "{:?}", mock.writes());
    let ca = secret_field(&mock, "ca.crt");
    assert!(
        ca_bundles(&mock)
            .iter()
            .all(|b| b.as_deref() == Some(b64(&ca).as_str()))
    );

    // Stopping: never, however stale.
    stale_bundle(&mock);
    mock.clear_records();
    let stopping = follower.sync_once(WriterRole::Stopping, now).await.unwrap();
    assert!(stopping.serving && !stopping.published && stopping.patched.is_empty());
    assert!(mock.writes().is_empty(), "{:?}", mock.writes());
}

#[tokio::test]
async fn configurations_naming_another_source_get_no_write_from_any_replica() {
    let (mock, config) = setup();
    let (leader, _) = replica(&mock, &config);
    leader
        .sync_once(true, jiff::Timestamp::now().as_second())
        .await
        .unwrap();
    let before = secret_field(&mock, "tls.crt");
    // The chart switched to cert-manager: its CA injector writes caBundle from now on.
    for (collection, name) in [
        ("mutatingwebhookconfigurations", "spin-mutating"),
        ("validatingwebhookconfigurations", "spin-validating"),
    ] {
        let path = MockApi::webhook_path(collection, name);
        let mut obj = mock.object(&path).unwrap();
        obj["metadata"]["annotations"] = json!({(CA_BUNDLE_SOURCE_ANNOTATION): "cert-manager"});
        mock.state.lock().unwrap().objects.insert(path, obj);
    }
    stale_bundle(&mock);
    mock.clear_records();
    let (follower, rf) = replica(&mock, &config);
    // Even the leader, with the certificate due for renewal and a caBundle not its own.
    let later = jiff::Timestamp::now().as_second() + 29 * HOUR;
    for (r, role) in [
        (&leader, WriterRole::Leader),
        (&follower, WriterRole::Follower),
    ] {
        let sync = r.sync_once(role, later).await.unwrap();
        assert!(sync.handed_off && !sync.renewed && sync.patched.is_empty() && !sync.published);
    }
    assert!(mock.writes().is_empty(), "{:?}", mock.writes());
    assert_eq!(secret_field(&mock, "tls.crt"), before);
    // It keeps serving what it has until its pod is replaced.
    assert!(rf.has_certificate());
}

#[tokio::test]
async fn renewal_is_picked_up_everywhere_and_ca_rotation_repatches() {
    let (mock, config) = setup();
    let (leader, rl) = replica(&mock, &config);
    let (follower, rf) = replica(&mock, &config);
    let now = jiff::Timestamp::now().as_second();
    leader.sync_once(true, now).await.unwrap();
    follower.sync_once(false, now).await.unwrap();
    let first = rl.info().unwrap();
    let first_bundle = secret_field(&mock, "ca.crt");

    // Serving cert past 2/3 of 30h: re-issued by the same CA; caBundle unchanged, no patch.
    mock.clear_records();
    let t1 = now + 21 * HOUR;
    let s = leader.sync_once(true, t1).await.unwrap();
    assert!(s.renewed && s.patched.is_empty());
    assert_eq!(secret_field(&mock, "ca.crt"), first_bundle);
    assert_eq!(
        mock.writes()
            .iter()
            .filter(|r| r.method == Method::PUT)
            .count(),
        1
    );
    follower.sync_once(false, t1).await.unwrap();
    let second = rf.info().unwrap();
    assert_ne!(second.serial, first.serial);
    assert_eq!(rl.info().unwrap(), second);
    assert_eq!(rf.generation(), 2);
    assert!(verifies(
        &first_bundle,
        &served_leaf(&rf),
        &format!("{SVC}.{NS}.svc"),
        t1
    ));

    // CA past 2/3 of 300h: new CA, old one kept in the bundle, both configurations re-patched.
    let t2 = now + 201 * HOUR;
    let s = leader.sync_once(true, t2).await.unwrap();
    assert!(s.renewed);
    assert_eq!(
        s.patched,
        vec!["spin-mutating".to_string(), "spin-validating".to_string()]
    );
    let rotated = secret_field(&mock, "ca.crt");
    assert_eq!(rustls_pemfile::certs(&mut &rotated[..]).count(), 2);
    assert!(rotated.ends_with(&first_bundle));
    assert_eq!(ca_bundles(&mock), vec![Some(b64(&rotated)); 4]);
    follower.sync_once(false, t2).await.unwrap();
    assert_eq!(rf.info(), rl.info());
    assert!(verifies(
        &rotated,
        &served_leaf(&rf),
        &format!("{SVC}.{NS}.svc.cluster.local"),
        t2
    ));

    // Someone resets a caBundle by hand: the leader puts it back, in that configuration only.
    let path = MockApi::webhook_path("validatingwebhookconfigurations", "spin-validating");
    let mut obj = mock.object(&path).unwrap();
    obj["webhooks"][1]["clientConfig"]["caBundle"] = json!("c3RhbGU=");
    mock.state.lock().unwrap().objects.insert(path, obj);
    let s = leader.sync_once(true, t2).await.unwrap();
    assert_eq!(s.patched, vec!["spin-validating".to_string()]);
    assert_eq!(ca_bundles(&mock), vec![Some(b64(&rotated)); 4]);
}

#[tokio::test]
async fn a_concurrent_renewal_loses_cleanly_and_adopts_the_winner() {
    let (mock, config) = setup();
    let (a, ra) = replica(&mock, &config);
    let (b, rb) = replica(&mock, &config);
    let now = jiff::Timestamp::now().as_second();
    a.sync_once(true, now).await.unwrap();
    b.sync_once(true, now).await.unwrap();
    mock.clear_records();
    *mock.get_gate.lock().unwrap() = Some((Arc::new(Barrier::new(2)), 2));
    let t = now + 25 * HOUR;
    let (sa, sb) = tokio::join!(a.sync_once(true, t), b.sync_once(true, t));
    let (sa, sb) = (sa.unwrap(), sb.unwrap());
    let puts: Vec<u16> = mock
        .records()
        .iter()
        .filter(|r| r.method == Method::PUT)
        .map(|r| r.status)
        .collect();
    let mut sorted = puts.clone();
    sorted.sort();
    assert_eq!(sorted, vec![200, 409], "{puts:?}");
    assert_eq!(u8::from(sa.renewed) + u8::from(sb.renewed), 1);
    assert_eq!(ra.info(), rb.info());
    let stored = secret_field(&mock, "tls.crt");
    let stored_info = cert_info(
        &rustls_pemfile::certs(&mut &stored[..])
            .next()
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(ra.info().unwrap(), stored_info);
}
