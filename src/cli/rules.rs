//! `spin-operator rules`: prints the rule catalogue.

use std::process::ExitCode;

/// Arguments of `spin-operator rules`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value = "markdown")]
    pub format: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Json,
    /// ValidatingAdmissionPolicies and bindings enforcing the rules CEL can express.
    Vap,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.format {
        Format::Markdown => print!("{}", spin_operator::rules::catalogue_markdown()),
        Format::Json => print!("{}", spin_operator::rules::catalogue_json()),
        Format::Vap => print!("{}", spin_operator::rules::vap::yaml()?),
    }
    Ok(ExitCode::SUCCESS)
}
