//! `SpinApp`: a Spin application and how it should run.
//!
//! Wire-compatible with upstream `core.spinkube.dev/v1alpha1` (same JSON names and types). Every
//! field is decoded leniently (missing `executor`/`image` decode as empty) so the admission webhooks
//! can explain a bad object with field errors instead of failing to parse it; the generated CRD
//! still marks them required (see [`crate::crd`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapKeySelector, EnvVarSource, LocalObjectReference, SecretKeySelector,
    Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// SpinAppSpec defines the desired state of a SpinApp.
// kube-derive's repeated `printcolumn(type_ = ..)` arguments look like duplicated attributes to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "core.spinkube.dev",
    version = "v1alpha1",
    kind = "SpinApp",
    namespaced,
    status = "SpinAppStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "SpinApp is the Schema for the spinapps API",
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Executor", type_ = "string", json_path = ".spec.executor"),
    printcolumn(
        name = "Deployment",
        type_ = "string",
        json_path = ".status.deploymentName",
        priority = 1
    ),
    printcolumn(
        name = "Service",
        type_ = "string",
        json_path = ".status.serviceName",
        priority = 1
    ),
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.readyReplicas",
        label_selector_path = ".status.selector"
    )
)]
#[x_kube(validation = kube::core::Rule::new(
    "!(has(self.enableAutoscaling) && self.enableAutoscaling && has(self.replicas))"
).message("replicas must not be set when enableAutoscaling is true")
// Reported on the field, as the webhook's SA-REPLICAS-AUTOSCALING does, when the webhook is down.
.field_path(".replicas").reason(kube::core::Reason::FieldValueForbidden))]
#[serde(rename_all = "camelCase")]
pub struct SpinAppSpec {
    /// Executor controls how this app is executed in the cluster: the name of a SpinAppExecutor in
    /// the app's namespace. Defaulted by the mutating webhook to the alphabetically first executor
    /// in the namespace when unset.
    #[serde(default)]
    pub executor: String,

    /// Image is the OCI reference of the Spin application (registry/path:tag or @digest).
    #[serde(default)]
    pub image: String,

    /// ImagePullSecrets is a list of references to secrets in the same namespace to use for
    /// pulling the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,

    /// ImagePullPolicy of the app container: Always, IfNotPresent or Never. Unset leaves the
    /// Kubernetes default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Always", "IfNotPresent", "Never"]))]
    pub image_pull_policy: Option<String>,

    /// Checks defines health checks that should be used by Kubernetes to monitor the application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<HealthChecks>,

    /// Number of replicas to run. Defaulted to 1 when unset and autoscaling is off; must be unset
    /// when enableAutoscaling is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,

    /// EnableAutoscaling indicates whether the app is allowed to autoscale. If true then the
    /// operator leaves the replica count of the underlying deployment to be managed by an external
    /// autoscaler (HPA/KEDA). If false the operator sets the replica count from `replicas`.
    #[serde(default)]
    pub enable_autoscaling: bool,

    /// RuntimeConfig defines configuration to be applied at runtime for this app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_config: Option<RuntimeConfig>,

    /// Volumes defines the volumes to be mounted in the underlying pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<Volume>>,

    /// VolumeMounts defines how volumes are mounted in the underlying containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mounts: Option<Vec<VolumeMount>>,

    /// Variables provide Kubernetes Bindings to Spin App Variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables: Option<Vec<SpinVar>>,

    /// ServiceAnnotations defines annotations to be applied to the underlying service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_annotations: Option<BTreeMap<String, String>>,

    /// DeploymentAnnotations defines annotations to be applied to the underlying deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_annotations: Option<BTreeMap<String, String>>,

    /// PodAnnotations defines annotations to be applied to the underlying pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_annotations: Option<BTreeMap<String, String>>,

    /// PodLabels defines labels to be applied to the underlying pods. They must not override the
    /// operator's selector labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_labels: Option<BTreeMap<String, String>>,

    /// Resources defines the resource requirements for this app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,

    /// Components of the app to execute. If this is not provided all components are executed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub components: Option<Vec<String>>,

    /// ServiceAccountName is the name of the Kubernetes service account to use for the pod.
    /// If not specified, the default service account will be used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,

    /// InvocationLimits define limits to be applied per invocation of the app. The keys are the
    /// names of the limits and the values are the limit values; Spin supports `memory`
    /// (a Kubernetes quantity) today.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_limits: Option<BTreeMap<String, String>>,

    /// NodeSelector constrains the app's pods to nodes with these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Tolerations let the app's pods schedule onto nodes with matching taints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,

    /// Affinity holds the app's pod scheduling constraints (node, pod affinity, anti-affinity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
}

/// HealthChecks defines the readiness and liveness probes of the app.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthChecks {
    /// Readiness defines the readiness probe of the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<HealthProbe>,
    /// Liveness defines the liveness probe of the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<HealthProbe>,
}

