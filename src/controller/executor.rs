//! The SpinAppExecutor controller: keeps a finalizer on executors and removes it only when no
//! SpinApp in the executor's namespace uses it.

use std::sync::Arc;
use std::time::Instant;

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, Event as FinalizerEvent};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};

use super::Settings;
use super::backoff::Backoff;
use super::error::ControllerError;
use super::events::Recorder;
use super::in_flight::InFlight;
use super::index::Index;
use super::metrics::Metrics;
use super::slim::Slim;
use super::spinapp::{AsRecorder, publish};
use crate::api::{EXECUTOR_FINALIZER, SpinApp, SpinAppExecutor};

/// Name of this controller in metrics and backoff keys.
pub const CONTROLLER: &str = "spinappexecutor";

/// Shared state of the executor controller.
pub struct Context {
    pub(crate) client: Client,
    /// Apps by the executor they name (see `spinapp::app_reference_index`).
    pub(crate) users: Index<Slim<SpinApp>>,
    pub(crate) recorder: Recorder,
    pub(crate) metrics: Metrics,
    pub(crate) backoff: Backoff,
    pub(crate) settings: Settings,
    /// True once the caches (including `apps`) listed.
    pub(crate) synced: tokio::sync::watch::Receiver<bool>,
    /// Finalizers added that the executor cache does not show yet (see `in_flight`).
    pub(crate) finalizers_added: InFlight<()>,
}

impl AsRecorder for Context {
    fn recorder(&self) -> &Recorder {
        &self.recorder
    }
}

fn key_of(e: &SpinAppExecutor) -> String {
    format!(
        "{CONTROLLER}/{}/{}",
        e.namespace().unwrap_or_default(),
        e.name_any()
    )
}

/// Names of the apps in the executor's namespace that use it, sorted.
pub fn users(apps: &Index<Slim<SpinApp>>, executor: &SpinAppExecutor) -> Vec<String> {
    let ns = executor.namespace().unwrap_or_default();
    super::spinapp::apps_using_executor(apps, &ns, &executor.name_any())
}

/// Apps indexed by their executor alone: what this controller asks. (The SpinApp controller's
/// index also holds each app's Secret and ConfigMap references.)
pub fn app_executor_index() -> Index<Slim<SpinApp>> {
    Index::new(|app: &Slim<SpinApp>| {
        executor_for_app(app)
            .map(|executor| {
                super::spinapp::executor_index_key(
                    executor.namespace.as_deref().unwrap_or_default(),
                    &executor.name,
                )
            })
            .into_iter()
            .collect()
    })
}

/// The executor for an app change (the app's executor in the app's namespace).
pub fn executor_for_app(app: &Slim<SpinApp>) -> Option<ObjectRef<SpinAppExecutor>> {
    let executor = app.decode_body::<AppExecutor>().ok()?.spec.executor;
    if executor.is_empty() {
        return None;
    }
    Some(ObjectRef::new(&executor).within(app.metadata.namespace.as_deref()?))
}

/// The one field of a SpinApp the executor controller reads.
#[derive(serde::Deserialize)]
struct AppExecutor {
    spec: AppExecutorSpec,
}

#[derive(serde::Deserialize)]
struct AppExecutorSpec {
    #[serde(default)]
    executor: String,
}

/// Controller entry point.
pub async fn reconcile(
    executor: Arc<SpinAppExecutor>,
    ctx: Arc<Context>,
) -> Result<Action, ControllerError> {
    let _running = ctx.metrics.running(CONTROLLER);
    let started = Instant::now();
    let result = reconcile_executor(executor.clone(), &ctx).await;
    let label = match &result {
        Ok(_) => "success",
        Err(e) => e.metric_label(),
    };
    ctx.metrics.observe(CONTROLLER, label, started.elapsed());
    if result.is_ok() {
        ctx.backoff.reset(&key_of(&executor));
    }
    result
}

async fn reconcile_executor(
    executor: Arc<SpinAppExecutor>,
    ctx: &Context,
) -> Result<Action, ControllerError> {
    let Some(ns) = executor.namespace() else {
        return Err(ControllerError::MissingMetadata(executor.name_any()));
    };
    // kube-runtime's finalizer helper adds the finalizer with a JSON patch that first tests the
    // finalizers the cached object shows: from a cache that has not caught up with the patch
    // (every app event triggers this reconcile) a second add fails with 422 Invalid. The add
    // this replica made is remembered until the cache shows another version.
    let key = key_of(&executor);
    let cached_rv = executor.metadata.resource_version.clone();
    let adding = executor.metadata.deletion_timestamp.is_none()
        && !executor
            .finalizers()
            .iter()
            .any(|f| f == EXECUTOR_FINALIZER);
    if !adding {
        ctx.finalizers_added.forget(&key);
    } else if ctx
        .finalizers_added
        .pending(&key, cached_rv.as_deref(), "")
        .is_some()
    {
        return Ok(Action::await_change());
    }
    let api: Api<SpinAppExecutor> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer::finalizer(&api, EXECUTOR_FINALIZER, executor, |event| async move {
        match event {
            FinalizerEvent::Apply(_) => Ok(Action::await_change()),
            FinalizerEvent::Cleanup(executor) => {
                // Never judge "unused" from a cache that has not listed all apps yet.
                let mut synced = ctx.synced.clone();
                let _ = synced.wait_for(|s| *s).await;
                let users = users(&ctx.users, &executor);
                if users.is_empty() {
                    return Ok(Action::await_change());
                }
                let shown: Vec<&str> = users.iter().take(5).map(String::as_str).collect();
                let apps = if users.len() > shown.len() {
                    format!("{}, …", shown.join(", "))
                } else {
                    shown.join(", ")
                };
                publish(
                    ctx,
                    executor.as_ref(),
                    EventType::Warning,
                    "DeletionBlocked",
                    "Delete",
                    format!(
                        "SpinAppExecutor is still used by {} SpinApp(s) in namespace {ns}: {apps}",
                        users.len()
                    ),
                )
                .await;
                Err(ControllerError::ExecutorInUse {
                    count: users.len(),
                    apps,
                })
            }
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::CleanupFailed(inner @ ControllerError::ExecutorInUse { .. }) => inner,
        other => ControllerError::Finalizer(Box::new(other)),
    });
    if adding && result.is_ok() {
        ctx.finalizers_added
            .record(key, cached_rv, String::new(), ());
    }
    result
}

/// Requeue policy: a blocked deletion waits for app changes (the app watch re-triggers), with a
/// slow safety recheck; other failures back off exponentially.
pub fn error_policy(
    executor: Arc<SpinAppExecutor>,
    err: &ControllerError,
    ctx: Arc<Context>,
) -> Action {
    match err {
        ControllerError::ExecutorInUse { .. } => Action::requeue(ctx.settings.resync),
        _ => {
            let delay = ctx.backoff.next_delay(&key_of(&executor));
            tracing::warn!(executor = %executor.name_any(), error = %err, ?delay, "executor reconcile failed");
            Action::requeue(delay)
        }
    }
}
