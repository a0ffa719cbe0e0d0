//! `spin-operator render`.

use std::process::ExitCode;

/// Arguments of `spin-operator render`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`render` is not built yet")
}
