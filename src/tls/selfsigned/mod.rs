//! Self-signed mode (`--self-signed`), for clusters without cert-manager.
//!
//! The elected leader keeps one CA and one serving certificate in a Secret (created once even
//! when replicas race, renewed at 2/3 of their lifetimes) and patches `caBundle` into our webhook
//! configurations; every replica serves the Secret's certificate through the shared resolver.
//! Each replica watches the Secret and the configurations by name, so a rotation, deletion or
//! caBundle edit by someone else is acted on at once; a slow resync is only the fallback.
//! A replica counts as published (a readiness condition) only while both configurations carry a
//! caBundle that verifies the certificate it serves. A follower that is not published repairs
//! (its leader may be a pod of another certificate mode, mid-switch); nobody writes while the
//! configurations name another caBundle source (`tls::webhook_configs`).

mod bootstrap;
mod follow;
mod issue;
mod published;

pub use bootstrap::{SelfSigned, SelfSignedConfig, SyncOutcome};
pub(crate) use follow::changes;
pub(crate) use issue::split_bundle;
pub use issue::{
    COMMON_NAME_MAX, DEFAULT_CLUSTER_DOMAIN, Lifetimes, Material, common_name, generate, renew,
    service_dns_names,
};
pub use published::{ca_bundle_verifies, chain_verifies};
