//! `spec.resources` and `spec.invocationLimits`: quantities and how they relate.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

use super::{AppCtx, entries};
use crate::rules::findings::Findings;
use crate::rules::quantity::Quantity;

/// Parses every quantity of one map, reporting the bad ones. Borrows from the spec: a request
/// with nothing wrong allocates nothing here.
fn parse_map<'a>(
    out: &mut Findings,
    at: &str,
    map: &'a Option<BTreeMap<String, K8sQuantity>>,
) -> BTreeMap<&'a str, (&'a str, Quantity)> {
    let mut parsed = BTreeMap::new();
    for (name, q) in map.iter().flatten() {
        let field = || format!("{at}[{name}]");
        match Quantity::parse(&q.0) {
            Err(e) => out.invalid(
                "SA-RESOURCES-QUANTITY",
                field(),
                q.0.as_str(),
                e.to_string(),
            ),
            Ok(v) if v.is_negative() => out.invalid(
                "SA-RESOURCES-QUANTITY",
                field(),
                q.0.as_str(),
                "must be greater than or equal to 0",
            ),
            Ok(v) => {
                parsed.insert(name.as_str(), (q.0.as_str(), v));
            }
        }
    }
    parsed
}

pub fn check(cx: &AppCtx, out: &mut Findings) {
    let Some(res) = &cx.spec.resources else {
        return;
    };
    let limits = parse_map(out, "spec.resources.limits", &res.limits);
    let requests = parse_map(out, "spec.resources.requests", &res.requests);
    for (name, (raw, request)) in &requests {
        if let Some((limit_raw, limit)) = limits.get(name)
            && request > limit
        {
            out.invalid(
                "SA-RESOURCES-REQUESTS-LE-LIMITS",
                format!("spec.resources.requests[{name}]"),
                *raw,
                format!("must be less than or equal to {name} limit of {limit_raw}"),
            );
        }
    }
}

/// Invocation limits Spin understands.
const KNOWN_LIMITS: &[&str] = &["memory"];

pub fn invocation_limits(cx: &AppCtx, out: &mut Findings) {
    for (key, value) in entries(&cx.spec.invocation_limits) {
        let field = format!("spec.invocationLimits[{key}]");
        if !KNOWN_LIMITS.contains(&key.as_str()) {
            out.warn(
                "SA-INVOCATION-UNKNOWN",
                format!("{field}: unknown invocation limit; Spin supports: memory"),
            );
            continue;
        }
        let q = match Quantity::parse(value) {
            Ok(q) if !q.is_negative() && !q.is_zero() => q,
            Ok(_) => {
                out.invalid(
                    "SA-INVOCATION-MEMORY",
                    field,
                    value.as_str(),
                    "must be greater than 0",
                );
                continue;
            }
            Err(e) => {
                out.invalid(
                    "SA-INVOCATION-MEMORY",
                    field,
                    value.as_str(),
                    format!("must be a valid quantity (e.g. 64Mi): {e}"),
                );
                continue;
            }
        };
        let res = cx.spec.resources.as_ref();
        let bound = [
            ("limits", res.and_then(|r| r.limits.as_ref())),
            ("requests", res.and_then(|r| r.requests.as_ref())),
        ]
        .into_iter()
        .find_map(|(which, map)| {
            let raw = map?.get("memory")?;
            Some((which, raw.0.clone(), Quantity::parse(&raw.0).ok()?))
        });
        if let Some((which, raw, bound)) = bound
            && q > bound
        {
            out.invalid(
                "SA-INVOCATION-MEMORY-LIMIT",
                field,
                value.as_str(),
                format!("must not exceed the container memory {which} of {raw} (spec.resources.{which}[memory])"),
            );
        }
    }
}
