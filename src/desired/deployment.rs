//! The app's Deployment (upstream `constructDeployment`, `ConstructEnvForApp`,
//! `ConstructVolumeMountsForApp`, `SpinHealthCheckToCoreProbe`), field for field, plus our
//! additions (imagePullPolicy, nodeSelector, tolerations, affinity) which are only set when the
//! app sets them, so apps that do not use them get exactly upstream's object.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, HTTPGetAction, HTTPHeader, KeyToPath, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::DesiredError;
use super::ca::CA_BUNDLE_KEY;
use super::labels::{child_meta, selector_labels};
use crate::api::{
    CA_BUNDLE_PATH, ExecutorDeploymentConfig, HealthProbe, OtelConfig, RUNTIME_CONFIG_KEY,
    RUNTIME_CONFIG_PATH, SpinApp,
};
use crate::rules::quantity::Quantity;

/// Port the app listens on inside the pod and the Service exposes.
pub(super) const HTTP_PORT: i32 = 80;
/// Name of that port (the Service targets it by name).
pub(super) const HTTP_PORT_NAME: &str = "http-app";
/// Volume names upstream uses (reserved `spin-` prefix).
const RUNTIME_CONFIG_VOLUME: &str = "spin-runtime-config";
const CA_VOLUME: &str = "spin-ca";

/// Inputs decided by the caller: which Secrets the pod mounts.
pub(super) struct Mounts<'a> {
    /// Generated `<app>-<hash>` Secret or the user's `loadFromSecret` Secret.
    pub runtime_config_secret: Option<&'a str>,
    pub ca_secret: Option<&'a str>,
}

pub(super) fn deployment(
    app: &SpinApp,
    config: &ExecutorDeploymentConfig,
    mounts: &Mounts<'_>,
) -> Result<Deployment, DesiredError> {
    let name = app.name_any();
    let spec = &app.spec;

    // Replicas are left to the autoscaler; otherwise the webhook's default of 1 applies.
    let replicas = (!spec.enable_autoscaling).then(|| spec.replicas.unwrap_or(1));

    let (volumes, volume_mounts) = volumes(app, mounts);
    let mut env = env(app, config.otel.as_ref())?;
    if let Some(components) = &spec.components {
        env.push(env_var("SPIN_COMPONENTS_TO_RETAIN", components.join(",")));
    }
    let checks = spec.checks.clone().unwrap_or_default();
    let readiness_probe = probe(checks.readiness.as_ref(), "checks.readiness")?;
    let liveness_probe = probe(checks.liveness.as_ref(), "checks.liveness")?;
    let resources = spec.resources.clone().unwrap_or_default();

    let mut container = Container {
        name: name.clone(),
        ports: Some(vec![ContainerPort {
            name: Some(HTTP_PORT_NAME.to_string()),
            container_port: HTTP_PORT,
            ..ContainerPort::default()
        }]),
        env: non_empty(env),
        volume_mounts: non_empty(volume_mounts),
        // Upstream always sends the (possibly empty) resources struct.
        resources: Some(ResourceRequirements {
            limits: resources.limits,
            requests: resources.requests,
            claims: None,
        }),
        liveness_probe,
        readiness_probe,
        image_pull_policy: spec.image_pull_policy.clone(),
        ..Container::default()
    };
    // Upstream prefers the runtime class when (invalidly) both are set.
    let runtime_class_name = config.runtime_class_name.clone().filter(|r| !r.is_empty());
    if runtime_class_name.is_some() {
        container.image = Some(spec.image.clone());
        // The shim ignores the command; upstream sets "/" so the pod spec is valid.
        container.command = Some(vec!["/".to_string()]);
    } else if let Some(spin_image) = config.spin_image.as_ref().filter(|i| !i.is_empty()) {
        container.image = Some(spin_image.clone());
        container.args = Some(spin_up_args(app));
    } else {
        return Err(DesiredError::InvalidExecutor {
            reason: "must specify either runtimeClassName or spinImage".into(),
        });
    }

    let mut pod_labels = spec.pod_labels.clone().unwrap_or_default();
    // Selector labels win over user pod labels, or the Deployment would not select its pods.
    pod_labels.extend(selector_labels(app));

    Ok(Deployment {
        metadata: child_meta(app, name.clone(), spec.deployment_annotations.as_ref()),
        spec: DeploymentSpec {
            replicas,
            selector: LabelSelector {
                match_labels: Some(selector_labels(app)),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: spec.pod_annotations.clone().filter(|a| !a.is_empty()),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    runtime_class_name,
                    service_account_name: Some(
                        spec.service_account_name
                            .clone()
                            .filter(|s| !s.is_empty())
                            .unwrap_or_else(|| "default".to_string()),
                    ),
                    containers: vec![container],
                    image_pull_secrets: spec.image_pull_secrets.clone().and_then(non_empty),
                    volumes: non_empty(volumes),
                    node_selector: spec.node_selector.clone().filter(|n| !n.is_empty()),
                    tolerations: spec.tolerations.clone().and_then(non_empty),
                    affinity: spec.affinity.clone(),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        status: None,
    })
}

/// `spin up` arguments for the Spin-in-a-container executor.
fn spin_up_args(app: &SpinApp) -> Vec<String> {
    let mut args: Vec<String> = [
        "up",
        "--listen",
        &format!("0.0.0.0:{HTTP_PORT}"),
        "-f",
        &app.spec.image,
        "--runtime-config-file",
        RUNTIME_CONFIG_PATH,
    ]
    .map(String::from)
    .into();
    for component in app.spec.components.as_deref().unwrap_or_default() {
        args.push("--component-id".to_string());
        args.push(component.clone());
    }
    args
}

fn env_var(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value),
        value_from: None,
    }
}

