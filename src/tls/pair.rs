//! Parse and check a PEM certificate/key pair before it may be served.

use std::sync::Arc;

use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use super::TlsError;

/// What we report about a served certificate (metrics, logs, tests). No key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Serial number as colon-separated hex.
    pub serial: String,
    /// SHA-256 of the SubjectPublicKeyInfo, hex: identifies the key independent of the cert.
    pub spki_sha256: String,
    pub not_before: i64,
    pub not_after: i64,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
}

/// A checked pair, ready to be swapped in.
#[derive(Debug, Clone)]
pub struct LoadedPair {
    pub key: Arc<CertifiedKey>,
    pub info: CertInfo,
}

/// Parse `cert_pem` (leaf first, optional intermediates) and `key_pem`, then refuse anything
/// that must not be served: no key, a key that does not match the leaf, an unparseable or an
/// expired leaf. `now` is unix seconds (a parameter so callers and tests control the clock).
pub fn load_pair(cert_pem: &[u8], key_pem: &[u8], now: i64) -> Result<LoadedPair, TlsError> {
    let chain = parse_certs(cert_pem)?;
    let key = parse_key(key_pem)?;
    let signer = any_supported_type(&key).map_err(TlsError::Key)?;
    let certified = CertifiedKey::new(chain, signer);
    // A half-written rotation (new cert, old key) fails here and is never served.
    certified.keys_match().map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch,
        other => TlsError::Certificate(other.to_string()),
    })?;
    let leaf = certified
        .end_entity_cert()
        .map_err(|_| TlsError::NoCertificate)?;
    let info = cert_info(leaf)?;
    if info.not_after <= now {
        return Err(TlsError::Expired {
            not_after: info.not_after,
        });
    }
    Ok(LoadedPair {
        key: Arc::new(certified),
        info,
    })
}

/// Parse all certificates of a PEM bundle, in order.
pub(crate) fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(certs)
}

fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    // The error text of rustls-pemfile cannot contain key bytes, only I/O descriptions.
    rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| TlsError::Pem(e.to_string()))?
        .ok_or(TlsError::NoPrivateKey)
}

/// Describe a DER certificate.
pub fn cert_info(der: &CertificateDer<'_>) -> Result<CertInfo, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    let validity = cert.validity();
    let dns_names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_string()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(TlsError::Certificate(e.to_string())),
    };
    Ok(CertInfo {
        serial: cert.raw_serial_as_string(),
        spki_sha256: hex(&Sha256::digest(cert.public_key().raw)),
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        dns_names,
    })
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(names: &[&str]) -> (String, String) {
        let ck = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        (ck.cert.pem(), ck.signing_key.serialize_pem())
    }

    fn now() -> i64 {
        jiff::Timestamp::now().as_second()
    }

    #[test]
    fn loads_matching_pair_and_reports_names() {
        let (c, k) = pair(&["a.example"]);
        let p = load_pair(c.as_bytes(), k.as_bytes(), now()).unwrap();
        assert_eq!(p.info.dns_names, vec!["a.example".to_string()]);
        assert!(p.info.not_after > now());
        assert_eq!(p.info.spki_sha256.len(), 64);
    }

    #[test]
    fn refuses_key_of_another_certificate() {
        let (c, _) = pair(&["a.example"]);
        let (_, k) = pair(&["b.example"]);
        let err = load_pair(c.as_bytes(), k.as_bytes(), now()).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch), "{err}");
    }

    #[test]
    fn refuses_expired_and_garbage() {
        let (c, k) = pair(&["a.example"]);
        let far_future = now() + 10_000 * 365 * 86_400;
        assert!(matches!(
            load_pair(c.as_bytes(), k.as_bytes(), far_future),
            Err(TlsError::Expired { .. })
        ));
        assert!(matches!(
            load_pair(b"", k.as_bytes(), now()),
            Err(TlsError::NoCertificate)
        ));
        assert!(matches!(
            load_pair(c.as_bytes(), b"nope", now()),
            Err(TlsError::NoPrivateKey)
        ));
        // Half-written file: PEM armour cut in the middle.
        let cut = &c.as_bytes()[..c.len() / 2];
        assert!(load_pair(cut, k.as_bytes(), now()).is_err());
    }

    #[test]
    fn errors_never_contain_key_material() {
        let (c, _) = pair(&["a.example"]);
        let (_, k) = pair(&["b.example"]);
        let msg = load_pair(c.as_bytes(), k.as_bytes(), now())
            .unwrap_err()
            .to_string();
        let body = k.lines().nth(1).unwrap();
        assert!(!msg.contains(body));
    }
}
