//! SpinApp status: computed from what was observed, written only when it changes.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value};

use crate::api::{SpinApp, SpinAppStatus};

/// Condition type summarizing the app.
pub const READY: &str = "Ready";
/// Condition mirrored from the Deployment.
pub const AVAILABLE: &str = "Available";
/// Condition mirrored from the Deployment.
pub const PROGRESSING: &str = "Progressing";

/// Ready reason when everything converged.
pub const REASON_RECONCILED: &str = "Reconciled";
/// Ready reason while the Deployment is not yet available.
pub const REASON_DEPLOYMENT_UNAVAILABLE: &str = "DeploymentUnavailable";
/// Ready reason when the named executor does not exist.
pub const REASON_EXECUTOR_NOT_FOUND: &str = "ExecutorNotFound";
/// Ready reason when applying or deleting a child failed.
pub const REASON_APPLY_FAILED: &str = "ApplyFailed";
/// Ready reason when a child's name is taken by an object the app does not own.
pub const REASON_CHILD_NOT_OWNED: &str = "ChildNotOwned";

/// The Ready condition before timestamps are assigned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// Whether the app is ready.
    pub ready: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message (never contains secret values).
    pub message: String,
}

impl Readiness {
    /// A failure with `reason`.
    pub fn failed(reason: &str, message: impl Into<String>) -> Self {
        Readiness {
            ready: false,
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

/// What the reconciler observed, input to [`compute`].
pub struct Observed<'a> {
    /// Executor name when it exists.
    pub executor: Option<&'a str>,
    /// The live Deployment, when the app has one.
    pub deployment: Option<&'a Deployment>,
    /// Service name, when the Service was applied.
    pub service_name: Option<String>,
    /// Pod label selector string for the scale subresource.
    pub selector: Option<String>,
    /// Result of the reconcile so far (None = children converged).
    pub failure: Option<Readiness>,
}

fn bool_status(b: bool) -> String {
    if b { "True" } else { "False" }.to_string()
}

/// Builds the new status; `lastTransitionTime` is kept from `previous` for conditions whose status
/// did not change.
pub fn compute(app: &SpinApp, observed: &Observed<'_>, now: Timestamp) -> SpinAppStatus {
    let previous = app.status.as_ref();
    let generation = app.metadata.generation;
    let mut conditions = Vec::new();

    let deployment_status = observed.deployment.and_then(|d| d.status.as_ref());
    for ty in [AVAILABLE, PROGRESSING] {
        let mirrored = deployment_status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_.as_deref() == Some(ty)));
        if let Some(c) = mirrored {
            conditions.push(Condition {
                type_: ty.to_string(),
                status: c.status.clone().unwrap_or_else(|| "Unknown".to_string()),
                reason: c
                    .reason
                    .clone()
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| ty.to_string()),
                message: c.message.clone().unwrap_or_default(),
                observed_generation: generation,
                last_transition_time: Time(now),
            });
        }
    }

    let readiness = match &observed.failure {
        Some(f) => f.clone(),
        None => match observed.deployment {
            None => Readiness {
                ready: true,
                reason: REASON_RECONCILED.to_string(),
                message: "children are up to date; the executor runs the app".to_string(),
            },
            Some(_) => {
                let available = conditions
                    .iter()
                    .any(|c| c.type_ == AVAILABLE && c.status == "True");
                if available {
                    Readiness {
                        ready: true,
                        reason: REASON_RECONCILED.to_string(),
                        message: "Deployment is available".to_string(),
                    }
                } else {
                    Readiness::failed(
                        REASON_DEPLOYMENT_UNAVAILABLE,
                        "waiting for the Deployment to become available",
                    )
                }
            }
        },
    };
    conditions.insert(
        0,
        Condition {
            type_: READY.to_string(),
            status: bool_status(readiness.ready),
            reason: readiness.reason,
            message: readiness.message,
            observed_generation: generation,
            last_transition_time: Time(now),
        },
    );

    // Keep transition times of conditions whose status did not change.
    if let Some(prev) = previous.and_then(|s| s.conditions.as_ref()) {
        for c in &mut conditions {
            if let Some(p) = prev.iter().find(|p| p.type_ == c.type_)
                && p.status == c.status
            {
                c.last_transition_time = p.last_transition_time.clone();
            }
        }
    }

    SpinAppStatus {
        conditions: Some(conditions),
        active_scheduler: observed.executor.map(str::to_string),
        ready_replicas: deployment_status
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
        deployment_name: observed.deployment.and_then(|d| d.metadata.name.clone()),
        service_name: observed.service_name.clone(),
        observed_generation: generation,
        selector: observed.selector.clone(),
    }
}

