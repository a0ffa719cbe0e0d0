//! The cert-manager manifests in certs/ must agree with what the operator serves and expects:
//! the Service DNS names, the Secret name and a consistent issuer chain.

use serde_yaml::Value;
use spin_operator::tls::selfsigned::{SelfSignedConfig, service_dns_names};

fn docs(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn by_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn serving_cert(docs: &[Value]) -> &Value {
    by_kind(docs, "Certificate")
        .into_iter()
        .find(|c| c["spec"]["isCA"] != true)
        .expect("serving Certificate")
}

fn check_serving(cert: &Value) {
    let defaults = SelfSignedConfig::new("spin-operator-webhook", "spin-operator");
    assert_eq!(cert["metadata"]["namespace"], "spin-operator");
    assert_eq!(cert["spec"]["secretName"], defaults.secret_name.as_str());
    let names: Vec<String> = cert["spec"]["dnsNames"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        service_dns_names("spin-operator-webhook", "spin-operator", "cluster.local")
    );
    let usages = cert["spec"]["usages"].as_sequence().unwrap();
    assert!(usages.iter().any(|u| u == "server auth"));
}

#[test]
fn self_signed_issuer_chain_ends_in_the_serving_certificate() {
    let docs = docs("certs/cert-manager.yaml");
    let issuers = by_kind(&docs, "Issuer");
    let selfsigned = issuers
        .iter()
        .find(|i| i["spec"]["selfSigned"].is_mapping())
        .unwrap();
    let ca_cert = by_kind(&docs, "Certificate")
        .into_iter()
        .find(|c| c["spec"]["isCA"] == true)
        .unwrap();
    assert_eq!(
        ca_cert["spec"]["issuerRef"]["name"],
        selfsigned["metadata"]["name"]
    );
    let ca_issuer = issuers
        .iter()
        .find(|i| i["spec"]["ca"].is_mapping())
        .unwrap();
    assert_eq!(
        ca_issuer["spec"]["ca"]["secretName"],
        ca_cert["spec"]["secretName"]
    );
    let serving = serving_cert(&docs);
    assert_eq!(
        serving["spec"]["issuerRef"]["name"],
        ca_issuer["metadata"]["name"]
    );
    check_serving(serving);
    for d in &docs {
        assert_eq!(d["apiVersion"], "cert-manager.io/v1");
        assert_eq!(d["metadata"]["namespace"], "spin-operator");
    }
}

#[test]
fn existing_issuer_variant_only_adds_the_serving_certificate() {
    let docs = docs("certs/cert-manager-existing-issuer.yaml");
    assert_eq!(docs.len(), 1);
    check_serving(serving_cert(&docs));
    assert!(docs[0]["spec"]["issuerRef"]["name"].is_string());
}
