//! Leader election under API faults.
//!
//! - A leader whose Lease renewal hangs (a slow apiserver, no error) must stop writing before
//!   another replica may take the Lease over (client-go bounds each renewal attempt by the
//!   renew deadline for this reason; so does `LeaderElector::run`).
//! - `spin-operator run` as a process whose Lease requests fail past the renew deadline stops
//!   its controllers (no writes while not leading) but keeps serving the webhooks and stays
//!   ready, campaigns again, and once the faults stop leads again and reconciles the changes
//!   made meanwhile.

use std::time::{Duration, Instant};

use serde_json::json;
use spin_operator::controller::{ControllerConfig, ControllerState, Settings};
use spin_test_apiserver::{RequestMatcher, ResourceKey, TestApiServer};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[path = "support/leases.rs"]
mod leases;
use leases::{is_lease_write, operator_writes, tenures, writes_outside_tenures};
#[path = "support/pki.rs"]
mod pki;
#[path = "support/review_bodies.rs"]
#[allow(dead_code)] // the admission benches use the rest
mod review_bodies;

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
        // No Deployment controller in memory: nothing to wait for.
        status_hold: Duration::ZERO,
        ..Settings::default()
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

/// `spin-operator run` against the test API server, logs going to files in `dir`.
struct Process {
    child: tokio::process::Child,
    dir: tempfile::TempDir,
    http: reqwest::Client,
    health: String,
}

const WEBHOOK_HOST: &str = "webhook.test";

#[path = "support/ports.rs"]
mod ports;
use ports::free_port;

