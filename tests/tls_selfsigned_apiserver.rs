//! Self-signed bootstrap against the in-memory API test server (real HTTP, real kube::Client):
//! replicas starting together end with one Secret and one CA, both webhook configurations get
//! the caBundle, the CA verifies the serving certificate for the Service names, and a CA
//! rotation re-patches.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::json;
use spin_operator::tls::ReloadingResolver;
use spin_operator::tls::selfsigned::{Lifetimes, SelfSigned, SelfSignedConfig};
use spin_operator::tls::webhook_configs::WriterRole;
use spin_test_apiserver::{RequestMatcher, ResourceKey, TestApiServer, Verb};

const NS: &str = "spin-operator";
const SVC: &str = "spin-operator-webhook";
const SECRET: &str = "spin-operator-webhook-cert";
const HOUR: i64 = 3600;

#[path = "support/webhook_configs.rs"]
mod support_webhook_configs;

fn webhook_config(kind: &str, name: &str) -> serde_json::Value {
    support_webhook_configs::webhook_config(kind, name, SVC, NS)
}

fn config() -> SelfSignedConfig {
    let mut c = SelfSignedConfig::new(SVC, NS);
    c.mutating_webhook_configuration = Some("spin-mutating".into());
    c.validating_webhook_configuration = Some("spin-validating".into());
    c.lifetimes = Lifetimes {
        ca: Duration::from_secs(300 * HOUR as u64),
        serving: Duration::from_secs(30 * HOUR as u64),
    };
    c
}

fn secret_ca(server: &TestApiServer) -> Vec<u8> {
    let s: Secret = server.get_as(Some(NS), SECRET).expect("secret");
    s.data.unwrap()["ca.crt"].0.clone()
}

/// Every webhook's caBundle in both configurations.
fn bundles(server: &TestApiServer) -> Vec<Option<ByteString>> {
    let m: MutatingWebhookConfiguration = server.get_as(None, "spin-mutating").unwrap();
    let v: ValidatingWebhookConfiguration = server.get_as(None, "spin-validating").unwrap();
    let mut out: Vec<_> = m
        .webhooks
        .unwrap()
        .into_iter()
        .map(|w| w.client_config.ca_bundle)
        .collect();
    out.extend(
        v.webhooks
            .unwrap()
            .into_iter()
            .map(|w| w.client_config.ca_bundle),
    );
    out
}

fn verifies(bundle_pem: &[u8], leaf: &CertificateDer<'_>, name: &str, now: i64) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut &bundle_pem[..]) {
        roots.add(ca.unwrap()).unwrap();
    }
    WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap()
    .verify_server_cert(
        leaf,
        &[],
        &ServerName::try_from(name.to_string()).unwrap(),
        &[],
        UnixTime::since_unix_epoch(Duration::from_secs(now as u64)),
    )
    .is_ok()
}

