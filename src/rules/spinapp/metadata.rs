//! Labels and annotations the app asks for on its child objects.

use std::collections::BTreeMap;

use super::{AppCtx, entries};
use crate::api::{APP_NAME_LABEL, app_status_label};
use crate::rules::findings::Findings;
use crate::rules::names;

/// Kubernetes' limit on the total size of an object's annotations.
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

fn labels(out: &mut Findings, at: &str, map: &Option<BTreeMap<String, String>>) {
    for (k, v) in entries(map) {
        if let Err(e) = names::qualified_name(k) {
            out.invalid("SA-LABEL-KEY", at, k.as_str(), e);
        }
        if let Err(e) = names::label_value(v) {
            out.invalid("SA-LABEL-VALUE", format!("{at}[{k}]"), v.as_str(), e);
        }
    }
}

pub fn pod_labels(cx: &AppCtx, out: &mut Findings) {
    labels(out, "spec.podLabels", &cx.spec.pod_labels);
    if entries(&cx.spec.pod_labels).next().is_none() {
        return;
    }
    let status_label = app_status_label(cx.name);
    for (k, v) in entries(&cx.spec.pod_labels) {
        if k == APP_NAME_LABEL || *k == status_label {
            out.invalid(
                "SA-PODLABELS-SELECTOR",
                format!("spec.podLabels[{k}]"),
                v.as_str(),
                "must not override a label the operator selects the app's pods by",
            );
        }
    }
}

pub fn node_selector(cx: &AppCtx, out: &mut Findings) {
    labels(out, "spec.nodeSelector", &cx.spec.node_selector);
}

pub fn annotations(cx: &AppCtx, out: &mut Findings) {
    for (at, map) in [
        ("spec.serviceAnnotations", &cx.spec.service_annotations),
        (
            "spec.deploymentAnnotations",
            &cx.spec.deployment_annotations,
        ),
        ("spec.podAnnotations", &cx.spec.pod_annotations),
    ] {
        let mut size = 0;
        for (k, v) in entries(map) {
            size += k.len() + v.len();
            if let Err(e) = names::qualified_name(k) {
                out.invalid("SA-ANNOTATION-KEY", at, k.as_str(), e);
            }
        }
        if size > ANNOTATIONS_MAX_BYTES {
            out.forbidden(
                "SA-ANNOTATION-SIZE",
                at,
                format!("may not have more than {ANNOTATIONS_MAX_BYTES} bytes, has {size}"),
            );
        }
    }
}
