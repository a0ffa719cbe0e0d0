//! `--ca-bundle-file` and `--webhook-ca-bundle-readiness` (the cert-manager and existingSecret
//! modes) against the in-memory API server: who writes caBundle when, and readiness following
//! what the configurations carry.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use spin_operator::tls::selfsigned::{Lifetimes, generate, service_dns_names};
use spin_operator::tls::webhook_configs::{
    CA_BUNDLE_SOURCE_ANNOTATION, CaBundleSource, WebhookConfigs, WriterRole,
};
use spin_operator::tls::{CaBundleKeeper, CaBundleKeeperConfig, ReloadingResolver};
use spin_test_apiserver::TestApiServer;

const NS: &str = "spin-operator";
const SVC: &str = "spin-operator-webhook";

#[path = "support/webhook_configs.rs"]
mod support_webhook_configs;

fn put_configs(server: &TestApiServer, source: Option<&str>) {
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let name = if kind.starts_with("Mutating") {
            "spin-mutating"
        } else {
            "spin-validating"
        };
        let mut config = support_webhook_configs::webhook_config(kind, name, SVC, NS);
        if let Some(source) = source {
            config["metadata"]["annotations"] =
                serde_json::json!({(CA_BUNDLE_SOURCE_ANNOTATION): source});
        }
        server.put(config);
    }
}

fn bundles(server: &TestApiServer) -> Vec<Option<ByteString>> {
    let m: MutatingWebhookConfiguration = server.get_as(None, "spin-mutating").unwrap();
    let v: ValidatingWebhookConfiguration = server.get_as(None, "spin-validating").unwrap();
    m.webhooks
        .unwrap_or_default()
        .into_iter()
        .map(|w| w.client_config.ca_bundle)
        .chain(
            v.webhooks
                .unwrap_or_default()
                .into_iter()
                .map(|w| w.client_config.ca_bundle),
        )
        .collect()
}

/// A keeper serving a pair of a fresh CA, that CA in `dir/ca.crt` when `file` is set.
fn keeper(server: &TestApiServer, dir: &std::path::Path, file: bool) -> (CaBundleKeeper, Vec<u8>) {
    let now = jiff::Timestamp::now().as_second();
    let m = generate(
        &service_dns_names(SVC, NS, "cluster.local"),
        now,
        Lifetimes::default(),
    )
    .unwrap();
    let resolver = Arc::new(ReloadingResolver::default());
    resolver
        .offer_pem(m.cert_pem.as_bytes(), m.key_pem.as_bytes(), "test")
        .unwrap();
    let ca_file = dir.join("ca.crt");
    std::fs::write(&ca_file, &m.ca_bundle_pem).unwrap();
    let configs = WebhookConfigs::new(
        server.client(),
        Some("spin-mutating".into()),
        Some("spin-validating".into()),
    );
    let config = CaBundleKeeperConfig {
        host: format!("{SVC}.{NS}.svc"),
        source: if file {
            CaBundleSource::Secret
        } else {
            CaBundleSource::CertManager
        },
        ca_file: file.then_some(ca_file),
        poll_interval: Duration::from_secs(3),
    };
    (
        CaBundleKeeper::new(server.client(), configs, config, resolver),
        m.ca_bundle_pem.into_bytes(),
    )
}

