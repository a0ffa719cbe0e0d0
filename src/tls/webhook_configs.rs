//! Our two webhook configurations as the certificate code sees them: who the chart says fills
//! their caBundle, whether those bundles let the API server trust what a replica serves, and the
//! JSON patch that writes a bundle.
//!
//! The chart never renders `caBundle` itself: one writer per mode keeps it (the operator with
//! `--self-signed` or `--ca-bundle-file`, cert-manager's CA injector otherwise), none of them
//! with server-side apply, so `helm upgrade` (Helm 4 applies server-side) never conflicts on it.
//! The chart names the writer in [`CA_BUNDLE_SOURCE_ANNOTATION`], so a replica of the previous
//! mode, still running during the rollout of a mode switch, stops writing at once instead of
//! fighting the new writer.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};
use rustls::pki_types::CertificateDer;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::TlsError;
use super::selfsigned::{chain_verifies, split_bundle};
use crate::api::FIELD_MANAGER;

/// Annotation of both webhook configurations naming who writes their caBundle (the chart sets
/// it from its TLS mode). Absent: whoever is configured to write does (a hand-made install).
pub const CA_BUNDLE_SOURCE_ANNOTATION: &str = "core.spinkube.dev/ca-bundle-source";

/// Who writes the caBundle: the values of [`CA_BUNDLE_SOURCE_ANNOTATION`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaBundleSource {
    /// The operator, from the CA it generates (`--self-signed`).
    SelfSigned,
    /// The operator, from a CA file (`--ca-bundle-file`; chart `tls.existingSecret`).
    Secret,
    /// cert-manager's CA injector; the operator only reads.
    CertManager,
}

impl CaBundleSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SelfSigned => "self-signed",
            Self::Secret => "secret",
            Self::CertManager => "cert-manager",
        }
    }
}

/// What a replica may write in one pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriterRole {
    /// Writes whatever differs.
    Leader,
    /// Writes only to repair what keeps the API server from calling it (nothing usable to
    /// serve, or a caBundle that does not verify it): during a mode switch the leader is a pod
    /// of the previous mode, and the new pods must not wait for it (maxUnavailable 0).
    Follower,
    /// Shutting down: never writes, so a pod in its lame-duck period cannot put its CA into
    /// its successors' configurations.
    Stopping,
}

impl From<bool> for WriterRole {
    fn from(is_leader: bool) -> Self {
        if is_leader {
            Self::Leader
        } else {
            Self::Follower
        }
    }
}

/// One configuration as read: `None` webhooks when it does not exist (yet).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedConfig {
    pub name: String,
    pub source: Option<String>,
    /// As read: a patch is applied only if the configuration is still at this version.
    pub resource_version: Option<String>,
    /// Each webhook's name and caBundle, in order; `None`: the configuration is absent.
    pub webhooks: Option<Vec<(String, Option<ByteString>)>>,
}

/// Both configurations (those configured) at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub mutating: Option<ObservedConfig>,
    pub validating: Option<ObservedConfig>,
}

impl Observed {
    fn configs(&self) -> impl Iterator<Item = &ObservedConfig> {
        self.mutating.iter().chain(self.validating.iter())
    }

    /// The source a configuration's annotation names when it is not `mine`: this replica must
    /// then write nothing.
    pub fn foreign_source(&self, mine: CaBundleSource) -> Option<&str> {
        self.configs()
            .filter_map(|c| c.source.as_deref())
            .find(|s| *s != mine.as_str())
    }

