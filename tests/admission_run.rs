//! `spin-operator run` as a process: against a fake API server (kubeconfig over loopback HTTP)
//! it becomes ready once its caches sync, answers admissions over HTTPS, logs one JSON line per
//! decision without object contents (the review's user only as claimed, the caller
//! unauthenticated), serves metrics, and on SIGTERM turns /readyz to 503 at once while the
//! webhook still answers (the lame-duck period, ended early by a second signal), then exits
//! cleanly.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

mod admission_fake_api;
use admission_fake_api::{Calls, fake_api};

const HOST: &str = "webhook.test";
const SECRET_VALUE: &str = "s3cr3t-value-never-logged";

#[path = "support/ports.rs"]
mod ports;
use ports::free_port;

fn write_pki(dir: &std::path::Path) -> String {
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![HOST.to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
    ca.pem()
}

fn kubeconfig(api: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{api}\n\
         users:\n- name: u\n  user:\n    token: not-a-real-token\ncontexts:\n- name: c\n  context:\n    \
         cluster: fake\n    user: u\n    namespace: default\ncurrent-context: c\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_admissions_and_shuts_down_on_sigterm() {
    let calls: Calls = Arc::default();
    let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = api_listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(api_listener, fake_api(calls)).await.unwrap();
    });

    let dir = tempfile::tempdir().unwrap();
    let ca_pem = write_pki(dir.path());
    let config_path = dir.path().join("kubeconfig");
    std::fs::write(&config_path, kubeconfig(api_addr)).unwrap();
    let webhook_port = free_port();
    let health_port = free_port();

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_spin-operator"))
        .args([
            "run",
            "--webhook-addr",
            &format!("127.0.0.1:{webhook_port}"),
            "--health-addr",
            &format!("127.0.0.1:{health_port}"),
            "--cert-dir",
            dir.path().to_str().unwrap(),
            "--disable-controllers",
            // Far beyond the test: only the second signal ends it.
            "--shutdown-lame-duck-seconds=600",
        ])
        .env("KUBECONFIG", &config_path)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // Ready once the certificate is loaded and the caches have synced.
    let http = reqwest::Client::new();
    let readyz = format!("http://127.0.0.1:{health_port}/readyz");
    let mut ready = false;
    for _ in 0..600 {
        if let Ok(resp) = http.get(&readyz).send().await
            && resp.status() == 200
        {
            ready = true;
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .await
                .unwrap();
            panic!("run exited early with {status}: {err}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ready, "never became ready");

    // A new client (and so a new connection) each time.
    let new_client = || {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
            .resolve(HOST, SocketAddr::from(([127, 0, 0, 1], webhook_port)))
            .build()
            .unwrap()
    };
    let client = new_client();
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "run-uid-1",
            "kind": {"group": "core.spinkube.dev", "version": "v1alpha1", "kind": "SpinApp"},
            "resource": {"group": "core.spinkube.dev", "version": "v1alpha1", "resource": "spinapps"},
            "name": "web", "namespace": "apps", "operation": "CREATE",
            "userInfo": {"username": "alice"},
            "object": {
                "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
                "metadata": {"name": "web", "namespace": "apps"},
                "spec": {
                    "image": "ghcr.io/example/web:v1",
                    "variables": [{"name": "password", "value": SECRET_VALUE}],
                },
            },
        },
    });
    let mutate = |client: &reqwest::Client| {
        client
            .post(format!(
                "https://{HOST}:{webhook_port}/mutate-core-spinkube-dev-v1alpha1-spinapp"
            ))
            .json(&review)
            .send()
    };
    let resp = mutate(&client).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["response"]["uid"], "run-uid-1");
    assert_eq!(body["response"]["allowed"], true);
    assert!(body["response"]["patch"].is_string(), "{body}");

    let metrics = http
        .get(format!("http://127.0.0.1:{health_port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"spin_operator_admission_requests_total{webhook="mspinapp.kb.io",outcome="allowed"} 1"#
        ),
        "{metrics}"
    );
    // A pooled HTTP/1.1 keep-alive connection, as the API server's webhook client keeps: it
    // must stay usable through the lame duck (HTTP/2 connections get a GOAWAY then, and a
    // client moves to a new one).
    let keep_alive = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .resolve(HOST, SocketAddr::from(([127, 0, 0, 1], webhook_port)))
        .http1_only()
        .build()
        .unwrap();
    let resp = mutate(&keep_alive).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("connection").is_none(), "{resp:?}");
    resp.bytes().await.unwrap();

    let pid = child.id().unwrap().to_string();
    let sigterm = || {
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
    };
    sigterm();
    // Not ready as soon as the signal is handled (bounded polling: the signal is asynchronous).
    let mut not_ready = None;
    for _ in 0..200 {
        let resp = http.get(&readyz).send().await.unwrap();
        if resp.status() == 503 {
            not_ready = Some(resp.text().await.unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let not_ready = not_ready.expect("/readyz still 200 after SIGTERM");
    assert!(not_ready.contains("[-] not-shutting-down"), "{not_ready}");
    // Meanwhile the webhook answers on the kept-alive connection, telling its client to close
    // it after this response, and on a new connection.
    for (client, pooled) in [(&keep_alive, true), (&new_client(), false)] {
        let resp = mutate(client)
            .await
            .expect("webhook answers during the lame-duck period");
        assert_eq!(resp.status(), 200);
        if pooled {
            assert_eq!(resp.headers()["connection"], "close", "{resp:?}");
        }
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["response"]["allowed"], true, "{body}");
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited during the lame-duck period"
    );
    // A second signal ends the lame-duck period.
    sigterm();
    let status = child.wait().await.unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");

    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    assert!(
        !out.contains(SECRET_VALUE),
        "object contents leaked into logs"
    );
    let decision: Value = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "admission decision")
        .unwrap_or_else(|| panic!("no decision log line in:\n{out}"));
    assert_eq!(decision["uid"], "run-uid-1");
    // Anyone who reaches the port can write any userInfo: logged as claimed, never as proof.
    assert_eq!(decision["claimed_user"], "alice");
    assert_eq!(decision["caller_authenticated"], false);
    assert!(decision.get("user").is_none(), "{decision}");
    assert_eq!(decision["namespace"], "apps");
    assert_eq!(decision["name"], "web");
    assert_eq!(decision["operation"], "CREATE");
    assert_eq!(decision["webhook"], "mspinapp.kb.io");
    assert_eq!(decision["allowed"], true);
    assert_eq!(decision["patch_ops"], 2);
    assert!(
        decision["rules"].as_str().unwrap().contains("SA-"),
        "{decision}"
    );
}

/// `run` with `args` and `env`, without a cluster: fails, and its stderr is returned.
fn run_fails_before_any_api_call(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spin-operator"))
        .arg("run")
        .args(args)
        .envs(env.iter().copied())
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn run_rejects_unknown_tls_settings_by_name() {
    for (flag, name) in [
        ("--tls-min-version=VersionTLS10", "\"VersionTLS10\""),
        (
            "--tls-cipher-suites=TLS_AES_128_GCM_SHA256,TLS_RSA_WITH_RC4_128_SHA",
            "\"TLS_RSA_WITH_RC4_128_SHA\"",
        ),
    ] {
        let stderr = run_fails_before_any_api_call(&[flag], &[]);
        assert!(stderr.contains(name), "{flag}: {stderr}");
    }
}

#[test]
fn run_rejects_an_invalid_watch_namespace_from_the_environment() {
    // The variable is split on commas like the flag, and checked before any API call.
    let stderr =
        run_fails_before_any_api_call(&[], &[("SPIN_OPERATOR_WATCH_NAMESPACES", "team-a,Team_B")]);
    assert!(stderr.contains("invalid namespace \"Team_B\""), "{stderr}");
}