#[tokio::test]
async fn replicas_share_one_secret_and_ca_and_rotation_repatches() {
    let server = TestApiServer::start().await;
    server.put(webhook_config(
        "MutatingWebhookConfiguration",
        "spin-mutating",
    ));
    server.put(webhook_config(
        "ValidatingWebhookConfiguration",
        "spin-validating",
    ));
    // Hold creates back so both replicas have read "absent" before either create lands.
    server.faults().delay(
        RequestMatcher::any().verb(Verb::Create).resource("secrets"),
        Duration::from_millis(200),
    );
    server.clear_requests();

    let replicas: Vec<(SelfSigned, Arc<ReloadingResolver>)> = (0..3)
        .map(|_| {
            let r = Arc::new(ReloadingResolver::default());
            (SelfSigned::new(server.client(), config(), r.clone()), r)
        })
        .collect();
    let now = jiff::Timestamp::now().as_second();
    let results =
        futures::future::join_all(replicas.iter().map(|(s, _)| s.sync_once(true, now))).await;
    server.faults().clear();
    let results: Vec<_> = results.into_iter().map(Result::unwrap).collect();

    let creates: Vec<u16> = server
        .requests()
        .iter()
        .filter(|r| r.verb == Verb::Create && r.resource == "secrets")
        .map(|r| r.status)
        .collect();
    eprintln!("secret creates: {creates:?}");
    assert_eq!(
        creates.iter().filter(|s| **s == 201).count(),
        1,
        "{creates:?}"
    );
    assert!(
        creates.iter().all(|s| *s == 201 || *s == 409),
        "{creates:?}"
    );
    assert_eq!(results.iter().filter(|r| r.created).count(), 1);
    assert_eq!(server.list(&ResourceKey::of::<Secret>(), Some(NS)).len(), 1);

    let ca = secret_ca(&server);
    let infos: Vec<_> = replicas.iter().map(|(_, r)| r.info().unwrap()).collect();
    assert!(
        infos.windows(2).all(|w| w[0] == w[1]),
        "one certificate everywhere"
    );
    let leaf = replicas[0].1.current().unwrap().cert[0].clone();
    for name in [
        format!("{SVC}.{NS}.svc"),
        format!("{SVC}.{NS}.svc.cluster.local"),
    ] {
        assert!(verifies(&ca, &leaf, &name, now), "{name}");
    }
    assert_eq!(bundles(&server), vec![Some(ByteString(ca.clone())); 4]);

    // Steady state: no writes at all.
    server.clear_requests();
    let (leader, leader_resolver) = &replicas[0];
    leader.sync_once(true, now + HOUR).await.unwrap();
    assert_eq!(server.count_writes(), 0, "{:?}", server.writes());

    // CA rotation (past 2/3 of 300h): both configurations re-patched with new + old CA.
    let later = now + 201 * HOUR;
    let s = leader.sync_once(true, later).await.unwrap();
    assert!(s.renewed);
    assert_eq!(s.patched.len(), 2);
    let rotated = secret_ca(&server);
    assert_ne!(rotated, ca);
    assert!(rotated.ends_with(&ca));
    assert_eq!(bundles(&server), vec![Some(ByteString(rotated.clone())); 4]);
    let patches: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.verb == Verb::Patch)
        .collect();
    assert_eq!(patches.len(), 2);
    assert!(
        patches
            .iter()
            .all(|p| p.patch_type.as_deref() == Some("application/json-patch+json"))
    );
    // A follower picks up the renewed pair; the rotated bundle verifies it.
    let (follower, follower_resolver) = &replicas[1];
    follower.sync_once(false, later).await.unwrap();
    assert_eq!(follower_resolver.info(), leader_resolver.info());
    let leaf = follower_resolver.current().unwrap().cert[0].clone();
    assert!(verifies(&rotated, &leaf, &format!("{SVC}.{NS}.svc"), later));
}

#[tokio::test]
async fn run_loop_serves_once_the_leader_has_written_and_follows_leadership() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let server = TestApiServer::start().await;
    server.put(webhook_config(
        "MutatingWebhookConfiguration",
        "spin-mutating",
    ));
    server.put(webhook_config(
        "ValidatingWebhookConfiguration",
        "spin-validating",
    ));
    let mut cfg = config();
    cfg.poll_interval = Duration::from_millis(20);

    let leading = Arc::new(AtomicBool::new(false));
    let resolver = Arc::new(ReloadingResolver::default());
    let flag = leading.clone();
    // Stopping until the flag is set (a follower would repair the missing Secret itself).
    let task = tokio::spawn(SelfSigned::new(server.client(), cfg, resolver.clone()).run(
        move || {
            if flag.load(Ordering::Relaxed) {
                WriterRole::Leader
            } else {
                WriterRole::Stopping
            }
        },
    ));
    // Not writing: several passes read the (absent) Secret and write nothing.
    let reads = || {
        server
            .requests()
            .iter()
            .filter(|r| r.verb == Verb::Get && r.resource == "secrets")
            .count()
    };
    assert!(spin_test_apiserver::wait_for(|| reads() >= 3, Duration::from_secs(20)).await);
    assert_eq!(server.count_writes(), 0);
    assert!(!resolver.has_certificate());

    leading.store(true, Ordering::Relaxed);
    assert!(
        spin_test_apiserver::wait_for(|| resolver.has_certificate(), Duration::from_secs(20)).await
    );
    let ca = secret_ca(&server);
    assert!(
        spin_test_apiserver::wait_for(
            || bundles(&server) == vec![Some(ByteString(ca.clone())); 4],
            Duration::from_secs(20)
        )
        .await
    );
    task.abort();
}

/// The leaf a resolver serves.
fn served(resolver: &ReloadingResolver) -> Option<CertificateDer<'static>> {
    resolver.current().map(|k| k.cert[0].clone())
}

