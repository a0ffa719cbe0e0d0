//! Reconcile scale on the in-memory API test server: N SpinApps (one executor) reconciled by the
//! real controllers (`controller::run`, no leader election) through a real `kube::Client`.
//!
//! Converged = every app has its Deployment and Service and a status written for its current
//! generation (`status.observedGeneration == metadata.generation`, `deploymentName` set). No
//! Deployment controller is played: Ready stays False (DeploymentUnavailable), which is a stable
//! state. After convergence one resync period is waited and the writes in it are counted.
//!
//! `cargo bench --bench reconcile_scale` (env: `SCALE_N`, default `1000,2000`; `SCALE_RESYNC_SECS`,
//! default 5). RSS is the whole process's (it includes the in-memory API server's copies of every
//! object), so it is an upper bound of the operator's own memory.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use serde_json::{Value, json};
use spin_operator::api::SpinApp;
use spin_operator::controller::{ControllerConfig, Metrics, Settings};
use spin_test_apiserver::{ResourceKey, TestApiServer};

const NS: &str = "default";
const LIMIT: Duration = Duration::from_secs(600);

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn app(i: usize) -> Value {
    json!({
        "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
        "metadata": { "name": format!("app-{i:05}"), "namespace": NS },
        "spec": {
            "image": "ghcr.io/spinframework/containerd-shim-spin/examples/spin-rust-hello:v0.23.0",
            "executor": "containerd-shim-spin", "replicas": 2,
            "podAnnotations": { "example.com/team": "wasm" }
        }
    })
}

fn converged(server: &TestApiServer, n: usize) -> usize {
    let apps = server.list(&ResourceKey::of::<SpinApp>(), Some(NS));
    let deployments = server
        .list(&ResourceKey::of::<Deployment>(), Some(NS))
        .len();
    let services = server.list(&ResourceKey::of::<Service>(), Some(NS)).len();
    if deployments < n || services < n {
        return 0;
    }
    apps.iter()
        .filter(|a| {
            a["status"]["observedGeneration"] == a["metadata"]["generation"]
                && a["status"]["deploymentName"].is_string()
        })
        .count()
}

struct Row {
    n: usize,
    converge_s: f64,
    requests: usize,
    writes: usize,
    resync_reconciles: u64,
    resync_writes: usize,
    rss_seeded: f64,
    rss_converged: f64,
}

async fn run(n: usize, resync: Duration) -> Row {
    let server = TestApiServer::start().await;
    server.put(json!({
        "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
        "metadata": { "name": "containerd-shim-spin", "namespace": NS },
        "spec": { "createDeployment": true,
                  "deploymentConfig": { "runtimeClassName": "wasmtime-spin-v2" } }
    }));
    for i in 0..n {
        server.put(app(i));
    }
    server.clear_requests();
    let rss_seeded = rss_mib();

    let mut config = ControllerConfig::new("bench", NS);
    config.leader_election = None;
    config.settings = Settings {
        resync,
        ..Settings::default()
    };
    let metrics: Metrics = config.metrics.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let client = server.client();
    let task = tokio::spawn(async move {
        spin_operator::controller::run(client, config, async move {
            let _ = stopped.await;
        })
        .await
    });

    let start = Instant::now();
    loop {
        if converged(&server, n) == n {
            break;
        }
        assert!(start.elapsed() < LIMIT, "{n} apps did not converge");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let converge_s = start.elapsed().as_secs_f64();
    let requests = server.requests().len();
    let writes = server.count_writes();
    let rss_converged = rss_mib();

    // One resync period (plus slack for the queue to drain) of a converged fleet.
    server.clear_requests();
    let before = metrics.reconcile_count("spinapp", "success");
    tokio::time::sleep(resync + resync / 2).await;
    let resync_reconciles = metrics.reconcile_count("spinapp", "success") - before;
    let resync_writes = server.count_writes();

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    Row {
        n,
        converge_s,
        requests,
        writes,
        resync_reconciles,
        resync_writes,
        rss_seeded,
        rss_converged,
    }
}

fn main() {
    let ns: Vec<usize> = std::env::var("SCALE_N")
        .ok()
        .map(|s| s.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1000, 2000]);
    let resync = Duration::from_secs(
        std::env::var("SCALE_RESYNC_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let rss_idle = rss_mib();
    println!("# Reconcile scale (resync {resync:?}); process RSS idle: {rss_idle:.1} MiB\n");
    println!(
        "| apps | converge s | apps/s | API requests | requests/app | writes/app | \
         reconciles in resync window | writes in resync window | RSS seeded MiB | RSS converged MiB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for n in ns {
        let r = rt.block_on(run(n, resync));
        println!(
            "| {} | {:.2} | {:.0} | {} | {:.2} | {:.2} | {} | {} | {:.1} | {:.1} |",
            r.n,
            r.converge_s,
            r.n as f64 / r.converge_s,
            r.requests,
            r.requests as f64 / r.n as f64,
            r.writes as f64 / r.n as f64,
            r.resync_reconciles,
            r.resync_writes,
            r.rss_seeded,
            r.rss_converged,
        );
    }
}
