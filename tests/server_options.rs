//! The TLS settings of `spin-operator run`: `--tls-min-version` refuses older clients, and
//! `--client-ca-file` serves only clients whose certificate chains to the CA, following the
//! file when it changes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use serde_json::json;
use spin_operator::admission::{
    AdmissionMetrics, AdmissionState, HttpsServer, ServerLimits, router,
};
use spin_operator::inventory::Inventory;
use spin_operator::rules::Options;
use spin_operator::tls::{self, ReloadingClientVerifier, TlsOptions};

#[path = "support/pki.rs"]
mod support_pki;
use support_pki::{Pki, pki};

const HOST: &str = "webhook.test";
const WAIT: Duration = Duration::from_secs(10);

fn admission_router() -> axum::Router {
    let state = AdmissionState::new(
        Arc::new(Inventory {
            complete: true,
            ..Default::default()
        }),
        Options::default(),
        AdmissionMetrics::register(&mut Registry::default()),
    );
    router(state)
}

async fn start_tls(pki: &Pki, options: &TlsOptions) -> SocketAddr {
    let resolver = Arc::new(tls::ReloadingResolver::new(None));
    resolver
        .offer_pem(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes(), "test")
        .unwrap();
    let config = Arc::new(tls::server_config_with(resolver, options).unwrap());
    let server = HttpsServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        config,
        admission_router(),
        ServerLimits::default(),
    )
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(std::future::pending()));
    addr
}

/// A delete review: answered (allowed) by the validating route without any cluster state.
fn review() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"group": "core.spinkube.dev", "version": "v1alpha1", "kind": "SpinApp"},
            "resource": {"group": "core.spinkube.dev", "version": "v1alpha1", "resource": "spinapps"},
            "name": "web", "namespace": "apps", "operation": "DELETE",
            "userInfo": {"username": "alice"}
        }
    }))
    .unwrap()
}

async fn admitted(client: &reqwest::Client, addr: SocketAddr) -> Result<(), reqwest::Error> {
    let resp = client
        .post(format!(
            "https://{HOST}:{}/validate-core-spinkube-dev-v1alpha1-spinapp",
            addr.port()
        ))
        .header("content-type", "application/json")
        .body(review())
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    Ok(())
}

fn client(pki: &Pki, addr: SocketAddr) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_der(pki.ca.der()).unwrap())
        .resolve(HOST, addr)
        .timeout(WAIT)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minimum_tls_version_refuses_older_clients() {
    let pki = pki(HOST);
    let tls12_client = |addr| {
        client(&pki, addr)
            .max_tls_version(reqwest::tls::Version::TLS_1_2)
            .build()
            .unwrap()
    };
    let default = start_tls(&pki, &TlsOptions::default()).await;
    admitted(&tls12_client(default), default).await.unwrap();
    let tls13 = start_tls(&pki, &TlsOptions::parse("VersionTLS13", &[]).unwrap()).await;
    assert!(admitted(&tls12_client(tls13), tls13).await.is_err());
    admitted(&client(&pki, tls13).build().unwrap(), tls13)
        .await
        .unwrap();
}

struct ClientCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn client_ca() -> ClientCa {
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    ClientCa {
        pem,
        issuer: Issuer::new(params, key),
    }
}

/// A client certificate (ExtKeyUsage clientAuth) issued by `ca`, as a reqwest identity.
fn identity(ca: &ClientCa) -> reqwest::Identity {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["kube-apiserver".to_string()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    reqwest::Identity::from_pem(format!("{}{}", cert.pem(), key.serialize_pem()).as_bytes())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_clients_it_signed_are_served_and_it_follows_the_file() {
    let pki = pki(HOST);
    let (first, second) = (client_ca(), client_ca());
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("client-ca.crt");
    std::fs::write(&ca_file, &first.pem).unwrap();
    let verifier = Arc::new(ReloadingClientVerifier::load(ca_file.clone()).unwrap());
    let options = TlsOptions {
        client_verifier: Some(verifier.clone()),
        ..TlsOptions::default()
    };
    let addr = start_tls(&pki, &options).await;
    let with = |ca: &ClientCa| client(&pki, addr).identity(identity(ca)).build().unwrap();

    admitted(&with(&first), addr).await.unwrap();
    let anonymous = client(&pki, addr).build().unwrap();
    assert!(
        admitted(&anonymous, addr).await.is_err(),
        "no certificate served"
    );
    assert!(
        admitted(&with(&second), addr).await.is_err(),
        "foreign CA served"
    );

    // The file changes: the next handshakes verify against the new CA.
    std::fs::write(&ca_file, &second.pem).unwrap();
    assert!(verifier.reload().unwrap());
    admitted(&with(&second), addr).await.unwrap();
    assert!(
        admitted(&with(&first), addr).await.is_err(),
        "old CA still served"
    );
    // A broken file is refused and the last good CA stays.
    std::fs::write(&ca_file, "not a certificate").unwrap();
    let err = verifier.reload().unwrap_err().to_string();
    assert!(err.contains("no CA certificate found"), "{err}");
    admitted(&with(&second), addr).await.unwrap();
}
