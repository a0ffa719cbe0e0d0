//! The rule table: defaulting and validation of SpinApps and SpinAppExecutors (pure).
//!
//! Every decision the admission webhooks and `spin-operator validate` make comes from here, and
//! every rule that can fire is a row of [`catalogue()`] with a stable id. Objects arrive as raw
//! JSON so that a body that does not decode into the typed API still yields field errors.

mod catalogue;
mod decode;
mod defaulting;
mod executor;
mod findings;
pub mod names;
mod path;
pub mod quantity;
pub mod reference;
mod runtime_config_keys;
mod spinapp;
mod types;
pub mod vap;
mod view;

pub use types::*;
pub use view::{AppSpec, DefaultedFields, DefaultingSpec, MapOnly, ObjectView};

use serde_json::Value;

use crate::inventory::Lookup;
use findings::Findings;

/// The rule catalogue: one row per rule any check can fire.
pub fn catalogue() -> &'static [Rule] {
    catalogue::RULES
}

/// The catalogue as Markdown (`spin-operator rules`, committed as `webhooks/RULES.md`).
pub fn catalogue_markdown() -> String {
    catalogue::markdown()
}

/// The catalogue as JSON (`spin-operator rules --format json`).
pub fn catalogue_json() -> String {
    catalogue::json()
}

/// Defaulting of a SpinApp (mutating webhook): a minimal RFC 6902 patch, never a denial.
pub fn mutate_spinapp(req: &Request, lookup: &dyn Lookup, _opts: &Options) -> Decision {
    let mut decision = Decision::default();
    let (Operation::Create | Operation::Update, Some(object)) = (req.operation, req.object) else {
        return decision;
    };
    let (patch, defaults) = defaulting::spinapp(req.namespace, object, lookup);
    for d in &defaults {
        decision.fired(d.rule);
    }
    decision.patch = patch;
    decision
}

/// [`mutate_spinapp`] on an object view, without a `Value` of the object: the same decision.
/// (`Option` like [`validate_spinapp_view`]; the view of the fields defaulting reads always
/// tells.)
pub fn mutate_spinapp_view(
    req: &Request<ObjectView<DefaultingSpec>>,
    lookup: &dyn Lookup,
    _opts: &Options,
) -> Option<Decision> {
    let mut decision = Decision::default();
    let (Operation::Create | Operation::Update, Some(object)) = (req.operation, req.object) else {
        return Some(decision);
    };
    let (patch, defaults) =
        defaulting::patch(req.namespace, defaulting::Unset::of_view(object), lookup);
    for d in &defaults {
        decision.fired(d.rule);
    }
    decision.patch = patch;
    Some(decision)
}

/// Validation of a SpinApp (validating webhook).
pub fn validate_spinapp(req: &Request, lookup: &dyn Lookup, opts: &Options) -> Decision {
    let (Operation::Create | Operation::Update, Some(object)) = (req.operation, req.object) else {
        return Decision::default();
    };
    if let Some(d) = finalizing(req, "SA-FINALIZING") {
        return d;
    }
    let name = object_name(req, object);
    let findings = spinapp::validate(req.namespace, name, object, lookup, opts);
    decide(req, findings, "SA-RATCHET")
}

/// [`validate_spinapp`] on an object view (its spec decoded), without a `Value` of the object:
/// the same decision, or `None` when the spec is absent (then call [`validate_spinapp`] on the
/// `Value`) or for an UPDATE with errors, whose ratcheting compares the old and new objects.
pub fn validate_spinapp_view(
    req: &Request<ObjectView<AppSpec>>,
    lookup: &dyn Lookup,
    opts: &Options,
) -> Option<Decision> {
    let (Operation::Create | Operation::Update, Some(object)) = (req.operation, req.object) else {
        return Some(Decision::default());
    };
    if req.operation == Operation::Update && object.deleting {
        return Some(finalized("SA-FINALIZING"));
    }
    let name = match req.name {
        "" => object.name.as_deref().unwrap_or(""),
        name => name,
    };
    let spec = &object.spec.as_ref()?.0;
    let findings = spinapp::check(req.namespace, name, spec, lookup, opts);
    if req.operation == Operation::Update && !findings.errors.is_empty() {
        return None;
    }
    Some(decide_findings(findings, None, "SA-RATCHET"))
}

/// What an offline run (`validate`, `scaffold`) decides for one SpinApp CREATE: the defaulting
/// decision, the object with that patch applied, and the validation of the defaulted object
/// (the order the API server calls the webhooks in).
#[derive(Debug, Clone)]
pub struct Admission {
    pub mutation: Decision,
    pub defaulted: Value,
    pub validation: Decision,
}

