//! `run`'s serving-certificate wiring: where the pair comes from (`--self-signed` or
//! `--cert-dir`) and who keeps the webhook configurations' caBundle, with the readiness check
//! `webhook-ca-bundle` ("the API server trusts what this replica serves").

use std::sync::Arc;

use spin_operator::admission::Readiness;
use spin_operator::tls::selfsigned::{SelfSigned, SelfSignedConfig};
use spin_operator::tls::webhook_configs::{CaBundleSource, WebhookConfigs, WriterRole};
use spin_operator::tls::{self, CaBundleKeeper, CaBundleKeeperConfig, ReloadingResolver};

use super::run::{Args, follow};
use super::shutdown::Shutdown;

/// Feeds `resolver` and starts the caBundle writer or checker of the mode `args` selects.
pub(super) fn start(
    args: &Args,
    client: &kube::Client,
    resolver: &Arc<ReloadingResolver>,
    is_leader: Arc<dyn Fn() -> bool + Send + Sync>,
    shutdown: &Shutdown,
    readiness: &Readiness,
) {
    // From SIGTERM on, this replica writes nothing: a pod in its lame-duck period must not
    // write its CA into the configurations of its successors or of a new install (the
    // controllers may take up to their graceful stop to give the Lease up).
    let stopping = shutdown.clone();
    let role = move || {
        if stopping.has_begun() {
            WriterRole::Stopping
        } else {
            WriterRole::from(is_leader())
        }
    };
    if args.self_signed {
        let mut config = SelfSignedConfig::new(&args.webhook_service, &args.namespace);
        config.secret_name = args.webhook_secret.clone();
        config.cluster_domain = args.cluster_domain.clone();
        config.mutating_webhook_configuration = Some(args.mutating_webhook_configuration.clone());
        config.validating_webhook_configuration =
            Some(args.validating_webhook_configuration.clone());
        let self_signed = SelfSigned::new(client.clone(), config, resolver.clone());
        let published = self_signed.published_flag();
        follow(readiness.register("webhook-ca-bundle"), move || {
            published.load(std::sync::atomic::Ordering::SeqCst)
        });
        tokio::spawn(self_signed.run(role));
    } else {
        // Polled, not inotify: kubelet rotates a mounted Secret by swapping a `..data` symlink.
        tls::spawn_cert_dir_reloader(
            resolver.clone(),
            args.cert_dir.clone(),
            tls::DEFAULT_POLL_INTERVAL,
        );
        if args.webhook_ca_bundle_readiness || args.ca_bundle_file.is_some() {
            let configs = WebhookConfigs::new(
                client.clone(),
                Some(args.mutating_webhook_configuration.clone()),
                Some(args.validating_webhook_configuration.clone()),
            );
            let keeper = CaBundleKeeper::new(
                client.clone(),
                configs,
                CaBundleKeeperConfig {
                    host: format!("{}.{}.svc", args.webhook_service, args.namespace),
                    source: if args.ca_bundle_file.is_some() {
                        CaBundleSource::Secret
                    } else {
                        CaBundleSource::CertManager
                    },
                    ca_file: args.ca_bundle_file.clone(),
                    poll_interval: tls::DEFAULT_POLL_INTERVAL,
                },
                resolver.clone(),
            );
            let published = keeper.published_flag();
            follow(readiness.register("webhook-ca-bundle"), move || {
                published.load(std::sync::atomic::Ordering::SeqCst)
            });
            tokio::spawn(keeper.run(role));
        }
    }
}
