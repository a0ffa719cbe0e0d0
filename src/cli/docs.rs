//! `spin-operator docs configuration`: docs/configuration.md, generated from the clap definition
//! of `spin-operator run` (so a new flag cannot be missing from it; `tests/configuration_doc.rs`
//! compares the committed file with this output and with `run --help`).

use std::fmt::Write as _;
use std::process::ExitCode;

/// Arguments of `spin-operator docs`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Which document to print.
    #[arg(value_enum)]
    pub document: Document,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Document {
    /// docs/configuration.md: every flag and environment variable of `spin-operator run`.
    Configuration,
}

/// Environment variables read directly (not through a flag), with who reads them and why.
/// `tests/configuration_doc.rs` checks that every `std::env::var` in `src/` is listed here.
pub const DIRECT_ENV: &[(&str, &str)] = &[
    (
        "POD_NAMESPACE",
        "The operator's namespace: the default of `--namespace`, and the namespace of the leader \
         Lease (else the in-cluster ServiceAccount's namespace file, else `default`). The chart \
         sets it from the pod's `metadata.namespace`.",
    ),
    (
        "POD_NAME",
        "This replica's identity: the holder written into the leader Lease and the reporting \
         instance of Events. The chart sets it from the pod's `metadata.name`.",
    ),
    (
        "HOSTNAME",
        "The identity when `POD_NAME` is unset (in a pod: the pod name); without either, \
         `spin-operator`.",
    ),
    (
        "RUST_LOG",
        "Log filter in tracing's `EnvFilter` syntax, e.g. `info`, `debug`, \
         `info,spin_operator::controller=debug`; unset or invalid: `info`. The chart sets it \
         from the value `logLevel`.",
    ),
    (
        "KUBECONFIG",
        "Read by the Kubernetes client when the operator does not run in a pod: the kubeconfig \
         to use (else `~/.kube/config`).",
    ),
    (
        "KUBERNETES_SERVICE_HOST",
        "With `KUBERNETES_SERVICE_PORT`, set by the kubelet in every pod: the Kubernetes client \
         then uses the in-cluster configuration (the pod's ServiceAccount token and CA).",
    ),
    ("KUBERNETES_SERVICE_PORT", "See `KUBERNETES_SERVICE_HOST`."),
];

pub fn run(args: Args, cli: &clap::Command) -> anyhow::Result<ExitCode> {
    match args.document {
        Document::Configuration => {
            let mut run = cli
                .find_subcommand("run")
                .ok_or_else(|| anyhow::anyhow!("no `run` subcommand"))?
                .clone();
            // Building fills in what derive leaves implicit (e.g. how many values a flag takes).
            run.build();
            print!("{}", configuration(cli.get_name(), &run));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// docs/configuration.md for the `run` subcommand of the binary `bin`.
pub fn configuration(bin: &str, run: &clap::Command) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "# Configuration of `{bin} run`\n\n\
         <!-- Generated from the operator's command-line definition by `make docs` \
         (`{bin} docs configuration > docs/configuration.md`); do not edit by hand. \
         tests/configuration_doc.rs fails when this file and `{bin} run --help` differ. -->\n\n\
         `{bin} run` starts the operator: the admission webhooks, the controllers and the health \
         and metrics server. Every flag can also be set by its environment variable; a flag given \
         on the command line wins. Switches (flags without a value) are on when given, or when \
         their variable is `true`; `false` or an unset variable leaves them off (other values, \
         the empty one included, are refused). The Helm chart sets \
         these flags from its values (helm/spin-operator/README.md lists every value); anything \
         else can be passed with the chart value `extraArgs` or `extraEnv`.\n\n\
         ## Flags\n\n\
         | flag | environment variable | default | description |\n\
         | --- | --- | --- | --- |\n"
    );
    for arg in run.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if arg.is_hide_set() || long == "help" {
            continue;
        }
        let flag = if arg.get_num_args().is_some_and(|n| n.takes_values()) {
            let names: Vec<String> = arg
                .get_value_names()
                .map(|v| v.iter().map(|n| n.to_string()).collect())
                .unwrap_or_else(|| vec![arg.get_id().as_str().to_uppercase()]);
            format!("`--{long} <{}>`", names.join(" "))
        } else {
            format!("`--{long}`")
        };
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect();
        let default = if defaults.is_empty() || defaults == ["false"] {
            String::new()
        } else {
            format!("`{}`", defaults.join(","))
        };
        let mut description = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        if !description.is_empty() && !description.ends_with('.') {
            description.push('.');
        }
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| match v.get_help() {
                Some(help) => format!("`{}`: {}", v.get_name(), lowercase_first(&help.to_string())),
                None => format!("`{}`", v.get_name()),
            })
            .collect();
        if !values.is_empty() && arg.get_action().takes_values() {
            let _ = write!(description, " One of {}.", values.join("; "));
        }
        let _ = writeln!(
            out,
            "| {flag} | {env} | {default} | {} |",
            cell(&description)
        );
    }
    out.push_str(
        "\n## Environment variables read directly\n\n\
         These are not flags; the operator (or its Kubernetes client) reads them as they are.\n\n\
         | variable | what it does |\n\
         | --- | --- |\n",
    );
    for (name, what) in DIRECT_ENV {
        let _ = writeln!(out, "| `{name}` | {} |", cell(what));
    }
    out
}

/// One Markdown table cell: a single line, `|` escaped.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn lowercase_first(s: &str) -> String {
    let s = s.trim_end_matches('.');
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}
