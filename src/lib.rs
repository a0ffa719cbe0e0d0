//! spin-operator: a Kubernetes operator for Spin (WebAssembly) applications.
//!
//! The pure core (API types, rules, desired state) is kept free of I/O so that the admission
//! webhooks, the reconciler and the offline commands (`validate`, `render`, `rules`) all share it.

pub mod admission;
pub mod api;
pub mod controller;
pub mod crd;
pub mod desired;
/// Fuzz harnesses (`fuzz/`), here so that `cargo test` replays their saved inputs.
#[doc(hidden)]
pub mod fuzzing;
pub mod inventory;
pub mod manifests;
pub mod metrics;
pub mod namespaces;
pub mod rbac;
pub mod rules;
pub mod scaffold;
pub mod tls;
