//! The rule table as ValidatingAdmissionPolicies (`spin-operator rules --format vap`, committed as
//! `webhooks/validating-admission-policy.yaml`): one policy and binding per kind, with a CEL
//! validation for every rule CEL can express, denying with the rule id.
//!
//! Differences from the webhooks: no lookups of other objects (those rules stay webhook-only, see
//! [`export`]), no warnings, and the API server reports only the first failing validation.

mod cel;
mod exports;

pub use exports::{Check, Export, export};

use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MatchResources, NamedRuleWithOperations, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec,
    ValidatingAdmissionPolicySpec, Validation, Variable,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};

use super::{Phase, Rule, Target, catalogue};
use crate::api::{GROUP, VERSION};

/// File name under `webhooks/` (and the chart's `files/webhooks/`).
pub const FILE: &str = "validating-admission-policy.yaml";

/// Errors while rendering the policies.
#[derive(Debug, thiserror::Error)]
pub enum VapError {
    #[error("serializing the admission policy: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("ratchet variable {0} names a field its validation does not read")]
    UnresolvedVariable(String),
}

/// Objects being deleted are admitted (`SA-FINALIZING`, `SAE-FINALIZING`): finalizer removal
/// must never be blocked.
const NOT_BEING_DELETED: &str = "!has(object.metadata.deletionTimestamp)";
/// As the webhooks' matchCondition: UPDATEs that leave `spec` alone (finalizers, labels) are not
/// evaluated; every rule reads `spec` (the name cannot change).
const SPEC_CHANGED: &str = "request.operation != 'UPDATE' || !has(object.spec) || \
                            !has(oldObject.spec) || object.spec != oldObject.spec";

/// The policy (and binding) name for a kind.
pub fn policy_name(target: Target) -> &'static str {
    match target {
        Target::SpinApp => "spin-operator-spinapps",
        Target::SpinAppExecutor => "spin-operator-spinappexecutors",
    }
}

fn plural(target: Target) -> &'static str {
    match target {
        Target::SpinApp => "spinapps",
        Target::SpinAppExecutor => "spinappexecutors",
    }
}

/// The validation rules of `target`, in catalogue order (the order the webhooks list errors).
fn rules(target: Target) -> impl Iterator<Item = &'static Rule> {
    catalogue()
        .iter()
        .filter(move |r| r.target == target && r.phase == Phase::Validation)
}

/// The message of a failed check: the rule id first, as in the webhooks' warnings.
pub fn message(rule: &Rule, check: &Check) -> String {
    format!("{}: {}: {}", rule.id, check.field, rule.description)
}

/// Every validation of `target`'s policy, each with the rule it enforces.
pub fn validations(target: Target) -> Vec<(&'static str, Validation)> {
    let mut out = Vec::new();
    for rule in rules(target) {
        let Some(Export::Cel(checks)) = export(rule.id) else {
            continue;
        };
        for check in checks {
            out.push((
                rule.id,
                Validation {
                    expression: check.expression.clone(),
                    message: None,
                    message_expression: Some(cel::lit(&message(rule, &check))),
                    reason: Some("Invalid".to_string()),
                },
            ));
        }
    }
    out
}

/// The policy's variables: one per field whose ratchet guard the validations of `target` use
/// (`unchanged_spec_image`: true on an UPDATE that keeps `spec.image`), in order of first use.
pub fn variables(target: Target) -> Result<Vec<Variable>, VapError> {
    let mut out: Vec<Variable> = Vec::new();
    for (_, validation) in validations(target) {
        let found = cel::unchanged_variables(&validation.expression)
            .map_err(VapError::UnresolvedVariable)?;
        for (name, expression) in found {
            if !out.iter().any(|v| v.name == name) {
                out.push(Variable { name, expression });
            }
        }
    }
    Ok(out)
}

/// The policy's matchConditions.
pub fn match_conditions() -> Vec<MatchCondition> {
    [
        ("not-being-deleted", NOT_BEING_DELETED),
        ("spec-changed", SPEC_CHANGED),
    ]
    .map(|(name, expression)| MatchCondition {
        name: name.to_string(),
        expression: expression.to_string(),
    })
    .to_vec()
}

