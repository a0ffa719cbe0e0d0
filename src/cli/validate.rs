//! `spin-operator validate`: runs the admission rules offline, as `kubectl apply` would meet them.
//!
//! Manifests are read as raw JSON (not through the typed decoder) so that an object the typed API
//! rejects still gets field errors instead of stopping the whole run.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::Value;

use spin_operator::api::API_VERSION;
use spin_operator::inventory::{DEFAULT_NAMESPACE, Inventory};
use spin_operator::rules::{self, Decision, Operation, Options, Request};

/// Arguments of `spin-operator validate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Manifest files or directories (YAML or JSON, multi-document; `-` reads standard input).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Also read manifests in subdirectories of the given directories (as `kubectl -R`).
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Admit SpinApps whose executor does not exist (yet) with a warning instead of a denial.
    #[arg(long)]
    pub allow_missing_executor: bool,
    /// Also print each admitted SpinApp as defaulted (yaml, json) or the defaulting patch.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<Output>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Yaml,
    Json,
    Patch,
}

/// Exit code for unreadable input (a denial is 1).
const EXIT_UNREADABLE: u8 = 2;

/// One document from the inputs.
struct Doc {
    source: String,
    object: Value,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let docs = match load(&args.files, args.recursive) {
        Ok(docs) => docs,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(EXIT_UNREADABLE));
        }
    };
    let opts = Options {
        allow_missing_executor: args.allow_missing_executor,
    };
    // Executors are judged first: one the webhook would deny never exists for the apps to use.
    let mut inventory = inventory(&docs);
    let executor_decisions: Vec<Option<Decision>> = docs
        .iter()
        .map(|doc| {
            (api_version(&doc.object) == API_VERSION && kind(&doc.object) == "SpinAppExecutor")
                .then(|| executor_decision(doc, &inventory, &opts))
        })
        .collect();
    for (doc, decision) in docs.iter().zip(&executor_decisions) {
        if decision.as_ref().is_some_and(|d| !d.allowed()) {
            inventory.executors.remove(&(
                namespace(&doc.object).to_string(),
                name(&doc.object).to_string(),
            ));
        }
    }
    let mut denied = 0usize;
    let mut admitted = 0usize;
    for (doc, executor_decision) in docs.iter().zip(&executor_decisions) {
        let outcome = match (api_version(&doc.object), kind(&doc.object)) {
            (API_VERSION, "SpinApp") => Some(spinapp(doc, &inventory, &opts, args.output)?),
            (API_VERSION, "SpinAppExecutor") => {
                executor_decision.as_ref().map(|d| report_executor(doc, d))
            }
            (api, kind) => {
                let used = matches!((api, kind), ("v1", "Secret" | "ConfigMap"));
                println!(
                    "{}/{}: skipped ({}{})",
                    kind.to_ascii_lowercase(),
                    name(&doc.object),
                    if kind.is_empty() {
                        "no kind"
                    } else {
                        "not a SpinApp or SpinAppExecutor"
                    },
                    if used {
                        "; used for reference checks"
                    } else {
                        ""
                    }
                );
                None
            }
        };
        match outcome {
            Some(true) => admitted += 1,
            Some(false) => denied += 1,
            None => {}
        }
    }
    println!("{admitted} admitted, {denied} denied");
    Ok(if denied > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Files named, and the manifests (`.yaml`, `.yml`, `.json`) in directories named, sorted.
fn expand(paths: &[PathBuf], recursive: bool) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        let mut found = Vec::new();
        for entry in
            std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))?
        {
            let entry = entry
                .with_context(|| format!("reading {}", path.display()))?
                .path();
            if entry.is_dir() {
                if recursive {
                    found.extend(expand(&[entry], true)?);
                }
            } else if matches!(
                entry.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            ) {
                found.push(entry);
            }
        }
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

fn load(paths: &[PathBuf], recursive: bool) -> anyhow::Result<Vec<Doc>> {
    let files = expand(paths, recursive)?;
    let mut docs = Vec::new();
    for file in files {
        let source = file.display().to_string();
        let text = if source == "-" {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(&file)
        }
        .with_context(|| format!("reading {source}"))?;
        for (index, de) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let yaml = serde_yaml::Value::deserialize(de)
                .with_context(|| format!("{source}: document {index}: not valid YAML"))?;
            if yaml.is_null() {
                continue;
            }
            let object = serde_json::to_value(&yaml).with_context(|| {
                format!("{source}: document {index}: not representable as JSON")
            })?;
            docs.push(Doc {
                source: source.clone(),
                object,
            });
        }
    }
    Ok(docs)
}

