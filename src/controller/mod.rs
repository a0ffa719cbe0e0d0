//! Controllers: the SpinApp reconciler and the SpinAppExecutor finalizer, run only while this
//! replica holds the leader Lease.
//!
//! Wiring: [`run`] with a [`ControllerConfig`]; [`ControllerState`] (a clone kept by the caller)
//! answers readiness; [`Metrics::register`] adds the metrics to the operator's registry.

mod backoff;
pub mod compare;
mod error;
pub mod events;
pub mod executor;
pub mod fetched;
pub mod heap;
pub mod held;
pub mod in_flight;
pub mod index;
pub mod leader;
mod metrics;
pub mod ownership;
pub mod slim;
pub mod spinapp;
pub mod status;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::core::PartialObjectMeta;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{Controller, PredicateConfig, WatchStreamExt, controller, watcher};
use kube::{Api, Client};
use tokio::sync::watch;

pub use backoff::Backoff;
pub use error::ControllerError;
pub use leader::{LeaderElectionConfig, LeaderElector};
pub use metrics::Metrics;
use slim::Slim;

use crate::api::{APP_NAME_LABEL, SpinApp, SpinAppExecutor};
use crate::namespaces::WatchNamespaces;

/// Tunables shared by both controllers.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Periodic re-reconcile of converged objects (a converged app makes no write on resync).
    pub resync: Duration,
    /// First retry delay after a failure; doubles per consecutive failure.
    pub backoff_base: Duration,
    /// Cap of the retry delay.
    pub backoff_max: Duration,
    /// Maximum concurrent reconciles per controller (0 = unbounded).
    pub concurrency: u16,
    /// Publish the Normal Event of a new app's first Ready condition (off: its Ready condition,
    /// with its lastTransitionTime, says the same; Events still mark every later change of
    /// Ready and every failure). One request per new app.
    pub creation_events: bool,
    /// Longest an app's status write waits for the Deployment controller's first report on a
    /// Deployment generation this operator just wrote, so that report is folded into the same
    /// write (see `held`). Zero writes at once.
    pub status_hold: Duration,
}

impl Settings {
    /// The resync period of one object, spread by up to +10 % by a hash of its name, so that
    /// apps listed together (operator start, relist) do not all resync in the same instant.
    pub fn resync_for(&self, namespace: &str, name: &str) -> Duration {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (namespace, name).hash(&mut hasher);
        let spread = self.resync / 10;
        let nanos = u64::try_from(spread.as_nanos()).unwrap_or(u64::MAX);
        self.resync + Duration::from_nanos(hasher.finish() % nanos.max(1))
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            resync: Duration::from_secs(300),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            concurrency: 8,
            creation_events: false,
            status_hold: Duration::from_secs(10),
        }
    }
}

/// Configuration of [`run`].
#[derive(Clone)]
pub struct ControllerConfig {
    /// Leader election; `None` runs the controllers unconditionally (single replica, tests).
    pub leader_election: Option<LeaderElectionConfig>,
    /// Reporting instance of Events (the pod name).
    pub identity: String,
    /// Tunables.
    pub settings: Settings,
    /// Metrics handles (register them with [`Metrics::register`]; the default is unregistered).
    pub metrics: Metrics,
    /// Shared state for readiness probes; keep a clone.
    pub state: ControllerState,
    /// Namespaces whose apps are reconciled (and whose objects are watched); default all.
    pub namespaces: WatchNamespaces,
}

impl ControllerConfig {
    /// Config with leader election on Lease `spin-operator-leader` in `namespace`, identity
    /// `identity` (the pod name), default settings and unregistered metrics.
    pub fn new(identity: impl Into<String>, namespace: impl Into<String>) -> Self {
        let identity = identity.into();
        ControllerConfig {
            leader_election: Some(LeaderElectionConfig::new(
                DEFAULT_LEASE_NAME,
                namespace,
                identity.clone(),
            )),
            identity,
            settings: Settings::default(),
            metrics: Metrics::default(),
            state: ControllerState::default(),
            namespaces: WatchNamespaces::all(),
        }
    }
}