#[tokio::test]
async fn the_ca_file_is_written_by_whoever_needs_it_and_never_over_another_source() {
    let server = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let now = jiff::Timestamp::now().as_second();

    // The chart names another writer (a switch to cert-manager rolling out): nothing written,
    // not Ready, whatever the role.
    put_configs(&server, Some("cert-manager"));
    let (mut k, ca) = keeper(&server, dir.path(), true);
    for role in [WriterRole::Leader, WriterRole::Follower] {
        let outcome = k.sync_once(role, now).await.unwrap();
        assert!(outcome.patched.is_empty() && !outcome.published);
    }
    assert_eq!(server.count_writes(), 0);

    // Ours (`secret`): a stopping replica still writes nothing; a follower it does not verify
    // writes the file into every webhook, and is then Ready.
    put_configs(&server, Some("secret"));
    let outcome = k.sync_once(WriterRole::Stopping, now).await.unwrap();
    assert!(outcome.patched.is_empty() && !outcome.published);
    let outcome = k.sync_once(WriterRole::Follower, now).await.unwrap();
    assert_eq!(outcome.patched, ["spin-mutating", "spin-validating"]);
    assert!(outcome.published && k.published_flag().load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(bundles(&server), vec![Some(ByteString(ca.clone())); 4]);

    // A file that is no CA: the pass fails with its path, readiness still follows the
    // configurations (which still verify), and nothing is written.
    std::fs::write(dir.path().join("ca.crt"), b"not pem").unwrap();
    let writes = server.count_writes();
    let err = k
        .sync_once(WriterRole::Leader, now)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("ca.crt"), "{err}");
    assert!(k.published_flag().load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(server.count_writes(), writes);
}

#[tokio::test]
async fn readiness_alone_writes_nothing_and_follows_the_injected_ca() {
    let server = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let now = jiff::Timestamp::now().as_second();
    put_configs(&server, Some("cert-manager"));
    let (mut k, ca) = keeper(&server, dir.path(), false);
    assert!(
        !k.sync_once(WriterRole::Leader, now)
            .await
            .unwrap()
            .published
    );
    // The CA injector's part.
    put_configs(&server, Some("cert-manager"));
    for name in ["spin-mutating", "spin-validating"] {
        let kind = if name == "spin-mutating" {
            "MutatingWebhookConfiguration"
        } else {
            "ValidatingWebhookConfiguration"
        };
        let mut config = support_webhook_configs::webhook_config(kind, name, SVC, NS);
        for w in config["webhooks"].as_array_mut().unwrap() {
            w["clientConfig"]["caBundle"] = serde_json::to_value(ByteString(ca.clone())).unwrap();
        }
        server.put(config);
    }
    let writes = server.count_writes();
    let outcome = k.sync_once(WriterRole::Leader, now).await.unwrap();
    assert!(outcome.published && outcome.patched.is_empty());
    assert_eq!(server.count_writes(), writes);
}

/// A writer that read the configurations before `helm upgrade` named another source (or before
/// another writer's patch) must not write from that stale view: the patch carries the version
/// it read and is refused, leaving what is there now.
#[tokio::test]
async fn a_patch_from_a_stale_read_writes_nothing() {
    let server = TestApiServer::start().await;
    put_configs(&server, Some("secret"));
    let configs = WebhookConfigs::new(
        server.client(),
        Some("spin-mutating".into()),
        Some("spin-validating".into()),
    );
    let stale = configs.observe().await.unwrap();
    // The switch's upgrade lands between the read and the write.
    put_configs(&server, Some("self-signed"));
    let patched = configs
        .patch_ca_bundles(&stale, b"the previous mode's CA")
        .await
        .unwrap();
    assert!(patched.is_empty(), "{patched:?}");
    assert_eq!(bundles(&server), vec![None; 4]);
    // A patch refused although nothing changed since the read is an error, not a quiet skip
    // (here a webhook name that no longer matches what was read: the `test` fails with 422).
    let mut wrong = configs.observe().await.unwrap();
    if let Some(webhooks) = wrong.mutating.as_mut().and_then(|c| c.webhooks.as_mut()) {
        webhooks[0].0 = "not-this-webhook".into();
    }
    let err = configs
        .patch_ca_bundles(&wrong, b"the previous mode's CA")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("422") || err.to_string().to_lowercase().contains("invalid"),
        "{err}"
    );
    // Read again, the same write goes through.
    let fresh = configs.observe().await.unwrap();
    let patched = configs
        .patch_ca_bundles(&fresh, b"the previous mode's CA")
        .await
        .unwrap();
    assert_eq!(patched, ["spin-mutating", "spin-validating"]);
}