impl Process {
    fn start(server: &TestApiServer, webhook_port: u16, pki: &pki::Pki) -> Process {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tls.crt"), &pki.cert_pem).unwrap();
        std::fs::write(dir.path().join("tls.key"), &pki.key_pem).unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: {}\n\
                 users:\n- name: u\n  user:\n    token: not-a-real-token\ncontexts:\n- name: c\n  \
                 context:\n    cluster: t\n    user: u\n    namespace: default\ncurrent-context: c\n",
                server.url()
            ),
        )
        .unwrap();
        let health_port = free_port();
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_spin-operator"))
            .args(["run", "--log-format", "text", "--cert-dir"])
            .arg(dir.path())
            .args(["--webhook-addr", &format!("127.0.0.1:{webhook_port}")])
            .args(["--health-addr", &format!("127.0.0.1:{health_port}")])
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("POD_NAME", "pod-run")
            .env("POD_NAMESPACE", "default")
            .env("RUST_LOG", "info")
            .stdout(log("stdout"))
            .stderr(log("stderr"))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Process {
            child,
            dir,
            http: reqwest::Client::new(),
            health: format!("http://127.0.0.1:{health_port}"),
        }
    }

    fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name));
        format!(
            "stdout:\n{}\nstderr:\n{}",
            read("stdout").unwrap_or_default(),
            read("stderr").unwrap_or_default()
        )
    }

    /// Panics (with the operator's logs) if the process has exited.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("spin-operator exited with {status}\n{}", self.logs());
        }
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let resp = self
            .http
            .get(format!("{}{path}", self.health))
            .send()
            .await
            .ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.text().await.ok()?))
    }

    /// `spin_operator_controller_leader` from /metrics.
    async fn leader_gauge(&self) -> Option<i64> {
        let (_, body) = self.get("/metrics").await?;
        body.lines()
            .find_map(|l| l.strip_prefix("spin_operator_controller_leader "))
            .and_then(|v| v.trim().parse().ok())
    }

    async fn wait_for_leader_gauge(&mut self, want: i64) {
        let started = Instant::now();
        while self.leader_gauge().await != Some(want) {
            self.assert_running();
            assert!(
                started.elapsed() < WAIT,
                "spin_operator_controller_leader never became {want}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn deployment_image(server: &TestApiServer, name: &str) -> Option<String> {
    let d = server.get(
        &ResourceKey::of::<k8s_openapi::api::apps::v1::Deployment>(),
        Some("default"),
        name,
    )?;
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_losing_the_lease_stops_the_controllers_keeps_the_webhooks_and_leads_again() {
    let server = TestApiServer::start().await;
    server.put(json!({
        "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
        "metadata": {"name": "shim", "namespace": "default"},
        "spec": {"createDeployment": true, "deploymentConfig": {"runtimeClassName": "wasmtime-spin-v2"}}
    }));
    server.put(review_bodies::executor());
    server.put(app(0));
    let pki = pki::pki(WEBHOOK_HOST);
    let webhook_port = free_port();
    let mut op = Process::start(&server, webhook_port, &pki);
    let webhook = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca.pem().as_bytes()).unwrap())
        .resolve(
            WEBHOOK_HOST,
            std::net::SocketAddr::from(([127, 0, 0, 1], webhook_port)),
        )
        .build()
        .unwrap();
    let review = async || -> Option<serde_json::Value> {
        let resp = webhook
            .post(format!(
                "https://{WEBHOOK_HOST}:{webhook_port}{}",
                review_bodies::VALIDATE_APP
            ))
            .header("content-type", "application/json")
            .body(review_bodies::validate_body())
            .send()
            .await
            .ok()?;
        if resp.status() != 200 {
            return None;
        }
        resp.json().await.ok()
    };

    op.wait_for_leader_gauge(1).await;
    wait_until("app-000 reconciled while leading", || {
        deployment_image(&server, "app-000").is_some()
    })
    .await;

    // Every Lease request fails from now on, as if the apiserver were unreachable for them.
    server
        .faults()
        .fail_randomly(RequestMatcher::any().resource("leases"), 1.0, 503, 1);
    op.wait_for_leader_gauge(0).await;
    let stepped_down = server.mark();

    // Changes nobody may act on while no replica leads.
    server.put(app(1));
    let mut changed = app(0);
    changed["spec"]["image"] = json!("ghcr.io/example/app:v2");
    server.put(changed);
    // The outage lasts a while: the controllers would have acted on the changes by now if
    // they were still running; the webhooks answer and the replica stays ready throughout.
    for _ in 0..10 {
        let answer = review().await;
        let response = answer.as_ref().map(|r| &r["response"]);
        assert_eq!(
            response.map(|r| r["allowed"].clone()),
            Some(json!(true)),
            "the webhook answers while not leading: {answer:?}"
        );
        let ready = op.get("/readyz").await;
        assert!(
            ready.as_ref().is_some_and(|(status, _)| *status == 200),
            "/readyz while not leading: {ready:?}"
        );
        op.assert_running();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(op.leader_gauge().await, Some(0));

    server.faults().clear();
    op.wait_for_leader_gauge(1).await;
    let started = Instant::now();
    while deployment_image(&server, "app-000").as_deref() != Some("ghcr.io/example/app:v2")
        || deployment_image(&server, "app-001").is_none()
    {
        // Fresh controller caches filling do not take the replica out of the webhook Service.
        let ready = op.get("/readyz").await;
        assert!(
            ready.as_ref().is_some_and(|(status, _)| *status == 200),
            "/readyz while the controllers restart: {ready:?}"
        );
        op.assert_running();
        assert!(
            started.elapsed() < WAIT,
            "the changes made meanwhile were not reconciled\n{}",
            op.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let log = server.requests();
    let failed_campaigns = log
        .iter()
        .filter(|r| r.resource == "leases" && r.arrival_seq > stepped_down && r.status == 503)
        .count();
    assert!(failed_campaigns > 0, "it kept campaigning");
    let reacquired = log
        .iter()
        .filter(|r| is_lease_write(r) && r.arrival_seq > stepped_down)
        .map(|r| r.completion_seq)
        .min()
        .expect("a successful Lease write after the faults stopped");
    let while_not_leading: Vec<_> = log
        .iter()
        .filter(|r| {
            r.is_write()
                && r.resource != "leases"
                && r.arrival_seq > stepped_down
                && r.arrival_seq < reacquired
        })
        .collect();
    assert!(
        while_not_leading.is_empty(),
        "writes while not leading: {while_not_leading:#?}"
    );
    assert!(
        log.iter()
            .any(|r| r.is_write() && r.resource == "deployments" && r.arrival_seq > reacquired),
        "the Deployments are written after leading again"
    );

    // Still a clean shutdown after all that.
    let pid = op.child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(WAIT, op.child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status}\n{}", op.logs());
}
