//! The catalogue: one row per rule, and its Markdown and JSON renderings
//! (`spin-operator rules`, committed as `webhooks/RULES.md`).

use super::Operation::{Create, Delete, Update};
use super::Phase::{Defaulting, Validation};
use super::Severity::{Error, Warning};
use super::Target::{SpinApp as App, SpinAppExecutor as Exec};
use super::{Operation, Rule};

const CU: &[Operation] = &[Create, Update];
const U: &[Operation] = &[Update];
const D: &[Operation] = &[Delete];

macro_rules! rule {
    ($id:literal, $target:expr, $phase:expr, $severity:expr, $ops:expr, $field:literal, $desc:literal) => {
        Rule {
            id: $id,
            target: $target,
            phase: $phase,
            severity: $severity,
            operations: $ops,
            field: $field,
            description: $desc,
        }
    };
}

pub(crate) static RULES: &[Rule] = &[
    // --- SpinApp defaulting (mutating webhook) ---
    rule!(
        "SA-DEFAULT-EXECUTOR",
        App,
        Defaulting,
        Warning,
        CU,
        "spec.executor",
        "When unset, set to the alphabetically first SpinAppExecutor in the app's own namespace; left unset when the namespace has none (validation then explains)."
    ),
    rule!(
        "SA-DEFAULT-REPLICAS",
        App,
        Defaulting,
        Warning,
        CU,
        "spec.replicas",
        "When unset and enableAutoscaling is not true, set to 1."
    ),
    // --- SpinApp validation ---
    rule!(
        "SA-DECODE",
        App,
        Validation,
        Error,
        CU,
        "spec",
        "Every field has its schema type (e.g. replicas an integer); each field that does not decode is reported and skipped by the other rules."
    ),
    rule!(
        "SA-NAME",
        App,
        Validation,
        Error,
        CU,
        "metadata.name",
        "The app name is a DNS-1035 label of at most 52 characters: it names the Service and is part of the pod label key core.spinkube.dev/app.<name>.status."
    ),
    rule!(
        "SA-EXECUTOR-REQUIRED",
        App,
        Validation,
        Error,
        CU,
        "spec.executor",
        "An executor must be named (defaulting fills it in when the namespace has an executor)."
    ),
    rule!(
        "SA-EXECUTOR-EXISTS",
        App,
        Validation,
        Error,
        CU,
        "spec.executor",
        "The named SpinAppExecutor exists in the app's namespace."
    ),
    rule!(
        "SA-EXECUTOR-PENDING",
        App,
        Validation,
        Warning,
        CU,
        "spec.executor",
        "With the opt-in allow-missing-executor option (for GitOps tools that apply the app before its executor), a missing executor is a warning instead of SA-EXECUTOR-EXISTS; the reconciler waits for it."
    ),
    rule!(
        "SA-REPLICAS-MIN",
        App,
        Validation,
        Error,
        CU,
        "spec.replicas",
        "Without autoscaling, replicas is at least 1."
    ),
    rule!(
        "SA-REPLICAS-AUTOSCALING",
        App,
        Validation,
        Error,
        CU,
        "spec.replicas",
        "With enableAutoscaling true, replicas is unset (the autoscaler owns the replica count)."
    ),
    rule!(
        "SA-ANNOTATIONS-NO-DEPLOYMENT",
        App,
        Validation,
        Error,
        CU,
        "spec.deploymentAnnotations, spec.podAnnotations",
        "Rejected when the executor has createDeployment=false: the operator creates no Deployment or pods to carry them."
    ),
    rule!(
        "SA-IMAGE-REQUIRED",
        App,
        Validation,
        Error,
        CU,
        "spec.image",
        "An image is required."
    ),
    rule!(
        "SA-IMAGE-REFERENCE",
        App,
        Validation,
        Error,
        CU,
        "spec.image",
        "The image is a valid OCI reference: [registry[:port]/]path[:tag][@algorithm:hex], lowercase path components, tag [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}."
    ),
    rule!(
        "SA-IMAGE-LATEST",
        App,
        Validation,
        Warning,
        CU,
        "spec.image",
        "The image has no tag or the tag \"latest\" (and no digest): pods may run different code."
    ),
    rule!(
        "SA-IMAGE-PULL-POLICY",
        App,
        Validation,
        Error,
        CU,
        "spec.imagePullPolicy",
        "One of Always, IfNotPresent, Never."
    ),
    rule!(
        "SA-SERVICE-ACCOUNT-NAME",
        App,
        Validation,
        Error,
        CU,
        "spec.serviceAccountName",
        "A DNS-1123 subdomain."
    ),
    rule!(
        "SA-REF-NAME",
        App,
        Validation,
        Error,
        CU,
        "spec.imagePullSecrets[*].name, spec.variables[*].valueFrom, spec.runtimeConfig",
        "Every Secret/ConfigMap reference names a DNS-1123 subdomain and, for key references, a key."
    ),
    rule!(
        "SA-REF-MISSING",
        App,
        Validation,
        Warning,
        CU,
        "spec.imagePullSecrets, spec.variables, spec.runtimeConfig",
        "A referenced (non-optional) Secret or ConfigMap is known not to exist in the app's namespace."
    ),
    rule!(
        "SA-VARIABLE-NAME",
        App,
        Validation,
        Error,
        CU,
        "spec.variables[*].name",
        "Spin variable name: a lowercase letter first, then lowercase letters, digits and single underscores, not ending with an underscore."
    ),
    rule!(
        "SA-VARIABLE-DUPLICATE",
        App,
        Validation,
        Error,
        CU,
        "spec.variables[*].name",
        "Variable names are unique."
    ),
    rule!(
        "SA-VARIABLE-SOURCE",
        App,
        Validation,
        Error,
        CU,
        "spec.variables[*]",
        "Exactly one of value or valueFrom; valueFrom has exactly one source."
    ),
    rule!(
        "SA-VOLUME-NAME",
        App,
        Validation,
        Error,
        CU,
        "spec.volumes[*].name",
        "Volume names are DNS-1123 labels."
    ),
    rule!(
        "SA-VOLUME-RESERVED",
        App,
        Validation,
        Error,
        CU,
        "spec.volumes[*].name",
        "Volume names do not start with \"spin-\" (reserved for the volumes the operator adds)."
    ),
    rule!(
        "SA-VOLUME-DUPLICATE",
        App,
        Validation,
        Error,
        CU,
        "spec.volumes[*].name",
        "Volume names are unique."
    ),
    rule!(
        "SA-VOLUMEMOUNT-VOLUME",
        App,
        Validation,
        Error,
        CU,
        "spec.volumeMounts[*].name",
        "Every volume mount names a volume declared in spec.volumes."
    ),
    rule!(
        "SA-VOLUMEMOUNT-PATH",
        App,
        Validation,
        Error,
        CU,
        "spec.volumeMounts[*].mountPath",
        "Mount paths are set, unique, and do not collide with /runtime-config.toml or the CA bundle path the operator mounts."
    ),
    rule!(
        "SA-PROBE-HTTPGET",
        App,
        Validation,
        Error,
        CU,
        "spec.checks.*.httpGet",
        "A liveness or readiness probe has an httpGet action."
    ),
    rule!(
        "SA-PROBE-PATH",
        App,
        Validation,
        Error,
        CU,
        "spec.checks.*.httpGet.path",
        "The probe path starts with '/'."
    ),
    rule!(
        "SA-PROBE-HEADER",
        App,
        Validation,
        Error,
        CU,
        "spec.checks.*.httpGet.httpHeaders[*].name",
        "Probe header names are valid HTTP header names."
    ),
    rule!(
        "SA-PROBE-THRESHOLDS",
        App,
        Validation,
        Error,
        CU,
        "spec.checks.*",
        "timeoutSeconds, periodSeconds, successThreshold and failureThreshold are at least 1; initialDelaySeconds at least 0."
    ),
    rule!(
        "SA-PROBE-LIVENESS-SUCCESS",
        App,
        Validation,
        Error,
        CU,
        "spec.checks.liveness.successThreshold",
        "The liveness successThreshold is 1 (as Kubernetes requires)."
    ),
    rule!(
        "SA-RESOURCES-QUANTITY",
        App,
        Validation,
        Error,
        CU,
        "spec.resources",
        "Limits and requests are valid, non-negative Kubernetes quantities."
    ),
    rule!(
        "SA-RESOURCES-REQUESTS-LE-LIMITS",
        App,
        Validation,
        Error,
        CU,
        "spec.resources.requests",
        "Each request is at most the limit of the same resource."
    ),
    rule!(
        "SA-INVOCATION-MEMORY",
        App,
        Validation,
        Error,
        CU,
        "spec.invocationLimits[memory]",
        "The per-invocation memory limit is a valid quantity greater than 0."
    ),
    rule!(
        "SA-INVOCATION-MEMORY-LIMIT",
        App,
        Validation,
        Error,
        CU,
        "spec.invocationLimits[memory]",
        "The per-invocation memory limit is at most the container memory limit (or the memory request when only that is set)."
    ),
    rule!(
        "SA-INVOCATION-UNKNOWN",
        App,
        Validation,
        Warning,
        CU,
        "spec.invocationLimits",
        "An invocation limit Spin does not support (only memory)."
    ),
    rule!(
        "SA-COMPONENTS-EMPTY",
        App,
        Validation,
        Error,
        CU,
        "spec.components",
        "When set, the component list is not empty (omit it to run all components)."
    ),
    rule!(
        "SA-COMPONENTS-ID",
        App,
        Validation,
        Error,
        CU,
        "spec.components[*]",
        "Spin component ids: '-'-separated words, each starting with an ASCII letter, alphanumeric, all lowercase or all uppercase."
    ),
    rule!(
        "SA-COMPONENTS-DUPLICATE",
        App,
        Validation,
        Error,
        CU,
        "spec.components[*]",
        "Components are listed once."
    ),
    rule!(
        "SA-RC-EXCLUSIVE",
        App,
        Validation,
        Error,
        CU,
        "spec.runtimeConfig",
        "loadFromSecret excludes sqliteDatabases, keyValueStores and llmCompute."
    ),
    rule!(
        "SA-RC-NAME",
        App,
        Validation,
        Error,
        CU,
        "spec.runtimeConfig.*[*].name",
        "Key-value store and SQLite database names are set and unique."
    ),
    rule!(
        "SA-RC-TYPE",
        App,
        Validation,
        Error,
        CU,
        "spec.runtimeConfig.*.type",
        "Every runtime-config table names a provider type."
    ),
    rule!(
        "SA-RC-TYPE-UNKNOWN",
        App,
        Validation,
        Warning,
        CU,
        "spec.runtimeConfig.*.type",
        "A provider type this operator does not know (known: key_value_store spin, redis, azure_cosmos, aws_dynamo; sqlite_database spin, libsql; llm_compute spin, remote_http); options pass through unchecked."
    ),
    rule!(
        "SA-RC-OPTION",
        App,
        Validation,
        Error,
        CU,
        "spec.runtimeConfig.*.options[*].name",
        "Option names are set and unique within a table (TOML keys cannot repeat)."
    ),
    rule!(
        "SA-RC-OPTION-SOURCE",
        App,
        Validation,
        Error,
        CU,
        "spec.runtimeConfig.*.options[*]",
        "Exactly one of value or valueFrom; valueFrom has exactly one of secretKeyRef or configMapKeyRef."
    ),
    rule!(
        "SA-RC-KEY-UNKNOWN",
        App,
        Validation,
        Warning,
        CU,
        "spec.runtimeConfig.*.options[*].name",
        "An option the provider type does not read (Spin ignores it)."
    ),
    rule!(
        "SA-RC-KEY-MISSPELLED",
        App,
        Validation,
        Error,
        CU,
        "spec.runtimeConfig.*.options[*].name",
        "An option that is likely a misspelling of one the provider reads (e.g. token for llm_compute remote_http's auth_token)."
    ),
    rule!(
        "SA-PODLABELS-SELECTOR",
        App,
        Validation,
        Error,
        CU,
        "spec.podLabels",
        "Pod labels do not override core.spinkube.dev/app-name or core.spinkube.dev/app.<name>.status, which the operator selects pods by."
    ),
    rule!(
        "SA-LABEL-KEY",
        App,
        Validation,
        Error,
        CU,
        "spec.podLabels, spec.nodeSelector",
        "Label keys are qualified names ([prefix/]name)."
    ),
    rule!(
        "SA-LABEL-VALUE",
        App,
        Validation,
        Error,
        CU,
        "spec.podLabels, spec.nodeSelector",
        "Label values are valid (at most 63 alphanumerics, '-', '_', '.', alphanumeric at both ends)."
    ),
    rule!(
        "SA-ANNOTATION-KEY",
        App,
        Validation,
        Error,
        CU,
        "spec.serviceAnnotations, spec.deploymentAnnotations, spec.podAnnotations",
        "Annotation keys are qualified names."
    ),
    rule!(
        "SA-ANNOTATION-SIZE",
        App,
        Validation,
        Error,
        CU,
        "spec.serviceAnnotations, spec.deploymentAnnotations, spec.podAnnotations",
        "Each annotation map is at most 256 KiB."
    ),
    rule!(
        "SA-RATCHET",
        App,
        Validation,
        Warning,
        U,
        "*",
        "On UPDATE, an error whose field (and any field the rule relates it to, e.g. enableAutoscaling for replicas) has the same value as in the old object is reported as a warning instead, so objects admitted earlier (e.g. by the Go operator) never block later edits."
    ),
    rule!(
        "SA-FINALIZING",
        App,
        Validation,
        Warning,
        U,
        "metadata.deletionTimestamp",
        "On UPDATE of an object that is being deleted, everything is allowed: finalizer removal must never be blocked."
    ),
    // --- SpinAppExecutor validation ---
    rule!(
        "SAE-DECODE",
        Exec,
        Validation,
        Error,
        CU,
        "spec",
        "Every field has its schema type; each field that does not decode is reported and skipped by the other rules."
    ),
    rule!(
        "SAE-DEPLOYMENT-CONFIG-REQUIRED",
        Exec,
        Validation,
        Error,
        CU,
        "spec.deploymentConfig",
        "createDeployment=true requires deploymentConfig (upstream's controller crashes without it)."
    ),
    rule!(
        "SAE-DEPLOYMENT-CONFIG-UNUSED",
        Exec,
        Validation,
        Warning,
        CU,
        "spec.deploymentConfig",
        "deploymentConfig is ignored while createDeployment is false."
    ),
    rule!(
        "SAE-RUNTIME-XOR",
        Exec,
        Validation,
        Error,
        CU,
        "spec.deploymentConfig",
        "Exactly one of runtimeClassName or spinImage."
    ),
    rule!(
        "SAE-RUNTIME-CLASS-NAME",
        Exec,
        Validation,
        Error,
        CU,
        "spec.deploymentConfig.runtimeClassName",
        "A DNS-1123 subdomain."
    ),
    rule!(
        "SAE-SPIN-IMAGE",
        Exec,
        Validation,
        Error,
        CU,
        "spec.deploymentConfig.spinImage",
        "A valid OCI image reference."
    ),
    rule!(
        "SAE-CA-SECRET-NAME",
        Exec,
        Validation,
        Error,
        CU,
        "spec.deploymentConfig.caCertSecret",
        "A DNS-1123 subdomain."
    ),
    rule!(
        "SAE-OTEL-ENDPOINT",
        Exec,
        Validation,
        Error,
        CU,
        "spec.deploymentConfig.otel.*",
        "OTLP endpoints are absolute http:// or https:// URLs with a host."
    ),
    rule!(
        "SAE-IN-USE",
        Exec,
        Validation,
        Error,
        D,
        "metadata.name",
        "DELETE is denied while SpinApps in the executor's namespace still name it (up to 5 are listed)."
    ),
    rule!(
        "SAE-RATCHET",
        Exec,
        Validation,
        Warning,
        U,
        "*",
        "On UPDATE, an error whose field has the same value as in the old object is reported as a warning instead."
    ),
    rule!(
        "SAE-FINALIZING",
        Exec,
        Validation,
        Warning,
        U,
        "metadata.deletionTimestamp",
        "On UPDATE of an executor that is being deleted, everything is allowed: finalizer removal must never be blocked."
    ),
];