impl ControllerConfig {
    /// [`ControllerConfig::new`] with identity from `POD_NAME` (else `HOSTNAME`, else
    /// `spin-operator`) and the Lease namespace from `POD_NAMESPACE` (else the in-cluster service
    /// account namespace file, else `default`).
    pub fn from_env() -> Self {
        let identity = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "spin-operator".to_string());
        let namespace = std::env::var("POD_NAMESPACE")
            .ok()
            .or_else(|| {
                std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                    .ok()
                    .map(|s| s.trim().to_string())
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".to_string());
        ControllerConfig::new(identity, namespace)
    }
}

/// How often freed heap is handed back to the OS while leading (see `heap`).
pub const HEAP_TRIM_INTERVAL: Duration = Duration::from_secs(30);

/// Name of the leader Lease.
pub const DEFAULT_LEASE_NAME: &str = "spin-operator-leader";
/// Reporting controller name of Events.
pub const REPORTING_CONTROLLER: &str = "spin-operator";

/// Leader and cache state, for readiness probes and tests. Clones share the state.
#[derive(Clone, Default)]
pub struct ControllerState {
    inner: Arc<StateInner>,
}

#[derive(Default)]
struct StateInner {
    leading: AtomicBool,
    synced: AtomicBool,
    /// Latched on the first sync: see [`ControllerState::is_ready`].
    synced_once: AtomicBool,
}

impl ControllerState {
    /// Whether this replica currently leads (runs the controllers).
    pub fn is_leader(&self) -> bool {
        self.inner.leading.load(Ordering::SeqCst)
    }
    /// Whether the leader's caches finished their initial list.
    pub fn caches_synced(&self) -> bool {
        self.inner.synced.load(Ordering::SeqCst)
    }
    /// Readiness: a standby replica is ready (it serves webhooks); the leader once its caches
    /// are synced for the first time. Readiness only routes webhook traffic, so controllers
    /// restarting after a lost and re-won Lease do not take a serving replica out of the
    /// webhook Service while their fresh caches fill.
    pub fn is_ready(&self) -> bool {
        !self.is_leader() || self.caches_synced() || self.inner.synced_once.load(Ordering::SeqCst)
    }
    fn set_leading(&self, v: bool) {
        self.inner.leading.store(v, Ordering::SeqCst);
        if !v {
            self.inner.synced.store(false, Ordering::SeqCst);
        }
    }
    fn set_synced(&self, v: bool) {
        self.inner.synced.store(v, Ordering::SeqCst);
        if v {
            self.inner.synced_once.store(true, Ordering::SeqCst);
        }
    }
}

/// Runs leader election and, while leading, both controllers; returns after `shutdown` resolves
/// (releasing the lease) or when the controllers stop unexpectedly.
///
/// Losing the Lease (renewals failing or hanging past the renew deadline, or another holder)
/// is not an error: the controllers are dropped at once (no write of a non-leader), the elector
/// keeps campaigning, and on winning again the controllers restart with fresh caches.
pub async fn run(
    client: Client,
    config: ControllerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ControllerError> {
    let Some(le) = config.leader_election.clone() else {
        // No election: lead unconditionally while `run` lives (the sender stays in scope). The
        // gauge says so too, or a "no leader" alert would fire for a single-replica install.
        let (_always, leading) = watch::channel(true);
        config.metrics.set_leader(true);
        let result = lead_loop(client, &config, leading, shutdown).await;
        config.state.set_leading(false);
        config.metrics.set_leader(false);
        return result;
    };
    let elector = LeaderElector::new(client.clone(), le, config.metrics.clone());
    let leading = elector.subscribe();
    let (stop_tx, stop_rx) = watch::channel(false);
    // The elector runs inside this future (not spawned): dropping `run` (a crash) stops renewals
    // without releasing, while a graceful shutdown releases the lease after the controllers stop.
    let controllers = async {
        let result = lead_loop(client, &config, leading, shutdown).await;
        config.state.set_leading(false);
        let _ = stop_tx.send(true);
        result
    };
    let (result, ()) = tokio::join!(controllers, elector.run(stop_future(&stop_rx)));
    result
}

async fn lead_loop(
    client: Client,
    config: &ControllerConfig,
    mut leading: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ControllerError> {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            closed = async { leading.wait_for(|l| *l).await.is_err() } => {
                if closed {
                    return Ok(());
                }
            }
        }
        config.state.set_leading(true);
        tracing::info!("leading: starting controllers");
        let (graceful_tx, graceful_rx) = watch::channel(false);
        let controllers = run_controllers(client.clone(), config, graceful_rx);
        tokio::pin!(controllers);
        tokio::select! {
            r = &mut controllers => {
                config.state.set_leading(false);
                return r;
            }
            _ = async { leading.wait_for(|l| !*l).await.map(|_| ()) } => {
                // Stop at once: another replica may take over after the lease expires.
                tracing::warn!("lost leadership: stopping controllers");
                config.state.set_leading(false);
            }
            _ = &mut shutdown => {
                let _ = graceful_tx.send(true);
                let _ = tokio::time::timeout(Duration::from_secs(10), &mut controllers).await;
                return Ok(());
            }
        }
    }
}

fn stop_future(rx: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + Sync + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
    .boxed()
    .shared()
}

use slim::LAST_APPLIED_ANNOTATION;

/// Drops what the controllers never read but every cached object carries: `managedFields` (about
/// as large as the object for server-side-applied children) and kubectl's last-applied copy.
/// ([`Slim`] objects drop them from their JSON when decoded; this covers the typed kinds.)
fn slim<K: kube::Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
}

