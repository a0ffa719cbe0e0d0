//! The default CA bundle Secret (`spin-ca` or the executor's `caCertSecret`).
//!
//! Upstream embeds curl's export of the Mozilla root store. We build the same kind of bundle from
//! the `webpki-root-certs` crate (full DER certificates of the Mozilla roots, compiled in), so no
//! network or host trust store is needed. The Secret is shared by the apps of a namespace: the
//! controller creates it if absent and never overwrites it, so operators may replace its content.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::{DEFAULT_CA_SECRET, ExecutorDeploymentConfig};

/// Key of the bundle inside the CA Secret (upstream's name; also the mounted file name).
pub const CA_BUNDLE_KEY: &str = "ca-certificates.crt";

/// Annotation upstream puts on the CA Secret it creates.
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "spin-operator.spinkube.dev");

/// PEM bundle (LF line endings) of the Mozilla root certificates.
pub fn default_ca_bundle() -> &'static str {
    static BUNDLE: OnceLock<String> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
        webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .map(|der| pem::encode_config(&pem::Pem::new("CERTIFICATE", der.as_ref()), config))
            .collect()
    })
}

/// Name of the CA Secret the pods mount, if any: `caCertSecret`, or `spin-ca` when only
/// `installDefaultCACerts` is set (upstream's rule).
pub(super) fn ca_secret_name(config: &ExecutorDeploymentConfig) -> Option<String> {
    let named = config.ca_cert_secret.clone().filter(|n| !n.is_empty());
    if config.install_default_ca_certs == Some(true) {
        Some(named.unwrap_or_else(|| DEFAULT_CA_SECRET.to_string()))
    } else {
        named
    }
}

/// The shared CA bundle Secret an app's executor asks for: created if absent, never overwritten.
///
/// Only its name travels with the desired children: the controller needs the ~200 KB bundle only
/// when it creates the Secret, and copying it into every reconcile's children was a tenth of the
/// operator's CPU while converging a fleet (docs/benchmarks-history.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaSecret {
    pub name: String,
    pub namespace: Option<String>,
}

impl CaSecret {
    /// The Secret itself, with the bundle.
    pub fn secret(&self) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: self.namespace.clone(),
                annotations: Some(BTreeMap::from([(
                    MANAGED_BY.0.to_string(),
                    MANAGED_BY.1.to_string(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                CA_BUNDLE_KEY.to_string(),
                ByteString(default_ca_bundle().as_bytes().to_vec()),
            )])),
            ..Secret::default()
        }
    }
}

/// The default bundle Secret, when the executor asks to install it.
pub(super) fn ca_secret(
    config: &ExecutorDeploymentConfig,
    namespace: Option<String>,
) -> Option<CaSecret> {
    if config.install_default_ca_certs != Some(true) {
        return None;
    }
    Some(CaSecret {
        name: ca_secret_name(config)?,
        namespace,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_is_pem_of_many_roots() {
        let bundle = default_ca_bundle();
        let certs = pem::parse_many(bundle).unwrap();
        assert!(certs.len() > 100, "only {} roots", certs.len());
        assert!(certs.iter().all(|c| c.tag() == "CERTIFICATE"));
        assert!(!bundle.contains('\r'));
        assert!(bundle.starts_with("-----BEGIN CERTIFICATE-----\n"));
    }

    #[test]
    fn name_rules() {
        let mut c = ExecutorDeploymentConfig::default();
        assert_eq!(ca_secret_name(&c), None);
        assert!(ca_secret(&c, None).is_none());
        c.install_default_ca_certs = Some(true);
        assert_eq!(ca_secret_name(&c).as_deref(), Some("spin-ca"));
        c.ca_cert_secret = Some("corp".into());
        assert_eq!(ca_secret_name(&c).as_deref(), Some("corp"));
        let s = ca_secret(&c, Some("ns".into())).unwrap().secret();
        assert_eq!(s.metadata.name.as_deref(), Some("corp"));
        assert_eq!(s.metadata.namespace.as_deref(), Some("ns"));
        assert!(s.metadata.owner_references.is_none());
        c.install_default_ca_certs = None;
        // A named bundle is mounted but not created.
        assert_eq!(ca_secret_name(&c).as_deref(), Some("corp"));
        assert!(ca_secret(&c, None).is_none());
    }
}
