//! Deciding whether a child needs a server-side apply: the desired fields must be a subset of the
//! live object, and the live object must carry the hash of the last desired state we applied (so
//! fields we stopped setting — which a subset check cannot see — are removed by a new apply).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::error::ControllerError;

/// Annotation holding the hash of the desired state last applied by the operator.
pub const APPLIED_HASH_ANNOTATION: &str = "core.spinkube.dev/applied-hash";

/// True when every field present in `desired` has an equal value in `live`. Objects may have extra
/// keys in `live` (server defaults, other managers); arrays must have the same length and match
/// element-wise as subsets; `null` in `desired` matches an absent field.
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => fields_subset(d.iter(), l),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(dv, lv)| is_subset(dv, lv))
        }
        (Value::Null, _) => true,
        (Value::Number(d), Value::Number(l)) => d.as_f64() == l.as_f64(),
        (d, l) => d == l,
    }
}

fn fields_subset<'a>(
    mut desired: impl Iterator<Item = (&'a String, &'a Value)>,
    live: &serde_json::Map<String, Value>,
) -> bool {
    desired.all(|(k, dv)| match live.get(k) {
        Some(lv) => is_subset(dv, lv),
        // An empty desired map/list is satisfied by an absent live field (the API drops them).
        None => dv.is_null() || is_empty_collection(dv),
    })
}

/// [`is_subset`] of a whole object, its type aside: `apiVersion` and `kind` are not compared.
/// A cache holds one kind, and the real API server leaves both out of the list items of built-in
/// kinds, so every object a cache got from its initial list lacks them (comparing them made a
/// restarted operator re-apply every child).
pub fn object_matches(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => fields_subset(
            d.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "apiVersion" | "kind")),
            l,
        ),
        _ => is_subset(desired, live),
    }
}