/// What a watched and cached kind must be.
trait Watched:
    kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Watched for K where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// A watch of kind `K` in the watched namespaces (one per namespace, merged) with cached objects
/// slimmed ([`slim`]) and, when given, `index` updated from the same events. Watch errors (410
/// Gone, dropped connections) are retried by the watcher's own backoff; they are logged and dropped here, because an error reaching the controller's merged
/// trigger stream throttles the triggers of every watched kind.
fn watch_events<K>(
    watched: &Watch,
    wc: watcher::Config,
    index: Option<index::Index<K>>,
) -> impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Watched,
{
    let client = watched.client.clone();
    let api = move |namespace: Option<&str>| match namespace {
        Some(ns) => Api::<K>::namespaced(client.clone(), ns),
        None => Api::<K>::all(client.clone()),
    };
    watched
        .namespaces
        .watch(api, wc, ())
        .modify(slim)
        .map(move |event| {
            if let (Some(index), Ok(event)) = (&index, &event) {
                index.apply_watcher_event(event);
            }
            event
        })
        .filter_map(|r| {
            futures::future::ready(match r {
                Ok(event) => Some(Ok(event)),
                Err(watcher::Error::WatchError(s)) if s.code == 410 => {
                    tracing::debug!(kind = K::kind(&()).as_ref(), "watch history expired; relisting");
                    None
                }
                Err(e) => {
                    tracing::warn!(kind = K::kind(&()).as_ref(), error = %e, "watch error; retrying");
                    None
                }
            })
        })
}

/// What re-triggers an app's reconcile from its own watch: a new spec (`generation`), another
/// object under the same name (`uid`) and its deletion. Status-only changes are not: the operator
/// is the status's only writer, so they are its own writes coming back, and reconciling on each
/// re-rendered and compared every child for nothing (a third of the reconciles while a fleet
/// converges: docs/benchmarks-history.md). The cache still takes every event; a status someone
/// else changed is rewritten at the app's next trigger or resync. The app's labels and
/// annotations are not read by its reconcile.
fn app_trigger(app: &Slim<SpinApp>) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    app.metadata.generation.hash(&mut hasher);
    app.metadata.deletion_timestamp.is_some().hash(&mut hasher);
    // An undecodable body hashes as no uid: its reconcile reports the decode error.
    app.uid().ok().flatten().hash(&mut hasher);
    Some(hasher.finish())
}

