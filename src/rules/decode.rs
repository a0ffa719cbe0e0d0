//! Decoding a raw `spec` into the typed API while turning every decode failure into a field
//! error (`spec.replicas: Invalid value: "three": must be of type integer`), so that a body the
//! typed API rejects still gets a complete, Kubernetes-style answer instead of a 500.

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::findings::Findings;
use super::path::{self, Seg};

/// A spec as far as it could be read.
pub(crate) struct Decoded<T> {
    pub value: T,
    /// Top-level spec fields that failed to decode (their typed value is the default, so checks
    /// about them are suppressed).
    pub broken: BTreeSet<String>,
}

impl<T> Decoded<T> {
    /// True when `field` (a printed path under `spec`) lies in a field that failed to decode.
    pub fn is_broken(&self, field: &str) -> bool {
        let segs = path::parse(field);
        segs.first().map(String::as_str) == Some("spec")
            && segs.get(1).is_some_and(|k| self.broken.contains(k))
    }

    /// Adds the findings of checks run on the decoded value to `out`. Fields that did not
    /// decode already have their error; defaults standing in for them must not produce more.
    pub fn merge_checked(&self, checked: Findings, out: &mut Findings) {
        out.errors.extend(
            checked
                .errors
                .into_iter()
                .filter(|e| !self.is_broken(&e.field)),
        );
        out.warnings.extend(checked.warnings);
    }
}

/// Cap on decode passes; each pass removes one bad node, so this bounds work on hostile input.
const MAX_PASSES: usize = 64;
/// Cap on the total work of the passes, in JSON nodes decoded: a pass may visit the whole spec,
/// so a large spec gets fewer passes (at least one). Bounds the worst case of one request to a
/// few full decodes of the largest body (BENCHMARKS.md, "Webhook under hostile load").
const MAX_WORK_NODES: usize = 2_000_000;
/// Longest string echoed in an error; longer ones are cut, with `...`.
const MAX_ECHO_CHARS: usize = 64;

