//! `spin-operator scaffold`: a SpinApp (and its runtime-config Secret and autoscaler) from
//! command-line choices, judged by the same rule table as the webhooks before anything is
//! emitted.
//!
//! Autoscaling follows upstream's model: the SpinApp gets `enableAutoscaling: true` and no
//! `replicas`, and the HPA / KEDA ScaledObject targets the app's Deployment. The CRD's CEL rule
//! forbids `replicas` while `enableAutoscaling` is true, so an autoscaler writing the SpinApp's
//! scale subresource (which sets `spec.replicas`) would be refused; and with `enableAutoscaling`
//! the operator leaves `Deployment.spec.replicas` unset, so the autoscaler is its only writer.
//! The output also stays valid for the Go operator, whose CRD has no scale subresource.

mod autoscaler;
mod runtime_config;

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::LocalObjectReference;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::api::{GROUP, Resources, RuntimeConfig, SpinApp, SpinAppSpec, SpinVar};
use crate::inventory::{DEFAULT_NAMESPACE, Inventory};
use crate::rules::{self, ErrorType, FieldError, Operation, Request};

pub use autoscaler::Autoscaler;

/// Executor `spin kube scaffold` names by default.
pub const DEFAULT_EXECUTOR: &str = "containerd-shim-spin";
/// Replicas (the minimum, with an autoscaler), as upstream's default.
pub const DEFAULT_REPLICAS: i32 = 2;
/// Autoscaler maximum, as upstream's default.
pub const DEFAULT_MAX_REPLICAS: i32 = 3;
/// CPU and memory utilization targets (percent of the request), as upstream's default.
pub const DEFAULT_TARGET_UTILIZATION: i32 = 60;

/// Pod label Azure Workload Identity's webhook looks for.
pub const AZURE_IDENTITY_LABEL: &str = "azure.workload.identity/use";

/// A `runtime-config.toml` to ship in a Secret.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConfigFile {
    /// How to name the file in messages (its path).
    pub file: String,
    pub text: String,
}

/// Everything the app is scaffolded from (the command-line flags).
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub image: String,
    /// `metadata.name`; derived from the image when unset.
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub executor: String,
    /// The replica count, or the autoscaler's minimum.
    pub replicas: i32,
    pub max_replicas: i32,
    pub autoscaler: Option<Autoscaler>,
    pub target_cpu_utilization: i32,
    pub target_memory_utilization: i32,
    pub cpu_limit: Option<String>,
    pub memory_limit: Option<String>,
    pub cpu_request: Option<String>,
    pub memory_request: Option<String>,
    /// `(name, value)` in the order given.
    pub variables: Vec<(String, String)>,
    pub components: Vec<String>,
    pub image_pull_secrets: Vec<String>,
    pub service_account_name: Option<String>,
    /// Label the pods for Azure Workload Identity (upstream's `--azure-identity`).
    pub azure_identity: bool,
    pub runtime_config: Option<RuntimeConfigFile>,
}

impl Spec {
    /// Upstream's defaults for everything but the image.
    pub fn new(image: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            name: None,
            namespace: None,
            executor: DEFAULT_EXECUTOR.to_string(),
            replicas: DEFAULT_REPLICAS,
            max_replicas: DEFAULT_MAX_REPLICAS,
            autoscaler: None,
            target_cpu_utilization: DEFAULT_TARGET_UTILIZATION,
            target_memory_utilization: DEFAULT_TARGET_UTILIZATION,
            cpu_limit: None,
            memory_limit: None,
            cpu_request: None,
            memory_request: None,
            variables: Vec::new(),
            components: Vec::new(),
            image_pull_secrets: Vec::new(),
            service_account_name: None,
            azure_identity: false,
            runtime_config: None,
        }
    }
}

/// The scaffolded manifests.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaffold {
    /// Multi-document YAML: the SpinApp, the runtime-config Secret, the autoscaler.
    pub yaml: String,
    /// What the webhooks would warn about (kubectl's `Warning:` lines).
    pub warnings: Vec<String>,
}

/// One object that would be denied, with every field error.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    /// How the API server names it: `SpinApp.core.spinkube.dev "hello"`.
    pub object: String,
    pub errors: Vec<FieldError>,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is invalid:", self.object)?;
        for e in &self.errors {
            write!(f, "\n  * {e}")?;
        }
        Ok(())
    }
}

