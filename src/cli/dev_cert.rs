//! `spin-operator dev-cert` (hidden): a local CA and serving pair for running the webhook server
//! by hand (`--cert-dir DIR`), from the same code the `--self-signed` mode uses. Used by
//! `certs/dev-cert.sh` when openssl is not installed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use spin_operator::tls::selfsigned::{
    DEFAULT_CLUSTER_DOMAIN, Lifetimes, generate, service_dns_names,
};
use spin_operator::tls::{CA_CERT_FILE, TLS_CERT_FILE, TLS_KEY_FILE};

/// Arguments of `spin-operator dev-cert`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory to write ca.crt, ca.key, tls.crt and tls.key into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Webhook Service name the certificate is for.
    #[arg(long, default_value = "spin-operator-webhook")]
    pub service: String,
    /// Namespace of the webhook Service.
    #[arg(long, default_value = "spin-operator")]
    pub namespace: String,
    /// Extra DNS names or IP addresses (repeatable).
    #[arg(long = "name", default_values = ["localhost", "127.0.0.1"])]
    pub names: Vec<String>,
    /// Lifetime of the serving certificate, in days.
    #[arg(long, default_value_t = 365)]
    pub days: u64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut names = service_dns_names(&args.service, &args.namespace, DEFAULT_CLUSTER_DOMAIN);
    names.extend(args.names);
    let lifetimes = Lifetimes {
        serving: Duration::from_secs(args.days * 86_400),
        ..Lifetimes::default()
    };
    let now = jiff::Timestamp::now().as_second();
    let m = generate(&names, now, lifetimes).context("generating certificates")?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    write(&args.out, CA_CERT_FILE, &m.ca_bundle_pem, false)?;
    write(&args.out, "ca.key", &m.ca_key_pem, true)?;
    write(&args.out, TLS_CERT_FILE, &m.cert_pem, false)?;
    write(&args.out, TLS_KEY_FILE, &m.key_pem, true)?;
    println!(
        "wrote {} (CA: ca.crt; serving pair: tls.crt/tls.key for {})",
        args.out.display(),
        names.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

fn write(dir: &Path, name: &str, contents: &str, secret: bool) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = dir.join(name);
    let mode = if secret { 0o600 } else { 0o644 };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    // `mode` applies to a new file only: an existing key file (say 0644 from an older run or a
    // copy) gets 0600 too, before the key is written into it.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
