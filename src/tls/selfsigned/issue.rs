//! Generate and renew the self-signed CA and the webhook serving certificate (pure, no I/O).

use std::time::{Duration, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use rustls::pki_types::CertificateDer;

use crate::tls::TlsError;
use crate::tls::pair::{CertInfo, cert_info, load_pair, parse_certs};

/// Backdating absorbs clock skew between the operator and the API servers.
const BACKDATE_SECS: i64 = 3600;

/// What the Secret holds. `ca_bundle_pem` is what goes into `caBundle`: the current CA first,
/// then previous CAs still valid, so certificates signed by either verify during a CA rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    pub ca_bundle_pem: String,
    pub ca_key_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Lifetimes of the generated certificates. Renewal happens at 2/3 of each lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub ca: Duration,
    pub serving: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Self {
            ca: Duration::from_secs(10 * 365 * DAY),
            serving: Duration::from_secs(365 * DAY),
        }
    }
}

/// The cluster DNS domain when none is configured (`--cluster-domain`, chart value
/// `kubernetesClusterDomain`).
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// RFC 5280's upper bound for a certificate's commonName (cert-manager refuses longer ones).
pub const COMMON_NAME_MAX: usize = 64;

/// The names the API server may use to reach the webhook Service; the last one is fully
/// qualified in `cluster_domain` (usually `cluster.local`).
pub fn service_dns_names(service: &str, namespace: &str, cluster_domain: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.{cluster_domain}"),
    ]
}

/// The commonName of a serving certificate for `names`: the `<service>.<namespace>.svc` name
/// (else the first) when it fits in [`COMMON_NAME_MAX`] bytes, else none. Clients verify the
/// dNSNames only; the commonName is informational.
pub fn common_name(names: &[String]) -> Option<&str> {
    names
        .iter()
        .find(|n| n.ends_with(".svc"))
        .or(names.first())
        .map(String::as_str)
        .filter(|cn| cn.len() <= COMMON_NAME_MAX)
}

/// A fresh CA and a serving certificate for `names`. `now` is unix seconds.
pub fn generate(names: &[String], now: i64, lifetimes: Lifetimes) -> Result<Material, TlsError> {
    let (ca_pem, ca_key) = new_ca(now, lifetimes.ca)?;
    let (cert_pem, key_pem) = issue_serving(&ca_pem, &ca_key, names, now, lifetimes.serving)?;
    Ok(Material {
        ca_bundle_pem: ca_pem,
        ca_key_pem: ca_key.serialize_pem(),
        cert_pem,
        key_pem,
    })
}

/// Decide whether `existing` needs work at `now` and return the replacement, or `None` when it
/// is fine. Anything unusable (unparseable, key mismatch, wrong names) is replaced; a CA past 2/3
/// of its life is rotated (old CA kept in the bundle while valid); a serving certificate past 2/3
/// of its life is re-issued by the current CA.
pub fn renew(
    existing: &Material,
    names: &[String],
    now: i64,
    lifetimes: Lifetimes,
) -> Result<Option<Material>, TlsError> {
    let cas = split_bundle(&existing.ca_bundle_pem);
    let Some((current_ca_pem, current_ca)) = cas.first() else {
        return generate(names, now, lifetimes).map(Some);
    };
    let ca_ok = match (
        cert_info(current_ca),
        KeyPair::from_pem(&existing.ca_key_pem),
    ) {
        (Ok(info), Ok(key)) => ca_key_matches(current_ca, &key) && !due(&info, now),
        _ => false,
    };
    let still_valid = |der: &CertificateDer<'_>| cert_info(der).is_ok_and(|i| i.not_after > now);
    if !ca_ok {
        let (ca_pem, ca_key) = new_ca(now, lifetimes.ca)?;
        let (cert_pem, key_pem) = issue_serving(&ca_pem, &ca_key, names, now, lifetimes.serving)?;
        let mut bundle = ca_pem;
        for (text, _) in cas.iter().filter(|(_, der)| still_valid(der)) {
            bundle.push_str(text);
        }
        return Ok(Some(Material {
            ca_bundle_pem: bundle,
            ca_key_pem: ca_key.serialize_pem(),
            cert_pem,
            key_pem,
        }));
    }
    let serving_ok = load_pair(
        existing.cert_pem.as_bytes(),
        existing.key_pem.as_bytes(),
        now,
    )
    .is_ok_and(|p| !due(&p.info, now) && names.iter().all(|n| p.info.dns_names.contains(n)));
    let kept: Vec<&str> = cas
        .iter()
        .filter(|(_, der)| still_valid(der))
        .map(|(text, _)| text.as_str())
        .collect();
    if serving_ok && kept.len() == cas.len() {
        return Ok(None);
    }
    let ca_key = KeyPair::from_pem(&existing.ca_key_pem)?;
    let (cert_pem, key_pem) = if serving_ok {
        (existing.cert_pem.clone(), existing.key_pem.clone())
    } else {
        issue_serving(current_ca_pem, &ca_key, names, now, lifetimes.serving)?
    };
    Ok(Some(Material {
        ca_bundle_pem: kept.concat(),
        ca_key_pem: existing.ca_key_pem.clone(),
        cert_pem,
        key_pem,
    }))
}