/// Executors, Secrets, ConfigMaps (and apps) of the inputs, for the rules' lookups. Objects that
/// do not decode are left out here; their own validation reports them.
fn inventory(docs: &[Doc]) -> Inventory {
    let mut inv = Inventory::default();
    for doc in docs {
        let o = doc.object.clone();
        match (api_version(&doc.object), kind(&doc.object)) {
            (API_VERSION, "SpinAppExecutor") => {
                if let Ok(e) = serde_json::from_value(o) {
                    inv.add_executor(e);
                }
            }
            (API_VERSION, "SpinApp") => {
                if let Ok(a) = serde_json::from_value(o) {
                    inv.add_app(a);
                }
            }
            ("v1", "Secret") => {
                if let Ok(s) = serde_json::from_value(o) {
                    inv.add_secret(s);
                }
            }
            ("v1", "ConfigMap") => {
                if let Ok(c) = serde_json::from_value(o) {
                    inv.add_config_map(c);
                }
            }
            _ => {}
        }
    }
    inv
}

fn api_version(o: &Value) -> &str {
    o.get("apiVersion").and_then(Value::as_str).unwrap_or("")
}

fn kind(o: &Value) -> &str {
    o.get("kind").and_then(Value::as_str).unwrap_or("")
}

fn name(o: &Value) -> &str {
    o.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn namespace(o: &Value) -> &str {
    o.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|ns| !ns.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE)
}

/// Defaults then validates one SpinApp; prints the outcome. Returns whether it was admitted.
fn spinapp(
    doc: &Doc,
    inventory: &Inventory,
    opts: &Options,
    output: Option<Output>,
) -> anyhow::Result<bool> {
    let (ns, name) = (namespace(&doc.object), name(&doc.object));
    let req = Request {
        operation: Operation::Create,
        namespace: ns,
        name,
        object: Some(&doc.object),
        old_object: None,
    };
    let rules::Admission {
        mutation,
        defaulted,
        validation,
    } = rules::admit_spinapp(&req, inventory, opts)
        .context("applying the defaulting patch to its own input")?;
    let id = format!("spinapp.{}/{name}", spin_operator::api::GROUP);
    print_warnings(&mutation);
    print_warnings(&validation);
    if !validation.allowed() {
        print_denial(doc, "SpinApp", name, &validation);
        return Ok(false);
    }
    let defaults = describe_patch(&mutation);
    if defaults.is_empty() {
        println!("{id}: admitted");
    } else {
        println!("{id}: admitted (defaulted: {defaults})");
    }
    match output {
        Some(Output::Yaml) => print!("{}", serde_yaml::to_string(&defaulted)?),
        Some(Output::Json) => println!("{}", serde_json::to_string_pretty(&defaulted)?),
        Some(Output::Patch) => println!("{}", serde_json::to_string_pretty(&mutation.patch)?),
        None => {}
    }
    Ok(true)
}

fn executor_decision(doc: &Doc, inventory: &Inventory, opts: &Options) -> Decision {
    let req = Request {
        operation: Operation::Create,
        namespace: namespace(&doc.object),
        name: name(&doc.object),
        object: Some(&doc.object),
        old_object: None,
    };
    rules::validate_executor(&req, inventory, opts)
}

/// Prints an executor's outcome. Returns whether it was admitted.
fn report_executor(doc: &Doc, decision: &Decision) -> bool {
    let name = name(&doc.object);
    print_warnings(decision);
    if decision.allowed() {
        println!(
            "spinappexecutor.{}/{name}: admitted",
            spin_operator::api::GROUP
        );
        true
    } else {
        print_denial(doc, "SpinAppExecutor", name, decision);
        false
    }
}

fn print_warnings(d: &Decision) {
    for w in &d.warnings {
        eprintln!("Warning: {}", w.message);
    }
}

/// As kubectl prints an `Invalid` status, with one field error per line.
fn print_denial(doc: &Doc, kind: &str, name: &str, d: &Decision) {
    let mut text = format!(
        "Error from server (Invalid): error when creating {:?}: {kind}.{} {name:?} is invalid:",
        doc.source,
        spin_operator::api::GROUP
    );
    for e in &d.errors {
        let _ = write!(text, "\n  * {e}");
    }
    eprintln!("{text}");
}

/// `spec.executor="containerd-shim-spin", spec.replicas=1` from the patch operations.
fn describe_patch(d: &Decision) -> String {
    let mut parts = Vec::new();
    for op in &d.patch.0 {
        let json_patch::PatchOperation::Add(add) = op else {
            continue;
        };
        let path = add.path.to_string();
        let field = path.trim_start_matches('/').replace('/', ".");
        match &add.value {
            Value::Object(map) if path == "/spec" => {
                for (k, v) in map {
                    parts.push(format!("spec.{k}={v}"));
                }
            }
            v => parts.push(format!("{field}={v}")),
        }
    }
    parts.join(", ")
}
