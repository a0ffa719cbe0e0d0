//! Whether the webhook configurations' caBundle lets the API server trust the certificate a
//! replica serves: the readiness condition that makes `helm install --wait` return only once the
//! webhooks can be called (the leader patches caBundle after the pods start).

use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// Whether `bundle_pem` (a caBundle) verifies `cert_pem` (the served chain, leaf first) for
/// `server_name` at unix second `now`, as the API server's TLS client would. Like Go's
/// `AppendCertsFromPEM`, certificates of the bundle that do not parse are skipped; malformed PEM,
/// no usable CA, an unparseable chain or a name that is not a DNS name is "does not verify".
pub fn ca_bundle_verifies(bundle_pem: &[u8], cert_pem: &[u8], server_name: &str, now: i64) -> bool {
    match rustls_pemfile::certs(&mut &cert_pem[..]).collect::<Result<Vec<_>, _>>() {
        Ok(chain) => chain_verifies(bundle_pem, &chain, server_name, now),
        Err(_) => false,
    }
}

/// [`ca_bundle_verifies`] for a chain already parsed (what the resolver serves).
pub fn chain_verifies(
    bundle_pem: &[u8],
    chain: &[CertificateDer<'_>],
    server_name: &str,
    now: i64,
) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    let Ok(cas) = rustls_pemfile::certs(&mut &bundle_pem[..]).collect::<Result<Vec<_>, _>>() else {
        return false;
    };
    roots.add_parsable_certificates(cas);
    if roots.is_empty() {
        return false;
    }
    let Some((leaf, intermediates)) = chain.split_first() else {
        return false;
    };
    let Ok(name) = ServerName::try_from(server_name.to_string()) else {
        return false;
    };
    let Ok(verifier) = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build() else {
        return false;
    };
    let now = UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now).unwrap_or(0)));
    verifier
        .verify_server_cert(leaf, intermediates, &name, &[], now)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::selfsigned::{Lifetimes, generate, service_dns_names};
    use k8s_openapi::ByteString;

    const NAME: &str = "svc.ns.svc";

    fn material() -> crate::tls::selfsigned::Material {
        let now = jiff::Timestamp::now().as_second();
        generate(
            &service_dns_names("svc", "ns", "cluster.local"),
            now,
            Lifetimes::default(),
        )
        .unwrap()
    }

    #[test]
    fn the_issuing_ca_verifies_and_anything_else_does_not() {
        let now = jiff::Timestamp::now().as_second();
        let m = material();
        let other = material();
        let (ca, cert) = (m.ca_bundle_pem.as_bytes(), m.cert_pem.as_bytes());
        assert!(ca_bundle_verifies(ca, cert, NAME, now));
        // Another install's CA (what an old pod would restore), a wrong name, garbage, nothing.
        assert!(!ca_bundle_verifies(
            other.ca_bundle_pem.as_bytes(),
            cert,
            NAME,
            now
        ));
        assert!(!ca_bundle_verifies(ca, cert, "other.ns.svc", now));
        assert!(!ca_bundle_verifies(b"not pem", cert, NAME, now));
        assert!(!ca_bundle_verifies(b"", cert, NAME, now));
        assert!(!ca_bundle_verifies(ca, b"", NAME, now));
        // A bundle holding both CAs (a rotation in progress) still verifies.
        let both = [other.ca_bundle_pem.as_bytes(), ca].concat();
        assert!(ca_bundle_verifies(&both, cert, NAME, now));
        // A block that is no certificate is skipped, as Go's AppendCertsFromPEM does.
        let junk = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(ca_bundle_verifies(
            &[&junk[..], ca].concat(),
            cert,
            NAME,
            now
        ));
        assert!(!ca_bundle_verifies(junk, cert, NAME, now));
    }

    #[test]
    fn every_webhook_of_every_configuration_needs_a_verifying_bundle() {
        use crate::tls::webhook_configs::{Observed, ObservedConfig};
        let now = jiff::Timestamp::now().as_second();
        let m = material();
        let good = Some(ByteString(m.ca_bundle_pem.clone().into_bytes()));
        let chain: Vec<_> = rustls_pemfile::certs(&mut m.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        let observed = |bundles: Vec<Option<ByteString>>| Observed {
            mutating: Some(ObservedConfig {
                name: "m".into(),
                source: None,
                resource_version: None,
                webhooks: Some(bundles.into_iter().map(|b| ("w".to_string(), b)).collect()),
            }),
            validating: None,
        };
        assert!(observed(vec![good.clone(), good.clone()]).verifies(&chain, NAME, now));
        assert!(!observed(vec![good.clone(), None]).verifies(&chain, NAME, now));
        assert!(observed(vec![]).verifies(&chain, NAME, now));
    }
}
