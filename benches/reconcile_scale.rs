//! Reconcile scale on the in-memory API test server: N SpinApps (one executor) reconciled by the
//! real controllers (`controller::run`, no leader election) through a real `kube::Client`.
//!
//! Converged = every app has its Deployment and Service and a status written for its current
//! generation (`status.observedGeneration == metadata.generation`, `deploymentName` set). No
//! Deployment controller is played: Ready stays False (DeploymentUnavailable), which is a stable
//! state.
//!
//! Resync of the converged fleet: the operator is restarted (a new child process, as after a
//! crash, an upgrade or a leader handover): it lists everything into fresh caches and reconciles
//! every app again. The writes until it has reconciled all N apps are counted (target 0), and its
//! RSS one heap-trim interval later is the memory of N apps with all their children cached. The operator's periodic
//! resync stays at the production default (300 s) so it does not add load during convergence.
//!
//! The operator runs in a child process (this binary re-executed with `SCALE_OPERATOR_URL`), so
//! its RSS (`/proc/<pid>/status` VmRSS; VmHWM for its peak) is the operator's alone, not the in-memory API server's.
//! Idle RSS is read once its controllers have started on an empty API server; the apps are
//! created after that, while it runs (the clock starts before the first create).
//!
//! `cargo bench --bench reconcile_scale` (env: `SCALE_N`, default `1000,2000,5000,10000`;
//! `SCALE_RESYNC_SECS`, the operator's periodic resync, default 300; `SCALE_OPERATOR_WRAPPER`, a
//! command prefix for the operator process, e.g. `valgrind --tool=massif`).

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use serde_json::{Value, json};
use spin_operator::api::SpinApp;
use spin_operator::controller::{ControllerConfig, Settings};
use spin_test_apiserver::{ResourceKey, TestApiServer, Verb};

const NS: &str = "default";
const LIMIT: Duration = Duration::from_secs(600);

#[path = "support/child.rs"]
mod child;
use child::{block_on_client, peak_mib, publish, rss_mib};

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
    // Counted in place: copying every object each poll would load the API server under test.
    let deployments = server.count_where(&ResourceKey::of::<Deployment>(), Some(NS), |_| true);
    let services = server.count_where(&ResourceKey::of::<Service>(), Some(NS), |_| true);
    if deployments < n || services < n {
        return 0;
    }
    server.count_where(&ResourceKey::of::<SpinApp>(), Some(NS), |a| {
        a["status"]["observedGeneration"] == a["metadata"]["generation"]
            && a["status"]["deploymentName"].is_string()
    })
}

fn deployments(server: &TestApiServer) -> usize {
    server.count_where(&ResourceKey::of::<Deployment>(), Some(NS), |_| true)
}

struct Row {
    n: usize,
    converge_s: f64,
    requests: usize,
    writes: usize,
    restart_s: f64,
    restart_requests: usize,
    restart_reconciles: u64,
    restart_writes: usize,
    rss_idle: f64,
    rss_converged: f64,
    rss_restarted: f64,
    peak_first: f64,
    peak_restarted: f64,
}

struct Operator {
    child: std::process::Child,
    count_file: std::path::PathBuf,
}

