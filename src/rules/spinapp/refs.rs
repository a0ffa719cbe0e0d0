//! References from a SpinApp to Secrets and ConfigMaps in its namespace: valid names, and a
//! warning when the object is known to be missing.

use super::AppCtx;
use crate::inventory::Presence;
use crate::rules::findings::Findings;
use crate::rules::names;

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Secret,
    ConfigMap,
}

/// Checks a reference at `field` (the path of the name) to `name`.
pub fn check(cx: &AppCtx, out: &mut Findings, kind: Kind, field: &str, name: &str, optional: bool) {
    if name.is_empty() {
        out.required("SA-REF-NAME", field, "");
        return;
    }
    if let Err(e) = names::dns1123_subdomain(name) {
        out.invalid("SA-REF-NAME", field, name, e);
        return;
    }
    let (presence, label) = match kind {
        Kind::Secret => (cx.lookup.secret(cx.namespace, name), "Secret"),
        Kind::ConfigMap => (cx.lookup.config_map(cx.namespace, name), "ConfigMap"),
    };
    if presence == Presence::Absent && !optional {
        out.warn(
            "SA-REF-MISSING",
            format!(
                "{field}: {label} {name:?} not found in namespace {:?}; pods will not start \
                 until it exists",
                cx.namespace
            ),
        );
    }
}

pub fn image_pull_secrets(cx: &AppCtx, out: &mut Findings) {
    for (i, s) in cx.spec.image_pull_secrets.iter().flatten().enumerate() {
        check(
            cx,
            out,
            Kind::Secret,
            &format!("spec.imagePullSecrets[{i}].name"),
            &s.name,
            false,
        );
    }
}