/// HealthProbe is an HTTP probe with its timings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthProbe {
    /// HTTPGet is the HTTP request the probe performs against the app's port.
    #[serde(default, rename = "httpGet", skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpHealthProbe>,
    /// Number of seconds after the container has started before the probe is initiated.
    #[serde(default = "default_initial_delay_seconds")]
    #[schemars(range(min = 0))]
    pub initial_delay_seconds: i32,
    /// Number of seconds after which the probe times out.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1))]
    pub timeout_seconds: i32,
    /// How often (in seconds) to perform the probe.
    #[serde(default = "default_period_seconds")]
    #[schemars(range(min = 1))]
    pub period_seconds: i32,
    /// Minimum consecutive successes for the probe to be considered successful after having
    /// failed. Must be 1 for liveness.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1))]
    pub success_threshold: i32,
    /// Minimum consecutive failures for the probe to be considered failed after having succeeded.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1))]
    pub failure_threshold: i32,
}

impl Default for HealthProbe {
    fn default() -> Self {
        Self {
            http_get: None,
            initial_delay_seconds: default_initial_delay_seconds(),
            timeout_seconds: default_one(),
            period_seconds: default_period_seconds(),
            success_threshold: default_one(),
            failure_threshold: default_failure_threshold(),
        }
    }
}

fn default_initial_delay_seconds() -> i32 {
    10
}
fn default_period_seconds() -> i32 {
    10
}
fn default_one() -> i32 {
    1
}
fn default_failure_threshold() -> i32 {
    3
}

/// HTTPHealthProbe is the HTTP request of a health probe.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpHealthProbe {
    /// Path is the path that should be used when calling the application for a health check,
    /// e.g. /healthz.
    pub path: String,
    /// HTTPHeaders are headers that should be included in the health check request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_headers: Option<Vec<HttpHealthProbeHeader>>,
}

/// HTTPHealthProbeHeader is an abstraction around a http header key/value pair.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct HttpHealthProbeHeader {
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: String,
}

/// SpinVar defines a binding between a Spin variable and a static value or a Kubernetes source.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpinVar {
    /// Name of the variable to bind (Spin variable grammar: lowercase letter first, then
    /// lowercase letters, digits and underscores).
    pub name: String,
    /// Value is the static value to bind to the variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// ValueFrom is a reference to dynamically bind the variable to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

/// Resources is the compute resource requirements of the app container.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct Resources {
    /// Limits describes the maximum amount of compute resources allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<BTreeMap<String, Quantity>>,
    /// Requests describes the minimum amount of compute resources required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<BTreeMap<String, Quantity>>,
}

/// RuntimeConfig is the Spin runtime configuration of the app: either a Secret holding a complete
/// `runtime-config.toml`, or typed key-value stores, SQLite databases and LLM compute.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    /// LoadFromSecret names a Secret in the app's namespace whose `runtime-config.toml` key is
    /// mounted as the runtime configuration. Excludes the typed sections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_from_secret: Option<String>,
    /// SqliteDatabases provides spin bindings to different SQLite providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite_databases: Option<Vec<SqliteDatabaseConfig>>,
    /// KeyValueStores provides spin bindings to different key-value store providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_value_stores: Option<Vec<KeyValueStoreConfig>>,
    /// LLMCompute provides spin bindings to different LLM providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_compute: Option<LlmComputeConfig>,
}

/// SqliteDatabaseConfig is one `[sqlite_database.<name>]` table.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct SqliteDatabaseConfig {
    /// Name of the database as the app refers to it.
    pub name: String,
    /// Type of the provider, e.g. `libsql` or `spin`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Options of the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<RuntimeConfigOption>>,
}

/// KeyValueStoreConfig is one `[key_value_store.<name>]` table.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct KeyValueStoreConfig {
    /// Name of the store as the app refers to it.
    pub name: String,
    /// Type of the provider, e.g. `redis`, `spin`, `azure_cosmos`, `aws_dynamo`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Options of the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<RuntimeConfigOption>>,
}

/// LlmComputeConfig is the `[llm_compute]` table.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct LlmComputeConfig {
    /// Type of the provider, e.g. `remote_http`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Options of the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<RuntimeConfigOption>>,
}

/// RuntimeConfigOption is one option of a runtime-config table: a static value or a reference.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfigOption {
    /// Name of the option, e.g. `url`.
    pub name: String,
    /// Value is the static value of the option.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// ValueFrom is a reference to a Secret or ConfigMap key holding the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<RuntimeConfigVarSource>,
}

/// RuntimeConfigVarSource selects a key of a Secret or ConfigMap in the app's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfigVarSource {
    /// Selects a key of a ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<ConfigMapKeySelector>,
    /// Selects a key of a secret in the app's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeySelector>,
}

/// SpinAppStatus defines the observed state of a SpinApp.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpinAppStatus {
    /// Represents the observations of a SpinApp's current state: Ready, Available, Progressing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// ActiveScheduler is the name of the executor currently running the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_scheduler: Option<String>,
    /// ReadyReplicas is the number of ready pods of the app.
    #[serde(default)]
    pub ready_replicas: i32,
    /// DeploymentName is the name of the Deployment running the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_name: Option<String>,
    /// ServiceName is the name of the Service exposing the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// ObservedGeneration is the metadata.generation this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Selector is the label selector of the app's pods, for the scale subresource (HPA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}
