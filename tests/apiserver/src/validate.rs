//! What the apiserver rejects or prunes before storing: names, labels, data keys, and the shape
//! of built-in types (decoded into the k8s-openapi type and re-encoded, which rejects wrong
//! types and drops unknown fields like the apiserver's pruning).

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, Namespace, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;
use crate::resource::ResourceType;

fn roundtrip<K: DeserializeOwned + Serialize>(obj: &Value) -> Result<Value, String> {
    let typed: K = serde_json::from_value(obj.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

fn typed(rt: &ResourceType, obj: &Value) -> Option<Result<Value, String>> {
    Some(match (rt.group, rt.kind) {
        ("apps", "Deployment") => roundtrip::<Deployment>(obj),
        ("", "Service") => roundtrip::<Service>(obj),
        ("", "Secret") => roundtrip::<Secret>(obj),
        ("", "ConfigMap") => roundtrip::<ConfigMap>(obj),
        ("", "Namespace") => roundtrip::<Namespace>(obj),
        ("", "Event") => roundtrip::<CoreEvent>(obj),
        ("events.k8s.io", "Event") => roundtrip::<Event>(obj),
        ("coordination.k8s.io", "Lease") => roundtrip::<Lease>(obj),
        (_, "MutatingWebhookConfiguration") => roundtrip::<MutatingWebhookConfiguration>(obj),
        (_, "ValidatingWebhookConfiguration") => roundtrip::<ValidatingWebhookConfiguration>(obj),
        _ => return None,
    })
}

fn is_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// RFC 1123 label: lowercase alphanumerics and '-', alphanumeric at both ends, at most 63.
pub(crate) fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| is_alnum(c) || c == '-')
        && s.starts_with(is_alnum)
        && s.ends_with(is_alnum)
}

/// RFC 1123 subdomain: dot-separated labels, at most 253.
pub(crate) fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(dns_label)
}

/// Label value (also the name part of a label key): at most 63 of `[A-Za-z0-9_.-]`,
/// alphanumeric at both ends; values may be empty.
fn label_value(s: &str) -> bool {
    let an = |c: char| c.is_ascii_alphanumeric();
    s.is_empty()
        || (s.len() <= 63
            && s.chars().all(|c| an(c) || matches!(c, '-' | '_' | '.'))
            && s.starts_with(an)
            && s.ends_with(an))
}

fn label_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    !name.is_empty() && label_value(name) && prefix.is_none_or(dns_subdomain)
}

fn data_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Validates and normalizes an object about to be stored.
pub(crate) fn check(rt: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
    let key = rt.key();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let invalid = |field: &str, value: &str, why: &str| {
        ApiError::invalid(
            &key,
            &name,
            format!("{field}: Invalid value: {value:?}: {why}"),
        )
    };
    // Services and Namespaces need DNS labels (Services even RFC 1035: start with a letter).
    let name_ok = match rt.kind {
        "Service" => dns_label(&name) && name.starts_with(|c: char| c.is_ascii_lowercase()),
        "Namespace" => dns_label(&name),
        _ => dns_subdomain(&name),
    };
    if !name_ok {
        return Err(invalid(
            "metadata.name",
            &name,
            "must be a valid DNS name (lowercase alphanumerics, '-', '.')",
        ));
    }
    if let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if !label_key(k) {
                return Err(invalid(
                    "metadata.labels",
                    k,
                    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63)",
                ));
            }
            let value = v.as_str().unwrap_or("");
            if !v.is_string() || !label_value(value) {
                return Err(invalid(
                    &format!("metadata.labels.{k}"),
                    value,
                    "a valid label value must be 63 characters or less, empty, or begin and end with an alphanumeric character",
                ));
            }
        }
    }
    if let Some(annotations) = obj
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        if let Some((k, _)) = annotations.iter().find(|(k, _)| !label_key(k)) {
            return Err(invalid(
                "metadata.annotations",
                k,
                "must be a qualified name",
            ));
        }
        if let Some((k, _)) = annotations.iter().find(|(_, v)| !v.is_string()) {
            return Err(ApiError::bad_request(format!(
                "annotation {k} must be a string"
            )));
        }
    }
    if matches!(rt.kind, "Secret" | "ConfigMap") {
        for field in ["data", "binaryData", "stringData"] {
            if let Some(m) = obj.get(field).and_then(Value::as_object)
                && let Some(k) = m.keys().find(|k| !data_key(k))
            {
                return Err(invalid(
                    &format!("{field}[{k}]"),
                    k,
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                ));
            }
        }
    }
    // events.k8s.io/v1 validation: a note of at most 1 KiB (`NoteLengthLimit`, in bytes).
    if (rt.group, rt.kind) == ("events.k8s.io", "Event")
        && obj
            .get("note")
            .and_then(Value::as_str)
            .is_some_and(|note| note.len() > 1024)
    {
        return Err(invalid("note", "", "can have at most 1024 characters"));
    }
    if crate::crd::normalize(&rt.api_version(), rt.kind, obj) {
        return Ok(());
    }
    if let Some(result) = typed(rt, obj) {
        *obj = result.map_err(|e| {
            ApiError::bad_request(format!("error decoding {} {name:?}: {e}", rt.kind))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::lookup;
    use serde_json::json;

    #[test]
    fn names_and_labels() {
        assert!(dns_subdomain("app-abc123.x"));
        assert!(!dns_subdomain("App"));
        assert!(!dns_label(&"a".repeat(64)));
        assert!(label_key("core.spinkube.dev/app.web.status"));
        assert!(!label_key("bad key"));
        assert!(label_value("") && label_value("ready") && !label_value("-x"));
    }

    #[test]
    fn typed_roundtrip_prunes_unknown_fields_and_rejects_wrong_types() {
        let rt = lookup("", "v1", "configmaps").unwrap();
        let mut ok = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"},
            "data": {"k": "v"}, "bogus": 1});
        check(rt, &mut ok).unwrap();
        assert!(ok.get("bogus").is_none());
        let mut bad = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": 1}});
        assert_eq!(check(rt, &mut bad).unwrap_err().code, 400);
        let mut bad_name = json!({"metadata": {"name": "Upper"}});
        assert_eq!(check(rt, &mut bad_name).unwrap_err().code, 422);
        let svc = lookup("", "v1", "services").unwrap();
        let mut digit_service =
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "1abc"}});
        assert_eq!(check(svc, &mut digit_service).unwrap_err().code, 422);
        let events = lookup("events.k8s.io", "v1", "events").unwrap();
        let event = |note: String| {
            json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
                "eventTime": "2026-01-01T00:00:00.000000Z", "note": note})
        };
        check(events, &mut event("n".repeat(1024))).unwrap();
        assert_eq!(
            check(events, &mut event("n".repeat(1025)))
                .unwrap_err()
                .code,
            422
        );
    }
}
