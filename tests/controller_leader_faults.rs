//! Leader election under API faults: a leader whose Lease renewal hangs (a slow apiserver, no
//! error) must stop writing before another replica may take the Lease over.
//!
//! FAILS on the current controller (kept as the reproduction of a bug; see the commit
//! message): `LeaderElector::run` checks `renew_deadline` only after a Lease request returned
//! with an error, and the kube client has no read timeout by default, so a renewal that hangs
//! keeps the old leader leading (and writing) while the standby, seeing the Lease unrenewed for
//! `lease_duration`, takes over: two writers. client-go bounds each renewal attempt by the
//! renew deadline (`context.WithTimeout(ctx, RenewDeadline)`) for this reason.

use std::time::{Duration, Instant};

use serde_json::json;
use spin_operator::controller::{ControllerConfig, ControllerState, Settings};
use spin_test_apiserver::{RequestMatcher, ResourceKey, TestApiServer};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[path = "support/leases.rs"]
mod leases;
use leases::{operator_writes, tenures, writes_outside_tenures};

const WAIT: Duration = Duration::from_secs(60);

struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), spin_operator::controller::ControllerError>>,
    state: ControllerState,
}

impl Running {
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(WAIT, &mut self.task).await;
    }
}

fn start(server: &TestApiServer, id: &str) -> Running {
    let mut config = ControllerConfig::new(id, "default");
    config.settings = Settings {
        resync: Duration::from_secs(2),
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(300),
        concurrency: 8,
    };
    let le = config.leader_election.as_mut().expect("leader election on");
    le.lease_duration = Duration::from_secs(2);
    le.renew_deadline = Duration::from_millis(1500);
    le.renew_interval = Duration::from_millis(200);
    le.retry_interval = Duration::from_millis(100);
    let state = config.state.clone();
    let (tx, rx) = oneshot::channel::<()>();
    let client = server.client_named(id);
    let task = tokio::spawn(async move {
        spin_operator::controller::run(client, config, async move {
            let _ = rx.await;
        })
        .await
    });
    Running {
        stop: Some(tx),
        task,
        state,
    }
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < WAIT, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn app(i: usize) -> serde_json::Value {
    json!({"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
           "metadata": {"name": format!("app-{i:03}"), "namespace": "default"},
           "spec": {"image": "ghcr.io/example/app:v1", "executor": "shim", "replicas": 1}})
}

fn deployments(server: &TestApiServer) -> usize {
    server
        .list(
            &ResourceKey::of::<k8s_openapi::api::apps::v1::Deployment>(),
            Some("default"),
        )
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_with_a_hanging_lease_renewal_stops_writing_before_another_takes_over() {
    let server = TestApiServer::start().await;
    server.put(json!({
        "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
        "metadata": {"name": "shim", "namespace": "default"},
        "spec": {"createDeployment": true, "deploymentConfig": {"runtimeClassName": "wasmtime-spin-v2"}}
    }));
    let a = start(&server, "pod-a");
    wait_until("pod-a leads", || a.state.is_leader()).await;
    let b = start(&server, "pod-b");

    // pod-a's Lease requests now hang for 6 s (three lease durations); its other requests are
    // merely slow, so it has work in flight for seconds.
    server.faults().delay(
        RequestMatcher::any().resource("leases").client("pod-a"),
        Duration::from_secs(6),
    );
    for resource in ["deployments", "services", "secrets", "spinapps"] {
        server.faults().delay(
            RequestMatcher::writes().resource(resource).client("pod-a"),
            Duration::from_millis(100),
        );
    }
    let n = 120;
    for i in 0..n {
        server.put(app(i));
    }
    wait_until("pod-b takes the unrenewed Lease over", || {
        b.state.is_leader()
    })
    .await;
    wait_until("the fleet converges", || deployments(&server) == n).await;
    a.stop().await;
    b.stop().await;
    server.faults().clear();

    let log = server.requests();
    let ts = tenures(&log);
    let holders: Vec<&str> = ts.iter().map(|t| t.holder.as_str()).collect();
    assert_eq!(holders, ["pod-a", "pod-b"], "{ts:#?}");
    assert!(operator_writes(&log).any(|w| w.client.as_deref() == Some("pod-a")));
    let outside = writes_outside_tenures(&log, &ts);
    let mut by: std::collections::BTreeMap<String, usize> = Default::default();
    for w in &outside {
        let key = format!(
            "{} {} {}{}",
            w.client.as_deref().unwrap_or_default(),
            w.verb.as_str(),
            w.resource,
            w.subresource
                .as_deref()
                .map_or(String::new(), |s| format!("/{s}"))
        );
        *by.entry(key).or_default() += 1;
    }
    assert!(
        outside.is_empty(),
        "{} writes outside the writer's tenure: {by:?}\nfirst: {:#?}\ntenures: {ts:#?}",
        outside.len(),
        outside.first()
    );
}