/// The Ready condition of a status, if any.
pub fn ready_condition(status: Option<&SpinAppStatus>) -> Option<&Condition> {
    status?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == READY)
}

/// Reasons of the Deployment controller's `Progressing` condition that all say "rolling out"
/// (k8s.io/kubernetes pkg/controller/deployment/util): it moves between them as a new ReplicaSet
/// is created and then scaled, while nothing a user acts on changes. Every other reason
/// (`NewReplicaSetAvailable`: rolled out; `ProgressDeadlineExceeded`; paused, resumed) is its own.
const ROLLING_OUT: [&str; 3] = [
    "NewReplicaSetCreated",
    "FoundNewReplicaSet",
    "ReplicaSetUpdated",
];

/// A mirrored condition's reason as far as it is reported: the [`ROLLING_OUT`] reasons are one.
pub fn reported_reason(reason: &str) -> &str {
    if ROLLING_OUT.contains(&reason) {
        ROLLING_OUT[0]
    } else {
        reason
    }
}

/// Whether `new` reports what `old` does, so writing it would change nothing a user acts on:
/// equal except in the mirrored conditions' (`Available`, `Progressing`) messages and in a
/// `Progressing` reason that stays within [`ROLLING_OUT`]. The Ready condition, `readyReplicas`
/// (the `kubectl get` column) and every condition's status compare exactly. Such a difference
/// is written with the next change that matters (kube-controller-manager rewrites `Progressing`
/// once or twice per rollout while its pods are created; mirroring each was a status write).
pub fn reports_same(old: &SpinAppStatus, new: &SpinAppStatus) -> bool {
    fn reported(status: &SpinAppStatus) -> SpinAppStatus {
        let mut reported = status.clone();
        for c in reported.conditions.iter_mut().flatten() {
            if c.type_ == AVAILABLE || c.type_ == PROGRESSING {
                c.message.clear();
                c.reason = reported_reason(&c.reason).to_string();
            }
        }
        reported
    }
    old == new || reported(old) == reported(new)
}

/// Whether the Deployment controller has reported on this generation of `deployment` (its
/// `status.observedGeneration`); until it has, the conditions and counts mirrored from it are
/// those of the previous generation, or none for a new Deployment.
pub fn reported_on(deployment: &Deployment) -> bool {
    let observed = deployment
        .status
        .as_ref()
        .and_then(|s| s.observed_generation);
    match deployment.metadata.generation {
        Some(generation) => observed.is_some_and(|o| o >= generation),
        None => true,
    }
}

/// Hash of a status ignoring condition transition times (which a recomputation from a stale
/// cache sets to "now").
pub fn content_hash(status: &SpinAppStatus) -> String {
    let mut normalized = status.clone();
    for condition in normalized.conditions.iter_mut().flatten() {
        condition.last_transition_time = Time(Timestamp::UNIX_EPOCH);
    }
    serde_json::to_value(&normalized)
        .map(|v| super::compare::desired_hash(&v))
        .unwrap_or_default()
}