/// Defaults then validates `req.object` as the two webhooks would, one after the other.
pub fn admit_spinapp(
    req: &Request,
    lookup: &dyn Lookup,
    opts: &Options,
) -> Result<Admission, json_patch::PatchError> {
    let mutation = mutate_spinapp(req, lookup, opts);
    let mut defaulted = req.object.cloned().unwrap_or(Value::Null);
    json_patch::patch(&mut defaulted, &mutation.patch)?;
    let validation = validate_spinapp(
        &Request {
            object: Some(&defaulted),
            ..*req
        },
        lookup,
        opts,
    );
    Ok(Admission {
        mutation,
        defaulted,
        validation,
    })
}

/// The `spec.runtimeConfig` rules alone, on a runtime config outside any app (`scaffold` checks
/// a `runtime-config.toml` with them). Field paths are those of `spec.runtimeConfig`.
pub fn validate_runtime_config(
    namespace: &str,
    rc: &crate::api::RuntimeConfig,
    lookup: &dyn Lookup,
    opts: &Options,
) -> Decision {
    let findings = spinapp::check_runtime_config(namespace, rc, lookup, opts);
    decide_findings(findings, None, "SA-RATCHET")
}

/// Validation of a SpinAppExecutor (validating webhook), including the DELETE in-use check.
pub fn validate_executor(req: &Request, lookup: &dyn Lookup, _opts: &Options) -> Decision {
    match (req.operation, req.object) {
        (Operation::Delete, _) => {
            let name = req
                .old_object
                .map(|o| object_name(req, o))
                .unwrap_or(req.name);
            decide(
                req,
                executor::delete(req.namespace, name, lookup),
                "SAE-RATCHET",
            )
        }
        (Operation::Create | Operation::Update, Some(object)) => {
            if let Some(d) = finalizing(req, "SAE-FINALIZING") {
                return d;
            }
            decide(req, executor::validate(object), "SAE-RATCHET")
        }
        _ => Decision::default(),
    }
}

/// The request's name, or the object's own (`req.name` can be empty for `generateName`).
fn object_name<'a>(req: &Request<'a>, object: &'a Value) -> &'a str {
    if !req.name.is_empty() {
        return req.name;
    }
    object
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// An UPDATE of an object being deleted is always allowed (finalizers must come off).
fn finalizing(req: &Request, rule: &'static str) -> Option<Decision> {
    let deleting = req
        .object
        .and_then(|o| o.get("metadata")?.get("deletionTimestamp"))
        .is_some_and(|t| !t.is_null());
    (req.operation == Operation::Update && deleting).then(|| finalized(rule))
}

fn finalized(rule: &'static str) -> Decision {
    let mut d = Decision::default();
    d.fired(rule);
    d
}

/// Fields a rule judges together with the field it reports: an error is only ratcheted when
/// these are unchanged too (turning on autoscaling next to an old `replicas` is a new error).
fn related_fields(rule: &str) -> &'static [&'static str] {
    match rule {
        "SA-REPLICAS-AUTOSCALING" | "SA-REPLICAS-MIN" => &["spec.enableAutoscaling"],
        "SA-ANNOTATIONS-NO-DEPLOYMENT" => &["spec.executor"],
        "SA-RESOURCES-REQUESTS-LE-LIMITS" => &["spec.resources"],
        "SA-INVOCATION-MEMORY-LIMIT" => &["spec.resources"],
        "SA-VOLUMEMOUNT-VOLUME" => &["spec.volumes"],
        "SA-RC-EXCLUSIVE" => &["spec.runtimeConfig"],
        "SAE-RUNTIME-XOR" | "SAE-DEPLOYMENT-CONFIG-REQUIRED" => &["spec"],
        _ => &[],
    }
}

/// Turns findings into a decision, ratcheting on UPDATE: an error about a field whose value is
/// the same in the old object becomes a warning, so pre-existing objects stay editable.
fn decide(req: &Request, findings: Findings, ratchet_rule: &'static str) -> Decision {
    let old = match (req.operation, req.old_object, req.object) {
        (Operation::Update, Some(old), Some(new)) => Some((old, new)),
        _ => None,
    };
    decide_findings(findings, old, ratchet_rule)
}

/// [`decide`] given the (old, new) objects of an UPDATE, if any.
fn decide_findings(
    findings: Findings,
    old: Option<(&Value, &Value)>,
    ratchet_rule: &'static str,
) -> Decision {
    let mut decision = Decision::default();
    for error in findings.errors {
        let unchanged = old.is_some_and(|(old, new)| {
            std::iter::once(error.field.as_str())
                .chain(related_fields(error.rule).iter().copied())
                .all(|field| path::lookup(old, field) == path::lookup(new, field))
        });
        decision.fired(error.rule);
        if unchanged {
            decision.fired(ratchet_rule);
            decision.warnings.push(Warning {
                rule: error.rule,
                message: format!(
                    "{error} (allowed because the field is unchanged by this update; fix it \
                     before the next change to it)"
                ),
            });
        } else {
            decision.errors.push(error);
        }
    }
    for warning in findings.warnings {
        decision.fired(warning.rule);
        decision.warnings.push(warning);
    }
    decision
}
