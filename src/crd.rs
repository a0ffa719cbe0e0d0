//! CustomResourceDefinitions generated from the Rust API types.
//!
//! The committed `crds/*.yaml` files are exactly [`write_all`]'s output; a test fails on drift.

use std::path::Path;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::CustomResourceExt;

use crate::api::{SpinApp, SpinAppExecutor};

/// Why a CRD could not be produced or written.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    #[error("serializing CRD {name} to YAML: {source}")]
    Serialize {
        name: String,
        source: serde_yaml::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// The SpinApp CRD, with `executor` and `image` required as upstream.
pub fn spinapp_crd() -> CustomResourceDefinition {
    let mut crd = SpinApp::crd();
    // Decoded leniently so webhooks can explain a missing field; the apiserver still requires them.
    require_spec_fields(&mut crd, &["executor", "image"]);
    crd
}

/// The SpinAppExecutor CRD, with `createDeployment` required as upstream.
pub fn executor_crd() -> CustomResourceDefinition {
    let mut crd = SpinAppExecutor::crd();
    require_spec_fields(&mut crd, &["createDeployment"]);
    crd
}

/// Both CRDs with the file name each is committed under in `crds/`.
pub fn all() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("core.spinkube.dev_spinapps.yaml", spinapp_crd()),
        ("core.spinkube.dev_spinappexecutors.yaml", executor_crd()),
    ]
}

/// One CRD as a YAML document.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, CrdError> {
    serde_yaml::to_string(crd).map_err(|source| CrdError::Serialize {
        name: crd.metadata.name.clone().unwrap_or_default(),
        source,
    })
}

/// Both CRDs as one multi-document YAML stream (what `spin-operator crds` prints).
pub fn all_yaml() -> Result<String, CrdError> {
    let docs = all()
        .iter()
        .map(|(_, crd)| to_yaml(crd))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(docs
        .iter()
        .map(|doc| format!("---\n{doc}"))
        .collect::<String>())
}

/// Writes each CRD to `dir/<file name>`.
pub fn write_all(dir: &Path) -> Result<(), CrdError> {
    std::fs::create_dir_all(dir).map_err(|source| CrdError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    for (file, crd) in all() {
        let path = dir.join(file);
        std::fs::write(&path, to_yaml(&crd)?).map_err(|source| CrdError::Write {
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

fn require_spec_fields(crd: &mut CustomResourceDefinition, fields: &[&str]) {
    for version in &mut crd.spec.versions {
        let Some(spec) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|root| root.properties.as_mut())
            .and_then(|props| props.get_mut("spec"))
        else {
            continue;
        };
        add_required(spec, fields);
    }
}

fn add_required(schema: &mut JSONSchemaProps, fields: &[&str]) {
    let required = schema.required.get_or_insert_with(Vec::new);
    for field in fields {
        if !required.iter().any(|f| f == field) {
            required.push((*field).to_string());
        }
    }
    required.sort();
}
