//! `spin-operator render`: the objects the operator would create for the SpinApps in the inputs.
//!
//! Executors, Secrets and ConfigMaps are taken from the same inputs (nothing is read from a
//! cluster). Secret values are redacted unless `--show-secrets` is given, so that a preview in a
//! terminal or CI log does not leak credentials resolved into the runtime config.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use serde_json::Value;
use spin_operator::api::SpinApp;
use spin_operator::desired::{self, Children};
use spin_operator::inventory::{DEFAULT_NAMESPACE, Inventory, Lookup};
use spin_operator::manifests::{self, Manifest};

/// Output format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Multi-document YAML.
    #[default]
    Yaml,
    /// A `v1` `List` in JSON.
    Json,
}

/// Arguments of `spin-operator render`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Manifest files or directories (`-` for standard input); SpinApps plus the executors,
    /// Secrets and ConfigMaps they use.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Yaml)]
    pub output: Format,
    /// Print Secret values instead of redacting them.
    #[arg(long)]
    pub show_secrets: bool,
}

/// Placeholder for a redacted Secret value. Not valid base64, so redacted output cannot be
/// applied by mistake.
const REDACTED: &str = "<redacted>";

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let located = manifests::load(&args.files).context("reading manifests")?;
    let inventory = manifests::inventory(&located);
    let mut objects = Vec::new();
    let mut ca_shown = BTreeSet::new();
    let mut failed = false;
    let apps = located.iter().filter_map(|m| match &m.object {
        Manifest::SpinApp(app) => Some(app.as_ref()),
        _ => None,
    });
    for app in apps {
        let namespace = app
            .namespace()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        match render_app(app, &namespace, &inventory) {
            Ok(children) => {
                let Children {
                    deployment,
                    service,
                    runtime_config_secret,
                    ca_secret,
                } = children;
                // The CA Secret is shared by the namespace: show it once.
                if let Some(ca) = ca_secret
                    && ca_shown.insert((namespace.clone(), ca.name.clone()))
                {
                    objects.push(secret_json(&ca.secret(), args.show_secrets)?);
                }
                if let Some(secret) = runtime_config_secret {
                    objects.push(secret_json(&secret, args.show_secrets)?);
                }
                if let Some(deployment) = deployment {
                    objects.push(serde_json::to_value(deployment)?);
                }
                objects.push(serde_json::to_value(service)?);
            }
            Err(message) => {
                failed = true;
                eprintln!("error: SpinApp {namespace}/{}: {message}", app.name_any());
            }
        }
    }
    let text = match args.output {
        Format::Yaml => objects
            .iter()
            .map(serde_yaml::to_string)
            .collect::<Result<Vec<_>, _>>()?
            .join("---\n"),
        Format::Json => {
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
            serde_json::to_string_pretty(&list)? + "\n"
        }
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Children of one app, or a message saying why not (never containing Secret values).
fn render_app(app: &SpinApp, namespace: &str, inventory: &Inventory) -> Result<Children, String> {
    // As the mutating webhook would: an unset executor defaults to the namespace's first one.
    let executor_name = if app.spec.executor.is_empty() {
        inventory
            .executor_names(namespace)
            .into_iter()
            .next()
            .ok_or_else(|| {
                format!("no executor set and no SpinAppExecutor in namespace {namespace:?} in the inputs")
            })?
    } else {
        app.spec.executor.clone()
    };
    let executor = inventory.executor(namespace, &executor_name).ok_or_else(|| {
        format!("SpinAppExecutor {executor_name:?} not found in namespace {namespace:?} in the inputs")
    })?;
    desired::build(app, &executor, inventory).map_err(|e| format!("{e} ({})", e.reason()))
}

/// A Secret as JSON, with its values replaced by [`REDACTED`] unless `show` is set.
fn secret_json(secret: &Secret, show: bool) -> anyhow::Result<Value> {
    let mut value = serde_json::to_value(secret)?;
    if !show {
        for field in ["data", "stringData"] {
            if let Some(Value::Object(map)) = value.get_mut(field) {
                for v in map.values_mut() {
                    *v = Value::String(REDACTED.to_string());
                }
            }
        }
    }
    Ok(value)
}
