//! Validation of SpinAppExecutors, and the DELETE guard for executors still in use.

use serde_json::Value;

use super::findings::Findings;
use super::{decode, names, reference};
use crate::api::{OtelConfig, SpinAppExecutorSpec};
use crate::inventory::Lookup;

/// How many app names a DELETE denial lists.
const APPS_LISTED: usize = 5;

/// Checks an executor object (CREATE and UPDATE).
pub(crate) fn validate(object: &Value) -> Findings {
    let mut out = Findings::default();
    let Some(decoded) =
        decode::decode_spec::<SpinAppExecutorSpec>(object.get("spec"), "SAE-DECODE", &mut out)
    else {
        return out;
    };
    let mut checked = Findings::default();
    check_spec(&decoded.value, &mut checked);
    decoded.merge_checked(checked, &mut out);
    out
}

fn check_spec(spec: &SpinAppExecutorSpec, out: &mut Findings) {
    let Some(config) = &spec.deployment_config else {
        if spec.create_deployment {
            out.required(
                "SAE-DEPLOYMENT-CONFIG-REQUIRED",
                "spec.deploymentConfig",
                "required when createDeployment is true",
            );
        }
        return;
    };
    if !spec.create_deployment {
        out.warn(
            "SAE-DEPLOYMENT-CONFIG-UNUSED",
            "spec.deploymentConfig is ignored because spec.createDeployment is false",
        );
    }
    let runtime_class = config
        .runtime_class_name
        .as_deref()
        .filter(|s| !s.is_empty());
    let spin_image = config.spin_image.as_deref().filter(|s| !s.is_empty());
    match (runtime_class, spin_image) {
        (Some(_), Some(_)) => out.forbidden(
            "SAE-RUNTIME-XOR",
            "spec.deploymentConfig.spinImage",
            "may not be set together with runtimeClassName: set exactly one of them",
        ),
        (None, None) => out.required(
            "SAE-RUNTIME-XOR",
            "spec.deploymentConfig",
            "exactly one of runtimeClassName or spinImage must be set",
        ),
        _ => {}
    }
    if let Some(rc) = runtime_class
        && let Err(e) = names::dns1123_subdomain(rc)
    {
        out.invalid(
            "SAE-RUNTIME-CLASS-NAME",
            "spec.deploymentConfig.runtimeClassName",
            rc,
            e,
        );
    }
    if let Some(image) = spin_image
        && let Err(e) = reference::parse(image)
    {
        out.invalid(
            "SAE-SPIN-IMAGE",
            "spec.deploymentConfig.spinImage",
            image,
            format!("must be a valid OCI image reference: {e}"),
        );
    }
    if let Some(secret) = config.ca_cert_secret.as_deref().filter(|s| !s.is_empty())
        && let Err(e) = names::dns1123_subdomain(secret)
    {
        out.invalid(
            "SAE-CA-SECRET-NAME",
            "spec.deploymentConfig.caCertSecret",
            secret,
            e,
        );
    }
    if let Some(otel) = &config.otel {
        otel_endpoints(otel, out);
    }
}

fn otel_endpoints(otel: &OtelConfig, out: &mut Findings) {
    for (key, value) in [
        ("exporter_otlp_endpoint", &otel.exporter_otlp_endpoint),
        (
            "exporter_otlp_traces_endpoint",
            &otel.exporter_otlp_traces_endpoint,
        ),
        (
            "exporter_otlp_metrics_endpoint",
            &otel.exporter_otlp_metrics_endpoint,
        ),
        (
            "exporter_otlp_logs_endpoint",
            &otel.exporter_otlp_logs_endpoint,
        ),
    ] {
        let Some(endpoint) = value.as_deref().filter(|s| !s.is_empty()) else {
            continue;
        };
        if let Err(why) = absolute_http_url(endpoint) {
            out.invalid(
                "SAE-OTEL-ENDPOINT",
                format!("spec.deploymentConfig.otel.{key}"),
                endpoint,
                why,
            );
        }
    }
}

/// An absolute `http://` or `https://` URL with a host.
pub(crate) fn absolute_http_url(s: &str) -> Result<(), String> {
    let url = url::Url::parse(s).map_err(|e| {
        format!("must be an absolute http(s) URL (e.g. http://collector:4318): {e}")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "must be an absolute http(s) URL (e.g. http://collector:4318); scheme {:?} is not \
             http or https",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must be an absolute http(s) URL with a host".to_string());
    }
    Ok(())
}

/// DELETE: refuse while SpinApps in the namespace still name the executor.
pub(crate) fn delete(namespace: &str, name: &str, lookup: &dyn Lookup) -> Findings {
    let mut out = Findings::default();
    let apps = lookup.apps_using_executor(namespace, name);
    if apps.is_empty() {
        return out;
    }
    let listed: Vec<&str> = apps.iter().take(APPS_LISTED).map(String::as_str).collect();
    let more = match apps.len().saturating_sub(APPS_LISTED) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    out.forbidden(
        "SAE-IN-USE",
        "metadata.name",
        format!(
            "SpinAppExecutor {name:?} is still used by {} SpinApp(s) in namespace {namespace:?}: \
             {}{more}; delete them or point them at another executor first",
            apps.len(),
            listed.join(", ")
        ),
    );
    out
}