/// Upstream order: variables, listen address, OTel endpoints, invocation limits.
fn env(app: &SpinApp, otel: Option<&OtelConfig>) -> Result<Vec<EnvVar>, DesiredError> {
    let mut env: Vec<EnvVar> = app
        .spec
        .variables
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|v| EnvVar {
            name: format!("SPIN_VARIABLE_{}", v.name.to_uppercase()),
            value: v.value.clone().filter(|s| !s.is_empty()),
            value_from: v.value_from.clone(),
        })
        .collect();
    env.push(env_var(
        "SPIN_HTTP_LISTEN_ADDR",
        format!("0.0.0.0:{HTTP_PORT}"),
    ));
    if let Some(otel) = otel {
        for (name, value) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &otel.exporter_otlp_endpoint),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                &otel.exporter_otlp_traces_endpoint,
            ),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                &otel.exporter_otlp_metrics_endpoint,
            ),
            (
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                &otel.exporter_otlp_logs_endpoint,
            ),
        ] {
            if let Some(value) = value.as_ref().filter(|v| !v.is_empty()) {
                env.push(env_var(name, value.clone()));
            }
        }
    }
    let memory = app
        .spec
        .invocation_limits
        .as_ref()
        .and_then(|l| l.get("memory"));
    if let Some(limit) = memory {
        // The same parser the admission rules use, so a limit they admit always renders.
        let bytes = Quantity::parse(limit)
            .ok()
            .and_then(|q| q.to_whole_units())
            .ok_or_else(|| DesiredError::InvalidSpec {
                field: "invocationLimits.memory".into(),
                reason: format!("{limit:?}: not a non-negative quantity that fits in 64 bits"),
            })?;
        env.push(env_var("SPIN_MAX_INSTANCE_MEMORY", bytes.to_string()));
    }
    Ok(env)
}

/// One-file read-only mount of `key` from an optional Secret volume (upstream's shape).
fn secret_file(volume: &str, secret: &str, key: &str, path: &str) -> (Volume, VolumeMount) {
    (
        Volume {
            name: volume.to_string(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.to_string()),
                optional: Some(true),
                items: Some(vec![KeyToPath {
                    key: key.to_string(),
                    path: key.to_string(),
                    ..KeyToPath::default()
                }]),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        VolumeMount {
            name: volume.to_string(),
            read_only: Some(true),
            mount_path: path.to_string(),
            sub_path: Some(key.to_string()),
            ..VolumeMount::default()
        },
    )
}

/// Upstream order: runtime config, the app's own volumes, CA bundle.
fn volumes(app: &SpinApp, mounts: &Mounts<'_>) -> (Vec<Volume>, Vec<VolumeMount>) {
    let mut volumes = Vec::new();
    let mut volume_mounts = Vec::new();
    if let Some(secret) = mounts.runtime_config_secret {
        let (v, m) = secret_file(
            RUNTIME_CONFIG_VOLUME,
            secret,
            RUNTIME_CONFIG_KEY,
            RUNTIME_CONFIG_PATH,
        );
        volumes.push(v);
        volume_mounts.push(m);
    }
    volumes.extend(app.spec.volumes.clone().unwrap_or_default());
    volume_mounts.extend(app.spec.volume_mounts.clone().unwrap_or_default());
    if let Some(secret) = mounts.ca_secret {
        let (v, m) = secret_file(CA_VOLUME, secret, CA_BUNDLE_KEY, CA_BUNDLE_PATH);
        volumes.push(v);
        volume_mounts.push(m);
    }
    (volumes, volume_mounts)
}

fn probe(probe: Option<&HealthProbe>, field: &str) -> Result<Option<Probe>, DesiredError> {
    let Some(probe) = probe else { return Ok(None) };
    let Some(http) = &probe.http_get else {
        return Err(DesiredError::InvalidSpec {
            field: field.to_string(),
            reason: "probe has no httpGet".into(),
        });
    };
    let headers: Vec<HTTPHeader> = http
        .http_headers
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|h| HTTPHeader {
            name: h.name.clone(),
            value: h.value.clone(),
        })
        .collect();
    Ok(Some(Probe {
        http_get: Some(HTTPGetAction {
            path: Some(http.path.clone()).filter(|p| !p.is_empty()),
            port: IntOrString::Int(HTTP_PORT),
            http_headers: non_empty(headers),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: non_zero(probe.initial_delay_seconds),
        timeout_seconds: non_zero(probe.timeout_seconds),
        period_seconds: non_zero(probe.period_seconds),
        success_threshold: non_zero(probe.success_threshold),
        failure_threshold: non_zero(probe.failure_threshold),
        ..Probe::default()
    }))
}

/// Go's `omitempty`: an empty list is not sent.
fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// Go's `omitempty` on an int32: zero is not sent.
fn non_zero(v: i32) -> Option<i32> {
    (v != 0).then_some(v)
}