/// What re-triggers an app's reconcile from its Deployment: what the reconcile compares or
/// reports. Identity, deletion, `generation` (the spec), labels, annotations (but the
/// Deployment controller's revision counter) and owner references; of the status, whether the Deployment controller has reported on this
/// generation and, once it has, `readyReplicas` and the mirrored conditions' statuses and
/// reported reasons ([`status::reported_reason`]). Not the rest of kube-controller-manager's
/// reports (replica counts, messages, `lastUpdateTime`): each was a reconcile that rendered and
/// compared every child for nothing while a fleet's pods are created. The cache still takes
/// every event.
fn deployment_trigger(deployment: &Slim<Deployment>) -> u64 {
    use serde_json::value::RawValue;
    use std::hash::{Hash, Hasher};
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        metadata: Meta,
        status: Option<Report>,
    }
    #[derive(serde::Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    struct Meta {
        uid: Option<String>,
        labels: Option<Box<RawValue>>,
        annotations: Option<std::collections::BTreeMap<String, String>>,
        owner_references: Option<Box<RawValue>>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Report {
        observed_generation: Option<i64>,
        ready_replicas: Option<i32>,
        #[serde(default)]
        conditions: Vec<Condition>,
    }
    #[derive(serde::Deserialize)]
    struct Condition {
        #[serde(rename = "type", default)]
        type_: String,
        #[serde(default)]
        status: String,
        #[serde(default)]
        reason: String,
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let meta = &deployment.metadata;
    (meta.generation, meta.deletion_timestamp.is_some()).hash(&mut hasher);
    let Ok(body) = deployment.decode_body::<Body>() else {
        // Undecodable: every change triggers (its reconcile reports the decode error).
        meta.resource_version.hash(&mut hasher);
        return hasher.finish();
    };
    let raw = |r: &Option<Box<RawValue>>| r.as_ref().map(|r| r.get().to_string());
    let mut annotations = body.metadata.annotations.unwrap_or_default();
    // The Deployment controller's rollout counter, set with its first report: not ours.
    annotations.remove("deployment.kubernetes.io/revision");
    (
        &body.metadata.uid,
        raw(&body.metadata.labels),
        annotations,
        raw(&body.metadata.owner_references),
    )
        .hash(&mut hasher);
    let reported = body.status.filter(|s| match meta.generation {
        Some(generation) => s.observed_generation.is_some_and(|o| o >= generation),
        None => true,
    });
    if let Some(report) = reported {
        report.ready_replicas.hash(&mut hasher);
        for c in report
            .conditions
            .iter()
            .filter(|c| c.type_ == status::AVAILABLE || c.type_ == status::PROGRESSING)
        {
            (&c.type_, &c.status, status::reported_reason(&c.reason)).hash(&mut hasher);
        }
    } else {
        "unreported".hash(&mut hasher);
    }
    hasher.finish()
}

/// Passes the watch events whose object's `trigger` hash changed (and every deletion and
/// relist marker); the reflector before it has stored every event. A relist clears what was
/// seen, so its objects trigger as they did before.
fn changed_only<K, S>(
    events: S,
    trigger: fn(&K) -> u64,
) -> impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Watched,
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let mut seen: std::collections::HashMap<(String, String), u64> = Default::default();
    let key = |obj: &K| {
        let meta = obj.meta();
        (
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    };
    events.filter(move |event| {
        let pass = match event {
            Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                let hash = trigger(obj);
                seen.insert(key(obj), hash) != Some(hash)
            }
            Ok(watcher::Event::Delete(obj)) => {
                seen.remove(&key(obj));
                true
            }
            Ok(watcher::Event::Init) => {
                seen.clear();
                true
            }
            Ok(watcher::Event::InitDone) | Err(_) => true,
        };
        futures::future::ready(pass)
    })
}

