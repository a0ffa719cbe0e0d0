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
