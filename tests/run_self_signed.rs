//! `spin-operator run --self-signed` as a process against the in-memory API server: it is not
//! Ready until both webhook configurations carry a caBundle that verifies the certificate it
//! serves (so `helm install --wait` returns only once the API server can call the webhooks),
//! and from SIGTERM on it writes neither caBundle nor Secret, while it still serves through its
//! lame-duck period (an old pod must not restore its CA into its successors' configurations).

use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use serde_json::json;
use spin_operator::tls::selfsigned::ca_bundle_verifies;
use spin_test_apiserver::{RequestMatcher, TestApiServer};
use tokio::io::AsyncReadExt;
use tokio::process::Child;

const NS: &str = "spin-operator";
const SVC: &str = "spin-operator-webhook";
const SECRET: &str = "spin-operator-webhook-cert";
const MUTATING: &str = "spin-mutating";
const VALIDATING: &str = "spin-validating";

#[path = "support/ports.rs"]
mod ports;
use ports::free_port;

#[path = "support/webhook_configs.rs"]
mod support_webhook_configs;

fn webhook_config(kind: &str, name: &str) -> serde_json::Value {
    support_webhook_configs::webhook_config(kind, name, SVC, NS)
}

fn put_configs(server: &TestApiServer) {
    server.put(webhook_config("MutatingWebhookConfiguration", MUTATING));
    server.put(webhook_config("ValidatingWebhookConfiguration", VALIDATING));
}

fn bundles(server: &TestApiServer) -> Vec<Option<Vec<u8>>> {
    let m: MutatingWebhookConfiguration = server.get_as(None, MUTATING).unwrap();
    let v: ValidatingWebhookConfiguration = server.get_as(None, VALIDATING).unwrap();
    let m = m.webhooks.unwrap().into_iter().map(|w| w.client_config);
    let v = v.webhooks.unwrap().into_iter().map(|w| w.client_config);
    m.chain(v).map(|c| c.ca_bundle.map(|b| b.0)).collect()
}

async fn readyz(port: u16) -> (u16, String) {
    let resp = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .expect("health server answers");
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Polls /readyz (bounded) until `want` holds; fails with the last body and the operator's log.
async fn wait_readyz(child: &mut Child, port: u16, what: &str, want: impl Fn(u16, &str) -> bool) {
    let mut last = String::new();
    for _ in 0..600 {
        if let Ok(resp) = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await {
            let status = resp.status().as_u16();
            last = resp.text().await.unwrap_or_default();
            if want(status, &last) {
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err).await;
            panic!("run exited early with {status}: {err}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: /readyz never got there; last answer:\n{last}");
}

fn sigterm(child: &Child) {
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_once_the_ca_bundle_verifies_and_no_writes_once_terminating() {
    let server = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: {}\n\
             users:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: c\n  context:\n    \
             cluster: t\n    user: u\ncurrent-context: c\n",
            server.url()
        ),
    )
    .unwrap();
    let health_port = free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_spin-operator"))
        .args([
            "run",
            &format!("--webhook-addr=127.0.0.1:{}", free_port()),
            &format!("--health-addr=127.0.0.1:{health_port}"),
            "--disable-controllers",
            // The one replica writes (no Lease): before the fix it kept writing until it exited.
            "--no-leader-election",
            "--self-signed",
            &format!("--namespace={NS}"),
            &format!("--webhook-service={SVC}"),
            &format!("--webhook-secret={SECRET}"),
            &format!("--mutating-webhook-configuration={MUTATING}"),
            &format!("--validating-webhook-configuration={VALIDATING}"),
            "--log-format=text",
            // Far beyond the test: the process stays in its lame-duck period until killed.
            "--shutdown-lame-duck-seconds=600",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("POD_NAMESPACE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // Certificate issued and served, caches synced, but no configuration to carry the CA yet:
    // the API server could not call this replica, so it is not Ready.
    wait_readyz(&mut child, health_port, "certificate served", |_, body| {
        body.contains("[+] webhook-certificate") && body.contains("[+] webhook-caches")
    })
    .await;
    let (status, body) = readyz(health_port).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("[-] webhook-ca-bundle"), "{body}");

    // The chart's configurations arrive (as with `helm install`): patched, then Ready.
    put_configs(&server);
    wait_readyz(&mut child, health_port, "Ready", |status, _| status == 200).await;
    let secret: Secret = server.get_as(Some(NS), SECRET).unwrap();
    let data = secret.data.unwrap();
    let now = jiff::Timestamp::now().as_second();
    let host = format!("{SVC}.{NS}.svc");
    for bundle in bundles(&server) {
        let bundle = bundle.expect("caBundle patched before Ready");
        assert!(ca_bundle_verifies(&bundle, &data["tls.crt"].0, &host, now));
    }

    // Someone else's CA (another install's, or a previous mode's): ours is put back at once, and
    // theirs stays beside it for the carry-over time (pods it signed for may still serve).
    let other_ca = rcgen::generate_simple_self_signed(vec!["other".to_string()])
        .unwrap()
        .cert
        .pem();
    let mut foreign = webhook_config("ValidatingWebhookConfiguration", VALIDATING);
    for w in foreign["webhooks"].as_array_mut().unwrap() {
        w["clientConfig"]["caBundle"] = json!(base64_encode(other_ca.as_bytes()));
    }
    server.put(foreign);
    let restored = spin_test_apiserver::wait_for(
        || {
            bundles(&server).iter().all(|b| {
                b.as_deref() == Some(&[&data["ca.crt"].0[..], other_ca.as_bytes()].concat()[..])
            })
        },
        Duration::from_secs(30),
    )
    .await;
    assert!(restored, "caBundle not restored: {:?}", bundles(&server));
    wait_readyz(&mut child, health_port, "Ready again", |status, _| {
        status == 200
    })
    .await;

    // SIGTERM: not ready at once; from then on no write, whatever changes.
    sigterm(&child);
    wait_readyz(
        &mut child,
        health_port,
        "not ready after SIGTERM",
        |status, body| status == 503 && body.contains("[-] not-shutting-down"),
    )
    .await;
    let mark = server.mark();
    put_configs(&server);
    server
        .delete(
            &spin_test_apiserver::ResourceKey::of::<Secret>(),
            Some(NS),
            SECRET,
        )
        .unwrap();
    // The replica reacts to watch events within milliseconds (it restored the foreign CA
    // above that way); 3 s of silence is far beyond that.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes: Vec<_> = server
        .requests_matching(&RequestMatcher::writes())
        .into_iter()
        .filter(|r| r.arrival_seq > mark)
        .map(|r| format!("{} {} {:?}", r.method, r.resource, r.name))
        .collect();
    assert_eq!(
        writes,
        Vec::<String>::new(),
        "writes during the lame-duck period"
    );
    assert!(bundles(&server).iter().all(Option::is_none));
    assert!(server.get_as::<Secret>(Some(NS), SECRET).is_none());
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited during the lame-duck period"
    );
    sigterm(&child);
    let status = child.wait().await.unwrap();
    assert!(status.success(), "exit status: {status}");
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