/// Where the controllers' watches go: a client and the watched namespaces.
struct Watch {
    client: Client,
    namespaces: WatchNamespaces,
}

/// Builds a reflector-backed trigger stream whose store doubles as the controller's cache.
fn reflected<K>(
    watched: &Watch,
    wc: watcher::Config,
    index: Option<index::Index<K>>,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Watched,
{
    let (reader, writer) = reflector::store();
    let stream = watch_events(watched, wc, index)
        .reflect(writer)
        .touched_objects();
    (reader, stream)
}

/// [`reflected`], triggering only when `trigger` of an object changes ([`changed_only`]).
fn reflected_changes<K>(
    watched: &Watch,
    wc: watcher::Config,
    trigger: fn(&K) -> u64,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Watched,
{
    let (reader, writer) = reflector::store();
    let events = watch_events(watched, wc, None).reflect(writer);
    (reader, changed_only(events, trigger).touched_objects())
}

/// Metadata-only watch of `K` in the watched namespaces as a trigger stream; `observe` sees every
/// event first (to invalidate what was fetched of a changed object).
fn metadata_triggers<K>(
    watched: &Watch,
    observe: impl Fn(&watcher::Event<PartialObjectMeta<K>>) + Send + 'static,
) -> impl futures::Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
where
    K: Watched,
    PartialObjectMeta<K>: Watched,
{
    watch_events::<PartialObjectMeta<K>>(watched, watcher::Config::default(), None)
        .map(move |event| {
            if let Ok(event) = &event {
                observe(event);
            }
            event
        })
        .touched_objects()
}

async fn run_controllers(
    client: Client,
    config: &ControllerConfig,
    graceful: watch::Receiver<bool>,
) -> Result<(), ControllerError> {
    let settings = config.settings.clone();
    let recorder = events::Recorder::new(
        client.clone(),
        Reporter {
            controller: REPORTING_CONTROLLER.to_string(),
            instance: Some(config.identity.clone()),
        },
    );
    let watched = &Watch {
        client: client.clone(),
        namespaces: config.namespaces.clone(),
    };
    let children = watcher::Config::default().labels(APP_NAME_LABEL);
    // Children and referenced objects are cached slim (metadata decoded, the rest as JSON text).
    let (deployments, deployment_stream) =
        reflected_changes::<Slim<Deployment>>(watched, children.clone(), deployment_trigger);
    let (services, service_stream) = reflected::<Slim<Service>>(watched, children.clone(), None);
    // The runtime-config Secrets (ours and upstream's carry the app-name label) are compared
    // with their desired content, so they are cached whole.
    let generated_secrets = spinapp::generated_secret_index();
    let (child_secrets, child_secret_stream) =
        reflected::<Slim<Secret>>(watched, children, Some(generated_secrets.clone()));
    // Any other Secret or ConfigMap in a namespace may be referenced: watched as metadata only,
    // which re-triggers the apps naming one and invalidates what was fetched of it.
    let referenced = spinapp::Referenced::default();
    let secret_stream = metadata_triggers::<Secret>(watched, {
        let referenced = referenced.clone();
        move |event| {
            referenced.secrets.observe(event);
            referenced.ca_secrets.observe(event);
        }
    });
    let config_map_stream = metadata_triggers::<ConfigMap>(watched, {
        let referenced = referenced.clone();
        move |event| referenced.config_maps.observe(event)
    });
    let (executors, executor_stream) =
        reflected::<SpinAppExecutor>(watched, watcher::Config::default(), None);

    let (synced_tx, synced_rx) = watch::channel(false);
    let ctl_config = controller::Config::default().concurrency(settings.concurrency);
    // The controllers' own watches go through `reflected` too, so no watch error throttles them.
    let app_refs = spinapp::app_reference_index();
    let (apps, app_stream) =
        reflected::<Slim<SpinApp>>(watched, watcher::Config::default(), Some(app_refs.clone()));
    let app_stream = app_stream.predicate_filter(app_trigger, PredicateConfig::default());
    let app_controller = Controller::for_stream(app_stream, apps).with_config(ctl_config.clone());

    let ctx = Arc::new(spinapp::Context {
        client: client.clone(),
        executors: executors.clone(),
        deployments: deployments.clone(),
        services: services.clone(),
        child_secrets: child_secrets.clone(),
        generated_secrets: generated_secrets.clone(),
        referenced: referenced.clone(),
        in_flight: Default::default(),
        held: Default::default(),
        recorder: recorder.clone(),
        metrics: config.metrics.clone(),
        backoff: Backoff::new(settings.backoff_base, settings.backoff_max),
        settings: settings.clone(),
        synced: synced_rx.clone(),
    });

    let (refs_for_exec, refs_for_sec, refs_for_cm) =
        (app_refs.clone(), app_refs.clone(), app_refs.clone());
    let exec_for_sec = executors.clone();
    let app_run = app_controller
        .watches_stream(deployment_stream, |d| spinapp::owner_apps(&d))
        .watches_stream(service_stream, |s| spinapp::owner_apps(&s))
        .watches_stream(child_secret_stream, |s| spinapp::owner_apps(&s))
        .watches_stream(secret_stream, move |s| {
            spinapp::apps_for_secret(&refs_for_sec, &exec_for_sec, &s.metadata)
        })
        .watches_stream(config_map_stream, move |c| {
            spinapp::apps_for_config_map(&refs_for_cm, &c.metadata)
        })
        .watches_stream(executor_stream, move |e| {
            spinapp::apps_for_executor(&refs_for_exec, &e)
        })
        .graceful_shutdown_on(stop_future(&graceful))
        .run(spinapp::reconcile, spinapp::error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "spinapp controller event");
            }
        });

    // The executor controller indexes apps by executor from its own SpinApp watch, so the index
    // is updated before that watch's triggers fire; it caches no SpinApp objects.
    let exec_users = executor::app_executor_index();
    let exec_app_stream = watch_events::<Slim<SpinApp>>(
        watched,
        watcher::Config::default(),
        Some(exec_users.clone()),
    )
    .touched_objects();
    let (exec_main, exec_main_stream) =
        reflected::<SpinAppExecutor>(watched, watcher::Config::default(), None);
    let exec_controller =
        Controller::for_stream(exec_main_stream, exec_main).with_config(ctl_config);
    let exec_ctx = Arc::new(executor::Context {
        client: client.clone(),
        users: exec_users.clone(),
        recorder,
        metrics: config.metrics.clone(),
        backoff: Backoff::new(settings.backoff_base, settings.backoff_max),
        settings,
        synced: synced_rx,
        finalizers_added: Default::default(),
    });
    let exec_run = exec_controller
        .watches_stream(exec_app_stream, |a| executor::executor_for_app(&a))
        .graceful_shutdown_on(stop_future(&graceful))
        .run(executor::reconcile, executor::error_policy, exec_ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "executor controller event");
            }
        });

    // `Store::wait_until_ready` wakes only one waiting task (kube-runtime's DelayedInit keeps a
    // single waker), so this is the only waiter on these stores; reconcilers wait on `synced_tx`.
    // The controllers' own stores are waited on by kube-runtime itself.
    let state = config.state.clone();
    let synced = async move {
        let _ = futures::join!(
            executors.wait_until_ready(),
            deployments.wait_until_ready(),
            services.wait_until_ready(),
            child_secrets.wait_until_ready(),
            generated_secrets.wait_until_ready(),
            app_refs.wait_until_ready(),
            exec_users.wait_until_ready(),
        );
        let _ = synced_tx.send(true);
        state.set_synced(true);
        tracing::info!("controller caches synced");
        // The initial lists are the allocation peak; release it, then keep trimming what churn
        // frees, and drop what was fetched of objects no longer referenced.
        loop {
            heap::release_free_memory();
            tokio::time::sleep(HEAP_TRIM_INTERVAL).await;
            referenced.prune(&app_refs, &executors);
            ctx.held
                .prune(std::time::Instant::now(), ctx.settings.status_hold);
        }
    };

    // On a graceful stop both controllers end; wait for the second too, so its in-flight
    // reconciles finish before the lease is released.
    tokio::pin!(app_run, exec_run);
    tokio::select! {
        _ = &mut app_run => {
            if *graceful.borrow() {
                exec_run.await;
            }
        }
        _ = &mut exec_run => {
            if *graceful.borrow() {
                app_run.await;
            }
        }
        _ = synced => {}
    }
    if *graceful.borrow() {
        Ok(())
    } else {
        Err(ControllerError::Stopped("spinapp/spinappexecutor"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_waits_for_the_first_sync_only() {
        let state = ControllerState::default();
        assert!(state.is_ready(), "a standby serves webhooks");

        let leader_at_start = ControllerState::default();
        leader_at_start.set_leading(true);
        assert!(!leader_at_start.is_ready(), "caches not synced yet");
        leader_at_start.set_synced(true);
        assert!(leader_at_start.is_ready());
        // Lease lost, then won again: the controllers restart with empty caches.
        leader_at_start.set_leading(false);
        assert!(leader_at_start.is_ready());
        leader_at_start.set_leading(true);
        assert!(!leader_at_start.caches_synced());
        assert!(leader_at_start.is_ready(), "stays ready while re-syncing");

        // A standby winning the Lease for the first time waits for its caches, as at start.
        state.set_leading(true);
        assert!(!state.is_ready());
        state.set_synced(true);
        assert!(state.is_ready());
    }

    #[test]
    fn apps_trigger_on_spec_identity_and_deletion_not_on_status() {
        let app = |generation: i64, uid: &str, status: &str, deleting: bool| -> Slim<SpinApp> {
            let mut meta = serde_json::json!({"name": "a", "namespace": "ns", "uid": uid,
                                              "generation": generation, "resourceVersion": status});
            if deleting {
                meta["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
            }
            serde_json::from_value(serde_json::json!({
                "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp", "metadata": meta,
                "spec": {"image": "i", "executor": "e"}, "status": {"readyReplicas": status.len()}
            }))
            .unwrap()
        };
        let base = app_trigger(&app(1, "u1", "1", false));
        assert_eq!(base, app_trigger(&app(1, "u1", "22", false)), "status only");
        assert_ne!(base, app_trigger(&app(2, "u1", "1", false)), "spec");
        assert_ne!(base, app_trigger(&app(1, "u2", "1", false)), "re-created");
        assert_ne!(base, app_trigger(&app(1, "u1", "1", true)), "deleting");
    }

    fn deployment(annotations: serde_json::Value, status: serde_json::Value) -> Slim<Deployment> {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "hello", "namespace": "ns", "uid": "u1", "generation": 1,
                         "resourceVersion": status.to_string().len().to_string(),
                         "labels": {"core.spinkube.dev/app-name": "hello"},
                         "annotations": annotations},
            "spec": {"replicas": 2},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn deployments_trigger_on_what_the_app_reports_not_on_every_controller_report() {
        use serde_json::json;
        let progressing = |reason: &str, message: &str| {
            json!({"type": "Progressing", "status": "True", "reason": reason, "message": message,
                   "lastUpdateTime": message.len().to_string()})
        };
        let unavailable = json!({"type": "Available", "status": "False",
                                 "reason": "MinimumReplicasUnavailable"});
        let revision = json!({"deployment.kubernetes.io/revision": "1"});
        let created = deployment_trigger(&deployment(json!({}), json!({})));
        // kube-controller-manager's reports in order (see controller_scenarios).
        let new_rs = deployment_trigger(&deployment(
            revision.clone(),
            json!({"conditions": [progressing("NewReplicaSetCreated", "Created")]}),
        ));
        let first = deployment_trigger(&deployment(
            revision.clone(),
            json!({"observedGeneration": 1, "unavailableReplicas": 2,
                   "conditions": [unavailable, progressing("NewReplicaSetCreated", "Created")]}),
        ));
        let pods = deployment_trigger(&deployment(
            revision.clone(),
            json!({"observedGeneration": 1, "replicas": 2, "unavailableReplicas": 2,
                   "conditions": [unavailable, progressing("ReplicaSetUpdated", "is progressing")]}),
        ));
        let ready = deployment_trigger(&deployment(
            revision.clone(),
            json!({"observedGeneration": 1, "readyReplicas": 2, "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                progressing("NewReplicaSetAvailable", "done")]}),
        ));
        assert_eq!(created, new_rs, "not reported on yet either way");
        assert_ne!(new_rs, first, "the first report on this generation");
        assert_eq!(first, pods, "pods created: nothing the app reports");
        assert_ne!(pods, ready);
        // Someone else's annotation or label matters (drift); so would the spec (generation).
        let edited = deployment_trigger(&deployment(json!({"team": "x"}), json!({})));
        assert_ne!(created, edited);
    }

    #[tokio::test]
    async fn changed_only_passes_changes_deletions_and_relists() {
        use futures::StreamExt;
        use serde_json::json;
        let d = |status| deployment(json!({}), status);
        let same = json!({"replicas": 1});
        let events = vec![
            watcher::Event::Apply(d(json!({}))),
            watcher::Event::Apply(d(same.clone())),
            watcher::Event::Apply(d(json!({"observedGeneration": 1}))),
            watcher::Event::Delete(d(json!({"observedGeneration": 1}))),
            watcher::Event::Init,
            watcher::Event::InitApply(d(json!({}))),
            watcher::Event::InitDone,
        ];
        let passed: Vec<String> = changed_only(
            futures::stream::iter(events.into_iter().map(Ok)),
            deployment_trigger,
        )
        .map(|e| {
            match e.unwrap() {
                watcher::Event::Apply(_) => "apply",
                watcher::Event::Delete(_) => "delete",
                watcher::Event::Init => "init",
                watcher::Event::InitApply(_) => "init-apply",
                watcher::Event::InitDone => "init-done",
            }
            .to_string()
        })
        .collect()
        .await;
        assert_eq!(
            passed,
            [
                "apply",
                "apply",
                "delete",
                "init",
                "init-apply",
                "init-done"
            ],
            "the replica count alone triggers nothing"
        );
    }

    #[test]
    fn resync_is_spread_by_up_to_a_tenth_and_stable_per_object() {
        let settings = Settings {
            resync: Duration::from_secs(300),
            ..Settings::default()
        };
        let periods: std::collections::BTreeSet<Duration> = (0..200)
            .map(|i| settings.resync_for("default", &format!("app-{i}")))
            .collect();
        assert!(
            periods
                .iter()
                .all(|p| *p >= settings.resync && *p < settings.resync + Duration::from_secs(30))
        );
        // Spread, not one instant.
        assert!(periods.len() > 150, "{} distinct periods", periods.len());
        assert_eq!(
            settings.resync_for("ns", "a"),
            settings.resync_for("ns", "a")
        );
        let tiny = Settings {
            resync: Duration::from_nanos(5),
            ..Settings::default()
        };
        assert_eq!(tiny.resync_for("ns", "a"), Duration::from_nanos(5));
    }
}
