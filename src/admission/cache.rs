//! [`Lookup`] answered from watched caches (kube reflectors), so an admission request answered
//! from them never calls the API server: the stores are filled by long-running watches started
//! once. (Only an executor a SpinApp review misses is fetched: `executor_fetch`.)
//!
//! - SpinAppExecutors: typed, full spec (the rules read `createDeployment`, `deploymentConfig`).
//! - SpinApps: untyped and stripped to `spec.executor`. Only the executor DELETE check reads
//!   them; keeping them untyped means an app that does not decode (e.g. created under an older
//!   CRD) cannot stall the watch and with it readiness.
//! - Secrets and ConfigMaps: metadata-only watches kept as a set of `namespace/name` strings
//!   ([`Names`]), for the "referenced object missing" warnings. Metadata-only keeps the API
//!   server from sending secret data at all, and nothing else of the metadata is kept (labels,
//!   annotations such as `kubectl.kubernetes.io/last-applied-configuration`, which for a Secret
//!   contains its data). Can be turned off ([`CacheConfig::watch_references`]), or for Secrets
//!   only ([`CacheConfig::watch_secrets`]); presence is then [`Presence::Unknown`] and no
//!   warning is raised.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::core::{ApiResource, DynamicObject, ObjectMeta, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector::store::Writer};
use kube::{Api, Client, Resource, ResourceExt};

use crate::api::{SpinApp, SpinAppExecutor};
use crate::inventory::{Lookup, Presence};
use crate::namespaces::WatchNamespaces;

use super::presence::Names;

/// What to watch.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Watch Secret and ConfigMap metadata (in the watched namespaces) for presence warnings.
    pub watch_references: bool,
    /// With `watch_references`, watch Secrets too. Off: whether a Secret exists is never told
    /// (a "not found" warning would tell users who may not read Secrets which names exist);
    /// Secret presence is then [`Presence::Unknown`] and ConfigMaps are still warned about.
    pub watch_secrets: bool,
    /// Namespaces watched (one watch each); default all.
    pub namespaces: WatchNamespaces,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            watch_references: true,
            watch_secrets: true,
            namespaces: WatchNamespaces::all(),
        }
    }
}

/// Read-only handles on the reflector stores. Holds no client: it cannot call the API server.
#[derive(Clone)]
pub struct CachedLookup {
    executors: Store<SpinAppExecutor>,
    apps: Store<DynamicObject>,
    secrets: Option<Names>,
    config_maps: Option<Names>,
}

/// The write side of the stores, fed by watches ([`CacheWriters::run`]) or directly by tests.
pub struct CacheWriters {
    /// Namespaces the watches of [`CacheWriters::run`] cover.
    pub namespaces: WatchNamespaces,
    pub executors: Writer<SpinAppExecutor>,
    pub apps: Writer<DynamicObject>,
    pub secrets: Option<Names>,
    pub config_maps: Option<Names>,
}

/// The SpinApp API resource, for the untyped app store.
pub fn spinapp_resource() -> ApiResource {
    ApiResource::erase::<SpinApp>(&())
}

/// Empty stores and their writers.
pub fn stores(config: CacheConfig) -> (CachedLookup, CacheWriters) {
    let (executors, executors_w) = reflector::store();
    let (apps, apps_w) = store_with(spinapp_resource());
    let names = |watched: bool| (config.watch_references && watched).then(Names::default);
    let (secrets, config_maps) = (names(config.watch_secrets), names(true));
    let (secrets_w, config_maps_w) = (secrets.clone(), config_maps.clone());
    (
        CachedLookup {
            executors,
            apps,
            secrets,
            config_maps,
        },
        CacheWriters {
            namespaces: config.namespaces,
            executors: executors_w,
            apps: apps_w,
            secrets: secrets_w,
            config_maps: config_maps_w,
        },
    )
}

/// `reflector::store()` needs `DynamicType: Default`; DynamicObject's is an ApiResource.
fn store_with(dyntype: ApiResource) -> (Store<DynamicObject>, Writer<DynamicObject>) {
    let writer = Writer::new(dyntype);
    (writer.as_reader(), writer)
}

/// Keep only what lookups read, so the caches stay small and hold no sensitive metadata.
fn slim_meta(meta: &ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    }
}

fn slim_app(app: &mut DynamicObject) {
    app.metadata = slim_meta(&app.metadata);
    let executor = app
        .data
        .pointer("/spec/executor")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    app.data = serde_json::json!({ "spec": { "executor": executor } });
}

fn slim_executor(executor: &mut SpinAppExecutor) {
    executor.managed_fields_mut().clear();
    executor.annotations_mut().clear();
}

impl CachedLookup {
    /// Resolves once every store has received its initial list.
    pub async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.executors.wait_until_ready().await?;
        self.apps.wait_until_ready().await?;
        for names in self.secrets.iter().chain(&self.config_maps) {
            names.wait_until_listed().await;
        }
        Ok(())
    }
}

fn presence(names: Option<&Names>, namespace: &str, name: &str) -> Presence {
    match names {
        None => Presence::Unknown,
        Some(names) if names.contains(namespace, name) => Presence::Present,
        Some(_) => Presence::Absent,
    }
}

