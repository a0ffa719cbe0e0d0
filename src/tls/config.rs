//! rustls server configuration for the webhook server: minimum TLS version and cipher suites
//! (settable, as cert-manager's and Gatekeeper's webhooks allow) and, optionally, client
//! certificates that must chain to `--client-ca-file`.

use std::sync::Arc;

use rustls::server::ResolvesServerCert;
use rustls::server::danger::ClientCertVerifier;
use rustls::{ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};

use super::TlsError;

/// TLS settings beyond the certificate.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// TLS 1.3 only, rather than 1.2 and 1.3.
    pub tls13_only: bool,
    /// Cipher suites offered, in order; `None`: every suite of the ring provider.
    pub cipher_suites: Option<Vec<SupportedCipherSuite>>,
    /// Verifies client certificates (and requires one) when set.
    pub client_verifier: Option<Arc<dyn ClientCertVerifier>>,
}

/// Accepted spellings of the minimum version (Go's `tls.VersionTLS12`, as cert-manager and
/// Gatekeeper take it, and the plain number).
const TLS12: &[&str] = &["VersionTLS12", "1.2"];
const TLS13: &[&str] = &["VersionTLS13", "1.3"];

/// IANA name of a suite as rustls spells it, and Go's spelling for TLS 1.3 suites
/// (`TLS_AES_128_GCM_SHA256` for rustls' `TLS13_AES_128_GCM_SHA256`).
fn suite_names(suite: &SupportedCipherSuite) -> Vec<String> {
    let name = suite
        .suite()
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("{:?}", suite.suite()));
    let go = name.replacen("TLS13_", "TLS_", 1);
    if go == name {
        vec![name]
    } else {
        vec![name, go]
    }
}

impl TlsOptions {
    /// From the flags' strings; unknown names are errors that list what is accepted.
    pub fn parse(min_version: &str, cipher_suites: &[String]) -> Result<Self, TlsError> {
        let tls13_only = if TLS12.contains(&min_version) {
            false
        } else if TLS13.contains(&min_version) {
            true
        } else {
            return Err(TlsError::Option(format!(
                "unknown TLS minimum version {min_version:?}: use one of {}",
                [TLS12, TLS13].concat().join(", ")
            )));
        };
        let available = rustls::crypto::ring::default_provider().cipher_suites;
        let mut chosen = Vec::new();
        for wanted in cipher_suites
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            let Some(suite) = available
                .iter()
                .find(|s| suite_names(s).iter().any(|n| n == wanted))
            else {
                let known: Vec<String> = available
                    .iter()
                    .map(|s| suite_names(s)[0].clone())
                    .collect();
                return Err(TlsError::Option(format!(
                    "unknown cipher suite {wanted:?}: use one of {}",
                    known.join(", ")
                )));
            };
            if !chosen.contains(suite) {
                chosen.push(*suite);
            }
        }
        let cipher_suites = (!chosen.is_empty()).then_some(chosen);
        if let Some(suites) = &cipher_suites {
            let usable = suites.iter().any(|s| match s {
                SupportedCipherSuite::Tls13(_) => true,
                SupportedCipherSuite::Tls12(_) => !tls13_only,
            });
            if !usable {
                return Err(TlsError::Option(
                    "no listed cipher suite works with the minimum TLS version".to_string(),
                ));
            }
        }
        Ok(Self {
            tls13_only,
            cipher_suites,
            client_verifier: None,
        })
    }
}

/// TLS 1.2 and 1.3, ring provider, ALPN h2 then http/1.1, certificates from `resolver`
/// (so rotations apply to the next handshake without rebuilding the config).
pub fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<ServerConfig, TlsError> {
    server_config_with(resolver, &TlsOptions::default())
}

/// [`server_config`] with `options` applied.
pub fn server_config_with(
    resolver: Arc<dyn ResolvesServerCert>,
    options: &TlsOptions,
) -> Result<ServerConfig, TlsError> {
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(suites) = &options.cipher_suites {
        provider.cipher_suites = suites.clone();
    }
    let versions: &[&'static SupportedProtocolVersion] = if options.tls13_only {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .map_err(TlsError::Config)?;
    let builder = match &options.client_verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier.clone()),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(suites: &[&str]) -> Vec<String> {
        suites.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn versions_and_suites_parse_in_both_spellings() {
        let o = TlsOptions::parse("VersionTLS13", &[]).unwrap();
        assert!(o.tls13_only);
        assert!(o.cipher_suites.is_none());
        assert!(!TlsOptions::parse("1.2", &[]).unwrap().tls13_only);
        let o = TlsOptions::parse(
            "VersionTLS12",
            &names(&[
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                "TLS_AES_256_GCM_SHA384",
                "TLS13_AES_256_GCM_SHA384",
            ]),
        )
        .unwrap();
        let chosen: Vec<String> = o
            .cipher_suites
            .unwrap()
            .iter()
            .map(|s| suite_names(s)[0].clone())
            .collect();
        assert_eq!(
            chosen,
            [
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                "TLS13_AES_256_GCM_SHA384"
            ]
        );
    }

    #[test]
    fn unknown_names_are_clear_errors() {
        let err = TlsOptions::parse("VersionTLS10", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"VersionTLS10\"") && err.contains("VersionTLS13"),
            "{err}"
        );
        let err = TlsOptions::parse("1.2", &names(&["TLS_RSA_WITH_RC4_128_SHA"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"TLS_RSA_WITH_RC4_128_SHA\"")
                && err.contains("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
            "{err}"
        );
        let err = TlsOptions::parse(
            "VersionTLS13",
            &names(&["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("minimum TLS version"), "{err}");
    }
}
