//! `SpinAppExecutor`: how SpinApps that name it are run (shim runtime class or Spin container).

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// SpinAppExecutorSpec defines the desired state of SpinAppExecutor.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "core.spinkube.dev",
    version = "v1alpha1",
    kind = "SpinAppExecutor",
    namespaced,
    status = "SpinAppExecutorStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "SpinAppExecutor is the Schema for the spinappexecutors API"
)]
#[x_kube(validation = kube::core::Rule::new(
    "!self.createDeployment || has(self.deploymentConfig)"
).message("deploymentConfig is required when createDeployment is true")
// Reported on the field, as the webhook's SAE-DEPLOYMENT-CONFIG-REQUIRED does.
.field_path(".deploymentConfig").reason(kube::core::Reason::FieldValueRequired))]
#[serde(rename_all = "camelCase")]
pub struct SpinAppExecutorSpec {
    /// CreateDeployment specifies whether the Executor wants the SpinKube operator to create a
    /// deployment for the application or if it will be realized externally.
    #[serde(default)]
    pub create_deployment: bool,

    /// DeploymentConfig specifies how the deployment should be configured when createDeployment
    /// is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_config: Option<ExecutorDeploymentConfig>,
}

/// ExecutorDeploymentConfig defines how an executor's Deployments run the app.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = kube::core::Rule::new(
    "has(self.runtimeClassName) != has(self.spinImage)"
).message("exactly one of runtimeClassName or spinImage must be set"))]
#[serde(rename_all = "camelCase")]
pub struct ExecutorDeploymentConfig {
    /// RuntimeClassName is the runtime class name that should be used by pods created as part of
    /// a deployment. This should only be defined when SpinImage is not defined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_class_name: Option<String>,

    /// SpinImage points to an image that will run Spin in a container to execute your SpinApp.
    /// This is an alternative to using the shim to execute your SpinApp. This should only be
    /// defined when RuntimeClassName is not defined. When specified, application images must be
    /// available without authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spin_image: Option<String>,

    /// CACertSecret specifies the name of the secret containing the CA certificates to be mounted
    /// to the deployment.
    #[serde(
        default,
        rename = "caCertSecret",
        skip_serializing_if = "Option::is_none"
    )]
    pub ca_cert_secret: Option<String>,

    /// InstallDefaultCACerts specifies whether the default CA certificate bundle should be
    /// generated. When set a new secret will be created containing the certificates. If no secret
    /// name is defined in `caCertSecret` the secret name will be `spin-ca`.
    #[serde(
        default,
        rename = "installDefaultCACerts",
        skip_serializing_if = "Option::is_none"
    )]
    pub install_default_ca_certs: Option<bool>,

    /// Otel provides Kubernetes Bindings to Otel Variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otel: Option<OtelConfig>,
}

/// OtelConfig holds the OTLP exporter endpoints passed to the app (snake_case on the wire, as
/// upstream).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct OtelConfig {
    /// ExporterOtlpEndpoint configures the default combined otlp endpoint for sending telemetry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exporter_otlp_endpoint: Option<String>,
    /// ExporterOtlpTracesEndpoint configures the trace-specific otlp endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exporter_otlp_traces_endpoint: Option<String>,
    /// ExporterOtlpMetricsEndpoint configures the metrics-specific otlp endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exporter_otlp_metrics_endpoint: Option<String>,
    /// ExporterOtlpLogsEndpoint configures the logs-specific otlp endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exporter_otlp_logs_endpoint: Option<String>,
}

/// SpinAppExecutorStatus defines the observed state of SpinAppExecutor.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct SpinAppExecutorStatus {}
