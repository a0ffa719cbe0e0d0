//! rustls configuration of the admission server: TLS 1.2 and 1.3 only, certificate from a
//! resolver so a hot-reloading one (`crate::tls`) can replace the fixed `--cert-dir` pair.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::ResolvesServerCert;
use rustls::sign::{CertifiedKey, SingleCertAndKey};

/// File names inside `--cert-dir` (the layout of a `kubernetes.io/tls` Secret mount).
pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";

/// Errors loading the serving certificate.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: no certificate found")]
    NoCertificate(String),
    #[error("{0}: no private key found")]
    NoKey(String),
    #[error("{what}: {source}")]
    Pem {
        what: String,
        source: std::io::Error,
    },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parse a PEM certificate chain and private key into a rustls [`CertifiedKey`].
/// `what` names the source in errors (never the key material).
pub fn certified_key_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    what: &str,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            what: what.to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(what.to_string()));
    }
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|source| TlsError::Pem {
            what: what.to_string(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey(what.to_string()))?;
    Ok(Arc::new(CertifiedKey::from_der(certs, key, &provider())?))
}

/// Load `tls.crt` and `tls.key` from `dir` once.
pub fn load_cert_dir(dir: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|source| TlsError::Read { path, source })
    };
    certified_key_from_pem(
        &read(CERT_FILE)?,
        &read(KEY_FILE)?,
        &dir.display().to_string(),
    )
}

/// The server configuration: TLS 1.2+ (1.0/1.1 are refused during the handshake), no client
/// auth (the apiserver authenticates us, not the reverse), ALPN h2 and http/1.1.
pub fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Server configuration serving one fixed certificate.
pub fn fixed_server_config(key: Arc<CertifiedKey>) -> Result<Arc<ServerConfig>, TlsError> {
    server_config(Arc::new(SingleCertAndKey::from(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_a_generated_pair_and_rejects_garbage() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CERT_FILE), cert.cert.pem()).unwrap();
        std::fs::write(dir.path().join(KEY_FILE), cert.signing_key.serialize_pem()).unwrap();
        let key = load_cert_dir(dir.path()).unwrap();
        assert_eq!(key.cert.len(), 1);
        fixed_server_config(key).unwrap();

        std::fs::write(dir.path().join(KEY_FILE), "not a key").unwrap();
        assert!(matches!(load_cert_dir(dir.path()), Err(TlsError::NoKey(_))));
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            load_cert_dir(empty.path()),
            Err(TlsError::Read { .. })
        ));
    }
}
