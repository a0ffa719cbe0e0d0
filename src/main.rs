use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod cli;

/// Kubernetes operator for Spin (WebAssembly) applications.
#[derive(Parser)]
#[command(name = "spin-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print both CustomResourceDefinitions as YAML (or write them to a directory).
    Crds {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Default and validate manifests offline, as the admission webhooks would.
    Validate(cli::validate::Args),
    /// Print the rule catalogue the webhooks enforce.
    Rules(cli::rules::Args),
    /// Print the objects the operator would create for the SpinApps in the inputs.
    Render(cli::render::Args),
    /// Print a SpinApp (with runtime-config Secret and autoscaler) for an image, validated first.
    Scaffold(cli::scaffold::Args),
    /// Run the operator: admission webhooks and controllers.
    Run(cli::run::Args),
    /// Write a local dev CA and webhook serving pair (see certs/dev-cert.sh).
    #[command(hide = true)]
    DevCert(cli::dev_cert::Args),
    /// Print a reference document generated from this binary (docs/configuration.md).
    #[command(hide = true)]
    Docs(cli::docs::Args),
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds { out_dir } => {
            match out_dir {
                Some(dir) => spin_operator::crd::write_all(&dir)?,
                None => print!("{}", spin_operator::crd::all_yaml()?),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate(args) => cli::validate::run(args),
        Command::Rules(args) => cli::rules::run(args),
        Command::Render(args) => cli::render::run(args),
        Command::Scaffold(args) => cli::scaffold::run(args),
        Command::DevCert(args) => cli::dev_cert::run(args),
        Command::Docs(args) => cli::docs::run(args, &Cli::command()),
        Command::Run(args) => {
            spin_operator::controller::heap::limit_arenas(
                spin_operator::controller::heap::OPERATOR_ARENAS,
            );
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(cli::run::run(args))
        }
    }
}