/// The catalogue as a Markdown document (the content of `webhooks/RULES.md`).
pub fn markdown() -> String {
    let mut out = String::from(
        "# Admission rules\n\n\
         Generated by `spin-operator rules --format markdown`; do not edit by hand (a test fails \
         when this file and the output differ).\n\n\
         Errors deny the request with a Kubernetes `Invalid` status listing every field error; \
         warnings are allowed and shown by kubectl as `Warning: ...`. Defaulting rules add RFC \
         6902 patch operations in the mutating webhook. There is no mutating webhook for \
         SpinAppExecutors.\n",
    );
    for (title, target, phase) in [
        (
            "SpinApp defaulting",
            super::Target::SpinApp,
            super::Phase::Defaulting,
        ),
        (
            "SpinApp validation",
            super::Target::SpinApp,
            super::Phase::Validation,
        ),
        (
            "SpinAppExecutor validation",
            super::Target::SpinAppExecutor,
            super::Phase::Validation,
        ),
    ] {
        out.push_str(&format!(
            "\n## {title}\n\n| ID | Severity | Operations | Field | Rule |\n|---|---|---|---|---|\n"
        ));
        for r in RULES
            .iter()
            .filter(|r| r.target == target && r.phase == phase)
        {
            let ops: Vec<&str> = r.operations.iter().map(|o| o.as_str()).collect();
            let severity = match phase {
                super::Phase::Defaulting => "patch",
                super::Phase::Validation => r.severity.as_str(),
            };
            out.push_str(&format!(
                "| `{}` | {} | {} | `{}` | {} |\n",
                r.id,
                severity,
                ops.join(", "),
                r.field,
                r.description.replace('|', "\\|")
            ));
        }
    }
    out.push_str(&super::vap::markdown());
    out
}

/// The catalogue as pretty JSON.
pub fn json() -> String {
    serde_json::to_string_pretty(RULES).unwrap_or_else(|_| "[]".to_string()) + "\n"
}
