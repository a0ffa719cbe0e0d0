//! `--client-ca-file`: client certificates must chain to one of its CAs (rustls'
//! `WebPkiClientVerifier`). The file is polled like the serving certificate and a changed,
//! valid file replaces the verifier for the next handshake; a broken one keeps the last good.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, Error, RootCertStore, SignatureScheme,
    client::danger::HandshakeSignatureValid,
};

use super::TlsError;

struct Loaded {
    pem: Vec<u8>,
    verifier: Arc<dyn ClientCertVerifier>,
}

/// A client certificate verifier over a CA file that may change.
pub struct ReloadingClientVerifier {
    path: PathBuf,
    current: RwLock<Loaded>,
}

impl fmt::Debug for ReloadingClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingClientVerifier")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn verifier(path: &Path, pem: &[u8]) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let error = |reason: String| TlsError::ClientCa {
        path: path.to_path_buf(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        let cert = cert.map_err(|e| error(format!("malformed PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| error(format!("unusable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(error("no CA certificate found".to_string()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| error(e.to_string()))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl ReloadingClientVerifier {
    /// Reads `path`; fails when it holds no usable CA certificate.
    pub fn load(path: PathBuf) -> Result<Self, TlsError> {
        let pem = read(&path)?;
        let verifier = verifier(&path, &pem)?;
        Ok(Self {
            path,
            current: RwLock::new(Loaded { pem, verifier }),
        })
    }

    fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .verifier
            .clone()
    }

    /// Re-reads the file; true when a changed, valid file was taken.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let pem = read(&self.path)?;
        if pem
            == self
                .current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .pem
        {
            return Ok(false);
        }
        let verifier = verifier(&self.path, &pem)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Loaded { pem, verifier };
        Ok(true)
    }

    /// Polls the file forever (until the task is dropped).
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        let mut last_error = None;
        loop {
            tokio::time::sleep(interval).await;
            let this = self.clone();
            let result = tokio::task::spawn_blocking(move || this.reload()).await;
            match result {
                Ok(Ok(true)) => {
                    tracing::info!(path = %self.path.display(), "client CA file reloaded");
                    last_error = None;
                }
                Ok(Ok(false)) => last_error = None,
                Ok(Err(e)) => {
                    let message = e.to_string();
                    if last_error.as_ref() != Some(&message) {
                        tracing::warn!(error = %message, "client CA file not reloaded; keeping the last good one");
                    }
                    last_error = Some(message);
                }
                Err(e) => tracing::warn!(error = %e, "client CA reload task failed"),
            }
        }
    }
}

impl ClientCertVerifier for ReloadingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    /// No hints: they would borrow from a verifier that may be swapped. Go's client (the API
    /// server) then sends its one configured certificate.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.verifier()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.verifier().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.verifier().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verifier().supported_verify_schemes()
    }
}
