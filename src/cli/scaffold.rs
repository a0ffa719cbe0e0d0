//! `spin-operator scaffold`: print (or write) a SpinApp and its companions, judged first by the
//! webhooks' rules. Parsing, file I/O and printing only; the building is `spin_operator::scaffold`.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use spin_operator::scaffold::{self, Autoscaler, RuntimeConfigFile, ScaffoldError, Spec};

/// Arguments of `spin-operator scaffold` (the flags of `spin kube scaffold`).
#[derive(clap::Args, Debug)]
#[command(after_long_help = AUTOSCALING_HELP)]
pub struct Args {
    /// OCI reference of the Spin app; the app is named after its last path component.
    #[arg(short = 'f', long = "from", value_name = "IMAGE")]
    pub from: String,
    /// Number of replicas (with --autoscaler: the minimum).
    #[arg(short = 'r', long, default_value_t = scaffold::DEFAULT_REPLICAS, allow_hyphen_values = true)]
    pub replicas: i32,
    /// Maximum number of replicas of the autoscaler [default: 3].
    #[arg(
        long,
        value_name = "N",
        requires = "autoscaler",
        allow_hyphen_values = true
    )]
    pub max_replicas: Option<i32>,
    /// SpinAppExecutor to run the app with.
    #[arg(long, default_value = scaffold::DEFAULT_EXECUTOR)]
    pub executor: String,
    /// CPU limit (a quantity, e.g. 100m).
    #[arg(long, value_name = "QUANTITY")]
    pub cpu_limit: Option<String>,
    /// Memory limit (a quantity, e.g. 128Mi).
    #[arg(long, value_name = "QUANTITY")]
    pub memory_limit: Option<String>,
    /// CPU request (at most the limit).
    #[arg(long, value_name = "QUANTITY")]
    pub cpu_request: Option<String>,
    /// Memory request (at most the limit).
    #[arg(long, value_name = "QUANTITY")]
    pub memory_request: Option<String>,
    /// Also emit an autoscaler for the app's Deployment (--help says why not the SpinApp).
    #[arg(long, value_enum)]
    pub autoscaler: Option<AutoscalerArg>,
    /// Target CPU utilization, percent of the request [default: 60].
    #[arg(
        long,
        value_name = "PERCENT",
        requires = "autoscaler",
        allow_hyphen_values = true
    )]
    pub autoscaler_target_cpu_utilization: Option<i32>,
    /// Target memory utilization, percent of the request [default: 60].
    #[arg(
        long,
        value_name = "PERCENT",
        requires = "autoscaler",
        allow_hyphen_values = true
    )]
    pub autoscaler_target_memory_utilization: Option<i32>,
    /// Spin variable as NAME=VALUE (repeatable; the value may contain '=' and ',').
    #[arg(short = 'v', long = "variable", value_name = "NAME=VALUE", value_parser = variable)]
    pub variables: Vec<(String, String)>,
    /// Component to run (repeatable or comma-separated; default: all components).
    #[arg(long = "component", value_name = "ID", value_delimiter = ',')]
    pub components: Vec<String>,
    /// runtime-config.toml to ship in a Secret (checked with the webhooks' runtime-config rules).
    #[arg(short = 'c', long, value_name = "FILE")]
    pub runtime_config_file: Option<PathBuf>,
    /// Secret for pulling the image (repeatable or comma-separated).
    #[arg(
        short = 's',
        long = "image-pull-secret",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub image_pull_secrets: Vec<String>,
    /// ServiceAccount for the app's pods.
    #[arg(long, value_name = "NAME")]
    pub service_account_name: Option<String>,
    /// Label the pods for Azure Workload Identity (azure.workload.identity/use: "true").
    #[arg(long)]
    pub azure_identity: bool,
    /// Write the manifests to FILE (mode 0600: they may hold secrets) instead of standard output.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Name of the SpinApp (default: from the image).
    #[arg(long)]
    pub name: Option<String>,
    /// Namespace of every object (default: none, so kubectl's current namespace).
    #[arg(long)]
    pub namespace: Option<String>,
}

