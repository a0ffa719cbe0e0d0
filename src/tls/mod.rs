//! Serving certificates: hot reload from a mounted Secret and the self-signed mode.
//!
//! Both install paths end in the same [`ReloadingResolver`]: the cert-manager path feeds it from
//! `--cert-dir` ([`dir`]), the self-signed path from a Secret it maintains ([`selfsigned`]). The
//! webhook server takes [`server_config`] built around that resolver, so a rotation never needs a
//! restart and never interrupts a handshake.

mod ca_bundle;
mod client_ca;
mod config;
pub mod dir;
mod error;
mod metrics;
mod pair;
mod resolver;
pub mod selfsigned;
pub mod webhook_configs;

pub use ca_bundle::{CaBundleKeeper, CaBundleKeeperConfig};
pub use client_ca::ReloadingClientVerifier;
pub use config::{TlsOptions, server_config, server_config_with};
pub use dir::{
    DEFAULT_POLL_INTERVAL, read_pair, reload_from_dir, spawn_cert_dir_reloader, watch_cert_dir,
};
pub use error::TlsError;
pub use metrics::TlsMetrics;
pub use pair::{CertInfo, LoadedPair, cert_info, load_pair};
pub use resolver::{Reload, ReloadingResolver};

/// File names inside a `kubernetes.io/tls` Secret (and therefore inside `--cert-dir`).
pub const TLS_CERT_FILE: &str = "tls.crt";
pub const TLS_KEY_FILE: &str = "tls.key";
pub const CA_CERT_FILE: &str = "ca.crt";
