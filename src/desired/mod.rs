//! Desired state: the pure function from a SpinApp (+ executor + referenced objects) to its children.
//!
//! [`build`] mirrors upstream spin-operator's `constructDeployment`, `constructService` and runtime
//! config rendering field for field, so that an app reconciled by either operator gets the same
//! Deployment (and so does not roll when clusters switch). It does no I/O: the caller supplies the
//! referenced Secrets and ConfigMaps through [`References`].
//!
//! Deliberate differences from upstream (all invisible to an app that does not hit them):
//! - a missing referenced key is an error ([`DesiredError::MissingKey`]); upstream renders `''`.
//!   `optional: true` references resolve to `''` instead of failing.
//! - `loadFromSecret` naming a missing Secret or key is an error; upstream mounts it anyway
//!   (optional volume) and the container then fails on the subPath mount.
//! - the generated runtime-config Secret carries a controller owner reference (upstream: a plain
//!   owner reference); Secrets do not affect pods, so nothing rolls.
//! - owner references are omitted when the app has no uid (offline `render`).

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};

use crate::api::{RUNTIME_CONFIG_KEY, SpinApp, SpinAppExecutor};
use crate::inventory::Inventory;

mod ca;
mod deployment;
mod hash;
mod labels;
mod runtime_config;
mod service;

pub use ca::{CA_BUNDLE_KEY, CaSecret, default_ca_bundle};
pub use hash::runtime_config_hash;
pub use runtime_config::render_runtime_config;

/// Referenced objects in the app's namespace. [`Inventory`] implements it; the controller
/// implements it over its caches.
pub trait References {
    fn secret(&self, namespace: &str, name: &str) -> Option<&Secret>;
    fn config_map(&self, namespace: &str, name: &str) -> Option<&ConfigMap>;
}

impl References for Inventory {
    fn secret(&self, namespace: &str, name: &str) -> Option<&Secret> {
        self.get_secret(namespace, name)
    }
    fn config_map(&self, namespace: &str, name: &str) -> Option<&ConfigMap> {
        self.get_config_map(namespace, name)
    }
}

/// The objects the operator keeps for one SpinApp.
#[derive(Debug, Clone, PartialEq)]
pub struct Children {
    /// None when the executor has `createDeployment: false`.
    pub deployment: Option<Deployment>,
    pub service: Service,
    /// Generated `<app>-<hash>` Secret holding `runtime-config.toml`; None with `loadFromSecret`
    /// or when no Deployment is created.
    pub runtime_config_secret: Option<Secret>,
    /// Shared per-namespace CA bundle: create if absent, never overwrite, no owner reference.
    pub ca_secret: Option<CaSecret>,
}

/// Why the children of an app cannot be built. Messages name objects and keys, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DesiredError {
    #[error("Secret {name:?} referenced by the app does not exist")]
    MissingSecret { name: String },
    #[error("ConfigMap {name:?} referenced by the app does not exist")]
    MissingConfigMap { name: String },
    #[error("{kind} {name:?} has no key {key:?}")]
    MissingKey {
        kind: &'static str,
        name: String,
        key: String,
    },
    #[error("invalid runtime config: {reason}")]
    InvalidRuntimeConfig { reason: String },
    #[error("invalid executor: {reason}")]
    InvalidExecutor { reason: String },
    #[error("invalid spec.{field}: {reason}")]
    InvalidSpec { field: String, reason: String },
}

impl DesiredError {
    /// CamelCase reason for status conditions and events.
    pub fn reason(&self) -> &'static str {
        match self {
            DesiredError::MissingSecret { .. } => "MissingSecret",
            DesiredError::MissingConfigMap { .. } => "MissingConfigMap",
            DesiredError::MissingKey { .. } => "MissingKey",
            DesiredError::InvalidRuntimeConfig { .. } => "InvalidRuntimeConfig",
            DesiredError::InvalidExecutor { .. } => "InvalidExecutor",
            DesiredError::InvalidSpec { .. } => "InvalidSpec",
        }
    }
}

/// Names of the Secrets and ConfigMaps (in the app's namespace) whose content [`build`] reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Referenced {
    pub secrets: BTreeSet<String>,
    pub config_maps: BTreeSet<String>,
}

/// Secrets and ConfigMaps the app references (for watches / re-reconcile on change): the
/// `loadFromSecret` Secret and every `valueFrom` of a runtime-config option. Variables'
/// `valueFrom` is resolved by the kubelet, not by the operator, so it is not listed.
pub fn referenced_objects(app: &SpinApp) -> Referenced {
    runtime_config::referenced(app)
}

/// Builds the children of `app` run by `executor`.
///
/// With `createDeployment: false` only the Service is built (upstream builds neither the
/// runtime config nor the CA Secret then, so missing references are not an error either).
pub fn build(
    app: &SpinApp,
    executor: &SpinAppExecutor,
    refs: &dyn References,
) -> Result<Children, DesiredError> {
    let service = service::service(app);
    if !executor.spec.create_deployment {
        return Ok(Children {
            deployment: None,
            service,
            runtime_config_secret: None,
            ca_secret: None,
        });
    }
    let config =
        executor
            .spec
            .deployment_config
            .as_ref()
            .ok_or_else(|| DesiredError::InvalidExecutor {
                reason: "createDeployment is true but deploymentConfig is missing".into(),
            })?;

    let namespace = runtime_config::namespace_of(app);
    let runtime_config_secret = runtime_config::render_runtime_config(app, refs)?
        .map(|toml| runtime_config::secret(app, toml));
    let runtime_config_name = match (
        &runtime_config_secret,
        runtime_config::load_from_secret(app),
    ) {
        (Some(secret), _) => secret.metadata.name.clone(),
        (None, Some(own)) => {
            // The pod mounts this key: check it is there now rather than fail the container.
            if runtime_config::secret_value(refs, &namespace, own, RUNTIME_CONFIG_KEY)?.is_none() {
                return Err(DesiredError::MissingKey {
                    kind: "Secret",
                    name: own.to_string(),
                    key: RUNTIME_CONFIG_KEY.to_string(),
                });
            }
            Some(own.to_string())
        }
        (None, None) => None,
    };
    let ca_name = ca::ca_secret_name(config);
    let deployment = deployment::deployment(
        app,
        config,
        &deployment::Mounts {
            runtime_config_secret: runtime_config_name.as_deref(),
            ca_secret: ca_name.as_deref(),
        },
    )?;
    Ok(Children {
        deployment: Some(deployment),
        service,
        runtime_config_secret,
        ca_secret: ca::ca_secret(config, app.metadata.namespace.clone()),
    })
}
