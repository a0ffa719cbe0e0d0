//! Operator memory with many Secrets nobody references, on the in-memory API test server.
//!
//! The operator child runs what `spin-operator run` runs that holds memory: the controllers
//! (`controller::run`, no leader election) and the webhooks' caches
//! (`admission::cache::stores` fed by `CacheWriters::run`), in one process (this binary
//! re-executed with `SECRET_BENCH_OPERATOR_URL`), so its RSS (`/proc/<pid>/status` VmRSS; VmHWM
//! for its peak) is the operator's alone.
//!
//! The fleet: A SpinApps in `default` with one executor; every 4th app reads a Secret of its own
//! in its runtime config (`keyValueStores[].options[].valueFrom.secretKeyRef`), every 8th (offset
//! 2) a ConfigMap of its own (`llmCompute`), and those Secrets/ConfigMaps exist. The unrelated
//! Secrets: N Secrets of 10 KiB data each (random bytes, so neither the cache's LZ4 nor anything
//! else shrinks them), half in `tenant` and half in `default`, none referenced.
//!
//! A first operator converges the fleet and is stopped (not measured: it wrote every child and
//! recorded Events). Then, each measured after the operator has reconciled every app, its
//! webhook caches have synced, and one heap-trim interval (`controller::HEAP_TRIM_INTERVAL`) plus
//! a margin has passed:
//! 1. baseline: a fresh operator on the converged fleet, no unrelated Secrets;
//! 2. added while running (`SECRET_BENCH_ADD_WHILE_RUNNING=1`, the default): the N Secrets
//!    created while the baseline operator runs; measured after the settle time;
//! 3. present at start: a fresh operator with the N Secrets already there.
//!
//! Growth is against the baseline, in the same run (a ratio on the same noisy machine). The
//! operator's API requests are counted per scenario (from its start, or from the first create
//! for "added while running"), by verb and resource, metadata-only (`PartialObjectMetadata`)
//! requests apart.
//!
//! `cargo bench --bench secret_memory` (env: `SECRET_BENCH_APPS`, default 200;
//! `SECRET_BENCH_N`, default 10000; `SECRET_BENCH_BYTES`, data bytes per Secret, default 10240;
//! `SECRET_BENCH_SETTLE_SECS`, wait after ready, default the trim interval + 5;
//! `SECRET_BENCH_ADD_WHILE_RUNNING`, 0 to skip scenario 2; `SECRET_BENCH_COMPONENTS`,
//! `controllers` or `webhooks` to run only one of them in the measured operators, default
//! `all`). Without `--bench` (`cargo test
//! --all-targets`) a small, quick smoke run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};
use spin_operator::admission::cache::{self, CacheConfig};
use spin_operator::api::SpinApp;
use spin_operator::controller::{self, ControllerConfig, Settings};
use spin_operator::inventory::{Lookup, Presence};
use spin_test_apiserver::{ResourceKey, TestApiServer};

const NS: &str = "default";
const TENANT: &str = "tenant";
const LIMIT: Duration = Duration::from_secs(600);

#[path = "support/child.rs"]
mod child;
use child::{block_on_client, peak_mib, publish, rss_mib};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

fn app_name(i: usize) -> String {
    format!("app-{i:05}")
}

fn refs_secret(i: usize) -> bool {
    i.is_multiple_of(4)
}

fn refs_config_map(i: usize) -> bool {
    i % 8 == 2
}

