//! rustls server configuration for the webhook server.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::ResolvesServerCert;

use super::TlsError;

/// TLS 1.2 and 1.3 only, ring provider, ALPN h2 then http/1.1, certificates from `resolver`
/// (so rotations apply to the next handshake without rebuilding the config).
///
/// Fallible only because rustls checks the provider supports the versions; with ring it does.
pub fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
