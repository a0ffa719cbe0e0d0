//! A throwaway CA and a serving certificate for `host`, for tests and benches that talk HTTPS to
//! the webhook server. Included with `#[path]` (not a test target of its own).

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

pub struct Pki {
    pub ca: rcgen::Certificate,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn pki(host: &str) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![host.to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    Pki {
        ca,
        cert_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
    }
}