/// Merge patch turning `old` into `new`: fields dropped in `new` are set to null explicitly.
pub fn merge_patch(old: Option<&SpinAppStatus>, new: &SpinAppStatus) -> Value {
    let new_v = serde_json::to_value(new).unwrap_or(Value::Null);
    let mut body = match new_v {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    if let Some(Value::Object(old_m)) = old.and_then(|o| serde_json::to_value(o).ok()) {
        for k in old_m.keys() {
            if !body.contains_key(k) {
                body.insert(k.clone(), Value::Null);
            }
        }
    }
    serde_json::json!({ "status": Value::Object(body) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};

    fn app(generation: i64, status: Option<SpinAppStatus>) -> SpinApp {
        let mut a = SpinApp::new("hello", Default::default());
        a.metadata.generation = Some(generation);
        a.status = status;
        a
    }

    fn deployment(available: &str, ready: i32) -> Deployment {
        let mut d = Deployment::default();
        d.metadata.name = Some("hello".into());
        d.status = Some(DeploymentStatus {
            ready_replicas: Some(ready),
            conditions: Some(vec![DeploymentCondition {
                type_: Some("Available".into()),
                status: Some(available.into()),
                reason: Some("MinimumReplicasAvailable".into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        d
    }

    fn observed<'a>(d: Option<&'a Deployment>, failure: Option<Readiness>) -> Observed<'a> {
        Observed {
            executor: Some("shim"),
            deployment: d,
            service_name: Some("hello".into()),
            selector: Some("core.spinkube.dev/app-name=hello".into()),
            failure,
        }
    }

    #[test]
    fn mirrors_deployment_and_keeps_transition_time() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let d = deployment("True", 2);
        let s0 = compute(&app(1, None), &observed(Some(&d), None), t0);
        assert_eq!(s0.ready_replicas, 2);
        assert_eq!(s0.deployment_name.as_deref(), Some("hello"));
        let ready = ready_condition(Some(&s0)).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", REASON_RECONCILED)
        );
        let avail = s0
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == AVAILABLE)
            .unwrap();
        assert_eq!(avail.reason, "MinimumReplicasAvailable");

        // Same observation later: identical status (no write needed).
        let s1 = compute(&app(1, Some(s0.clone())), &observed(Some(&d), None), t1);
        assert_eq!(s0, s1);

        // Deployment becomes unavailable: Ready flips and its transition time moves.
        let d2 = deployment("False", 0);
        let s2 = compute(&app(1, Some(s1)), &observed(Some(&d2), None), t1);
        let ready = ready_condition(Some(&s2)).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", REASON_DEPLOYMENT_UNAVAILABLE)
        );
        assert_eq!(ready.last_transition_time, Time(t1));
    }

    #[test]
    fn failure_reason_is_reported_without_deployment() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let s = compute(
            &app(3, None),
            &observed(
                None,
                Some(Readiness::failed(
                    REASON_EXECUTOR_NOT_FOUND,
                    "no executor x",
                )),
            ),
            t0,
        );
        let ready = ready_condition(Some(&s)).unwrap();
        assert_eq!(ready.reason, REASON_EXECUTOR_NOT_FOUND);
        assert_eq!(ready.status, "False");
        assert_eq!(s.observed_generation, Some(3));
        assert!(s.deployment_name.is_none());
    }

    /// A Deployment status as kube-controller-manager writes it for `replicas` pods of which
    /// none is ready yet, with `Progressing` at `reason`.
    fn rolling_out(reason: &str, message: &str, replicas: i32) -> Deployment {
        let mut d = Deployment::default();
        d.metadata.name = Some("hello".into());
        d.metadata.generation = Some(1);
        d.status = Some(DeploymentStatus {
            observed_generation: Some(1),
            replicas: Some(replicas),
            unavailable_replicas: Some(replicas.max(1)),
            conditions: Some(vec![
                DeploymentCondition {
                    type_: Some("Available".into()),
                    status: Some("False".into()),
                    reason: Some("MinimumReplicasUnavailable".into()),
                    message: Some("Deployment does not have minimum availability.".into()),
                    ..Default::default()
                },
                DeploymentCondition {
                    type_: Some("Progressing".into()),
                    status: Some("True".into()),
                    reason: Some(reason.into()),
                    message: Some(message.into()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        });
        d
    }

    #[test]
    fn progress_within_a_rollout_reports_the_same_and_its_end_does_not() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let created = rolling_out(
            "NewReplicaSetCreated",
            "Created new replica set \"hello-5d4\"",
            0,
        );
        let s0 = compute(&app(1, None), &observed(Some(&created), None), t0);
        let a = app(1, Some(s0.clone()));
        // Pods created: kube-controller-manager moves Progressing to ReplicaSetUpdated with a
        // new message; the app reports the same (Ready False, 0 ready, same condition statuses).
        let updated = rolling_out(
            "ReplicaSetUpdated",
            "ReplicaSet \"hello-5d4\" is progressing.",
            1,
        );
        let s1 = compute(&a, &observed(Some(&updated), None), t1);
        assert_ne!(s0, s1, "the mirrored reason and message did change");
        assert!(reports_same(&s0, &s1));
        assert!(reports_same(&s1, &s0));

        // Rolled out, deadline exceeded, or a ready pod: each is reported.
        let mut done = updated.clone();
        let conditions = done.status.as_mut().unwrap().conditions.as_mut().unwrap();
        conditions[1].reason = Some("NewReplicaSetAvailable".into());
        let s2 = compute(&a, &observed(Some(&done), None), t1);
        assert!(!reports_same(&s0, &s2), "the end of a rollout is reported");
        let mut timed_out = updated.clone();
        let conditions = timed_out
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap();
        conditions[1].status = Some("False".into());
        conditions[1].reason = Some("ProgressDeadlineExceeded".into());
        let s3 = compute(&a, &observed(Some(&timed_out), None), t1);
        assert!(!reports_same(&s0, &s3));
        let mut one_ready = updated.clone();
        one_ready.status.as_mut().unwrap().ready_replicas = Some(1);
        let s4 = compute(&a, &observed(Some(&one_ready), None), t1);
        assert!(!reports_same(&s0, &s4), "readyReplicas is a kubectl column");
        // Ready's own message is not a mirrored one.
        let mut other_message = s0.clone();
        other_message.conditions.as_mut().unwrap()[0].message = "another".into();
        assert!(!reports_same(&s0, &other_message));
        // The first report of a new Deployment adds conditions: reported.
        let s_none = compute(
            &app(1, None),
            &observed(Some(&deployment_unreported()), None),
            t0,
        );
        assert!(!reports_same(&s_none, &s0));
    }

    fn deployment_unreported() -> Deployment {
        let mut d = Deployment::default();
        d.metadata.name = Some("hello".into());
        d.metadata.generation = Some(2);
        d
    }

    #[test]
    fn a_deployment_is_reported_on_once_its_controller_observed_its_generation() {
        let mut d = deployment_unreported();
        assert!(!reported_on(&d), "new: no status");
        // The Deployment controller's first write (the new ReplicaSet's Progressing condition)
        // still carries the previous observedGeneration.
        d.status = Some(DeploymentStatus {
            observed_generation: Some(1),
            ..Default::default()
        });
        assert!(!reported_on(&d));
        d.status.as_mut().unwrap().observed_generation = Some(2);
        assert!(reported_on(&d));
        d.metadata.generation = None;
        d.status = None;
        assert!(reported_on(&d), "no generation to wait for");
    }

    #[test]
    fn merge_patch_nulls_dropped_fields() {
        let old = SpinAppStatus {
            deployment_name: Some("hello".into()),
            ..Default::default()
        };
        let new = SpinAppStatus::default();
        let p = merge_patch(Some(&old), &new);
        assert_eq!(p["status"]["deploymentName"], Value::Null);
        assert!(
            p["status"]
                .as_object()
                .unwrap()
                .contains_key("deploymentName")
        );
        assert_eq!(p["status"]["readyReplicas"], 0);
    }
}