/// Renew at 2/3 of the lifetime, leaving a third for retries and for replicas to pick it up.
fn due(info: &CertInfo, now: i64) -> bool {
    let lifetime = info.not_after - info.not_before;
    now >= info.not_before + lifetime * 2 / 3
}

fn ca_key_matches(ca: &CertificateDer<'_>, key: &KeyPair) -> bool {
    x509_parser::parse_x509_certificate(ca)
        .is_ok_and(|(_, c)| c.public_key().raw == key.subject_public_key_info().as_slice())
}

fn validity(now: i64, lifetime: Duration) -> (std::time::SystemTime, std::time::SystemTime) {
    let at = |secs: i64| UNIX_EPOCH + Duration::from_secs(secs.max(0).unsigned_abs());
    (at(now - BACKDATE_SECS), at(now) + lifetime)
}

fn new_ca(now: i64, lifetime: Duration) -> Result<(String, KeyPair), TlsError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "spin-operator-webhook-ca");
    // The timestamp makes successive CAs distinguishable in `openssl x509 -subject`.
    dn.push(DnType::OrganizationName, format!("spin-operator {now}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let (nb, na) = validity(now, lifetime);
    params.not_before = nb.into();
    params.not_after = na.into();
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key))
}

fn issue_serving(
    ca_pem: &str,
    ca_key: &KeyPair,
    names: &[String],
    now: i64,
    lifetime: Duration,
) -> Result<(String, String), TlsError> {
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    let mut dn = DistinguishedName::new();
    if let Some(cn) = common_name(names) {
        dn.push(DnType::CommonName, cn);
    }
    params.distinguished_name = dn;
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let (nb, na) = validity(now, lifetime);
    params.not_before = nb.into();
    params.not_after = na.into();
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Split a PEM bundle into one text block per certificate, keeping each block's bytes as they
/// were (so an unchanged bundle compares equal), parsed alongside.
pub(crate) fn split_bundle(bundle: &str) -> Vec<(String, CertificateDer<'static>)> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = bundle;
    while let Some(i) = rest.find(END) {
        let (block, tail) = rest.split_at(i + END.len());
        let text = format!("{}\n", block.trim());
        if let Ok(mut certs) = parse_certs(text.as_bytes())
            && certs.len() == 1
            && let Some(der) = certs.pop()
        {
            out.push((text, der));
        }
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};

    use super::*;

    const HOUR: u64 = 3600;

    fn names() -> Vec<String> {
        service_dns_names("spin-operator-webhook", "spin-operator", "cluster.local")
    }

    fn lifetimes() -> Lifetimes {
        Lifetimes {
            ca: Duration::from_secs(300 * HOUR),
            serving: Duration::from_secs(30 * HOUR),
        }
    }

    /// Does `bundle` verify `cert_pem` for `name` at `now`?
    fn verifies(bundle: &str, cert_pem: &str, name: &str, now: i64) -> bool {
        let mut roots = rustls::RootCertStore::empty();
        for ca in parse_certs(bundle.as_bytes()).unwrap() {
            roots.add(ca).unwrap();
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let leaf = parse_certs(cert_pem.as_bytes()).unwrap().remove(0);
        verifier
            .verify_server_cert(
                &leaf,
                &[],
                &ServerName::try_from(name.to_string()).unwrap(),
                &[],
                UnixTime::since_unix_epoch(Duration::from_secs(now as u64)),
            )
            .is_ok()
    }

    #[test]
    fn generated_ca_verifies_serving_cert_for_every_service_name() {
        let now = jiff::Timestamp::now().as_second();
        let m = generate(&names(), now, lifetimes()).unwrap();
        for n in names() {
            assert!(verifies(&m.ca_bundle_pem, &m.cert_pem, &n, now), "{n}");
        }
        assert!(!verifies(
            &m.ca_bundle_pem,
            &m.cert_pem,
            "other.example",
            now
        ));
        // Another CA does not verify it.
        let other = generate(&names(), now, lifetimes()).unwrap();
        assert!(!verifies(
            &other.ca_bundle_pem,
            &m.cert_pem,
            &names()[2],
            now
        ));
        assert!(load_pair(m.cert_pem.as_bytes(), m.key_pem.as_bytes(), now).is_ok());
    }

    #[test]
    fn renew_is_a_noop_while_fresh() {
        let now = jiff::Timestamp::now().as_second();
        let m = generate(&names(), now, lifetimes()).unwrap();
        assert_eq!(
            renew(&m, &names(), now + 10 * HOUR as i64, lifetimes()).unwrap(),
            None
        );
    }

    #[test]
    fn serving_cert_is_reissued_by_the_same_ca_at_two_thirds() {
        let now = jiff::Timestamp::now().as_second();
        let m = generate(&names(), now, lifetimes()).unwrap();
        let later = now + 25 * HOUR as i64;
        let r = renew(&m, &names(), later, lifetimes()).unwrap().unwrap();
        assert_eq!(r.ca_bundle_pem, m.ca_bundle_pem);
        assert_eq!(r.ca_key_pem, m.ca_key_pem);
        assert_ne!(r.cert_pem, m.cert_pem);
        assert!(verifies(&r.ca_bundle_pem, &r.cert_pem, &names()[3], later));
    }

    #[test]
    fn ca_rotation_keeps_the_old_ca_in_the_bundle() {
        let now = jiff::Timestamp::now().as_second();
        let m = generate(&names(), now, lifetimes()).unwrap();
        let later = now + 250 * HOUR as i64;
        // The serving cert itself expired long ago; the CA is past 2/3 of its life.
        let r = renew(&m, &names(), later, lifetimes()).unwrap().unwrap();
        assert_ne!(r.ca_key_pem, m.ca_key_pem);
        assert_eq!(parse_certs(r.ca_bundle_pem.as_bytes()).unwrap().len(), 2);
        assert!(r.ca_bundle_pem.ends_with(&m.ca_bundle_pem));
        assert!(verifies(&r.ca_bundle_pem, &r.cert_pem, &names()[2], later));
        // Once the old CA has expired it is dropped from the bundle.
        let much_later = now + 301 * HOUR as i64;
        let pruned = renew(&r, &names(), much_later, lifetimes())
            .unwrap()
            .unwrap();
        assert_eq!(
            parse_certs(pruned.ca_bundle_pem.as_bytes()).unwrap().len(),
            1
        );
        assert_eq!(pruned.ca_key_pem, r.ca_key_pem);
    }

    #[test]
    fn unusable_material_is_regenerated() {
        let now = jiff::Timestamp::now().as_second();
        let m = generate(&names(), now, lifetimes()).unwrap();
        let broken = Material {
            ca_key_pem: generate(&names(), now, lifetimes()).unwrap().ca_key_pem,
            ..m.clone()
        };
        let r = renew(&broken, &names(), now, lifetimes()).unwrap().unwrap();
        assert!(verifies(&r.ca_bundle_pem, &r.cert_pem, &names()[2], now));
        let wrong_names = vec!["x.y.svc".to_string()];
        let r = renew(&m, &wrong_names, now, lifetimes()).unwrap().unwrap();
        assert_eq!(r.ca_bundle_pem, m.ca_bundle_pem);
        assert!(verifies(&r.ca_bundle_pem, &r.cert_pem, "x.y.svc", now));
    }

    fn subject_cn(cert_pem: &str) -> Option<String> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let cn = cert.subject().iter_common_name().next();
        cn.map(|cn| cn.as_str().unwrap().to_string())
    }

    #[test]
    fn the_cluster_domain_names_the_fully_qualified_service() {
        let names = service_dns_names("svc", "ns", "corp.example");
        assert_eq!(names[3], "svc.ns.svc.corp.example");
        let now = jiff::Timestamp::now().as_second();
        let m = generate(&names, now, lifetimes()).unwrap();
        assert!(verifies(&m.ca_bundle_pem, &m.cert_pem, &names[3], now));
        assert_eq!(subject_cn(&m.cert_pem).as_deref(), Some("svc.ns.svc"));
    }

    #[test]
    fn a_common_name_over_64_bytes_is_left_out() {
        // The longest names a chart install produces: a 55-character service prefix and a
        // 63-character namespace. Clients check the dNSNames, which carry every name.
        let service = format!("{}-webhook", "r".repeat(47));
        let names = service_dns_names(&service, &"n".repeat(63), "cluster.local");
        assert!(names[2].len() > COMMON_NAME_MAX);
        assert_eq!(common_name(&names), None);
        let now = jiff::Timestamp::now().as_second();
        let m = generate(&names, now, lifetimes()).unwrap();
        assert_eq!(subject_cn(&m.cert_pem), None);
        assert!(verifies(&m.ca_bundle_pem, &m.cert_pem, &names[2], now));
        // Exactly 64 bytes still fits.
        let names = vec![format!("{}.svc", "a".repeat(60))];
        assert_eq!(common_name(&names), Some(names[0].as_str()));
    }
}