impl Lookup for CachedLookup {
    fn executor(&self, namespace: &str, name: &str) -> Option<SpinAppExecutor> {
        self.executors
            .get(&ObjectRef::new(name).within(namespace))
            .map(|e| e.as_ref().clone())
    }

    fn executor_creates_deployment(&self, namespace: &str, name: &str) -> Option<bool> {
        self.executors
            .get(&ObjectRef::new(name).within(namespace))
            .map(|e| e.spec.create_deployment)
    }

    fn executor_names(&self, namespace: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .executors
            .state()
            .iter()
            .filter(|e| e.namespace().as_deref() == Some(namespace))
            .map(|e| e.name_any())
            .collect();
        names.sort();
        names
    }

    fn apps_using_executor(&self, namespace: &str, executor: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .apps
            .state()
            .iter()
            .filter(|a| {
                a.metadata.namespace.as_deref() == Some(namespace)
                    && a.data.pointer("/spec/executor").and_then(|v| v.as_str()) == Some(executor)
            })
            .map(|a| a.name_any())
            .collect();
        names.sort();
        names
    }

    fn secret(&self, namespace: &str, name: &str) -> Presence {
        presence(self.secrets.as_ref(), namespace, name)
    }

    fn config_map(&self, namespace: &str, name: &str) -> Presence {
        presence(self.config_maps.as_ref(), namespace, name)
    }
}

fn drive<K, S>(what: &'static str, writer: Writer<K>, stream: S) -> impl Future<Output = ()> + Send
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
    S: futures::Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
{
    // The watches retry with their own backoff (`WatchNamespaces::watch`).
    stream.reflect(writer).for_each(move |event| {
        if let Err(e) = event {
            tracing::warn!(watch = what, error = %e, "watch failed, retrying");
        }
        futures::future::ready(())
    })
}

fn drive_names<R, S>(what: &'static str, names: Names, stream: S) -> impl Future<Output = ()> + Send
where
    R: Resource,
    S: futures::Stream<Item = Result<Event<R>, watcher::Error>> + Send + 'static,
{
    stream.for_each(move |event| {
        match event {
            Ok(event) => names.apply(&event),
            Err(e) => tracing::warn!(watch = what, error = %e, "watch failed, retrying"),
        }
        futures::future::ready(())
    })
}

/// `Api` of `K` in one namespace, or in all.
fn api<K>(client: &Client) -> impl Fn(Option<&str>) -> Api<K> + use<K>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
{
    let client = client.clone();
    move |namespace| match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

impl CacheWriters {
    /// Feed the stores from watches of the watched namespaces (one per namespace and kind).
    /// Runs until dropped.
    pub async fn run(self, client: Client) {
        let config = watcher::Config::default().any_semantic();
        let namespaces = self.namespaces;
        let apps_api = {
            let client = client.clone();
            let resource = spinapp_resource();
            move |namespace: Option<&str>| match namespace {
                Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), ns, &resource),
                None => Api::<DynamicObject>::all_with(client.clone(), &resource),
            }
        };
        let mut tasks: Vec<futures::future::BoxFuture<'static, ()>> = vec![
            Box::pin(drive(
                "spinappexecutors",
                self.executors,
                namespaces
                    .watch(api::<SpinAppExecutor>(&client), config.clone(), ())
                    .modify(slim_executor),
            )),
            Box::pin(drive(
                "spinapps",
                self.apps,
                namespaces
                    .watch(apps_api, config.clone(), spinapp_resource())
                    .modify(slim_app),
            )),
        ];
        if let Some(names) = self.secrets {
            tasks.push(Box::pin(drive_names(
                "secrets",
                names,
                namespaces.watch(
                    api::<PartialObjectMeta<Secret>>(&client),
                    config.clone(),
                    (),
                ),
            )));
        }
        if let Some(names) = self.config_maps {
            tasks.push(Box::pin(drive_names(
                "configmaps",
                names,
                namespaces.watch(api::<PartialObjectMeta<ConfigMap>>(&client), config, ()),
            )));
        }
        futures::future::join_all(tasks).await;
    }
}

/// Shared handle type used by the server state.
pub fn shared(lookup: CachedLookup) -> Arc<dyn Lookup> {
    Arc::new(lookup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slimming_keeps_only_what_lookups_read() {
        let mut app: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
            "metadata": {"name": "a", "namespace": "apps", "annotations": {"x": "y"}},
            "spec": {"executor": "shim", "variables": [{"name": "k", "value": "secret-ish"}]},
        }))
        .unwrap();
        slim_app(&mut app);
        assert_eq!(app.data, serde_json::json!({"spec": {"executor": "shim"}}));
        assert!(app.metadata.annotations.is_none());
    }

    #[test]
    fn lookup_reads_what_the_writers_applied() {
        let (lookup, mut writers) = stores(CacheConfig {
            watch_references: false,
            ..CacheConfig::default()
        });
        let executor: SpinAppExecutor = serde_json::from_value(serde_json::json!({
            "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
            "metadata": {"name": "shim", "namespace": "apps"},
            "spec": {"createDeployment": false},
        }))
        .unwrap();
        writers
            .executors
            .apply_watcher_event(&Event::Apply(executor));
        assert_eq!(lookup.executor_names("apps"), ["shim"]);
        assert!(lookup.executor_names("other").is_empty());
        assert_eq!(lookup.secret("apps", "any"), Presence::Unknown);
    }
}