/// Why nothing was scaffolded. No variant carries a runtime-config or variable value.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("{}", list(.0))]
    Invalid(Vec<Denial>),
    #[error("runtime config {file}: not valid TOML (line {line}, column {column}): {message}")]
    RuntimeConfigToml {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("applying the defaulting patch: {0}")]
    Patch(#[from] json_patch::PatchError),
    #[error("serializing the {what}: {detail}")]
    Serialize { what: &'static str, detail: String },
}

fn list(denials: &[Denial]) -> String {
    let all: Vec<String> = denials.iter().map(ToString::to_string).collect();
    all.join("\n")
}

/// The app name `spin kube scaffold` derives: the image's last path component without tag or
/// digest (`ghcr.io/foo/hello:v1` → `hello`).
pub fn app_name(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or_default();
    let last = without_digest.rsplit('/').next().unwrap_or_default();
    last.split(':').next().unwrap_or_default()
}

/// Builds the manifests, or every field error the webhooks (and the autoscaler's API) would
/// deny them with.
pub fn scaffold(spec: &Spec) -> Result<Scaffold, ScaffoldError> {
    let name = spec
        .name
        .clone()
        .unwrap_or_else(|| app_name(&spec.image).to_string());
    let namespace = spec.namespace.as_deref().filter(|ns| !ns.is_empty());
    let rc = spec
        .runtime_config
        .as_ref()
        .map(runtime_config::parse)
        .transpose()?;

    let app = spin_app(spec, &name, namespace);
    let object = serde_json::to_value(&app).map_err(|e| ScaffoldError::Serialize {
        what: "SpinApp",
        detail: e.to_string(),
    })?;
    let mut warnings = Vec::new();
    let mut denials = Vec::new();

    let mut app_errors = admit(&object, &name, namespace, &mut warnings)?;
    app_errors.extend(scaffold_checks(spec, namespace));
    if !app_errors.is_empty() {
        denials.push(Denial {
            object: format!("SpinApp.{GROUP} {name:?}"),
            errors: app_errors,
        });
    }
    if let (Some(rc), Some(file)) = (&rc, &spec.runtime_config) {
        let ns = namespace.unwrap_or(DEFAULT_NAMESPACE);
        let errors = rc.check(ns, &file.file, &mut warnings);
        if !errors.is_empty() {
            denials.push(Denial {
                object: format!("runtime config {:?}", file.file),
                errors,
            });
        }
    }
    let scaler = spec
        .autoscaler
        .map(|kind| autoscaler::Settings::new(kind, spec, &name, namespace));
    if let Some(scaler) = &scaler {
        let errors = scaler.check();
        if !errors.is_empty() {
            denials.push(Denial {
                object: scaler.describe(),
                errors,
            });
        }
    }
    if !denials.is_empty() {
        return Err(ScaffoldError::Invalid(denials));
    }

    let mut docs = vec![spin_app_yaml(&app)?];
    if let Some(file) = &spec.runtime_config {
        let secret = runtime_config::secret(&app, file);
        docs.push(to_yaml(&secret, "runtime-config Secret")?);
    }
    if let Some(scaler) = &scaler {
        docs.push(scaler.yaml()?);
    }
    Ok(Scaffold {
        yaml: docs.join("---\n"),
        warnings,
    })
}

/// The SpinApp as `spin kube scaffold` writes it (plus what upstream's template drops).
fn spin_app(spec: &Spec, name: &str, namespace: Option<&str>) -> SpinApp {
    let quantities = |pairs: [(&str, &Option<String>); 2]| {
        let map: BTreeMap<String, Quantity> = pairs
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_string(), Quantity(v.clone()?))))
            .collect();
        (!map.is_empty()).then_some(map)
    };
    let limits = quantities([("cpu", &spec.cpu_limit), ("memory", &spec.memory_limit)]);
    let requests = quantities([("cpu", &spec.cpu_request), ("memory", &spec.memory_request)]);
    let resources =
        (limits.is_some() || requests.is_some()).then_some(Resources { limits, requests });
    let autoscaled = spec.autoscaler.is_some();
    let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    SpinApp {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: namespace.map(str::to_string),
            ..ObjectMeta::default()
        },
        spec: SpinAppSpec {
            executor: spec.executor.clone(),
            image: spec.image.clone(),
            // With an autoscaler it owns the count; the CEL rule forbids replicas then.
            replicas: (!autoscaled).then_some(spec.replicas),
            enable_autoscaling: autoscaled,
            image_pull_secrets: (!spec.image_pull_secrets.is_empty()).then(|| {
                spec.image_pull_secrets
                    .iter()
                    .map(|s| LocalObjectReference { name: s.clone() })
                    .collect()
            }),
            variables: (!spec.variables.is_empty()).then(|| {
                spec.variables
                    .iter()
                    .map(|(name, value)| SpinVar {
                        name: name.clone(),
                        value: Some(value.clone()),
                        value_from: None,
                    })
                    .collect()
            }),
            components: non_empty(&spec.components),
            resources,
            service_account_name: spec.service_account_name.clone(),
            pod_labels: spec
                .azure_identity
                .then(|| BTreeMap::from([(AZURE_IDENTITY_LABEL.to_string(), "true".to_string())])),
            runtime_config: spec.runtime_config.as_ref().map(|_| RuntimeConfig {
                load_from_secret: Some(runtime_config::secret_name(name)),
                ..RuntimeConfig::default()
            }),
            ..SpinAppSpec::default()
        },
        status: None,
    }
}

