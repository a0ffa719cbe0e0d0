//! A fleet of SpinApps reconciled by the real controllers (`spin_operator::controller::run`)
//! against the in-memory API server while it misbehaves: random 500s and 409s on writes, slow
//! responses, dropped watches and expired watch history (410 relists), spec changes mid-way.
//! Then: every app converged, no child lost, duplicated or orphaned, retries stay bounded, and
//! a converged fleet writes nothing. Plus leader handover (graceful and crash) mid-convergence,
//! proven from the request log: only the lease holder writes.
//!
//! Every wait is bounded and observes state; the durations printed are for the record
//! (BENCHMARKS.md), never asserted. `FLEET_APPS=<n>` (default 160) sizes the fault test, e.g.
//! `FLEET_APPS=1000 cargo test --test controller_fleet -- --nocapture fleet_converges`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use spin_operator::api::{APP_NAME_LABEL, SpinApp};
use spin_operator::controller::spinapp::GENERATED_RUNTIME_CONFIG_LABEL;
use spin_operator::controller::{ControllerConfig, Settings};
use spin_test_apiserver::{RequestMatcher, RequestRecord, ResourceKey, TestApiServer, Verb};

/// Client id of the operator in the fault test; the test's own writes use [`TEST_CLIENT`].
const OPERATOR: &str = "operator";
const TEST_CLIENT: &str = "test";
const IMAGE: &str = "ghcr.io/spinframework/containerd-shim-spin/examples/spin-rust-hello:v0.23.0";
/// Bound of every wait of a converging fleet (generous: debug build on 2 shared cores).
const FLEET_WAIT: Duration = Duration::from_secs(120);
/// The same for a larger `FLEET_APPS` run.
const LARGE_FLEET_WAIT: Duration = Duration::from_secs(900);
const WAIT: Duration = Duration::from_secs(30);
/// Child kinds and status the operator writes: each gets its own random 500s.
const WRITTEN: [(&str, Option<&str>); 6] = [
    ("deployments", None),
    ("services", None),
    ("secrets", None),
    ("events", None),
    ("spinapps", Some("status")),
    ("spinappexecutors", None),
];

fn settings(resync: Duration) -> Settings {
    Settings {
        resync,
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(300),
        concurrency: 8,
        // No Deployment controller in memory: nothing to wait for.
        status_hold: Duration::ZERO,
        ..Settings::default()
    }
}

#[path = "support/operator.rs"]
mod operator;
use operator::Running;

fn start(server: &TestApiServer, client_id: &str, config: ControllerConfig) -> Running {
    operator::start(server.client_named(client_id), config)
}

/// Polls `cond` every 250 ms (checking a whole fleet is not free) until it holds or `limit`.
async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    wait_ok(what, limit, || {
        if cond() { Ok(()) } else { Err(String::new()) }
    })
    .await
}

