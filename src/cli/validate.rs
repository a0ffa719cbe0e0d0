//! `spin-operator validate`.

use std::process::ExitCode;

/// Arguments of `spin-operator validate`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`validate` is not built yet")
}