fn app(i: usize) -> Value {
    let name = app_name(i);
    let mut spec = json!({
        "image": "ghcr.io/spinframework/containerd-shim-spin/examples/spin-rust-hello:v0.23.0",
        "executor": "containerd-shim-spin", "replicas": 2,
        "podAnnotations": { "example.com/team": "wasm" }
    });
    let mut rc = serde_json::Map::new();
    if refs_secret(i) {
        rc.insert(
            "keyValueStores".into(),
            json!([{ "name": "default", "type": "redis", "options": [
                { "name": "url", "valueFrom": { "secretKeyRef": {
                    "name": format!("{name}-creds"), "key": "redis-url" } } }
            ]}]),
        );
    }
    if refs_config_map(i) {
        rc.insert(
            "llmCompute".into(),
            json!({ "type": "remote_http", "options": [
                { "name": "url", "valueFrom": { "configMapKeyRef": {
                    "name": format!("{name}-endpoints"), "key": "llm-url" } } }
            ]}),
        );
    }
    if !rc.is_empty() {
        spec["runtimeConfig"] = Value::Object(rc);
    }
    json!({
        "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
        "metadata": { "name": name, "namespace": NS },
        "spec": spec
    })
}

/// The executor, the apps and the Secrets/ConfigMaps they reference (put directly: not in the
/// request log).
fn put_fleet(server: &TestApiServer, apps: usize) {
    server.put(json!({
        "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
        "metadata": { "name": "containerd-shim-spin", "namespace": NS },
        "spec": { "createDeployment": true,
                  "deploymentConfig": { "runtimeClassName": "wasmtime-spin-v2" } }
    }));
    for i in 0..apps {
        let name = app_name(i);
        if refs_secret(i) {
            server.put(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": { "name": format!("{name}-creds"), "namespace": NS },
                "stringData": { "redis-url": format!("redis://redis.{NS}.svc:6379/{i}") }
            }));
        }
        if refs_config_map(i) {
            server.put(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": format!("{name}-endpoints"), "namespace": NS },
                "data": { "llm-url": format!("https://llm-{i}.example.com") }
            }));
        }
        server.put(app(i));
    }
}

/// Deterministic pseudo-random bytes (xorshift64*): incompressible, repeatable.
fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn unrelated_namespace(i: usize) -> &'static str {
    if i.is_multiple_of(2) { TENANT } else { NS }
}

fn unrelated_name(i: usize) -> String {
    format!("unrelated-{i:05}")
}

/// N unrelated Secrets, `bytes` of data each: even ones in `tenant`, odd ones in `default`.
fn put_unrelated(server: &TestApiServer, n: usize, bytes: usize) {
    let b64 = base64::engine::general_purpose::STANDARD;
    for i in 0..n {
        server.put(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": { "name": unrelated_name(i), "namespace": unrelated_namespace(i),
                          "labels": { "team": format!("team-{}", i % 17) } },
            "data": { "blob": b64.encode(payload(i as u64 + 1, bytes)) }
        }));
    }
}

fn converged(server: &TestApiServer, n: usize) -> usize {
    // Counted in place: copying every object each poll would load the API server under test.
    let deployments = server.count_where(&ResourceKey::of::<Deployment>(), Some(NS), |_| true);
    if deployments < n {
        return 0;
    }
    server.count_where(&ResourceKey::of::<SpinApp>(), Some(NS), |a| {
        a["status"]["observedGeneration"] == a["metadata"]["generation"]
            && a["status"]["deploymentName"].is_string()
    })
}

/// What the measured operator child runs (`SECRET_BENCH_COMPONENTS`): both, as `spin-operator
/// run` does (the default), or one of them, to see which holds the memory.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Components {
    All,
    Controllers,
    Webhooks,
}