const AUTOSCALING_HELP: &str = "\
Autoscaling: as with `spin kube scaffold`, --autoscaler sets `enableAutoscaling: true` on the
SpinApp, leaves `replicas` unset (the CRD forbids it while enableAutoscaling is true, and
--replicas becomes the autoscaler's minimum) and points the HorizontalPodAutoscaler or KEDA
ScaledObject at the app's Deployment, which the operator then never scales itself. Targeting the
SpinApp's scale subresource instead would write spec.replicas, which that same CRD rule refuses,
and would not work with the Go operator, whose CRD has no scale subresource.

Everything is checked before anything is written: the SpinApp is defaulted and validated as
`spin-operator validate` does (the executor is not looked up: nothing is contacted), the runtime
config with the webhooks' runtime-config rules, the autoscaler with its API's limits. A refusal
lists every field error (exit 1); an unreadable or malformed runtime-config file exits 2.";

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoscalerArg {
    /// autoscaling/v2 HorizontalPodAutoscaler.
    Hpa,
    /// KEDA ScaledObject (keda.sh/v1alpha1).
    Keda,
}

/// Exit code for unreadable input (a refusal is 1), as `validate` uses.
const EXIT_UNREADABLE: u8 = 2;

/// `NAME=VALUE`, split at the first '='. The name is judged by the rules, not here, so a bad one
/// gets the webhook's field error.
fn variable(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| "expected NAME=VALUE".to_string())
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime_config = match &args.runtime_config_file {
        None => None,
        Some(path) => match read_text(path) {
            Ok(text) => Some(RuntimeConfigFile {
                file: path.display().to_string(),
                text,
            }),
            Err(e) => {
                eprintln!("error: {e:#}");
                return Ok(ExitCode::from(EXIT_UNREADABLE));
            }
        },
    };
    let spec = spec(&args, runtime_config);
    let scaffolded = match scaffold::scaffold(&spec) {
        Ok(s) => s,
        Err(ScaffoldError::Invalid(denials)) => {
            for d in &denials {
                eprintln!("error: {d}");
            }
            let name_refused = denials
                .iter()
                .flat_map(|d| &d.errors)
                .any(|e| e.field == "metadata.name");
            if name_refused && args.name.is_none() {
                eprintln!("note: the name comes from the image; choose another with --name");
            }
            eprintln!("nothing was written");
            return Ok(ExitCode::FAILURE);
        }
        Err(e @ ScaffoldError::RuntimeConfigToml { .. }) => {
            eprintln!("error: {e}");
            eprintln!("nothing was written");
            return Ok(ExitCode::from(EXIT_UNREADABLE));
        }
        Err(e) => return Err(e.into()),
    };
    for w in &scaffolded.warnings {
        eprintln!("Warning: {w}");
    }
    match &args.out {
        Some(path) => {
            write_private(path, &scaffolded.yaml)?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{}", scaffolded.yaml),
    }
    Ok(ExitCode::SUCCESS)
}

/// The library's input: every flag but `--out`, with upstream's defaults.
fn spec(a: &Args, runtime_config: Option<RuntimeConfigFile>) -> Spec {
    let defaults = Spec::new(a.from.clone());
    Spec {
        name: a.name.clone(),
        namespace: a.namespace.clone(),
        executor: a.executor.clone(),
        replicas: a.replicas,
        max_replicas: a.max_replicas.unwrap_or(defaults.max_replicas),
        autoscaler: a.autoscaler.map(|k| match k {
            AutoscalerArg::Hpa => Autoscaler::Hpa,
            AutoscalerArg::Keda => Autoscaler::Keda,
        }),
        target_cpu_utilization: a
            .autoscaler_target_cpu_utilization
            .unwrap_or(defaults.target_cpu_utilization),
        target_memory_utilization: a
            .autoscaler_target_memory_utilization
            .unwrap_or(defaults.target_memory_utilization),
        cpu_limit: a.cpu_limit.clone(),
        memory_limit: a.memory_limit.clone(),
        cpu_request: a.cpu_request.clone(),
        memory_request: a.memory_request.clone(),
        variables: a.variables.clone(),
        components: a.components.clone(),
        image_pull_secrets: a.image_pull_secrets.clone(),
        service_account_name: a.service_account_name.clone(),
        azure_identity: a.azure_identity,
        runtime_config,
        ..defaults
    }
}

/// The runtime-config file as text. Errors name the file, never its content.
fn read_text(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("reading runtime config {}", path.display()))?;
    String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("runtime config {}: not UTF-8 text", path.display()))
}

/// Writes `text` to `path` readable by the owner only (it may hold secrets); an existing file
/// is truncated and its mode tightened to 0600 too.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}
