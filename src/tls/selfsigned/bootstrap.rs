//! Kubernetes side of the self-signed mode: the Secret and the webhook configurations' caBundle.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, PostParams};

use super::issue::{
    DEFAULT_CLUSTER_DOMAIN, Lifetimes, Material, generate, renew, service_dns_names,
};
use crate::api::FIELD_MANAGER;
use crate::tls::webhook_configs::{
    CaBundleSource, CarryOver, Observed, WebhookConfigs, WriterRole,
};
use crate::tls::{CA_CERT_FILE, ReloadingResolver, TLS_CERT_FILE, TLS_KEY_FILE, TlsError};

/// The CA private key lives next to the serving pair so any future leader can renew.
pub const CA_KEY_FILE: &str = "ca.key";

/// Where the self-signed mode keeps and publishes its certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfSignedConfig {
    /// Webhook Service name and namespace: the certificate's DNS names derive from them.
    pub service: String,
    pub namespace: String,
    /// Cluster DNS domain of the fully qualified name (`<service>.<namespace>.svc.<domain>`).
    pub cluster_domain: String,
    /// Secret (in `namespace`) holding CA and serving pair.
    pub secret_name: String,
    /// Our webhook configurations to patch; `None` skips one (e.g. a chart without it).
    pub mutating_webhook_configuration: Option<String>,
    pub validating_webhook_configuration: Option<String>,
    pub lifetimes: Lifetimes,
    /// Fallback resync: how often every replica re-reads the Secret (and the leader checks
    /// renewal and caBundle) even without a watch event. Changes are seen at once through the
    /// watches (see `SelfSigned::run`); this only covers renewal due dates and lost events.
    pub poll_interval: Duration,
}

impl SelfSignedConfig {
    /// Defaults matching the chart: secret `spin-operator-webhook-cert` and the kubebuilder-style
    /// configuration names.
    pub fn new(service: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            namespace: namespace.into(),
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_string(),
            secret_name: "spin-operator-webhook-cert".to_string(),
            mutating_webhook_configuration: Some(
                "spin-operator-mutating-webhook-configuration".to_string(),
            ),
            validating_webhook_configuration: Some(
                "spin-operator-validating-webhook-configuration".to_string(),
            ),
            lifetimes: Lifetimes::default(),
            poll_interval: Duration::from_secs(300),
        }
    }

    pub fn dns_names(&self) -> Vec<String> {
        service_dns_names(&self.service, &self.namespace, &self.cluster_domain)
    }

    /// The name the API server verifies when it calls the webhook Service.
    pub fn service_host(&self) -> String {
        format!("{}.{}.svc", self.service, self.namespace)
    }
}

/// What one [`SelfSigned::sync_once`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    /// This call created the Secret (false if it lost the race or the Secret existed).
    pub created: bool,
    /// This call replaced the Secret's certificates.
    pub renewed: bool,
    /// Webhook configurations whose caBundle this call patched.
    pub patched: Vec<String>,
    /// The resolver now serves the Secret's certificate.
    pub serving: bool,
    /// Every webhook of our configurations carries a caBundle that verifies the served
    /// certificate (false while a configuration is absent): the API server can call us.
    pub published: bool,
    /// The configurations name another caBundle writer (a switch away from self-signed is
    /// rolling out): this replica wrote nothing and only serves what it has.
    pub handed_off: bool,
}

/// The self-signed certificate manager for one replica.
pub struct SelfSigned {
    /// For the watches of `follow` (metadata-only `Api`s of the same objects).
    pub(super) client: Client,
    secrets: Api<Secret>,
    configs: WebhookConfigs,
    pub(super) config: SelfSignedConfig,
    resolver: Arc<ReloadingResolver>,
    /// The last pass's [`SyncOutcome::published`], kept across failed passes.
    published: Arc<AtomicBool>,
    carry_over: std::sync::Mutex<CarryOver>,
}

impl SelfSigned {
    pub fn new(client: Client, config: SelfSignedConfig, resolver: Arc<ReloadingResolver>) -> Self {
        Self {
            secrets: Api::namespaced(client.clone(), &config.namespace),
            configs: WebhookConfigs::new(
                client.clone(),
                config.mutating_webhook_configuration.clone(),
                config.validating_webhook_configuration.clone(),
            ),
            client,
            config,
            resolver,
            published: Arc::default(),
            carry_over: Default::default(),
        }
    }

    /// Follows [`SyncOutcome::published`] of the latest successful pass: the readiness
    /// condition "the API server trusts what this replica serves". A failed pass (the API
    /// unreachable) keeps the last answer rather than flapping readiness.
    pub fn published_flag(&self) -> Arc<AtomicBool> {
        self.published.clone()
    }

