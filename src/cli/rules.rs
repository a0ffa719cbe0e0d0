//! `spin-operator rules`.

use std::process::ExitCode;

/// Arguments of `spin-operator rules`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`rules` is not built yet")
}
