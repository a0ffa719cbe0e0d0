//! Defaulting of SpinApps: a minimal RFC 6902 patch against the object exactly as received.
//!
//! Only fields that are unset get an `add` op, so applying the patch and defaulting again yields
//! an empty patch. When `spec` itself is absent one `add /spec` carries all defaults.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde_json::{Map, Value};

use crate::inventory::Lookup;

/// A default the patch sets, for reporting (`spec.executor="containerd-shim-spin"`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Defaulted {
    pub rule: &'static str,
    pub field: &'static str,
    pub value: Value,
}

/// Computes the defaults for a SpinApp object in `namespace`.
pub(crate) fn spinapp(
    namespace: &str,
    object: &Value,
    lookup: &dyn Lookup,
) -> (Patch, Vec<Defaulted>) {
    if !object.is_object() {
        return (Patch(Vec::new()), Vec::new());
    }
    let spec = match object.get("spec") {
        None | Some(Value::Null) => None,
        Some(Value::Object(spec)) => Some(spec),
        // Not an object: validation explains; nothing sensible to patch.
        Some(_) => return (Patch(Vec::new()), Vec::new()),
    };
    let field = |key: &str| spec.and_then(|s| s.get(key));
    let mut defaults = Vec::new();
    if field("executor").is_none_or(|v| v.is_null() || v.as_str() == Some(""))
        && let Some(first) = lookup.executor_names(namespace).into_iter().next()
    {
        defaults.push(Defaulted {
            rule: "SA-DEFAULT-EXECUTOR",
            field: "executor",
            value: Value::String(first),
        });
    }
    // Only a literal `false` (or nothing) means autoscaling is off; a malformed value is left to
    // validation rather than guessed at.
    let autoscaling_off = spec
        .and_then(|s| s.get("enableAutoscaling"))
        .is_none_or(|v| matches!(v, Value::Null | Value::Bool(false)));
    if field("replicas").is_none_or(Value::is_null) && autoscaling_off {
        defaults.push(Defaulted {
            rule: "SA-DEFAULT-REPLICAS",
            field: "replicas",
            value: Value::from(1),
        });
    }
    let ops = match spec {
        _ if defaults.is_empty() => Vec::new(),
        None => {
            let value: Map<String, Value> = defaults
                .iter()
                .map(|d| (d.field.to_string(), d.value.clone()))
                .collect();
            vec![add(PointerBuf::from_tokens(["spec"]), Value::Object(value))]
        }
        Some(_) => defaults
            .iter()
            .map(|d| add(PointerBuf::from_tokens(["spec", d.field]), d.value.clone()))
            .collect(),
    };
    (Patch(ops), defaults)
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}