/// Like [`wait_until`]; on timeout the panic shows the last reason `check` gave.
async fn wait_ok(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Result<(), String>,
) -> Duration {
    let started = Instant::now();
    loop {
        match check() {
            Ok(()) => return started.elapsed(),
            Err(why) => assert!(
                started.elapsed() < limit,
                "timed out waiting for: {what}: {why}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ---------------------------------------------------------------- the fleet

/// One app of the fleet: where it is and what its spec should produce.
#[derive(Clone, Debug)]
struct AppSpec {
    ns: String,
    name: String,
    replicas: i64,
    runtime_config: bool,
}

fn namespaces(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("fleet-{i}")).collect()
}

fn fleet(namespaces: &[String], total: usize) -> Vec<AppSpec> {
    (0..total)
        .map(|i| AppSpec {
            ns: namespaces[i % namespaces.len()].clone(),
            name: format!("app-{i:04}"),
            replicas: 1 + (i % 3) as i64,
            // Every fourth app of each namespace owns a generated runtime-config Secret.
            runtime_config: (i / namespaces.len()).is_multiple_of(4),
        })
        .collect()
}

fn runtime_config_spec() -> Value {
    json!({
        "keyValueStores": [{"name": "default", "type": "redis", "options": [
            {"name": "url", "valueFrom": {"secretKeyRef": {"name": "app-credentials", "key": "redis-url"}}}
        ]}],
        "llmCompute": {"type": "remote_http", "options": [
            {"name": "url", "valueFrom": {"configMapKeyRef": {"name": "app-endpoints", "key": "llm-url"}}}
        ]}
    })
}

fn app_object(a: &AppSpec) -> Value {
    let mut spec = json!({"image": IMAGE, "executor": "shim", "replicas": a.replicas});
    if a.runtime_config {
        spec["runtimeConfig"] = runtime_config_spec();
    }
    json!({"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
           "metadata": {"name": a.name, "namespace": a.ns}, "spec": spec})
}

fn redis_url(ns: &str, version: u32) -> String {
    format!("redis://redis.{ns}.svc:6379/{version}")
}

/// Executor, referenced Secret and ConfigMap of a namespace (put directly: not in the log).
fn put_namespace_objects(server: &TestApiServer, ns: &str) {
    server.put(json!({
        "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
        "metadata": {"name": "shim", "namespace": ns},
        "spec": {"createDeployment": true, "deploymentConfig": {
            "runtimeClassName": "wasmtime-spin-v2", "installDefaultCACerts": true}}
    }));
    server.put(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app-credentials", "namespace": ns},
        "stringData": {"redis-url": redis_url(ns, 1)}
    }));
    server.put(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-endpoints", "namespace": ns},
        "data": {"llm-url": "https://llm.example.com"}
    }));
}

fn labelled(server: &TestApiServer, key: &ResourceKey, ns: &str) -> Vec<Value> {
    server
        .list(key, Some(ns))
        .into_iter()
        .filter(|o| o["metadata"]["labels"][APP_NAME_LABEL].is_string())
        .collect()
}

