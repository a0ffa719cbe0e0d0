//! caBundle in the modes where the operator does not generate the certificate itself:
//! readiness ("the API server trusts what this replica serves") in every mode, and, with
//! `--ca-bundle-file` (chart `tls.existingSecret`), keeping both webhook configurations' caBundle
//! equal to that file, as the self-signed mode does with its own CA.
//!
//! Writers follow the same rules as the self-signed mode ([`WriterRole`]): the leader writes
//! what differs, a follower only what keeps the API server from calling it, a stopping replica
//! nothing, and nobody while the configurations name another source. A replica writes at most
//! once per [`MIN_WRITE_INTERVAL`]: two replicas whose mounted Secrets differ for a moment (kubelet
//! refreshes volumes about once a minute) then trade a few writes, not a storm.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::stream::{self, BoxStream};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::Client;
use kube::api::Api;
use kube::core::PartialObjectMeta;

use super::selfsigned::changes;
use super::webhook_configs::{CaBundleSource, CarryOver, WebhookConfigs, WriterRole};
use super::{ReloadingResolver, TlsError};

/// Least time between two caBundle writes of one replica.
pub const MIN_WRITE_INTERVAL: Duration = Duration::from_secs(5);

/// What the keeper checks and writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaBundleKeeperConfig {
    /// The name the API server verifies: `<service>.<namespace>.svc`.
    pub host: String,
    /// Who writes the caBundle in this mode (`Secret` with a file, `CertManager` without).
    pub source: CaBundleSource,
    /// PEM file whose certificates caBundle must carry (`--ca-bundle-file`); `None`: read only.
    pub ca_file: Option<PathBuf>,
    /// How often the served certificate and the file are re-checked without a watch event
    /// (the resolver reloads a rotated mount on its own poll).
    pub poll_interval: Duration,
}

/// What one [`CaBundleKeeper::sync_once`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeeperOutcome {
    /// Configurations whose caBundle this pass patched.
    pub patched: Vec<String>,
    /// Both configurations carry a caBundle that verifies the served certificate.
    pub published: bool,
}

pub struct CaBundleKeeper {
    client: Client,
    configs: WebhookConfigs,
    config: CaBundleKeeperConfig,
    resolver: Arc<ReloadingResolver>,
    published: Arc<AtomicBool>,
    last_write: Option<Instant>,
    carry_over: CarryOver,
}

impl CaBundleKeeper {
    pub fn new(
        client: Client,
        configs: WebhookConfigs,
        config: CaBundleKeeperConfig,
        resolver: Arc<ReloadingResolver>,
    ) -> Self {
        Self {
            client,
            configs,
            config,
            resolver,
            published: Arc::default(),
            last_write: None,
            carry_over: CarryOver::default(),
        }
    }

    /// The readiness condition, as of the last successful pass.
    pub fn published_flag(&self) -> Arc<AtomicBool> {
        self.published.clone()
    }

    /// One pass; `now` is unix seconds.
    pub async fn sync_once(
        &mut self,
        role: impl Into<WriterRole>,
        now: i64,
    ) -> Result<KeeperOutcome, TlsError> {
        let mut outcome = KeeperOutcome::default();
        let mut observed = self.configs.observe().await?;
        let chain = self.resolver.current().map(|key| key.cert.clone());
        let verifies = |observed: &super::webhook_configs::Observed| {
            chain
                .as_ref()
                .is_some_and(|c| observed.verifies(c, &self.config.host, now))
        };
        // An unreadable file fails the pass, but readiness still follows what the
        // configurations carry (someone else may keep caBundle).
        let mut file_error = None;
        if let Some(path) = &self.config.ca_file
            && observed.foreign_source(self.config.source).is_none()
        {
            let bundle = match read_ca_file(path) {
                Ok(bundle) => bundle,
                Err(err) => {
                    file_error = Some(err);
                    Vec::new()
                }
            };
            let writes = file_error.is_none()
                && match role.into() {
                    WriterRole::Leader => true,
                    WriterRole::Follower => !verifies(&observed),
                    WriterRole::Stopping => false,
                }
                && self
                    .last_write
                    .is_none_or(|at| at.elapsed() >= MIN_WRITE_INTERVAL);
            if writes {
                let bundle = self
                    .carry_over
                    .bundle(&bundle, &observed, Instant::now(), now);
                outcome.patched = self.configs.patch_ca_bundles(&observed, &bundle).await?;
                if !outcome.patched.is_empty() {
                    self.last_write = Some(Instant::now());
                    observed = self.configs.observe().await?;
                }
            }
        }
        outcome.published = verifies(&observed);
        self.published.store(outcome.published, Ordering::SeqCst);
        match file_error {
            Some(err) => Err(err),
            None => Ok(outcome),
        }
    }

    /// Passes on every change of either configuration and every `poll_interval`, until the task
    /// is dropped. Errors are logged once per change.
    pub async fn run<R: Into<WriterRole>>(mut self, role: impl Fn() -> R + Send + 'static) {
        let mut watches: Vec<BoxStream<'static, ()>> = Vec::new();
        if let Some(name) = self.configs.mutating_name() {
            let api =
                Api::<PartialObjectMeta<MutatingWebhookConfiguration>>::all(self.client.clone());
            watches.push(changes(api, name));
        }
        if let Some(name) = self.configs.validating_name() {
            let api =
                Api::<PartialObjectMeta<ValidatingWebhookConfiguration>>::all(self.client.clone());
            watches.push(changes(api, name));
        }
        let mut watches = stream::select_all(watches);
        let mut tick = tokio::time::interval(self.config.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error: Option<String> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                Some(()) = watches.next() => {
                    // One pass covers a burst (our own write echoes back).
                    while let Some(Some(())) = watches.next().now_or_never() {}
                }
            }
            let now = jiff::Timestamp::now().as_second();
            match self.sync_once(role(), now).await {
                Ok(outcome) => {
                    last_error = None;
                    if !outcome.patched.is_empty() {
                        tracing::info!(patched = ?outcome.patched, "webhook caBundle updated from the CA file");
                    }
                }
                Err(err) => {
                    let text = err.to_string();
                    if last_error.as_deref() != Some(text.as_str()) {
                        tracing::error!(error = %text, "webhook caBundle check failed");
                        last_error = Some(text);
                    }
                }
            }
        }
    }
}

/// The CA file, refused unless it holds at least one parseable certificate (a caBundle without
/// one would lock the API server out of every replica).
fn read_ca_file(path: &PathBuf) -> Result<Vec<u8>, TlsError> {
    let bundle = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.clone(),
        source,
    })?;
    let certs = rustls_pemfile::certs(&mut bundle.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::CaBundleFile {
            path: path.clone(),
            reason: format!("malformed PEM: {e}"),
        })?;
    if certs.iter().all(|c| super::cert_info(c).is_err()) {
        return Err(TlsError::CaBundleFile {
            path: path.clone(),
            reason: "no certificate in it".to_string(),
        });
    }
    Ok(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_a_certificate_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.crt");
        for content in [
            &b""[..],
            b"not pem",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            std::fs::write(&path, content).unwrap();
            let err = read_ca_file(&path).unwrap_err().to_string();
            assert!(err.contains("ca.crt"), "{err}");
        }
        let missing = read_ca_file(&dir.path().join("absent"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("absent"), "{missing}");
        let ca = rcgen::generate_simple_self_signed(vec!["ca".to_string()]).unwrap();
        std::fs::write(&path, ca.cert.pem()).unwrap();
        assert_eq!(read_ca_file(&path).unwrap(), ca.cert.pem().into_bytes());
    }
}