/// The ValidatingAdmissionPolicy for one kind.
pub fn policy(target: Target) -> Result<ValidatingAdmissionPolicy, VapError> {
    Ok(ValidatingAdmissionPolicy {
        metadata: ObjectMeta {
            name: Some(policy_name(target).to_string()),
            ..Default::default()
        },
        spec: Some(ValidatingAdmissionPolicySpec {
            failure_policy: Some("Fail".to_string()),
            match_constraints: Some(MatchResources {
                match_policy: Some("Equivalent".to_string()),
                // As the webhooks: never kube-system.
                namespace_selector: Some(LabelSelector {
                    match_expressions: Some(vec![LabelSelectorRequirement {
                        key: "kubernetes.io/metadata.name".to_string(),
                        operator: "NotIn".to_string(),
                        values: Some(vec!["kube-system".to_string()]),
                    }]),
                    match_labels: None,
                }),
                resource_rules: Some(vec![NamedRuleWithOperations {
                    api_groups: Some(vec![GROUP.to_string()]),
                    api_versions: Some(vec![VERSION.to_string()]),
                    // DELETE is admitted: its only rule (SAE-IN-USE) needs a lookup.
                    operations: Some(vec!["CREATE".to_string(), "UPDATE".to_string()]),
                    resources: Some(vec![plural(target).to_string()]),
                    scope: Some("Namespaced".to_string()),
                    resource_names: None,
                }]),
                ..Default::default()
            }),
            match_conditions: Some(match_conditions()),
            validations: Some(validations(target).into_iter().map(|(_, v)| v).collect()),
            variables: Some(variables(target)?),
            ..Default::default()
        }),
        status: None,
    })
}

/// The binding that enforces [`policy`] (`Deny`; the chart makes the actions configurable).
pub fn binding(target: Target) -> ValidatingAdmissionPolicyBinding {
    ValidatingAdmissionPolicyBinding {
        metadata: ObjectMeta {
            name: Some(policy_name(target).to_string()),
            ..Default::default()
        },
        spec: ValidatingAdmissionPolicyBindingSpec {
            policy_name: policy_name(target).to_string(),
            validation_actions: vec!["Deny".to_string()],
            ..Default::default()
        },
    }
}

const HEADER: &str = "# Generated from the rule table (src/rules/vap) by `spin-operator rules --format vap`\n\
                      # or `UPDATE_WEBHOOKS=1 cargo test --test admission_policy`. Do not edit.\n\
                      # Rules CEL cannot express stay webhook-only: see webhooks/RULES.md.\n";

/// The policies and bindings of both kinds as one multi-document YAML file.
pub fn yaml() -> Result<String, VapError> {
    let mut out = String::from(HEADER);
    for target in [Target::SpinApp, Target::SpinAppExecutor] {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&policy(target)?)?);
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&binding(target))?);
    }
    Ok(out)
}

/// The Markdown section of `webhooks/RULES.md` on the policy: how each rule is enforced.
pub fn markdown() -> String {
    let mut out = String::from(
        "\n## ValidatingAdmissionPolicy\n\n\
         `spin-operator rules --format vap` (committed as `webhooks/validating-admission-policy.yaml`, \
         installed by the chart with `validatingAdmissionPolicy.enabled`) enforces the rules CEL \
         can express in the API server itself, each failed validation's message starting with \
         the rule id. The API server reports only the first failing validation, and denies with \
         `reason: Invalid`. As the webhooks ratchet, a validation admits an UPDATE that keeps the \
         old values of the fields it judges (policy variables `unchanged_spec_<field>`; a list \
         item or runtime-config table counts as unchanged when the old object has the same one); \
         objects being deleted and UPDATEs that leave `spec` alone are not evaluated, and an \
         explicit `null` is unset. Nothing is defaulted: without the mutating webhook an app must \
         name its executor. Rules marked webhook-only are not enforced by the policy.\n\n\
         | ID | Policy |\n|---|---|\n",
    );
    for rule in catalogue() {
        let how = match export(rule.id) {
            Some(Export::Cel(checks)) => format!(
                "CEL ({} validation{})",
                checks.len(),
                if checks.len() == 1 { "" } else { "s" }
            ),
            Some(Export::Policy(how)) => format!("policy structure: {how}"),
            Some(Export::WebhookOnly(why)) => format!("webhook-only: {why}"),
            None => "webhook-only: no export decided".to_string(),
        };
        out.push_str(&format!(
            "| `{}` | {} |\n",
            rule.id,
            how.replace('|', "\\|")
        ));
    }
    out
}
