//! Structural-schema behaviour of our CustomResourceDefinitions (read from the repo's `crds/`):
//! unknown fields are pruned and schema defaults applied, as the apiserver does for custom
//! resources.

use std::sync::OnceLock;

use serde_json::{Map, Value};

const CRDS: &[&str] = &[
    include_str!("../../../crds/core.spinkube.dev_spinapps.yaml"),
    include_str!("../../../crds/core.spinkube.dev_spinappexecutors.yaml"),
];

/// (apiVersion, kind) → openAPIV3Schema of every served CRD version.
fn schemas() -> &'static Vec<(String, String, Value)> {
    static SCHEMAS: OnceLock<Vec<(String, String, Value)>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let mut out = Vec::new();
        for text in CRDS {
            let Ok(crd) = serde_yaml::from_str::<Value>(text) else {
                continue;
            };
            let group = crd
                .pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or("");
            let kind = crd
                .pointer("/spec/names/kind")
                .and_then(Value::as_str)
                .unwrap_or("");
            for v in crd
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = v.get("name").and_then(Value::as_str).unwrap_or("");
                if let Some(schema) = v.pointer("/schema/openAPIV3Schema") {
                    out.push((format!("{group}/{name}"), kind.to_string(), schema.clone()));
                }
            }
        }
        out
    })
}

fn schema_for(api_version: &str, kind: &str) -> Option<&'static Value> {
    schemas()
        .iter()
        .find(|(a, k, _)| a == api_version && k == kind)
        .map(|(_, _, s)| s)
}

fn prune_and_default(v: &mut Value, schema: &Value, root: bool) {
    match v {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let preserve = schema
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                == Some(true);
            if let Some(props) = props {
                for (k, sub) in props {
                    if !map.contains_key(k)
                        && let Some(d) = sub.get("default")
                    {
                        map.insert(k.clone(), d.clone());
                    }
                }
            }
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let sub = props.and_then(|p| p.get(&k)).or(match additional {
                    Some(Value::Object(_)) => additional,
                    _ => None,
                });
                match sub {
                    Some(sub) => {
                        if let Some(child) = map.get_mut(&k) {
                            prune_and_default(child, sub, false);
                        }
                    }
                    None if preserve || additional == Some(&Value::Bool(true)) => {}
                    None => {
                        map.remove(&k);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    prune_and_default(item, item_schema, false);
                }
            }
        }
        _ => {}
    }
}

/// Prunes unknown fields and applies defaults; `false` when the type has no known schema.
pub(crate) fn normalize(api_version: &str, kind: &str, obj: &mut Value) -> bool {
    let Some(schema) = schema_for(api_version, kind) else {
        return false;
    };
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    prune_and_default(obj, schema, true);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spinapp_schema_prunes_and_defaults() {
        let mut app = json!({"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
            "metadata": {"name": "a", "labels": {"x": "y"}},
            "spec": {"image": "i", "executor": "e", "typo": 1}, "status": {"nonsense": true}});
        assert!(normalize("core.spinkube.dev/v1alpha1", "SpinApp", &mut app));
        assert!(app["spec"].get("typo").is_none());
        assert!(app["status"].get("nonsense").is_none());
        assert_eq!(app["metadata"]["labels"]["x"], "y");
        assert_eq!(app["spec"]["image"], "i");
        assert!(!normalize("v1", "ConfigMap", &mut app));
    }
}
