//! End-to-end admission over real HTTPS: rcgen CA and serving certificate, the production
//! server and router, reqwest trusting the CA, AdmissionReview bodies shaped like the
//! apiserver's (tests/fixtures/admission), patches applied with json-patch.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use base64::Engine;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use spin_operator::admission::{
    AdmissionMetrics, AdmissionState, HttpsServer, MAX_BODY_BYTES, ServerLimits, router,
};
use spin_operator::api::{SpinApp, SpinAppExecutor};
use spin_operator::inventory::{Inventory, Lookup, Presence};
use spin_operator::rules::Options;
use spin_operator::tls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[path = "support/pki.rs"]
mod support_pki;
use support_pki::pki;

const HOST: &str = "webhook.test";
const MUTATE_APP: &str = "/mutate-core-spinkube-dev-v1alpha1-spinapp";
const VALIDATE_APP: &str = "/validate-core-spinkube-dev-v1alpha1-spinapp";
const VALIDATE_EXECUTOR: &str = "/validate-core-spinkube-dev-v1alpha1-spinappexecutor";
const MUTATE_EXECUTOR: &str = "/mutate-core-spinkube-dev-v1alpha1-spinappexecutor";

struct Server {
    addr: SocketAddr,
    client: reqwest::Client,
    ca_pem: String,
    registry: Registry,
    stop: Option<oneshot::Sender<()>>,
    done: JoinHandle<()>,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("https://{HOST}:{}{path}", self.addr.port())
    }

    fn client_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap())
            .resolve(HOST, self.addr)
    }

    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// POST a review and return its `response`, checking the envelope.
    async fn admit(&self, path: &str, review: &Value) -> Value {
        let resp = self.post(path, serde_json::to_vec(review).unwrap()).await;
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(body["kind"], "AdmissionReview");
        assert_eq!(
            body["response"]["uid"], review["request"]["uid"],
            "uid echoed"
        );
        body["response"].clone()
    }

    fn metrics(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).unwrap();
        out
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.done.await.unwrap();
    }
}

async fn start(lookup: Arc<dyn Lookup>) -> Server {
    let pki = pki(HOST);
    // The same resolver and rustls configuration `spin-operator run` serves with.
    let resolver = Arc::new(tls::ReloadingResolver::new(None));
    resolver
        .offer_pem(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes(), "test")
        .unwrap();
    let tls = Arc::new(tls::server_config(resolver).unwrap());
    let mut registry = Registry::default();
    let state = AdmissionState::new(
        lookup,
        Options::default(),
        AdmissionMetrics::register(&mut registry),
    );
    let server = HttpsServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        tls,
        router(state),
        ServerLimits::default(),
    )
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca.pem().as_bytes()).unwrap())
        .resolve(HOST, addr)
        .build()
        .unwrap();
    Server {
        addr,
        client,
        ca_pem: pki.ca.pem(),
        registry,
        stop: Some(stop),
        done,
    }
}

/// Namespace `apps`: two executors, one app using `containerd-shim-spin`.
fn inventory() -> Inventory {
    let mut inv = Inventory {
        complete: true,
        ..Default::default()
    };
    let executor = |name: &str, config: Value| -> SpinAppExecutor {
        serde_json::from_value(json!({
            "apiVersion": "core.spinkube.dev/v1alpha1",
            "kind": "SpinAppExecutor",
            "metadata": {"name": name, "namespace": "apps"},
            "spec": {"createDeployment": true, "deploymentConfig": config},
        }))
        .unwrap()
    };
    inv.add_executor(executor(
        "containerd-shim-spin",
        json!({"runtimeClassName": "wasmtime-spin-v2"}),
    ));
    inv.add_executor(executor(
        "spintainer",
        json!({"spinImage": "ghcr.io/spinframework/spin:v3.4.1"}),
    ));
    let app: SpinApp = serde_json::from_value(json!({
        "apiVersion": "core.spinkube.dev/v1alpha1",
        "kind": "SpinApp",
        "metadata": {"name": "hello", "namespace": "apps"},
        "spec": {
            "image": "ghcr.io/spinframework/containerd-shim-spin/examples/spin-rust-hello:v0.23.0",
            "executor": "containerd-shim-spin",
            "replicas": 2,
        },
    }))
    .unwrap();
    inv.add_app(app);
    inv
}

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/admission/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn patch_of(response: &Value) -> json_patch::Patch {
    assert_eq!(response["patchType"], "JSONPatch");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(
            response["patch"]
                .as_str()
                .expect("patch is a base64 string"),
        )
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}