fn name_of(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

fn app_label(o: &Value) -> &str {
    o["metadata"]["labels"][APP_NAME_LABEL]
        .as_str()
        .unwrap_or_default()
}

fn controller_owner_uid(o: &Value) -> Option<&str> {
    o["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true && r["kind"] == "SpinApp")
        .and_then(|r| r["uid"].as_str())
}

fn ready_reason(app: &Value) -> Option<&str> {
    app["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["reason"].as_str())
}

fn runtime_config_toml(secret: &Value) -> String {
    let b64 = secret["data"]["runtime-config.toml"]
        .as_str()
        .unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

fn secret_volumes(d: &Value) -> BTreeSet<String> {
    d["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["secret"]["secretName"].as_str().map(str::to_string))
        .collect()
}

/// The whole fleet's state against what its specs ask for; `Err` names the first difference.
/// `credentials` is the current `redis-url` version per namespace.
fn check_fleet(
    server: &TestApiServer,
    apps: &[AppSpec],
    credentials: &BTreeMap<String, u32>,
) -> Result<(), String> {
    let by_ns: BTreeMap<&str, Vec<&AppSpec>> = apps.iter().fold(BTreeMap::new(), |mut m, a| {
        m.entry(a.ns.as_str()).or_default().push(a);
        m
    });
    for (ns, ns_apps) in by_ns {
        let live_apps: BTreeMap<String, Value> = server
            .list(&ResourceKey::of::<SpinApp>(), Some(ns))
            .into_iter()
            .map(|a| (name_of(&a).to_string(), a))
            .collect();
        let deployments = labelled(server, &ResourceKey::of::<Deployment>(), ns);
        let services = labelled(server, &ResourceKey::of::<Service>(), ns);
        let generated: Vec<Value> = labelled(server, &ResourceKey::of::<Secret>(), ns)
            .into_iter()
            .filter(|s| s["metadata"]["labels"][GENERATED_RUNTIME_CONFIG_LABEL] == "true")
            .collect();
        // No orphans: every labelled child is controlled by a live app of its label's name.
        for child in deployments.iter().chain(&services).chain(&generated) {
            let owner = live_apps
                .get(app_label(child))
                .and_then(|a| a["metadata"]["uid"].as_str());
            if owner.is_none() || owner != controller_owner_uid(child) {
                return Err(format!(
                    "{ns}/{}: child without its live owner",
                    name_of(child)
                ));
            }
        }
        if server
            .get(&ResourceKey::of::<Secret>(), Some(ns), "spin-ca")
            .is_none()
        {
            return Err(format!("{ns}: CA Secret missing"));
        }
        let want_redis = redis_url(ns, credentials.get(ns).copied().unwrap_or(1));
        for a in &ns_apps {
            let name = a.name.as_str();
            let Some(app) = live_apps.get(name) else {
                return Err(format!("{ns}/{name}: app missing"));
            };
            let of_app = |objs: &[Value]| -> Vec<Value> {
                objs.iter()
                    .filter(|o| app_label(o) == name)
                    .cloned()
                    .collect()
            };
            let (ds, ss, gs) = (of_app(&deployments), of_app(&services), of_app(&generated));
            if ds.len() != 1 || name_of(&ds[0]) != name {
                return Err(format!("{ns}/{name}: {} Deployments", ds.len()));
            }
            if ss.len() != 1 || name_of(&ss[0]) != name {
                return Err(format!("{ns}/{name}: {} Services", ss.len()));
            }
            let d = &ds[0];
            if d["spec"]["replicas"].as_i64() != Some(a.replicas) {
                return Err(format!(
                    "{ns}/{name}: replicas {} want {}",
                    d["spec"]["replicas"], a.replicas
                ));
            }
            if d["spec"]["template"]["spec"]["containers"][0]["image"] != IMAGE {
                return Err(format!("{ns}/{name}: wrong image"));
            }
            // Every app gets exactly one generated runtime-config Secret (like upstream, also
            // without `runtimeConfig`); older ones are stale and must be gone.
            if gs.len() != 1 {
                let names: Vec<&str> = gs.iter().map(name_of).collect();
                return Err(format!("{ns}/{name}: runtime-config Secrets {names:?}"));
            }
            if !secret_volumes(d).contains(name_of(&gs[0])) {
                return Err(format!(
                    "{ns}/{name}: Deployment does not mount {}",
                    name_of(&gs[0])
                ));
            }
            let toml = runtime_config_toml(&gs[0]);
            let current = if a.runtime_config {
                toml.contains(&want_redis)
            } else {
                !toml.contains("redis://")
            };
            if !current {
                return Err(format!("{ns}/{name}: runtime config not current"));
            }
            let status = &app["status"];
            if status["observedGeneration"] != app["metadata"]["generation"] {
                return Err(format!(
                    "{ns}/{name}: observedGeneration {} generation {}",
                    status["observedGeneration"], app["metadata"]["generation"]
                ));
            }
            if status["deploymentName"] != name || status["serviceName"] != name {
                return Err(format!("{ns}/{name}: status children {status}"));
            }
            // No Deployment controller runs here: Ready=False DeploymentUnavailable is the
            // converged condition (not ApplyFailed).
            if ready_reason(app) != Some("DeploymentUnavailable") {
                return Err(format!("{ns}/{name}: Ready reason {:?}", ready_reason(app)));
            }
        }
        let extra = deployments.len() + services.len() - 2 * ns_apps.len();
        if extra != 0 {
            return Err(format!("{ns}: {extra} children beyond one per app"));
        }
    }
    Ok(())
}

fn deployments_created(server: &TestApiServer, apps: &[AppSpec]) -> usize {
    apps.iter()
        .filter(|a| {
            server
                .get(&ResourceKey::of::<Deployment>(), Some(&a.ns), &a.name)
                .is_some()
        })
        .count()
}

/// The test's own spec changes go over HTTP like a user's, so they meet the faults too: retry.
async fn patch_until_ok<K>(api: &Api<K>, name: &str, patch: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    for _ in 0..50 {
        if api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .is_ok()
        {
            return;
        }
    }
    panic!("patch of {name} kept failing");
}

/// Random 500s on writes of every child kind and on status, random 409s on every update/patch,
/// random slowness on every request.
fn install_chaos(server: &TestApiServer, seed: u64, rate_500: f64, rate_409: f64, slow: Duration) {
    let f = server.faults();
    for (i, (resource, sub)) in WRITTEN.iter().enumerate() {
        let mut m = RequestMatcher::writes().resource(resource);
        if let Some(sub) = sub {
            m = m.subresource(sub);
        }
        f.fail_randomly(m, rate_500, 500, seed + i as u64);
    }
    f.fail_randomly(RequestMatcher::writes(), rate_409, 409, seed + 100);
    f.delay_randomly(RequestMatcher::any(), slow, seed + 200);
}

/// Drops every watch periodically; every other time the history expires too (410, relist).
fn watch_chaos(server: &TestApiServer, every: Duration) -> (Arc<AtomicBool>, Arc<AtomicUsize>) {
    let stop = Arc::new(AtomicBool::new(false));
    let drops = Arc::new(AtomicUsize::new(0));
    let (s, d, server) = (stop.clone(), drops.clone(), server.clone());
    tokio::spawn(async move {
        while !s.load(Ordering::SeqCst) {
            tokio::time::sleep(every).await;
            let n = d.fetch_add(1, Ordering::SeqCst);
            if n % 2 == 1 {
                server.faults().expire_watch_history();
            }
            server.faults().drop_watches();
        }
    });
    (stop, drops)
}

/// For large runs: how far the fleet is, every 10 s, until `stop`.
fn progress(server: &TestApiServer, apps: &[AppSpec], stop: Arc<AtomicBool>) {
    let (server, apps) = (server.clone(), apps.to_vec());
    let started = Instant::now();
    tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let observed = server
                .list(&ResourceKey::of::<SpinApp>(), None)
                .iter()
                .filter(|a| {
                    a["status"]["observedGeneration"] == a["metadata"]["generation"]
                        && a["status"]["deploymentName"].is_string()
                })
                .count();
            eprintln!(
                "{:.0} s: {} Deployments, {observed} apps with status for their generation, {} requests",
                started.elapsed().as_secs_f64(),
                deployments_created(&server, &apps),
                server.requests().len()
            );
        }
    });
}

fn injected_by_kind(log: &[RequestRecord]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in log.iter().filter(|r| r.injected) {
        let sub = r
            .subresource
            .as_deref()
            .map_or(String::new(), |s| format!("/{s}"));
        *m.entry(format!(
            "{} {} {}{sub}",
            r.status,
            r.verb.as_str(),
            r.resource
        ))
        .or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_converges_under_random_faults_and_relists_without_lost_or_duplicated_children() {
    let total: usize = std::env::var("FLEET_APPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(160);
    let (fleet_wait, wait) = if total > 200 {
        (LARGE_FLEET_WAIT, LARGE_FLEET_WAIT)
    } else {
        (FLEET_WAIT, WAIT)
    };
    let server = TestApiServer::start().await;
    let nss = namespaces(4);
    for ns in &nss {
        put_namespace_objects(&server, ns);
    }
    let mut apps = fleet(&nss, total);
    let mut credentials: BTreeMap<String, u32> = BTreeMap::new();

    // Faults from the first request on: 15% 500s per written kind, 5% 409s, up to 30 ms slow.
    install_chaos(&server, 7, 0.15, 0.05, Duration::from_millis(30));
    // Every 1.5 s for the default fleet; a large fleet's relists take longer than that in a
    // debug build, so they are spaced by its size (10 ms per app).
    let drop_every = if total > 200 {
        Duration::from_millis(10) * total as u32
    } else {
        Duration::from_millis(1500)
    };
    let (stop_watch_chaos, watch_drops) = watch_chaos(&server, drop_every);
    if total > 200 {
        progress(&server, &apps, stop_watch_chaos.clone());
    }
    let mut config = ControllerConfig::new("fleet", "default");
    config.leader_election = None;
    // A resync round costs one reconcile per app: a large fleet in a debug build cannot
    // resync every 3 s (at 1,000 apps that saturated both cores), so it is spaced by size.
    config.settings = settings(if total > 200 {
        Duration::from_millis(20) * total as u32
    } else {
        Duration::from_secs(3)
    });
    let started = Instant::now();
    for a in &apps {
        server.put(app_object(a));
    }
    let running = start(&server, OPERATOR, config);

    // Mid-way, while faults continue: the user changes specs and a referenced Secret.
    wait_until("half of the fleet has Deployments", fleet_wait, || {
        deployments_created(&server, &apps) >= total / 2
    })
    .await;
    let test_client = server.client_named(TEST_CLIENT);
    for a in apps.iter_mut().filter(|a| a.name.ends_with('5')) {
        a.replicas = 5;
        let api: Api<SpinApp> = Api::namespaced(test_client.clone(), &a.ns);
        patch_until_ok(&api, &a.name, json!({"spec": {"replicas": 5}})).await;
    }
    // Runtime config dropped by one app: its generated Secret becomes stale.
    let dropped = apps
        .iter_mut()
        .find(|a| a.runtime_config && a.ns == nss[2])
        .expect("a runtime-config app in the namespace");
    dropped.runtime_config = false;
    let api: Api<SpinApp> = Api::namespaced(test_client.clone(), &dropped.ns);
    patch_until_ok(
        &api,
        &dropped.name,
        json!({"spec": {"runtimeConfig": null}}),
    )
    .await;
    // New credentials in one namespace: each of its runtime-config apps rolls its Secret.
    credentials.insert(nss[1].clone(), 2);
    let secrets: Api<Secret> = Api::namespaced(test_client.clone(), &nss[1]);
    patch_until_ok(
        &secrets,
        "app-credentials",
        json!({"stringData": {"redis-url": redis_url(&nss[1], 2)}}),
    )
    .await;

    let converge_faulty = wait_ok("fleet converges under faults", fleet_wait, || {
        check_fleet(&server, &apps, &credentials)
    })
    .await;
    let converged_at = started.elapsed();
    stop_watch_chaos.store(true, Ordering::SeqCst);
    server.faults().clear();
    let faulty_log = server.requests();
    let injected = injected_by_kind(&faulty_log);
    let injected_total: usize = injected.values().sum();
    let operator_requests = faulty_log
        .iter()
        .filter(|r| r.client.as_deref() == Some(OPERATOR))
        .count();
    let api_errors = running.metrics.reconcile_count("spinapp", "api_error");
    // The faults were real: failures of every written kind reached the operator.
    // (Executors are written once per namespace, too rarely to be sure to draw a failure.)
    for (resource, sub) in WRITTEN.iter().filter(|(r, _)| *r != "spinappexecutors") {
        assert!(
            faulty_log.iter().any(|r| r.injected
                && r.status == 500
                && r.resource == *resource
                && r.subresource.as_deref() == *sub),
            "no injected 500 on {resource} {sub:?}: {injected:?}"
        );
    }
    assert!(faulty_log.iter().any(|r| r.injected && r.status == 409));
    assert!(api_errors > 0);
    assert!(watch_drops.load(Ordering::SeqCst) >= 1);

    // Bounded backoff: three apps fail 12 times in a row. Capped at 300 ms that is ~3 s of
    // retries; uncapped doubling from 20 ms would need > 80 s, past this wait's bound.
    let streak: Vec<AppSpec> = apps
        .iter()
        .step_by((total / 3).max(1))
        .take(3)
        .cloned()
        .collect();
    for a in &streak {
        server.faults().fail_next(
            12,
            500,
            RequestMatcher::any()
                .verb(Verb::Patch)
                .resource("deployments")
                .namespace(&a.ns)
                .name(&a.name)
                .client(OPERATOR),
        );
    }
    server.clear_requests();
    for a in apps
        .iter_mut()
        .filter(|a| streak.iter().any(|s| s.name == a.name))
    {
        a.replicas = 4;
        let api: Api<SpinApp> = Api::namespaced(test_client.clone(), &a.ns);
        patch_until_ok(&api, &a.name, json!({"spec": {"replicas": 4}})).await;
    }
    let converge_streak = wait_ok("fleet converges after 12 failures in a row", wait, || {
        check_fleet(&server, &apps, &credentials)
    })
    .await;
    let mut max_retry_gap = Duration::ZERO;
    for a in &streak {
        let patches = server.requests_matching(
            &RequestMatcher::any()
                .verb(Verb::Patch)
                .resource("deployments")
                .name(&a.name)
                .namespace(&a.ns),
        );
        let failed = patches.iter().filter(|r| r.injected).count();
        assert_eq!(failed, 12, "{}", a.name);
        assert!(
            patches.last().is_some_and(|r| r.status == 200),
            "{patches:#?}"
        );
        for pair in patches.windows(2) {
            max_retry_gap = max_retry_gap.max(pair[1].arrived_at - pair[0].arrived_at);
        }
    }

    // Steady state: a resync of every app (counted as reconciles) writes nothing.
    let before = running.successes();
    server.clear_requests();
    wait_until("a full resync round", wait, || {
        running.successes() >= before + 2 * total as u64
    })
    .await;
    let steady_writes = server.requests_matching(&RequestMatcher::writes().client(OPERATOR));
    assert!(
        steady_writes.is_empty(),
        "converged fleet wrote: {steady_writes:#?}"
    );
    check_fleet(&server, &apps, &credentials).unwrap();
    running.stop().await;

    println!(
        "fleet under faults: {total} apps in {} namespaces ({} with runtime config); \
         converged under faults in {:.1} s (after the mid-way changes: {:.1} s); \
         {injected_total} injected failures {injected:?}; {} watch drops; \
         {operator_requests} operator requests ({:.1}/app); {api_errors} failed reconciles; \
         12-failure streak converged in {:.1} s (longest gap between its retries {} ms); \
         0 writes in a resync round",
        nss.len(),
        apps.iter().filter(|a| a.runtime_config).count(),
        converged_at.as_secs_f64(),
        converge_faulty.as_secs_f64(),
        watch_drops.load(Ordering::SeqCst),
        operator_requests as f64 / total as f64,
        converge_streak.as_secs_f64(),
        max_retry_gap.as_millis(),
    );
}

// ---------------------------------------------------------------- leader handover

#[path = "support/leases.rs"]
mod leases;
use leases::{operator_writes, tenures, writes_outside_tenures};

fn leader_config(id: &str) -> ControllerConfig {
    let mut c = ControllerConfig::new(id, "default");
    c.settings = settings(Duration::from_secs(2));
    let le = c.leader_election.as_mut().expect("leader election on");
    le.lease_duration = Duration::from_secs(2);
    le.renew_deadline = Duration::from_millis(1500);
    le.renew_interval = Duration::from_millis(200);
    le.retry_interval = Duration::from_millis(100);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_handover_mid_convergence_only_the_lease_holder_writes() {
    let server = TestApiServer::start().await;
    let nss = namespaces(2);
    for ns in &nss {
        put_namespace_objects(&server, ns);
    }
    let mut apps = fleet(&nss, 60);
    let mut credentials = BTreeMap::new();
    // Faults on the controllers' writes (10% 500s, slow writes); the Lease is left alone so
    // handovers happen when the test says, not when a renewal fails.
    for (i, (resource, sub)) in WRITTEN.iter().enumerate() {
        let mut m = RequestMatcher::writes().resource(resource);
        if let Some(sub) = sub {
            m = m.subresource(sub);
        }
        server
            .faults()
            .fail_randomly(m.clone(), 0.10, 500, 50 + i as u64);
        server
            .faults()
            .delay_randomly(m, Duration::from_millis(20), 60 + i as u64);
    }

    let a = start(&server, "pod-a", leader_config("pod-a"));
    wait_until("pod-a leads", WAIT, || a.state.is_leader()).await;
    let b = start(&server, "pod-b", leader_config("pod-b"));
    wait_until("pod-b is a ready standby", WAIT, || b.state.is_ready()).await;
    for app in &apps {
        server.put(app_object(app));
    }

    // Graceful stop of the leader mid-convergence: pod-b takes over and finishes.
    wait_until(
        "a quarter of the fleet reconciled by pod-a",
        FLEET_WAIT,
        || deployments_created(&server, &apps) >= apps.len() / 4,
    )
    .await;
    let at_graceful_stop = deployments_created(&server, &apps);
    a.stop().await;
    wait_until("pod-b leads", WAIT, || b.state.is_leader()).await;
    wait_ok("pod-b finishes the fleet", FLEET_WAIT, || {
        check_fleet(&server, &apps, &credentials)
    })
    .await;

    // A crash of the leader mid-convergence: pod-c takes over once the lease expires.
    let c = start(&server, "pod-c", leader_config("pod-c"));
    wait_until("pod-c is a ready standby", WAIT, || c.state.is_ready()).await;
    let test_client = server.client_named(TEST_CLIENT);
    for app in apps.iter_mut() {
        app.replicas += 1;
    }
    // All at once, so pod-b is still busy with them when it crashes.
    futures::future::join_all(apps.iter().map(|app| {
        let api: Api<SpinApp> = Api::namespaced(test_client.clone(), &app.ns);
        async move {
            patch_until_ok(&api, &app.name, json!({"spec": {"replicas": app.replicas}})).await;
        }
    }))
    .await;
    // And new credentials: runtime-config Secrets roll across the crash too.
    credentials.insert(nss[0].clone(), 2);
    let secrets: Api<Secret> = Api::namespaced(test_client.clone(), &nss[0]);
    patch_until_ok(
        &secrets,
        "app-credentials",
        json!({"stringData": {"redis-url": redis_url(&nss[0], 2)}}),
    )
    .await;
    let rolled = |server: &TestApiServer, apps: &[AppSpec]| {
        apps.iter()
            .filter(|a| {
                server
                    .get(&ResourceKey::of::<Deployment>(), Some(&a.ns), &a.name)
                    .is_some_and(|d| d["spec"]["replicas"].as_i64() == Some(a.replicas))
            })
            .count()
    };
    wait_until("a quarter of the fleet rolled by pod-b", FLEET_WAIT, || {
        rolled(&server, &apps) >= apps.len() / 4
    })
    .await;
    let at_crash = rolled(&server, &apps);
    b.crash().await;
    let crash_mark = server.mark();
    wait_until("pod-c leads", WAIT, || c.state.is_leader()).await;
    wait_ok("pod-c finishes the fleet", FLEET_WAIT, || {
        check_fleet(&server, &apps, &credentials)
    })
    .await;
    c.stop().await;
    server.faults().clear();
    check_fleet(&server, &apps, &credentials).unwrap();

    let log = server.requests();
    let ts = tenures(&log);
    let holders: Vec<&str> = ts.iter().map(|t| t.holder.as_str()).collect();
    assert_eq!(holders, ["pod-a", "pod-b", "pod-c"], "{ts:#?}");
    let outside = writes_outside_tenures(&log, &ts);
    assert!(
        outside.is_empty(),
        "writes outside the writer's tenure: {outside:#?}\n{ts:#?}"
    );
    let mut writes_by: BTreeMap<&str, usize> = BTreeMap::new();
    for w in operator_writes(&log) {
        *writes_by
            .entry(w.client.as_deref().unwrap_or_default())
            .or_default() += 1;
    }
    // Not asserted: that pod-a's writes all land before its own release (one run in eleven
    // saw a pod-a write complete after the release arrived, before pod-b's takeover; cause not
    // established, reported to the lead).
    // Every holder did part of the work.
    assert_eq!(
        writes_by.keys().copied().collect::<Vec<_>>(),
        ["pod-a", "pod-b", "pod-c"]
    );
    // Requests pod-b had sent before its abort may still arrive afterwards (never after pod-c's
    // takeover, checked above); reported, not asserted.
    let b_late = log
        .iter()
        .filter(|r| r.client.as_deref() == Some("pod-b") && r.arrival_seq > crash_mark)
        .count();
    println!(
        "leader handover: {} apps; graceful stop of pod-a with {at_graceful_stop} Deployments \
         created, crash of pod-b with {at_crash} of {} rolled; writes per holder {writes_by:?}; \
         {} injected failures; pod-b requests arriving after its abort: {b_late}",
        apps.len(),
        apps.len(),
        log.iter().filter(|r| r.injected).count(),
    );
}
