//! Mutating and Validating webhook configurations generated from [`ROUTES`]. `webhooks/*.yaml` is
//! the committed output (a test fails on drift); the Helm chart templates the same documents.

use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations,
    ServiceReference, ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};

use super::routes::{ROUTES, Route, WebhookKind};
use crate::api::{GROUP, VERSION};

/// Name of the MutatingWebhookConfiguration (upstream's, so an upgrade replaces it).
pub const MUTATING_CONFIGURATION_NAME: &str = "spin-operator-mutating-webhook-configuration";
/// Name of the ValidatingWebhookConfiguration (upstream's, so an upgrade replaces it).
pub const VALIDATING_CONFIGURATION_NAME: &str = "spin-operator-validating-webhook-configuration";
/// Service in front of the webhook server.
pub const SERVICE_NAME: &str = "spin-operator-webhook";
/// Namespace the operator is installed in.
pub const SERVICE_NAMESPACE: &str = "spin-operator";
/// Service port (targets the server's `--webhook-addr` port, 9443).
pub const SERVICE_PORT: i32 = 443;
/// The apiserver's deadline; the server's own request timeout stays below it.
pub const TIMEOUT_SECONDS: i32 = 5;
/// File names under `webhooks/`.
pub const MUTATING_FILE: &str = "mutating-webhook-configuration.yaml";
pub const VALIDATING_FILE: &str = "validating-webhook-configuration.yaml";

/// Errors while rendering the configurations.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("serializing webhook configuration: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

/// Skip UPDATEs that leave `spec` unchanged (metadata-only writes such as finalizer or label
/// changes by controllers): the rules only read `spec`, so the answer could not change, and a
/// webhook outage then cannot block finalizer removal. Absent specs fall through to the webhook.
const SPEC_CHANGED: &str = "request.operation != 'UPDATE' || !has(object.spec) || \
                            !has(oldObject.spec) || object.spec != oldObject.spec";

fn client_config(route: &Route) -> WebhookClientConfig {
    WebhookClientConfig {
        service: Some(ServiceReference {
            name: SERVICE_NAME.to_string(),
            namespace: SERVICE_NAMESPACE.to_string(),
            path: Some(route.path.to_string()),
            port: Some(SERVICE_PORT),
        }),
        ..Default::default()
    }
}

fn rules(route: &Route) -> Vec<RuleWithOperations> {
    vec![RuleWithOperations {
        api_groups: Some(vec![GROUP.to_string()]),
        api_versions: Some(vec![VERSION.to_string()]),
        operations: Some(route.operations.iter().map(operation_name).collect()),
        resources: Some(vec![route.resource.plural().to_string()]),
        scope: Some("Namespaced".to_string()),
    }]
}

fn operation_name(op: &kube::core::admission::Operation) -> String {
    use kube::core::admission::Operation;
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
    .to_string()
}

/// Never send requests for kube-system: nothing of ours lives there, and a broken webhook must
/// not be able to affect the control plane's own namespace.
fn namespace_selector() -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "kubernetes.io/metadata.name".to_string(),
            operator: "NotIn".to_string(),
            values: Some(vec!["kube-system".to_string()]),
        }]),
        match_labels: None,
    }
}

fn match_conditions() -> Vec<MatchCondition> {
    vec![MatchCondition {
        name: "spec-changed".to_string(),
        expression: SPEC_CHANGED.to_string(),
    }]
}

fn registered(kind: WebhookKind) -> impl Iterator<Item = &'static Route> {
    ROUTES
        .iter()
        .filter(move |r| r.registered && r.kind == kind)
}

/// The MutatingWebhookConfiguration for every registered mutating route.
pub fn mutating_configuration() -> MutatingWebhookConfiguration {
    MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(MUTATING_CONFIGURATION_NAME.to_string()),
            ..Default::default()
        },
        webhooks: Some(
            registered(WebhookKind::Mutating)
                .map(|route| MutatingWebhook {
                    name: route.name.to_string(),
                    admission_review_versions: vec!["v1".to_string()],
                    client_config: client_config(route),
                    failure_policy: Some("Fail".to_string()),
                    match_policy: Some("Equivalent".to_string()),
                    match_conditions: Some(match_conditions()),
                    namespace_selector: Some(namespace_selector()),
                    reinvocation_policy: Some("Never".to_string()),
                    rules: Some(rules(route)),
                    side_effects: "None".to_string(),
                    timeout_seconds: Some(TIMEOUT_SECONDS),
                    object_selector: None,
                })
                .collect(),
        ),
    }
}

/// The ValidatingWebhookConfiguration for every registered validating route.
pub fn validating_configuration() -> ValidatingWebhookConfiguration {
    ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(VALIDATING_CONFIGURATION_NAME.to_string()),
            ..Default::default()
        },
        webhooks: Some(
            registered(WebhookKind::Validating)
                .map(|route| ValidatingWebhook {
                    name: route.name.to_string(),
                    admission_review_versions: vec!["v1".to_string()],
                    client_config: client_config(route),
                    failure_policy: Some("Fail".to_string()),
                    match_policy: Some("Equivalent".to_string()),
                    match_conditions: Some(match_conditions()),
                    namespace_selector: Some(namespace_selector()),
                    rules: Some(rules(route)),
                    side_effects: "None".to_string(),
                    timeout_seconds: Some(TIMEOUT_SECONDS),
                    object_selector: None,
                })
                .collect(),
        ),
    }
}

const HEADER: &str = "# Generated from the admission route table (src/admission/routes.rs) by\n\
                      # `UPDATE_WEBHOOKS=1 cargo test --test admission_configs`. Do not edit.\n";

fn document<T: serde::Serialize>(obj: &T) -> Result<String, ConfigError> {
    Ok(format!("{HEADER}{}", serde_yaml::to_string(obj)?))
}

/// `(file name, YAML)` for both configurations, as committed under `webhooks/`.
pub fn files() -> Result<Vec<(&'static str, String)>, ConfigError> {
    Ok(vec![
        (MUTATING_FILE, document(&mutating_configuration())?),
        (VALIDATING_FILE, document(&validating_configuration())?),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_registered_routes_are_listed() {
        let m = mutating_configuration().webhooks.unwrap();
        assert_eq!(
            m.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
            ["mspinapp.kb.io"]
        );
        let v = validating_configuration().webhooks.unwrap();
        assert_eq!(
            v.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
            ["vspinapp.kb.io", "vspinappexecutor.kb.io"]
        );
        let ops = v[1].rules.as_ref().unwrap()[0].operations.clone().unwrap();
        assert_eq!(ops, ["CREATE", "UPDATE", "DELETE"]);
    }

    #[test]
    fn documents_carry_type_meta_and_round_trip() {
        for (_, text) in files().unwrap() {
            let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
            assert_eq!(v["apiVersion"], "admissionregistration.k8s.io/v1");
            for hook in v["webhooks"].as_sequence().unwrap() {
                assert_eq!(hook["sideEffects"], "None");
                assert_eq!(hook["timeoutSeconds"], 5);
                assert_eq!(hook["clientConfig"]["service"]["port"], 443);
            }
        }
        let m: MutatingWebhookConfiguration = serde_yaml::from_str(&files().unwrap()[0].1).unwrap();
        assert_eq!(m, mutating_configuration());
    }
}