/// The fallback resync is an hour, so everything here is seen through the watches alone (the
/// old loop re-read the Secret every 10 s; with an hour it would see none of these in time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_loop_acts_on_changes_by_others_without_waiting_for_the_resync() {
    const WAIT: Duration = Duration::from_secs(60);
    let server = TestApiServer::start().await;
    server.put(webhook_config(
        "MutatingWebhookConfiguration",
        "spin-mutating",
    ));
    server.put(webhook_config(
        "ValidatingWebhookConfiguration",
        "spin-validating",
    ));
    let mut cfg = config();
    cfg.poll_interval = Duration::from_secs(3600);
    let leader_resolver = Arc::new(ReloadingResolver::default());
    let follower_resolver = Arc::new(ReloadingResolver::default());
    let leader = tokio::spawn(
        SelfSigned::new(server.client(), cfg.clone(), leader_resolver.clone()).run(|| true),
    );
    let follower = tokio::spawn(
        SelfSigned::new(server.client(), cfg.clone(), follower_resolver.clone()).run(|| false),
    );
    let serves = |ca: &[u8]| {
        let now = jiff::Timestamp::now().as_second();
        [&leader_resolver, &follower_resolver].iter().all(|r| {
            served(r).is_some_and(|leaf| verifies(ca, &leaf, &format!("{SVC}.{NS}.svc"), now))
        })
    };
    let current_ca = || {
        server
            .get_as::<Secret>(Some(NS), SECRET)
            .and_then(|s| s.data)
            .and_then(|d| d.get("ca.crt").map(|b| b.0.clone()))
    };

    // Start-up: the follower's first pass may precede the leader's create; the Secret's watch
    // brings it the certificate.
    assert!(spin_test_apiserver::wait_for(|| current_ca().is_some(), WAIT).await);
    let first = secret_ca(&server);
    assert!(spin_test_apiserver::wait_for(|| serves(&first), WAIT).await);
    assert!(
        spin_test_apiserver::wait_for(
            || bundles(&server) == vec![Some(ByteString(first.clone())); 4],
            WAIT
        )
        .await
    );

    // Someone else rotates the Secret: both replicas serve the new pair, the leader re-patches.
    let now = jiff::Timestamp::now().as_second();
    let other =
        spin_operator::tls::selfsigned::generate(&cfg.dns_names(), now, cfg.lifetimes).unwrap();
    let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
    server.put(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": SECRET, "namespace": NS},
        "data": {"ca.crt": b64(&other.ca_bundle_pem), "ca.key": b64(&other.ca_key_pem),
                 "tls.crt": b64(&other.cert_pem), "tls.key": b64(&other.key_pem)}
    }));
    let rotated = other.ca_bundle_pem.into_bytes();
    assert_ne!(rotated, first);
    assert!(
        spin_test_apiserver::wait_for(|| serves(&rotated), WAIT).await,
        "the rotated pair is served"
    );
    // The CA it replaced stays beside it for the carry-over time (pods may still serve its pairs).
    let carried = |cas: &[&[u8]]| vec![Some(ByteString(cas.concat())); 4];
    assert!(
        spin_test_apiserver::wait_for(|| bundles(&server) == carried(&[&rotated, &first]), WAIT)
            .await
    );

    // Someone deletes the Secret: the leader issues a new CA at once, everyone serves it.
    server
        .delete(&ResourceKey::of::<Secret>(), Some(NS), SECRET)
        .unwrap();
    assert!(
        spin_test_apiserver::wait_for(|| current_ca().is_some_and(|ca| ca != rotated), WAIT).await,
        "the leader recreates the Secret"
    );
    let recreated = secret_ca(&server);
    assert!(spin_test_apiserver::wait_for(|| serves(&recreated), WAIT).await);

    // A `helm upgrade` resets a configuration's caBundle: the leader restores it.
    let expected = carried(&[&recreated, &rotated, &first]);
    assert!(spin_test_apiserver::wait_for(|| bundles(&server) == expected, WAIT).await);
    server.put(webhook_config(
        "MutatingWebhookConfiguration",
        "spin-mutating",
    ));
    assert!(bundles(&server).contains(&None), "the reset took effect");
    assert!(
        spin_test_apiserver::wait_for(|| bundles(&server) == expected, WAIT).await,
        "caBundle restored"
    );
    leader.abort();
    follower.abort();
}