    /// Whether every webhook of every configuration carries a caBundle that verifies `chain`
    /// (served leaf first) for `host` at unix second `now`. An absent configuration cannot be
    /// called with our certificate, so it does not verify.
    pub fn verifies(&self, chain: &[CertificateDer<'_>], host: &str, now: i64) -> bool {
        self.configs().all(|c| {
            c.webhooks.as_ref().is_some_and(|webhooks| {
                webhooks.iter().all(|(_, bundle)| {
                    bundle
                        .as_ref()
                        .is_some_and(|b| chain_verifies(&b.0, chain, host, now))
                })
            })
        })
    }
}

/// How long a CA found in caBundle that is not ours stays in what we write: the rest of a mode
/// switch's rollout, during which pods of the previous mode still serve certificates it signed.
pub const CARRY_OVER: Duration = Duration::from_secs(600);

/// The caBundle a writer puts in place: its own CAs, followed by the CAs it found in the
/// configurations that are not its own, each for [`CARRY_OVER`] from when this replica first
/// saw it. So replacing the CA never locks out the pods still serving a certificate of the old
/// one (a mode switch, someone else's CA), and the old CA leaves once they are gone.
#[derive(Debug, Default)]
pub struct CarryOver {
    first_seen: HashMap<Vec<u8>, Instant>,
}

impl CarryOver {
    /// `now`: for the carry-over; `unix_now`: expired CAs are never carried.
    pub fn bundle(
        &mut self,
        own: &[u8],
        observed: &Observed,
        now: Instant,
        unix_now: i64,
    ) -> Vec<u8> {
        let own_text = String::from_utf8_lossy(own);
        let own_ders: HashSet<Vec<u8>> = split_bundle(&own_text)
            .into_iter()
            .map(|(_, der)| der.to_vec())
            .collect();
        let mut out = own.to_vec();
        let mut seen = HashSet::new();
        for bundle in observed
            .configs()
            .filter_map(|c| c.webhooks.as_ref())
            .flatten()
            .filter_map(|(_, b)| b.as_ref())
        {
            for (text, der) in split_bundle(&String::from_utf8_lossy(&bundle.0)) {
                let der = der.to_vec();
                let expired = super::cert_info(&CertificateDer::from(der.clone()))
                    .map_or(true, |info| info.not_after <= unix_now);
                if expired || own_ders.contains(&der) || !seen.insert(der.clone()) {
                    continue;
                }
                let first = *self.first_seen.entry(der).or_insert(now);
                if now.saturating_duration_since(first) < CARRY_OVER {
                    if !out.ends_with(b"\n") && !out.is_empty() {
                        out.push(b'\n');
                    }
                    out.extend_from_slice(text.as_bytes());
                }
            }
        }
        self.first_seen.retain(|der, _| seen.contains(der));
        out
    }
}

/// Reads and patches our webhook configurations by name.
#[derive(Clone)]
pub struct WebhookConfigs {
    mutating: Api<MutatingWebhookConfiguration>,
    validating: Api<ValidatingWebhookConfiguration>,
    mutating_name: Option<String>,
    validating_name: Option<String>,
}

impl WebhookConfigs {
    /// `None` skips one (e.g. an install without it).
    pub fn new(client: Client, mutating: Option<String>, validating: Option<String>) -> Self {
        Self {
            mutating: Api::all(client.clone()),
            validating: Api::all(client),
            mutating_name: mutating,
            validating_name: validating,
        }
    }

    pub fn mutating_name(&self) -> Option<&str> {
        self.mutating_name.as_deref()
    }

    pub fn validating_name(&self) -> Option<&str> {
        self.validating_name.as_deref()
    }

    pub async fn observe(&self) -> Result<Observed, TlsError> {
        Ok(Observed {
            mutating: match &self.mutating_name {
                Some(name) => Some(observe_one(&self.mutating, name, mutating_bundles).await?),
                None => None,
            },
            validating: match &self.validating_name {
                Some(name) => Some(observe_one(&self.validating, name, validating_bundles).await?),
                None => None,
            },
        })
    }

    /// Patch `bundle` into every webhook of `observed`'s configurations whose caBundle differs.
    /// Returns the names of the configurations patched.
    pub async fn patch_ca_bundles(
        &self,
        observed: &Observed,
        bundle: &[u8],
    ) -> Result<Vec<String>, TlsError> {
        let mut patched = Vec::new();
        if let Some(config) = &observed.mutating
            && patch_one(&self.mutating, config, bundle).await?
        {
            patched.push(config.name.clone());
        }
        if let Some(config) = &observed.validating
            && patch_one(&self.validating, config, bundle).await?
        {
            patched.push(config.name.clone());
        }
        Ok(patched)
    }
}

async fn observe_one<K>(
    api: &Api<K>,
    name: &str,
    webhooks: impl Fn(&K) -> Vec<(String, Option<ByteString>)>,
) -> Result<ObservedConfig, TlsError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let config = api.get_opt(name).await?;
    Ok(ObservedConfig {
        name: name.to_string(),
        source: config.as_ref().and_then(|c| {
            c.meta()
                .annotations
                .as_ref()
                .and_then(|a| a.get(CA_BUNDLE_SOURCE_ANNOTATION).cloned())
        }),
        resource_version: config
            .as_ref()
            .and_then(|c| c.meta().resource_version.clone()),
        webhooks: config.as_ref().map(webhooks),
    })
}

