//! The rule table: defaulting and validation of SpinApps and SpinAppExecutors (pure).
//!
//! Every decision the admission webhooks and `spin-operator validate` make comes from here, and
//! every rule that can fire is a row of [`catalogue()`] with a stable id. Objects arrive as raw
//! JSON so that a body that does not decode into the typed API still yields field errors.

mod types;

pub use types::*;

use crate::inventory::Lookup;

/// The rule catalogue: one row per rule any check can fire.
pub fn catalogue() -> &'static [Rule] {
    &[]
}

/// Defaulting of a SpinApp (mutating webhook): a minimal RFC 6902 patch.
pub fn mutate_spinapp(_req: &Request, _lookup: &dyn Lookup, _opts: &Options) -> Decision {
    Decision::default()
}

/// Validation of a SpinApp (validating webhook).
pub fn validate_spinapp(_req: &Request, _lookup: &dyn Lookup, _opts: &Options) -> Decision {
    Decision::default()
}

/// Validation of a SpinAppExecutor (validating webhook), including the DELETE in-use check.
pub fn validate_executor(_req: &Request, _lookup: &dyn Lookup, _opts: &Options) -> Decision {
    Decision::default()
}