    /// One pass. The leader creates/renews the Secret and patches caBundle where it differs; a
    /// follower does the same only when it could not be called otherwise (no usable Secret, or a
    /// caBundle that does not verify it); a stopping replica, or any replica while the
    /// configurations name another writer, writes nothing. Every replica then serves the
    /// Secret's pair. `now` is unix seconds.
    pub async fn sync_once(
        &self,
        role: impl Into<WriterRole>,
        now: i64,
    ) -> Result<SyncOutcome, TlsError> {
        let mut sync = SyncOutcome::default();
        let host = self.config.service_host();
        let mut observed = self.configs.observe().await?;
        if let Some(source) = observed.foreign_source(CaBundleSource::SelfSigned) {
            tracing::debug!(
                source,
                "caBundle written by another source; self-signed writes nothing"
            );
            sync.handed_off = true;
        }
        let mut secret = self.secrets.get_opt(&self.config.secret_name).await?;
        let current = secret.as_ref().and_then(|s| self.material(s).ok());
        let published = |observed: &Observed, m: &Material| {
            pem_chain(&m.cert_pem).is_some_and(|chain| observed.verifies(&chain, &host, now))
        };
        let writes = !sync.handed_off
            && match role.into() {
                WriterRole::Leader => true,
                WriterRole::Follower => !current.as_ref().is_some_and(|m| published(&observed, m)),
                WriterRole::Stopping => false,
            };
        if writes {
            secret = Some(match secret {
                None => self.create(now, &mut sync).await?,
                Some(existing) => self.renew_if_due(existing, now, &mut sync).await?,
            });
        }
        // Nothing to serve yet (a follower before anyone wrote, or handed off): not ready.
        let Some(secret) = secret else {
            return Ok(sync);
        };
        let material = match self.material(&secret) {
            Ok(material) => material,
            // Handed off: the next mode's Secret (cert-manager's has no ca.key) is not ours to
            // serve; keep serving what we have until this pod is replaced.
            Err(_) if sync.handed_off => return Ok(sync),
            Err(err) => return Err(err),
        };
        if writes {
            let bundle = self
                .carry_over
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .bundle(
                    material.ca_bundle_pem.as_bytes(),
                    &observed,
                    std::time::Instant::now(),
                    now,
                );
            sync.patched = self.configs.patch_ca_bundles(&observed, &bundle).await?;
            if !sync.patched.is_empty() {
                observed = self.configs.observe().await?;
            }
        }
        let source = format!(
            "secret {}/{}",
            self.config.namespace, self.config.secret_name
        );
        self.resolver.offer_pem(
            material.cert_pem.as_bytes(),
            material.key_pem.as_bytes(),
            &source,
        )?;
        sync.serving = true;
        sync.published = published(&observed, &material);
        self.published.store(sync.published, Ordering::SeqCst);
        Ok(sync)
    }

    /// Create-if-absent. Two replicas may both get here: the API server lets exactly one create
    /// succeed; the other gets 409 AlreadyExists and adopts the winner's Secret, so there is
    /// only ever one CA.
    async fn create(&self, now: i64, sync: &mut SyncOutcome) -> Result<Secret, TlsError> {
        let material = generate(&self.config.dns_names(), now, self.config.lifetimes)?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(self.config.secret_name.clone()),
                namespace: Some(self.config.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_string(),
                    FIELD_MANAGER.to_string(),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/tls".to_string()),
            data: Some(secret_data(&material)),
            ..Secret::default()
        };
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        match self.secrets.create(&params, &secret).await {
            Ok(created) => {
                sync.created = true;
                Ok(created)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => self.reread().await,
            Err(err) => Err(err.into()),
        }
    }

    /// Replace the certificates when [`renew`] says so. The replace carries the resourceVersion
    /// we read, so a concurrent writer (a leader hand-over) makes ours fail with 409 and we adopt
    /// theirs instead of overwriting it.
    async fn renew_if_due(
        &self,
        existing: Secret,
        now: i64,
        sync: &mut SyncOutcome,
    ) -> Result<Secret, TlsError> {
        // An incomplete Secret (edited by hand) is treated as unusable and regenerated.
        let current = self.material(&existing).unwrap_or_else(|_| Material {
            ca_bundle_pem: String::new(),
            ca_key_pem: String::new(),
            cert_pem: String::new(),
            key_pem: String::new(),
        });
        let Some(next) = renew(
            &current,
            &self.config.dns_names(),
            now,
            self.config.lifetimes,
        )?
        else {
            return Ok(existing);
        };
        let mut updated = existing;
        updated.data = Some(secret_data(&next));
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        match self
            .secrets
            .replace(&self.config.secret_name, &params, &updated)
            .await
        {
            Ok(replaced) => {
                sync.renewed = true;
                Ok(replaced)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => self.reread().await,
            Err(err) => Err(err.into()),
        }
    }

    async fn reread(&self) -> Result<Secret, TlsError> {
        Ok(self.secrets.get(&self.config.secret_name).await?)
    }

    fn material(&self, secret: &Secret) -> Result<Material, TlsError> {
        let data = secret.data.as_ref();
        let field = |key: &'static str| -> Result<String, TlsError> {
            data.and_then(|d| d.get(key))
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                .ok_or_else(|| TlsError::SecretIncomplete {
                    name: self.config.secret_name.clone(),
                    key,
                })
        };
        Ok(Material {
            ca_bundle_pem: field(CA_CERT_FILE)?,
            ca_key_pem: field(CA_KEY_FILE)?,
            cert_pem: field(TLS_CERT_FILE)?,
            key_pem: field(TLS_KEY_FILE)?,
        })
    }
}

fn secret_data(m: &Material) -> BTreeMap<String, ByteString> {
    let entry = |k: &str, v: &str| (k.to_string(), ByteString(v.as_bytes().to_vec()));
    BTreeMap::from([
        entry(CA_CERT_FILE, &m.ca_bundle_pem),
        entry(CA_KEY_FILE, &m.ca_key_pem),
        entry(TLS_CERT_FILE, &m.cert_pem),
        entry(TLS_KEY_FILE, &m.key_pem),
    ])
}

/// A PEM chain parsed, `None` when it does not parse (then nothing verifies it).
fn pem_chain(pem: &str) -> Option<Vec<rustls::pki_types::CertificateDer<'static>>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .ok()
}
