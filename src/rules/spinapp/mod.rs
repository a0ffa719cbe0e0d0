//! Validation of SpinApps: each submodule holds the checks of one area of the spec.

mod basics;
mod components;
mod metadata;
mod probes;
mod refs;
mod resources;
mod runtime_config;
mod variables;
mod volumes;

pub(crate) use basics::{APP_NAME_MAX, PULL_POLICIES};

use std::collections::BTreeMap;

use serde_json::Value;

use super::findings::Findings;
use super::{Options, decode};
use crate::api::{RuntimeConfig, SpinAppSpec};
use crate::inventory::Lookup;

/// What every SpinApp check may look at.
pub(crate) struct AppCtx<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub spec: &'a SpinAppSpec,
    pub lookup: &'a dyn Lookup,
    pub opts: &'a Options,
    /// The executor the app names, looked up once: `Some(spec.createDeployment)` when it exists.
    pub executor_creates_deployment: Option<bool>,
}

type Check = fn(&AppCtx, &mut Findings);

/// Every SpinApp check, in the order their errors are listed.
const CHECKS: &[Check] = &[
    basics::name,
    basics::executor,
    basics::replicas,
    basics::image,
    basics::image_pull_policy,
    basics::service_account,
    basics::executor_annotations,
    refs::image_pull_secrets,
    variables::check,
    volumes::check,
    probes::check,
    resources::check,
    resources::invocation_limits,
    components::check,
    runtime_config::check,
    metadata::pod_labels,
    metadata::node_selector,
    metadata::annotations,
];

/// Runs every SpinApp check on `object`.
pub(crate) fn validate(
    namespace: &str,
    name: &str,
    object: &Value,
    lookup: &dyn Lookup,
    opts: &Options,
) -> Findings {
    let mut out = Findings::default();
    let Some(decoded) =
        decode::decode_spec::<SpinAppSpec>(object.get("spec"), "SA-DECODE", &mut out)
    else {
        return out;
    };
    let checked = check(namespace, name, &decoded.value, lookup, opts);
    decoded.merge_checked(checked, &mut out);
    out
}

/// Runs every SpinApp check on a decoded spec (what [`validate`] finds when the whole spec
/// decodes).
pub(crate) fn check(
    namespace: &str,
    name: &str,
    spec: &SpinAppSpec,
    lookup: &dyn Lookup,
    opts: &Options,
) -> Findings {
    let executor_creates_deployment = (!spec.executor.is_empty())
        .then(|| lookup.executor_creates_deployment(namespace, &spec.executor))
        .flatten();
    let cx = AppCtx {
        namespace,
        name,
        spec,
        lookup,
        opts,
        executor_creates_deployment,
    };
    let mut checked = Findings::default();
    for check in CHECKS {
        check(&cx, &mut checked);
    }
    checked
}

/// Runs only the `spec.runtimeConfig` checks, on a runtime config that is not (yet) part of an
/// app: `scaffold` checks a `runtime-config.toml` file with them before it becomes a Secret.
pub(crate) fn check_runtime_config(
    namespace: &str,
    rc: &RuntimeConfig,
    lookup: &dyn Lookup,
    opts: &Options,
) -> Findings {
    let spec = SpinAppSpec {
        runtime_config: Some(rc.clone()),
        ..SpinAppSpec::default()
    };
    let cx = AppCtx {
        namespace,
        name: "",
        spec: &spec,
        lookup,
        opts,
        executor_creates_deployment: None,
    };
    let mut out = Findings::default();
    runtime_config::check(&cx, &mut out);
    out
}

/// Iterates a map field that may be absent.
pub(crate) fn entries(
    map: &Option<BTreeMap<String, String>>,
) -> impl Iterator<Item = (&String, &String)> {
    map.iter().flat_map(|m| m.iter())
}