/// Decodes `spec` (absent or null decodes as the default). Returns `None` when `spec` is not an
/// object at all (after reporting it).
pub(crate) fn decode_spec<T: DeserializeOwned + Default>(
    spec: Option<&Value>,
    rule: &'static str,
    out: &mut Findings,
) -> Option<Decoded<T>> {
    let mut working = match spec {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(v @ Value::Object(_)) => {
            // The common case: no nulls to strip and everything decodes. Decode from the object
            // as received, without copying it or tracking paths; the same decode below would
            // give the same value.
            if !has_nulls(v)
                && let Ok(value) = T::deserialize(v)
            {
                return Some(Decoded {
                    value,
                    broken: BTreeSet::new(),
                });
            }
            v.clone()
        }
        Some(other) => {
            // Named by its type only, as the API server's schema errors do: a spec of
            // megabytes is not copied into the message.
            out.invalid(rule, "spec", type_name(other), "must be of type object");
            return None;
        }
    };
    // Bad values are quoted from the spec as received: stripping nulls removes object
    // members only, so paths into the working copy (mapped through removed list elements)
    // are paths into it.
    let original = spec.unwrap_or(&Value::Null);
    strip_nulls(&mut working);
    let passes = (MAX_WORK_NODES / nodes(&working).max(1)).clamp(1, MAX_PASSES);
    let mut broken = BTreeSet::new();
    let mut removed: Vec<(Vec<Seg>, usize)> = Vec::new();
    let mut settled = false;
    for _ in 0..passes {
        let err = match serde_path_to_error::deserialize::<_, T>(&working) {
            // The common case: everything decoded on the first pass.
            Ok(value) if broken.is_empty() => return Some(Decoded { value, broken }),
            Ok(_) => {
                settled = true;
                break;
            }
            Err(e) => e,
        };
        let current: Vec<Seg> = err
            .path()
            .iter()
            .map_while(|s| match s {
                serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
                serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
                serde_path_to_error::Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        let message = err.inner().to_string();
        let orig = to_original(&current, &removed);
        match missing_field(&message) {
            Some(name) => {
                let mut at = orig.clone();
                at.push(Seg::Key(name.to_string()));
                let field = path::format("spec", &at);
                // Removing a required child surfaces here as "missing field": report it once.
                if !out.errors.iter().any(|e| e.field == field) {
                    out.required(rule, field, "");
                }
            }
            None => {
                let bad = lookup_segs(original, &orig).map_or(Value::Null, echo);
                out.invalid(rule, path::format("spec", &orig), bad, friendly(&message));
            }
        }
        match orig.first() {
            Some(Seg::Key(k)) => {
                broken.insert(k.clone());
            }
            // An error about the spec object itself cannot be narrowed down further.
            _ => return None,
        }
        if !remove(&mut working, &current, &orig, &mut removed) {
            settled = true;
            break;
        }
    }
    if !settled {
        // Out of passes with errors left: say so rather than judge defaults in their place.
        out.invalid(
            rule,
            "spec",
            type_name(original),
            "too many invalid fields to list them all; fix the ones reported and retry",
        );
    }
    // Decode what is left, without the fields that had errors (their indices may have moved).
    if let Value::Object(map) = &mut working {
        map.retain(|k, _| !broken.contains(k));
    }
    let value = serde_json::from_value(working).unwrap_or_default();
    Some(Decoded { value, broken })
}

/// A bad value as echoed in an error: scalars as they are, strings cut to a short prefix,
/// objects and lists by their type name only (as the API server's schema errors print them).
fn echo(v: &Value) -> Value {
    match v {
        Value::String(s) if s.chars().nth(MAX_ECHO_CHARS).is_some() => {
            let cut: String = s.chars().take(MAX_ECHO_CHARS).collect();
            Value::String(format!("{cut}..."))
        }
        Value::Array(_) | Value::Object(_) => type_name(v),
        other => other.clone(),
    }
}

/// The JSON Schema type name of a value, as a string value.
fn type_name(v: &Value) -> Value {
    Value::String(
        match v {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_f64() => "number",
            Value::Number(_) => "integer",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
        .to_string(),
    )
}

/// JSON nodes in `v` (each value, member and element counts one).
fn nodes(v: &Value) -> usize {
    match v {
        Value::Object(map) => 1 + map.values().map(nodes).sum::<usize>(),
        Value::Array(items) => 1 + items.iter().map(nodes).sum::<usize>(),
        _ => 1,
    }
}

/// Whether [`strip_nulls`] would change anything.
fn has_nulls(v: &Value) -> bool {
    match v {
        Value::Object(map) => map.values().any(|v| v.is_null() || has_nulls(v)),
        Value::Array(items) => items.iter().any(has_nulls),
        _ => false,
    }
}

/// Kubernetes treats `null` like an absent field; serde would reject it for plain strings.
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name)
}

/// Turns serde's wording into the apiserver's (`must be of type integer`).
fn friendly(message: &str) -> String {
    if let Some((_, expected)) = message
        .strip_prefix("invalid type: ")
        .and_then(|m| m.rsplit_once(", expected "))
    {
        let ty = match expected {
            e if e.starts_with('i') || e.starts_with('u') => "integer",
            "a boolean" => "boolean",
            "a string" => "string",
            "a sequence" => "array",
            e if e.starts_with("struct") || e.starts_with("a map") || e.starts_with("map") => {
                "object"
            }
            other => return format!("must be {other}"),
        };
        return format!("must be of type {ty}");
    }
    message.to_string()
}

/// Maps a path in the (partly pruned) working copy back to the original object.
fn to_original(current: &[Seg], removed: &[(Vec<Seg>, usize)]) -> Vec<Seg> {
    let mut orig: Vec<Seg> = Vec::with_capacity(current.len());
    for seg in current {
        match seg {
            Seg::Index(i) => {
                let mut gone: Vec<usize> = removed
                    .iter()
                    .filter(|(array, _)| *array == orig)
                    .map(|(_, idx)| *idx)
                    .collect();
                gone.sort_unstable();
                let mut idx = *i;
                for g in gone {
                    if g <= idx {
                        idx += 1;
                    }
                }
                orig.push(Seg::Index(idx));
            }
            key => orig.push(key.clone()),
        }
    }
    orig
}

fn lookup_segs<'v>(root: &'v Value, segs: &[Seg]) -> Option<&'v Value> {
    let mut cur = root;
    for seg in segs {
        cur = match (seg, cur) {
            (Seg::Index(i), Value::Array(items)) => items.get(*i)?,
            (Seg::Key(k), Value::Object(map)) => map.get(k)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Removes the node at `current` from the working copy, remembering removed list elements by
/// their original index. Returns false when nothing could be removed.
fn remove(
    working: &mut Value,
    current: &[Seg],
    orig: &[Seg],
    removed: &mut Vec<(Vec<Seg>, usize)>,
) -> bool {
    let Some((last, parent_path)) = current.split_last() else {
        return false;
    };
    let mut parent = &mut *working;
    for seg in parent_path {
        parent = match (seg, parent) {
            (Seg::Index(i), Value::Array(items)) => match items.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            (Seg::Key(k), Value::Object(map)) => match map.get_mut(k) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, parent) {
        (Seg::Index(i), Value::Array(items)) if *i < items.len() => {
            items.remove(*i);
            if let Some((Seg::Index(orig_idx), orig_parent)) = orig.split_last() {
                removed.push((orig_parent.to_vec(), *orig_idx));
            }
            true
        }
        (Seg::Key(k), Value::Object(map)) => map.remove(k).is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SpinAppSpec;
    use serde_json::json;

    fn errors(spec: Value) -> (Vec<String>, Option<Decoded<SpinAppSpec>>) {
        let mut out = Findings::default();
        let d = decode_spec::<SpinAppSpec>(Some(&spec), "SA-DECODE", &mut out);
        (out.errors.iter().map(ToString::to_string).collect(), d)
    }

    #[test]
    fn good_spec_decodes_without_errors() {
        let (errs, d) = errors(json!({"image": "a", "replicas": 2, "executor": null}));
        assert!(errs.is_empty(), "{errs:?}");
        let d = d.unwrap();
        assert_eq!(d.value.replicas, Some(2));
        assert!(d.broken.is_empty());
    }

    #[test]
    fn reports_every_bad_field_with_original_indices() {
        let (errs, d) = errors(json!({
            "image": "ghcr.io/a/b:v1",
            "replicas": "three",
            "enableAutoscaling": "yes",
            "variables": [{"name": 1}, {"name": "ok", "value": "x"}, {"value": "no-name"}],
        }));
        assert_eq!(
            errs,
            vec![
                "spec.enableAutoscaling: Invalid value: \"yes\": must be of type boolean",
                "spec.replicas: Invalid value: \"three\": must be of type integer",
                "spec.variables[0].name: Invalid value: 1: must be of type string",
                "spec.variables[2].name: Required value",
            ]
        );
        let d = d.unwrap();
        assert_eq!(d.value.image, "ghcr.io/a/b:v1");
        assert_eq!(d.value.replicas, None);
        assert!(d.is_broken("spec.variables[1].name"));
        assert!(!d.is_broken("spec.image"));
    }

    #[test]
    fn non_object_spec_is_one_error_naming_its_type() {
        let (errs, d) = errors(json!("nope"));
        assert_eq!(
            errs,
            vec!["spec: Invalid value: \"string\": must be of type object"]
        );
        assert!(d.is_none());
        let (errs, _) = errors(json!([1, 2, 3]));
        assert_eq!(
            errs,
            vec!["spec: Invalid value: \"array\": must be of type object"]
        );
    }

    #[test]
    fn long_and_structured_bad_values_are_not_echoed_whole() {
        let long = "x".repeat(1 << 20);
        let (errs, _) = errors(json!({
            "image": "a",
            "replicas": long,
            "enableAutoscaling": [1, 2, 3],
            "variables": {"deep": [1, 2, 3]},
        }));
        let cut = format!("\"{}...\"", "x".repeat(MAX_ECHO_CHARS));
        assert_eq!(
            errs,
            vec![
                "spec.enableAutoscaling: Invalid value: \"array\": must be of type boolean"
                    .to_string(),
                format!("spec.replicas: Invalid value: {cut}: must be of type integer"),
                "spec.variables: Invalid value: \"object\": must be of type array".to_string(),
            ]
        );
    }

    #[test]
    fn decode_work_is_capped_and_says_so() {
        // Many bad elements in a list: each pass removes one, so a large list would take one
        // full decode per element. Past the work cap the rest is summed up in one error.
        let bad: Vec<Value> = (0..200_000).map(|_| json!({"name": 1})).collect();
        let mut out = Findings::default();
        let d = decode_spec::<SpinAppSpec>(
            Some(&json!({"image": "a", "variables": bad})),
            "SA-DECODE",
            &mut out,
        );
        assert!(d.is_some());
        let errs: Vec<String> = out.errors.iter().map(ToString::to_string).collect();
        // 400,003 nodes: four passes, two per bad element (its field, then the element
        // left without it).
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert_eq!(
            errs[0],
            "spec.variables[0].name: Invalid value: 1: must be of type string"
        );
        assert_eq!(
            errs[1],
            "spec.variables[1].name: Invalid value: 1: must be of type string"
        );
        assert!(errs[2].starts_with("spec: Invalid value: \"object\": too many invalid fields"));
    }
}
