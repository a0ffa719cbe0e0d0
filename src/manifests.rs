//! Reading manifests from files and directories (for `validate` and `render`).
//!
//! Multi-document YAML (and JSON) are accepted, as with `kubectl apply -f`. Objects of kinds the
//! operator does not handle are kept as [`Manifest::Other`] so callers can say they skipped them.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde::Deserialize;

use crate::api::{API_VERSION, SpinApp, SpinAppExecutor};
use crate::inventory::Inventory;

/// Why manifests could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: document {index}: not valid YAML: {source}")]
    Yaml {
        path: String,
        index: usize,
        source: serde_yaml::Error,
    },
    #[error("{path}: document {index} ({kind} {name}): {source}")]
    Decode {
        path: String,
        index: usize,
        kind: String,
        name: String,
        source: serde_json::Error,
    },
}

/// One object read from an input, with where it came from.
#[derive(Debug, Clone)]
pub struct Located<T> {
    pub source: String,
    pub index: usize,
    pub object: T,
}

/// A decoded manifest.
#[derive(Debug, Clone)]
pub enum Manifest {
    SpinApp(Box<SpinApp>),
    SpinAppExecutor(Box<SpinAppExecutor>),
    Secret(Box<Secret>),
    ConfigMap(Box<ConfigMap>),
    /// Any other kind: not ours to check.
    Other {
        api_version: String,
        kind: String,
        name: String,
    },
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

/// Expands files and directories into files: a directory gives its `.yaml`/`.yml`/`.json` files,
/// sorted, not descending into subdirectories (as `kubectl apply -f DIR` without `-R`).
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ManifestError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries = Vec::new();
            collect_dir(path, &mut entries)?;
            entries.sort();
            files.extend(entries);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn collect_dir(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ManifestError> {
    let read_err = |source| ManifestError::Read {
        path: dir.display().to_string(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        if !path.is_dir()
            && matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads every manifest in `paths` (files or directories; `-` is standard input).
pub fn load(paths: &[PathBuf]) -> Result<Vec<Located<Manifest>>, ManifestError> {
    let mut out = Vec::new();
    for file in expand_paths(paths)? {
        let name = file.display().to_string();
        let text = if name == "-" {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(&file)
        }
        .map_err(|source| ManifestError::Read {
            path: name.clone(),
            source,
        })?;
        out.extend(parse(&name, &text)?);
    }
    Ok(out)
}

/// Parses a multi-document YAML (or JSON) text.
pub fn parse(source: &str, text: &str) -> Result<Vec<Located<Manifest>>, ManifestError> {
    let mut out = Vec::new();
    for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| ManifestError::Yaml {
            path: source.to_string(),
            index,
            source: e,
        })?;
        if value.is_null() {
            continue;
        }
        // Through JSON so that k8s-openapi's (JSON-shaped) deserializers see what the apiserver sees.
        let json = serde_json::to_value(&value).map_err(|e| ManifestError::Decode {
            path: source.to_string(),
            index,
            kind: String::new(),
            name: String::new(),
            source: e,
        })?;
        let object = decode(&json).map_err(|(kind, name, e)| ManifestError::Decode {
            path: source.to_string(),
            index,
            kind,
            name,
            source: e,
        })?;
        out.push(Located {
            source: source.to_string(),
            index,
            object,
        });
    }
    Ok(out)
}

fn decode(json: &serde_json::Value) -> Result<Manifest, (String, String, serde_json::Error)> {
    let meta = TypeMeta::deserialize(json).unwrap_or_default();
    let name = json
        .pointer("/metadata/name")
        .and_then(|n| n.as_str())
        .unwrap_or("")
        .to_string();
    let fail = |e| (meta.kind.clone(), name.clone(), e);
    Ok(match (meta.api_version.as_str(), meta.kind.as_str()) {
        (API_VERSION, "SpinApp") => Manifest::SpinApp(Box::new(
            serde_json::from_value(json.clone()).map_err(fail)?,
        )),
        (API_VERSION, "SpinAppExecutor") => Manifest::SpinAppExecutor(Box::new(
            serde_json::from_value(json.clone()).map_err(fail)?,
        )),
        ("v1", "Secret") => Manifest::Secret(Box::new(
            serde_json::from_value(json.clone()).map_err(fail)?,
        )),
        ("v1", "ConfigMap") => Manifest::ConfigMap(Box::new(
            serde_json::from_value(json.clone()).map_err(fail)?,
        )),
        _ => Manifest::Other {
            api_version: meta.api_version,
            kind: meta.kind,
            name,
        },
    })
}

/// Builds an inventory of everything in `manifests` (apps, executors, Secrets, ConfigMaps).
pub fn inventory(manifests: &[Located<Manifest>]) -> Inventory {
    let mut inventory = Inventory::default();
    for m in manifests {
        match &m.object {
            Manifest::SpinApp(app) => inventory.add_app((**app).clone()),
            Manifest::SpinAppExecutor(e) => inventory.add_executor((**e).clone()),
            Manifest::Secret(s) => inventory.add_secret((**s).clone()),
            Manifest::ConfigMap(c) => inventory.add_config_map((**c).clone()),
            Manifest::Other { .. } => {}
        }
    }
    inventory
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{Lookup, Presence};

    const DOCS: &str = r#"
apiVersion: core.spinkube.dev/v1alpha1
kind: SpinAppExecutor
metadata: {name: zeta}
spec: {createDeployment: false}
---
# an empty document is skipped
---
apiVersion: core.spinkube.dev/v1alpha1
kind: SpinAppExecutor
metadata: {name: alpha, namespace: apps}
spec: {createDeployment: false}
---
apiVersion: core.spinkube.dev/v1alpha1
kind: SpinApp
metadata: {name: web}
spec: {image: "x:1", executor: zeta}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {token: t}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: hpa}
"#;

    #[test]
    fn parses_every_document_and_keeps_other_kinds() {
        let docs = parse("mem", DOCS).unwrap();
        let kinds: Vec<&str> = docs
            .iter()
            .map(|d| match &d.object {
                Manifest::SpinApp(_) => "SpinApp",
                Manifest::SpinAppExecutor(_) => "SpinAppExecutor",
                Manifest::Secret(_) => "Secret",
                Manifest::ConfigMap(_) => "ConfigMap",
                Manifest::Other { kind, .. } => kind,
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "SpinAppExecutor",
                "SpinAppExecutor",
                "SpinApp",
                "Secret",
                "HorizontalPodAutoscaler"
            ]
        );
        assert_eq!(docs[2].index, 3, "indexes count the skipped empty document");
    }

    #[test]
    fn inventory_scopes_lookups_to_namespaces() {
        let inventory = inventory(&parse("mem", DOCS).unwrap());
        assert_eq!(inventory.executor_names("default"), ["zeta"]);
        assert_eq!(inventory.executor_names("apps"), ["alpha"]);
        assert!(inventory.executor("default", "alpha").is_none());
        assert_eq!(inventory.apps_using_executor("default", "zeta"), ["web"]);
        assert!(inventory.apps_using_executor("apps", "zeta").is_empty());
        assert_eq!(inventory.secret("default", "creds"), Presence::Present);
        // An offline run only knows what it was given.
        assert_eq!(inventory.secret("default", "other"), Presence::Unknown);
    }

    #[test]
    fn decode_errors_name_the_document() {
        let err = parse(
            "bad.yaml",
            "apiVersion: core.spinkube.dev/v1alpha1\nkind: SpinApp\nmetadata: {name: x}\nspec: {replicas: three}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("bad.yaml: document 0 (SpinApp x):"),
            "{err}"
        );
        let err = parse("y.yaml", "a: [").unwrap_err().to_string();
        assert!(err.contains("not valid YAML"), "{err}");
    }
}