fn is_empty_collection(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Hash of a desired object's JSON (stable: serde_json maps are sorted).
pub fn desired_hash(desired: &Value) -> String {
    let bytes = serde_json::to_vec(desired).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Serializes `desired`, stamps the applied-hash annotation into it, and returns the stamped object
/// with its JSON.
///
/// Serialized once: the annotation goes into the JSON and the object alike (this runs for every
/// child in every reconcile, and a second serialization was a few per cent of the operator's CPU
/// while converging a fleet).
pub fn stamp<K: Serialize + kube::Resource>(
    mut desired: K,
    kind: &'static str,
) -> Result<(K, Value), ControllerError> {
    let mut value = serde_json::to_value(&desired)
        .map_err(|source| ControllerError::Serialize { kind, source })?;
    let hash = desired_hash(&value);
    let annotations = value
        .as_object_mut()
        .and_then(|object| {
            object
                .entry("metadata")
                .or_insert_with(|| Value::Object(Default::default()))
                .as_object_mut()
        })
        .and_then(|metadata| {
            metadata
                .entry("annotations")
                .or_insert_with(|| Value::Object(Default::default()))
                .as_object_mut()
        });
    let Some(annotations) = annotations else {
        return Err(ControllerError::Serialize {
            kind,
            source: serde::ser::Error::custom("metadata or annotations is not an object"),
        });
    };
    annotations.insert(
        APPLIED_HASH_ANNOTATION.to_string(),
        Value::String(hash.clone()),
    );
    desired
        .meta_mut()
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(APPLIED_HASH_ANNOTATION.to_string(), hash);
    Ok((desired, value))
}

/// The applied-hash annotation of a stamped desired object (empty when absent).
pub fn applied_hash(stamped: &Value) -> &str {
    stamped
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(APPLIED_HASH_ANNOTATION))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// True when `live` already matches the stamped desired JSON.
pub fn up_to_date<K: Serialize>(stamped: &Value, live: Option<&K>) -> bool {
    let Some(live) = live else { return false };
    match serde_json::to_value(live) {
        Ok(live) => object_matches(stamped, &live),
        Err(_) => false,
    }
}

/// Moves `stringData` into `data` (as the API server does), so the desired Secret compares equal
/// to the live one.
pub fn normalize_secret(mut secret: Secret) -> Secret {
    if let Some(string_data) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(BTreeMap::new);
        for (k, v) in string_data {
            data.insert(k, ByteString(v.into_bytes()));
        }
    }
    secret
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_ignores_extra_live_fields() {
        let d = json!({"spec": {"replicas": 2, "template": {"containers": [{"name": "a"}]}}});
        let l = json!({"spec": {"replicas": 2, "x": 1,
            "template": {"containers": [{"name": "a", "terminationMessagePath": "/dev"}]}},
            "status": {"readyReplicas": 1}});
        assert!(is_subset(&d, &l));
    }

    #[test]
    fn objects_match_without_their_type_as_list_items_come() {
        let desired = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "a"}, "spec": {"replicas": 2}});
        let listed = json!({"metadata": {"name": "a", "uid": "u"}, "spec": {"replicas": 2}});
        assert!(!is_subset(&desired, &listed));
        assert!(object_matches(&desired, &listed));
        assert!(!object_matches(
            &desired,
            &json!({"metadata": {"name": "a"}, "spec": {"replicas": 3}})
        ));
        // Nested `kind` fields (e.g. an owner reference's) are still compared.
        let owned = json!({"metadata": {"ownerReferences": [{"kind": "SpinApp"}]}});
        assert!(!object_matches(
            &owned,
            &json!({"metadata": {"ownerReferences": [{"kind": "X"}]}})
        ));
    }

    #[test]
    fn subset_detects_changed_missing_and_resized() {
        let l = json!({"a": {"b": [1, 2]}, "c": "x"});
        assert!(!is_subset(&json!({"c": "y"}), &l));
        assert!(!is_subset(&json!({"d": "y"}), &l));
        assert!(!is_subset(&json!({"a": {"b": [1]}}), &l));
        assert!(!is_subset(&json!({"a": {"b": [1, 3]}}), &l));
        assert!(is_subset(
            &json!({"a": {"b": [1, 2]}, "e": null, "f": {}}),
            &l
        ));
        // Numbers compare by value (1 == 1.0).
        assert!(is_subset(&json!({"n": 1}), &json!({"n": 1.0})));
    }

    #[test]
    fn stamping_adds_a_hash_that_changes_with_content() {
        let mut s = Secret::default();
        s.metadata.name = Some("a".into());
        let (_, v1) = stamp(s.clone(), "Secret").unwrap();
        s.metadata.labels = Some([("k".to_string(), "v".to_string())].into());
        let (_, v2) = stamp(s.clone(), "Secret").unwrap();
        let h1 = &v1["metadata"]["annotations"][APPLIED_HASH_ANNOTATION];
        let h2 = &v2["metadata"]["annotations"][APPLIED_HASH_ANNOTATION];
        assert!(h1.is_string());
        assert_ne!(h1, h2);
        // Live object stamped with the old hash is not up to date with the new desired state.
        let (live, _) = stamp(
            Secret {
                metadata: s.metadata.clone(),
                ..Default::default()
            },
            "Secret",
        )
        .unwrap();
        assert!(up_to_date(&v2, Some(&live)));
        assert!(!up_to_date(&v1, Some(&live)));
        assert!(!up_to_date::<Secret>(&v1, None));
    }

    #[test]
    fn stamped_json_is_the_stamped_object_serialized() {
        let mut s = Secret::default();
        s.metadata.name = Some("a".into());
        for annotations in [None, Some([("k".to_string(), "v".to_string())].into())] {
            s.metadata.annotations = annotations;
            let (stamped, json) = stamp(s.clone(), "Secret").unwrap();
            assert_eq!(json, serde_json::to_value(&stamped).unwrap());
            assert_eq!(
                stamped.metadata.annotations.unwrap()[APPLIED_HASH_ANNOTATION],
                applied_hash(&json)
            );
        }
    }

    #[test]
    fn string_data_becomes_data() {
        let s = Secret {
            string_data: Some([("k".to_string(), "v".to_string())].into()),
            ..Default::default()
        };
        let n = normalize_secret(s);
        assert!(n.string_data.is_none());
        assert_eq!(n.data.unwrap()["k"].0, b"v".to_vec());
    }
}