/// Each webhook's name and caBundle, in order.
fn mutating_bundles(c: &MutatingWebhookConfiguration) -> Vec<(String, Option<ByteString>)> {
    c.webhooks
        .iter()
        .flatten()
        .map(|w| (w.name.clone(), w.client_config.ca_bundle.clone()))
        .collect()
}

fn validating_bundles(c: &ValidatingWebhookConfiguration) -> Vec<(String, Option<ByteString>)> {
    c.webhooks
        .iter()
        .flatten()
        .map(|w| (w.name.clone(), w.client_config.ca_bundle.clone()))
        .collect()
}

/// JSON patch of the webhooks whose caBundle differs, applied only to the configuration as it
/// was read: a `test` of its resourceVersion makes the patch fail when anything changed since
/// (another writer, or `helm upgrade` naming another source), so no writer ever writes from a
/// stale view; the watch event of that change brings the next pass. Each `add` is also guarded
/// by a `test` of the webhook's name at that index. A JSON patch (an update, not an apply) never
/// conflicts with Helm's server-side apply, which leaves caBundle out. Returns whether the patch
/// was applied.
async fn patch_one<K>(
    api: &Api<K>,
    config: &ObservedConfig,
    bundle: &[u8],
) -> Result<bool, TlsError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let Some(ops) = ca_bundle_patch(config, bundle)? else {
        return Ok(false);
    };
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    match api
        .patch(&config.name, &params, &Patch::Json::<()>(ops))
        .await
    {
        Ok(_) => Ok(true),
        // A failed `test` is 422, like any other invalid patch: only a version that moved
        // since the read makes it "changed, the next pass will see it", never a silent drop.
        Err(kube::Error::Api(status)) if status.code == 409 || status.code == 422 => {
            let now = api.get_metadata_opt(&config.name).await?;
            if now.and_then(|m| m.metadata.resource_version) == config.resource_version {
                return Err(kube::Error::Api(status).into());
            }
            tracing::debug!(name = %config.name, "webhook configuration changed since read; caBundle not patched");
            Ok(false)
        }
        Err(err) => Err(err.into()),
    }
}