impl Components {
    fn from_env() -> Components {
        match std::env::var("SECRET_BENCH_COMPONENTS")
            .as_deref()
            .map(str::trim)
        {
            Ok("controllers") => Components::Controllers,
            Ok("webhooks") => Components::Webhooks,
            Ok("all" | "") | Err(_) => Components::All,
            Ok(other) => panic!("SECRET_BENCH_COMPONENTS={other}: all, controllers or webhooks"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Components::All => "all",
            Components::Controllers => "controllers",
            Components::Webhooks => "webhooks",
        }
    }

    fn controllers(self) -> bool {
        self != Components::Webhooks
    }

    fn webhooks(self) -> bool {
        self != Components::Controllers
    }
}

/// The operator child, as seen from the parent.
struct Operator {
    child: std::process::Child,
    state_file: std::path::PathBuf,
    started: Instant,
    components: Components,
}

/// What the child publishes: successful SpinApp reconciles, webhook caches synced, controller
/// caches synced, the last unrelated Secret in its webhook cache (a component not run counts
/// as synced).
#[derive(Default, Debug)]
struct ChildState {
    reconciles: u64,
    webhook_caches: bool,
    controller_caches: bool,
    marker_seen: bool,
}

impl Operator {
    fn start(url: &str, tag: &str, marker: &str, components: Components) -> Operator {
        let state_file =
            std::env::temp_dir().join(format!("secret-memory-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_file(&state_file);
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .env("SECRET_BENCH_OPERATOR_URL", url)
            .env("SECRET_BENCH_STATE_FILE", &state_file)
            .env("SECRET_BENCH_MARKER", marker)
            .env("SECRET_BENCH_COMPONENTS", components.name())
            .spawn()
            .unwrap();
        Operator {
            child,
            state_file,
            started: Instant::now(),
            components,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn state(&self) -> ChildState {
        let text = std::fs::read_to_string(&self.state_file).unwrap_or_default();
        let mut parts = text.split_whitespace();
        ChildState {
            reconciles: parts.next().and_then(|s| s.parse().ok()).unwrap_or(0),
            webhook_caches: parts.next() == Some("1"),
            controller_caches: parts.next() == Some("1"),
            marker_seen: parts.next() == Some("1"),
        }
    }

    /// Until the fleet is converged in the server, this operator has reconciled every app (when
    /// it runs the controllers) and its controllers' and webhooks' caches are synced. Returns
    /// the seconds it took.
    async fn wait_ready(&mut self, server: &TestApiServer, apps: usize) -> f64 {
        let mut report = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("operator child exited: {status}");
            }
            let s = self.state();
            if (s.reconciles >= apps as u64 || !self.components.controllers())
                && s.webhook_caches
                && s.controller_caches
                && converged(server, apps) == apps
            {
                return self.started.elapsed().as_secs_f64();
            }
            if report.elapsed() > Duration::from_secs(10) {
                report = Instant::now();
                eprintln!(
                    "waiting: {s:?}, {} converged, RSS {:.0} MiB",
                    converged(server, apps),
                    rss_mib(self.pid())
                );
            }
            assert!(
                self.started.elapsed() < LIMIT,
                "operator not ready after {LIMIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.state_file);
    }
}

struct Row {
    scenario: &'static str,
    apps: usize,
    unrelated: usize,
    ready_s: f64,
    rss_ready: f64,
    rss: f64,
    peak: f64,
    requests: BTreeMap<String, usize>,
}

/// One row for operator `pid`, ready after `ready_s`: RSS now, then RSS, peak and the requests
/// after `settle` (one heap-trim interval and a margin).
async fn measure_row(
    server: &TestApiServer,
    pid: u32,
    settle: Duration,
    ready_s: f64,
    scenario: &'static str,
    apps: usize,
    unrelated: usize,
) -> Row {
    let rss_ready = rss_mib(pid);
    tokio::time::sleep(settle).await;
    Row {
        scenario,
        apps,
        unrelated,
        ready_s,
        rss_ready,
        rss: rss_mib(pid),
        peak: peak_mib(pid),
        requests: requests_by_kind(server),
    }
}

fn requests_by_kind(server: &TestApiServer) -> BTreeMap<String, usize> {
    let mut by_kind = BTreeMap::new();
    for r in server.requests() {
        let sub = r
            .subresource
            .as_deref()
            .map_or(String::new(), |s| format!("/{s}"));
        let meta = if r.metadata_only { " (metadata)" } else { "" };
        *by_kind
            .entry(format!("{} {}{sub}{meta}", r.verb.as_str(), r.resource))
            .or_default() += 1;
    }
    by_kind
}

struct Params {
    apps: usize,
    n: usize,
    bytes: usize,
    settle: Duration,
    add_while_running: bool,
    components: Components,
}

async fn measure(p: Params) {
    let Params {
        apps,
        n,
        bytes,
        settle,
        add_while_running,
        components,
    } = p;
    let server = TestApiServer::start().await;
    put_fleet(&server, apps);
    let mut rows = Vec::new();
    // The last unrelated Secret, "namespace/name": the child reports when its webhook cache has it.
    let marker = n
        .checked_sub(1)
        .map(|i| format!("{}/{}", unrelated_namespace(i), unrelated_name(i)))
        .unwrap_or_default();

    // Converge the fleet once (every child written); not measured.
    {
        let mut op = Operator::start(&server.url(), "converge", &marker, Components::All);
        let s = op.wait_ready(&server, apps).await;
        eprintln!("fleet of {apps} apps converged in {s:.1} s");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 1. Baseline: a fresh operator on the converged fleet.
    server.clear_requests();
    let mut op = Operator::start(&server.url(), "baseline", &marker, components);
    let ready_s = op.wait_ready(&server, apps).await;
    rows.push(
        measure_row(
            &server,
            op.pid(),
            settle,
            ready_s,
            "baseline (no unrelated Secrets)",
            apps,
            0,
        )
        .await,
    );
    eprintln!("baseline measured");

    // 2. Added while running.
    // Without it, the baseline operator is stopped before they are created.
    let running = add_while_running.then_some(op);
    server.clear_requests();
    let t = Instant::now();
    put_unrelated(&server, n, bytes);
    let created_s = t.elapsed().as_secs_f64();
    eprintln!("{n} unrelated Secrets created in {created_s:.1} s");
    if let Some(op) = running {
        // Seen once the last one is in the webhooks' cache (the controllers' watch of the same
        // stream is not observable from here: the settle time covers it).
        if !components.webhooks() {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        while components.webhooks() && !op.state().marker_seen {
            assert!(
                t.elapsed() < LIMIT,
                "the operator did not see the unrelated Secrets"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let ready_s = t.elapsed().as_secs_f64();
        rows.push(
            measure_row(
                &server,
                op.pid(),
                settle,
                ready_s,
                "added while running",
                apps,
                n,
            )
            .await,
        );
        eprintln!("added while running measured");
        drop(op);
    }

    // 3. Present at start.
    server.clear_requests();
    let mut op = Operator::start(&server.url(), "present", &marker, components);
    let ready_s = op.wait_ready(&server, apps).await;
    rows.push(
        measure_row(
            &server,
            op.pid(),
            settle,
            ready_s,
            "present at start",
            apps,
            n,
        )
        .await,
    );
    drop(op);

    print_tables(&rows, bytes, settle, components);
    for r in &rows {
        assert!(
            r.rss.is_finite() && r.rss > 0.0,
            "no RSS for {}",
            r.scenario
        );
    }
}

fn growth(value: f64, base: f64) -> String {
    format!("{:+.1} %", (value / base - 1.0) * 100.0)
}

fn print_tables(rows: &[Row], bytes: usize, settle: Duration, components: Components) {
    let base = &rows[0];
    let what = match components {
        Components::All => "controllers and webhook caches",
        Components::Controllers => "controllers only",
        Components::Webhooks => "webhook caches only",
    };
    println!(
        "# Unrelated Secrets ({bytes} data bytes each; operator: {what}; RSS {:.0} s after ready)\n",
        settle.as_secs_f64()
    );
    println!(
        "| scenario | apps | unrelated Secrets | ready s | RSS at ready MiB | RSS MiB | peak MiB | \
         RSS growth vs baseline | peak growth vs baseline | API requests |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} |",
            r.scenario,
            r.apps,
            r.unrelated,
            r.ready_s,
            r.rss_ready,
            r.rss,
            r.peak,
            growth(r.rss, base.rss),
            growth(r.peak, base.peak),
            r.requests.values().sum::<usize>(),
        );
    }
    let kinds: std::collections::BTreeSet<&String> =
        rows.iter().flat_map(|r| r.requests.keys()).collect();
    println!("\nOperator API requests by verb and resource:\n");
    let header: Vec<&str> = rows.iter().map(|r| r.scenario).collect();
    println!("| request | {} |", header.join(" | "));
    println!("|---|{}", "---:|".repeat(rows.len()));
    for k in kinds {
        let counts: Vec<String> = rows
            .iter()
            .map(|r| r.requests.get(k).copied().unwrap_or(0).to_string())
            .collect();
        println!("| {k} | {} |", counts.join(" | "));
    }
}

/// The child: controllers and webhook caches against the parent's API server until killed.
fn operator(url: &str) {
    block_on_client(url, NS, |client| async move {
        // The webhooks' caches, as `spin-operator run` builds them (default: every namespace,
        // reference watches on).
        let components = Components::from_env();
        let (lookup, writers) = cache::stores(CacheConfig::default());
        if components.webhooks() {
            tokio::spawn(writers.run(client.clone()));
        }
        let webhook_ready = Arc::new(AtomicBool::new(!components.webhooks()));
        if components.webhooks() {
            let ready = webhook_ready.clone();
            let lookup = lookup.clone();
            tokio::spawn(async move {
                if lookup.wait_until_ready().await.is_ok() {
                    ready.store(true, Ordering::SeqCst);
                }
            });
        }
        let marker = std::env::var("SECRET_BENCH_MARKER").unwrap_or_default();
        let marker_seen = move || match marker.split_once('/') {
            Some((ns, name)) => lookup.secret(ns, name) == Presence::Present,
            None => false,
        };

        // The controllers, as `spin-operator run --no-leader-election` builds them.
        let mut config = ControllerConfig::new("bench", NS);
        config.leader_election = None;
        config.settings = Settings {
            // No Deployment controller in memory: nothing to wait for.
            status_hold: Duration::ZERO,
            ..Settings::default()
        };
        let metrics = config.metrics.clone();
        let state = config.state.clone();
        if let Ok(path) = std::env::var("SECRET_BENCH_STATE_FILE") {
            tokio::spawn(async move {
                loop {
                    let n = metrics.reconcile_count("spinapp", "success");
                    let line = format!(
                        "{n} {} {} {}",
                        u8::from(webhook_ready.load(Ordering::SeqCst)),
                        u8::from(state.caches_synced() || !components.controllers()),
                        u8::from(marker_seen()),
                    );
                    publish(&path, &line);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
        if components.controllers() {
            let _ = controller::run(client, config, std::future::pending()).await;
        } else {
            std::future::pending::<()>().await;
        }
    });
}

fn main() {
    if let Ok(url) = std::env::var("SECRET_BENCH_OPERATOR_URL") {
        operator(&url);
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it:
    // then a small smoke run that does not wait for heap trims.
    let bench = std::env::args().any(|a| a == "--bench");
    let apps = env_usize("SECRET_BENCH_APPS", if bench { 200 } else { 8 });
    let n = env_usize("SECRET_BENCH_N", if bench { 10_000 } else { 50 });
    let bytes = env_usize("SECRET_BENCH_BYTES", 10 * 1024);
    let settle = std::env::var("SECRET_BENCH_SETTLE_SECS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .map_or(
            if bench {
                controller::HEAP_TRIM_INTERVAL + Duration::from_secs(5)
            } else {
                Duration::from_secs(1)
            },
            Duration::from_secs,
        );
    let add_while_running =
        std::env::var("SECRET_BENCH_ADD_WHILE_RUNNING").map_or(true, |v| v.trim() != "0");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(measure(Params {
        apps,
        n,
        bytes,
        settle,
        add_while_running,
        components: Components::from_env(),
    }));
}