impl Operator {
    /// Starts the operator (this binary re-executed) against `url`.
    fn start(url: &str, resync: Duration, tag: &str) -> Operator {
        let count_file =
            std::env::temp_dir().join(format!("reconcile-scale-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_file(&count_file);
        // SCALE_OPERATOR_WRAPPER (e.g. "valgrind --tool=massif") runs the operator under a
        // profiler; arguments are split on spaces.
        let wrapper = std::env::var("SCALE_OPERATOR_WRAPPER").unwrap_or_default();
        let mut argv: Vec<String> = wrapper.split_whitespace().map(String::from).collect();
        argv.push(std::env::current_exe().unwrap().display().to_string());
        let child = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .env("SCALE_OPERATOR_URL", url)
            .env("SCALE_RESYNC_SECS", resync.as_secs().to_string())
            .env("SCALE_COUNT_FILE", &count_file)
            .spawn()
            .unwrap();
        Operator { child, count_file }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Successful SpinApp reconciles so far (published by the child every 100 ms).
    fn reconciles(&self) -> u64 {
        std::fs::read_to_string(&self.count_file)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.count_file);
    }
}

async fn wait_for_watches(server: &TestApiServer, n: usize) {
    let t = Instant::now();
    while server
        .requests()
        .iter()
        .filter(|r| r.verb == Verb::Watch)
        .count()
        < n
        && t.elapsed() < LIMIT
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run(n: usize, resync: Duration) -> Row {
    let server = TestApiServer::start().await;
    server.put(json!({
        "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
        "metadata": { "name": "containerd-shim-spin", "namespace": NS },
        "spec": { "createDeployment": true,
                  "deploymentConfig": { "runtimeClassName": "wasmtime-spin-v2" } }
    }));
    let operator = Operator::start(&server.url(), resync, "first");
    // Idle: controllers started (their watches are open) on a fleet of one executor.
    wait_for_watches(&server, 2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = rss_mib(operator.pid());
    server.clear_requests();

    let start = Instant::now();
    for i in 0..n {
        server.put(app(i));
    }
    let mut report = Instant::now();
    loop {
        let done = converged(&server, n);
        if done == n {
            break;
        }
        if report.elapsed() > Duration::from_secs(10) {
            report = Instant::now();
            eprintln!(
                "N={n}: {done} converged after {:.0} s, {} requests, Deployments {}, operator RSS {:.0} MiB",
                start.elapsed().as_secs_f64(),
                server.requests().len(),
                deployments(&server),
                rss_mib(operator.pid()),
            );
        }
        assert!(start.elapsed() < LIMIT, "{n} apps did not converge");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let converge_s = start.elapsed().as_secs_f64();
    let log = server.requests();
    let requests = log.len();
    let writes = server.count_writes();
    let mut by_kind = std::collections::BTreeMap::<String, usize>::new();
    for r in &log {
        let sub = r
            .subresource
            .as_deref()
            .map_or(String::new(), |s| format!("/{s}"));
        *by_kind
            .entry(format!("{} {}{sub}", r.verb.as_str(), r.resource))
            .or_default() += 1;
    }
    eprintln!("N={n} requests by verb and resource: {by_kind:?}");
    let rss_converged = rss_mib(operator.pid());
    let peak_first = peak_mib(operator.pid());
    drop(operator);

    // Resync of the converged fleet by a fresh operator: every app reconciled again from fresh
    // caches; none may write.
    server.clear_requests();
    let restarted_at = Instant::now();
    let operator = Operator::start(&server.url(), resync, "restarted");
    while operator.reconciles() < n as u64 {
        assert!(
            restarted_at.elapsed() < LIMIT,
            "restarted operator did not reconcile {n} apps"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let restart_s = restarted_at.elapsed().as_secs_f64();
    // Let in-flight reconciles finish and any write they would make land.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restart_reconciles = operator.reconciles();
    let restart_requests = server.requests().len();
    let restart_writes = server.count_writes();
    if restart_writes > 0 {
        eprintln!("N={n} writes after restart: {:?}", server.writes());
    }
    // Steady state: after the operator's periodic heap trim has run once past the restart peak.
    tokio::time::sleep(spin_operator::controller::HEAP_TRIM_INTERVAL + Duration::from_secs(1))
        .await;
    let rss_restarted = rss_mib(operator.pid());
    let peak_restarted = peak_mib(operator.pid());
    Row {
        n,
        converge_s,
        requests,
        writes,
        restart_s,
        restart_requests,
        restart_reconciles,
        restart_writes,
        rss_idle,
        rss_converged,
        rss_restarted,
        peak_first,
        peak_restarted,
    }
}

/// The child: the real controllers against the parent's API server until killed.
fn operator(url: &str, resync: Duration) {
    block_on_client(url, NS, |client| async move {
        let mut config = ControllerConfig::new("bench", NS);
        config.leader_election = None;
        config.settings = Settings {
            resync,
            // No Deployment controller in memory: nothing to wait for.
            status_hold: Duration::ZERO,
            ..Settings::default()
        };
        // Publish the reconcile count for the parent (metrics live in this process).
        let metrics = config.metrics.clone();
        if let Ok(path) = std::env::var("SCALE_COUNT_FILE") {
            tokio::spawn(async move {
                loop {
                    let n = metrics.reconcile_count("spinapp", "success");
                    publish(&path, &n.to_string());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
        let _ = spin_operator::controller::run(client, config, std::future::pending()).await;
    });
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it:
    // then only a small smoke run (keeps the test suite fast).
    let bench = std::env::args().any(|a| a == "--bench");
    let ns: Vec<usize> = std::env::var("SCALE_N")
        .ok()
        .map(|s| s.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .unwrap_or_else(|| {
            if bench {
                vec![1000, 2000, 5000, 10000]
            } else {
                vec![20]
            }
        });
    let resync = Duration::from_secs(
        std::env::var("SCALE_RESYNC_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(300),
    );
    if let Ok(url) = std::env::var("SCALE_OPERATOR_URL") {
        operator(&url, resync);
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("# Reconcile scale (operator in a child process, periodic resync {resync:?})\n");
    println!(
        "| apps | converge s | apps/s | API requests | requests/app | writes/app | \
         restart: resync s | restart: reconciles | restart: API requests | restart: writes | \
         RSS idle MiB | RSS converged MiB | RSS restarted MiB | KiB/app (restarted) | \
         peak MiB (first) | peak MiB (restarted) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for n in ns {
        let r = rt.block_on(run(n, resync));
        println!(
            "| {} | {:.2} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.n,
            r.converge_s,
            r.n as f64 / r.converge_s,
            r.requests,
            r.requests as f64 / r.n as f64,
            r.writes as f64 / r.n as f64,
            r.restart_s,
            r.restart_reconciles,
            r.restart_requests,
            r.restart_writes,
            r.rss_idle,
            r.rss_converged,
            r.rss_restarted,
            (r.rss_restarted - r.rss_idle) * 1024.0 / r.n as f64,
            r.peak_first,
            r.peak_restarted,
        );
        if !bench {
            assert_eq!(r.restart_writes, 0, "a converged fleet wrote on resync");
        }
    }
}