fn causes(response: &Value) -> Vec<(String, String)> {
    response["status"]["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["field"].as_str().unwrap().to_string(),
                c["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn create_is_defaulted_and_the_patched_object_validates() {
    let server = start(Arc::new(inventory())).await;
    let review = fixture("spinapp-create.json");

    let response = server.admit(MUTATE_APP, &review).await;
    assert_eq!(response["allowed"], true);
    let mut object = review["request"]["object"].clone();
    json_patch::patch(&mut object, &patch_of(&response)).unwrap();
    assert_eq!(object["spec"]["executor"], "containerd-shim-spin");
    assert_eq!(object["spec"]["replicas"], 1);
    // Everything else is untouched.
    assert_eq!(
        object["spec"]["image"],
        review["request"]["object"]["spec"]["image"]
    );
    assert_eq!(object["metadata"], review["request"]["object"]["metadata"]);

    // Defaulting is idempotent: the patched object needs no further patch.
    let mut again = review.clone();
    again["request"]["object"] = object.clone();
    let response = server.admit(MUTATE_APP, &again).await;
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none(), "{response}");

    // The apiserver then sends the mutated object to the validating webhook.
    let response = server.admit(VALIDATE_APP, &again).await;
    assert_eq!(response["allowed"], true, "{response}");

    let metrics = server.metrics();
    assert!(
        metrics.contains(r#"spin_operator_admission_requests_total{webhook="mspinapp.kb.io",outcome="allowed"} 2"#),
        "{metrics}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn update_with_old_object_is_denied_as_invalid_with_causes() {
    let server = start(Arc::new(inventory())).await;
    let review = fixture("spinapp-update.json");
    assert!(review["request"]["oldObject"].is_object());

    let response = server.admit(VALIDATE_APP, &review).await;
    assert_eq!(response["allowed"], false, "{response}");
    let status = &response["status"];
    assert_eq!(status["code"], 422);
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(status["details"]["kind"], "SpinApp");
    assert_eq!(status["details"]["name"], "hello");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.starts_with(r#"SpinApp.core.spinkube.dev "hello" is invalid: spec.replicas: "#),
        "{message}"
    );
    assert_eq!(
        causes(&response),
        [("spec.replicas".to_string(), "FieldValueInvalid".to_string())]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn dry_run_create_reports_every_error_at_once() {
    let server = start(Arc::new(inventory())).await;
    let review = fixture("spinapp-create-dryrun.json");
    assert_eq!(review["request"]["dryRun"], true);

    let response = server.admit(VALIDATE_APP, &review).await;
    assert_eq!(response["allowed"], false);
    let fields: Vec<String> = causes(&response).into_iter().map(|(f, _)| f).collect();
    for expected in [
        "spec.image",
        "spec.executor",
        "spec.replicas",
        "spec.variables[0].name",
    ] {
        assert!(
            fields.iter().any(|f| f == expected),
            "{expected} not in {fields:?}"
        );
    }
    // The message lists every cause, as kubectl prints it.
    let message = response["status"]["message"].as_str().unwrap();
    for field in &fields {
        assert!(message.contains(field.as_str()), "{field} not in {message}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn deleting_an_executor_in_use_is_denied_and_an_unused_one_allowed() {
    let server = start(Arc::new(inventory())).await;

    let review = fixture("executor-delete-in-use.json");
    assert!(review["request"]["object"].is_null());
    let response = server.admit(VALIDATE_EXECUTOR, &review).await;
    assert_eq!(response["allowed"], false, "{response}");
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("hello"),
        "names the app using it: {message}"
    );

    let response = server
        .admit(VALIDATE_EXECUTOR, &fixture("executor-delete-unused.json"))
        .await;
    assert_eq!(response["allowed"], true, "{response}");
    server.shutdown().await;
}

#[tokio::test]
async fn legacy_executor_mutation_route_allows_without_patch() {
    let server = start(Arc::new(inventory())).await;
    let mut review = fixture("executor-delete-unused.json");
    let request = review["request"].as_object_mut().unwrap();
    request.insert("operation".into(), "CREATE".into());
    let old = request["oldObject"].clone();
    request.insert("object".into(), old);
    request.insert("oldObject".into(), Value::Null);

    let response = server.admit(MUTATE_EXECUTOR, &review).await;
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_input_is_answered_without_a_server_error() {
    let server = start(Arc::new(inventory())).await;

    // Not JSON: no uid to answer to -> plain 400.
    let resp = server.post(VALIDATE_APP, "{not json").await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("not JSON"));

    // No request -> 400.
    let resp = server
        .post(
            VALIDATE_APP,
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
        )
        .await;
    assert_eq!(resp.status(), 400);

    // Wrong kind for the path: a denial carrying the uid.
    let review = fixture("spinapp-create.json");
    let response = server.admit(VALIDATE_EXECUTOR, &review).await;
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 400);
    assert!(
        response["status"]["message"]
            .as_str()
            .unwrap()
            .contains("SpinAppExecutor")
    );

    // Envelope fields of the wrong type: a denial with the uid.
    let mut bad = review.clone();
    bad["request"]["operation"] = json!(42);
    let response = server.admit(VALIDATE_APP, &bad).await;
    assert_eq!(response["allowed"], false);

    // Oversized body.
    let big = vec![b' '; MAX_BODY_BYTES + 1];
    let resp = server.post(VALIDATE_APP, big).await;
    assert_eq!(resp.status(), 413);

    // Unknown path and wrong method.
    let resp = server
        .post(
            "/validate-apps-v1-deployment",
            serde_json::to_vec(&review).unwrap(),
        )
        .await;
    assert_eq!(resp.status(), 404);
    let resp = server
        .client
        .get(server.url(VALIDATE_APP))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);

    let metrics = server.metrics();
    assert!(
        metrics.contains(
            r#"spin_operator_admission_requests_total{webhook="vspinapp.kb.io",outcome="error"} 3"#
        ),
        "{metrics}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn http1_and_tls12_clients_are_served() {
    let server = start(Arc::new(inventory())).await;
    let client = server
        .client_builder()
        .http1_only()
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    let resp = client
        .post(server.url(MUTATE_APP))
        .body(serde_json::to_vec(&fixture("spinapp-create.json")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    server.shutdown().await;
}

/// A ClientHello the server could accept except for its version: a suite, group and signature
/// scheme rustls supports for the server's ECDSA P-256 key.
fn client_hello(version: [u8; 2]) -> Vec<u8> {
    let mut body = version.to_vec();
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x02, 0xc0, 0x2b]); // ECDHE_ECDSA_AES128_GCM_SHA256
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let extensions: &[u8] = &[
        0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17, // supported_groups: secp256r1
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // ec_point_formats: uncompressed
        0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04,
        0x03, // signature_algorithms: ecdsa_p256_sha256
    ];
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(extensions);
    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&(body.len() as u16).to_be_bytes());
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

async fn first_record(addr: SocketAddr, hello: &[u8]) -> Vec<u8> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(hello).await.unwrap();
    let mut header = [0u8; 5];
    tcp.read_exact(&mut header).await.unwrap();
    let len = u16::from_be_bytes([header[3], header[4]]) as usize;
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await.unwrap();
    [header.to_vec(), payload].concat()
}

#[tokio::test]
async fn tls_1_1_is_refused_where_tls_1_2_is_accepted() {
    let server = start(Arc::new(inventory())).await;

    // Control: the same hello as TLS 1.2 gets a ServerHello.
    let answer = first_record(server.addr, &client_hello([0x03, 0x03])).await;
    assert_eq!(answer[0], 0x16, "handshake record: {answer:?}");
    assert_eq!(answer[5], 0x02, "ServerHello: {answer:?}");

    // TLS 1.1: a fatal protocol_version alert.
    let answer = first_record(server.addr, &client_hello([0x03, 0x02])).await;
    assert_eq!(
        answer[0], 0x15,
        "alert record, not a ServerHello: {answer:?}"
    );
    assert_eq!(answer[5], 2, "fatal");
    assert_eq!(answer[6], 70, "protocol_version");
    server.shutdown().await;
}

/// Wraps an inventory; `executor_names` blocks until released, so a request can be held
/// in flight deterministically.
struct GatedLookup {
    inner: Inventory,
    entered: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl Lookup for GatedLookup {
    fn executor(&self, namespace: &str, name: &str) -> Option<SpinAppExecutor> {
        self.inner.executor(namespace, name)
    }
    fn executor_names(&self, namespace: &str) -> Vec<String> {
        let _ = self.entered.lock().unwrap().send(());
        let _ = self.release.lock().unwrap().recv();
        self.inner.executor_names(namespace)
    }
    fn apps_using_executor(&self, namespace: &str, executor: &str) -> Vec<String> {
        self.inner.apps_using_executor(namespace, executor)
    }
    fn secret(&self, namespace: &str, name: &str) -> Presence {
        self.inner.secret(namespace, name)
    }
    fn config_map(&self, namespace: &str, name: &str) -> Presence {
        self.inner.config_map(namespace, name)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_request_in_flight_and_stops_accepting() {
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let lookup = GatedLookup {
        inner: inventory(),
        entered: Mutex::new(entered_tx),
        release: Mutex::new(release_rx),
    };
    let mut server = start(Arc::new(lookup)).await;
    let review = fixture("spinapp-create.json");

    let client = server.client.clone();
    let url = server.url(MUTATE_APP);
    let body = serde_json::to_vec(&review).unwrap();
    let in_flight = tokio::spawn(async move { client.post(url).body(body).send().await });
    // Wait until the request is inside the rules.
    tokio::task::spawn_blocking(move || entered_rx.recv().unwrap())
        .await
        .unwrap();

    let _ = server.stop.take().unwrap().send(());
    // The listener closes: new connections are refused (wait for the accept loop to notice).
    loop {
        if tokio::net::TcpStream::connect(server.addr).await.is_err() {
            break;
        }
        tokio::task::yield_now().await;
    }

    release_tx.send(()).unwrap();
    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["response"]["uid"], review["request"]["uid"]);
    assert_eq!(body["response"]["allowed"], true);
    // The server task ends once the connection is drained.
    server.done.await.unwrap();
}
