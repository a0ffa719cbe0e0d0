//! The HorizontalPodAutoscaler or KEDA ScaledObject of a scaffolded app, and the checks their
//! APIs would apply to what scaffold puts in them.
//!
//! Both target the app's Deployment (named after the app), as upstream's scaffold does: see the
//! module docs of [`super`] for why not the SpinApp's scale subresource.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde_json::Value;

use super::{ScaffoldError, Spec, to_yaml};
use crate::rules::{ErrorType, FieldError};

/// Which autoscaler to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Autoscaler {
    /// `autoscaling/v2` HorizontalPodAutoscaler.
    Hpa,
    /// KEDA `keda.sh/v1alpha1` ScaledObject.
    Keda,
}

/// The resources whose utilization the autoscaler tracks, in upstream's order.
const RESOURCES: [&str; 2] = ["cpu", "memory"];

/// What goes into the autoscaler object.
pub(super) struct Settings {
    kind: Autoscaler,
    name: String,
    namespace: Option<String>,
    target: String,
    min: i32,
    max: i32,
    /// Utilization targets of [`RESOURCES`], in percent.
    utilization: [i32; 2],
}

impl Settings {
    pub fn new(kind: Autoscaler, spec: &Spec, app: &str, namespace: Option<&str>) -> Self {
        Self {
            kind,
            name: format!("{app}-autoscaler"),
            namespace: namespace.map(str::to_string),
            target: app.to_string(),
            min: spec.replicas,
            max: spec.max_replicas,
            utilization: [spec.target_cpu_utilization, spec.target_memory_utilization],
        }
    }

    /// `HorizontalPodAutoscaler.autoscaling "hello-autoscaler"`.
    pub fn describe(&self) -> String {
        let kind = match self.kind {
            Autoscaler::Hpa => "HorizontalPodAutoscaler.autoscaling",
            Autoscaler::Keda => "ScaledObject.keda.sh",
        };
        format!("{kind} {:?}", self.name)
    }

    /// Field paths of the replica bounds.
    fn bound_fields(&self) -> (&'static str, &'static str) {
        match self.kind {
            Autoscaler::Hpa => ("spec.minReplicas", "spec.maxReplicas"),
            Autoscaler::Keda => ("spec.minReplicaCount", "spec.maxReplicaCount"),
        }
    }

    /// Field path of the i-th utilization target.
    fn target_field(&self, i: usize) -> String {
        match self.kind {
            Autoscaler::Hpa => format!("spec.metrics[{i}].resource.target.averageUtilization"),
            Autoscaler::Keda => format!("spec.triggers[{i}].metadata.value"),
        }
    }

    /// The API's own limits (the HPA's validation; KEDA refuses scaling to zero on CPU or memory
    /// triggers alone), plus upstream scaffold's 1–100 % for the targets.
    pub fn check(&self) -> Vec<FieldError> {
        let (min_field, max_field) = self.bound_fields();
        let invalid = |rule, field: String, value: i32, detail: String| FieldError {
            rule,
            field,
            error_type: ErrorType::Invalid,
            bad_value: Some(Value::from(value)),
            detail,
        };
        let mut errors = Vec::new();
        if self.min < 1 {
            errors.push(invalid(
                "SCAFFOLD-AUTOSCALER-REPLICAS",
                min_field.to_string(),
                self.min,
                "must be greater than or equal to 1".to_string(),
            ));
        }
        if self.max < self.min.max(1) {
            let min_name = min_field.trim_start_matches("spec.");
            errors.push(invalid(
                "SCAFFOLD-AUTOSCALER-REPLICAS",
                max_field.to_string(),
                self.max,
                format!(
                    "must be greater than or equal to `{min_name}` ({})",
                    self.min
                ),
            ));
        }
        for (i, target) in self.utilization.iter().enumerate() {
            if !(1..=100).contains(target) {
                errors.push(invalid(
                    "SCAFFOLD-AUTOSCALER-UTILIZATION",
                    self.target_field(i),
                    *target,
                    "must be between 1 and 100 (percent of the request)".to_string(),
                ));
            }
        }
        errors
    }

    pub fn yaml(&self) -> Result<String, ScaffoldError> {
        let metadata = ObjectMeta {
            name: Some(self.name.clone()),
            namespace: self.namespace.clone(),
            ..ObjectMeta::default()
        };
        match self.kind {
            Autoscaler::Hpa => to_yaml(&self.hpa(metadata), "HorizontalPodAutoscaler"),
            Autoscaler::Keda => to_yaml(&self.scaled_object(metadata), "ScaledObject"),
        }
    }

    fn hpa(&self, metadata: ObjectMeta) -> HorizontalPodAutoscaler {
        let metrics = RESOURCES
            .into_iter()
            .zip(self.utilization)
            .map(|(resource, percent)| MetricSpec {
                type_: "Resource".to_string(),
                resource: Some(ResourceMetricSource {
                    name: resource.to_string(),
                    target: MetricTarget {
                        type_: "Utilization".to_string(),
                        average_utilization: Some(percent),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            })
            .collect();
        HorizontalPodAutoscaler {
            metadata,
            spec: HorizontalPodAutoscalerSpec {
                scale_target_ref: CrossVersionObjectReference {
                    api_version: Some("apps/v1".to_string()),
                    kind: "Deployment".to_string(),
                    name: self.target.clone(),
                },
                min_replicas: Some(self.min),
                max_replicas: self.max,
                metrics: Some(metrics),
                ..HorizontalPodAutoscalerSpec::default()
            },
            status: None,
        }
    }

    fn scaled_object(&self, metadata: ObjectMeta) -> ScaledObject {
        ScaledObject {
            api_version: "keda.sh/v1alpha1",
            kind: "ScaledObject",
            metadata,
            spec: ScaledObjectSpec {
                scale_target_ref: TargetRef {
                    api_version: "apps/v1",
                    kind: "Deployment",
                    name: self.target.clone(),
                },
                min_replica_count: self.min,
                max_replica_count: self.max,
                triggers: RESOURCES
                    .into_iter()
                    .zip(self.utilization)
                    .map(|(resource, percent)| Trigger {
                        type_: resource,
                        metric_type: "Utilization",
                        metadata: BTreeMap::from([("value", percent.to_string())]),
                    })
                    .collect(),
            },
        }
    }
}

/// The fields of KEDA's ScaledObject that scaffold sets (no KEDA crate for a handful of fields).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ScaledObject {
    api_version: &'static str,
    kind: &'static str,
    metadata: ObjectMeta,
    spec: ScaledObjectSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ScaledObjectSpec {
    scale_target_ref: TargetRef,
    min_replica_count: i32,
    max_replica_count: i32,
    triggers: Vec<Trigger>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TargetRef {
    api_version: &'static str,
    kind: &'static str,
    name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Trigger {
    #[serde(rename = "type")]
    type_: &'static str,
    metric_type: &'static str,
    metadata: BTreeMap<&'static str, String>,
}
