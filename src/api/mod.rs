//! The `core.spinkube.dev/v1alpha1` API: `SpinApp` and `SpinAppExecutor`.

mod executor;
mod spinapp;

pub use executor::*;
pub use spinapp::*;

/// API group of both kinds.
pub const GROUP: &str = "core.spinkube.dev";
/// API version of both kinds.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as it appears in manifests.
pub const API_VERSION: &str = "core.spinkube.dev/v1alpha1";

/// Label on every child object: the owning SpinApp's name.
pub const APP_NAME_LABEL: &str = "core.spinkube.dev/app-name";

/// The per-app pod label the Deployment selector and Service select on
/// (`core.spinkube.dev/app.<app>.status`, value [`APP_STATUS_READY`]).
pub fn app_status_label(app_name: &str) -> String {
    format!("core.spinkube.dev/app.{app_name}.status")
}
/// Value of [`app_status_label`] on the app's pods.
pub const APP_STATUS_READY: &str = "ready";

/// Where the runtime config is mounted in the app container (subPath mount of one file).
pub const RUNTIME_CONFIG_PATH: &str = "/runtime-config.toml";
/// Key of the runtime config inside its Secret.
pub const RUNTIME_CONFIG_KEY: &str = "runtime-config.toml";
/// Where the CA bundle is mounted when the executor asks for one.
pub const CA_BUNDLE_PATH: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Name of the CA Secret when the executor names none.
pub const DEFAULT_CA_SECRET: &str = "spin-ca";
/// Prefix reserved for the volumes the operator adds to pods.
pub const RESERVED_VOLUME_PREFIX: &str = "spin-";
/// Finalizer the operator keeps on SpinAppExecutors while SpinApps use them.
pub const EXECUTOR_FINALIZER: &str = "core.spinkube.dev/finalizer";
/// Field manager for server-side apply.
pub const FIELD_MANAGER: &str = "spin-operator";
