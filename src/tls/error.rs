use std::path::PathBuf;

/// Everything that can go wrong loading, generating or publishing serving certificates.
///
/// Messages never include key material; at most a path or a Kubernetes object name.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no certificate found in the certificate PEM")]
    NoCertificate,
    #[error("no private key found in the key PEM")]
    NoPrivateKey,
    #[error("malformed PEM: {0}")]
    Pem(String),
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
    #[error("TLS option: {0}")]
    Option(String),
    #[error("client CA file {path}: {reason}")]
    ClientCa { path: PathBuf, reason: String },
    #[error("unusable private key: {0}")]
    Key(rustls::Error),
    #[error("private key does not match the certificate's public key")]
    KeyMismatch,
    #[error("unparseable certificate: {0}")]
    Certificate(String),
    #[error("certificate expired at {not_after} (unix seconds)")]
    Expired { not_after: i64 },
    #[error("generating certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("CA bundle file {path}: {reason}")]
    CaBundleFile { path: PathBuf, reason: String },
    #[error("secret {name} is missing key {key}")]
    SecretIncomplete { name: String, key: &'static str },
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("building JSON patch: {0}")]
    Patch(#[from] serde_json::Error),
}