/// Defaults and validates the app exactly as `spin-operator validate` does, and returns its
/// field errors. Offline nothing is known about the cluster: the executor is treated as the
/// `--allow-missing-executor` path treats it (judged unknown, not missing), and its "not created
/// yet" warning is dropped since scaffold never looked.
fn admit(
    object: &Value,
    name: &str,
    namespace: Option<&str>,
    warnings: &mut Vec<String>,
) -> Result<Vec<FieldError>, ScaffoldError> {
    let lookup = Inventory::default();
    let opts = rules::Options {
        allow_missing_executor: true,
    };
    let req = Request {
        operation: Operation::Create,
        namespace: namespace.unwrap_or(DEFAULT_NAMESPACE),
        name,
        object: Some(object),
        old_object: None,
    };
    let admission = rules::admit_spinapp(&req, &lookup, &opts)?;
    for w in admission
        .mutation
        .warnings
        .iter()
        .chain(&admission.validation.warnings)
    {
        if w.rule != "SA-EXECUTOR-PENDING" {
            warnings.push(w.message.clone());
        }
    }
    Ok(admission.validation.errors)
}

/// What scaffold alone can refuse: a namespace that cannot exist, and an autoscaler whose
/// utilization targets have no request to be a percentage of.
fn scaffold_checks(spec: &Spec, namespace: Option<&str>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(ns) = namespace
        && let Err(detail) = rules::names::dns1123_label(ns)
    {
        errors.push(FieldError {
            rule: "SCAFFOLD-NAMESPACE",
            field: "metadata.namespace".to_string(),
            error_type: ErrorType::Invalid,
            bad_value: Some(Value::from(ns)),
            detail,
        });
    }
    if spec.autoscaler.is_some() {
        for (resource, limit, request) in [
            ("cpu", &spec.cpu_limit, &spec.cpu_request),
            ("memory", &spec.memory_limit, &spec.memory_request),
        ] {
            if limit.is_none() && request.is_none() {
                errors.push(FieldError {
                    rule: "SCAFFOLD-AUTOSCALER-RESOURCES",
                    field: format!("spec.resources.limits[{resource}]"),
                    error_type: ErrorType::Required,
                    bad_value: None,
                    detail: format!(
                        "an autoscaler's {resource} utilization target is a percentage of the \
                         {resource} request: set --{resource}-limit or --{resource}-request (a \
                         request defaults to the limit)"
                    ),
                });
            }
        }
    }
    errors
}

/// The SpinApp without `enableAutoscaling: false` (the typed field is always serialized).
fn spin_app_yaml(app: &SpinApp) -> Result<String, ScaffoldError> {
    let mut value = serde_yaml::to_value(app).map_err(|e| ScaffoldError::Serialize {
        what: "SpinApp",
        detail: e.to_string(),
    })?;
    if !app.spec.enable_autoscaling
        && let Some(spec) = value.get_mut("spec").and_then(|s| s.as_mapping_mut())
    {
        spec.remove("enableAutoscaling");
    }
    to_yaml(&value, "SpinApp")
}

fn to_yaml<T: serde::Serialize>(value: &T, what: &'static str) -> Result<String, ScaffoldError> {
    serde_yaml::to_string(value).map_err(|e| ScaffoldError::Serialize {
        what,
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
