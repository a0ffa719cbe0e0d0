//! The Helm chart's copies of generated files stay identical to their sources, so `cargo test`
//! alone catches a chart that would install stale CRDs or webhook routes. (The chart's full
//! tests are in tests/helm/, run with pytest.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    repo().join("helm/spin-operator")
}

fn yaml_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect()
}

fn assert_identical(copy: &str, source: &str) {
    let want = yaml_files(&repo().join(source));
    assert!(!want.is_empty(), "{source} has no YAML files");
    let got = yaml_files(&repo().join(copy));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "file sets differ; fix: cp {source}/*.yaml {copy}/"
    );
    for (name, bytes) in &want {
        assert!(
            got[name] == *bytes,
            "{copy}/{name} drifted from {source}/{name}; fix: cp {source}/*.yaml {copy}/"
        );
    }
}

#[test]
fn chart_crds_are_identical_to_crds_dir() {
    assert_identical("helm/spin-operator/crds", "crds");
}

#[test]
fn chart_webhook_routes_are_identical_to_webhooks_dir() {
    assert_identical("helm/spin-operator/files/webhooks", "webhooks");
}

#[test]
fn chart_app_version_is_the_crate_version() {
    // The chart's image tag defaults to appVersion: it must name the release this crate builds.
    let text = std::fs::read_to_string(chart().join("Chart.yaml")).unwrap();
    let meta: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(meta["appVersion"].as_str(), Some(env!("CARGO_PKG_VERSION")));
}

/// One entry of `helm/spin-operator/files/permissions.json`, the format the chart's RBAC
/// template reads.
fn permission_json(p: &spin_operator::rbac::Permission) -> serde_json::Value {
    use spin_operator::rbac::Scope;
    let mut json = serde_json::json!({
        "group": p.group,
        "resource": p.rbac_resource(),
        "verbs": p.verbs,
        "scope": match p.scope {
            Scope::Cluster => "cluster",
            Scope::WatchedNamespaces => "watched",
            Scope::OperatorNamespace => "namespace",
        },
        "reason": p.reason,
    });
    if !p.resource_names.is_empty() {
        json["resourceNames"] = serde_json::json!(p.resource_names);
    }
    json
}

#[test]
fn chart_controller_permissions_equal_rbac_permissions() {
    // The chart grants the controllers exactly `rbac::PERMISSIONS` and `--metrics-auth` exactly
    // `rbac::METRICS_AUTH_PERMISSIONS`, nothing more or less.
    let path = chart().join("files/permissions.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let committed: serde_json::Value = serde_json::from_str(&text).unwrap();
    for (part, permissions) in [
        ("controllers", spin_operator::rbac::PERMISSIONS),
        (
            "metrics-auth",
            spin_operator::rbac::METRICS_AUTH_PERMISSIONS,
        ),
    ] {
        let generated: Vec<serde_json::Value> = permissions.iter().map(permission_json).collect();
        pretty_assertions::assert_eq!(
            committed[part],
            serde_json::Value::Array(generated),
            "{} {part:?} drifted from src/rbac.rs",
            path.display()
        );
    }
}

#[test]
fn chart_self_signed_permissions_name_the_objects_the_code_manages() {
    // The chart limits the self-signed mode's Secret and webhook-configuration access by name;
    // those names must be the ones `--self-signed` reads and patches.
    use spin_operator::admission::config;
    use spin_operator::tls::selfsigned::SelfSignedConfig;

    let text = std::fs::read_to_string(chart().join("files/permissions.json")).unwrap();
    let committed: serde_json::Value = serde_json::from_str(&text).unwrap();
    let named_in = |part: &str, resource: &str| -> Vec<String> {
        committed[part]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["resource"] == resource && p.get("resourceNames").is_some())
            .flat_map(|p| p["resourceNames"].as_array().unwrap().clone())
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    };
    let named = |resource: &str| named_in("self-signed", resource);
    // The readiness check and `--ca-bundle-file` read and patch the same two configurations.
    for part in ["ca-bundle-readiness", "ca-bundle-secret"] {
        for resource in [
            "mutatingwebhookconfigurations",
            "validatingwebhookconfigurations",
        ] {
            assert_eq!(
                named_in(part, resource),
                named(resource),
                "{part} {resource}"
            );
        }
    }
    let code = SelfSignedConfig::new(config::SERVICE_NAME, config::SERVICE_NAMESPACE);
    assert_eq!(named("secrets"), std::slice::from_ref(&code.secret_name));
    assert_eq!(
        named("mutatingwebhookconfigurations"),
        [code.mutating_webhook_configuration.unwrap()]
    );
    assert_eq!(
        named("validatingwebhookconfigurations"),
        [code.validating_webhook_configuration.unwrap()]
    );
    assert_eq!(
        named("mutatingwebhookconfigurations"),
        [config::MUTATING_CONFIGURATION_NAME]
    );
    assert_eq!(
        named("validatingwebhookconfigurations"),
        [config::VALIDATING_CONFIGURATION_NAME]
    );
}
