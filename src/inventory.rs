//! What the pure core may know about the cluster: executors, apps and referenced objects.
//!
//! The webhooks answer [`Lookup`] from watched caches, the offline commands from an
//! [`Inventory`] built from the input manifests, so both make the same decisions.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;

use crate::api::{SpinApp, SpinAppExecutor};

/// Namespace assumed for manifests that do not name one (as `kubectl apply` without `-n`).
pub const DEFAULT_NAMESPACE: &str = "default";

/// Whether an object is known to exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Present,
    Absent,
    /// Not watched or not synced: no warning should be raised either way.
    Unknown,
}

/// Read-only view of the cluster objects admission and rendering depend on.
pub trait Lookup: Send + Sync {
    /// The executor `name` in `namespace`.
    fn executor(&self, namespace: &str, name: &str) -> Option<SpinAppExecutor>;
    /// `spec.createDeployment` of the executor `name` in `namespace`, if it exists: what the
    /// SpinApp rules read of it (an implementation can answer without copying the executor).
    fn executor_creates_deployment(&self, namespace: &str, name: &str) -> Option<bool> {
        self.executor(namespace, name)
            .map(|e| e.spec.create_deployment)
    }
    /// Names of all executors in `namespace`, sorted.
    fn executor_names(&self, namespace: &str) -> Vec<String>;
    /// Names of the SpinApps in `namespace` whose `spec.executor` is `executor`, sorted.
    fn apps_using_executor(&self, namespace: &str, executor: &str) -> Vec<String>;
    /// Whether the Secret `name` exists in `namespace`.
    fn secret(&self, namespace: &str, name: &str) -> Presence;
    /// Whether the ConfigMap `name` exists in `namespace`.
    fn config_map(&self, namespace: &str, name: &str) -> Presence;
}

type Key = (String, String);

fn key_of<K: ResourceExt>(obj: &K) -> Key {
    (
        obj.namespace()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
        obj.name_any(),
    )
}

/// A fixed set of objects (from manifests or a test), keyed by namespace and name.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub apps: BTreeMap<Key, SpinApp>,
    pub executors: BTreeMap<Key, SpinAppExecutor>,
    pub secrets: BTreeMap<Key, Secret>,
    pub config_maps: BTreeMap<Key, ConfigMap>,
    /// When false, Secrets/ConfigMaps not in the inventory are [`Presence::Unknown`] rather than
    /// absent (an offline run only sees what it was given).
    pub complete: bool,
}

impl Inventory {
    pub fn add_app(&mut self, app: SpinApp) {
        self.apps.insert(key_of(&app), app);
    }
    pub fn add_executor(&mut self, executor: SpinAppExecutor) {
        self.executors.insert(key_of(&executor), executor);
    }
    pub fn add_secret(&mut self, secret: Secret) {
        self.secrets.insert(key_of(&secret), secret);
    }
    pub fn add_config_map(&mut self, config_map: ConfigMap) {
        self.config_maps.insert(key_of(&config_map), config_map);
    }
    pub fn get_secret(&self, namespace: &str, name: &str) -> Option<&Secret> {
        self.secrets.get(&(namespace.to_string(), name.to_string()))
    }
    pub fn get_config_map(&self, namespace: &str, name: &str) -> Option<&ConfigMap> {
        self.config_maps
            .get(&(namespace.to_string(), name.to_string()))
    }

    fn presence(&self, found: bool) -> Presence {
        match (found, self.complete) {
            (true, _) => Presence::Present,
            (false, true) => Presence::Absent,
            (false, false) => Presence::Unknown,
        }
    }
}

impl Lookup for Inventory {
    fn executor(&self, namespace: &str, name: &str) -> Option<SpinAppExecutor> {
        self.executors
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    fn executor_names(&self, namespace: &str) -> Vec<String> {
        // BTreeMap order is (namespace, name), so names come out sorted.
        self.executors
            .keys()
            .filter(|(ns, _)| ns == namespace)
            .map(|(_, name)| name.clone())
            .collect()
    }

    fn apps_using_executor(&self, namespace: &str, executor: &str) -> Vec<String> {
        self.apps
            .iter()
            .filter(|((ns, _), app)| ns == namespace && app.spec.executor == executor)
            .map(|((_, name), _)| name.clone())
            .collect()
    }

    fn secret(&self, namespace: &str, name: &str) -> Presence {
        self.presence(self.get_secret(namespace, name).is_some())
    }

    fn config_map(&self, namespace: &str, name: &str) -> Presence {
        self.presence(self.get_config_map(namespace, name).is_some())
    }
}