/// The patch [`patch_one`] sends; `None` when every caBundle already equals `bundle` or the
/// configuration is absent.
fn ca_bundle_patch(
    config: &ObservedConfig,
    bundle: &[u8],
) -> Result<Option<json_patch::Patch>, TlsError> {
    let Some(webhooks) = &config.webhooks else {
        // Not installed (yet): the next pass will try again.
        tracing::debug!(name = %config.name, "webhook configuration not found; caBundle not patched");
        return Ok(None);
    };
    let value = serde_json::to_value(ByteString(bundle.to_vec()))?;
    let mut ops = Vec::new();
    for (i, (webhook, current)) in webhooks.iter().enumerate() {
        if current.as_ref().map(|b| b.0.as_slice()) == Some(bundle) {
            continue;
        }
        ops.push(json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": webhook}));
        ops.push(json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": value}));
    }
    if ops.is_empty() {
        return Ok(None);
    }
    if let Some(version) = &config.resource_version {
        ops.insert(
            0,
            json!({"op": "test", "path": "/metadata/resourceVersion", "value": version}),
        );
    }
    Ok(Some(serde_json::from_value(serde_json::Value::Array(ops))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(source: Option<&str>) -> ObservedConfig {
        ObservedConfig {
            name: "c".into(),
            source: source.map(Into::into),
            resource_version: None,
            webhooks: Some(vec![]),
        }
    }

    #[test]
    fn a_foreign_source_is_any_annotation_but_our_own() {
        let observed = |m, v| Observed {
            mutating: Some(config(m)),
            validating: Some(config(v)),
        };
        let mine = CaBundleSource::SelfSigned;
        assert_eq!(observed(None, None).foreign_source(mine), None);
        assert_eq!(
            observed(Some("self-signed"), None).foreign_source(mine),
            None
        );
        assert_eq!(
            observed(Some("self-signed"), Some("cert-manager")).foreign_source(mine),
            Some("cert-manager")
        );
        assert_eq!(
            observed(Some("secret"), Some("secret")).foreign_source(CaBundleSource::Secret),
            None
        );
    }

    #[test]
    fn an_absent_configuration_does_not_verify() {
        let absent = Observed {
            mutating: Some(ObservedConfig {
                name: "m".into(),
                ..ObservedConfig::default()
            }),
            validating: None,
        };
        assert!(!absent.verifies(&[], "h", 0));
        // Present with no webhooks: nothing to call, nothing that fails.
        let empty = Observed {
            mutating: Some(config(None)),
            validating: None,
        };
        assert!(empty.verifies(&[], "h", 0));
    }

    fn with_bundles(bundles: &[&str]) -> Observed {
        Observed {
            mutating: Some(ObservedConfig {
                name: "m".into(),
                source: None,
                resource_version: None,
                webhooks: Some(
                    bundles
                        .iter()
                        .map(|b| ("w".to_string(), Some(ByteString(b.as_bytes().to_vec()))))
                        .collect(),
                ),
            }),
            validating: None,
        }
    }

    #[test]
    fn a_replaced_ca_is_carried_for_a_while_then_dropped_and_an_expired_one_never() {
        let ca = |name: &str| {
            rcgen::generate_simple_self_signed(vec![name.to_string()])
                .unwrap()
                .cert
                .pem()
        };
        let (own, old, other) = (ca("own"), ca("old"), ca("other"));
        let unix_now = jiff::Timestamp::now().as_second();
        let start = Instant::now();
        let mut carry = CarryOver::default();
        // Each foreign CA once, after ours; garbage and our own CA are not repeated.
        let seen = with_bundles(&[&format!("{old}not pem"), &format!("{own}{old}"), &other]);
        let expected = format!("{own}{old}{other}");
        assert_eq!(
            carry.bundle(own.as_bytes(), &seen, start, unix_now),
            expected.as_bytes()
        );
        let later = start + CARRY_OVER - Duration::from_secs(1);
        assert_eq!(
            carry.bundle(own.as_bytes(), &seen, later, unix_now),
            expected.as_bytes()
        );
        assert_eq!(
            carry.bundle(own.as_bytes(), &seen, start + CARRY_OVER, unix_now),
            own.as_bytes()
        );
        // A CA seen anew starts its own period; one past its notAfter is never carried.
        let mut fresh = CarryOver::default();
        // (rcgen's certificates are valid until 4096.)
        let far = unix_now + 3000 * 365 * 86_400;
        assert_eq!(
            fresh.bundle(own.as_bytes(), &seen, start, far),
            own.as_bytes()
        );
    }

    #[test]
    fn a_patch_applies_only_to_the_configuration_as_read() {
        let mut read = with_bundles(&["old", "new"]).mutating.unwrap();
        read.resource_version = Some("41".into());
        let patch = ca_bundle_patch(&read, b"new").unwrap().unwrap();
        let ops = serde_json::to_value(&patch).unwrap();
        // The version first, then the one webhook that differs, guarded by its name.
        assert_eq!(
            ops,
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "41"},
                {"op": "test", "path": "/webhooks/0/name", "value": "w"},
                {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": "bmV3"},
            ])
        );
        assert!(ca_bundle_patch(&read, b"old").unwrap().is_some());
        let same = with_bundles(&["new", "new"]).mutating.unwrap();
        assert!(ca_bundle_patch(&same, b"new").unwrap().is_none());
        let absent = ObservedConfig {
            name: "m".into(),
            ..ObservedConfig::default()
        };
        assert!(ca_bundle_patch(&absent, b"new").unwrap().is_none());
    }
}
