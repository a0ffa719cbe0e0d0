//! Name, executor, replicas, image, pull policy and service account.

use super::AppCtx;
use crate::rules::findings::Findings;
use crate::rules::{names, reference};

/// Longest app name: the pod label key `core.spinkube.dev/app.<name>.status` has a 63-character
/// name part, and `app.` + `.status` take 11 of them.
pub const APP_NAME_MAX: usize = 52;

/// The app name becomes the Service name (DNS-1035) and part of the selector label key.
pub fn name(cx: &AppCtx, out: &mut Findings) {
    if cx.name.is_empty() {
        return;
    }
    if let Err(e) = names::dns1035_label(cx.name) {
        out.invalid("SA-NAME", "metadata.name", cx.name, e);
    } else if cx.name.len() > APP_NAME_MAX {
        out.invalid(
            "SA-NAME",
            "metadata.name",
            cx.name,
            format!(
                "must be no more than {APP_NAME_MAX} characters (it is part of the pod label \
                 key core.spinkube.dev/app.<name>.status)"
            ),
        );
    }
}

pub fn executor(cx: &AppCtx, out: &mut Findings) {
    let name = cx.spec.executor.as_str();
    if name.is_empty() {
        let known = cx.lookup.executor_names(cx.namespace);
        let detail = if known.is_empty() {
            format!(
                "no SpinAppExecutor exists in namespace {:?} to default to; create one or name one",
                cx.namespace
            )
        } else {
            format!(
                "must name a SpinAppExecutor in namespace {:?} (found: {})",
                cx.namespace,
                known.join(", ")
            )
        };
        out.required("SA-EXECUTOR-REQUIRED", "spec.executor", detail);
        return;
    }
    if let Err(e) = names::dns1123_subdomain(name) {
        out.invalid("SA-EXECUTOR-EXISTS", "spec.executor", name, e);
        return;
    }
    if cx.executor_creates_deployment.is_some() {
        return;
    }
    if cx.opts.allow_missing_executor {
        out.warn(
            "SA-EXECUTOR-PENDING",
            format!(
                "spec.executor: SpinAppExecutor {name:?} does not exist in namespace {:?} yet; \
                 the app will not run until it is created",
                cx.namespace
            ),
        );
        return;
    }
    let known = cx.lookup.executor_names(cx.namespace);
    let found = if known.is_empty() {
        "none exist".to_string()
    } else {
        format!("found: {}", known.join(", "))
    };
    out.not_found(
        "SA-EXECUTOR-EXISTS",
        "spec.executor",
        name,
        format!(
            "no SpinAppExecutor {name:?} in namespace {:?} ({found})",
            cx.namespace
        ),
    );
}

pub fn replicas(cx: &AppCtx, out: &mut Findings) {
    match (cx.spec.enable_autoscaling, cx.spec.replicas) {
        (true, Some(n)) => out.invalid(
            "SA-REPLICAS-AUTOSCALING",
            "spec.replicas",
            n,
            "must not be set when spec.enableAutoscaling is true",
        ),
        (false, Some(n)) if n < 1 => out.invalid(
            "SA-REPLICAS-MIN",
            "spec.replicas",
            n,
            "must be greater than or equal to 1",
        ),
        _ => {}
    }
}

pub fn image(cx: &AppCtx, out: &mut Findings) {
    let image = cx.spec.image.as_str();
    if image.is_empty() {
        out.required("SA-IMAGE-REQUIRED", "spec.image", "");
        return;
    }
    match reference::parse(image) {
        Err(e) => out.invalid(
            "SA-IMAGE-REFERENCE",
            "spec.image",
            image,
            format!("must be a valid OCI image reference: {e}"),
        ),
        Ok(r) if r.digest.is_none() && matches!(r.tag, None | Some("latest")) => out.warn(
            "SA-IMAGE-LATEST",
            format!(
                "spec.image {image:?} uses the \"latest\" tag (or no tag); pin a version or \
                 digest so every pod runs the same code"
            ),
        ),
        Ok(_) => {}
    }
}

/// Container image pull policies.
pub const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];

pub fn image_pull_policy(cx: &AppCtx, out: &mut Findings) {
    if let Some(p) = &cx.spec.image_pull_policy
        && !PULL_POLICIES.contains(&p.as_str())
    {
        out.not_supported(
            "SA-IMAGE-PULL-POLICY",
            "spec.imagePullPolicy",
            p.as_str(),
            PULL_POLICIES,
        );
    }
}

pub fn service_account(cx: &AppCtx, out: &mut Findings) {
    if let Some(sa) = &cx.spec.service_account_name
        && !sa.is_empty()
        && let Err(e) = names::dns1123_subdomain(sa)
    {
        out.invalid(
            "SA-SERVICE-ACCOUNT-NAME",
            "spec.serviceAccountName",
            sa.as_str(),
            e,
        );
    }
}

/// Without an operator-made Deployment there is nothing to carry these annotations.
pub fn executor_annotations(cx: &AppCtx, out: &mut Findings) {
    if cx.executor_creates_deployment != Some(false) {
        return;
    }
    for (field, map) in [
        (
            "spec.deploymentAnnotations",
            &cx.spec.deployment_annotations,
        ),
        ("spec.podAnnotations", &cx.spec.pod_annotations),
    ] {
        if let Some(map) = map
            && !map.is_empty()
        {
            out.invalid(
                "SA-ANNOTATIONS-NO-DEPLOYMENT",
                field,
                serde_json::to_value(map).unwrap_or_default(),
                format!(
                    "must not be set: executor {:?} has createDeployment=false, so the operator \
                     creates no Deployment or pods to annotate",
                    cx.spec.executor
                ),
            );
        }
    }
}
