//! Defaulting of SpinApps: a minimal RFC 6902 patch against the object exactly as received.
//!
//! Only fields that are unset get an `add` op, so applying the patch and defaulting again yields
//! an empty patch. When `spec` itself is absent one `add /spec` carries all defaults.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde_json::{Map, Value};

use super::view::{DefaultingSpec, MapOnly, ObjectView};
use crate::inventory::Lookup;

/// A default the patch sets, for reporting (`spec.executor="containerd-shim-spin"`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Defaulted {
    pub rule: &'static str,
    pub field: &'static str,
    pub value: Value,
}

/// What SpinApp defaulting reads of an object, however it was decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unset {
    /// `spec` is an object (else absent or null: one `add /spec` carries the defaults).
    pub spec: bool,
    /// `spec.executor` absent, null or "".
    pub executor: bool,
    /// `spec.replicas` absent or null.
    pub replicas: bool,
    /// `spec.enableAutoscaling` absent, null or `false`.
    pub autoscaling_off: bool,
}

impl Unset {
    /// From an object as a `Value`; `None` when there is nothing sensible to patch (the object
    /// or its spec is not an object: validation explains).
    pub fn of_value(object: &Value) -> Option<Self> {
        if !object.is_object() {
            return None;
        }
        let spec = match object.get("spec") {
            None | Some(Value::Null) => None,
            Some(Value::Object(spec)) => Some(spec),
            Some(_) => return None,
        };
        let field = |key: &str| spec.and_then(|s| s.get(key));
        Some(Self {
            spec: spec.is_some(),
            executor: field("executor").is_none_or(|v| v.is_null() || v.as_str() == Some("")),
            replicas: field("replicas").is_none_or(Value::is_null),
            // Only a literal `false` (or nothing) means autoscaling is off; a malformed value is
            // left to validation rather than guessed at.
            autoscaling_off: field("enableAutoscaling")
                .is_none_or(|v| matches!(v, Value::Null | Value::Bool(false))),
        })
    }

    /// From an object view (the same answers, read from the JSON text of those fields).
    pub fn of_view(object: &ObjectView<DefaultingSpec>) -> Self {
        match &object.spec {
            None => Self {
                spec: false,
                executor: true,
                replicas: true,
                autoscaling_off: true,
            },
            Some(MapOnly(fields)) => Self {
                spec: true,
                executor: fields.executor_unset(),
                replicas: fields.replicas_unset(),
                autoscaling_off: fields.autoscaling_off(),
            },
        }
    }
}

/// Computes the defaults for a SpinApp object in `namespace`.
pub(crate) fn spinapp(
    namespace: &str,
    object: &Value,
    lookup: &dyn Lookup,
) -> (Patch, Vec<Defaulted>) {
    match Unset::of_value(object) {
        Some(unset) => patch(namespace, unset, lookup),
        None => (Patch(Vec::new()), Vec::new()),
    }
}

/// The defaults and their patch for what is unset.
pub(crate) fn patch(namespace: &str, unset: Unset, lookup: &dyn Lookup) -> (Patch, Vec<Defaulted>) {
    let mut defaults = Vec::new();
    if unset.executor
        && let Some(first) = lookup.executor_names(namespace).into_iter().next()
    {
        defaults.push(Defaulted {
            rule: "SA-DEFAULT-EXECUTOR",
            field: "executor",
            value: Value::String(first),
        });
    }
    if unset.replicas && unset.autoscaling_off {
        defaults.push(Defaulted {
            rule: "SA-DEFAULT-REPLICAS",
            field: "replicas",
            value: Value::from(1),
        });
    }
    let ops = if defaults.is_empty() {
        Vec::new()
    } else if !unset.spec {
        let value: Map<String, Value> = defaults
            .iter()
            .map(|d| (d.field.to_string(), d.value.clone()))
            .collect();
        vec![add(PointerBuf::from_tokens(["spec"]), Value::Object(value))]
    } else {
        defaults
            .iter()
            .map(|d| add(PointerBuf::from_tokens(["spec", d.field]), d.value.clone()))
            .collect()
    };
    (Patch(ops), defaults)
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}
