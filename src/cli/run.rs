//! `spin-operator run`.

use std::process::ExitCode;

/// Arguments of `spin-operator run`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`run` is not built yet")
}
